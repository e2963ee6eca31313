// Requester side of the keeper protocol (queue entries, the keeper's latch, condition variables).
#include "session/keeper_client.hpp"
#include "postmaster/settings.hpp"
#include "shmem/keeper_status.hpp"
#include "shmem/shmem.hpp"

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
    char reason[kStatusMessageSize];
    if (keeper_status_failed(reason)) raise_key_error(KeyError::hsm_unavailable, reason, nullptr);
}

// Gives an entry this process holds back: a working one is left for the keeper to free.
void give_back(KeeperRequest &r) {
    if (r.state == RequestState::working) {
        r.state = RequestState::abandoned;
    } else {
        r.state = RequestState::free;
        r.requester_pid = 0;
    }
}

// However this process ends (FATAL from pg_terminate_backend, a lost client, proc_exit), the
// entries it holds go back: claimed, pending and done ones are freed, working ones marked
// abandoned for the keeper. (An ERROR releases them in keeper_unwrap/keeper_create; after a
// SIGKILL the postmaster reinitialises shared memory; the keeper also reclaims entries of
// processes that are gone.)
void release_all_on_exit(int, Datum) {
    RequestQueue *q = request_queue();
    if (q == nullptr) return;
    LWLockAcquire(request_queue_lock(), LW_EXCLUSIVE);
    for (auto &r : q->entries) {
        if (r.requester_pid == MyProcPid && r.state != RequestState::free) give_back(r);
    }
    LWLockRelease(request_queue_lock());
    ConditionVariableBroadcast(&q->entry_freed_cv);
}

// Claims a free entry, waiting for one until the deadline. Returns its index.
int claim_entry(TimestampTz deadline) {
    static bool exit_callback_registered = false;
    if (!exit_callback_registered) {
        before_shmem_exit(release_all_on_exit, 0);
        exit_callback_registered = true;
    }
    RequestQueue *q = request_queue();
    for (;;) {
        LWLockAcquire(request_queue_lock(), LW_EXCLUSIVE);
        for (int i = 0; i < kMaxRequests; ++i) {
            KeeperRequest &r = q->entries[i];
            if (r.state == RequestState::free) {
                r.state = RequestState::claimed;
                r.requester_pid = MyProcPid;
                LWLockRelease(request_queue_lock());
                ConditionVariableCancelSleep();
                return i;
            }
        }
        LWLockRelease(request_queue_lock());
        long ms = remaining_ms(deadline);
        if (ms <= 0) {
            ConditionVariableCancelSleep();
            raise_timeout();
        }
        ConditionVariableTimedSleep(&q->entry_freed_cv, ms, PG_WAIT_EXTENSION);
    }
}

void wake_keeper() {
    LWLockAcquire(request_queue_lock(), LW_SHARED);
    Latch *latch = request_queue()->keeper_latch;
    LWLockRelease(request_queue_lock());
    if (latch) SetLatch(latch);
}

// Gives back entries this process still holds after an error: claimed and pending ones are
// freed, ones the keeper is working on are marked abandoned for the keeper to free.
void release_entries(const int *entries, int count) {
    RequestQueue *q = request_queue();
    LWLockAcquire(request_queue_lock(), LW_EXCLUSIVE);
    for (int i = 0; i < count; ++i) {
        if (entries[i] < 0) continue;
        KeeperRequest &r = q->entries[entries[i]];
        if (r.requester_pid == MyProcPid) give_back(r);
    }
    LWLockRelease(request_queue_lock());
    ConditionVariableBroadcast(&q->entry_freed_cv);
}

// Waits until the entry is done, then copies its results with `take` and frees it.
template <typename Take>
void wait_done(int entry, TimestampTz deadline, Take &&take) {
    RequestQueue *q = request_queue();
    KeeperRequest &r = q->entries[entry];
    for (;;) {
        LWLockAcquire(request_queue_lock(), LW_EXCLUSIVE);
        if (r.state == RequestState::done) {
            take(r);
            r.state = RequestState::free;
            r.requester_pid = 0;
            LWLockRelease(request_queue_lock());
            ConditionVariableCancelSleep();
            ConditionVariableBroadcast(&q->entry_freed_cv);
            return;
        }
        LWLockRelease(request_queue_lock());
        long ms = remaining_ms(deadline);
        if (ms <= 0) {
            ConditionVariableCancelSleep();
            raise_timeout();
        }
        ConditionVariableTimedSleep(&r.done_cv, ms, PG_WAIT_EXTENSION);
    }
}

