// Envelope v1: sealing, opening, length padding and the "pgenv1:" base64 printable form.
#include "envelope_format.hpp"

#include "base64.hpp"
#include "nonce_source.hpp"
#include "wipe.hpp"

#include <cstdint>
#include <cstring>

namespace envelope {

namespace {

// The padding suffix 0x80 || 0x00 * k is a prefix of this table (k < kMaxPadBlock).
struct PadTable {
    uint8_t bytes[kMaxPadBlock + 1] = {};
    constexpr PadTable() { bytes[0] = 0x80; }
};
constexpr PadTable kPad{};

constexpr char kBase64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

}  // namespace

const char *envelope_status_text(EnvelopeStatus s) noexcept {
    switch (s) {
        case EnvelopeStatus::ok:
            return "ok";
        case EnvelopeStatus::malformed:
            return "malformed envelope";
        case EnvelopeStatus::unsupported_version:
            return "unsupported envelope version";
        case EnvelopeStatus::auth_failed:
            return "authentication failed";
        case EnvelopeStatus::crypto_failure:
            return "cryptographic library failure";
    }
    return "unknown envelope status";
}

size_t padded_length(size_t plaintext_len, unsigned pad_block) noexcept {
    // 0 signals an invalid pad_block or a length that would overflow.
    if (pad_block > kMaxPadBlock) return 0;
    if (plaintext_len > SIZE_MAX - kEnvelopeOverhead - 1 - kMaxPadBlock) return 0;
    size_t with_marker = plaintext_len + 1;
    if (pad_block <= 1) return with_marker;
    return (with_marker + pad_block - 1) / pad_block * pad_block;
}

size_t sealed_size(size_t plaintext_len, unsigned pad_block) noexcept {
    size_t padded = padded_length(plaintext_len, pad_block);
    return padded == 0 ? 0 : padded + kEnvelopeOverhead;
}

EnvelopeStatus seal_envelope(AesGcmKey &key, const DekId &dek, ByteView plaintext, ByteView context,
                             unsigned pad_block, uint8_t *out) noexcept {
    size_t padded = padded_length(plaintext.size, pad_block);
    if (padded == 0 || out == nullptr) return EnvelopeStatus::malformed;
    if (plaintext.size > 0 && plaintext.data == nullptr) return EnvelopeStatus::malformed;
    if (context.size > 0 && context.data == nullptr) return EnvelopeStatus::malformed;
    if (!key.ready()) return EnvelopeStatus::crypto_failure;

    out[0] = kEnvelopeVersion;
    std::memcpy(out + 1, dek.data(), kDekIdSize);
    uint8_t *nonce = out + kNonceOffset;
    if (!NonceSource::instance().fill(nonce, kGcmNonceSize)) {
        secure_zero(out, padded + kEnvelopeOverhead);
        return EnvelopeStatus::crypto_failure;
    }
    size_t pad_len = padded - plaintext.size;  // 1 .. kMaxPadBlock
    uint8_t *ct = out + kCiphertextOffset;
    if (!key.seal(nonce, {ByteView(out, kHeaderSize), context},
                  {plaintext, ByteView(kPad.bytes, pad_len)}, ct, ct + padded)) {
        secure_zero(out, padded + kEnvelopeOverhead);
        return EnvelopeStatus::crypto_failure;
    }
    return EnvelopeStatus::ok;
}

EnvelopeStatus parse_envelope(ByteView sealed, ParsedEnvelope &parsed) noexcept {
    if (sealed.data == nullptr || sealed.size < kMinEnvelopeSize) return EnvelopeStatus::malformed;
    if (sealed.data[0] != kEnvelopeVersion) return EnvelopeStatus::unsupported_version;
    std::memcpy(parsed.dek.data(), sealed.data + 1, kDekIdSize);
    const size_t n = sealed.size - kEnvelopeOverhead;
    parsed.header = ByteView(sealed.data, kHeaderSize);
    parsed.nonce = sealed.data + kNonceOffset;
    parsed.ciphertext = ByteView(sealed.data + kCiphertextOffset, n);
    parsed.tag = sealed.data + kCiphertextOffset + n;
    return EnvelopeStatus::ok;
}

EnvelopeStatus open_envelope(AesGcmKey &key, ByteView sealed, ByteView context, uint8_t *out,
                             size_t *plaintext_len) noexcept {
    if (plaintext_len != nullptr) *plaintext_len = 0;
    ParsedEnvelope parsed;
    EnvelopeStatus st = parse_envelope(sealed, parsed);
    if (st != EnvelopeStatus::ok) return st;
    return open_envelope(key, parsed, context, out, plaintext_len);
}

EnvelopeStatus open_envelope(AesGcmKey &key, const ParsedEnvelope &parsed, ByteView context,
                             uint8_t *out, size_t *plaintext_len) noexcept {
    if (plaintext_len != nullptr) *plaintext_len = 0;
    if (out == nullptr || plaintext_len == nullptr) return EnvelopeStatus::malformed;
    if (context.size > 0 && context.data == nullptr) return EnvelopeStatus::malformed;
    if (!key.ready()) return EnvelopeStatus::crypto_failure;

    const size_t n = parsed.ciphertext.size;
    if (!key.open(parsed.nonce, {parsed.header, context}, parsed.ciphertext, parsed.tag, out))
        return EnvelopeStatus::auth_failed;  // out already wiped

    // The padding was authenticated with the rest, so a bad one is a forgery by a key holder
    // (or a bug), never an oracle for an attacker without the key.
    size_t end = n;
    while (end > 0 && out[end - 1] == 0x00) --end;
    if (end == 0 || out[end - 1] != 0x80) {
        secure_zero(out, n);
        return EnvelopeStatus::auth_failed;
    }
    *plaintext_len = end - 1;
    return EnvelopeStatus::ok;
}

size_t printable_length(size_t sealed_len) noexcept {
    return kPrintablePrefixLen + (sealed_len + 2) / 3 * 4;
}

void encode_printable(ByteView sealed, char *out) noexcept {
    if (out == nullptr) return;
    std::memcpy(out, kPrintablePrefix, kPrintablePrefixLen);
    char *w = out + kPrintablePrefixLen;
    const uint8_t *p = sealed.data;
    size_t n = p == nullptr ? 0 : sealed.size;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t{p[i]} << 16) | (uint32_t{p[i + 1]} << 8) | p[i + 2];
        *w++ = kBase64Alphabet[(v >> 18) & 63];
        *w++ = kBase64Alphabet[(v >> 12) & 63];
        *w++ = kBase64Alphabet[(v >> 6) & 63];
        *w++ = kBase64Alphabet[v & 63];
    }
    size_t rest = n - i;
    if (rest == 1) {
        uint32_t v = uint32_t{p[i]} << 16;
        *w++ = kBase64Alphabet[(v >> 18) & 63];
        *w++ = kBase64Alphabet[(v >> 12) & 63];
        *w++ = '=';
        *w++ = '=';
    } else if (rest == 2) {
        uint32_t v = (uint32_t{p[i]} << 16) | (uint32_t{p[i + 1]} << 8);
        *w++ = kBase64Alphabet[(v >> 18) & 63];
        *w++ = kBase64Alphabet[(v >> 12) & 63];
        *w++ = kBase64Alphabet[(v >> 6) & 63];
        *w++ = '=';
    }
    *w = '\0';
}

