// Per-key privilege checks (see key_privileges.hpp).
#include "session/key_privileges.hpp"
#include "db/keyring.hpp"
#include "session/audit.hpp"
#include "session/key_usage.hpp"
#include "session/session_keys.hpp"

#include "hex.hpp"

extern "C" {
#include "utils/acl.h"
#include "utils/syscache.h"
}

namespace envelope::pg {

namespace {

constexpr int kMaxGrantees = 256;
uint64 role_epoch = 1;
bool callbacks_registered = false;

void roles_changed(Datum, int, uint32) {
    role_epoch++;
}

void register_callbacks() {
    if (callbacks_registered) return;
    CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, roles_changed, 0);
    CacheRegisterSyscacheCallback(AUTHOID, roles_changed, 0);
    callbacks_registered = true;
}

// The cached decisions of a session for one key are valid for this user and these epochs.
uint64 stamp() {
    return keyring_grants_epoch() * 1000003u + role_epoch;
}

// The denial is counted (added to key_stats when the transaction aborts) and, with
// envelope.audit = denials or all, logged before the ERROR is raised.
[[noreturn]] void raise_denied(LocalCipher *key, KeyPrivilege p) {
    const char *key_name = key->name;
    usage_count_denial(key);
    if (audit_enabled(audit_denials)) {
        audit_line(p == KeyPrivilege::encrypt ? "encrypt" : "decrypt",
                   GetUserNameFromId(GetUserId(), false), key_name, key->version, "denied",
                   nullptr);
    }
    ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                    errmsg("permission denied for key \"%s\"", key_name),
                    errdetail("Role \"%s\" lacks the %s privilege on this key.",
                              GetUserNameFromId(GetUserId(), false), key_privilege_name(p)),
                    errhint("A superuser or a member of envelope_admin can grant it with "
                            "envelope.grant_key('%s', role, '%s').",
                            key_name, key_privilege_name(p)),
                    errhidestmt(true), errhidecontext(true)));
}

}  // namespace

const char *key_privilege_name(KeyPrivilege p) {
    switch (p) {
        case KeyPrivilege::encrypt:
            return "encrypt";
        case KeyPrivilege::decrypt:
            return "decrypt";
        case KeyPrivilege::search:
            break;
    }
    return "search";
}

uint64 key_privilege_stamp() {
    register_callbacks();
    return stamp();
}

bool role_has_key_privilege(Oid role, const char *key_name, KeyPrivilege p) {
    if (superuser_arg(role)) return true;
    Oid grantees[kMaxGrantees];
    const int n = keyring_grantees(key_name, key_privilege_name(p), grantees, kMaxGrantees);
    // A database still at extension version 0.1.0 has no key privileges yet: its behaviour is
    // that version's until ALTER EXTENSION pg_envelope UPDATE (README, "Key privileges").
    if (n < 0) return true;
    for (int i = 0; i < n; ++i) {
        if (has_privs_of_role(role, grantees[i])) return true;
    }
    return false;
}

void require_key_privilege(LocalCipher *key, KeyPrivilege p) {
    register_callbacks();
    const Oid user = GetUserId();
    const uint64 now = stamp();
    PrivilegeDecisions &d = key->privileges;
    if (likely(d.role == user && d.stamp == now)) {
        if (likely(d.allowed[static_cast<int>(p)])) return;
    } else {
        if (!key->name_known) {
            KeyringRow row = keyring_read(key->id);
            if (!row.found) {
                char uuid[37];
                envelope::format_uuid(key->id.data(), uuid);
                ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
                                errmsg("key %s does not exist in this database", uuid)));
            }
            strlcpy(key->name, row.name, sizeof key->name);
            key->version = row.version;
            key->index_key = row.index_key;
            key->name_known = true;
        }
        // No decision is cached for an index key: every use comes back here and fails.
        if (key->index_key) raise_index_key_misuse(key->name);
        usage_assign_slot(key, user);
        d.role = user;
        d.stamp = now;
        d.allowed[0] = role_has_key_privilege(user, key->name, KeyPrivilege::encrypt);
        d.allowed[1] = role_has_key_privilege(user, key->name, KeyPrivilege::decrypt);
        if (d.allowed[static_cast<int>(p)]) return;
    }
    raise_denied(key, p);
}

}  // namespace envelope::pg
