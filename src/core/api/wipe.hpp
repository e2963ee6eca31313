// Wiping memory that held secrets, in a way the compiler cannot optimise away.
#pragma once
#include <cstddef>

namespace envelope {

void secure_zero(void *p, size_t n) noexcept;

}  // namespace envelope
