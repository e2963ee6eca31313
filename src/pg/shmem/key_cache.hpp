// The shared-memory DEK cache: the only module that touches the KeyTable or takes its lock.
// Readers check the generation counter lock-free; everything else goes through these calls.
#pragma once
#include "boundary/pg_includes.hpp"

#include "aes_gcm.hpp"
#include "key_table.hpp"
#include "tag_key.hpp"

namespace envelope::pg {

using envelope::DekId;
using envelope::KeyUse;

// Set in _PG_init from envelope.max_keys.
extern int max_keys_setting;

Size key_cache_shmem_size();
void key_cache_shmem_attach();

// Bumped on every change; equal values mean nothing in the cache changed (no lock needed).
uint64 key_cache_generation();

bool key_cache_contains(Oid database, const DekId &id);

// Installs (or refreshes) a key. False when envelope.max_keys keys are cached already.
bool key_cache_install(Oid database, const DekId &id, const uint8 key[envelope::kDekSize],
                       KeyUse use, uint64 encryptions_so_far);
// Removes a key (or every key of a database), wiping its bytes.
void key_cache_forget(Oid database, const DekId &id);
void key_cache_forget_database(Oid database);

// What a session keeps about a cached key to notice when it changes.
struct CachedKeyState {
    uint64 change_count;
    KeyUse use;
};
// Brings a session's cipher context up to date with the cache: when the entry changed since
// `known` (or cipher is not keyed), keys cipher from the entry's bytes. False if the key is not
// cached (or keying failed); the cipher is then reset.
bool key_cache_key_cipher(Oid database, const DekId &id, CachedKeyState &known,
                          envelope::AesGcmKey &cipher);

// The same for a session's tag context of an index key (session/index_keys).
bool key_cache_key_tagger(Oid database, const DekId &id, CachedKeyState &known,
                          envelope::TagKey &tagger);

// Counts one seal under a key: the new count and the count reserved on disk so far
// (cached = false if the key is not cached).
struct SealCount {
    bool cached;
    uint64 count;
    uint64 reserved;
};
SealCount key_cache_count_encryption(Oid database, const DekId &id);
// The reserved count of a cached key (0 if not cached), and raising it (never lowers it).
uint64 key_cache_reserved(Oid database, const DekId &id);
void key_cache_raise_reserved(Oid database, const DekId &id, uint64 to);
// Values sealed under a key so far, or -1 if it is not cached.
int64 key_cache_encryptions(Oid database, const DekId &id);
// The public key check value of a cached key into out (17 bytes). False if not cached; *ok
// reports whether computing it succeeded.
bool key_cache_check_value(Oid database, const DekId &id, char out[17], bool *ok);

struct KeyCacheCounts {
    int in_database;
    int total;
    int capacity;
};
KeyCacheCounts key_cache_counts(Oid database);

// Copies (database, id, encryptions) of every cached key into out (room for `room` entries,
// allocated by the caller before the call). Returns how many were copied.
struct CachedKeyCount {
    Oid database;
    DekId id;
    uint64 encryptions;
};
int key_cache_copy_counts(CachedKeyCount *out, int room);
int key_cache_capacity();

}  // namespace envelope::pg
