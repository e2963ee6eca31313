// Layout of pg_envelope's shared memory: keeper status, the keeper request queue and the DEK
// cache, plus the functions that attach to it.
#pragma once
#include "pg_includes.hpp"
#include "key_table.hpp"

namespace envelope::pg {

enum class KeeperState : uint32 {
    not_started = 0,  // postmaster has not started the keeper yet
    connecting,       // loading the module / logging in
    loading,          // HSM ready, loading keyrings of databases
    ready,            // HSM ready, serving requests
    failed,           // HSM unusable; retrying with backoff
};
const char *keeper_state_name(KeeperState s);

// What a request or an HSM step failed with, mapped to SQLSTATEs by the backend side.
enum class KeyError : uint32 {
    none = 0,
    hsm_unavailable,  // keeper not ready (module, token, PIN, KEK problem)
    unwrap_failed,    // wrapped DEK did not authenticate: corrupted or swapped
    cache_full,       // envelope.max_keys reached
    malformed,        // wrapped bytes of the wrong size
    internal,
};

enum class RequestKind : uint32 { unwrap = 1, create = 2 };
enum class RequestState : uint32 { free = 0, pending, working, done, abandoned };

constexpr int kMaxRequests = 32;
constexpr int kMaxWrapped = 96;
constexpr int kMessageSize = 256;
constexpr int kLabelSize = 64;

struct KeeperRequest {
    RequestState state;
    RequestKind kind;
    int requester_pid;
    Oid database;
    DekId id;
    uint8 wrapped[kMaxWrapped];  // unwrap: input; create: output
    uint32 wrapped_len;
    envelope::KeyState key_state;  // state to cache the key in
    KeyError error;
    char message[kMessageSize];
    char kek_label[kLabelSize];  // create: the KEK that wrapped the new DEK
    ConditionVariable done_cv;
};

struct KeeperStatus {
    KeeperState state;
    int pid;
    int attempts;  // consecutive failed connection attempts
    bool kek_found;
    char module[MAXPGPATH];
    char token_label[kLabelSize];
    char kek_label[kLabelSize];
    char last_error[kMessageSize];
    TimestampTz last_error_at;
    TimestampTz ready_at;
    TimestampTz next_retry_at;
    int databases_loaded;
    int64 keys_loaded;
    int64 load_failures;
    double last_load_ms;
};

struct SharedState {
    LWLock *cache_lock;    // KeyTable: shared for lookups, exclusive for changes
    LWLock *request_lock;  // requests[] and status
    Latch *keeper_latch;
    ConditionVariable request_freed_cv;
    KeeperStatus status;
    KeeperRequest requests[kMaxRequests];
    // KeyTable region follows, aligned
};

// Set in _PG_init from envelope.max_keys.
extern int max_keys_setting;

Size shared_state_size();
void shared_state_request();  // from shmem_request_hook
void shared_state_startup();  // from shmem_startup_hook

// Attached pointers (valid in every process after startup).
SharedState *shared_state();
envelope::KeyTable &key_table();

// True once shared_preload_libraries loaded us (otherwise SQL functions refuse to run).
bool loaded_via_preload();
void ensure_preloaded();

}  // namespace envelope::pg
