// AES-256-GCM (see aes_gcm.hpp): Nettle for small values, libgcrypt for larger ones, both with
// their state in the key's protected block; no key material anywhere else.
#include "aes_gcm.hpp"

#include "gcrypt_setup.hpp"
#include "protected_memory.hpp"
#include "wipe.hpp"

#include <gcrypt.h>
#include <nettle/gcm.h>
#include <openssl/crypto.h>

#include <cstring>

namespace envelope {

struct AesGcmKey::State {
    struct gcm_aes256_ctx gcm;  // Nettle: round keys + GHASH key table + per-message state
    gcry_cipher_hd_t gcry;      // libgcrypt: a handle allocated in protected memory, or null
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

// Feeds AAD parts to `update` in whole 16-byte blocks, carrying partial blocks between
// parts, with one final partial call: both libraries want every AAD call but the last to be
// a multiple of the block size.
template <typename Update>
bool feed_aad(std::initializer_list<ByteView> aad, Update &&update) noexcept {
    constexpr size_t kBlock = 16;
    uint8_t block[kBlock];
    size_t fill = 0;
    for (const ByteView &part : aad) {
        const uint8_t *p = part.data;
        size_t left = part.size;
        if (fill > 0 && left > 0) {
            const size_t take = left < kBlock - fill ? left : kBlock - fill;
            std::memcpy(block + fill, p, take);
            fill += take;
            p += take;
            left -= take;
            if (fill == kBlock) {
                if (!update(block, kBlock)) return false;
                fill = 0;
            }
        }
        const size_t whole = left / kBlock * kBlock;
        if (whole > 0 && !update(p, whole)) return false;
        if (left > whole) {
            std::memcpy(block, p + whole, left - whole);
            fill = left - whole;
        }
    }
    return fill == 0 || update(block, fill);
}

// ---- nettle ----

void nettle_seal(struct gcm_aes256_ctx *g, const uint8_t *nonce,
                 std::initializer_list<ByteView> aad, uint8_t *data, size_t len,
                 uint8_t *tag) noexcept {
    gcm_aes256_set_iv(g, kGcmNonceSize, nonce);
    feed_aad(aad, [g](const uint8_t *p, size_t n) {
        gcm_aes256_update(g, n, p);
        return true;
    });
    if (len > 0) gcm_aes256_encrypt(g, len, data, data);  // in place, one call
    gcm_aes256_digest(g, kGcmTagSize, tag);
}

bool nettle_open(struct gcm_aes256_ctx *g, const uint8_t *nonce,
                 std::initializer_list<ByteView> aad, ByteView ciphertext, const uint8_t *tag,
                 uint8_t *out) noexcept {
    gcm_aes256_set_iv(g, kGcmNonceSize, nonce);
    feed_aad(aad, [g](const uint8_t *p, size_t n) {
        gcm_aes256_update(g, n, p);
        return true;
    });
    if (ciphertext.size > 0) gcm_aes256_decrypt(g, ciphertext.size, out, ciphertext.data);
    uint8_t computed[kGcmTagSize];
    gcm_aes256_digest(g, kGcmTagSize, computed);
    return CRYPTO_memcmp(computed, tag, kGcmTagSize) == 0;  // constant time
}

// ---- libgcrypt ----

bool gcry_start(gcry_cipher_hd_t h, const uint8_t *nonce,
                std::initializer_list<ByteView> aad) noexcept {
    if (gcry_cipher_setiv(h, nonce, kGcmNonceSize) != 0) return false;
    return feed_aad(
        aad, [h](const uint8_t *p, size_t n) { return gcry_cipher_authenticate(h, p, n) == 0; });
}

bool gcry_seal(gcry_cipher_hd_t h, const uint8_t *nonce, std::initializer_list<ByteView> aad,
               uint8_t *data, size_t len, uint8_t *tag) noexcept {
    if (!gcry_start(h, nonce, aad)) return false;
    if (gcry_cipher_final(h) != 0) return false;
    if (len > 0 && gcry_cipher_encrypt(h, data, len, nullptr, 0) != 0) return false;  // in place
    return gcry_cipher_gettag(h, tag, kGcmTagSize) == 0;
}

bool gcry_open(gcry_cipher_hd_t h, const uint8_t *nonce, std::initializer_list<ByteView> aad,
               ByteView ciphertext, const uint8_t *tag, uint8_t *out) noexcept {
    if (!gcry_start(h, nonce, aad)) return false;
    if (gcry_cipher_final(h) != 0) return false;
    if (ciphertext.size > 0 &&
        gcry_cipher_decrypt(h, out, ciphertext.size, ciphertext.data, ciphertext.size) != 0)
        return false;
    return gcry_cipher_checktag(h, tag, kGcmTagSize) == 0;  // constant time
}

}  // namespace

bool libgcrypt_engine_available() noexcept {
    return gcrypt_ready();
}

AesGcmKey::~AesGcmKey() {
    reset();
}

void AesGcmKey::reset() noexcept {
    if (state_ != nullptr && state_->gcry != nullptr) gcry_cipher_close(state_->gcry);  // wipes
    protected_free(state_);  // wipes Nettle's context
    state_ = nullptr;
}

bool AesGcmKey::init(const uint8_t key[kAesKeySize]) noexcept {
    reset();
    if (key == nullptr) return false;
    auto *s = static_cast<State *>(protected_alloc(sizeof(State)));
    if (s == nullptr) return false;
    gcm_aes256_set_key(&s->gcm, key);
    s->gcry = nullptr;
    bool ok = true;
    if (gcrypt_ready()) {
        ok = gcry_cipher_open(&s->gcry, GCRY_CIPHER_AES256, GCRY_CIPHER_MODE_GCM,
                              GCRY_CIPHER_SECURE) == 0 &&
             gcry_cipher_setkey(s->gcry, key, kAesKeySize) == 0;
    }
    state_ = s;
    wipe_vector_registers();  // the key schedules were computed in them
    if (!ok) reset();
    return ok;
}

namespace {

bool use_nettle(GcmEngine engine, size_t len, bool have_gcrypt) noexcept {
    if (engine == GcmEngine::automatic) return len <= kNettleLimit || !have_gcrypt;
    return engine == GcmEngine::nettle;
}

}  // namespace

bool AesGcmKey::seal(const uint8_t nonce[kGcmNonceSize], std::initializer_list<ByteView> aad,
                     std::initializer_list<ByteView> plaintext, uint8_t *out,
                     uint8_t tag[kGcmTagSize], GcmEngine engine) noexcept {
    if (!ready() || nonce == nullptr || tag == nullptr) return false;
    if (!parts_valid(aad) || !parts_valid(plaintext)) return false;
    const size_t total = total_size(plaintext);
    if (total > 0 && out == nullptr) return false;
    const bool nettle = use_nettle(engine, total, state_->gcry != nullptr);
    if (!nettle && state_->gcry == nullptr) return false;
    // Join the parts in out and encrypt in place: one call per value.
    join_parts(plaintext, out);
    bool ok = true;
    if (nettle) {
        nettle_seal(&state_->gcm, nonce, aad, out, total, tag);
    } else {
        ok = gcry_seal(state_->gcry, nonce, aad, out, total, tag);
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
        const bool nettle = use_nettle(engine, ciphertext.size, state_->gcry != nullptr);
        if (nettle) {
            ok = nettle_open(&state_->gcm, nonce, aad, ciphertext, tag, out);
        } else {
            ok = state_->gcry != nullptr &&
                 gcry_open(state_->gcry, nonce, aad, ciphertext, tag, out);
        }
    }
    if (!ok && out != nullptr && ciphertext.size > 0) secure_zero(out, ciphertext.size);
    wipe_vector_registers();  // round keys stay in SIMD registers otherwise
    return ok;
}

}  // namespace envelope
