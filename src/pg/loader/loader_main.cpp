// A loader: a short-lived worker connected to one database, started by the keeper at start-up.
// It reads that database's keyring (db/keyring) and hands the wrapped DEKs to the keeper.
#include "boundary/guard.hpp"
#include "db/keyring.hpp"
#include "session/keeper_client.hpp"

extern "C" {
PGDLLEXPORT void envelope_loader_main(Datum arg);
}

namespace envelope::pg {

namespace {

void load_database() {
    StartTransactionCommand();
    MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
    LoadableKey *keys = nullptr;
    const int n = keyring_loadable_keys(&keys);
    char *dbname = get_database_name(MyDatabaseId);
    MemoryContextSwitchTo(old);
    CommitTransactionCommand();
    if (n == 0) return;

    auto *items = static_cast<UnwrapItem *>(
        MemoryContextAllocZero(TopMemoryContext, sizeof(UnwrapItem) * static_cast<Size>(n)));
    for (int i = 0; i < n; ++i) {
        items[i].id = keys[i].id;
        items[i].use = keys[i].use;
        items[i].wrapped = reinterpret_cast<const uint8 *>(VARDATA_ANY(keys[i].wrapped));
        items[i].wrapped_len = VARSIZE_ANY_EXHDR(keys[i].wrapped);
        items[i].kek_label = keys[i].kek_label;
    }
    keeper_unwrap(MyDatabaseId, items, n);
    for (int i = 0; i < n; ++i) {
        if (items[i].error == KeyError::none) continue;
        ereport(WARNING, (errcode(ERRCODE_DATA_CORRUPTED),
                          errmsg("pg_envelope: key %s in database \"%s\" cannot be loaded: %s",
                                 keys[i].description, dbname, items[i].message)));
    }
}

}  // namespace

}  // namespace envelope::pg

void envelope_loader_main(Datum arg) {
    pqsignal(SIGTERM, die);
    BackgroundWorkerUnblockSignals();
    BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(arg), InvalidOid, 0);
    pgstat_report_appname("pg_envelope loader");
    envelope::pg::guarded("envelope_loader_main", [] { envelope::pg::load_database(); });
}
