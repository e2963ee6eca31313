// Keeper side of the request protocol (see request_service.hpp and shmem/request_queue.hpp).
#include "keeper/request_service.hpp"
#include "shmem/keeper_status.hpp"

#include "wipe.hpp"

#include <signal.h>

#include <cerrno>

namespace envelope::pg {

namespace {

// The part of an entry that is plain data (everything before the condition variable).
constexpr size_t kRequestDataSize = offsetof(KeeperRequest, done_cv);

}  // namespace

void request_service_attach_keeper() {
    LWLockAcquire(request_queue_lock(), LW_EXCLUSIVE);
    request_queue()->keeper_latch = MyLatch;
    LWLockRelease(request_queue_lock());
}

void request_service_serve(PerformRequest perform) {
    RequestQueue *q = request_queue();
    for (auto &entry : q->entries) {
        LWLockAcquire(request_queue_lock(), LW_EXCLUSIVE);
        if (entry.state != RequestState::pending) {
            LWLockRelease(request_queue_lock());
            continue;
        }
        entry.state = RequestState::working;
        KeeperRequest in;
        memcpy(static_cast<void *>(&in), &entry, kRequestDataSize);
        LWLockRelease(request_queue_lock());

        KeeperRequest out;
        memset(static_cast<void *>(&out), 0, kRequestDataSize);
        perform(in, out);
        envelope::secure_zero(in.wrapped, sizeof in.wrapped);

        keeper_status_count_load(out.error == KeyError::none);
        LWLockAcquire(request_queue_lock(), LW_EXCLUSIVE);
        if (entry.state == RequestState::abandoned) {
            entry.state = RequestState::free;
            entry.requester_pid = 0;
        } else {
            entry.error = out.error;
            strlcpy(entry.message, out.message, sizeof entry.message);
            if (in.kind == RequestKind::create || in.kind == RequestKind::rewrap ||
                in.kind == RequestKind::import_legacy) {
                memcpy(entry.wrapped, out.wrapped, out.wrapped_len);
                entry.wrapped_len = out.wrapped_len;
                strlcpy(entry.kek_label, out.kek_label, sizeof entry.kek_label);
            }
            entry.state = RequestState::done;
        }
        LWLockRelease(request_queue_lock());
        ConditionVariableBroadcast(&entry.done_cv);
        ConditionVariableBroadcast(&q->entry_freed_cv);
    }
}

void request_service_reclaim() {
    RequestQueue *q = request_queue();
    bool freed = false;
    LWLockAcquire(request_queue_lock(), LW_EXCLUSIVE);
    for (auto &r : q->entries) {
        if (r.state == RequestState::free) continue;
        if (r.state == RequestState::working) {
            // The keeper serves one request at a time and none is in progress here: this one
            // was taken by a keeper that died. Answer it.
            r.error = KeyError::hsm_unavailable;
            strlcpy(r.message, "the pg_envelope keeper restarted", sizeof r.message);
            r.state = RequestState::done;
            ConditionVariableBroadcast(&r.done_cv);
        }
        const bool gone = r.requester_pid == 0 || (kill(r.requester_pid, 0) != 0 && errno == ESRCH);
        if (r.state == RequestState::abandoned || gone) {
            r.state = RequestState::free;
            r.requester_pid = 0;
            freed = true;
        }
    }
    LWLockRelease(request_queue_lock());
    if (freed) ConditionVariableBroadcast(&q->entry_freed_cv);
}

void request_service_fail_all(const char *message) {
    RequestQueue *q = request_queue();
    LWLockAcquire(request_queue_lock(), LW_EXCLUSIVE);
    q->keeper_latch = nullptr;
    for (auto &r : q->entries) {
        if (r.state == RequestState::pending || r.state == RequestState::working) {
            r.error = KeyError::hsm_unavailable;
            strlcpy(r.message, message, sizeof r.message);
            r.state = RequestState::done;
        } else if (r.state == RequestState::abandoned) {
            r.state = RequestState::free;
            r.requester_pid = 0;
        }
    }
    LWLockRelease(request_queue_lock());
    for (auto &r : q->entries) ConditionVariableBroadcast(&r.done_cv);
    ConditionVariableBroadcast(&q->entry_freed_cv);
}

}  // namespace envelope::pg
