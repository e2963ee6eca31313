// How a session gets the key for one value: the active version of a named key to seal, the
// exact DEK named in an envelope to open. Misses read the keyring and ask the keeper.
#pragma once
#include "boundary/pg_includes.hpp"
#include "session/cipher_cache.hpp"

namespace envelope::pg {

// A key usable for opening (active or decrypt-only version). Loads it through the keeper if it
// is not cached yet. Raises an ERROR naming the key when it is unknown or cannot be loaded.
LocalCipher *key_for_open(const envelope::DekId &id);

// The active version of a named key (NULL name: envelope.default_key), for sealing.
LocalCipher *key_for_seal(const char *name);

// Counts one seal under a key and warns once per session when the nonce budget runs low.
void count_seal(LocalCipher *key);

// Makes sure a DEK is in the shared cache (asking the keeper if needed). Raises on failure.
void load_key(const envelope::DekId &id);

// Evicts destroyed keys from the shared cache once after each keyring change seen here.
void sweep_if_keyring_changed();

// Raises 42809: an index key was named where a data key is needed.
[[noreturn]] void raise_index_key_misuse(const char *name);

// Raises 42704 unless this database's keyring has a row for the DEK (any state).
void require_keyring_row(const envelope::DekId &id);

}  // namespace envelope::pg
