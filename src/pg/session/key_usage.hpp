// Per-session key usage: seals, opens and denials are summed per (role, key version) in
// static per-backend slots (an increment on the per-value path, no lock) and added to the shared
// statistics (shmem/key_stats) at the end of each transaction. With envelope.audit = all the
// same flush writes at most one "use" audit line per role and key per minute per session.
// Audit lines (session/audit) never carry a value, a key byte or a wrapped key.
#pragma once
#include "boundary/pg_includes.hpp"
#include "session/cipher_cache.hpp"

namespace envelope::pg {

struct UsageSlot {
    bool used;
    Oid database;
    Oid role;
    envelope::DekId id;
    int version;
    int64 sealed;
    int64 opened;
    int64 denied;
    // envelope.audit = all: uses not yet written to the log, and when the last line was.
    int64 audit_sealed;
    int64 audit_opened;
    TimestampTz audit_logged_at;
    char name[kKeyNameBytes];     // the key's name, for audit lines
    char role_name[NAMEDATALEN];  // read when the slot is assigned: audit lines are written
                                  // at transaction end, where no catalog may be read
};

constexpr int kUsageSlots = 128;
extern UsageSlot usage_slots[kUsageSlots];

// Points key->usage_slot at the slot of (current database, role, key); called where privilege
// decisions are made, so every counted use has a slot. May flush all slots when they are full.
void usage_assign_slot(LocalCipher *key, Oid role);

inline void usage_count_seal(LocalCipher *key) {
    usage_slots[key->usage_slot].sealed++;
}
inline void usage_count_open(LocalCipher *key) {
    usage_slots[key->usage_slot].opened++;
}
inline void usage_count_denial(LocalCipher *key) {
    usage_slots[key->usage_slot].denied++;
}

}  // namespace envelope::pg
