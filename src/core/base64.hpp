// Strict standard base64 decoding (C++ zone only).
#pragma once
#include "internal_only.hpp"

#include <cstddef>
#include <cstdint>

namespace envelope {

// Strict standard base64: whole quanta only, no whitespace, '=' only as trailing padding of
// the last quantum, and unused bits zero (one canonical text per byte string). out must hold
// blen / 4 * 3 bytes. *written counts the bytes stored so far even on failure, so the caller
// can wipe them.
bool decode_base64_strict(const unsigned char *b, size_t blen, uint8_t *out,
                          size_t *written) noexcept;

}  // namespace envelope
