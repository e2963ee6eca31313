// HMAC-SHA-256 tags through OpenSSL 3's EVP_MAC, keyed once and re-initialised per tag.
#include "tag_key.hpp"
#include "hkdf.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

namespace envelope {

namespace {

// Fetched once per process; the algorithm object is immutable and shareable.
EVP_MAC *hmac_algorithm() noexcept {
    static EVP_MAC *mac = EVP_MAC_fetch(nullptr, OSSL_MAC_NAME_HMAC, nullptr);
    return mac;
}

}  // namespace

TagKey::~TagKey() {
    reset();
}

void TagKey::reset() noexcept {
    EVP_MAC_CTX_free(ctx_);  // OpenSSL cleanses the key it copied
    ctx_ = nullptr;
}

bool TagKey::init_mac_key(ByteView mac_key) noexcept {
    reset();
    EVP_MAC *mac = hmac_algorithm();
    if (mac == nullptr || mac_key.data == nullptr || mac_key.size == 0) return false;
    ctx_ = EVP_MAC_CTX_new(mac);
    if (ctx_ == nullptr) return false;
    char digest[] = "SHA256";
    OSSL_PARAM params[2];
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_MAC_init(ctx_, mac_key.data, mac_key.size, params) != 1) {
        reset();
        return false;
    }
    return true;
}

bool TagKey::init(const uint8_t index_key[kDekSize]) noexcept {
    if (index_key == nullptr) return false;
    static constexpr char kInfo[] = "pg_envelope index tag v1";
    uint8_t mac_key[kTagSize];
    bool ok = hkdf_sha256(ByteView(index_key, kDekSize), ByteView(),
                          ByteView(kInfo, sizeof(kInfo) - 1), mac_key, sizeof mac_key) &&
              init_mac_key(ByteView(mac_key, sizeof mac_key));
    OPENSSL_cleanse(mac_key, sizeof mac_key);
    return ok;
}

bool TagKey::tag(std::initializer_list<ByteView> parts, uint8_t out[kTagSize]) noexcept {
    if (ctx_ == nullptr || out == nullptr) return false;
    // A NULL key re-initialises with the key already set (OpenSSL 3 HMAC).
    if (EVP_MAC_init(ctx_, nullptr, 0, nullptr) != 1) return false;
    for (const ByteView &part : parts) {
        if (part.size && EVP_MAC_update(ctx_, part.data, part.size) != 1) return false;
    }
    size_t n = 0;
    if (EVP_MAC_final(ctx_, out, &n, kTagSize) != 1 || n != kTagSize) {
        OPENSSL_cleanse(out, kTagSize);
        return false;
    }
    return true;
}

}  // namespace envelope
