// Backend side of the keeper protocol (shared-memory request slots, latch, condition variables).
#include "keeper_client.hpp"
#include "settings.hpp"

#include <algorithm>
#include <cstring>

namespace envelope::pg {

namespace {

constexpr int kBatch = kMaxRequests / 2;  // leave room for other backends

TimestampTz deadline_from_now() {
    return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), setting_request_timeout_ms);
}

long remaining_ms(TimestampTz deadline) {
    long ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
    return ms;
}

[[noreturn]] void raise_timeout() {
    ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                    errmsg("timed out waiting for the pg_envelope keeper"),
                    errdetail("No answer within envelope.request_timeout (%d ms).",
                              setting_request_timeout_ms),
                    errhint("Check SELECT * FROM envelope.status() and the server log.")));
}

// Fails fast when the keeper already knows the HSM is unusable.
void check_keeper_usable() {
    SharedState *s = shared_state();
    char reason[kMessageSize];
    bool failed = false;
    LWLockAcquire(s->request_lock, LW_SHARED);
    if (s->status.state == KeeperState::failed) {
        failed = true;
        strlcpy(reason, s->status.last_error, sizeof reason);
    }
    LWLockRelease(s->request_lock);
    if (failed) raise_key_error(KeyError::hsm_unavailable, reason, nullptr);
}

// Claims a free request slot, waiting for one until the deadline. Returns its index.
int claim_slot(TimestampTz deadline) {
    SharedState *s = shared_state();
    for (;;) {
        LWLockAcquire(s->request_lock, LW_EXCLUSIVE);
        for (int i = 0; i < kMaxRequests; ++i) {
            KeeperRequest &r = s->requests[i];
            if (r.state == RequestState::free) {
                r.state = RequestState::abandoned;  // reserved; filled in by the caller
                r.requester_pid = MyProcPid;
                LWLockRelease(s->request_lock);
                ConditionVariableCancelSleep();
                return i;
            }
        }
        LWLockRelease(s->request_lock);
        long ms = remaining_ms(deadline);
        if (ms <= 0) {
            ConditionVariableCancelSleep();
            raise_timeout();
        }
        ConditionVariableTimedSleep(&s->request_freed_cv, ms, PG_WAIT_EXTENSION);
    }
}

void wake_keeper() {
    SharedState *s = shared_state();
    LWLockAcquire(s->request_lock, LW_SHARED);
    Latch *latch = s->keeper_latch;
    LWLockRelease(s->request_lock);
    if (latch) SetLatch(latch);
}

// Releases slots this backend still holds after an error: pending ones are freed, ones the
// keeper is working on are left for it to free.
void release_slots(const int *slots, int count) {
    SharedState *s = shared_state();
    LWLockAcquire(s->request_lock, LW_EXCLUSIVE);
    for (int i = 0; i < count; ++i) {
        if (slots[i] < 0) continue;
        KeeperRequest &r = s->requests[slots[i]];
        if (r.requester_pid != MyProcPid) continue;
        if (r.state == RequestState::working) {
            r.state = RequestState::abandoned;
        } else {
            r.state = RequestState::free;
            r.requester_pid = 0;
        }
    }
    LWLockRelease(s->request_lock);
    ConditionVariableBroadcast(&s->request_freed_cv);
}

// Waits until slot is done, then copies its results with `take` and frees it.
template <typename Take>
void wait_done(int slot, TimestampTz deadline, Take &&take) {
    SharedState *s = shared_state();
    KeeperRequest &r = s->requests[slot];
    for (;;) {
        LWLockAcquire(s->request_lock, LW_EXCLUSIVE);
        if (r.state == RequestState::done) {
            take(r);
            r.state = RequestState::free;
            r.requester_pid = 0;
            LWLockRelease(s->request_lock);
            ConditionVariableCancelSleep();
            ConditionVariableBroadcast(&s->request_freed_cv);
            return;
        }
        LWLockRelease(s->request_lock);
        long ms = remaining_ms(deadline);
        if (ms <= 0) {
            ConditionVariableCancelSleep();
            raise_timeout();
        }
        ConditionVariableTimedSleep(&r.done_cv, ms, PG_WAIT_EXTENSION);
    }
}

void post(int slot) {
    SharedState *s = shared_state();
    LWLockAcquire(s->request_lock, LW_EXCLUSIVE);
    s->requests[slot].state = RequestState::pending;
    LWLockRelease(s->request_lock);
}

}  // namespace