void post(int entry) {
    LWLockAcquire(request_queue_lock(), LW_EXCLUSIVE);
    request_queue()->entries[entry].state = RequestState::pending;
    LWLockRelease(request_queue_lock());
}

}  // namespace

void raise_key_error(KeyError error, const char *message, const char *key_description) {
    const char *what = key_description ? key_description : "the requested key";
    switch (error) {
        case KeyError::none:
            return;
        case KeyError::hsm_unavailable:
            if (setting_kek_provider == kek_ikm_command)
                ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                                errmsg("the KEK from envelope.ikm_command is not available to "
                                       "pg_envelope"),
                                errdetail("%s", message),
                                errhint("Check SELECT * FROM envelope.status(); fix the command "
                                        "or the envelope.* settings and reload the "
                                        "configuration.")));
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
        case KeyError::legacy_kek_not_found:
            ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
                            errmsg("the legacy KEK is not on the token"), errdetail("%s", message),
                            errhint("Copy or create Trustpoint's KEK in the token pg_envelope "
                                    "uses (envelope.token_label) and pass its label.")));
        case KeyError::legacy_kek_unusable:
            ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                            errmsg("the token cannot decrypt the legacy DEK with the legacy KEK"),
                            errdetail("%s", message),
                            errhint("The legacy KEK must be an AES-256 secret key with CKA_DECRYPT "
                                    "set, and not pg_envelope's own KEK.")));
        case KeyError::no_token:
            ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                            errmsg("importing a legacy key needs a PKCS#11 token"),
                            errdetail("%s", message),
                            errhint("Trustpoint's KEK lives in a token: run the import on a server "
                                    "with envelope.kek_provider = 'pkcs11' and that token.")));
    }
}

void keeper_unwrap(Oid database, UnwrapItem *items, int count) {
    ensure_preloaded();
    check_keeper_usable();
    RequestQueue *q = request_queue();
    for (int base = 0; base < count; base += kBatch) {
        const int n = std::min(kBatch, count - base);
        int held_entries[kBatch];
        for (int i = 0; i < n; ++i) held_entries[i] = -1;
        int *volatile held = held_entries;
        TimestampTz deadline = deadline_from_now();
        PG_TRY();
        {
            for (int i = 0; i < n; ++i) {
                UnwrapItem &item = items[base + i];
                int entry = claim_entry(deadline);
                held_entries[i] = entry;
                KeeperRequest &r = q->entries[entry];
                r.kind = RequestKind::unwrap;
                r.database = database;
                r.id = item.id;
                r.use = item.use;
                r.wrapped_len = std::min<uint32>(item.wrapped_len, kMaxWrapped);
                memcpy(r.wrapped, item.wrapped, r.wrapped_len);
                r.error = KeyError::none;
                r.message[0] = '\0';
                strlcpy(r.kek_label, item.kek_label ? item.kek_label : "", sizeof r.kek_label);
                if (item.wrapped_len > kMaxWrapped) {
                    r.wrapped_len = 0;  // the keeper reports it as malformed
                }
                post(entry);
            }
            wake_keeper();
            for (int i = 0; i < n; ++i) {
                UnwrapItem &item = items[base + i];
                wait_done(held_entries[i], deadline, [&](KeeperRequest &r) {
                    item.error = r.error;
                    strlcpy(item.message, r.message, sizeof item.message);
                });
                held_entries[i] = -1;
            }
        }
        PG_CATCH();
        {
            release_entries(held, n);
            PG_RE_THROW();
        }
        PG_END_TRY();
    }
}

