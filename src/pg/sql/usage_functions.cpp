// envelope.value_key_id(value): the DEK id in a sealed value's header. No key, no privilege and
// no decryption: the id is part of the stored bytes (it is what every sealed dump shows), and
// it is what key_usage() and reencrypt() group and select by.
#include "boundary/guard.hpp"

#include "envelope_format.hpp"

extern "C" {
#include "utils/uuid.h"
}

#include <cstring>

ENVELOPE_SQL_FUNCTION(envelope_value_key_id) {
    if (PG_ARGISNULL(0)) PG_RETURN_NULL();
    struct varlena *v = PG_GETARG_VARLENA_PP(0);
    envelope::ParsedEnvelope parsed;
    const envelope::EnvelopeStatus st = envelope::parse_envelope(
        {reinterpret_cast<const uint8 *>(VARDATA_ANY(v)), VARSIZE_ANY_EXHDR(v)}, parsed);
    if (st != envelope::EnvelopeStatus::ok) {
        // Plain bytea that is not an envelope (a registered bytea column may hold other data).
        PG_RETURN_NULL();
    }
    auto *out = static_cast<pg_uuid_t *>(palloc(sizeof(pg_uuid_t)));
    memcpy(out->data, parsed.dek.data(), UUID_LEN);
    PG_RETURN_UUID_P(out);
}
