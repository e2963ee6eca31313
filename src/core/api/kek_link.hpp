// The keeper's source of the KEK, whatever provides it (a PKCS#11 token or an IKM command):
// an abstract noexcept interface over the operations the keeper performs once connected.
// Every failure comes back as plain data; every implementation writes the same wrapped-DEK
// format (hsm_types.hpp), so a keyring does not depend on which provider wrapped it.
#pragma once
#include "byte_view.hpp"
#include "crypto_sizes.hpp"
#include "hsm_types.hpp"

#include <cstddef>
#include <cstdint>

namespace envelope {

struct HsmResult {
    bool ok = true;
    Pkcs11Failure failure = Pkcs11Failure::other;
    char message[256] = {};
};

class KekLink {
  public:
    KekLink() noexcept = default;
    virtual ~KekLink() = default;
    KekLink(const KekLink &) = delete;
    KekLink &operator=(const KekLink &) = delete;

    // Drops the connection and every key it holds (wiped).
    virtual void disconnect() noexcept = 0;
    virtual bool connected() const noexcept = 0;
    // False when the provider stopped working (token removed, device error).
    virtual bool alive() noexcept = 0;

    // Creates a random DEK and wraps it under the connected KEK; key_out receives the
    // plaintext DEK.
    virtual HsmResult create_dek(ByteView identity, uint8_t key_out[kDekSize], uint8_t *wrapped_out,
                                 size_t wrapped_cap, size_t *wrapped_len) noexcept = 0;
    // Unwraps a DEK bound to identity into key_out, with the KEK labelled kek_label (the
    // label stored with the wrapped DEK; nullptr or "" = the connected KEK).
    virtual HsmResult unwrap_dek(ByteView identity, ByteView wrapped, uint8_t key_out[kDekSize],
                                 const char *kek_label = nullptr) noexcept = 0;
    // KEK rotation: unwraps with the KEK labelled old_label and wraps the same DEK again under
    // the connected KEK; the plaintext DEK passes only through protected memory and is wiped.
    virtual HsmResult rewrap_dek(ByteView identity, ByteView wrapped, const char *old_label,
                                 uint8_t *wrapped_out, size_t wrapped_cap,
                                 size_t *wrapped_len) noexcept = 0;
};

}  // namespace envelope
