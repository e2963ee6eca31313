// Per-session key usage sums and their flush at transaction end (see key_usage.hpp).
#include "session/key_usage.hpp"
#include "session/audit.hpp"
#include "shmem/key_stats.hpp"
#include "shmem/shmem.hpp"

#include <cstdio>

namespace envelope::pg {

UsageSlot usage_slots[kUsageSlots];

namespace {

constexpr long kAuditUseIntervalMs = 60 * 1000;
bool callbacks_registered = false;

void write_use_lines(TimestampTz now) {
    for (auto &s : usage_slots) {
        if (!s.used) continue;
        s.audit_sealed += s.sealed;
        s.audit_opened += s.opened;
        if (s.audit_sealed + s.audit_opened == 0) continue;
        if (s.audit_logged_at != 0 &&
            !TimestampDifferenceExceeds(s.audit_logged_at, now, kAuditUseIntervalMs))
            continue;
        char extra[96];
        snprintf(extra, sizeof extra, "sealed=%lld opened=%lld",
                 static_cast<long long>(s.audit_sealed), static_cast<long long>(s.audit_opened));
        audit_line("use", s.role_name, s.name, s.version, "allowed", extra);
        s.audit_sealed = s.audit_opened = 0;
        s.audit_logged_at = now;
    }
}

// Adds every slot's sums to the shared statistics and zeroes them.
void flush(bool write_audit) {
    if (!loaded_via_preload()) return;
    KeyStatsRow rows[kUsageSlots];
    int n = 0;
    for (auto &s : usage_slots) {
        if (!s.used || s.sealed + s.opened + s.denied == 0) continue;
        rows[n++] = KeyStatsRow{{s.database, s.role, s.id}, s.sealed, s.opened, s.denied, 0, 0};
    }
    if (n == 0) return;
    const TimestampTz now = GetCurrentTimestamp();
    key_stats_add(rows, n, now);
    if (write_audit && audit_enabled(audit_all)) write_use_lines(now);
    for (auto &s : usage_slots) s.sealed = s.opened = s.denied = 0;
}

void on_transaction_end(XactEvent event, void *) {
    switch (event) {
        case XACT_EVENT_COMMIT:
        case XACT_EVENT_PARALLEL_COMMIT:
        case XACT_EVENT_ABORT:
        case XACT_EVENT_PARALLEL_ABORT:
        case XACT_EVENT_PREPARE:
            flush(true);
            break;
        default:
            break;
    }
}

}  // namespace

void usage_assign_slot(LocalCipher *key, Oid role) {
    if (!callbacks_registered) {
        RegisterXactCallback(on_transaction_end, nullptr);
        callbacks_registered = true;
    }
    UsageSlot *free_slot = nullptr;
    for (auto &s : usage_slots) {
        if (s.used && s.role == role && s.database == MyDatabaseId && s.id == key->id) {
            key->usage_slot = static_cast<int>(&s - usage_slots);
            return;
        }
        if (!s.used && free_slot == nullptr) free_slot = &s;
    }
    if (free_slot == nullptr) {
        // Full: add the sums to the shared table, start over, and make every cached key pick a
        // slot again (its next privilege check is a slow one).
        flush(false);
        memset(usage_slots, 0, sizeof usage_slots);
        cipher_cache_forget_decisions();
        free_slot = &usage_slots[0];
    }
    UsageSlot &s = *free_slot;
    memset(&s, 0, sizeof s);
    s.used = true;
    s.database = MyDatabaseId;
    s.role = role;
    s.id = key->id;
    s.version = key->version;
    strlcpy(s.name, key->name, sizeof s.name);
    const char *role_name = GetUserNameFromId(role, true);
    strlcpy(s.role_name, role_name ? role_name : "?", sizeof s.role_name);
    key->usage_slot = static_cast<int>(&s - usage_slots);
}

}  // namespace envelope::pg
