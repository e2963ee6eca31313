// The keeper: the only process that loads the PKCS#11 module. It logs in, finds the KEK, has
// loader workers feed it every database's wrapped DEKs, publishes unwrapped DEKs in the shared
// cache, and then serves backend requests, waking on its latch.
#include "keeper.hpp"
#include "encryption_counts.hpp"
#include "guard.hpp"
#include "keeper_client.hpp"
#include "settings.hpp"
#include "shared_state.hpp"

#include "hsm_link.hpp"
#include "secure_buffer.hpp"

#include <cstring>

namespace envelope::pg {

namespace {

// Keeper-local state. Static storage: nothing here is on a stack an ERROR could unwind.
envelope::HsmLink hsm;
char connected_module[MAXPGPATH];
char connected_token[kLabelSize];
char connected_pin_file[MAXPGPATH];
char connected_kek[kLabelSize];
int backoff_ms = 1000;
TimestampTz next_attempt = 0;
constexpr int kMaxBackoffMs = 30000;
constexpr long kHealthCheckMs = 5000;
constexpr long kCountsSaveMs = 10000;
TimestampTz last_counts_save = 0;
TimestampTz last_health_check = 0;

// Databases still to load, and the loader currently running.
Oid *pending_databases = nullptr;
int pending_count = 0;
int pending_next = 0;
BackgroundWorkerHandle *loader = nullptr;
TimestampTz load_started = 0;
int databases_loaded = 0;
char last_logged_error[kMessageSize];

void record_failure(const char *message, bool kek_found) {
    SharedState *s = shared_state();
    TimestampTz now = GetCurrentTimestamp();
    next_attempt = TimestampTzPlusMilliseconds(now, backoff_ms);
    LWLockAcquire(s->request_lock, LW_EXCLUSIVE);
    s->status.state = KeeperState::failed;
    s->status.kek_found = kek_found;
    s->status.attempts++;
    strlcpy(s->status.last_error, message, sizeof s->status.last_error);
    s->status.last_error_at = now;
    s->status.next_retry_at = next_attempt;
    LWLockRelease(s->request_lock);
    // Log each distinct reason once, not on every retry.
    if (strcmp(last_logged_error, message) != 0) {
        strlcpy(last_logged_error, message, sizeof last_logged_error);
        ereport(LOG, (errmsg("pg_envelope keeper: the HSM is not usable: %s", message),
                      errhint("Retrying with backoff; fix the envelope.* settings or the token "
                              "and reload the configuration.")));
    }
    backoff_ms = Min(backoff_ms * 2, kMaxBackoffMs);
}

bool settings_changed() {
    return strcmp(connected_module, setting_pkcs11_module) != 0 ||
           strcmp(connected_token, setting_token_label) != 0 ||
           strcmp(connected_pin_file, setting_pin_file) != 0 ||
           strcmp(connected_kek, setting_kek_label) != 0;
}

// Lists connectable, non-template databases (the keeper reads only shared catalogs).
void queue_all_databases() {
    StartTransactionCommand();
    Relation rel = table_open(DatabaseRelationId, AccessShareLock);
    TableScanDesc scan = table_beginscan_catalog(rel, 0, nullptr);
    MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
    if (pending_databases) pfree(pending_databases);
    int capacity = 16;
    pending_databases = static_cast<Oid *>(palloc(sizeof(Oid) * capacity));
    pending_count = 0;
    pending_next = 0;
    HeapTuple tup;
    while ((tup = heap_getnext(scan, ForwardScanDirection)) != nullptr) {
        Form_pg_database db = reinterpret_cast<Form_pg_database>(GETSTRUCT(tup));
        if (!db->datallowconn || db->datistemplate) continue;
        if (pending_count == capacity) {
            capacity *= 2;
            pending_databases =
                static_cast<Oid *>(repalloc(pending_databases, sizeof(Oid) * capacity));
        }
        pending_databases[pending_count++] = db->oid;
    }
    MemoryContextSwitchTo(old);
    table_endscan(scan);
    table_close(rel, AccessShareLock);
    CommitTransactionCommand();
}

void start_loading() {
    SharedState *s = shared_state();
    queue_all_databases();
    load_started = GetCurrentTimestamp();
    databases_loaded = 0;
    LWLockAcquire(s->request_lock, LW_EXCLUSIVE);
    s->status.state = KeeperState::loading;
    s->status.databases_loaded = 0;
    s->status.keys_loaded = 0;
    s->status.load_failures = 0;
    LWLockRelease(s->request_lock);
}

bool launch_loader(Oid database) {
    BackgroundWorker w;
    memset(&w, 0, sizeof w);
    w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
    w.bgw_start_time = BgWorkerStart_ConsistentState;
    w.bgw_restart_time = BGW_NEVER_RESTART;
    strlcpy(w.bgw_library_name, "pg_envelope", sizeof w.bgw_library_name);
    strlcpy(w.bgw_function_name, "envelope_loader_main", sizeof w.bgw_function_name);
    snprintf(w.bgw_name, sizeof w.bgw_name, "pg_envelope loader for database %u", database);
    strlcpy(w.bgw_type, "pg_envelope loader", sizeof w.bgw_type);
    w.bgw_main_arg = ObjectIdGetDatum(database);
    w.bgw_notify_pid = MyProcPid;
    return RegisterDynamicBackgroundWorker(&w, &loader);
}

// Runs one loader at a time until every database is loaded, then reports ready.
void drive_loading() {
    SharedState *s = shared_state();
    if (loader != nullptr) {
        pid_t pid;
        BgwHandleStatus st = GetBackgroundWorkerPid(loader, &pid);
        if (st == BGWH_STARTED || st == BGWH_NOT_YET_STARTED) return;
        pfree(loader);
        loader = nullptr;
        databases_loaded++;
    }
    if (s->status.state != KeeperState::loading) return;
    while (pending_next < pending_count) {
        Oid db = pending_databases[pending_next++];
        if (launch_loader(db)) return;
        ereport(LOG, (errmsg("pg_envelope keeper: no background worker slot to load the keys "
                             "of database %u; they will be loaded on first use",
                             db),
                      errhint("Raise max_worker_processes.")));
    }
    double ms = static_cast<double>(GetCurrentTimestamp() - load_started) / 1000.0;
    LWLockAcquire(s->request_lock, LW_EXCLUSIVE);
    s->status.state = KeeperState::ready;
    s->status.databases_loaded = databases_loaded;
    s->status.last_load_ms = ms;
    s->status.ready_at = GetCurrentTimestamp();
    int64 keys = s->status.keys_loaded;
    int64 failures = s->status.load_failures;
    LWLockRelease(s->request_lock);
    ereport(LOG, (errmsg("pg_envelope keeper: ready; %lld keys loaded from %d databases in "
                         "%.0f ms (%lld could not be unwrapped)",
                         static_cast<long long>(keys), databases_loaded, ms,
                         static_cast<long long>(failures))));
}

void try_connect() {
    SharedState *s = shared_state();
    LWLockAcquire(s->request_lock, LW_EXCLUSIVE);
    s->status.state = KeeperState::connecting;
    strlcpy(s->status.module, setting_pkcs11_module, sizeof s->status.module);
    strlcpy(s->status.token_label, setting_token_label, sizeof s->status.token_label);
    strlcpy(s->status.kek_label, setting_kek_label, sizeof s->status.kek_label);
    LWLockRelease(s->request_lock);

    strlcpy(connected_module, setting_pkcs11_module, sizeof connected_module);
    strlcpy(connected_token, setting_token_label, sizeof connected_token);
    strlcpy(connected_pin_file, setting_pin_file, sizeof connected_pin_file);
    strlcpy(connected_kek, setting_kek_label, sizeof connected_kek);

    if (setting_pin_file[0] == '\0') {
        record_failure("envelope.pin_file is not set", false);
        return;
    }
    envelope::HsmSettings hs{setting_pkcs11_module, setting_token_label, setting_pin_file,
                             setting_kek_label};
    envelope::HsmResult r = hsm.connect(hs);
    if (!r.ok) {
        record_failure(r.message, false);
        return;
    }
    backoff_ms = 1000;
    last_logged_error[0] = '\0';
    LWLockAcquire(s->request_lock, LW_EXCLUSIVE);
    s->status.kek_found = true;
    s->status.attempts = 0;
    s->status.last_error[0] = '\0';
    LWLockRelease(s->request_lock);
    ereport(LOG, (errmsg("pg_envelope keeper: logged in to token \"%s\", KEK \"%s\" found",
                         setting_token_label, setting_kek_label)));
    last_health_check = GetCurrentTimestamp();
    start_loading();
}

void disconnect(const char *why) {
    hsm.disconnect();
    if (why) record_failure(why, false);
}

// Performs one request. Runs without holding the request lock; the HSM call is the slow part.
void process(KeeperRequest &in, KeeperRequest &out) {
    SharedState *s = shared_state();
    out.error = KeyError::none;
    out.message[0] = '\0';
    char identity[37];
    envelope::dek_identity(in.id.data(), identity);
    envelope::ByteView identity_view(identity, strlen(identity));
    uint8 key[32];

    if (in.kind == RequestKind::unwrap) {
        LWLockAcquire(s->cache_lock, LW_SHARED);
        bool cached = key_table().find(in.database, in.id) >= 0;
        LWLockRelease(s->cache_lock);
        if (cached) return;
        if (in.wrapped_len != envelope::kWrappedDekSize) {
            out.error = KeyError::malformed;
            snprintf(out.message, sizeof out.message, "wrapped key is %u bytes, expected %zu",
                     in.wrapped_len, envelope::kWrappedDekSize);
            return;
        }
        envelope::HsmResult r = hsm.unwrap_dek(identity_view, {in.wrapped, in.wrapped_len}, key);
        if (!r.ok) {
            out.error = r.failure == envelope::Pkcs11Failure::unwrap_auth ||
                                r.failure == envelope::Pkcs11Failure::malformed
                            ? KeyError::unwrap_failed
                            : KeyError::hsm_unavailable;
            strlcpy(out.message, r.message, sizeof out.message);
            if (out.error == KeyError::hsm_unavailable && !hsm.alive()) disconnect(r.message);
            return;
        }
    } else {
        size_t wrapped_len = 0;
        envelope::HsmResult r =
            hsm.create_dek(identity_view, key, out.wrapped, sizeof out.wrapped, &wrapped_len);
        if (!r.ok) {
            out.error = KeyError::hsm_unavailable;
            strlcpy(out.message, r.message, sizeof out.message);
            if (!hsm.alive()) disconnect(r.message);
            return;
        }
        out.wrapped_len = static_cast<uint32>(wrapped_len);
        strlcpy(out.kek_label, connected_kek, sizeof out.kek_label);
    }

    LWLockAcquire(s->cache_lock, LW_EXCLUSIVE);
    const uint64 seed = in.kind == RequestKind::unwrap ? counts_seed(in.database, in.id) : 0;
    auto result = key_table().insert(in.database, in.id, key, in.key_state, seed, nullptr);
    LWLockRelease(s->cache_lock);
    envelope::secure_zero(key, sizeof key);
    if (result == envelope::KeyTable::InsertResult::full) {
        out.error = KeyError::cache_full;
        snprintf(out.message, sizeof out.message, "all %d slots (envelope.max_keys) are in use",
                 max_keys_setting);
    }
}

void serve_requests() {
    SharedState *s = shared_state();
    for (int i = 0; i < kMaxRequests; ++i) {
        KeeperRequest &slot = s->requests[i];
        LWLockAcquire(s->request_lock, LW_EXCLUSIVE);
        if (slot.state != RequestState::pending) {
            LWLockRelease(s->request_lock);
            continue;
        }
        slot.state = RequestState::working;
        KeeperRequest in;
        memcpy(static_cast<void *>(&in), &slot, offsetof(KeeperRequest, done_cv));
        LWLockRelease(s->request_lock);

        KeeperRequest out;
        memset(static_cast<void *>(&out), 0, offsetof(KeeperRequest, done_cv));
        if (!hsm.connected()) {
            out.error = KeyError::hsm_unavailable;
            strlcpy(out.message,
                    s->status.last_error[0] ? s->status.last_error : "the keeper is not connected",
                    sizeof out.message);
        } else {
            process(in, out);
        }
        envelope::secure_zero(in.wrapped, sizeof in.wrapped);

        bool loaded = in.kind == RequestKind::unwrap && out.error == KeyError::none;
        LWLockAcquire(s->request_lock, LW_EXCLUSIVE);
        if (slot.state == RequestState::abandoned) {
            slot.state = RequestState::free;
            slot.requester_pid = 0;
        } else {
            slot.error = out.error;
            strlcpy(slot.message, out.message, sizeof slot.message);
            if (in.kind == RequestKind::create) {
                memcpy(slot.wrapped, out.wrapped, out.wrapped_len);
                slot.wrapped_len = out.wrapped_len;
                strlcpy(slot.kek_label, out.kek_label, sizeof slot.kek_label);
            }
            slot.state = RequestState::done;
        }
        if (s->status.state == KeeperState::loading) {
            if (loaded) s->status.keys_loaded++;
            if (in.kind == RequestKind::unwrap && out.error != KeyError::none)
                s->status.load_failures++;
        }
        LWLockRelease(s->request_lock);
        ConditionVariableBroadcast(&slot.done_cv);
        ConditionVariableBroadcast(&s->request_freed_cv);
    }
}

void keeper_exit(int, Datum) {
    SharedState *s = shared_state();
    hsm.disconnect();
    if (s == nullptr) return;
    LWLockReleaseAll();
    guarded("envelope keeper exit", [] { counts_save(true); });
    LWLockAcquire(s->request_lock, LW_EXCLUSIVE);
    s->keeper_latch = nullptr;
    s->status.pid = 0;
    s->status.state = KeeperState::not_started;
    for (auto &r : s->requests) {
        if (r.state == RequestState::pending || r.state == RequestState::working) {
            r.error = KeyError::hsm_unavailable;
            strlcpy(r.message, "the pg_envelope keeper exited", sizeof r.message);
            r.state = RequestState::done;
        } else if (r.state == RequestState::abandoned && r.requester_pid == 0) {
            r.state = RequestState::free;
        }
    }
    LWLockRelease(s->request_lock);
    for (auto &r : s->requests) ConditionVariableBroadcast(&r.done_cv);
}

void keeper_loop() {
    for (;;) {
        CHECK_FOR_INTERRUPTS();
        if (ConfigReloadPending) {
            ConfigReloadPending = false;
            ProcessConfigFile(PGC_SIGHUP);
            if (settings_changed() || !hsm.connected()) {
                hsm.disconnect();
                backoff_ms = 1000;
                next_attempt = 0;
                last_logged_error[0] = '\0';
            }
        }
        TimestampTz now = GetCurrentTimestamp();
        if (!hsm.connected() && now >= next_attempt) try_connect();
        if (hsm.connected() && TimestampDifferenceExceeds(last_health_check, now, kHealthCheckMs)) {
            last_health_check = now;
            if (!hsm.alive()) disconnect("the token stopped answering (removed or failed)");
        }
        serve_requests();
        if (hsm.connected()) drive_loading();
        if (TimestampDifferenceExceeds(last_counts_save, now, kCountsSaveMs)) {
            last_counts_save = now;
            counts_save(false);
        }

        long timeout =
            hsm.connected()
                ? kHealthCheckMs
                : Max(1L, TimestampDifferenceMilliseconds(GetCurrentTimestamp(), next_attempt));
        (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, timeout,
                        PG_WAIT_EXTENSION);
        ResetLatch(MyLatch);
    }
}

// Loader: reads this database's keyring and hands the wrapped DEKs to the keeper.
void load_database() {
    StartTransactionCommand();
    PushActiveSnapshot(GetTransactionSnapshot());
    if (!OidIsValid(get_extension_oid("pg_envelope", true))) {
        PopActiveSnapshot();
        CommitTransactionCommand();
        return;
    }
    char *dbname = MemoryContextStrdup(TopMemoryContext, get_database_name(MyDatabaseId));
    if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "SPI_connect failed");
    int rc = SPI_execute(
        "SELECT id, state, wrapped_dek, name, version FROM envelope.keyring "
        "WHERE state <> 'destroyed' AND wrapped_dek IS NOT NULL",
        true, 0);
    if (rc != SPI_OK_SELECT) elog(ERROR, "pg_envelope loader: reading envelope.keyring failed");
    const uint64 rows = SPI_processed;
    MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
    UnwrapItem *items = static_cast<UnwrapItem *>(palloc0(sizeof(UnwrapItem) * Max(rows, 1)));
    char **names = static_cast<char **>(palloc0(sizeof(char *) * Max(rows, 1)));
    MemoryContextSwitchTo(old);
    for (uint64 i = 0; i < rows; ++i) {
        HeapTuple t = SPI_tuptable->vals[i];
        TupleDesc d = SPI_tuptable->tupdesc;
        bool isnull;
        pg_uuid_t *uuid = DatumGetUUIDP(SPI_getbinval(t, d, 1, &isnull));
        memcpy(items[i].id.data(), uuid->data, UUID_LEN);
        char *st = TextDatumGetCString(SPI_getbinval(t, d, 2, &isnull));
        items[i].state = strcmp(st, "active") == 0 ? envelope::KeyState::active
                                                   : envelope::KeyState::decrypt_only;
        bytea *w = DatumGetByteaPCopy(SPI_getbinval(t, d, 3, &isnull));
        MemoryContextSwitchTo(TopMemoryContext);
        bytea *keep = static_cast<bytea *>(palloc(VARSIZE_ANY(w)));
        memcpy(keep, w, VARSIZE_ANY(w));
        names[i] = psprintf("%s (version %s)", SPI_getvalue(t, d, 4), SPI_getvalue(t, d, 5));
        MemoryContextSwitchTo(old);
        items[i].wrapped = reinterpret_cast<const uint8 *>(VARDATA_ANY(keep));
        items[i].wrapped_len = VARSIZE_ANY_EXHDR(keep);
    }
    SPI_finish();
    PopActiveSnapshot();
    CommitTransactionCommand();

