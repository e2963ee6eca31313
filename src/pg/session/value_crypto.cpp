// Sealing and opening of SQL values with the session's cached keys (see value_crypto.hpp).
#include "session/value_crypto.hpp"
#include "postmaster/settings.hpp"
#include "session/key_privileges.hpp"
#include "session/key_usage.hpp"
#include "session/session_keys.hpp"

#include "envelope_format.hpp"
#include "wipe.hpp"

extern "C" {
#include "replication/logicalworker.h"
}

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

// Every error raised while a value is handled keeps the statement and the error context (which
// can quote a plaintext, e.g. a COPY line) out of the server log; the client still gets both.
[[noreturn]] void raise_status(envelope::EnvelopeStatus st, bool context_given) {
    switch (st) {
        case envelope::EnvelopeStatus::malformed:
            ereport(ERROR, (errhidestmt(true), errhidecontext(true),
                            errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
                            errmsg("malformed encrypted value"),
                            errdetail("The value is too short or not in envelope format.")));
        case envelope::EnvelopeStatus::unsupported_version:
            ereport(ERROR, (errhidestmt(true), errhidecontext(true),
                            errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                            errmsg("unsupported encrypted value version"),
                            errdetail("This pg_envelope reads envelope version %d only.",
                                      envelope::kEnvelopeVersion)));
        case envelope::EnvelopeStatus::auth_failed:
            if (!context_given) {
                ereport(ERROR,
                        (errhidestmt(true), errhidecontext(true), errcode(ERRCODE_DATA_CORRUPTED),
                         errmsg("encrypted value cannot be opened without its context"),
                         errdetail("The value was sealed with a context (associated data), or "
                                   "it was modified, truncated or is not of this type."),
                         errhint("Open values sealed with a context through "
                                 "envelope.decrypt(value, context).")));
            }
            ereport(ERROR,
                    (errhidestmt(true), errhidecontext(true), errcode(ERRCODE_DATA_CORRUPTED),
                     errmsg("encrypted value failed authentication"),
                     errdetail("The value was modified or truncated, was sealed with another "
                               "context, or is not of this type.")));
        case envelope::EnvelopeStatus::crypto_failure:
        case envelope::EnvelopeStatus::ok:
            break;
    }
    ereport(ERROR, (errhidestmt(true), errhidecontext(true), errcode(ERRCODE_INTERNAL_ERROR),
                    errmsg("pg_envelope: the cryptographic library failed")));
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

envelope::ParsedEnvelope parse_or_raise(const uint8 *sealed, size_t len) {
    envelope::ParsedEnvelope parsed;
    envelope::EnvelopeStatus st = envelope::parse_envelope({sealed, len}, parsed);
    if (st != envelope::EnvelopeStatus::ok) raise_status(st, false);
    return parsed;
}

}  // namespace

bytea *seal_value(const char *data, size_t len, const char *key_name, PayloadKind kind,
                  const bytea *context) {
    LocalCipher *key = key_for_seal(key_name);
    require_key_privilege(key, KeyPrivilege::encrypt);
    const unsigned pad = static_cast<unsigned>(setting_pad_block);
    const size_t sealed_len = envelope::sealed_size(len, pad);
    if (sealed_len > MaxAllocSize - VARHDRSZ) {
        ereport(ERROR,
                (errhidestmt(true), errhidecontext(true), errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
                 errmsg("value too large to encrypt")));
    }
    Context c;
    build_context(c, kind, context);
    bytea *out = static_cast<bytea *>(palloc(VARHDRSZ + sealed_len));
    SET_VARSIZE(out, VARHDRSZ + sealed_len);
    count_seal(key);  // before the nonce is drawn: refuses past the budget, reserves on disk
    envelope::EnvelopeStatus st =
        envelope::seal_envelope(key->cipher, key->id, {reinterpret_cast<const uint8 *>(data), len},
                                {c.data, c.size}, pad, reinterpret_cast<uint8 *>(VARDATA(out)));
    if (st != envelope::EnvelopeStatus::ok) raise_status(st, context != nullptr);
    usage_count_seal(key);
    return out;
}

bytea *seal_plaintext_input(const char *text, size_t len, const char *key_name,
                            const bytea *context) {
    if (looks_like_sealed_value(text, len)) {
        ereport(ERROR, (errhidestmt(true), errhidecontext(true),
                        errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
                        errmsg("input is already a sealed encrypted_text value"),
                        errdetail("pg_envelope never encrypts a sealed value a second time."),
                        errhint("To load sealed values (from pg_dump, COPY or replication), set "
                                "envelope.io = 'sealed'.")));
    }
    return seal_value(text, len, key_name, PayloadKind::text, context);
}

