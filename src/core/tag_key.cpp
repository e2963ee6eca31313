// HMAC-SHA-256 tags with Nettle, the keyed context in protected memory (see tag_key.hpp).
#include "tag_key.hpp"
#include "hkdf.hpp"
#include "protected_memory.hpp"
#include "wipe.hpp"

#include <nettle/hmac.h>

namespace envelope {

struct TagKey::State {
    struct hmac_sha256_ctx hmac;  // keyed: inner and outer pad states
};

TagKey::~TagKey() {
    reset();
}

void TagKey::reset() noexcept {
    protected_free(state_);  // wipes
    state_ = nullptr;
}

bool TagKey::init_mac_key(ByteView mac_key) noexcept {
    reset();
    if (mac_key.data == nullptr || mac_key.size == 0) return false;
    auto *s = static_cast<State *>(protected_alloc(sizeof(State)));
    if (s == nullptr) return false;
    hmac_sha256_set_key(&s->hmac, mac_key.size, mac_key.data);
    state_ = s;
    wipe_vector_registers();  // SHA-NI held key-derived state
    return true;
}

bool TagKey::init(const uint8_t index_key[kDekSize]) noexcept {
    if (index_key == nullptr) return false;
    static constexpr char kInfo[] = "pg_envelope index tag v1";
    uint8_t mac_key[kTagSize];
    bool ok = hkdf_sha256(ByteView(index_key, kDekSize), ByteView(),
                          ByteView(kInfo, sizeof(kInfo) - 1), mac_key, sizeof mac_key) &&
              init_mac_key(ByteView(mac_key, sizeof mac_key));
    secure_zero(mac_key, sizeof mac_key);
    return ok;
}

bool TagKey::tag(std::initializer_list<ByteView> parts, uint8_t out[kTagSize]) noexcept {
    if (state_ == nullptr || out == nullptr) return false;
    for (const ByteView &part : parts) {
        if (part.size > 0 && part.data == nullptr) return false;
    }
    for (const ByteView &part : parts) {
        if (part.size) hmac_sha256_update(&state_->hmac, part.size, part.data);
    }
    // Digest also resets the context to its keyed state for the next tag.
    hmac_sha256_digest(&state_->hmac, kTagSize, out);
    wipe_vector_registers();
    return true;
}

}  // namespace envelope
