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

typedef struct evp_mac_ctx_st EVP_MAC_CTX;

namespace envelope {

constexpr size_t kTagSize = 32;  // full HMAC-SHA-256 output

// One keyed HMAC context reused for every tag (re-initialised with the same key), so a tag
// costs one HMAC over the input, no key schedule. Every method is noexcept and reports
// failure as false.
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
    bool ready() const noexcept { return ctx_ != nullptr; }
    // Frees the context (OpenSSL wipes the key).
    void reset() noexcept;

    // HMAC over the concatenation of parts into out.
    bool tag(std::initializer_list<ByteView> parts, uint8_t out[kTagSize]) noexcept;

  private:
    EVP_MAC_CTX *ctx_ = nullptr;
};

}  // namespace envelope