namespace {

// Opens into `header` bytes of room followed by the plaintext; returns the buffer and the
// plaintext length. The padding tail is wiped.
uint8 *open_into_palloc(const uint8 *sealed, size_t len, PayloadKind kind, const bytea *context,
                        size_t header, size_t trailer, size_t *plain_len) {
    const envelope::ParsedEnvelope parsed = parse_or_raise(sealed, len);
    LocalCipher *key = key_for_open(parsed.dek);
    require_key_privilege(key, KeyPrivilege::decrypt);
    Context c;
    build_context(c, kind, context);
    auto *buf = static_cast<uint8 *>(palloc(header + parsed.ciphertext.size + trailer));
    uint8 *plain = buf + header;
    envelope::EnvelopeStatus st =
        envelope::open_envelope(key->cipher, parsed, {c.data, c.size}, plain, plain_len);
    if (st != envelope::EnvelopeStatus::ok) raise_status(st, context != nullptr);  // plain wiped
    // Wipe the padding tail, which held decrypted bytes too.
    envelope::secure_zero(plain + *plain_len, parsed.ciphertext.size - *plain_len);
    usage_count_open(key);
    return buf;
}

}  // namespace

struct varlena *open_value(const uint8 *sealed, size_t len, PayloadKind kind,
                           const bytea *context) {
    size_t plain_len = 0;
    auto *out = reinterpret_cast<struct varlena *>(
        open_into_palloc(sealed, len, kind, context, VARHDRSZ, 0, &plain_len));
    SET_VARSIZE(out, VARHDRSZ + plain_len);
    return out;
}

char *open_text_cstring(const uint8 *sealed, size_t len) {
    size_t plain_len = 0;
    char *out = reinterpret_cast<char *>(
        open_into_palloc(sealed, len, PayloadKind::text, nullptr, 0, 1, &plain_len));
    out[plain_len] = '\0';
    return out;
}

struct varlena *open_text_for_tag(const uint8 *sealed, size_t len) {
    const envelope::ParsedEnvelope parsed = parse_or_raise(sealed, len);
    LocalCipher *key = key_for_open(parsed.dek);
    Context c;
    build_context(c, PayloadKind::text, nullptr);
    auto *out = static_cast<struct varlena *>(palloc(VARHDRSZ + parsed.ciphertext.size));
    uint8 *plain = reinterpret_cast<uint8 *>(VARDATA(out));
    size_t plain_len = 0;
    envelope::EnvelopeStatus st =
        envelope::open_envelope(key->cipher, parsed, {c.data, c.size}, plain, &plain_len);
    if (st != envelope::EnvelopeStatus::ok) raise_status(st, false);  // plain wiped
    envelope::secure_zero(plain + plain_len, parsed.ciphertext.size - plain_len);
    SET_VARSIZE(out, VARHDRSZ + plain_len);
    return out;
}

bytea *parse_sealed_text(const char *text, size_t len) {
    const size_t cap = envelope::printable_decoded_max(len);
    bytea *out = static_cast<bytea *>(palloc(VARHDRSZ + Max(cap, 1)));
    size_t n = 0;
    envelope::EnvelopeStatus st =
        envelope::decode_printable(text, len, reinterpret_cast<uint8 *>(VARDATA(out)), &n);
    if (st == envelope::EnvelopeStatus::malformed) {
        ereport(ERROR, (errhidestmt(true), errhidecontext(true),
                        errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
                        errmsg("invalid sealed encrypted_text value"),
                        errdetail("Sealed values are \"%s\" followed by base64 of an envelope.",
                                  envelope::kPrintablePrefix),
                        errhint("With envelope.io = 'sealed', input must be a sealed value; set "
                                "envelope.io = 'plaintext' to encrypt plaintext.")));
    }
    if (st != envelope::EnvelopeStatus::ok) raise_status(st, false);
    SET_VARSIZE(out, VARHDRSZ + n);
    const envelope::ParsedEnvelope parsed =
        parse_or_raise(reinterpret_cast<const uint8 *>(VARDATA(out)), n);
    // A logical replication worker applies changes in commit order, so the key of a value is
    // in the keyring already if it ever will be: a missing one means the subscriber's keyring
    // is not kept in step, and applying would store values nobody can open.
    if (IsLogicalWorker()) require_keyring_row(parsed.dek);
    return out;
}

ValueCheck check_value(const uint8 *sealed, size_t len, PayloadKind kind, const bytea *context) {
    const envelope::ParsedEnvelope parsed = parse_or_raise(sealed, len);
    LocalCipher *key = key_for_open(parsed.dek);
    require_key_privilege(key, KeyPrivilege::decrypt);
    Context c;
    build_context(c, kind, context);
    uint8 *scratch = static_cast<uint8 *>(palloc(Max(parsed.ciphertext.size, 1)));
    size_t plain_len = 0;
    envelope::EnvelopeStatus st =
        envelope::open_envelope(key->cipher, parsed, {c.data, c.size}, scratch, &plain_len);
    envelope::secure_zero(scratch, parsed.ciphertext.size);
    pfree(scratch);
    if (st == envelope::EnvelopeStatus::auth_failed) return ValueCheck::auth_failed;
    if (st != envelope::EnvelopeStatus::ok) raise_status(st, context != nullptr);
    usage_count_open(key);
    return ValueCheck::opened;
}

char *sealed_to_text(const bytea *stored) {
    const size_t n = VARSIZE_ANY_EXHDR(stored);
    char *out = static_cast<char *>(palloc(envelope::printable_length(n) + 1));
    envelope::encode_printable({reinterpret_cast<const uint8 *>(VARDATA_ANY(stored)), n}, out);
    return out;
}

}  // namespace envelope::pg
