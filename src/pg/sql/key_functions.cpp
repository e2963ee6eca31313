// SQL functions behind key management: new, re-wrapped and imported (Trustpoint) wrapped DEKs,
// key check values, encryption counts and cache eviction (the plpgsql key functions in sql/
// call these).
#include "boundary/guard.hpp"
#include "postmaster/settings.hpp"
#include "session/keeper_client.hpp"
#include "session/session_keys.hpp"
#include "session/xact_eviction.hpp"
#include "shmem/key_cache.hpp"
#include "shmem/shmem.hpp"

#include "hsm_types.hpp"

#include <cstring>

using namespace envelope::pg;

namespace {

envelope::DekId dek_id_arg(FunctionCallInfo fcinfo, int n) {
    envelope::DekId id;
    pg_uuid_t *u = PG_GETARG_UUID_P(n);
    memcpy(id.data(), u->data, UUID_LEN);
    return id;
}

TupleDesc composite_result(FunctionCallInfo fcinfo) {
    TupleDesc desc;
    if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE) {
        ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                        errmsg("function returning a record called in a context that cannot "
                               "accept it")));
    }
    return BlessTupleDesc(desc);
}

// The (wrapped_dek bytea, kek_label text) row of the functions that ask the keeper to wrap.
Datum wrapped_dek_row(TupleDesc desc, const uint8 *wrapped, uint32 len, const char *kek) {
    bytea *b = static_cast<bytea *>(palloc(VARHDRSZ + len));
    SET_VARSIZE(b, VARHDRSZ + len);
    memcpy(VARDATA(b), wrapped, len);
    Datum v[2] = {PointerGetDatum(b), CStringGetTextDatum(kek)};
    bool n[2] = {false, false};
    return HeapTupleGetDatum(heap_form_tuple(desc, v, n));
}

}  // namespace

// envelope._new_wrapped_dek(id uuid, OUT wrapped_dek bytea, OUT kek_label text):
// the keeper generates a DEK on the token, wraps it bound to id, and caches it.
ENVELOPE_SQL_FUNCTION(envelope_new_wrapped_dek) {
    envelope::DekId id = dek_id_arg(fcinfo, 0);
    TupleDesc desc = composite_result(fcinfo);
    // A standby (or read-only transaction) must not create keys it can never store.
    PreventCommandIfReadOnly("envelope.create_key() or envelope.rotate_key()");
    uint8 wrapped[kMaxWrapped];
    uint32 len = 0;
    char kek[kKekLabelSize] = {};
    keeper_create(MyDatabaseId, id, wrapped, &len, kek);
    // The keeper cached the new key already; if its keyring row never commits, drop it again.
    evict_at_transaction_end(id, EvictWhen::on_abort);
    return wrapped_dek_row(desc, wrapped, len, kek);
}

// envelope._rewrap(id uuid, wrapped bytea, kek_label text, OUT wrapped_dek bytea,
// OUT kek_label text): the same DEK wrapped again under the keeper's KEK (KEK rotation).
ENVELOPE_SQL_FUNCTION(envelope_rewrap) {
    envelope::DekId id = dek_id_arg(fcinfo, 0);
    TupleDesc desc = composite_result(fcinfo);
    PreventCommandIfReadOnly("envelope.rewrap_keys()");
    if (PG_ARGISNULL(1) || PG_ARGISNULL(2)) {
        ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
                        errmsg("a destroyed key has nothing to re-wrap")));
    }
    bytea *old = PG_GETARG_BYTEA_PP(1);
    char *old_label = text_to_cstring(PG_GETARG_TEXT_PP(2));
    uint8 wrapped[kMaxWrapped];
    uint32 len = static_cast<uint32>(VARSIZE_ANY_EXHDR(old));
    if (len > sizeof wrapped) {
        ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED), errmsg("wrapped key too long")));
    }
    memcpy(wrapped, VARDATA_ANY(old), len);
    char kek[kKekLabelSize] = {};
    keeper_rewrap(MyDatabaseId, id, old_label, wrapped, &len, kek);
    return wrapped_dek_row(desc, wrapped, len, kek);
}

