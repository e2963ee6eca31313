// Keyed tags for searchable encryption (blind indexes): HMAC-SHA-256 under a key used only for
// tags. An index key's 32 bytes (unwrapped like a DEK) never key HMAC directly: the MAC key is
// HKDF-SHA-256(index key, info "pg_envelope index tag v1"), so even a key put to the wrong use
// could not make a tag equal to anything computed under another purpose.
#pragma once
#include "byte_view.hpp"
#include "crypto_sizes.hpp"

#include <cstddef>
#include <cstdint>
#include <initializer_list>

namespace envelope {

constexpr size_t kTagSize = 32;  // full HMAC-SHA-256 output

// One keyed HMAC context reused for every tag, so a tag costs one HMAC over the input. The
// context (Nettle's hmac_sha256_ctx: the hashed inner and outer key pads) lives in a protected
// block (not in core dumps, wiped on release), like the cipher state of data keys. Every
// method is noexcept and reports failure as false.
class TagKey {
  public:
    TagKey() = default;
    TagKey(const TagKey &) = delete;
    TagKey &operator=(const TagKey &) = delete;
    ~TagKey();

    // Derives the MAC key from an index key (HKDF, see above) and keys the context.
    bool init(const uint8_t index_key[kDekSize]) noexcept;
    // Keys the context with a MAC key as given (test vectors).
    bool init_mac_key(ByteView mac_key) noexcept;
    bool ready() const noexcept { return state_ != nullptr; }
    // Wipes and releases the context.
    void reset() noexcept;

    // HMAC over the concatenation of parts into out.
    bool tag(std::initializer_list<ByteView> parts, uint8_t out[kTagSize]) noexcept;

  private:
    struct State;
    State *state_ = nullptr;
};

}  // namespace envelope