bool has_printable_prefix(const char *text, size_t len) noexcept {
    return text != nullptr && len >= kPrintablePrefixLen &&
           std::memcmp(text, kPrintablePrefix, kPrintablePrefixLen) == 0;
}

size_t printable_decoded_max(size_t len) noexcept {
    if (len < kPrintablePrefixLen) return 0;
    return (len - kPrintablePrefixLen) / 4 * 3;
}

EnvelopeStatus decode_printable(const char *text, size_t len, uint8_t *out,
                                size_t *out_len) noexcept {
    if (out_len != nullptr) *out_len = 0;
    if (out == nullptr || out_len == nullptr || !has_printable_prefix(text, len))
        return EnvelopeStatus::malformed;
    const unsigned char *b = reinterpret_cast<const unsigned char *>(text) + kPrintablePrefixLen;
    size_t written = 0;
    bool decoded = decode_base64_strict(b, len - kPrintablePrefixLen, out, &written);
    if (!decoded || written < kMinEnvelopeSize) {
        secure_zero(out, written);
        return EnvelopeStatus::malformed;
    }
    if (out[0] != kEnvelopeVersion) {
        secure_zero(out, written);
        return EnvelopeStatus::unsupported_version;
    }
    *out_len = written;
    return EnvelopeStatus::ok;
}

}  // namespace envelope
