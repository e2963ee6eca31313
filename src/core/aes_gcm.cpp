// AES-256-GCM (see aes_gcm.hpp): Nettle with caller-owned state for small values, a
// per-value OpenSSL EVP context for large ones. Key bytes live only in the protected block.
#include "aes_gcm.hpp"

#include "protected_memory.hpp"
#include "wipe.hpp"

#include <nettle/gcm.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <climits>
#include <cstring>

namespace envelope {

struct AesGcmKey::State {
    struct gcm_aes256_ctx gcm;  // round keys + GHASH key table + per-message state
    uint8_t key[kAesKeySize];   // for the transient EVP contexts
};

namespace {

size_t total_size(std::initializer_list<ByteView> parts) noexcept {
    size_t total = 0;
    for (const ByteView &part : parts) total += part.size;
    return total;
}

bool parts_valid(std::initializer_list<ByteView> parts) noexcept {
    for (const ByteView &part : parts) {
        if (part.size > 0 && part.data == nullptr) return false;
    }
    return true;
}

// Concatenates parts into dest (memmove: a part may already sit where it belongs in dest).
void join_parts(std::initializer_list<ByteView> parts, uint8_t *dest) noexcept {
    size_t at = 0;
    for (const ByteView &part : parts) {
        if (part.size && part.data != dest + at) std::memmove(dest + at, part.data, part.size);
        at += part.size;
    }
}

// ---- caller_owned (Nettle) ----

// Nettle wants every AAD update but the last to be a whole number of blocks: carry the
// partial block between parts.
void nettle_aad(struct gcm_aes256_ctx *g, std::initializer_list<ByteView> aad) noexcept {
    uint8_t block[GCM_BLOCK_SIZE];
    size_t fill = 0;
    for (const ByteView &part : aad) {
        const uint8_t *p = part.data;
        size_t left = part.size;
        if (fill > 0 && left > 0) {
            const size_t take = left < GCM_BLOCK_SIZE - fill ? left : GCM_BLOCK_SIZE - fill;
            std::memcpy(block + fill, p, take);
            fill += take;
            p += take;
            left -= take;
            if (fill == GCM_BLOCK_SIZE) {
                gcm_aes256_update(g, GCM_BLOCK_SIZE, block);
                fill = 0;
            }
        }
        const size_t whole = left / GCM_BLOCK_SIZE * GCM_BLOCK_SIZE;
        if (whole > 0) gcm_aes256_update(g, whole, p);
        if (left > whole) {
            std::memcpy(block, p + whole, left - whole);
            fill = left - whole;
        }
    }
    if (fill > 0) gcm_aes256_update(g, fill, block);
}

void nettle_seal(struct gcm_aes256_ctx *g, const uint8_t *nonce,
                 std::initializer_list<ByteView> aad, uint8_t *data, size_t len,
                 uint8_t *tag) noexcept {
    gcm_aes256_set_iv(g, kGcmNonceSize, nonce);
    nettle_aad(g, aad);
    if (len > 0) gcm_aes256_encrypt(g, len, data, data);  // in place, one call
    gcm_aes256_digest(g, kGcmTagSize, tag);
}

bool nettle_open(struct gcm_aes256_ctx *g, const uint8_t *nonce,
                 std::initializer_list<ByteView> aad, ByteView ciphertext, const uint8_t *tag,
                 uint8_t *out) noexcept {
    gcm_aes256_set_iv(g, kGcmNonceSize, nonce);
    nettle_aad(g, aad);
    if (ciphertext.size > 0) gcm_aes256_decrypt(g, ciphertext.size, out, ciphertext.data);
    uint8_t computed[kGcmTagSize];
    gcm_aes256_digest(g, kGcmTagSize, computed);
    return CRYPTO_memcmp(computed, tag, kGcmTagSize) == 0;  // constant time
}

// ---- transient_evp (OpenSSL) ----

// EVP takes int lengths; feed larger inputs in pieces so size_t never truncates.
constexpr size_t kMaxChunk = static_cast<size_t>(INT_MAX) & ~static_cast<size_t>(15);

const EVP_CIPHER *evp_aes_256_gcm() noexcept {
    // Fetched once (an algorithm handle, no key material); freed at exit by OpenSSL.
    static EVP_CIPHER *cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
    return cipher;
}

bool evp_update(EVP_CIPHER_CTX *ctx, const uint8_t *in, size_t len, uint8_t *out,
                bool encrypt) noexcept {
    size_t done = 0;
    while (done < len) {
        size_t n = len - done;
        if (n > kMaxChunk) n = kMaxChunk;
        int outl = 0;
        uint8_t *dest = out ? out + done : nullptr;
        int rc = encrypt ? EVP_EncryptUpdate(ctx, dest, &outl, in + done, static_cast<int>(n))
                         : EVP_DecryptUpdate(ctx, dest, &outl, in + done, static_cast<int>(n));
        if (rc != 1 || (out && static_cast<size_t>(outl) != n)) return false;
        done += n;
    }
    return true;
}

bool evp_aad(EVP_CIPHER_CTX *ctx, std::initializer_list<ByteView> aad, bool encrypt) noexcept {
    for (const ByteView &part : aad) {
        if (part.size && !evp_update(ctx, part.data, part.size, nullptr, encrypt)) return false;
    }
    return true;
}

// A context for one value: created, keyed, used and freed here. EVP_CIPHER_CTX_free has
// the provider cleanse its key schedule, so no copy outlives the call.
class TransientContext {
  public:
    TransientContext() noexcept : ctx_(EVP_CIPHER_CTX_new()) {}
    ~TransientContext() { EVP_CIPHER_CTX_free(ctx_); }
    TransientContext(const TransientContext &) = delete;
    TransientContext &operator=(const TransientContext &) = delete;
    EVP_CIPHER_CTX *get() const noexcept { return ctx_; }

