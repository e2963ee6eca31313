// Trustpoint fields re-sealed as envelope values (see legacy_values.hpp).
#include "session/legacy_values.hpp"
#include "db/keyring.hpp"
#include "session/key_privileges.hpp"
#include "session/session_keys.hpp"
#include "session/value_crypto.hpp"

#include "legacy_field.hpp"
#include "wipe.hpp"

extern "C" {
#include "mb/pg_wchar.h"
}

namespace envelope::pg {

namespace {

// Version 1 of a named key opens legacy fields: envelope.import_legacy_key() stores the
// imported DEK as version 1, and later rotations add versions that seal the re-sealed values.
constexpr int kLegacyKeyVersion = 1;

LocalCipher *legacy_key(const char *key_name) {
    envelope::DekId id;
    bool index_key = false;
    if (!keyring_find_version(key_name, kLegacyKeyVersion, id, &index_key)) {
        ereport(ERROR, (errhidestmt(true), errhidecontext(true), errcode(ERRCODE_UNDEFINED_OBJECT),
                        errmsg("key \"%s\" does not exist", key_name),
                        errhint("Import Trustpoint's DEK first with "
                                "envelope.import_legacy_key('%s', wrapped_dek).",
                                key_name)));
    }
    if (index_key) raise_index_key_misuse(key_name);
    return key_for_open(id);
}

// The field's errors: never the field, never the plaintext, and no statement or context
// line in the server log (the statement may hold the field as a literal).
[[noreturn]] void raise_legacy_status(envelope::LegacyStatus st, const char *key_name) {
    switch (st) {
        case envelope::LegacyStatus::bad_base64:
            ereport(ERROR, (errhidestmt(true), errhidecontext(true),
                            errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
                            errmsg("invalid Trustpoint field: not base64"),
                            errdetail("A Trustpoint field is standard base64 with '=' padding "
                                      "and no whitespace.")));
        case envelope::LegacyStatus::bad_length:
            ereport(ERROR,
                    (errhidestmt(true), errhidecontext(true),
                     errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
                     errmsg("invalid Trustpoint field: wrong length"),
                     errdetail("A decoded Trustpoint field is a 12-byte nonce, a 16-byte tag "
                               "and one or more whole 16-byte blocks of ciphertext.")));
        case envelope::LegacyStatus::auth_failed:
            ereport(ERROR,
                    (errhidestmt(true), errhidecontext(true), errcode(ERRCODE_DATA_CORRUPTED),
                     errmsg("Trustpoint field failed authentication"),
                     errdetail("The field was modified, or it was not encrypted with the DEK "
                               "that is version %d of key \"%s\".",
                               kLegacyKeyVersion, key_name),
                     errhint("A wrong legacy KEK or wrapped DEK given to "
                             "envelope.import_legacy_key() yields a wrong key without an "
                             "error; import again under a new name with the right ones.")));
        case envelope::LegacyStatus::bad_padding:
            ereport(ERROR,
                    (errhidestmt(true), errhidecontext(true), errcode(ERRCODE_DATA_CORRUPTED),
                     errmsg("Trustpoint field has invalid padding"),
                     errdetail("The field authenticated, but its plaintext does not end "
                               "with n zero bytes and the byte n (n at most 15).")));
        case envelope::LegacyStatus::crypto_failure:
        case envelope::LegacyStatus::ok:
            break;
    }
    ereport(ERROR, (errhidestmt(true), errhidecontext(true), errcode(ERRCODE_INTERNAL_ERROR),
                    errmsg("pg_envelope: the cryptographic library failed")));
}

bool all_ascii(const uint8 *s, size_t len) {
    for (size_t i = 0; i < len; ++i) {
        if (s[i] & 0x80) return false;
    }
    return true;
}

// Text for this database: valid UTF-8 without NUL bytes, and, outside UTF-8 databases, ASCII
// (converting would quote unconvertible bytes in its error).
void require_text(const uint8 *plain, size_t len) {
    const bool utf8 = pg_verify_mbstr(PG_UTF8, reinterpret_cast<const char *>(plain),
                                      static_cast<int>(len), true);
    if (utf8 && (GetDatabaseEncoding() == PG_UTF8 || all_ascii(plain, len))) return;
    ereport(ERROR,
            (errhidestmt(true), errhidecontext(true), errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
             errmsg("Trustpoint field does not hold text this database can store"),
             errdetail(utf8 ? "The plaintext is UTF-8 with non-ASCII characters, and "
                              "this database's encoding is not UTF8."
                            : "The plaintext is not valid UTF-8 text (or holds a NUL "
                              "byte).")));
}

}  // namespace

bytea *reseal_legacy_value(const char *text, size_t len, const char *key_name) {
    LocalCipher *key = legacy_key(key_name);
    // Both, before anything is opened: re-sealing reveals nothing to a role that may only seal.
    require_key_privilege(key, KeyPrivilege::encrypt);
    require_key_privilege(key, KeyPrivilege::decrypt);
    if (len > MaxAllocSize / 2) raise_legacy_status(envelope::LegacyStatus::bad_length, key_name);

    uint8 *field = static_cast<uint8 *>(palloc(Max(envelope::legacy_decoded_max(len), 1)));
    size_t field_len = 0;
    envelope::LegacyStatus st = envelope::decode_legacy_field(text, len, field, &field_len);
    if (st != envelope::LegacyStatus::ok) raise_legacy_status(st, key_name);
    const size_t room = field_len - envelope::kLegacyHeaderSize;
    uint8 *plain = static_cast<uint8 *>(palloc(room));
    size_t plain_len = 0;
    st = envelope::open_legacy_field(key->cipher, {field, field_len}, plain, &plain_len);
    pfree(field);
    if (st != envelope::LegacyStatus::ok) raise_legacy_status(st, key_name);  // plain wiped

    bytea *volatile sealed = nullptr;
    // The plaintext is wiped however sealing ends (an ERROR included).
    PG_TRY();
    {
        require_text(plain, plain_len);
        sealed = seal_plaintext_input(reinterpret_cast<const char *>(plain), plain_len, key_name,
                                      nullptr);
    }
    PG_FINALLY();
    { envelope::secure_zero(plain, room); }
    PG_END_TRY();
    pfree(plain);
    return sealed;
}

}  // namespace envelope::pg
