// Per-session cipher contexts keyed from the shared key cache. The hot path checks the cache's
// generation counter only (no lock); a changed generation re-validates against the entry.
#pragma once
#include "boundary/pg_includes.hpp"
#include "db/keyring.hpp"
#include "shmem/key_cache.hpp"

namespace envelope::pg {

// Key-privilege decisions for one key, valid for one role and one privilege epoch.
struct PrivilegeDecisions {
    Oid role;
    uint64 stamp;
    bool allowed[2];  // indexed by KeyPrivilege
};

struct LocalCipher {
    envelope::AesGcmKey cipher;
    CachedKeyState known;  // what the shared entry looked like when cipher was keyed
    uint64 checked_generation;
    uint64 last_use;
    Oid database;
    envelope::DekId id;
    bool used;
    bool nonce_warned;  // the nonce-budget WARNING was given in this session
    bool name_known;    // name holds the key's name (read from the keyring on first check)
    bool index_key;     // read with the name: an index key never seals or opens a value
    char name[kKeyNameBytes];
    int version;     // the key's version (read with the name)
    int usage_slot;  // session/key_usage slot of (privileges.role, this key); valid once decided
    PrivilegeDecisions privileges;
};

// The keyed context for a DEK of this database, or nullptr when the shared cache lacks it.
LocalCipher *cipher_cache_lookup(const envelope::DekId &id);

// Makes every cached key's next privilege check a slow one (which re-assigns its usage slot).
void cipher_cache_forget_decisions();

}  // namespace envelope::pg
