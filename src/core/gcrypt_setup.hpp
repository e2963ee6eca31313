// libgcrypt, initialised once with its secure allocations in pg_envelope's protected memory.
#pragma once
#include "internal_only.hpp"

#include <string>

namespace envelope {

// True when libgcrypt is ours to use: initialised here, before anyone else in the process,
// with GCRY_CIPHER_SECURE handles placed in protected_alloc blocks. False when another part
// of the process initialised it first (its allocations could not be trusted to be ours); the
// codec then uses Nettle for every size. ENVELOPE_GCRYPT_DISABLE_HWF (a comma-separated list
// of libgcrypt hardware-feature names) masks CPU features, for tests of the portable path.
bool gcrypt_ready() noexcept;

// libgcrypt's "hwflist" (the CPU features it uses), for tests; empty when not ready.
std::string gcrypt_hw_features();

}  // namespace envelope
