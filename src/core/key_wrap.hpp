// AES key wrap (RFC 3394) and key wrap with padding (RFC 5649), computed from a single-block
// AES function the caller supplies: for a token that offers only AES-ECB, each block operation
// is one call into the token, so the KEK never leaves it. Also used to compute the expected
// answers of the known-answer tests that identify a token's own key-wrap mechanisms.
#pragma once
#include "internal_only.hpp"
#include "byte_view.hpp"
#include "secure_buffer.hpp"

#include <cstdint>
#include <functional>

namespace envelope {

enum class KeyWrapVariant { rfc3394, rfc5649 };

// One AES block operation with the wrapping key: encrypt (true) or decrypt in -> out (16 bytes).
// May throw; the wrap functions pass the exception on.
using AesBlockFn = std::function<void(bool encrypt, const uint8_t *in, uint8_t *out)>;

// Size of the wrapped output for `len` input bytes.
size_t key_wrap_size(KeyWrapVariant v, size_t len) noexcept;

// Wraps `in` (RFC 3394: a multiple of 8 bytes, at least 16; RFC 5649: 1 or more bytes) into
// out (key_wrap_size bytes). Throws std::invalid_argument for a length the variant refuses.
void key_wrap(KeyWrapVariant v, ByteView in, const AesBlockFn &aes, uint8_t *out);

// Unwraps; false if the integrity check fails (wrong key, corrupted, other variant) or the
// length is impossible. On success out holds the plaintext.
bool key_unwrap(KeyWrapVariant v, ByteView in, const AesBlockFn &aes, SecureBuffer &out);

}  // namespace envelope
