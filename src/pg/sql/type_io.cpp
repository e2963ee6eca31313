// I/O functions of the encrypted_text type. Plaintext mode seals on input and opens on output;
// sealed mode moves the printable sealed form (its form checked on input); auto, the default,
// is sealed for dump and restore tools and for logical replication, plaintext otherwise.
// envelope_fdw's transfers to and from shards are always sealed.
#include "boundary/guard.hpp"
#include "postmaster/settings.hpp"
#include "session/fdw_transfer.hpp"
#include "session/value_crypto.hpp"

#include "wipe.hpp"

extern "C" {
#include "libpq/pqformat.h"
#include "mb/pg_wchar.h"
#include "replication/logicalworker.h"
#include "replication/walsender.h"
}

using namespace envelope::pg;

namespace {

// PostgreSQL's dump and restore tools, and psql running a plain-format dump: they name
// themselves in application_name and run with an empty search_path (pg_dump, pg_dumpall and
// pg_restore set it on connecting; a plain dump sets it in its first lines). An application's
// session is neither, so its plaintext input keeps refusing sealed values: nobody can feed an
// application someone else's ciphertext as "plaintext" and have it decrypted for them.
bool dump_or_restore_session() {
    const char *path = namespace_search_path;
    if (path == nullptr || !(path[0] == '\0' || strcmp(path, "\"\"") == 0)) return false;
    static const char *const kTools[] = {"pg_dump", "pg_dumpall", "pg_restore", "psql"};
    for (const char *tool : kTools) {
        if (application_name != nullptr && strcmp(application_name, tool) == 0) return true;
    }
    return false;
}

// Output: a logical walsender (pgoutput, table sync COPY) and dump sessions send ciphertext;
// so does envelope_fdw when it sends parameters to a shard, whatever envelope.io says.
bool sealed_output() {
    if (fdw_transfer_active()) return true;
    if (setting_io_mode != io_auto) return setting_io_mode == io_sealed;
    return am_walsender || dump_or_restore_session();
}

// Input: logical replication workers and restore sessions receive ciphertext; so does
// envelope_fdw when it converts a shard's rows (the shard runs with envelope.io = sealed).
bool sealed_input() {
    if (fdw_transfer_active()) return true;
    if (setting_io_mode != io_auto) return setting_io_mode == io_sealed;
    return IsLogicalWorker() || dump_or_restore_session();
}

}  // namespace

ENVELOPE_SQL_FUNCTION(envelope_encrypted_text_in) {
    const char *s = PG_GETARG_CSTRING(0);
    const size_t len = strlen(s);
    if (sealed_input()) return PointerGetDatum(parse_sealed_text(s, len));
    return PointerGetDatum(seal_plaintext_input(s, len, nullptr, nullptr));
}

ENVELOPE_SQL_FUNCTION(envelope_encrypted_text_out) {
    bytea *stored = PG_GETARG_BYTEA_PP(0);
    if (sealed_output()) PG_RETURN_CSTRING(sealed_to_text(stored));
    PG_RETURN_CSTRING(open_text_cstring(reinterpret_cast<const uint8 *>(VARDATA_ANY(stored)),
                                        VARSIZE_ANY_EXHDR(stored)));
}

// Binary input is untrusted exactly like text input: the same checks run.
ENVELOPE_SQL_FUNCTION(envelope_encrypted_text_recv) {
    StringInfo buf = reinterpret_cast<StringInfo>(PG_GETARG_POINTER(0));
    int nbytes = 0;
    char *s = pq_getmsgtext(buf, buf->len - buf->cursor, &nbytes);
    if (sealed_input()) return PointerGetDatum(parse_sealed_text(s, nbytes));
    return PointerGetDatum(seal_plaintext_input(s, nbytes, nullptr, nullptr));
}

ENVELOPE_SQL_FUNCTION(envelope_encrypted_text_send) {
    bytea *stored = PG_GETARG_BYTEA_PP(0);
    StringInfoData buf;
    pq_begintypsend(&buf);
    if (sealed_output()) {
        char *s = sealed_to_text(stored);
        pq_sendtext(&buf, s, static_cast<int>(strlen(s)));
    } else {
        struct varlena *plain = open_value(reinterpret_cast<const uint8 *>(VARDATA_ANY(stored)),
                                           VARSIZE_ANY_EXHDR(stored), PayloadKind::text, nullptr);
        pq_sendtext(&buf, VARDATA(plain), VARSIZE(plain) - VARHDRSZ);
        envelope::secure_zero(plain, VARSIZE(plain));  // our copy; buf is PostgreSQL's
        pfree(plain);
    }
    PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}
