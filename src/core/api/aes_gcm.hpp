// AES-256-GCM with OpenSSL EVP: one reusable pair of cipher contexts per key.
#pragma once
#include "byte_view.hpp"
#include "crypto_sizes.hpp"

#include <cstddef>
#include <cstdint>
#include <initializer_list>

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;

namespace envelope {

// Holds encrypt and decrypt contexts already keyed, so a seal or open only sets the nonce.
// Every method is noexcept: failures are reported as false, never thrown, because the hot
// path is called straight from PostgreSQL type I/O.
class AesGcmKey {
  public:
    AesGcmKey() = default;
    AesGcmKey(const AesGcmKey &) = delete;
    AesGcmKey &operator=(const AesGcmKey &) = delete;
    ~AesGcmKey();

    // Keys both contexts with a 32-byte key. False on allocation or OpenSSL failure.
    bool init(const uint8_t key[kAesKeySize]) noexcept;
    bool ready() const noexcept { return enc_ != nullptr && dec_ != nullptr; }
    // Frees the contexts (OpenSSL wipes the key schedule).
    void reset() noexcept;

    // Encrypts the concatenation of `plaintext` parts into out (same total length) and
    // writes the 16-byte tag. AAD is the concatenation of `aad` parts.
    bool seal(const uint8_t nonce[kGcmNonceSize], std::initializer_list<ByteView> aad,
              std::initializer_list<ByteView> plaintext, uint8_t *out,
              uint8_t tag[kGcmTagSize]) noexcept;

    // Decrypts ciphertext into out (same length) and checks the tag in constant time.
    // On any failure returns false and wipes out[0..ciphertext.size).
    bool open(const uint8_t nonce[kGcmNonceSize], std::initializer_list<ByteView> aad,
              ByteView ciphertext, const uint8_t tag[kGcmTagSize], uint8_t *out) noexcept;

  private:
    EVP_CIPHER_CTX *enc_ = nullptr;
    EVP_CIPHER_CTX *dec_ = nullptr;
};

}  // namespace envelope
