// Sealing and opening of SQL values with the backend's cached keys.
#include "value_crypto.hpp"
#include "key_access.hpp"
#include "settings.hpp"

#include "envelope_format.hpp"
#include "secure_buffer.hpp"

#include <cstring>

namespace envelope::pg {

namespace {

// AAD context = payload kind byte || caller context. Small: lives on the stack when it fits.
struct Context {
    uint8 inline_buf[128];
    uint8 *data;
    size_t size;
};

void build_context(Context &c, PayloadKind kind, const bytea *context) {
    size_t extra = context ? VARSIZE_ANY_EXHDR(context) : 0;
    c.size = 1 + extra;
    c.data = c.size <= sizeof c.inline_buf ? c.inline_buf : static_cast<uint8 *>(palloc(c.size));
    c.data[0] = static_cast<uint8>(kind);
    if (extra) memcpy(c.data + 1, VARDATA_ANY(context), extra);
}

[[noreturn]] void raise_status(envelope::EnvelopeStatus st) {
    switch (st) {
        case envelope::EnvelopeStatus::malformed:
            ereport(ERROR, (errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
                            errmsg("malformed encrypted value"),
                            errdetail("The value is too short or not in envelope format.")));
        case envelope::EnvelopeStatus::unsupported_version:
            ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                            errmsg("unsupported encrypted value version"),
                            errdetail("This pg_envelope reads envelope version %d only.",
                                      envelope::kEnvelopeVersion)));
        case envelope::EnvelopeStatus::auth_failed:
            ereport(
                ERROR,
                (errcode(ERRCODE_DATA_CORRUPTED), errmsg("encrypted value failed authentication"),
                 errdetail("The value was modified or truncated, was sealed with another "
                           "context, or is not of this type.")));
        case envelope::EnvelopeStatus::crypto_failure:
        case envelope::EnvelopeStatus::ok:
            break;
    }
    ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
                    errmsg("pg_envelope: the cryptographic library failed")));
}

envelope::DekId peek_or_raise(const uint8 *sealed, size_t len) {
    envelope::DekId id;
    envelope::EnvelopeStatus st = envelope::peek_envelope({sealed, len}, id);
    if (st != envelope::EnvelopeStatus::ok) raise_status(st);
    return id;
}

}  // namespace

bytea *seal_value(const char *data, size_t len, const char *key_name, PayloadKind kind,
                  const bytea *context) {
    KeyHandle key = key_for_encrypt(key_name);
    const unsigned pad = static_cast<unsigned>(setting_pad_block);
    const size_t sealed_len = envelope::sealed_size(len, pad);
    if (sealed_len > MaxAllocSize - VARHDRSZ) {
        ereport(ERROR,
                (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED), errmsg("value too large to encrypt")));
    }
    Context c;
    build_context(c, kind, context);
    bytea *out = static_cast<bytea *>(palloc(VARHDRSZ + sealed_len));
    SET_VARSIZE(out, VARHDRSZ + sealed_len);
    envelope::EnvelopeStatus st =
        envelope::seal_envelope(*key.cipher, key.id, {reinterpret_cast<const uint8 *>(data), len},
                                {c.data, c.size}, pad, reinterpret_cast<uint8 *>(VARDATA(out)));
    if (st != envelope::EnvelopeStatus::ok) raise_status(st);
    count_encryption(key);
    return out;
}

struct varlena *open_value(const uint8 *sealed, size_t len, PayloadKind kind,
                           const bytea *context) {
    envelope::DekId id = peek_or_raise(sealed, len);
    KeyHandle key = key_for_decrypt(id);
    Context c;
    build_context(c, kind, context);
    const size_t max_plain = len - envelope::kEnvelopeOverhead;
    struct varlena *out = static_cast<struct varlena *>(palloc(VARHDRSZ + max_plain));
    size_t plain_len = 0;
    envelope::EnvelopeStatus st =
        envelope::open_envelope(*key.cipher, {sealed, len}, {c.data, c.size},
                                reinterpret_cast<uint8 *>(VARDATA(out)), &plain_len);
    if (st != envelope::EnvelopeStatus::ok) {
        pfree(out);  // open_envelope already wiped it
        raise_status(st);
    }
    // Wipe the padding tail, which held decrypted bytes too.
    if (max_plain > plain_len) {
        envelope::secure_zero(reinterpret_cast<uint8 *>(VARDATA(out)) + plain_len,
                              max_plain - plain_len);
    }
    SET_VARSIZE(out, VARHDRSZ + plain_len);
    return out;
}

void verify_sealed(const uint8 *sealed, size_t len, PayloadKind kind) {
    struct varlena *plain = open_value(sealed, len, kind, nullptr);
    envelope::secure_zero(VARDATA(plain), VARSIZE(plain) - VARHDRSZ);
    pfree(plain);
}

bytea *parse_sealed_text(const char *text, size_t len) {
    const size_t cap = envelope::printable_decoded_max(len);
    bytea *out = static_cast<bytea *>(palloc(VARHDRSZ + Max(cap, 1)));
    size_t n = 0;
    envelope::EnvelopeStatus st =
        envelope::decode_printable(text, len, reinterpret_cast<uint8 *>(VARDATA(out)), &n);
    if (st == envelope::EnvelopeStatus::malformed) {
        ereport(ERROR, (errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
                        errmsg("invalid sealed encrypted_text value"),
                        errdetail("Sealed values are \"%s\" followed by base64 of an envelope.",
                                  envelope::kPrintablePrefix),
                        errhint("With envelope.io = 'sealed', input must be a sealed value; set "
                                "envelope.io = 'plaintext' to encrypt plaintext.")));
    }
    if (st != envelope::EnvelopeStatus::ok) raise_status(st);
    SET_VARSIZE(out, VARHDRSZ + n);
    verify_sealed(reinterpret_cast<uint8 *>(VARDATA(out)), n, PayloadKind::text);
    return out;
}

char *sealed_to_text(const bytea *stored) {
    const size_t n = VARSIZE_ANY_EXHDR(stored);
    char *out = static_cast<char *>(palloc(envelope::printable_length(n) + 1));
    envelope::encode_printable({reinterpret_cast<const uint8 *>(VARDATA_ANY(stored)), n}, out);
    return out;
}

bool looks_like_sealed_value(const char *text, size_t len) {
    if (!envelope::has_printable_prefix(text, len)) return false;
    const size_t cap = envelope::printable_decoded_max(len);
    uint8 *buf = static_cast<uint8 *>(palloc(Max(cap, 1)));
    size_t n = 0;
    envelope::EnvelopeStatus st = envelope::decode_printable(text, len, buf, &n);
    pfree(buf);
    return st != envelope::EnvelopeStatus::malformed;
}

}  // namespace envelope::pg
