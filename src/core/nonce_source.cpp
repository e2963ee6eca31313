// Per-process buffer of CSPRNG bytes for GCM nonces, discarded in every fork child.
#include "nonce_source.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <pthread.h>

#include <cstring>

namespace envelope {

namespace {

void discard_in_child() noexcept {
    NonceSource::instance().discard();
}

}  // namespace

NonceSource &NonceSource::instance() noexcept {
    static NonceSource source;
    // Registered after the object exists, once per process (a fork child inherits it).
    static const bool registered = [] {
        return pthread_atfork(nullptr, nullptr, &discard_in_child) == 0;
    }();
    (void)registered;
    return source;
}

bool NonceSource::refill() noexcept {
    pos_ = kBufferSize;
    if (RAND_bytes(buf_, static_cast<int>(kBufferSize)) != 1) {
        OPENSSL_cleanse(buf_, kBufferSize);
        return false;
    }
    pos_ = 0;
    ++refills_;
    return true;
}

bool NonceSource::fill(uint8_t *out, size_t n) noexcept {
    if (n == 0) return true;
    if (out == nullptr || n > kBufferSize) return false;
    if (kBufferSize - pos_ < n) {
        // Leftover bytes fewer than n are dropped (wiped) rather than stitched across refills.
        OPENSSL_cleanse(buf_ + pos_, kBufferSize - pos_);
        if (!refill()) return false;
    }
    std::memcpy(out, buf_ + pos_, n);
    // Bytes handed out do not stay behind in the buffer.
    OPENSSL_cleanse(buf_ + pos_, n);
    pos_ += n;
    return true;
}

void NonceSource::discard() noexcept {
    OPENSSL_cleanse(buf_, kBufferSize);
    pos_ = kBufferSize;
}

}  // namespace envelope
