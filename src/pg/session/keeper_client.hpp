// Requester side of the keeper protocol (sessions and loaders): claim a queue entry, fill it
// in, wake the keeper, wait. See shmem/request_queue.hpp for the entry life cycle.
#pragma once
#include "boundary/pg_includes.hpp"
#include "shmem/request_queue.hpp"

namespace envelope::pg {

struct UnwrapItem {
    envelope::DekId id;
    envelope::KeyUse use;
    const uint8 *wrapped;
    uint32 wrapped_len;
    const char *kek_label;              // the KEK that wrapped it (nullptr = the keeper's)
    KeyError error;                     // out
    char message[kRequestMessageSize];  // out
};

// Asks the keeper to unwrap and cache keys of database `database`. Per-item results are written
// back; raises an ERROR only when the keeper cannot be reached at all (timeout, not ready).
void keeper_unwrap(Oid database, UnwrapItem *items, int count);

// Asks the keeper to generate, wrap and cache a new DEK. Raises an ERROR on failure.
void keeper_create(Oid database, const envelope::DekId &id, uint8 *wrapped_out, uint32 *wrapped_len,
                   char kek_label_out[kKekLabelSize]);

// KEK rotation: asks the keeper to wrap a DEK again, under the KEK it is connected to
// (envelope.kek_label). wrapped/wrapped_len are replaced; kek_label_out names the new KEK.
// Raises an ERROR on failure.
void keeper_rewrap(Oid database, const envelope::DekId &id, const char *old_kek_label,
                   uint8 *wrapped, uint32 *wrapped_len, char kek_label_out[kKekLabelSize]);

// Trustpoint migration: asks the keeper to decrypt a legacy wrapped DEK (8 bytes || AES-ECB
// under the token key labelled legacy_kek_label) inside the token, wrap it bound to id under its
// KEK, and cache it as an active key. Outputs as for keeper_create. Raises an ERROR on failure.
void keeper_import_legacy(Oid database, const envelope::DekId &id, const char *legacy_kek_label,
                          const uint8 *legacy_wrapped, uint32 legacy_len, uint8 *wrapped_out,
                          uint32 *wrapped_len, char kek_label_out[kKekLabelSize]);

// Raises the ERROR that a request failure maps to (returns for KeyError::none).
void raise_key_error(KeyError error, const char *message, const char *key_description);

}  // namespace envelope::pg
