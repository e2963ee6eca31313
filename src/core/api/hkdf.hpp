// HKDF-SHA256 (RFC 5869) through OpenSSL's EVP_KDF.
#pragma once
#include "byte_view.hpp"
#include "crypto_sizes.hpp"

#include <cstddef>
#include <cstdint>

namespace envelope {

// Extract-and-expand. out_len <= 255*32. False on OpenSSL failure.
bool hkdf_sha256(ByteView ikm, ByteView salt, ByteView info, uint8_t *out, size_t out_len) noexcept;

// Public fingerprint of a DEK: HKDF(ikm=key, salt="", info="pg_envelope key check value v1"),
// first 8 bytes as 16 lowercase hex chars written to out (17 bytes incl. NUL).
bool key_check_value(const uint8_t key[kDekSize], char out[17]) noexcept;

}  // namespace envelope