namespace {

// One request to the keeper: claim an entry, let `fill` write it (kind, database, id, input),
// wake the keeper, wait, let `read` copy the answer out of the done entry, then raise the
// ERROR a failure maps to (naming the key `what`). The entry is given back on any ERROR.
template <typename Fill, typename Read>
void single_request(Fill &&fill, Read &&read, const char *what) {
    ensure_preloaded();
    check_keeper_usable();
    RequestQueue *q = request_queue();
    int held_entry[1] = {-1};
    int *volatile held = held_entry;
    KeyError error = KeyError::none;
    char message[kRequestMessageSize] = {};
    TimestampTz deadline = deadline_from_now();
    PG_TRY();
    {
        int entry = claim_entry(deadline);
        held_entry[0] = entry;
        KeeperRequest &r = q->entries[entry];
        fill(r);
        r.error = KeyError::none;
        r.message[0] = '\0';
        post(entry);
        wake_keeper();
        wait_done(entry, deadline, [&](KeeperRequest &done) {
            error = done.error;
            strlcpy(message, done.message, sizeof message);
            read(done);
        });
        held_entry[0] = -1;
    }
    PG_CATCH();
    {
        release_entries(held, 1);
        PG_RE_THROW();
    }
    PG_END_TRY();
    raise_key_error(error, message, what);
}

}  // namespace

namespace {

// A request answered with a wrapped DEK and the label of the KEK that wrapped it (create,
// rewrap, import_legacy). Its input is in/in_len (none for create) and in_label ("" = the
// keeper's KEK); on success the answer goes to out/out_len/out_label (out may be in).
void wrapped_key_request(RequestKind kind, Oid database, const envelope::DekId &id,
                         envelope::KeyUse use, const uint8 *in, uint32 in_len, const char *in_label,
                         uint8 *out, uint32 *out_len, char out_label[kKekLabelSize],
                         const char *what) {
    if (in_len > static_cast<uint32>(kMaxWrapped)) {
        raise_key_error(KeyError::malformed, "wrapped key too long", what);
    }
    single_request(
        [&](KeeperRequest &r) {
            r.kind = kind;
            r.database = database;
            r.id = id;
            r.use = use;
            r.wrapped_len = in_len;
            if (in_len > 0) memcpy(r.wrapped, in, in_len);
            strlcpy(r.kek_label, in_label, sizeof r.kek_label);
        },
        [&](const KeeperRequest &done) {
            if (done.error != KeyError::none) return;
            *out_len = done.wrapped_len;
            memcpy(out, done.wrapped, done.wrapped_len);
            strlcpy(out_label, done.kek_label, kKekLabelSize);
        },
        what);
}

}  // namespace

void keeper_create(Oid database, const envelope::DekId &id, uint8 *wrapped_out, uint32 *wrapped_len,
                   char kek_label_out[kKekLabelSize]) {
    wrapped_key_request(RequestKind::create, database, id, envelope::KeyUse::active, nullptr, 0, "",
                        wrapped_out, wrapped_len, kek_label_out, "the new key");
}

void keeper_rewrap(Oid database, const envelope::DekId &id, const char *old_kek_label,
                   uint8 *wrapped, uint32 *wrapped_len, char kek_label_out[kKekLabelSize]) {
    wrapped_key_request(RequestKind::rewrap, database, id, envelope::KeyUse::decrypt_only, wrapped,
                        *wrapped_len, old_kek_label, wrapped, wrapped_len, kek_label_out,
                        "the key");
}

void keeper_import_legacy(Oid database, const envelope::DekId &id, const char *legacy_kek_label,
                          const uint8 *legacy_wrapped, uint32 legacy_len, uint8 *wrapped_out,
                          uint32 *wrapped_len, char kek_label_out[kKekLabelSize]) {
    wrapped_key_request(RequestKind::import_legacy, database, id, envelope::KeyUse::active,
                        legacy_wrapped, legacy_len, legacy_kek_label, wrapped_out, wrapped_len,
                        kek_label_out, "the legacy key");
}

}  // namespace envelope::pg
