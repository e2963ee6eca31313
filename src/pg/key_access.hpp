// Backend access to DEKs: a per-backend cache of keyed cipher contexts in front of the shared
// cache, the keyring lookups behind a miss, and name -> active key resolution.
#pragma once
#include "pg_includes.hpp"
#include "aes_gcm.hpp"
#include "envelope_format.hpp"

namespace envelope::pg {

struct KeyHandle {
    envelope::AesGcmKey *cipher;
    int slot;  // shared cache slot, for the encryption counter
    envelope::DekId id;
};

// A key usable for decryption (active or decrypt-only). Loads it through the keeper if it is
// not cached yet. Raises an ERROR naming the key when it is unknown or cannot be loaded.
KeyHandle key_for_decrypt(const envelope::DekId &id);

// The active key of a named key (NULL name: envelope.default_key) for encryption.
KeyHandle key_for_encrypt(const char *name);

// Counts one encryption under a key and warns when the nonce budget runs low.
void count_encryption(const KeyHandle &key);

// Reads the keyring row of id as the keyring owner. False if there is no such row.
struct KeyringRow {
    bool found;
    char state[16];
    char name[NAMEDATALEN * 2];
    int version;
    bytea *wrapped;  // palloc'd in the caller's context, or nullptr
};
KeyringRow read_keyring_row(const envelope::DekId &id);

// Makes sure the key is in the shared cache (asking the keeper if needed). Raises on failure.
void ensure_cached(const envelope::DekId &id);

// Formats a DEK id as a UUID string into out (37 bytes).
void format_dek_id(const envelope::DekId &id, char out[37]);

}  // namespace envelope::pg
