// AES-256-GCM with the key and its expanded schedule only in protected memory.
#pragma once
#include "byte_view.hpp"
#include "crypto_sizes.hpp"

#include <cstddef>
#include <cstdint>
#include <initializer_list>

namespace envelope {

// Two implementations behind one interface (docs/architecture.md, "The codec"):
//  - caller_owned: Nettle's GCM with its context (AES round keys, GHASH table) in this
//    object's protected block; keyed once, ~80 ns for a 32-byte value.
//  - transient_evp: an OpenSSL EVP context created for the one value and freed (OpenSSL
//    cleanses it) before returning; ~0.6 µs fixed cost, but VAES/VPCLMUL make it twice as
//    fast per byte, so it wins above kCallerOwnedLimit.
// Both fall back to portable code on CPUs without AES-NI/PCLMUL.
enum class GcmEngine : uint8_t { automatic, caller_owned, transient_evp };
// Measured crossover on the data length (bench/README.md, "Codec engines").
constexpr size_t kCallerOwnedLimit = 1280;

class AesGcmKey {
  public:
    AesGcmKey() = default;
    AesGcmKey(const AesGcmKey &) = delete;
    AesGcmKey &operator=(const AesGcmKey &) = delete;
    ~AesGcmKey();

    // Keys the object with a 32-byte key (copied into protected memory). False when
    // protected memory cannot be had; the object is then not ready.
    bool init(const uint8_t key[kAesKeySize]) noexcept;
    bool ready() const noexcept { return state_ != nullptr; }
    // Wipes and releases the key and its schedule.
    void reset() noexcept;

    // Encrypts the concatenation of `plaintext` parts into out (same total length) and
    // writes the 16-byte tag. AAD is the concatenation of `aad` parts. The parts are joined
    // in out first, so out may overlap a part only at that part's own position.
    bool seal(const uint8_t nonce[kGcmNonceSize], std::initializer_list<ByteView> aad,
              std::initializer_list<ByteView> plaintext, uint8_t *out, uint8_t tag[kGcmTagSize],
              GcmEngine engine = GcmEngine::automatic) noexcept;

    // Decrypts ciphertext into out (same length) and checks the tag in constant time.
    // On any failure returns false and wipes out[0..ciphertext.size).
    bool open(const uint8_t nonce[kGcmNonceSize], std::initializer_list<ByteView> aad,
              ByteView ciphertext, const uint8_t tag[kGcmTagSize], uint8_t *out,
              GcmEngine engine = GcmEngine::automatic) noexcept;

  private:
    struct State;
    State *state_ = nullptr;
};

}  // namespace envelope