void raise_key_error(KeyError error, const char *message, const char *key_description) {
    const char *what = key_description ? key_description : "the requested key";
    switch (error) {
        case KeyError::none:
            return;
        case KeyError::hsm_unavailable:
            ereport(ERROR,
                    (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                     errmsg("the HSM is not available to pg_envelope"), errdetail("%s", message),
                     errhint("Check SELECT * FROM envelope.status(); fix the envelope.* "
                             "settings or the token and reload the configuration.")));
        case KeyError::unwrap_failed:
            ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED), errmsg("cannot unwrap %s", what),
                            errdetail("%s", message),
                            errhint("The wrapped key in envelope.keyring was modified or copied "
                                    "from another key row; restore it from a backup.")));
        case KeyError::cache_full:
            ereport(ERROR, (errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
                            errmsg("the pg_envelope key cache is full"), errdetail("%s", message),
                            errhint("Raise envelope.max_keys and restart the server.")));
        case KeyError::malformed:
            ereport(ERROR,
                    (errcode(ERRCODE_DATA_CORRUPTED),
                     errmsg("wrapped key of %s is malformed", what), errdetail("%s", message)));
        case KeyError::internal:
            ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
                            errmsg("pg_envelope keeper failed: %s", message)));
    }
}

void keeper_unwrap(Oid database, UnwrapItem *items, int count) {
    ensure_preloaded();
    check_keeper_usable();
    SharedState *s = shared_state();
    for (int base = 0; base < count; base += kBatch) {
        const int n = std::min(kBatch, count - base);
        int slots[kBatch];
        for (int i = 0; i < n; ++i) slots[i] = -1;
        int *volatile held = slots;
        TimestampTz deadline = deadline_from_now();
        PG_TRY();
        {
            for (int i = 0; i < n; ++i) {
                UnwrapItem &item = items[base + i];
                int slot = claim_slot(deadline);
                slots[i] = slot;
                KeeperRequest &r = s->requests[slot];
                r.kind = RequestKind::unwrap;
                r.database = database;
                r.id = item.id;
                r.key_state = item.state;
                r.wrapped_len = std::min<uint32>(item.wrapped_len, kMaxWrapped);
                memcpy(r.wrapped, item.wrapped, r.wrapped_len);
                r.error = KeyError::none;
                r.message[0] = '\0';
                if (item.wrapped_len > kMaxWrapped) {
                    r.wrapped_len = 0;  // the keeper reports it as malformed
                }
                post(slot);
            }
            wake_keeper();
            for (int i = 0; i < n; ++i) {
                UnwrapItem &item = items[base + i];
                wait_done(slots[i], deadline, [&](KeeperRequest &r) {
                    item.error = r.error;
                    strlcpy(item.message, r.message, sizeof item.message);
                });
                slots[i] = -1;
            }
        }
        PG_CATCH();
        {
            release_slots(held, n);
            PG_RE_THROW();
        }
        PG_END_TRY();
    }
}

void keeper_create(Oid database, const DekId &id, uint8 *wrapped_out, uint32 *wrapped_len,
                   char *kek_label_out) {
    ensure_preloaded();
    check_keeper_usable();
    SharedState *s = shared_state();
    int slot_holder[1] = {-1};
    int *volatile held = slot_holder;
    KeyError error = KeyError::none;
    char message[kMessageSize] = {};
    TimestampTz deadline = deadline_from_now();
    PG_TRY();
    {
        int slot = claim_slot(deadline);
        slot_holder[0] = slot;
        KeeperRequest &r = s->requests[slot];
        r.kind = RequestKind::create;
        r.database = database;
        r.id = id;
        r.key_state = envelope::KeyState::active;
        r.wrapped_len = 0;
        r.error = KeyError::none;
        r.message[0] = '\0';
        post(slot);
        wake_keeper();
        wait_done(slot, deadline, [&](KeeperRequest &done) {
            error = done.error;
            strlcpy(message, done.message, sizeof message);
            *wrapped_len = done.wrapped_len;
            memcpy(wrapped_out, done.wrapped, done.wrapped_len);
            strlcpy(kek_label_out, done.kek_label, kLabelSize);
        });
        slot_holder[0] = -1;
    }
    PG_CATCH();
    {
        release_slots(held, 1);
        PG_RE_THROW();
    }
    PG_END_TRY();
    raise_key_error(error, message, "the new key");
}

void cache_forget(Oid database, const DekId *id) {
    ensure_preloaded();
    SharedState *s = shared_state();
    LWLockAcquire(s->cache_lock, LW_EXCLUSIVE);
    if (id) {
        key_table().remove(database, *id);
    } else {
        key_table().remove_database(database);
    }
    LWLockRelease(s->cache_lock);
}

}  // namespace envelope::pg
