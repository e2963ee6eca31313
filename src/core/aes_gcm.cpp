// AES-256-GCM through OpenSSL EVP with contexts keyed once and reused for every value.
#include "aes_gcm.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <climits>
#include <cstring>

namespace envelope {

namespace {

// EVP takes int lengths; feed larger inputs in pieces so size_t never truncates.
constexpr size_t kMaxChunk = static_cast<size_t>(INT_MAX) & ~static_cast<size_t>(15);
constexpr size_t kJoinLimit = 4096;

bool feed_aad_part(EVP_CIPHER_CTX *ctx, ByteView part, bool encrypt) noexcept {
    size_t done = 0;
    while (done < part.size) {
        size_t n = part.size - done;
        if (n > kMaxChunk) n = kMaxChunk;
        int outl = 0;
        int rc =
            encrypt ? EVP_EncryptUpdate(ctx, nullptr, &outl, part.data + done, static_cast<int>(n))
                    : EVP_DecryptUpdate(ctx, nullptr, &outl, part.data + done, static_cast<int>(n));
        if (rc != 1) return false;
        done += n;
    }
    return true;
}

size_t total_size(std::initializer_list<ByteView> parts) noexcept {
    size_t total = 0;
    for (const ByteView &part : parts) total += part.size;
    return total;
}

// Concatenates parts into dest (memmove: a part may already sit where it belongs in dest).
void join_parts(std::initializer_list<ByteView> parts, uint8_t *dest) noexcept {
    size_t at = 0;
    for (const ByteView &part : parts) {
        if (part.size && part.data != dest + at) std::memmove(dest + at, part.data, part.size);
        at += part.size;
    }
}

// OpenSSL 3 charges a fixed cost per EVP call, so small AAD parts (the envelope header and a
// short context) are joined on the stack and fed in one update.
bool feed_aad(EVP_CIPHER_CTX *ctx, std::initializer_list<ByteView> aad, bool encrypt) noexcept {
    uint8_t joined[256];
    const size_t total = total_size(aad);
    if (total <= sizeof joined) {
        join_parts(aad, joined);
        bool ok = total == 0 || feed_aad_part(ctx, ByteView(joined, total), encrypt);
        OPENSSL_cleanse(joined, total);
        return ok;
    }
    for (const ByteView &part : aad) {
        if (!feed_aad_part(ctx, part, encrypt)) return false;
    }
    return true;
}

// GCM is a stream mode: every update emits exactly as many bytes as it consumes.
bool feed_data(EVP_CIPHER_CTX *ctx, const uint8_t *in, size_t len, uint8_t *out,
               bool encrypt) noexcept {
    size_t done = 0;
    while (done < len) {
        size_t n = len - done;
        if (n > kMaxChunk) n = kMaxChunk;
        int outl = 0;
        int rc = encrypt
                     ? EVP_EncryptUpdate(ctx, out + done, &outl, in + done, static_cast<int>(n))
                     : EVP_DecryptUpdate(ctx, out + done, &outl, in + done, static_cast<int>(n));
        if (rc != 1 || static_cast<size_t>(outl) != n) return false;
        done += n;
    }
    return true;
}

EVP_CIPHER_CTX *make_context(const uint8_t *key, bool encrypt) noexcept {
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == nullptr) return nullptr;
    bool ok;
    if (encrypt) {
        ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(kGcmNonceSize),
                                 nullptr) == 1 &&
             EVP_EncryptInit_ex(ctx, nullptr, nullptr, key, nullptr) == 1;
    } else {
        ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
             EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(kGcmNonceSize),
                                 nullptr) == 1 &&
             EVP_DecryptInit_ex(ctx, nullptr, nullptr, key, nullptr) == 1;
    }
    if (!ok) {
        EVP_CIPHER_CTX_free(ctx);
        return nullptr;
    }
    return ctx;
}

}  // namespace

AesGcmKey::~AesGcmKey() {
    reset();
}

void AesGcmKey::reset() noexcept {
    EVP_CIPHER_CTX_free(enc_);
    EVP_CIPHER_CTX_free(dec_);
    enc_ = nullptr;
    dec_ = nullptr;
}

bool AesGcmKey::init(const uint8_t key[kAesKeySize]) noexcept {
    reset();
    if (key == nullptr) return false;
    enc_ = make_context(key, true);
    dec_ = make_context(key, false);
    if (enc_ == nullptr || dec_ == nullptr) {
        reset();
        return false;
    }
    return true;
}

bool AesGcmKey::seal(const uint8_t nonce[kGcmNonceSize], std::initializer_list<ByteView> aad,
                     std::initializer_list<ByteView> plaintext, uint8_t *out,
                     uint8_t tag[kGcmTagSize]) noexcept {
    if (!ready() || nonce == nullptr || tag == nullptr) return false;
    if (EVP_EncryptInit_ex(enc_, nullptr, nullptr, nullptr, nonce) != 1) return false;
    if (!feed_aad(enc_, aad, true)) return false;
    for (const ByteView &part : plaintext) {
        if (part.size > 0 && (out == nullptr || part.data == nullptr)) return false;
    }
    const size_t total = total_size(plaintext);
    if (total <= kJoinLimit) {
        // Small values: join the parts in out and encrypt in place in one update (the per-call
        // cost dominates); large ones are not worth the extra copy.
        join_parts(plaintext, out);
        if (total > 0 && !feed_data(enc_, out, total, out, true)) return false;
    } else {
        size_t at = 0;
        for (const ByteView &part : plaintext) {
            if (part.size && !feed_data(enc_, part.data, part.size, out + at, true)) return false;
            at += part.size;
        }
    }
    int outl = 0;
    uint8_t scratch[16];
    if (EVP_EncryptFinal_ex(enc_, scratch, &outl) != 1 || outl != 0) return false;
    OSSL_PARAM params[2] = {
        OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, kGcmTagSize),
        OSSL_PARAM_construct_end()};
    return EVP_CIPHER_CTX_get_params(enc_, params) == 1;
}

bool AesGcmKey::open(const uint8_t nonce[kGcmNonceSize], std::initializer_list<ByteView> aad,
                     ByteView ciphertext, const uint8_t tag[kGcmTagSize], uint8_t *out) noexcept {
    bool ok = ready() && nonce != nullptr && tag != nullptr &&
              (ciphertext.size == 0 || (out != nullptr && ciphertext.data != nullptr));
    if (ok) ok = EVP_DecryptInit_ex(dec_, nullptr, nullptr, nullptr, nonce) == 1;
    if (ok) ok = feed_aad(dec_, aad, false);
    if (ok) ok = feed_data(dec_, ciphertext.data, ciphertext.size, out, false);
    if (ok) {
        // OSSL_PARAM takes a non-const pointer; hand it a copy rather than casting away const.
        uint8_t expected[kGcmTagSize];
        std::memcpy(expected, tag, kGcmTagSize);
        OSSL_PARAM params[2] = {
            OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, expected, kGcmTagSize),
            OSSL_PARAM_construct_end()};
        ok = EVP_CIPHER_CTX_set_params(dec_, params) == 1;
    }
    if (ok) {
        // Final compares the tag in constant time.
        int outl = 0;
        uint8_t scratch[16];
        ok = EVP_DecryptFinal_ex(dec_, scratch, &outl) == 1 && outl == 0;
    }
    if (!ok && out != nullptr && ciphertext.size > 0) OPENSSL_cleanse(out, ciphertext.size);
    return ok;
}

}  // namespace envelope
