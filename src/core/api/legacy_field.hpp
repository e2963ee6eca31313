// Trustpoint's encrypted fields (the migration source): base64(nonce 12 || tag 16 ||
// AES-256-GCM(DEK, plaintext || 0x00 * n || byte n)), n in 0..15 so that the padded plaintext is
// whole 16-byte blocks, no associated data.
#pragma once
#include "aes_gcm.hpp"
#include "byte_view.hpp"
#include "crypto_sizes.hpp"

#include <cstddef>
#include <cstdint>

namespace envelope {

enum class LegacyStatus {
    ok,
    bad_base64,      // not strict standard base64 (whitespace, other characters, bad '=')
    bad_length,      // shorter than one block after the header, or not whole blocks
    auth_failed,     // the tag does not verify: modified, or another key
    bad_padding,     // authentic, but the padding is not 0x00 * n || n with n <= 15
    crypto_failure,  // the codec failed (no protected memory)
};
const char *legacy_status_text(LegacyStatus s) noexcept;

constexpr size_t kLegacyHeaderSize = kGcmNonceSize + kGcmTagSize;  // 28
constexpr size_t kLegacyBlock = 16;
constexpr size_t kLegacyMinFieldSize = kLegacyHeaderSize + kLegacyBlock;  // 44

// Bytes decode_legacy_field may write for a text of len characters.
size_t legacy_decoded_max(size_t len) noexcept;
// Decodes the base64 text of a field into out (legacy_decoded_max(len) bytes) and checks its
// length. On failure out is wiped.
LegacyStatus decode_legacy_field(const char *text, size_t len, uint8_t *out,
                                 size_t *out_len) noexcept;
// Opens a decoded field: out must hold field.size - kLegacyHeaderSize bytes; on success
// *plaintext_len is the length without the padding, and out's padding tail is wiped. On any
// failure out is wiped.
LegacyStatus open_legacy_field(AesGcmKey &key, ByteView field, uint8_t *out,
                               size_t *plaintext_len) noexcept;

}  // namespace envelope
