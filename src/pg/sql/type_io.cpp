// I/O functions of the encrypted_text type. Plaintext mode seals on input and opens on output;
// sealed mode (envelope.io = 'sealed') moves the printable sealed form, verified on input.
#include "boundary/guard.hpp"
#include "postmaster/settings.hpp"
#include "session/value_crypto.hpp"

extern "C" {
#include "libpq/pqformat.h"
#include "mb/pg_wchar.h"
}

using namespace envelope::pg;

ENVELOPE_SQL_FUNCTION(envelope_encrypted_text_in) {
    const char *s = PG_GETARG_CSTRING(0);
    const size_t len = strlen(s);
    if (setting_io_mode == io_sealed) return PointerGetDatum(parse_sealed_text(s, len));
    return PointerGetDatum(seal_plaintext_input(s, len, nullptr, nullptr));
}

ENVELOPE_SQL_FUNCTION(envelope_encrypted_text_out) {
    bytea *stored = PG_GETARG_BYTEA_PP(0);
    if (setting_io_mode == io_sealed) PG_RETURN_CSTRING(sealed_to_text(stored));
    struct varlena *plain = open_value(reinterpret_cast<const uint8 *>(VARDATA_ANY(stored)),
                                       VARSIZE_ANY_EXHDR(stored), PayloadKind::text, nullptr);
    PG_RETURN_CSTRING(text_to_cstring(reinterpret_cast<text *>(plain)));
}

// Binary input is untrusted exactly like text input: the same checks run.
ENVELOPE_SQL_FUNCTION(envelope_encrypted_text_recv) {
    StringInfo buf = reinterpret_cast<StringInfo>(PG_GETARG_POINTER(0));
    int nbytes = 0;
    char *s = pq_getmsgtext(buf, buf->len - buf->cursor, &nbytes);
    if (setting_io_mode == io_sealed) return PointerGetDatum(parse_sealed_text(s, nbytes));
    return PointerGetDatum(seal_plaintext_input(s, nbytes, nullptr, nullptr));
}

ENVELOPE_SQL_FUNCTION(envelope_encrypted_text_send) {
    bytea *stored = PG_GETARG_BYTEA_PP(0);
    StringInfoData buf;
    pq_begintypsend(&buf);
    if (setting_io_mode == io_sealed) {
        char *s = sealed_to_text(stored);
        pq_sendtext(&buf, s, static_cast<int>(strlen(s)));
    } else {
        struct varlena *plain = open_value(reinterpret_cast<const uint8 *>(VARDATA_ANY(stored)),
                                           VARSIZE_ANY_EXHDR(stored), PayloadKind::text, nullptr);
        pq_sendtext(&buf, VARDATA(plain), VARSIZE(plain) - VARHDRSZ);
    }
    PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}
