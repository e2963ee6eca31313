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

// What a token offers for wrapping DEKs: from its mechanism list, and for key wrap from
// known-answer tests (a mechanism number alone does not say which RFC it implements: NSS's
// CKM_AES_KEY_WRAP_PAD is not RFC 5649, SoftHSM2's is).
struct WrapSupport {
    bool probed = false;
    bool gcm = false;                                    // CKM_AES_GCM encrypt + decrypt
    bool ecb = false;                                    // CKM_AES_ECB encrypt + decrypt
    CK_MECHANISM_TYPE kw = CK_UNAVAILABLE_INFORMATION;   // a mechanism that is RFC 3394
    CK_MECHANISM_TYPE kwp = CK_UNAVAILABLE_INFORMATION;  // a mechanism that is RFC 5649
};

// "auto", "aes_gcm", "aes_kw", "aes_kwp", "ecb_kw" (the names of envelope.wrap_mechanism).
bool parse_wrap_choice(const std::string &name, WrapChoice *out);
const char *wrap_choice_name(WrapChoice c);
// Human name of a wrapped DEK's format byte: "aes-gcm", "rfc3394", "rfc5649", "unknown".
const char *wrap_format_name(uint8_t format);

class Pkcs11Client {
  public:
    // dlopen(module_path), C_GetFunctionList, C_Initialize (CKR_CRYPTOKI_ALREADY_INITIALIZED
    // is accepted) with init_reserved (if not empty) as pReserved: the module-specific
    // initialisation string some modules need (NSS's softoken: its database directory).
    // Throws module_load / initialize.
    explicit Pkcs11Client(const std::string &module_path, const std::string &init_reserved = "");
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

    // Probes the token (mechanism list, key-wrap known-answer tests on session objects) and
    // chooses how wrap_dek wraps with this KEK. Throws mechanism when the choice is impossible
    // (automatic: the token has neither GCM, nor key wrap, nor ECB).
    void choose_wrapping(WrapChoice choice, CK_OBJECT_HANDLE kek);
    // What choose_wrapping found and chose, e.g. "CKM_AES_GCM" or
    // "RFC 3394 from CKM_AES_ECB"; "" before it ran.
    const WrapSupport &wrap_support() const { return support_; }
    // Probes what the token offers (choose_wrapping does this itself).
    const WrapSupport &probe_wrap_support();
    std::string wrap_description() const;
    // The format byte wrap_dek produces.
    uint8_t wrap_format() const;

    // Random bytes from the token (C_GenerateRandom).
    SecureBuffer generate_random(size_t n);
    // Wraps a 32-byte DEK under the KEK, bound to identity, the way choose_wrapping chose
    // (AES-GCM if it never ran and the token has it). Returns a wrapped DEK of that format.
    std::vector<uint8_t> wrap_dek(CK_OBJECT_HANDLE kek, ByteView dek, ByteView identity);
    // Unwraps a DEK of any format the token can open (by its first byte); throws malformed for
    // a wrong length/format, unwrap_auth when it does not authenticate (SoftHSM reports
    // CKR_GENERAL_ERROR, NSS CKR_ENCRYPTED_DATA_INVALID for a bad GCM tag), mechanism when the
    // token cannot open that format.
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
    bool key_wrap_kat(CK_MECHANISM_TYPE mech, bool rfc5649);
    bool key_allows(CK_OBJECT_HANDLE key, CK_ATTRIBUTE_TYPE attr);
    CK_OBJECT_HANDLE create_session_secret(ByteView value, bool aes_wrapping_key);
    void destroy_object(CK_OBJECT_HANDLE h) noexcept;
    std::vector<uint8_t> token_key_wrap(CK_MECHANISM_TYPE mech, CK_OBJECT_HANDLE kek,
                                        ByteView data);
    SecureBuffer token_key_unwrap(CK_MECHANISM_TYPE mech, CK_OBJECT_HANDLE kek, ByteView blob,
                                  size_t expected_len);
    std::vector<uint8_t> wrap_gcm(CK_OBJECT_HANDLE kek, ByteView dek, ByteView identity);
    SecureBuffer unwrap_gcm(CK_OBJECT_HANDLE kek, ByteView wrapped, ByteView identity);
    std::vector<uint8_t> wrap_kw(CK_OBJECT_HANDLE kek, ByteView dek, ByteView identity,
                                 uint8_t format);
    SecureBuffer unwrap_kw(CK_OBJECT_HANDLE kek, ByteView wrapped, ByteView identity);

    WrapSupport support_;
    WrapChoice chosen_ = WrapChoice::aes_gcm;
    bool chosen_set_ = false;

    std::string module_path_;
    std::string token_label_;
    void *handle_ = nullptr;
    CK_FUNCTION_LIST_PTR fn_ = nullptr;
    bool finalize_ = false;
    CK_SESSION_HANDLE session_ = CK_INVALID_HANDLE;
};

}  // namespace envelope
