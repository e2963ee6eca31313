// Start-up loading of every database's keys through loader workers (see load_scheduler.hpp).
#include "keeper/load_scheduler.hpp"
#include "shmem/keeper_status.hpp"

namespace envelope::pg {

namespace {

// Databases still to load, and the loader currently running. Keeper-local.
Oid *pending_databases = nullptr;
int pending_count = 0;
int pending_next = 0;
BackgroundWorkerHandle *loader = nullptr;
TimestampTz load_started = 0;
int databases_loaded = 0;
bool loading = false;

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

}  // namespace

void load_scheduler_start() {
    queue_all_databases();
    load_started = GetCurrentTimestamp();
    databases_loaded = 0;
    loading = true;
    keeper_status_loading();
}

bool load_scheduler_active() {
    return loading;
}

void load_scheduler_drive() {
    if (loader != nullptr) {
        pid_t pid;
        BgwHandleStatus st = GetBackgroundWorkerPid(loader, &pid);
        if (st == BGWH_STARTED || st == BGWH_NOT_YET_STARTED) return;
        pfree(loader);
        loader = nullptr;
        databases_loaded++;
    }
    if (!loading) return;
    while (pending_next < pending_count) {
        Oid db = pending_databases[pending_next++];
        if (launch_loader(db)) return;
        ereport(LOG, (errmsg("pg_envelope keeper: no background worker slot to load the keys "
                             "of database %u; they will be loaded on first use",
                             db),
                      errhint("Raise max_worker_processes.")));
    }
    loading = false;
    double ms = static_cast<double>(GetCurrentTimestamp() - load_started) / 1000.0;
    int64 keys = 0, failures = 0;
    keeper_status_ready(databases_loaded, ms, &keys, &failures);
    ereport(LOG, (errmsg("pg_envelope keeper: ready; %lld keys loaded from %d databases in "
                         "%.0f ms (%lld could not be unwrapped)",
                         static_cast<long long>(keys), databases_loaded, ms,
                         static_cast<long long>(failures))));
}

}  // namespace envelope::pg
