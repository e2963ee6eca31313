// The keeper's status record (see keeper_status.hpp); the status lock guards nothing else.
#include "shmem/keeper_status.hpp"
#include "shmem/shmem.hpp"

namespace envelope::pg {

namespace {

KeeperStatus *status = nullptr;

template <typename Fn>
void edit(Fn &&fn) {
    LWLock *lock = shared_lock(SharedLock::keeper_status);
    LWLockAcquire(lock, LW_EXCLUSIVE);
    fn(*status);
    LWLockRelease(lock);
}

}  // namespace

const char *keeper_state_name(KeeperState s) {
    switch (s) {
        case KeeperState::not_started:
            return "not started";
        case KeeperState::connecting:
            return "connecting";
        case KeeperState::loading:
            return "loading keys";
        case KeeperState::ready:
            return "ready";
        case KeeperState::failed:
            return "failed";
    }
    return "unknown";
}

Size keeper_status_shmem_size() {
    return MAXALIGN(sizeof(KeeperStatus));
}

void keeper_status_shmem_attach() {
    bool found = false;
    status = static_cast<KeeperStatus *>(
        ShmemInitStruct("pg_envelope keeper status", keeper_status_shmem_size(), &found));
    if (!found) {
        memset(status, 0, sizeof *status);
        status->state = KeeperState::not_started;
    }
}

KeeperStatus keeper_status_snapshot() {
    LWLock *lock = shared_lock(SharedLock::keeper_status);
    LWLockAcquire(lock, LW_SHARED);
    KeeperStatus copy = *status;
    LWLockRelease(lock);
    return copy;
}

bool keeper_status_failed(char reason[kStatusMessageSize]) {
    LWLock *lock = shared_lock(SharedLock::keeper_status);
    LWLockAcquire(lock, LW_SHARED);
    bool failed = status->state == KeeperState::failed;
    if (failed) strlcpy(reason, status->last_error, kStatusMessageSize);
    LWLockRelease(lock);
    return failed;
}

void keeper_status_started(int pid) {
    edit([&](KeeperStatus &s) {
        s.pid = pid;
        s.state = KeeperState::connecting;
    });
}

void keeper_status_exited() {
    edit([](KeeperStatus &s) {
        s.pid = 0;
        s.state = KeeperState::not_started;
    });
}

void keeper_status_connecting(const char *module, const char *token, const char *kek) {
    edit([&](KeeperStatus &s) {
        s.state = KeeperState::connecting;
        strlcpy(s.module, module, sizeof s.module);
        strlcpy(s.token_label, token, sizeof s.token_label);
        strlcpy(s.kek_label, kek, sizeof s.kek_label);
    });
}

void keeper_status_failure(const char *message, bool kek_found, TimestampTz retry_at) {
    TimestampTz now = GetCurrentTimestamp();
    edit([&](KeeperStatus &s) {
        s.state = KeeperState::failed;
        s.kek_found = kek_found;
        s.attempts++;
        strlcpy(s.last_error, message, sizeof s.last_error);
        s.last_error_at = now;
        s.next_retry_at = retry_at;
    });
}

void keeper_status_connected(bool ready) {
    edit([&](KeeperStatus &s) {
        if (ready) s.state = KeeperState::ready;
        s.kek_found = true;
        s.attempts = 0;
        s.last_error[0] = '\0';
    });
}

void keeper_status_wrapping(const char *provider, const char *mechanism) {
    edit([&](KeeperStatus &s) {
        strlcpy(s.kek_provider, provider, sizeof s.kek_provider);
        strlcpy(s.wrap_mechanism, mechanism, sizeof s.wrap_mechanism);
    });
}

void keeper_status_loading() {
    edit([](KeeperStatus &s) {
        s.state = KeeperState::loading;
        s.databases_loaded = 0;
        s.keys_loaded = 0;
        s.load_failures = 0;
    });
}

void keeper_status_count_load(bool loaded) {
    edit([&](KeeperStatus &s) {
        if (loaded) {
            s.keys_loaded++;
        } else {
            s.load_failures++;
        }
    });
}

void keeper_status_ready(int databases_loaded, double load_ms, int64 *keys, int64 *failures) {
    TimestampTz now = GetCurrentTimestamp();
    edit([&](KeeperStatus &s) {
        s.state = KeeperState::ready;
        s.databases_loaded = databases_loaded;
        s.last_load_ms = load_ms;
        s.ready_at = now;
        *keys = s.keys_loaded;
        *failures = s.load_failures;
    });
}

}  // namespace envelope::pg
