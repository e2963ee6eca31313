// Test vectors written in hex, decoded through the project's one hex codec (src/core/api/hex.hpp).
#pragma once
#include "hex.hpp"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace envelope::test {

inline std::vector<uint8_t> from_hex(const std::string &hex) {
    std::vector<uint8_t> out(hex.size() / 2);
    if (!envelope::hex_decode(hex.data(), hex.size(), out.data(), out.size()))
        throw std::invalid_argument("bad hex test vector");
    return out;
}

}  // namespace envelope::test
