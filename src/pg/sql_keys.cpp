// SQL functions behind key management and status: envelope.status(), new wrapped DEKs,
// key check values, cache eviction and the keyring change trigger.
#include "cache_eviction.hpp"
#include "guard.hpp"
#include "keeper_client.hpp"
#include "key_access.hpp"
#include "shared_state.hpp"

#include "hkdf.hpp"

extern "C" {
#include "commands/trigger.h"
}

#include <cstring>

using namespace envelope::pg;

namespace {

envelope::DekId dek_id_arg(FunctionCallInfo fcinfo, int n) {
    envelope::DekId id;
    pg_uuid_t *u = PG_GETARG_UUID_P(n);
    memcpy(id.data(), u->data, UUID_LEN);
    return id;
}

Datum text_or_null(const char *s, bool *isnull) {
    *isnull = s == nullptr || s[0] == '\0';
    return *isnull ? (Datum)0 : CStringGetTextDatum(s);
}

Datum timestamp_or_null(TimestampTz t, bool *isnull) {
    *isnull = t == 0;
    return *isnull ? (Datum)0 : TimestampTzGetDatum(t);
}

}  // namespace

// envelope.status(): one row describing the keeper, the HSM and the cache.
ENVELOPE_SQL_FUNCTION(envelope_status) {
    ensure_preloaded();
    TupleDesc desc;
    if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE)
        elog(ERROR, "envelope.status() must return a composite type");
    desc = BlessTupleDesc(desc);

    SharedState *s = shared_state();
    KeeperStatus st;
    LWLockAcquire(s->request_lock, LW_SHARED);
    st = s->status;
    LWLockRelease(s->request_lock);
    LWLockAcquire(s->cache_lock, LW_SHARED);
    int here = static_cast<int>(key_table().count_database(MyDatabaseId));
    int total = static_cast<int>(key_table().used());
    int capacity = static_cast<int>(key_table().capacity());
    LWLockRelease(s->cache_lock);

    Datum v[16];
    bool n[16] = {};
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
    v[9] = Int32GetDatum(here);
    v[10] = Int32GetDatum(total);
    v[11] = Int32GetDatum(capacity);
    v[12] = Int32GetDatum(st.databases_loaded);
    v[13] = Int64GetDatum(st.keys_loaded);
    v[14] = Int64GetDatum(st.load_failures);
    v[15] = Float8GetDatum(st.last_load_ms);
    return HeapTupleGetDatum(heap_form_tuple(desc, v, n));
}

// envelope._new_wrapped_dek(id uuid, OUT wrapped_dek bytea, OUT kek_label text):
// the keeper generates a DEK on the token, wraps it bound to id, and caches it.
ENVELOPE_SQL_FUNCTION(envelope_new_wrapped_dek) {
    envelope::DekId id = dek_id_arg(fcinfo, 0);
    TupleDesc desc;
    if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE)
        elog(ERROR, "return type must be composite");
    desc = BlessTupleDesc(desc);
    // A standby (or read-only transaction) must not create keys it can never store.
    PreventCommandIfReadOnly("envelope.create_key() or envelope.rotate_key()");
    uint8 wrapped[kMaxWrapped];
    uint32 len = 0;
    char kek[kLabelSize] = {};
    keeper_create(MyDatabaseId, id, wrapped, &len, kek);
    // The keeper cached the new key already; if its keyring row never commits, drop it again.
    evict_at_transaction_end(id, EvictWhen::on_abort);
    bytea *b = static_cast<bytea *>(palloc(VARHDRSZ + len));
    SET_VARSIZE(b, VARHDRSZ + len);
    memcpy(VARDATA(b), wrapped, len);
    Datum v[2] = {PointerGetDatum(b), CStringGetTextDatum(kek)};
    bool n[2] = {false, false};
    return HeapTupleGetDatum(heap_form_tuple(desc, v, n));
}

