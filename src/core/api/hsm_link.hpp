// The keeper's connection to the HSM: a noexcept facade whose implementation (the throwing
// Pkcs11Client) is hidden behind a pointer, so the PostgreSQL zone never sees a C++ exception
// type. Every failure comes back as plain data.
#pragma once
#include "byte_view.hpp"
#include "crypto_sizes.hpp"
#include "hsm_types.hpp"
#include "kek_link.hpp"

#include <cstddef>
#include <cstdint>

namespace envelope {

struct HsmSettings {
    const char *module_path;
    const char *token_label;
    const char *pin_file;
    const char *kek_label;
    // pReserved of C_Initialize (envelope.pkcs11_init_args); nullptr or "" = none.
    const char *init_reserved = nullptr;
    // How new DEKs are wrapped (envelope.wrap_mechanism).
    WrapChoice wrap_choice = WrapChoice::automatic;
};

class HsmLink final : public KekLink {
  public:
    HsmLink() noexcept;
    ~HsmLink() override;
    HsmLink(const HsmLink &) = delete;
    HsmLink &operator=(const HsmLink &) = delete;

    // Loads the module, opens the token, logs in with the PIN file, finds the KEK.
    HsmResult connect(const HsmSettings &settings) noexcept;
    // Closes the session and unloads the module.
    void disconnect() noexcept override;
    bool connected() const noexcept override;
    // False when the session stopped working (token removed, device error).
    bool alive() noexcept override;
    // How connect() chose to wrap new DEKs on this token, e.g. "CKM_AES_GCM" or
    // "RFC 3394 from CKM_AES_ECB"; "" when not connected.
    const char *wrap_mechanism() const noexcept;

    // Generates a DEK on the token and wraps it; key_out receives the plaintext DEK.
    HsmResult create_dek(ByteView identity, uint8_t key_out[kDekSize], uint8_t *wrapped_out,
                         size_t wrapped_cap, size_t *wrapped_len) noexcept override;
    // Unwraps a DEK bound to identity into key_out, with the KEK labelled kek_label (the
    // label stored with the wrapped DEK; nullptr or "" = the KEK connect() found).
    HsmResult unwrap_dek(ByteView identity, ByteView wrapped, uint8_t key_out[kDekSize],
                         const char *kek_label = nullptr) noexcept override;
    // KEK rotation: unwraps with the KEK labelled old_label and wraps the same DEK again under
    // the connected KEK, inside the token; the plaintext DEK passes only through protected
    // memory and is wiped.
    HsmResult rewrap_dek(ByteView identity, ByteView wrapped, const char *old_label,
                         uint8_t *wrapped_out, size_t wrapped_cap,
                         size_t *wrapped_len) noexcept override;
    // Trustpoint migration: legacy_wrapped is 8 bytes (ignored) || AES-256-ECB(legacy KEK, DEK)
    // (40 bytes). Decrypts the DEK inside the token with the secret key labelled
    // legacy_kek_label (never the connected KEK: that one only wraps), then wraps it bound to
    // identity under the connected KEK like create_dek. key_out receives the plaintext DEK; on
    // the way it sits only in protected memory. ECB has no integrity: a wrong legacy KEK gives
    // a wrong DEK without any error.
    HsmResult import_legacy_dek(const char *legacy_kek_label, ByteView legacy_wrapped,
                                ByteView identity, uint8_t key_out[kDekSize], uint8_t *wrapped_out,
                                size_t wrapped_cap, size_t *wrapped_len) noexcept;

  private:
    struct Connection;  // the PKCS#11 client and the KEK handle
    Connection *connection_ = nullptr;
};

// Identity string a DEK is wrapped under: "dek:" + 32 lowercase hex digits of its id.
constexpr size_t kDekIdentitySize = 4 + 32 + 1;  // including the NUL
void dek_identity(const uint8_t id[16], char out[kDekIdentitySize]) noexcept;

}  // namespace envelope
