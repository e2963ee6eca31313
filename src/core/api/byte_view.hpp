// A non-owning view of bytes, the currency of the core's noexcept APIs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace envelope {

struct ByteView {
    const uint8_t *data = nullptr;
    size_t size = 0;

    constexpr ByteView() = default;
    constexpr ByteView(const uint8_t *d, size_t n) noexcept : data(d), size(n) {}
    ByteView(const char *d, size_t n) noexcept
        : data(reinterpret_cast<const uint8_t *>(d)), size(n) {}
    explicit ByteView(std::string_view s) noexcept
        : data(reinterpret_cast<const uint8_t *>(s.data())), size(s.size()) {}
    bool empty() const noexcept { return size == 0; }
};

}  // namespace envelope
