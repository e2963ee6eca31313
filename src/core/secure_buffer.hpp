// Owning byte buffer for key material and plaintext: protected memory (not in core dumps,
// locked where allowed), zeroized on every release.
#pragma once
#include "internal_only.hpp"
#include "byte_view.hpp"
#include "protected_memory.hpp"
#include "wipe.hpp"

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

namespace envelope {

class SecureBuffer {
  public:
    SecureBuffer() = default;
    explicit SecureBuffer(size_t n) { resize(n); }
    SecureBuffer(const uint8_t *src, size_t n) {
        resize(n);
        for (size_t i = 0; i < n; ++i) data_[i] = src[i];
    }
    SecureBuffer(const SecureBuffer &) = delete;
    SecureBuffer &operator=(const SecureBuffer &) = delete;
    SecureBuffer(SecureBuffer &&o) noexcept
        : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    SecureBuffer &operator=(SecureBuffer &&o) noexcept {
        if (this != &o) {
            release();
            data_ = std::exchange(o.data_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    ~SecureBuffer() { release(); }

    // Replaces the contents with n zero bytes; the old contents are wiped first.
    void resize(size_t n) {
        release();
        if (n == 0) return;
        data_ = static_cast<uint8_t *>(protected_alloc(n));
        if (data_ == nullptr) throw std::bad_alloc();
        size_ = n;
    }
    void release() noexcept {
        protected_free(data_);  // wipes
        data_ = nullptr;
        size_ = 0;
    }

    uint8_t *data() { return data_; }
    const uint8_t *data() const { return data_; }
    size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    ByteView view() const { return {data_, size_}; }

  private:
    uint8_t *data_ = nullptr;
    size_t size_ = 0;
};

}  // namespace envelope
