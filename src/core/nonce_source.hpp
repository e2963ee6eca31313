// Random nonces from OpenSSL's CSPRNG, drawn 4 KiB at a time; per process, fork-safe.
#pragma once
#include "internal_only.hpp"

#include <cstddef>
#include <cstdint>

namespace envelope {

// One buffer per process. A pthread_atfork child handler discards the buffer, so a forked
// child never reuses bytes its parent has (or will) hand out. Refill uses RAND_bytes.
class NonceSource {
  public:
    static constexpr size_t kBufferSize = 4096;

    static NonceSource &instance() noexcept;

    // Fills out[0..n) with fresh random bytes; n <= kBufferSize. False if the CSPRNG failed
    // (callers must then refuse to encrypt).
    bool fill(uint8_t *out, size_t n) noexcept;

    // Drops buffered bytes (wiped). Called automatically in a fork child.
    void discard() noexcept;

    // For tests: how many times the buffer was refilled in this process.
    uint64_t refill_count() const noexcept { return refills_; }

  private:
    NonceSource() = default;
    bool refill() noexcept;

    uint8_t buf_[kBufferSize] = {};
    size_t pos_ = kBufferSize;  // empty until first use
    uint64_t refills_ = 0;
};

}  // namespace envelope
