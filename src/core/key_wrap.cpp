// RFC 3394 / RFC 5649 over a caller-supplied AES block function (see key_wrap.hpp).
#include "key_wrap.hpp"
#include "wipe.hpp"

#include <cstring>
#include <stdexcept>

namespace envelope {

namespace {

constexpr uint8_t kIv3394[8] = {0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6, 0xA6};
constexpr uint8_t kIv5649Prefix[4] = {0xA6, 0x59, 0x59, 0xA6};

void xor_counter(uint8_t a[8], uint64_t t) {
    for (int k = 7; k >= 0; --k) {
        a[k] ^= static_cast<uint8_t>(t & 0xff);
        t >>= 8;
    }
}

// The RFC 3394 wrapping process W with initial value iv over n >= 2 blocks of 8 bytes in r
// (rewritten in place); a receives the final integrity register.
void wrap_core(const uint8_t iv[8], uint8_t *r, size_t n, const AesBlockFn &aes, uint8_t a[8]) {
    SecureBuffer block(16);
    std::memcpy(a, iv, 8);
    for (uint64_t j = 0; j < 6; ++j) {
        for (size_t i = 0; i < n; ++i) {
            std::memcpy(block.data(), a, 8);
            std::memcpy(block.data() + 8, r + 8 * i, 8);
            aes(true, block.data(), block.data());
            std::memcpy(a, block.data(), 8);
            xor_counter(a, n * j + i + 1);
            std::memcpy(r + 8 * i, block.data() + 8, 8);
        }
    }
}

// The inverse W^-1: a holds the first 8 wrapped bytes on entry and the recovered integrity
// register on return; r the other n blocks (rewritten in place).
void unwrap_core(uint8_t a[8], uint8_t *r, size_t n, const AesBlockFn &aes) {
    SecureBuffer block(16);
    for (uint64_t j = 6; j-- > 0;) {
        for (size_t i = n; i-- > 0;) {
            std::memcpy(block.data(), a, 8);
            xor_counter(block.data(), n * j + i + 1);
            std::memcpy(block.data() + 8, r + 8 * i, 8);
            aes(false, block.data(), block.data());
            std::memcpy(a, block.data(), 8);
            std::memcpy(r + 8 * i, block.data() + 8, 8);
        }
    }
}

bool equal_ct(const uint8_t *x, const uint8_t *y, size_t n) {
    uint8_t d = 0;
    for (size_t i = 0; i < n; ++i) d |= static_cast<uint8_t>(x[i] ^ y[i]);
    return d == 0;
}

}  // namespace

size_t key_wrap_size(KeyWrapVariant v, size_t len) noexcept {
    if (v == KeyWrapVariant::rfc3394) return len + 8;
    return (len + 7) / 8 * 8 + 8;
}

void key_wrap(KeyWrapVariant v, ByteView in, const AesBlockFn &aes, uint8_t *out) {
    if (v == KeyWrapVariant::rfc3394) {
        if (in.size < 16 || in.size % 8 != 0) {
            throw std::invalid_argument("RFC 3394 wraps a multiple of 8 bytes, at least 16");
        }
        const size_t n = in.size / 8;
        std::memcpy(out + 8, in.data, in.size);
        wrap_core(kIv3394, out + 8, n, aes, out);
        return;
    }
    if (in.size == 0 || in.size > 0xffffffffu) {
        throw std::invalid_argument("RFC 5649 wraps 1 to 2^32-1 bytes");
    }
    uint8_t aiv[8];
    std::memcpy(aiv, kIv5649Prefix, 4);
    for (int k = 0; k < 4; ++k) aiv[4 + k] = static_cast<uint8_t>(in.size >> (24 - 8 * k));
    const size_t padded = (in.size + 7) / 8 * 8;
    std::memset(out + 8, 0, padded);
    std::memcpy(out + 8, in.data, in.size);
    if (padded == 8) {
        // One block: a single AES encryption of AIV | P.
        std::memcpy(out, aiv, 8);
        aes(true, out, out);
        return;
    }
    wrap_core(aiv, out + 8, padded / 8, aes, out);
}

bool key_unwrap(KeyWrapVariant v, ByteView in, const AesBlockFn &aes, SecureBuffer &out) {
    if (in.size < 16 || in.size % 8 != 0) return false;
    const size_t n = in.size / 8 - 1;
    SecureBuffer work(in.data, in.size);
    uint8_t *a = work.data();
    uint8_t *r = work.data() + 8;
    if (v == KeyWrapVariant::rfc3394) {
        if (n < 2) return false;
        unwrap_core(a, r, n, aes);
        if (!equal_ct(a, kIv3394, 8)) return false;
        out = SecureBuffer(r, 8 * n);
        return true;
    }
    if (n == 1) {
        aes(false, work.data(), work.data());
    } else {
        unwrap_core(a, r, n, aes);
    }
    if (!equal_ct(a, kIv5649Prefix, 4)) return false;
    const size_t mli = (static_cast<size_t>(a[4]) << 24) | (static_cast<size_t>(a[5]) << 16) |
                       (static_cast<size_t>(a[6]) << 8) | a[7];
    if (mli <= 8 * (n - 1) || mli > 8 * n) return false;
    uint8_t pad = 0;
    for (size_t k = mli; k < 8 * n; ++k) pad |= r[k];
    if (pad != 0) return false;
    out = SecureBuffer(r, mli);
    return true;
}

}  // namespace envelope
