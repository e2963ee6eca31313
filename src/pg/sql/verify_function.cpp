// envelope.verify(tbl, col, context_expr): opens every value of a column (with the caller's
// rights and key privileges) and reports, per key version, how many open, cannot be checked
// without a context, are under a destroyed key, or fail. The check an operator runs after a
// restore, since sealed input only checks the form of a value.
#include "boundary/guard.hpp"
#include "db/keyring.hpp"
#include "session/value_crypto.hpp"
#include "shmem/shmem.hpp"

extern "C" {
#include "catalog/dependency.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
}

#include <cstring>

using namespace envelope::pg;

namespace {

constexpr int kBatch = 1000;
constexpr int kMaxKeys = 4096;

struct KeyTally {
    envelope::DekId id;
    bool known;  // a keyring row exists
    KeyringState state;
    char name[kKeyNameBytes];
    int version;
    int64 opened, unchecked, destroyed, failed;
};

// Per-version tallies plus one for values that are not envelopes at all (id all zero, unknown).
struct Tallies {
    KeyTally *keys;
    int count;
    int64 malformed;
};

KeyTally &tally_for(Tallies &t, const envelope::DekId &id) {
    for (int i = 0; i < t.count; ++i) {
        if (t.keys[i].id == id) return t.keys[i];
    }
    if (t.count == kMaxKeys) {
        ereport(ERROR,
                (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
                 errmsg("the column holds values under more than %d key versions", kMaxKeys)));
    }
    KeyTally &k = t.keys[t.count++];
    memset(&k, 0, sizeof k);
    k.id = id;
    KeyringRow row = keyring_read(id);
    k.known = row.found;
    if (row.found) {
        k.state = row.wrapped == nullptr ? KeyringState::destroyed : row.state;
        strlcpy(k.name, row.name, sizeof k.name);
        k.version = row.version;
    }
    return k;
}

// context_given: the caller supplied a context expression, so a value that does not open is a
// failure (with a NULL context meaning "sealed without one"); otherwise it cannot be checked.
void tally_value(Tallies &t, Datum value, PayloadKind kind, const bytea *context,
                 bool context_given) {
    struct varlena *v = pg_detoast_datum_packed(reinterpret_cast<struct varlena *>(value));
    const uint8 *bytes = reinterpret_cast<const uint8 *>(VARDATA_ANY(v));
    const size_t len = VARSIZE_ANY_EXHDR(v);
    envelope::ParsedEnvelope parsed;
    if (envelope::parse_envelope({bytes, len}, parsed) != envelope::EnvelopeStatus::ok) {
        t.malformed++;
        return;
    }
    KeyTally &k = tally_for(t, parsed.dek);
    if (!k.known) {
        k.failed++;
    } else if (k.state == KeyringState::destroyed) {
        k.destroyed++;
    } else if (check_value(bytes, len, kind, context) == ValueCheck::opened) {
        k.opened++;
    } else if (!context_given) {
        k.unchecked++;  // sealed with a context, or not authentic: no way to tell without it
    } else {
        k.failed++;
    }
}

}  // namespace

ENVELOPE_SQL_FUNCTION(envelope_verify) {
    ensure_preloaded();
    if (PG_ARGISNULL(0) || PG_ARGISNULL(1)) {
        ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
                        errmsg("envelope.verify() needs a table and a column")));
    }
    const Oid relid = PG_GETARG_OID(0);
    const char *column = NameStr(*PG_GETARG_NAME(1));
    const char *context_expr = PG_ARGISNULL(2) ? nullptr : text_to_cstring(PG_GETARG_TEXT_PP(2));

    const AttrNumber attnum = get_attnum(relid, column);
    if (attnum == InvalidAttrNumber) {
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_COLUMN),
                        errmsg("column \"%s\" of relation \"%s\" does not exist", column,
                               get_rel_name(relid))));
    }
    const Oid type = get_atttype(relid, attnum);
    const Oid extension = get_extension_oid("pg_envelope", false);
    PayloadKind kind;
    if (type == BYTEAOID) {
        kind = PayloadKind::bytea;
    } else if (getExtensionOfObject(TypeRelationId, type) == extension) {
        kind = PayloadKind::text;
    } else {
        ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                        errmsg("column \"%s\" is neither encrypted_text nor bytea", column)));
    }

    // The scan runs with the caller's rights: table privileges and the context expression are
    // the caller's own (nothing here is elevated).
    StringInfoData sql;
    initStringInfo(&sql);
    appendStringInfo(&sql, "SELECT %s, (%s)::pg_catalog.bytea FROM %s", quote_identifier(column),
                     context_expr ? context_expr : "NULL",
                     quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
                                                get_rel_name(relid)));

    Tallies t{static_cast<KeyTally *>(palloc(sizeof(KeyTally) * kMaxKeys)), 0, 0};
    MemoryContext outer = CurrentMemoryContext;
    if (SPI_connect() != SPI_OK_CONNECT) {
        ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR), errmsg("SPI_connect failed")));
    }
    Portal portal = SPI_cursor_open_with_args(nullptr, sql.data, 0, nullptr, nullptr, nullptr, true,
                                              CURSOR_OPT_NO_SCROLL);
    MemoryContext rows = AllocSetContextCreate(outer, "envelope verify", ALLOCSET_DEFAULT_SIZES);
    for (;;) {
        SPI_cursor_fetch(portal, true, kBatch);
        if (SPI_processed == 0) break;
        for (uint64 i = 0; i < SPI_processed; ++i) {
            MemoryContext old = MemoryContextSwitchTo(rows);
            bool value_null, context_null;
            HeapTuple tup = SPI_tuptable->vals[i];
            Datum value = SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &value_null);
            Datum context = SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &context_null);
            if (!value_null) {
                tally_value(t, value, kind, context_null ? nullptr : DatumGetByteaPP(context),
                            context_expr != nullptr);
            }
            MemoryContextSwitchTo(old);
            MemoryContextReset(rows);
        }
        SPI_freetuptable(SPI_tuptable);
    }
    SPI_cursor_close(portal);
    SPI_finish();
    MemoryContextDelete(rows);

    InitMaterializedSRF(fcinfo, 0);
    ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
    for (int i = 0; i < t.count; ++i) {
        const KeyTally &k = t.keys[i];
        Datum v[7];
        bool n[7] = {};
        n[0] = !k.known;
        v[0] = k.known ? CStringGetTextDatum(k.name) : (Datum)0;
        n[1] = !k.known;
        v[1] = Int32GetDatum(k.version);
        pg_uuid_t *uuid = static_cast<pg_uuid_t *>(palloc(sizeof(pg_uuid_t)));
        memcpy(uuid->data, k.id.data(), UUID_LEN);
        v[2] = UUIDPGetDatum(uuid);
        v[3] = Int64GetDatum(k.opened);
        v[4] = Int64GetDatum(k.unchecked);
        v[5] = Int64GetDatum(k.destroyed);
        v[6] = Int64GetDatum(k.failed);
        tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
    }
    if (t.malformed > 0) {
        Datum v[7] = {0,
                      0,
                      0,
                      Int64GetDatum(0),
                      Int64GetDatum(0),
                      Int64GetDatum(0),
                      Int64GetDatum(t.malformed)};
        bool n[7] = {true, true, true, false, false, false, false};
        tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, n);
    }
    return (Datum)0;
}
