// The one home of the AES-256-GCM sizes every part of pg_envelope uses.
#pragma once
#include <cstddef>

namespace envelope {

constexpr size_t kAesKeySize = 32;  // AES-256
constexpr size_t kDekSize = kAesKeySize;
constexpr size_t kGcmNonceSize = 12;  // 96-bit nonces (NIST SP 800-38D)
constexpr size_t kGcmTagSize = 16;    // full 128-bit tags only

}  // namespace envelope
