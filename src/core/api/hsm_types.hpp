// What the keeper and the PKCS#11 client share: failure kinds and the wrapped-DEK format.
#pragma once
#include "crypto_sizes.hpp"

#include <cstddef>
#include <cstdint>

namespace envelope {

// What went wrong, coarse enough for an operator and for SQLSTATE mapping.
enum class Pkcs11Failure {
    module_load,      // dlopen / C_GetFunctionList failed
    initialize,       // C_Initialize failed
    token_not_found,  // no slot holds a token with that label
    pin_file,         // PIN file missing, unreadable, empty or too permissive
    login,            // C_Login rejected the PIN (or PIN locked)
    key_not_found,    // no secret key object with that label (or more than one)
    unwrap_auth,      // wrapped DEK failed authentication: corrupted or other identity
    malformed,        // wrapped blob has the wrong length or version
    device,           // token removed, device error, session closed, stale handles
    ikm_command,      // envelope.ikm_command refused, failed, timed out or printed bad IKM
    ikm_salt,         // the cluster's IKM salt file is unreadable, of the wrong size or mode
    mechanism,        // the token offers no wrapping that the setting or a DEK's format needs
    other,
};
const char *pkcs11_failure_name(Pkcs11Failure f) noexcept;

// Wrapped DEK formats; the first byte names the format, so a keyring can hold DEKs wrapped
// different ways (the token decides what it can do: see WrapChoice).
// v1 (61 bytes): 0x01 | nonce(12) | ciphertext(32) | tag(16), AES-256-GCM under the KEK,
//   AAD = "pg_envelope/dek-wrap/v1\0" || identity.
// v2 (57 bytes): 0x02 | RFC 3394 AES key wrap of DEK(32) || binding(16) under the KEK, where
//   binding = first 16 bytes of SHA-256("pg_envelope/dek-wrap/v2\0" || identity); made by the
//   token's CKM_AES_KEY_WRAP or computed from its CKM_AES_ECB (the same bytes either way).
// v3 (57 bytes): 0x03 | RFC 5649 key wrap with padding of the same 48 bytes.
constexpr size_t kWrappedDekSize = 1 + kGcmNonceSize + kDekSize + kGcmTagSize;
constexpr uint8_t kWrapFormatVersion = 1;
constexpr uint8_t kWrapFormatKw = 2;
constexpr uint8_t kWrapFormatKwp = 3;
constexpr size_t kWrapBindingSize = 16;
constexpr size_t kWrappedDekKwSize = 1 + kDekSize + kWrapBindingSize + 8;
constexpr size_t kWrappedDekMaxSize = kWrappedDekSize;

// Whether n bytes can be a wrapped DEK of some format.
constexpr bool wrapped_dek_size_ok(size_t n) noexcept {
    return n == kWrappedDekSize || n == kWrappedDekKwSize;
}

// How DEKs are wrapped (envelope.wrap_mechanism): automatic takes the best the token offers,
// in this order; the others insist (and fail to connect if the token cannot).
enum class WrapChoice {
    automatic,
    aes_gcm,  // CKM_AES_GCM (format v1)
    aes_kw,   // the token's RFC 3394 key wrap, identified by a known-answer test (v2)
    aes_kwp,  // the token's RFC 5649 key wrap with padding, identified likewise (v3)
    ecb_kw,   // RFC 3394 computed from single-block CKM_AES_ECB operations in the token (v2)
};

// Trustpoint's legacy wrapped DEK (40 bytes): 8 random bytes (unused) || AES-256-ECB(KEK, DEK).
constexpr size_t kLegacyWrapPrefix = 8;
constexpr size_t kLegacyWrappedSize = kLegacyWrapPrefix + kDekSize;

}  // namespace envelope
