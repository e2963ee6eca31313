// AES-256-GCM with the key and everything derived from it only in protected memory.
#pragma once
#include "byte_view.hpp"
#include "crypto_sizes.hpp"

#include <cstddef>
#include <cstdint>
#include <initializer_list>

namespace envelope {

// Two implementations behind one interface, both keeping their state (AES round keys, GHASH
// key tables, per-message state) in this object's protected block (docs/architecture.md,
// "The codec"):
//  - nettle: Nettle's gcm_aes256; the lowest fixed cost (~75 ns for a 32-byte value).
//  - libgcrypt: a GCRY_CIPHER_SECURE handle whose memory libgcrypt takes from
//    protected_alloc; ~45 ns more per call, but its stitched AES-NI/VAES + PCLMUL code is 2-3x
//    faster per byte.
// automatic picks nettle up to kNettleLimit bytes of data and libgcrypt above (Nettle for
// every size if libgcrypt was initialised by someone else in the process). Both fall back to
// portable code on CPUs without AES-NI/PCLMUL.
enum class GcmEngine : uint8_t { automatic, nettle, libgcrypt };
// Measured crossover on the data length (bench/README.md, "Codec engines").
constexpr size_t kNettleLimit = 128;

// Whether the libgcrypt engine is usable in this process.
bool libgcrypt_engine_available() noexcept;

class AesGcmKey {
  public:
    AesGcmKey() = default;
    AesGcmKey(const AesGcmKey &) = delete;
    AesGcmKey &operator=(const AesGcmKey &) = delete;
    ~AesGcmKey();

    // Keys the object with a 32-byte key (expanded into protected memory). False when
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