// envelope._import_legacy_dek(id uuid, wrapped bytea, legacy_kek_label text,
// OUT wrapped_dek bytea, OUT kek_label text): the keeper decrypts Trustpoint's wrapped DEK with
// the legacy KEK inside the token, wraps it bound to id under its KEK, and caches it.
ENVELOPE_SQL_FUNCTION(envelope_import_legacy_dek) {
    envelope::DekId id = dek_id_arg(fcinfo, 0);
    bytea *legacy = PG_GETARG_BYTEA_PP(1);
    char *label = text_to_cstring(PG_GETARG_TEXT_PP(2));
    TupleDesc desc = composite_result(fcinfo);
    PreventCommandIfReadOnly("envelope.import_legacy_key()");
    const size_t legacy_len = VARSIZE_ANY_EXHDR(legacy);
    if (legacy_len != envelope::kLegacyWrappedSize) {
        ereport(ERROR,
                (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                 errmsg("a Trustpoint wrapped DEK is %zu bytes, not %zu",
                        envelope::kLegacyWrappedSize, legacy_len),
                 errdetail("It is 8 random bytes followed by the DEK encrypted with AES-256-ECB "
                           "under the legacy KEK (Trustpoint's encrypted_dek).")));
    }
    const size_t label_len = strlen(label);
    if (label_len == 0 || label_len >= static_cast<size_t>(kKekLabelSize)) {
        ereport(ERROR,
                (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("invalid legacy KEK label"),
                 errdetail("KEK labels are 1 to %d bytes long.", kKekLabelSize - 1)));
    }
    if (setting_kek_label != nullptr && strcmp(label, setting_kek_label) == 0) {
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("the legacy KEK label names pg_envelope's own KEK"),
                        errdetail("pg_envelope's KEK (envelope.kek_label) only wraps keys; it "
                                  "never decrypts a legacy wrapped DEK."),
                        errhint("Pass the label of Trustpoint's KEK (default "
                                "'trustpoint-kek').")));
    }
    uint8 wrapped[kMaxWrapped];
    uint32 len = 0;
    char kek[kKekLabelSize] = {};
    keeper_import_legacy(MyDatabaseId, id, label,
                         reinterpret_cast<const uint8 *>(VARDATA_ANY(legacy)),
                         static_cast<uint32>(legacy_len), wrapped, &len, kek);
    // The keeper cached the key already; if its keyring row never commits, drop it again.
    evict_at_transaction_end(id, EvictWhen::on_abort);
    return wrapped_dek_row(desc, wrapped, len, kek);
}

// envelope._key_check_value(id uuid) -> text: public fingerprint of the DEK (loads it if needed).
ENVELOPE_SQL_FUNCTION(envelope_key_check_value) {
    envelope::DekId id = dek_id_arg(fcinfo, 0);
    ensure_preloaded();
    for (int attempt = 0;; ++attempt) {
        char kcv[17];
        bool ok = false;
        if (key_cache_check_value(MyDatabaseId, id, kcv, &ok)) {
            if (!ok) {
                ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
                                errmsg("pg_envelope: computing the key check value failed")));
            }
            PG_RETURN_TEXT_P(cstring_to_text(kcv));
        }
        if (attempt > 0) {
            ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                            errmsg("the key left the cache while it was being loaded"),
                            errhint("Retry the statement.")));
        }
        load_key(id);
    }
}

// envelope._encryptions(id uuid) -> bigint: values sealed under the key (NULL if not cached).
ENVELOPE_SQL_FUNCTION(envelope_encryptions) {
    envelope::DekId id = dek_id_arg(fcinfo, 0);
    ensure_preloaded();
    int64 n = key_cache_encryptions(MyDatabaseId, id);
    if (n < 0) PG_RETURN_NULL();
    PG_RETURN_INT64(n);
}

// envelope._forget_key(id uuid): drops a key from the shared cache (its bytes are wiped).
ENVELOPE_SQL_FUNCTION(envelope_forget_key) {
    envelope::DekId id = dek_id_arg(fcinfo, 0);
    ensure_preloaded();
    key_cache_forget(MyDatabaseId, id);
    PG_RETURN_VOID();
}
