// Session tag contexts of index keys (see index_keys.hpp). Static storage: these C++ objects
// never live on a stack an ERROR could unwind.
#include "session/index_keys.hpp"
#include "db/keyring.hpp"
#include "session/audit.hpp"
#include "session/key_privileges.hpp"
#include "session/session_keys.hpp"
#include "shmem/key_cache.hpp"
#include "shmem/shmem.hpp"

#include "hex.hpp"

extern "C" {
#include "utils/acl.h"
}

namespace envelope::pg {

namespace {

struct LocalTagKey {
    envelope::TagKey tagger;
    CachedKeyState known;
    uint64 checked_generation;
    uint64 last_use;
    Oid database;
    envelope::DekId id;
    bool used;
    bool name_known;
    char name[kKeyNameBytes];
    int version;
    bool index_key;
    Oid decided_role;  // the search decision below is for this role and stamp
    uint64 decided_stamp;
    bool search_allowed;
};

// Few indexes are searched in one session; eight versions in use at once is plenty (the least
// recently used is re-keyed from the shared cache when a ninth comes).
constexpr int kLocalTagKeys = 8;
LocalTagKey local[kLocalTagKeys];
uint64 use_clock = 0;

bool revalidate(LocalTagKey &k, uint64 generation) {
    if (!key_cache_key_tagger(k.database, k.id, k.known, k.tagger)) {
        k.used = false;
        return false;
    }
    k.checked_generation = generation;
    return true;
}

LocalTagKey *lookup(const envelope::DekId &id) {
    const uint64 generation = key_cache_generation();
    LocalTagKey *found = nullptr;
    for (auto &k : local) {
        if (k.used && k.database == MyDatabaseId && k.id == id) found = &k;
    }
    if (found && found->checked_generation != generation && !revalidate(*found, generation))
        found = nullptr;
    if (!found) {
        LocalTagKey *victim = nullptr;
        for (auto &k : local) {
            if (!k.used) {
                victim = &k;
                break;
            }
            if (victim == nullptr || k.last_use < victim->last_use) victim = &k;
        }
        victim->tagger.reset();
        victim->used = true;
        victim->name_known = false;
        victim->index_key = false;
        victim->decided_role = InvalidOid;
        victim->database = MyDatabaseId;
        victim->id = id;
        victim->known = CachedKeyState{0, envelope::KeyUse::active};
        found = revalidate(*victim, generation) ? victim : nullptr;
    }
    if (found) found->last_use = ++use_clock;
    return found;
}

// The tag context of one index key version, loading the key through the keeper on a miss.
LocalTagKey *tag_key_for_id(const envelope::DekId &id) {
    ensure_preloaded();
    sweep_if_keyring_changed();
    LocalTagKey *k = lookup(id);
    if (!k) {
        load_key(id);  // raises when destroyed, unknown or the HSM cannot unwrap it
        k = lookup(id);
    }
    if (!k) {
        char uuid[37];
        envelope::format_uuid(id.data(), uuid);
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("index key %s was removed from the cache while loading it", uuid),
                        errhint("Retry the statement.")));
    }
    if (!k->name_known) {
        KeyringRow row = keyring_read(id);
        if (!row.found) {
            char uuid[37];
            envelope::format_uuid(id.data(), uuid);
            ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
                            errmsg("key %s does not exist in this database", uuid)));
        }
        strlcpy(k->name, row.name, sizeof k->name);
        k->version = row.version;
        k->index_key = row.index_key;
        k->name_known = true;
    }
    if (!k->index_key) raise_data_key_misuse(k->name);
    return k;
}

[[noreturn]] void raise_search_denied(LocalTagKey *k) {
    const char *role = GetUserNameFromId(GetUserId(), false);
    if (audit_enabled(audit_denials))
        audit_line("search", role, k->name, k->version, "denied", nullptr);
    ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                    errmsg("permission denied for key \"%s\"", k->name),
                    errdetail("Role \"%s\" lacks the search privilege on this index key.", role),
                    errhint("A superuser or a member of envelope_admin can grant it with "
                            "envelope.grant_key('%s', role, 'search').",
                            k->name),
                    errhidestmt(true), errhidecontext(true)));
}

void require_search(LocalTagKey *k) {
    const Oid user = GetUserId();
    const uint64 now = key_privilege_stamp();
    if (k->decided_role != user || k->decided_stamp != now) {
        k->search_allowed = role_has_key_privilege(user, k->name, KeyPrivilege::search);
        k->decided_role = user;
        k->decided_stamp = now;
    }
    if (!k->search_allowed) raise_search_denied(k);
}

void compute(LocalTagKey *k, SearchCheck check, Normalization norm, const char *data, size_t len,
             uint8 out[envelope::kTagSize]) {
    if (check == SearchCheck::required) require_search(k);
    // Format byte 1, then the normalisation: an index that folds case never shares a tag with
    // one that does not, even under the same key.
    const uint8 header[2] = {1, static_cast<uint8>(norm)};
    if (!k->tagger.tag({envelope::ByteView(header, sizeof header), envelope::ByteView(data, len)},
                       out)) {
        ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
                        errmsg("pg_envelope: the cryptographic library failed"), errhidestmt(true),
                        errhidecontext(true)));
    }
}

}  // namespace

void raise_data_key_misuse(const char *name) {
    ereport(ERROR, (errcode(ERRCODE_WRONG_OBJECT_TYPE),
                    errmsg("key \"%s\" is a data key, not an index key", name),
                    errdetail("Search tags are computed only under keys made for them."),
                    errhint("Create one with envelope.create_index_key()."), errhidestmt(true),
                    errhidecontext(true)));
}

void index_tag_by_name(const char *key_name, SearchCheck check, Normalization norm,
                       const char *data, size_t len, uint8 out[envelope::kTagSize],
                       envelope::DekId *used_id) {
    ensure_preloaded();
    envelope::DekId id;
    bool index_key = false;
    if (!keyring_find_active(key_name, id, &index_key)) {
        ereport(ERROR,
                (errcode(ERRCODE_UNDEFINED_OBJECT),
                 errmsg("index key \"%s\" does not exist or has no active version", key_name),
                 errdetail("An index whose key is destroyed cannot be searched or "
                           "written."),
                 errhint("Create index keys with envelope.create_index_key(); rotate "
                         "them with envelope.rotate_index_key()."),
                 errhidestmt(true), errhidecontext(true)));
    }
    if (!index_key) raise_data_key_misuse(key_name);
    compute(tag_key_for_id(id), check, norm, data, len, out);
    if (used_id) *used_id = id;
}

void index_tag_by_id(const envelope::DekId &id, SearchCheck check, Normalization norm,
                     const char *data, size_t len, uint8 out[envelope::kTagSize]) {
    compute(tag_key_for_id(id), check, norm, data, len, out);
}

}  // namespace envelope::pg