  private:
    EVP_CIPHER_CTX *ctx_;
};

// Large values: each part is encrypted from where it is (no joining copy).
bool evp_seal(const uint8_t *key, const uint8_t *nonce, std::initializer_list<ByteView> aad,
              std::initializer_list<ByteView> plaintext, uint8_t *out, uint8_t *tag) noexcept {
    const EVP_CIPHER *cipher = evp_aes_256_gcm();
    TransientContext t;
    if (cipher == nullptr || t.get() == nullptr) return false;
    if (EVP_EncryptInit_ex2(t.get(), cipher, key, nonce, nullptr) != 1) return false;
    if (!evp_aad(t.get(), aad, true)) return false;
    size_t at = 0;
    for (const ByteView &part : plaintext) {
        if (part.size && !evp_update(t.get(), part.data, part.size, out + at, true)) return false;
        at += part.size;
    }
    int outl = 0;
    uint8_t scratch[16];
    if (EVP_EncryptFinal_ex(t.get(), scratch, &outl) != 1 || outl != 0) return false;
    OSSL_PARAM params[2] = {
        OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, kGcmTagSize),
        OSSL_PARAM_construct_end()};
    return EVP_CIPHER_CTX_get_params(t.get(), params) == 1;
}

bool evp_open(const uint8_t *key, const uint8_t *nonce, std::initializer_list<ByteView> aad,
              ByteView ciphertext, const uint8_t *tag, uint8_t *out) noexcept {
    const EVP_CIPHER *cipher = evp_aes_256_gcm();
    TransientContext t;
    if (cipher == nullptr || t.get() == nullptr) return false;
    if (EVP_DecryptInit_ex2(t.get(), cipher, key, nonce, nullptr) != 1) return false;
    if (!evp_aad(t.get(), aad, false)) return false;
    if (!evp_update(t.get(), ciphertext.data, ciphertext.size, out, false)) return false;
    // OSSL_PARAM takes a non-const pointer; hand it a copy rather than casting away const.
    uint8_t expected[kGcmTagSize];
    std::memcpy(expected, tag, kGcmTagSize);
    OSSL_PARAM params[2] = {
        OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, expected, kGcmTagSize),
        OSSL_PARAM_construct_end()};
    if (EVP_CIPHER_CTX_set_params(t.get(), params) != 1) return false;
    int outl = 0;
    uint8_t scratch[16];
    return EVP_DecryptFinal_ex(t.get(), scratch, &outl) == 1 && outl == 0;  // constant time
}

bool use_caller_owned(GcmEngine engine, size_t len) noexcept {
    if (engine == GcmEngine::automatic) return len <= kCallerOwnedLimit;
    return engine == GcmEngine::caller_owned;
}

}  // namespace

AesGcmKey::~AesGcmKey() {
    reset();
}

void AesGcmKey::reset() noexcept {
    protected_free(state_);  // wipes the key, its schedule and the GHASH table
    state_ = nullptr;
}

bool AesGcmKey::init(const uint8_t key[kAesKeySize]) noexcept {
    reset();
    if (key == nullptr) return false;
    auto *s = static_cast<State *>(protected_alloc(sizeof(State)));
    if (s == nullptr) return false;
    std::memcpy(s->key, key, kAesKeySize);
    gcm_aes256_set_key(&s->gcm, s->key);
    state_ = s;
    wipe_vector_registers();  // the key schedule was computed in them
    return true;
}

bool AesGcmKey::seal(const uint8_t nonce[kGcmNonceSize], std::initializer_list<ByteView> aad,
                     std::initializer_list<ByteView> plaintext, uint8_t *out,
                     uint8_t tag[kGcmTagSize], GcmEngine engine) noexcept {
    if (!ready() || nonce == nullptr || tag == nullptr) return false;
    if (!parts_valid(aad) || !parts_valid(plaintext)) return false;
    const size_t total = total_size(plaintext);
    if (total > 0 && out == nullptr) return false;
    bool ok = true;
    if (use_caller_owned(engine, total)) {
        // Join the parts in out and encrypt in place: one Nettle call per value.
        join_parts(plaintext, out);
        nettle_seal(&state_->gcm, nonce, aad, out, total, tag);
    } else {
        ok = evp_seal(state_->key, nonce, aad, plaintext, out, tag);
        if (!ok && total > 0) secure_zero(out, total);  // may hold plaintext
    }
    wipe_vector_registers();  // round keys stay in SIMD registers otherwise
    return ok;
}

bool AesGcmKey::open(const uint8_t nonce[kGcmNonceSize], std::initializer_list<ByteView> aad,
                     ByteView ciphertext, const uint8_t tag[kGcmTagSize], uint8_t *out,
                     GcmEngine engine) noexcept {
    bool ok = ready() && nonce != nullptr && tag != nullptr && parts_valid(aad) &&
              (ciphertext.size == 0 || (out != nullptr && ciphertext.data != nullptr));
    if (ok) {
        ok = use_caller_owned(engine, ciphertext.size)
                 ? nettle_open(&state_->gcm, nonce, aad, ciphertext, tag, out)
                 : evp_open(state_->key, nonce, aad, ciphertext, tag, out);
    }
    if (!ok && out != nullptr && ciphertext.size > 0) secure_zero(out, ciphertext.size);
    wipe_vector_registers();  // round keys stay in SIMD registers otherwise
    return ok;
}

}  // namespace envelope
