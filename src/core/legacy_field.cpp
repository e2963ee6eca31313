// Trustpoint fields: strict decoding, opening and unpadding (see legacy_field.hpp).
#include "legacy_field.hpp"
#include "base64.hpp"
#include "wipe.hpp"

namespace envelope {

const char *legacy_status_text(LegacyStatus s) noexcept {
    switch (s) {
        case LegacyStatus::ok:
            return "ok";
        case LegacyStatus::bad_base64:
            return "invalid base64";
        case LegacyStatus::bad_length:
            return "wrong length";
        case LegacyStatus::auth_failed:
            return "authentication failed";
        case LegacyStatus::bad_padding:
            return "invalid padding";
        case LegacyStatus::crypto_failure:
            return "cryptographic library failure";
    }
    return "unknown";
}

size_t legacy_decoded_max(size_t len) noexcept {
    return len / 4 * 3;
}

LegacyStatus decode_legacy_field(const char *text, size_t len, uint8_t *out,
                                 size_t *out_len) noexcept {
    *out_len = 0;
    size_t written = 0;
    if (!decode_base64_strict(reinterpret_cast<const unsigned char *>(text), len, out, &written)) {
        secure_zero(out, written);
        return LegacyStatus::bad_base64;
    }
    if (written < kLegacyMinFieldSize || (written - kLegacyHeaderSize) % kLegacyBlock != 0) {
        secure_zero(out, written);
        return LegacyStatus::bad_length;
    }
    *out_len = written;
    return LegacyStatus::ok;
}

LegacyStatus open_legacy_field(AesGcmKey &key, ByteView field, uint8_t *out,
                               size_t *plaintext_len) noexcept {
    *plaintext_len = 0;
    if (field.size < kLegacyMinFieldSize || (field.size - kLegacyHeaderSize) % kLegacyBlock != 0)
        return LegacyStatus::bad_length;
    if (!key.ready()) return LegacyStatus::crypto_failure;
    const uint8_t *nonce = field.data;
    const uint8_t *tag = field.data + kGcmNonceSize;
    const ByteView ciphertext(field.data + kLegacyHeaderSize, field.size - kLegacyHeaderSize);
    if (!key.open(nonce, {}, ciphertext, tag, out)) return LegacyStatus::auth_failed;
    // Constant-time over the last block: the padding is authentic data, but its check should
    // not tell a timing observer where the plaintext ends.
    const size_t n = out[ciphertext.size - 1];
    const uint8_t *last = out + ciphertext.size - kLegacyBlock;
    unsigned bad = n > kLegacyBlock - 1 ? 1u : 0u;
    for (size_t i = 0; i < kLegacyBlock - 1; ++i) {
        // Byte i of the last block is padding when it is among the n bytes before the count.
        const unsigned is_pad = i + 1 + n >= kLegacyBlock ? 1u : 0u;
        bad |= is_pad & (last[i] != 0 ? 1u : 0u);
    }
    if (bad != 0) {
        secure_zero(out, ciphertext.size);
        return LegacyStatus::bad_padding;
    }
    *plaintext_len = ciphertext.size - n - 1;
    secure_zero(out + *plaintext_len, n + 1);
    return LegacyStatus::ok;
}

}  // namespace envelope
