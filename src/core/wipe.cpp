// Wiping through OPENSSL_cleanse, which the compiler cannot elide.
#include "wipe.hpp"

#include <openssl/crypto.h>

namespace envelope {

void secure_zero(void *p, size_t n) noexcept {
    if (p != nullptr && n > 0) OPENSSL_cleanse(p, n);
}

}  // namespace envelope
