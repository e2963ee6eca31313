// envelope.status(): one row describing the keeper, the HSM and the shared key cache.
// Everyone sees the state and the counts; the HSM's settings, the keeper's pid and the text of
// the last error (which can name files) only superusers, envelope_admin and pg_monitor.
#include "boundary/guard.hpp"
#include "shmem/keeper_status.hpp"
#include "shmem/key_cache.hpp"
#include "shmem/shmem.hpp"

extern "C" {
#include "catalog/pg_authid.h"
#include "utils/acl.h"
}

using namespace envelope::pg;

namespace {

Datum text_or_null(const char *s, bool *isnull) {
    *isnull = s == nullptr || s[0] == '\0';
    return *isnull ? (Datum)0 : CStringGetTextDatum(s);
}

Datum timestamp_or_null(TimestampTz t, bool *isnull) {
    *isnull = t == 0;
    return *isnull ? (Datum)0 : TimestampTzGetDatum(t);
}

bool may_see_details() {
    const Oid user = GetUserId();
    if (superuser_arg(user) || has_privs_of_role(user, ROLE_PG_MONITOR)) return true;
    const Oid admin = get_role_oid("envelope_admin", true);
    return OidIsValid(admin) && has_privs_of_role(user, admin);
}

}  // namespace

ENVELOPE_SQL_FUNCTION(envelope_status) {
    ensure_preloaded();
    TupleDesc desc;
    if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE) {
        ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                        errmsg("envelope.status() must return a composite type")));
    }
    desc = BlessTupleDesc(desc);

    const KeeperStatus st = keeper_status_snapshot();
    const KeyCacheCounts cache = key_cache_counts(MyDatabaseId);

    Datum v[18];
    bool n[18] = {};
    v[0] = CStringGetTextDatum(keeper_state_name(st.state));
    n[1] = st.pid == 0;
    v[1] = Int32GetDatum(st.pid);
    v[2] = text_or_null(st.module, &n[2]);
    v[3] = text_or_null(st.token_label, &n[3]);
    v[4] = text_or_null(st.kek_label, &n[4]);
    v[5] = BoolGetDatum(st.kek_found);
    v[6] = text_or_null(st.last_error, &n[6]);
    v[7] = timestamp_or_null(st.last_error_at, &n[7]);
    v[8] = timestamp_or_null(st.state == KeeperState::failed ? st.next_retry_at : 0, &n[8]);
    v[9] = Int32GetDatum(cache.in_database);
    v[10] = Int32GetDatum(cache.total);
    v[11] = Int32GetDatum(cache.capacity);
    v[12] = Int32GetDatum(st.databases_loaded);
    v[13] = Int64GetDatum(st.keys_loaded);
    v[14] = Int64GetDatum(st.load_failures);
    v[15] = Float8GetDatum(st.last_load_ms);
    // Since 0.4.0; a database still at an older version declares 16 columns and never reads
    // these (heap_form_tuple takes desc->natts values).
    v[16] = text_or_null(st.kek_provider, &n[16]);
    v[17] = text_or_null(st.wrap_mechanism, &n[17]);
    if (!may_see_details()) {
        for (int hidden : {1, 2, 3, 4, 6}) n[hidden] = true;
    }
    return HeapTupleGetDatum(heap_form_tuple(desc, v, n));
}
