// A KEK derived in software from input keying material (IKM) that an operator's command
// prints, for hosts without an HSM (README, "Key providers"). HKDF-SHA-256 (RFC 5869) with
// the IKM, the cluster's random salt and an info string naming the purpose and the KEK label;
// the IKM and every derived KEK live only in protected memory. Wrapped DEKs have the same
// format as the PKCS#11 provider's (hsm_types.hpp).
#pragma once
#include "byte_view.hpp"
#include "crypto_sizes.hpp"
#include "kek_link.hpp"

#include <cstddef>
#include <cstdint>

namespace envelope {

constexpr size_t kIkmSaltSize = 32;
// HKDF info = kIkmKekInfoPrefix (its NUL included) || KEK label.
constexpr char kIkmKekInfoPrefix[] = "pg_envelope/kek/v1";
constexpr size_t kIkmKekInfoMax = sizeof kIkmKekInfoPrefix + 256;

struct IkmSettings {
    const char *command;    // envelope.ikm_command: absolute path [arguments]
    int timeout_ms;         // envelope.ikm_timeout
    const char *salt_path;  // $PGDATA/pg_envelope/ikm_salt (created once when missing)
    const char *kek_label;  // envelope.kek_label: part of the KEK's HKDF info
};

// Writes the HKDF info for a KEK label into out; returns its length (0 if it does not fit).
size_t ikm_kek_info(const char *kek_label, uint8_t *out, size_t cap) noexcept;
// The KEK for a label: HKDF-SHA-256(ikm, salt, ikm_kek_info(label)), 32 bytes into out.
bool derive_ikm_kek(ByteView ikm, ByteView salt, const char *kek_label,
                    uint8_t out[kAesKeySize]) noexcept;

class IkmKekLink final : public KekLink {
  public:
    IkmKekLink() noexcept;
    ~IkmKekLink() override;

    // Reads (or creates, once) the salt file, runs the command, derives the KEK.
    HsmResult connect(const IkmSettings &settings) noexcept;
    void disconnect() noexcept override;
    bool connected() const noexcept override;
    // Nothing can go away under a derived key: true while connected.
    bool alive() noexcept override;

    // The DEK comes from OpenSSL's CSPRNG (RAND_priv_bytes), the nonce from NonceSource.
    HsmResult create_dek(ByteView identity, uint8_t key_out[kDekSize], uint8_t *wrapped_out,
                         size_t wrapped_cap, size_t *wrapped_len) noexcept override;
    // An old label's KEK is derived from the same IKM and salt on first use and kept.
    HsmResult unwrap_dek(ByteView identity, ByteView wrapped, uint8_t key_out[kDekSize],
                         const char *kek_label = nullptr) noexcept override;
    HsmResult rewrap_dek(ByteView identity, ByteView wrapped, const char *old_label,
                         uint8_t *wrapped_out, size_t wrapped_cap,
                         size_t *wrapped_len) noexcept override;

    // True once this object created the salt file (a keyring wrapped elsewhere cannot be
    // unwrapped under a new salt; error messages say so).
    bool created_salt() const noexcept { return created_salt_; }

  private:
    struct State;  // the IKM, the salt and the derived KEKs
    State *state_ = nullptr;
    bool created_salt_ = false;
};

}  // namespace envelope
