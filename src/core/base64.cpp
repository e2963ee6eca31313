// Strict standard base64 decoding, shared by the printable envelope form and Trustpoint fields.
#include "base64.hpp"

namespace envelope {

namespace {

// -1 for anything outside the standard alphabet ('=' is handled by the caller).
int base64_value(unsigned char c) noexcept {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

}  // namespace

bool decode_base64_strict(const unsigned char *b, size_t blen, uint8_t *out,
                          size_t *written) noexcept {
    *written = 0;
    if (blen == 0 || blen % 4 != 0) return false;
    for (size_t i = 0; i < blen; i += 4) {
        bool last = i + 4 == blen;
        uint32_t q = 0;
        size_t pads = 0;
        for (size_t j = 0; j < 4; ++j) {
            unsigned char c = b[i + j];
            int v = 0;
            if (c == '=') {
                if (!last || j < 2) return false;
                ++pads;
            } else {
                if (pads > 0) return false;
                v = base64_value(c);
                if (v < 0) return false;
            }
            q = (q << 6) | static_cast<uint32_t>(v);
        }
        if (pads == 2 && (q & 0xffff) != 0) return false;
        if (pads == 1 && (q & 0xff) != 0) return false;
        out[(*written)++] = static_cast<uint8_t>(q >> 16);
        if (pads < 2) out[(*written)++] = static_cast<uint8_t>(q >> 8);
        if (pads < 1) out[(*written)++] = static_cast<uint8_t>(q);
    }
    return true;
}

}  // namespace envelope
