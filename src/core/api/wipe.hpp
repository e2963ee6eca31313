// Wiping memory that held secrets, in a way the compiler cannot optimise away.
#pragma once
#include <cstddef>

namespace envelope {

void secure_zero(void *p, size_t n) noexcept;

// Zeroes the SIMD registers (xmm/ymm/zmm): AES-NI and VAES code leaves round keys in them,
// and a core dump saves the register file. Called after every use of a key.
void wipe_vector_registers() noexcept;

}  // namespace envelope
