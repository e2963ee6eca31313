// The keeper's connection to the HSM, as a noexcept facade over Pkcs11Client: every failure is
// returned as plain data so the PostgreSQL-zone keeper never sees a C++ exception.
#pragma once
#include "zone_guard.hpp"
#include "byte_view.hpp"
#include "pkcs11_client.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>

namespace envelope {

struct HsmResult {
    bool ok = true;
    Pkcs11Failure failure = Pkcs11Failure::other;
    char message[256] = {};
};

struct HsmSettings {
    const char *module_path;
    const char *token_label;
    const char *pin_file;
    const char *kek_label;
};

class HsmLink {
  public:
    HsmLink();
    ~HsmLink();
    HsmLink(const HsmLink &) = delete;
    HsmLink &operator=(const HsmLink &) = delete;

    // Loads the module, opens the token, logs in with the PIN file, finds the KEK.
    HsmResult connect(const HsmSettings &settings) noexcept;
    // Closes the session and unloads the module.
    void disconnect() noexcept;
    bool connected() const noexcept;
    // False when the session stopped working (token removed, device error).
    bool alive() noexcept;

    // Generates a DEK on the token and wraps it; key_out receives the 32 plaintext bytes.
    HsmResult create_dek(ByteView identity, uint8_t key_out[32], uint8_t *wrapped_out,
                         size_t wrapped_cap, size_t *wrapped_len) noexcept;
    // Unwraps a DEK bound to identity into key_out.
    HsmResult unwrap_dek(ByteView identity, ByteView wrapped, uint8_t key_out[32]) noexcept;

  private:
    std::unique_ptr<Pkcs11Client> client_;
    CK_OBJECT_HANDLE kek_ = CK_INVALID_HANDLE;
};

// Identity string a DEK is wrapped under: "dek:" + 32 lowercase hex digits of its id.
// out must hold 37 bytes (including NUL).
void dek_identity(const uint8_t id[16], char out[37]) noexcept;

}  // namespace envelope
