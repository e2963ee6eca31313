// envelope_fdw: postgres_fdw's callbacks, wrapped so encrypted_text crosses the connection to a
// shard sealed (see fdw_transfer.hpp and README, "Scaling out").
#include "session/fdw_transfer.hpp"
#include "boundary/guard.hpp"

extern "C" {
#include "access/reloptions.h"
#include "catalog/pg_foreign_server.h"
#include "commands/defrem.h"
#include "executor/nodeSubplan.h"
#include "nodes/execnodes.h"
#include "nodes/nodeFuncs.h"
#include "utils/varlena.h"
}

#include <strings.h>

namespace envelope::pg {

namespace {

int transfer_depth = 0;
FdwRoutine postgres_fdw;  // postgres_fdw's own callbacks, loaded once per process
bool postgres_fdw_loaded = false;
AcquireSampleRowsFunc postgres_fdw_acquire = nullptr;

const char kPostgresFdwLibrary[] = "$libdir/postgres_fdw";

PGFunction postgres_fdw_function(const char *name) {
    return reinterpret_cast<PGFunction>(
        load_external_function(kPostgresFdwLibrary, name, true, nullptr));
}

void load_postgres_fdw() {
    if (postgres_fdw_loaded) return;
    PGFunction handler = postgres_fdw_function("postgres_fdw_handler");
    LOCAL_FCINFO(fcinfo, 0);
    InitFunctionCallInfoData(*fcinfo, nullptr, 0, InvalidOid, nullptr, nullptr);
    auto *routine = reinterpret_cast<FdwRoutine *>(DatumGetPointer(handler(fcinfo)));
    if (routine == nullptr || !IsA(routine, FdwRoutine)) {
        ereport(ERROR, (errcode(ERRCODE_FDW_ERROR),
                        errmsg("postgres_fdw_handler did not return an FdwRoutine")));
    }
    postgres_fdw = *routine;
    postgres_fdw_loaded = true;
}

// Runs a postgres_fdw callback with the type's I/O sealed. The log filter's count is raised
// too: an error from the shard must not let the coordinator's log quote the client's
// statement, which can hold plaintext; like ENVELOPE_SQL_FUNCTION, an ERROR leaves it raised
// until the transaction ends.
template <typename Fn>
void transfer(Fn &&fn) {
    const int saved = transfer_depth;
    transfer_depth = saved + 1;
    ++sql_entry_depth;
    PG_TRY();
    { fn(); }
    PG_FINALLY();
    { transfer_depth = saved; }
    PG_END_TRY();
    --sql_entry_depth;
}

// PARAM_EXEC ids in an expression tree (pull_paramids() also returns PARAM_EXTERN ids, which
// do not index the executor's PARAM_EXEC array).
bool collect_exec_params(Node *node, void *context) {
    if (node == nullptr) return false;
    if (IsA(node, Param)) {
        auto *param = reinterpret_cast<Param *>(node);
        if (param->paramkind == PARAM_EXEC) {
            auto *ids = static_cast<Bitmapset **>(context);
            *ids = bms_add_member(*ids, param->paramid);
        }
        return false;
    }
    // PostgreSQL 15 declares the walker without a prototype; void (*)() is the generic
    // function pointer type the conversion goes through.
    auto *generic = reinterpret_cast<void (*)()>(collect_exec_params);
    return expression_tree_walker(node, reinterpret_cast<bool (*)()>(generic), context);
}

// Initplans whose values a remote query sends as parameters run before the flag is raised:
// PostgreSQL runs them lazily, and they must see the session's own I/O mode.
void run_param_initplans(ForeignScanState *node) {
    auto *plan = reinterpret_cast<ForeignScan *>(node->ss.ps.plan);
    ExprContext *econtext = node->ss.ps.ps_ExprContext;
    if (plan == nullptr || plan->fdw_exprs == NIL || econtext == nullptr) return;
    Bitmapset *params = nullptr;
    collect_exec_params(reinterpret_cast<Node *>(plan->fdw_exprs), &params);
    if (params != nullptr) ExecSetParamPlanMulti(params, econtext);
    bms_free(params);
}

// Scans.
void begin_foreign_scan(ForeignScanState *node, int eflags) {
    transfer([&] { postgres_fdw.BeginForeignScan(node, eflags); });
}
TupleTableSlot *iterate_foreign_scan(ForeignScanState *node) {
    run_param_initplans(node);
    TupleTableSlot *result = nullptr;
    transfer([&] { result = postgres_fdw.IterateForeignScan(node); });
    return result;
}
void rescan_foreign_scan(ForeignScanState *node) {
    run_param_initplans(node);
    transfer([&] { postgres_fdw.ReScanForeignScan(node); });
}
void end_foreign_scan(ForeignScanState *node) {
    transfer([&] { postgres_fdw.EndForeignScan(node); });
}
void shutdown_foreign_scan(ForeignScanState *node) {
    transfer([&] { postgres_fdw.ShutdownForeignScan(node); });
}

// Modifications (INSERT, COPY, routing into a partition, UPDATE, DELETE, batches).
void begin_foreign_modify(ModifyTableState *mtstate, ResultRelInfo *rinfo, List *fdw_private,
                          int subplan_index, int eflags) {
    transfer([&] {
        postgres_fdw.BeginForeignModify(mtstate, rinfo, fdw_private, subplan_index, eflags);
    });
}
TupleTableSlot *exec_foreign_insert(EState *estate, ResultRelInfo *rinfo, TupleTableSlot *slot,
                                    TupleTableSlot *plan_slot) {
    TupleTableSlot *result = nullptr;
    transfer([&] { result = postgres_fdw.ExecForeignInsert(estate, rinfo, slot, plan_slot); });
    return result;
}
TupleTableSlot **exec_foreign_batch_insert(EState *estate, ResultRelInfo *rinfo,
                                           TupleTableSlot **slots, TupleTableSlot **plan_slots,
                                           int *num_slots) {
    TupleTableSlot **result = nullptr;
    transfer([&] {
        result = postgres_fdw.ExecForeignBatchInsert(estate, rinfo, slots, plan_slots, num_slots);
    });
    return result;
}
TupleTableSlot *exec_foreign_update(EState *estate, ResultRelInfo *rinfo, TupleTableSlot *slot,
                                    TupleTableSlot *plan_slot) {
    TupleTableSlot *result = nullptr;
    transfer([&] { result = postgres_fdw.ExecForeignUpdate(estate, rinfo, slot, plan_slot); });
    return result;
}
TupleTableSlot *exec_foreign_delete(EState *estate, ResultRelInfo *rinfo, TupleTableSlot *slot,
                                    TupleTableSlot *plan_slot) {
    TupleTableSlot *result = nullptr;
    transfer([&] { result = postgres_fdw.ExecForeignDelete(estate, rinfo, slot, plan_slot); });
    return result;
}
void end_foreign_modify(EState *estate, ResultRelInfo *rinfo) {
    transfer([&] { postgres_fdw.EndForeignModify(estate, rinfo); });
}
void begin_foreign_insert(ModifyTableState *mtstate, ResultRelInfo *rinfo) {
    transfer([&] { postgres_fdw.BeginForeignInsert(mtstate, rinfo); });
}
void end_foreign_insert(EState *estate, ResultRelInfo *rinfo) {
    transfer([&] { postgres_fdw.EndForeignInsert(estate, rinfo); });
}

// UPDATE and DELETE pushed down whole (their RETURNING rows come back through here).
void begin_direct_modify(ForeignScanState *node, int eflags) {
    transfer([&] { postgres_fdw.BeginDirectModify(node, eflags); });
}
TupleTableSlot *iterate_direct_modify(ForeignScanState *node) {
    run_param_initplans(node);
    TupleTableSlot *result = nullptr;
    transfer([&] { result = postgres_fdw.IterateDirectModify(node); });
    return result;
}
void end_direct_modify(ForeignScanState *node) {
    transfer([&] { postgres_fdw.EndDirectModify(node); });
}

// Asynchronous Append across shards.
ForeignScanState *async_requestee(AsyncRequest *areq) {
    return reinterpret_cast<ForeignScanState *>(areq->requestee);
}
void foreign_async_request(AsyncRequest *areq) {
    run_param_initplans(async_requestee(areq));
    transfer([&] { postgres_fdw.ForeignAsyncRequest(areq); });
}
void foreign_async_configure_wait(AsyncRequest *areq) {
    run_param_initplans(async_requestee(areq));
    transfer([&] { postgres_fdw.ForeignAsyncConfigureWait(areq); });
}
void foreign_async_notify(AsyncRequest *areq) {
    transfer([&] { postgres_fdw.ForeignAsyncNotify(areq); });
}

// ANALYZE of a foreign table samples the shard's rows through this function.
int acquire_sample_rows(Relation relation, int elevel, HeapTuple *rows, int targrows,
                        double *totalrows, double *totaldeadrows) {
    int result = 0;
    transfer([&] {
        result = postgres_fdw_acquire(relation, elevel, rows, targrows, totalrows, totaldeadrows);
    });
    return result;
}
bool analyze_foreign_table(Relation relation, AcquireSampleRowsFunc *func, BlockNumber *pages) {
    bool result = false;
    transfer([&] { result = postgres_fdw.AnalyzeForeignTable(relation, func, pages); });
    if (result && *func != nullptr) {
        postgres_fdw_acquire = *func;
        *func = acquire_sample_rows;
    }
    return result;
}

// The value of envelope.io a libpq `options` string sets (the last one wins, as in the
// server), or NULL. Switches are split like the server does (pg_split_opts); a setting is
// "-c name=value", "-cname=value" or "--name=value".
const char *options_io_setting(const char *options) {
    const size_t maxargs = strlen(options) / 2 + 2;
    char **argv = static_cast<char **>(palloc0(sizeof(char *) * maxargs));
    int argc = 0;
    pg_split_opts(argv, &argc, options);
    const char *value = nullptr;
    for (int i = 0; i < argc; ++i) {
        const char *setting = nullptr;
        if (strcmp(argv[i], "-c") == 0) {
            if (i + 1 < argc) setting = argv[++i];
        } else if (strncmp(argv[i], "-c", 2) == 0 || strncmp(argv[i], "--", 2) == 0) {
            setting = argv[i] + 2;
        }
        if (setting == nullptr) continue;
        const char *eq = strchr(setting, '=');
        static const char kName[] = "envelope.io";
        if (eq != nullptr && static_cast<size_t>(eq - setting) == sizeof(kName) - 1 &&
            strncasecmp(setting, kName, sizeof(kName) - 1) == 0) {
            value = eq + 1;
        }
    }
    return value;
}

void check_server_options(List *options) {
    const char *io = nullptr;
    ListCell *cell;
    foreach (cell, options) {
        DefElem *def = lfirst_node(DefElem, cell);
        if (strcmp(def->defname, "options") == 0) {
            io = options_io_setting(defGetString(def));
        } else if (strcmp(def->defname, "extensions") == 0) {
            char *list = pstrdup(defGetString(def));
            List *names = NIL;
            if (!SplitIdentifierString(list, ',', &names)) continue;  // postgres_fdw said why
            ListCell *name;
            foreach (name, names) {
                if (strcmp(static_cast<const char *>(lfirst(name)), "pg_envelope") == 0) {
                    ereport(ERROR,
                            (errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
                             errmsg("envelope_fdw servers cannot list pg_envelope in extensions"),
                             errdetail("postgres_fdw would then write encrypted_text constants "
                                       "into the remote query as plaintext, and run pg_envelope "
                                       "functions on the shard."),
                             errhint("Remove pg_envelope from the extensions option; "
                                     "encrypt() and decrypt() run on the coordinator.")));
                }
            }
        }
    }
    if (io == nullptr || strcasecmp(io, "sealed") != 0) {
        ereport(ERROR,
                (errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
                 errmsg("an envelope_fdw server must set envelope.io = sealed on the shard"),
                 errdetail("encrypted_text values cross the connection sealed; a shard session "
                           "in another mode would refuse them or send plaintext back."),
                 errhint("Add OPTIONS (options '-c envelope.io=sealed') to the server.")));
    }
}

}  // namespace

bool fdw_transfer_active() {
    return transfer_depth > 0;
}

void fdw_wrap_postgres_fdw(FdwRoutine *routine) {
    load_postgres_fdw();
    *routine = postgres_fdw;
    const FdwRoutine &p = postgres_fdw;
    if (p.BeginForeignScan) routine->BeginForeignScan = begin_foreign_scan;
    if (p.IterateForeignScan) routine->IterateForeignScan = iterate_foreign_scan;
    if (p.ReScanForeignScan) routine->ReScanForeignScan = rescan_foreign_scan;
    if (p.EndForeignScan) routine->EndForeignScan = end_foreign_scan;
    if (p.ShutdownForeignScan) routine->ShutdownForeignScan = shutdown_foreign_scan;
    if (p.BeginForeignModify) routine->BeginForeignModify = begin_foreign_modify;
    if (p.ExecForeignInsert) routine->ExecForeignInsert = exec_foreign_insert;
    if (p.ExecForeignBatchInsert) routine->ExecForeignBatchInsert = exec_foreign_batch_insert;
    if (p.ExecForeignUpdate) routine->ExecForeignUpdate = exec_foreign_update;
    if (p.ExecForeignDelete) routine->ExecForeignDelete = exec_foreign_delete;
    if (p.EndForeignModify) routine->EndForeignModify = end_foreign_modify;
    if (p.BeginForeignInsert) routine->BeginForeignInsert = begin_foreign_insert;
    if (p.EndForeignInsert) routine->EndForeignInsert = end_foreign_insert;
    if (p.BeginDirectModify) routine->BeginDirectModify = begin_direct_modify;
    if (p.IterateDirectModify) routine->IterateDirectModify = iterate_direct_modify;
    if (p.EndDirectModify) routine->EndDirectModify = end_direct_modify;
    if (p.ForeignAsyncRequest) routine->ForeignAsyncRequest = foreign_async_request;
    if (p.ForeignAsyncConfigureWait) {
        routine->ForeignAsyncConfigureWait = foreign_async_configure_wait;
    }
    if (p.ForeignAsyncNotify) routine->ForeignAsyncNotify = foreign_async_notify;
    if (p.AnalyzeForeignTable) routine->AnalyzeForeignTable = analyze_foreign_table;
}

void fdw_validate_options(Datum options, Oid catalog) {
    DirectFunctionCall2(postgres_fdw_function("postgres_fdw_validator"), options,
                        ObjectIdGetDatum(catalog));
    if (catalog == ForeignServerRelationId) check_server_options(untransformRelOptions(options));
}

}  // namespace envelope::pg