    keeper_unwrap(MyDatabaseId, items, static_cast<int>(rows));
    for (uint64 i = 0; i < rows; ++i) {
        if (items[i].error == KeyError::none) continue;
        ereport(WARNING, (errcode(ERRCODE_DATA_CORRUPTED),
                          errmsg("pg_envelope: key %s in database \"%s\" cannot be loaded: %s",
                                 names[i], dbname, items[i].message)));
    }
}

}  // namespace

void register_keeper() {
    BackgroundWorker w;
    memset(&w, 0, sizeof w);
    w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
    w.bgw_start_time = BgWorkerStart_ConsistentState;
    w.bgw_restart_time = 1;
    strlcpy(w.bgw_library_name, "pg_envelope", sizeof w.bgw_library_name);
    strlcpy(w.bgw_function_name, "envelope_keeper_main", sizeof w.bgw_function_name);
    strlcpy(w.bgw_name, "pg_envelope keeper", sizeof w.bgw_name);
    strlcpy(w.bgw_type, "pg_envelope keeper", sizeof w.bgw_type);
    RegisterBackgroundWorker(&w);
}

}  // namespace envelope::pg

using namespace envelope::pg;

void envelope_keeper_main(Datum) {
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    pqsignal(SIGTERM, die);
    BackgroundWorkerUnblockSignals();
    BackgroundWorkerInitializeConnection(nullptr, nullptr, 0);
    pgstat_report_appname("pg_envelope keeper");

    SharedState *s = shared_state();
    before_shmem_exit(keeper_exit, 0);
    LWLockAcquire(s->request_lock, LW_EXCLUSIVE);
    s->keeper_latch = MyLatch;
    s->status.pid = MyProcPid;
    s->status.state = KeeperState::connecting;
    LWLockRelease(s->request_lock);
    guarded("envelope_keeper_main", [] {
        counts_load();
        keeper_loop();
    });
}

void envelope_loader_main(Datum arg) {
    pqsignal(SIGTERM, die);
    BackgroundWorkerUnblockSignals();
    BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(arg), InvalidOid, 0);
    pgstat_report_appname("pg_envelope loader");
    guarded("envelope_loader_main", [] { load_database(); });
}
