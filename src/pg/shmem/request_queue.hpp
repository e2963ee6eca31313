// The keeper request queue in shared memory: fixed entries that sessions and loaders fill in
// and the keeper serves. Layout only; each side of the protocol has one home:
// session/keeper_client.cpp (requesters) and keeper/request_service.cpp (the keeper).
//
// Entry life cycle (all changes under the queue lock):
//   free -> claimed (a requester holds it and fills it in) -> pending -> working (the keeper
//   took it) -> done (results written) -> free (the requester copied them).
//   A requester that gives up frees a claimed or pending entry itself and marks a working one
//   abandoned; the keeper frees abandoned entries when it finishes them, and frees entries
//   whose requester process is gone.
#pragma once
#include "boundary/pg_includes.hpp"

#include "envelope_format.hpp"
#include "hsm_types.hpp"
#include "key_table.hpp"

namespace envelope::pg {

// What a request failed with, mapped to SQLSTATEs by the requesting side.
enum class KeyError : uint32 {
    none = 0,
    hsm_unavailable,  // keeper not ready (module, token, PIN, KEK problem)
    unwrap_failed,    // wrapped DEK did not authenticate: corrupted or swapped
    cache_full,       // envelope.max_keys reached
    malformed,        // wrapped bytes of the wrong size
    internal,
    legacy_kek_not_found,  // import_legacy: no secret key with the legacy KEK label
    legacy_kek_unusable,   // import_legacy: the token refused to decrypt with it
    no_token,              // import_legacy with envelope.kek_provider = ikm_command
};

enum class RequestKind : uint32 { unwrap = 1, create = 2, rewrap = 3, import_legacy = 4 };
enum class RequestState : uint32 { free = 0, claimed, pending, working, done, abandoned };

constexpr int kMaxRequests = 32;
constexpr int kMaxWrapped = 96;
constexpr int kRequestMessageSize = 256;
constexpr int kKekLabelSize = 64;
static_assert(envelope::kWrappedDekSize <= kMaxWrapped, "a wrapped DEK fits a request");

struct KeeperRequest {
    RequestState state;
    RequestKind kind;
    int requester_pid;
    Oid database;
    envelope::DekId id;
    uint8 wrapped[kMaxWrapped];  // unwrap: input; create: output; rewrap, import_legacy: input
                                 // (import_legacy: Trustpoint's 40 bytes), then output
    uint32 wrapped_len;
    envelope::KeyUse use;  // how to cache the key
    KeyError error;
    char message[kRequestMessageSize];
    char kek_label[kKekLabelSize];  // unwrap, rewrap: the KEK of the input ("" = the keeper's);
                                    // import_legacy: the legacy KEK of the input;
                                    // create, rewrap, import_legacy: then the KEK that wrapped
                                    // the output
    ConditionVariable done_cv;
};

struct RequestQueue {
    Latch *keeper_latch;  // set by the keeper while it runs
    ConditionVariable entry_freed_cv;
    KeeperRequest entries[kMaxRequests];
};

Size request_queue_shmem_size();
void request_queue_shmem_attach();

RequestQueue *request_queue();
LWLock *request_queue_lock();

}  // namespace envelope::pg
