// Backend side of the keeper protocol: post a request in shared memory, wake the keeper, wait.
#pragma once
#include "pg_includes.hpp"
#include "shared_state.hpp"

namespace envelope::pg {

struct UnwrapItem {
    DekId id;
    envelope::KeyState state;
    const uint8 *wrapped;
    uint32 wrapped_len;
    KeyError error;              // out
    char message[kMessageSize];  // out
};

// Asks the keeper to unwrap and cache keys of database `database`. Per-item results are written
// back; raises an ERROR only when the keeper cannot be reached at all (timeout, not ready).
void keeper_unwrap(Oid database, UnwrapItem *items, int count);

// Asks the keeper to generate, wrap and cache a new DEK. Raises an ERROR on failure.
void keeper_create(Oid database, const DekId &id, uint8 *wrapped_out, uint32 *wrapped_len,
                   char *kek_label_out);

// Drops a key (or all keys of a database if id is null) from the cache, wiping it. Backends
// may do this themselves: removal needs no HSM.
void cache_forget(Oid database, const DekId *id);

// Raises the ERROR that a request failure maps to.
void raise_key_error(KeyError error, const char *message, const char *key_description);

}  // namespace envelope::pg
