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
    other,
};
const char *pkcs11_failure_name(Pkcs11Failure f) noexcept;

// Wrapped DEK format v1 (61 bytes): 0x01 | nonce(12) | ciphertext(32) | tag(16),
// AES-256-GCM under the KEK, AAD = "pg_envelope/dek-wrap/v1\0" || identity.
constexpr size_t kWrappedDekSize = 1 + kGcmNonceSize + kDekSize + kGcmTagSize;
constexpr uint8_t kWrapFormatVersion = 1;

// Trustpoint's legacy wrapped DEK (40 bytes): 8 random bytes (unused) || AES-256-ECB(KEK, DEK).
constexpr size_t kLegacyWrapPrefix = 8;
constexpr size_t kLegacyWrappedSize = kLegacyWrapPrefix + kDekSize;

}  // namespace envelope
