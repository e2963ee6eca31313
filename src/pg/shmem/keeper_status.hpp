// What the keeper reports about itself and the HSM, under its own lock. The keeper writes it;
// sessions read snapshots (envelope.status(), fail-fast checks).
#pragma once
#include "boundary/pg_includes.hpp"

namespace envelope::pg {

enum class KeeperState : uint32 {
    not_started = 0,  // postmaster has not started the keeper yet
    connecting,       // loading the module / logging in
    loading,          // HSM ready, loading keyrings of databases
    ready,            // HSM ready, serving requests
    failed,           // HSM unusable; retrying with backoff
};
const char *keeper_state_name(KeeperState s);

constexpr int kStatusMessageSize = 256;
constexpr int kLabelSize = 64;

struct KeeperStatus {
    KeeperState state;
    int pid;
    int attempts;  // consecutive failed connection attempts
    bool kek_found;
    char module[MAXPGPATH];
    char token_label[kLabelSize];
    char kek_label[kLabelSize];
    char kek_provider[kLabelSize];    // "pkcs11" or "ikm_command"
    char wrap_mechanism[kLabelSize];  // how new DEKs are wrapped, e.g. "CKM_AES_GCM"
    char last_error[kStatusMessageSize];
    TimestampTz last_error_at;
    TimestampTz ready_at;
    TimestampTz next_retry_at;
    int databases_loaded;  // by the start-up load
    int64 keys_loaded;     // put in the cache since the keeper started (load and requests)
    int64 load_failures;   // could not be unwrapped since the keeper started
    double last_load_ms;   // duration of the start-up load
};

Size keeper_status_shmem_size();
void keeper_status_shmem_attach();

// Readers (any process).
KeeperStatus keeper_status_snapshot();
// True (and the reason copied) when the keeper knows the HSM is unusable.
bool keeper_status_failed(char reason[kStatusMessageSize]);

// Writers (the keeper only).
void keeper_status_started(int pid);
void keeper_status_exited();
void keeper_status_connecting(const char *module, const char *token, const char *kek);
void keeper_status_failure(const char *message, bool kek_found, TimestampTz retry_at);
// Logged in with the KEK found; `ready` when start-up loading is over (a reconnection).
void keeper_status_connected(bool ready);
void keeper_status_loading();
// The provider and wrapping mechanism of the current connection ("" when disconnected).
void keeper_status_wrapping(const char *provider, const char *mechanism);
// Counts a key put in the cache (or one that could not be), at start-up and afterwards.
void keeper_status_count_load(bool loaded);
// Marks the keeper ready; returns the keys loaded and failures counted while loading.
void keeper_status_ready(int databases_loaded, double load_ms, int64 *keys, int64 *failures);

}  // namespace envelope::pg
