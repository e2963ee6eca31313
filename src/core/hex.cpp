// Hex encoding and decoding (see api/hex.hpp).
#include "hex.hpp"

namespace envelope {

namespace {
constexpr char kDigits[] = "0123456789abcdef";

int digit_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
}  // namespace

void hex_encode(ByteView bytes, char *out) noexcept {
    for (size_t i = 0; i < bytes.size; ++i) {
        out[2 * i] = kDigits[bytes.data[i] >> 4];
        out[2 * i + 1] = kDigits[bytes.data[i] & 15];
    }
    out[2 * bytes.size] = '\0';
}

bool hex_decode(const char *hex, size_t hex_len, uint8_t *out, size_t n) noexcept {
    if (hex == nullptr || hex_len != 2 * n) return false;
    for (size_t i = 0; i < n; ++i) {
        int hi = digit_value(hex[2 * i]);
        int lo = digit_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return false;
        out[i] = static_cast<uint8_t>(hi << 4 | lo);
    }
    return true;
}

void format_uuid(const uint8_t id[16], char out[37]) noexcept {
    int o = 0;
    for (int i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
        out[o++] = kDigits[id[i] >> 4];
        out[o++] = kDigits[id[i] & 15];
    }
    out[o] = '\0';
}

}  // namespace envelope
