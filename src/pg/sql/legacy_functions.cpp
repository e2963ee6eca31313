// SQL functions behind the Trustpoint migration: a legacy DEK re-wrapped by the keeper, legacy
// fields re-sealed as encrypted_text (envelope.import_legacy_key() in sql/ calls the first).
#include "boundary/guard.hpp"
#include "postmaster/settings.hpp"
#include "session/keeper_client.hpp"
#include "session/legacy_values.hpp"
#include "session/xact_eviction.hpp"

#include "hsm_types.hpp"

#include <cstring>

using namespace envelope::pg;

// envelope._import_legacy_dek(id uuid, wrapped bytea, legacy_kek_label text,
// OUT wrapped_dek bytea, OUT kek_label text): the keeper decrypts Trustpoint's wrapped DEK with
// the legacy KEK inside the token, wraps it bound to id under its KEK, and caches it.
ENVELOPE_SQL_FUNCTION(envelope_import_legacy_dek) {
    envelope::DekId id;
    memcpy(id.data(), PG_GETARG_UUID_P(0)->data, UUID_LEN);
    bytea *legacy = PG_GETARG_BYTEA_PP(1);
    char *label = text_to_cstring(PG_GETARG_TEXT_PP(2));
    TupleDesc desc;
    if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE) {
        ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                        errmsg("function returning a record called in a context that cannot "
                               "accept it")));
    }
    desc = BlessTupleDesc(desc);
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
    bytea *b = static_cast<bytea *>(palloc(VARHDRSZ + len));
    SET_VARSIZE(b, VARHDRSZ + len);
    memcpy(VARDATA(b), wrapped, len);
    Datum v[2] = {PointerGetDatum(b), CStringGetTextDatum(kek)};
    bool n[2] = {false, false};
    return HeapTupleGetDatum(heap_form_tuple(desc, v, n));
}

// envelope.import_legacy_value(stored text, key_name text) -> encrypted_text.
ENVELOPE_SQL_FUNCTION(envelope_import_legacy_value) {
    text *stored = PG_GETARG_TEXT_PP(0);
    char *key_name = text_to_cstring(PG_GETARG_TEXT_PP(1));
    return PointerGetDatum(
        reseal_legacy_value(VARDATA_ANY(stored), VARSIZE_ANY_EXHDR(stored), key_name));
}
