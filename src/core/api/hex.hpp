// The one hex codec: DEK ids, key check values, identities and files all use it.
#pragma once
#include "byte_view.hpp"

#include <cstddef>
#include <cstdint>

namespace envelope {

// Writes 2 * bytes.size lowercase hex digits and a NUL to out.
void hex_encode(ByteView bytes, char *out) noexcept;
// Decodes exactly 2 * n hex digits (either case) into out[0..n). False on anything else.
bool hex_decode(const char *hex, size_t hex_len, uint8_t *out, size_t n) noexcept;
// A 16-byte id as a canonical UUID string (8-4-4-4-12); out holds 37 bytes.
void format_uuid(const uint8_t id[16], char out[37]) noexcept;

}  // namespace envelope
