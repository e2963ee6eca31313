// The rotator: a short-lived worker connected to one database, started by a session whose seal
// took a data key to envelope.auto_rotate_at. It rotates that key (envelope._auto_rotate: only
// if the version is still the active one, so it happens once) and logs what it did.
#include "boundary/guard.hpp"
#include "session/auto_rotation.hpp"

#include "hex.hpp"

extern "C" {
#include "executor/spi.h"
#include "utils/uuid.h"
PGDLLEXPORT void envelope_rotator_main(Datum arg);
}

#include <cstring>

namespace envelope::pg {

namespace {

void rotate(const RotationRequest &request) {
    char old_uuid[37];
    envelope::format_uuid(request.id.data(), old_uuid);
    SetCurrentStatementStartTimestamp();
    StartTransactionCommand();
    SPI_connect();
    PushActiveSnapshot(GetTransactionSnapshot());
    pg_uuid_t id;
    memcpy(id.data, request.id.data(), UUID_LEN);
    Oid types[2] = {UUIDOID, INT8OID};
    Datum values[2] = {UUIDPGetDatum(&id), Int64GetDatum(static_cast<int64>(request.encryptions))};
    // Runs as the bootstrap superuser under the database's own settings: every name in the
    // query is schema-qualified, so a search_path set on the database resolves nothing here.
    int rc = SPI_execute_with_args("SELECT envelope._auto_rotate($1, $2)::pg_catalog.text", 2,
                                   types, values, nullptr, false, 1);
    char *new_uuid = nullptr;
    if (rc == SPI_OK_SELECT && SPI_processed == 1) {
        new_uuid = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
        if (new_uuid) new_uuid = MemoryContextStrdup(TopMemoryContext, new_uuid);
    }
    SPI_finish();
    PopActiveSnapshot();
    CommitTransactionCommand();
    if (new_uuid != nullptr) {
        ereport(LOG,
                (errmsg("pg_envelope: data key %s reached %llu encryptions "
                        "(envelope.auto_rotate_at); rotated, new version %s",
                        old_uuid, static_cast<unsigned long long>(request.encryptions), new_uuid)));
    } else {
        ereport(DEBUG1, (errmsg("pg_envelope: data key %s is no longer the active version; "
                                "nothing to rotate",
                                old_uuid)));
    }
}

}  // namespace

}  // namespace envelope::pg

void envelope_rotator_main(Datum arg) {
    pqsignal(SIGTERM, die);
    BackgroundWorkerUnblockSignals();
    BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(arg), InvalidOid, 0);
    pgstat_report_appname("pg_envelope rotator");
    envelope::pg::RotationRequest request;
    memcpy(&request, MyBgworkerEntry->bgw_extra, sizeof request);
    envelope::pg::guarded("envelope_rotator_main", [&] { envelope::pg::rotate(request); });
}
