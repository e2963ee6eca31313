// SQL function behind the Trustpoint migration's values: legacy fields re-sealed as
// encrypted_text (the legacy DEK's import is envelope._import_legacy_dek in key_functions.cpp).
#include "boundary/guard.hpp"
#include "session/legacy_values.hpp"

using namespace envelope::pg;

// envelope.import_legacy_value(stored text, key_name text) -> encrypted_text.
ENVELOPE_SQL_FUNCTION(envelope_import_legacy_value) {
    text *stored = PG_GETARG_TEXT_PP(0);
    char *key_name = text_to_cstring(PG_GETARG_TEXT_PP(1));
    return PointerGetDatum(
        reseal_legacy_value(VARDATA_ANY(stored), VARSIZE_ANY_EXHDR(stored), key_name));
}
