// SQL encryption API: casts between text and encrypted_text, encrypt()/decrypt() with a key
// name and caller context, and their bytea counterparts.
#include "boundary/guard.hpp"
#include "session/value_crypto.hpp"

using namespace envelope::pg;

namespace {

const char *optional_key_name(FunctionCallInfo fcinfo, int n) {
    if (PG_NARGS() <= n || PG_ARGISNULL(n)) return nullptr;
    return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

const bytea *optional_context(FunctionCallInfo fcinfo, int n) {
    if (PG_NARGS() <= n || PG_ARGISNULL(n)) return nullptr;
    return PG_GETARG_BYTEA_PP(n);
}

}  // namespace

// text -> encrypted_text (cast) and envelope.encrypt(text, key_name, context).
ENVELOPE_SQL_FUNCTION(envelope_encrypt_text) {
    if (PG_ARGISNULL(0)) PG_RETURN_NULL();
    text *plain = PG_GETARG_TEXT_PP(0);
    const char *s = VARDATA_ANY(plain);
    const size_t len = VARSIZE_ANY_EXHDR(plain);
    return PointerGetDatum(
        seal_plaintext_input(s, len, optional_key_name(fcinfo, 1), optional_context(fcinfo, 2)));
}

// encrypted_text -> text (cast) and envelope.decrypt(encrypted_text, context).
ENVELOPE_SQL_FUNCTION(envelope_decrypt_text) {
    if (PG_ARGISNULL(0)) PG_RETURN_NULL();
    bytea *stored = PG_GETARG_BYTEA_PP(0);
    return PointerGetDatum(open_value(reinterpret_cast<const uint8 *>(VARDATA_ANY(stored)),
                                      VARSIZE_ANY_EXHDR(stored), PayloadKind::text,
                                      optional_context(fcinfo, 1)));
}

// envelope.encrypt_bytea(data, key_name, context) -> bytea holding envelope bytes.
ENVELOPE_SQL_FUNCTION(envelope_encrypt_bytea) {
    if (PG_ARGISNULL(0)) PG_RETURN_NULL();
    bytea *data = PG_GETARG_BYTEA_PP(0);
    return PointerGetDatum(seal_value(VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data),
                                      optional_key_name(fcinfo, 1), PayloadKind::bytea,
                                      optional_context(fcinfo, 2)));
}

// envelope.decrypt_bytea(sealed, context) -> bytea.
ENVELOPE_SQL_FUNCTION(envelope_decrypt_bytea) {
    if (PG_ARGISNULL(0)) PG_RETURN_NULL();
    bytea *sealed = PG_GETARG_BYTEA_PP(0);
    return PointerGetDatum(open_value(reinterpret_cast<const uint8 *>(VARDATA_ANY(sealed)),
                                      VARSIZE_ANY_EXHDR(sealed), PayloadKind::bytea,
                                      optional_context(fcinfo, 1)));
}
