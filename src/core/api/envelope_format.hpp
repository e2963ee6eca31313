// Envelope v1: the byte layout of a sealed value, its padding and its printable form.
#pragma once
#include "aes_gcm.hpp"
#include "byte_view.hpp"

#include <array>
#include <cstddef>
#include <cstdint>

namespace envelope {

//  offset  size  field
//  0       1     version (0x01)
//  1       16    DEK id (UUID bytes of the keyring row)
//  17      12    nonce (random)
//  29      n     ciphertext of  plaintext || 0x80 || 0x00 * k   (k >= 0 pads to pad_block)
//  29+n    16    GCM tag
// AAD = bytes [0,17) || caller context. The nonce is authenticated by GCM itself.
constexpr uint8_t kEnvelopeVersion = 1;
constexpr size_t kDekIdSize = 16;
constexpr size_t kHeaderSize = 1 + kDekIdSize;
constexpr size_t kNonceOffset = kHeaderSize;
constexpr size_t kCiphertextOffset = kHeaderSize + kGcmNonceSize;
constexpr size_t kEnvelopeOverhead = kCiphertextOffset + kGcmTagSize;  // 45
constexpr size_t kMinEnvelopeSize = kEnvelopeOverhead + 1;             // padding marker
constexpr unsigned kMaxPadBlock = 4096;

using DekId = std::array<uint8_t, kDekIdSize>;

enum class EnvelopeStatus {
    ok,
    malformed,            // too short, bad printable form
    unsupported_version,  // version byte not 1
    auth_failed,          // tag mismatch: wrong key, wrong context, tampered or truncated
    crypto_failure,       // OpenSSL / CSPRNG failure
};
const char *envelope_status_text(EnvelopeStatus s) noexcept;

// Padded plaintext length: len + 1 rounded up to a multiple of pad_block (pad_block 0 or 1
// means no rounding: only the 0x80 marker byte is added). pad_block must be <= kMaxPadBlock.
size_t padded_length(size_t plaintext_len, unsigned pad_block) noexcept;
size_t sealed_size(size_t plaintext_len, unsigned pad_block) noexcept;

// Seals plaintext into out, which must hold sealed_size(plaintext.size, pad_block) bytes.
// The nonce comes from NonceSource::instance().
EnvelopeStatus seal_envelope(AesGcmKey &key, const DekId &dek, ByteView plaintext, ByteView context,
                             unsigned pad_block, uint8_t *out) noexcept;

// A sealed value split into its fields (views into the caller's bytes).
struct ParsedEnvelope {
    DekId dek;             // which DEK sealed it
    ByteView header;       // version byte and DEK id: the first part of the AAD
    const uint8_t *nonce;  // kGcmNonceSize bytes
    ByteView ciphertext;   // padded plaintext length
    const uint8_t *tag;    // kGcmTagSize bytes
};

// Parses the layout without decrypting (to find which DEK to use). The only parser of the
// layout: callers parse once and pass the result to open_envelope.
EnvelopeStatus parse_envelope(ByteView sealed, ParsedEnvelope &parsed) noexcept;

// Opens a parsed value. out must hold parsed.ciphertext.size bytes; on success
// *plaintext_len is the unpadded length. On failure out is wiped.
EnvelopeStatus open_envelope(AesGcmKey &key, const ParsedEnvelope &parsed, ByteView context,
                             uint8_t *out, size_t *plaintext_len) noexcept;
// Parses and opens in one call (tests, tools). out must hold sealed.size - kEnvelopeOverhead.
EnvelopeStatus open_envelope(AesGcmKey &key, ByteView sealed, ByteView context, uint8_t *out,
                             size_t *plaintext_len) noexcept;

// Printable form: "pgenv1:" followed by standard base64 (with '=' padding) of the envelope.
constexpr char kPrintablePrefix[] = "pgenv1:";
constexpr size_t kPrintablePrefixLen = sizeof(kPrintablePrefix) - 1;
size_t printable_length(size_t sealed_len) noexcept;         // excluding NUL
void encode_printable(ByteView sealed, char *out) noexcept;  // writes printable_length + NUL
// True if text starts with the printable prefix (a value that claims to be sealed).
bool has_printable_prefix(const char *text, size_t len) noexcept;
// Upper bound of decoded bytes for a printable text of len chars.
size_t printable_decoded_max(size_t len) noexcept;
// Decodes; malformed on a missing prefix, bad base64, or fewer than kMinEnvelopeSize bytes;
// unsupported_version when the decoded version byte is not 1.
EnvelopeStatus decode_printable(const char *text, size_t len, uint8_t *out,
                                size_t *out_len) noexcept;

}  // namespace envelope