// envelope._key_check_value(id uuid) -> text: public fingerprint of the DEK (loads it if needed).
ENVELOPE_SQL_FUNCTION(envelope_key_check_value) {
    envelope::DekId id = dek_id_arg(fcinfo, 0);
    ensure_preloaded();
    SharedState *s = shared_state();
    for (int attempt = 0;; ++attempt) {
        char kcv[17];
        bool found = false, ok = false;
        LWLockAcquire(s->cache_lock, LW_SHARED);
        int idx = key_table().find(MyDatabaseId, id);
        if (idx >= 0) {
            found = true;
            ok = envelope::key_check_value(key_table().slot(idx).key, kcv);
        }
        LWLockRelease(s->cache_lock);
        if (found) {
            if (!ok) elog(ERROR, "pg_envelope: computing the key check value failed");
            PG_RETURN_TEXT_P(cstring_to_text(kcv));
        }
        if (attempt > 0) elog(ERROR, "pg_envelope: key left the cache while loading it");
        ensure_cached(id);
    }
}

// envelope._encryptions(id uuid) -> bigint: values sealed under the key (NULL if not cached).
ENVELOPE_SQL_FUNCTION(envelope_encryptions) {
    envelope::DekId id = dek_id_arg(fcinfo, 0);
    ensure_preloaded();
    SharedState *s = shared_state();
    LWLockAcquire(s->cache_lock, LW_SHARED);
    int idx = key_table().find(MyDatabaseId, id);
    int64 n = idx >= 0 ? static_cast<int64>(key_table().slot(idx).encryptions.load()) : -1;
    LWLockRelease(s->cache_lock);
    if (n < 0) PG_RETURN_NULL();
    PG_RETURN_INT64(n);
}

// envelope._forget_key(id uuid): drops a key from the shared cache (its bytes are wiped).
ENVELOPE_SQL_FUNCTION(envelope_forget_key) {
    envelope::DekId id = dek_id_arg(fcinfo, 0);
    cache_forget(MyDatabaseId, &id);
    PG_RETURN_VOID();
}

// Row trigger on envelope.keyring (AFTER UPDATE OR DELETE): a row that is deleted, or whose
// key is destroyed, has its DEK wiped from the shared cache when the transaction commits.
ENVELOPE_SQL_FUNCTION(envelope_keyring_row_changed) {
    if (!CALLED_AS_TRIGGER(fcinfo)) elog(ERROR, "must be called as a trigger");
    TriggerData *td = reinterpret_cast<TriggerData *>(fcinfo->context);
    TupleDesc desc = RelationGetDescr(td->tg_relation);
    const int id_att = SPI_fnumber(desc, "id");
    const int state_att = SPI_fnumber(desc, "state");
    if (id_att <= 0 || state_att <= 0) elog(ERROR, "envelope.keyring lacks id or state");
    bool evict = TRIGGER_FIRED_BY_DELETE(td->tg_event);
    if (TRIGGER_FIRED_BY_UPDATE(td->tg_event)) {
        char *state = SPI_getvalue(td->tg_newtuple, desc, state_att);
        evict = state != nullptr && strcmp(state, "destroyed") == 0;
    }
    if (evict) {
        bool isnull;
        Datum d = SPI_getbinval(td->tg_trigtuple, desc, id_att, &isnull);
        if (!isnull) {
            envelope::DekId id;
            memcpy(id.data(), DatumGetUUIDP(d)->data, UUID_LEN);
            evict_at_transaction_end(id, EvictWhen::on_commit);
        }
    }
    return PointerGetDatum(nullptr);
}

// Trigger on envelope.keyring: tells every backend to drop cached name -> key resolutions.
ENVELOPE_SQL_FUNCTION(envelope_keyring_changed) {
    if (!CALLED_AS_TRIGGER(fcinfo)) elog(ERROR, "must be called as a trigger");
    TriggerData *td = reinterpret_cast<TriggerData *>(fcinfo->context);
    CacheInvalidateRelcacheByRelid(RelationGetRelid(td->tg_relation));
    return PointerGetDatum(nullptr);
}
