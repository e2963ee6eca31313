// PKCS#11 client: loads a module, opens a token by label, logs in, finds KEKs by label and
// wraps/unwraps DEKs with AES-256-GCM bound to an identity. Used only by the keeper and the
// provisioning tool; errors are thrown as Pkcs11Error (never crossing into PostgreSQL).
#pragma once
#include "internal_only.hpp"
#include "byte_view.hpp"
#include "hsm_types.hpp"
#include "secure_buffer.hpp"

#include <p11-kit/pkcs11.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace envelope {

// Name of a return value, e.g. "CKR_PIN_INCORRECT"; "CKR_0x...." for unknown codes.
std::string ck_rv_name(CK_RV rv);
// Name plus a short explanation, e.g. "CKR_PIN_INCORRECT: the PIN is wrong".
std::string ck_rv_describe(CK_RV rv);

class Pkcs11Error : public std::runtime_error {
  public:
    Pkcs11Error(Pkcs11Failure failure, CK_RV rv, const std::string &message)
        : std::runtime_error(message), failure_(failure), rv_(rv) {}
    Pkcs11Failure failure() const noexcept { return failure_; }
    CK_RV rv() const noexcept { return rv_; }

  private:
    Pkcs11Failure failure_;
    CK_RV rv_;
};

// Reads a PIN from a file: the first line without its line ending. Refuses a file that is
// missing, empty, longer than 256 bytes, or readable/writable by group or others.
// The message of a thrown error names the path, never the content.
SecureBuffer read_pin_file(const std::string &path);

class Pkcs11Client {
  public:
    // dlopen(module_path), C_GetFunctionList, C_Initialize (CKR_CRYPTOKI_ALREADY_INITIALIZED
    // is accepted). Throws module_load / initialize.
    explicit Pkcs11Client(const std::string &module_path);
    ~Pkcs11Client();  // closes the session, C_Finalize (if we initialized), dlclose
    Pkcs11Client(const Pkcs11Client &) = delete;
    Pkcs11Client &operator=(const Pkcs11Client &) = delete;

    // Finds the slot whose token label (space-padded 32 chars) equals token_label and opens
    // a R/W session on it. Throws token_not_found.
    void open_token(const std::string &token_label);
    // C_Login(CKU_USER). CKR_USER_ALREADY_LOGGED_IN is fine. Throws login.
    void login(ByteView pin);
    // Finds exactly one CKO_SECRET_KEY with this CKA_LABEL. Throws key_not_found.
    CK_OBJECT_HANDLE find_secret_key(const std::string &label);

    // Random bytes from the token (C_GenerateRandom).
    SecureBuffer generate_random(size_t n);
    // Wraps a 32-byte DEK under the KEK, bound to identity. Returns kWrappedDekSize bytes.
    std::vector<uint8_t> wrap_dek(CK_OBJECT_HANDLE kek, ByteView dek, ByteView identity);
    // Unwraps; throws malformed for a wrong length/version, unwrap_auth for a tag mismatch
    // (SoftHSM reports CKR_GENERAL_ERROR / CKR_ENCRYPTED_DATA_INVALID for that).
    SecureBuffer unwrap_dek(CK_OBJECT_HANDLE kek, ByteView wrapped, ByteView identity);

    // Single-part AES-ECB with a key on the token (C_Encrypt/C_Decrypt, CKM_AES_ECB): len is a
    // multiple of 16. The building block of key wrap on tokens that offer only ECB, and of
    // Trustpoint's legacy DEK wrap. A failure throws `failure` (device failures: device).
    void aes_ecb(CK_OBJECT_HANDLE key, bool encrypt, const uint8_t *in, size_t len, uint8_t *out,
                 Pkcs11Failure failure = Pkcs11Failure::other);

    // Cheap liveness probe of the session (C_GetSessionInfo). False if the token is gone.
    bool session_alive() noexcept;

    // Token and module description for status output.
    std::string module_path() const { return module_path_; }
    std::string token_label() const { return token_label_; }

    // Raw access for the provisioning tool.
    CK_FUNCTION_LIST_PTR functions() const { return fn_; }
    CK_SESSION_HANDLE session() const { return session_; }
    // Slot id of the first slot with a present token that is not initialized, or throws.
    CK_SLOT_ID find_uninitialized_slot();
    // Slot id of the token with this label, or throws token_not_found.
    CK_SLOT_ID find_slot_by_label(const std::string &token_label);

  private:
    void check(CK_RV rv, Pkcs11Failure failure, const char *what);

    std::string module_path_;
    std::string token_label_;
    void *handle_ = nullptr;
    CK_FUNCTION_LIST_PTR fn_ = nullptr;
    bool finalize_ = false;
    CK_SESSION_HANDLE session_ = CK_INVALID_HANDLE;
};

}  // namespace envelope
