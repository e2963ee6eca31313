// pg_envelope_provision: idempotently prepares a PKCS#11 token and its AES-256 KEK for pg_envelope.
#include "pkcs11_client.hpp"
#include "secure_buffer.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

using envelope::ByteView;
using envelope::Pkcs11Client;
using envelope::Pkcs11Error;
using envelope::Pkcs11Failure;
using envelope::SecureBuffer;

const char kProg[] = "pg_envelope_provision";

const char kUsage[] =
    "usage: pg_envelope_provision --module PATH --token-label LABEL [--kek-label LABEL]\n"
    "                             [--init-token] [--pin-file FILE] [--so-pin-file FILE] "
    "[--check]\n"
    "                             [--delete-kek OLD_LABEL] [--wrap-mechanism NAME]\n"
    "                             [--init-args STRING]\n"
    "\n"
    "Prepares a PKCS#11 token for pg_envelope: the token (optionally initialised), and an\n"
    "AES-256 key-encryption key that is sensitive and never extractable. Safe to re-run.\n"
    "\n"
    "  --module PATH        PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so\n"
    "  --token-label LABEL  label of the token (at most 32 bytes)\n"
    "  --kek-label LABEL    label of the KEK (default pg_envelope-kek)\n"
    "  --init-token         initialise a free slot if no token has LABEL (needs the SO PIN)\n"
    "  --pin-file FILE      user PIN file (default: $HSM_PIN_FILE)\n"
    "  --so-pin-file FILE   security officer PIN file (default: $HSM_SO_PIN_FILE)\n"
    "  --check              change nothing; exit 1 if the token or the KEK is missing\n"
    "  --wrap-mechanism M   auto (default), aes_gcm, aes_kw, aes_kwp or ecb_kw: the\n"
    "                       wrapping to self-test (as envelope.wrap_mechanism); a new KEK\n"
    "                       may wrap/unwrap (CKA_WRAP) only when the token's key wrap\n"
    "                       mechanism is the one used\n"
    "  --init-args STRING   pReserved for C_Initialize (as envelope.pkcs11_init_args), e.g.\n"
    "                       NSS's softoken: \"configdir='sql:DIR' certPrefix='' ...\"\n"
    "  --delete-kek OLD     KEK rotation, last step: destroy the KEK labelled OLD, after\n"
    "                       checking that the KEK named by --kek-label (the one the server\n"
    "                       now uses) exists and works; refuses OLD = --kek-label. Run it\n"
    "                       only once every database's envelope.kek_usage lists no key\n"
    "                       under OLD (pg_envelope_rewrap --check).\n"
    "\n"
    "A KEK rotation starts by running this tool with the new --kek-label: the token then\n"
    "holds both KEKs (listed on every run).\n"
    "\n"
    "PINs are read only from files (first line, mode 0600 or stricter), never from arguments.\n"
    "Exit status: 0 ok, 1 failure, 2 usage error.\n";

struct UsageError {
    std::string message;
};

// A failure that is not a PKCS#11 error (a check that found something missing, weak KEK).
struct ToolError {
    std::string message;
};

struct Options {
    std::string module;
    std::string token_label;
    std::string kek_label = "pg_envelope-kek";
    std::string pin_file;
    std::string so_pin_file;
    bool init_token = false;
    bool check = false;
    std::string delete_kek;
    envelope::WrapChoice wrap = envelope::WrapChoice::automatic;
    std::string init_args;
};

Options parse_args(int argc, char **argv) {
    Options o;
    bool have_module = false, have_token = false;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        std::string value;
        bool inline_value = false;
        size_t eq = arg.find('=');
        if (arg.rfind("--", 0) == 0 && eq != std::string::npos) {
            value = arg.substr(eq + 1);
            arg = arg.substr(0, eq);
            inline_value = true;
        }
        auto take = [&]() -> std::string {
            if (inline_value) return value;
            if (i + 1 >= argc) throw UsageError{arg + " needs a value"};
            return argv[++i];
        };
        auto no_value = [&]() {
            if (inline_value) throw UsageError{arg + " takes no value"};
        };
        if (arg == "--module") {
            o.module = take();
            have_module = true;
        } else if (arg == "--token-label") {
            o.token_label = take();
            have_token = true;
        } else if (arg == "--kek-label") {
            o.kek_label = take();
        } else if (arg == "--pin-file") {
            o.pin_file = take();
        } else if (arg == "--so-pin-file") {
            o.so_pin_file = take();
        } else if (arg == "--init-token") {
            no_value();
            o.init_token = true;
        } else if (arg == "--delete-kek") {
            o.delete_kek = take();
            if (o.delete_kek.empty()) throw UsageError{"--delete-kek needs a label"};
        } else if (arg == "--wrap-mechanism") {
            std::string name = take();
            if (!envelope::parse_wrap_choice(name, &o.wrap)) {
                throw UsageError{
                    "--wrap-mechanism must be auto, aes_gcm, aes_kw, aes_kwp or ecb_kw"};
            }
        } else if (arg == "--init-args") {
            o.init_args = take();
        } else if (arg == "--check") {
            no_value();
            o.check = true;
        } else if (arg == "--pin" || arg == "--so-pin" || arg == "--user-pin") {
            // Deliberately not echoing the value: it would be a PIN.
            throw UsageError{
                "PINs are never accepted on the command line; use --pin-file / "
                "--so-pin-file (or HSM_PIN_FILE / HSM_SO_PIN_FILE)"};
        } else if (arg == "-h" || arg == "--help") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        } else {
            throw UsageError{"unknown argument " + arg};
        }
    }
    if (!have_module || o.module.empty()) throw UsageError{"--module is required"};
    if (!have_token || o.token_label.empty()) throw UsageError{"--token-label is required"};
    if (o.token_label.size() > 32) throw UsageError{"--token-label must have at most 32 bytes"};
    if (o.kek_label.empty()) throw UsageError{"--kek-label must not be empty"};
    if (o.pin_file.empty()) {
        const char *env = std::getenv("HSM_PIN_FILE");
        if (env != nullptr) o.pin_file = env;
    }
    if (o.so_pin_file.empty()) {
        const char *env = std::getenv("HSM_SO_PIN_FILE");
        if (env != nullptr) o.so_pin_file = env;
    }
    if (o.pin_file.empty())
        throw UsageError{"a user PIN file is required: --pin-file or HSM_PIN_FILE"};
    return o;
}

void rv_check(CK_RV rv, const char *what) {
    if (rv != CKR_OK) {
        throw Pkcs11Error(Pkcs11Failure::other, rv,
                          std::string(what) + " failed: " + envelope::ck_rv_describe(rv));
    }
}

CK_UTF8CHAR_PTR pin_ptr(SecureBuffer &pin) {
    return pin.data();
}

// Sets the user PIN of the token open in client's session, as the security officer.
void init_user_pin(Pkcs11Client &client, const Options &o) {
    if (o.so_pin_file.empty()) {
        throw UsageError{"setting the user PIN needs the SO PIN: --so-pin-file or HSM_SO_PIN_FILE"};
    }
    SecureBuffer so_pin = envelope::read_pin_file(o.so_pin_file);
    SecureBuffer user_pin = envelope::read_pin_file(o.pin_file);
    CK_FUNCTION_LIST_PTR fn = client.functions();
    rv_check(fn->C_Login(client.session(), CKU_SO, pin_ptr(so_pin), so_pin.size()),
             "C_Login as security officer");
    CK_RV rv = fn->C_InitPIN(client.session(), pin_ptr(user_pin), user_pin.size());
    fn->C_Logout(client.session());
    rv_check(rv, "C_InitPIN");
}

// Returns true if it created the token.
bool ensure_token(Pkcs11Client &client, const Options &o) {
    const std::string &label = o.token_label;
    bool created = false;
    CK_SLOT_ID slot = 0;
    try {
        slot = client.find_slot_by_label(label);
    } catch (const Pkcs11Error &e) {
        if (e.failure() != Pkcs11Failure::token_not_found) throw;
        if (o.check) {
            std::printf("token '%s': missing\n", label.c_str());
            throw ToolError{e.what()};
        }
        if (!o.init_token) {
            throw ToolError{std::string(e.what()) +
                            "; pass --init-token to initialise a free slot (SoftHSM), or "
                            "initialise the token with the vendor's tools"};
        }
        if (o.so_pin_file.empty()) {
            throw UsageError{"--init-token needs the SO PIN: --so-pin-file or HSM_SO_PIN_FILE"};
        }
        SecureBuffer so_pin = envelope::read_pin_file(o.so_pin_file);
        // Read the user PIN before changing anything, so a bad file leaves no half-made token.
        envelope::read_pin_file(o.pin_file);
        CK_SLOT_ID free_slot = client.find_uninitialized_slot();
        unsigned char label32[32];
        std::memset(label32, ' ', sizeof label32);
        std::copy(label.begin(), label.end(), label32);  // space padded, no NUL
        rv_check(
            client.functions()->C_InitToken(free_slot, pin_ptr(so_pin), so_pin.size(), label32),
            "C_InitToken");
        created = true;
        // SoftHSM renumbers slots after C_InitToken: look the token up again by its label.
        slot = client.find_slot_by_label(label);
    }
    client.open_token(label);

    CK_TOKEN_INFO info{};
    rv_check(client.functions()->C_GetTokenInfo(slot, &info), "C_GetTokenInfo");
    if ((info.flags & CKF_USER_PIN_INITIALIZED) == 0) {
        if (o.check) {
            std::printf("token '%s': user PIN not set\n", label.c_str());
            throw ToolError{"the user PIN of token '" + label + "' was never set"};
        }
        if (!created && !o.init_token) {
            throw ToolError{"the user PIN of token '" + label +
                            "' was never set; pass --init-token with the SO PIN to set it"};
        }
        init_user_pin(client, o);
        created = true;
    }
    std::printf("token '%s': %s\n", label.c_str(), created ? "created" : "exists");
    return created;
}

// Every object of the session matching the template.
std::vector<CK_OBJECT_HANDLE> find_objects(Pkcs11Client &client, CK_ATTRIBUTE *tmpl,
                                           CK_ULONG count) {
    CK_FUNCTION_LIST_PTR fn = client.functions();
    rv_check(fn->C_FindObjectsInit(client.session(), tmpl, count), "C_FindObjectsInit");
    std::vector<CK_OBJECT_HANDLE> out;
    CK_RV rv = CKR_OK;
    for (;;) {
        CK_OBJECT_HANDLE batch[16];
        CK_ULONG n = 0;
        rv = fn->C_FindObjects(client.session(), batch, 16, &n);
        if (rv != CKR_OK || n == 0) break;
        out.insert(out.end(), batch, batch + n);
    }
    fn->C_FindObjectsFinal(client.session());
    rv_check(rv, "C_FindObjects");
    return out;
}

std::vector<CK_OBJECT_HANDLE> find_keys(Pkcs11Client &client, const std::string &label) {
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_LABEL, const_cast<char *>(label.data()), label.size()},
    };
    return find_objects(client, tmpl, 2);
}

// Whether the KEK must allow C_WrapKey/C_UnwrapKey: only when the token's own key-wrap
// mechanism will wrap (the least a KEK may do otherwise is encrypt and decrypt).
bool kek_needs_wrap(Pkcs11Client &client, envelope::WrapChoice choice) {
    using envelope::WrapChoice;
    if (choice == WrapChoice::aes_kw || choice == WrapChoice::aes_kwp) return true;
    if (choice != WrapChoice::automatic) return false;
    const envelope::WrapSupport &s = client.probe_wrap_support();
    return !s.gcm && (s.kw != CK_UNAVAILABLE_INFORMATION || s.kwp != CK_UNAVAILABLE_INFORMATION);
}

void generate_kek(Pkcs11Client &client, const std::string &label, bool allow_wrap) {
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_AES;
    CK_ULONG len = 32;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE, wrap = allow_wrap ? CK_TRUE : CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_KEY_TYPE, &type, sizeof type},
        {CKA_VALUE_LEN, &len, sizeof len},
        {CKA_TOKEN, &yes, sizeof yes},
        {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SENSITIVE, &yes, sizeof yes},
        {CKA_EXTRACTABLE, &no, sizeof no},
        {CKA_ENCRYPT, &yes, sizeof yes},
        {CKA_DECRYPT, &yes, sizeof yes},
        {CKA_WRAP, &wrap, sizeof wrap},
        {CKA_UNWRAP, &wrap, sizeof wrap},
        {CKA_SIGN, &no, sizeof no},
        {CKA_VERIFY, &no, sizeof no},
        {CKA_DERIVE, &no, sizeof no},
        {CKA_LABEL, const_cast<char *>(label.data()), label.size()},
    };
    CK_MECHANISM mech{CKM_AES_KEY_GEN, nullptr, 0};
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
    rv_check(client.functions()->C_GenerateKey(client.session(), &mech, tmpl,
                                               sizeof tmpl / sizeof tmpl[0], &key),
             "C_GenerateKey (AES-256 KEK)");
}

// Fails if the existing KEK is weaker than what this tool would have created.
void verify_kek(Pkcs11Client &client, CK_OBJECT_HANDLE key, const std::string &label) {
    CK_KEY_TYPE type = 0;
    CK_ULONG len = 0;
    CK_BBOOL token = CK_FALSE, sensitive = CK_FALSE, extractable = CK_TRUE, encrypt = CK_FALSE,
             decrypt = CK_FALSE;
    CK_ATTRIBUTE attrs[] = {
        {CKA_KEY_TYPE, &type, sizeof type},
        {CKA_VALUE_LEN, &len, sizeof len},
        {CKA_TOKEN, &token, sizeof token},
        {CKA_SENSITIVE, &sensitive, sizeof sensitive},
        {CKA_EXTRACTABLE, &extractable, sizeof extractable},
        {CKA_ENCRYPT, &encrypt, sizeof encrypt},
        {CKA_DECRYPT, &decrypt, sizeof decrypt},
    };
    rv_check(client.functions()->C_GetAttributeValue(client.session(), key, attrs,
                                                     sizeof attrs / sizeof attrs[0]),
             "C_GetAttributeValue (KEK)");
    std::vector<std::string> problems;
    if (type != CKK_AES) problems.push_back("it is not an AES key");
    if (len != 32) problems.push_back("it has " + std::to_string(len) + " bytes instead of 32");
    if (token != CK_TRUE) problems.push_back("it is not a token object (CKA_TOKEN false)");
    if (sensitive != CK_TRUE) problems.push_back("it is not sensitive (CKA_SENSITIVE false)");
    if (extractable != CK_FALSE) problems.push_back("it is extractable (CKA_EXTRACTABLE true)");
    if (encrypt != CK_TRUE) problems.push_back("it cannot encrypt (CKA_ENCRYPT false)");
    if (decrypt != CK_TRUE) problems.push_back("it cannot decrypt (CKA_DECRYPT false)");
    if (!problems.empty()) {
        std::string msg = "KEK '" + label + "' is unsuitable: ";
        for (size_t i = 0; i < problems.size(); ++i) msg += (i ? "; " : "") + problems[i];
        msg += ". Replace it with a key created by this tool (a new label, or delete the old key).";
        throw ToolError{msg};
    }
}

// Returns true if it created the KEK; leaves its handle in *kek.
bool ensure_kek(Pkcs11Client &client, const Options &o, CK_OBJECT_HANDLE *kek) {
    std::vector<CK_OBJECT_HANDLE> keys = find_keys(client, o.kek_label);
    if (keys.size() > 1) {
        throw ToolError{std::to_string(keys.size()) + " secret keys are labelled '" + o.kek_label +
                        "'; KEK labels must be unique"};
    }
    if (keys.empty()) {
        if (o.check) {
            std::printf("KEK '%s': missing\n", o.kek_label.c_str());
            throw ToolError{"no secret key labelled '" + o.kek_label + "' on token '" +
                            o.token_label + "'"};
        }
        generate_kek(client, o.kek_label, kek_needs_wrap(client, o.wrap));
        *kek = client.find_secret_key(o.kek_label);
        verify_kek(client, *kek, o.kek_label);
        std::printf("KEK '%s': created\n", o.kek_label.c_str());
        return true;
    }
    *kek = keys[0];
    verify_kek(client, *kek, o.kek_label);
    std::printf("KEK '%s': exists, attributes verified\n", o.kek_label.c_str());
    return false;
}

void self_test(Pkcs11Client &client, CK_OBJECT_HANDLE kek) {
    static const char kIdentity[] = "pg_envelope/provision-self-test";
    static const char kOther[] = "pg_envelope/provision-self-test/other";
    SecureBuffer dek = client.generate_random(envelope::kDekSize);
    std::vector<uint8_t> wrapped =
        client.wrap_dek(kek, dek.view(), ByteView(kIdentity, sizeof kIdentity - 1));
    SecureBuffer back = client.unwrap_dek(kek, ByteView(wrapped.data(), wrapped.size()),
                                          ByteView(kIdentity, sizeof kIdentity - 1));
    if (back.size() != dek.size() || CRYPTO_memcmp(back.data(), dek.data(), dek.size()) != 0) {
        throw ToolError{"self-test: the unwrapped key differs from the wrapped one"};
    }
    try {
        client.unwrap_dek(kek, ByteView(wrapped.data(), wrapped.size()),
                          ByteView(kOther, sizeof kOther - 1));
    } catch (const Pkcs11Error &e) {
        if (e.failure() == Pkcs11Failure::unwrap_auth) {
            std::printf("self-test: wrap/unwrap ok\n");
            return;
        }
        throw;
    }
    throw ToolError{"self-test: a key wrapped for one identity unwrapped under another"};
}

// Prints every secret key of the token by label: during a KEK rotation there are two.
void list_keks(Pkcs11Client &client) {
    CK_FUNCTION_LIST_PTR fn = client.functions();
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls}};
    for (CK_OBJECT_HANDLE k : find_objects(client, tmpl, 1)) {
        char label[256] = {};
        CK_ATTRIBUTE a{CKA_LABEL, label, sizeof label - 1};
        if (fn->C_GetAttributeValue(client.session(), k, &a, 1) == CKR_OK) {
            std::printf("secret key on the token: '%.*s'\n", static_cast<int>(a.ulValueLen), label);
        }
    }
}

// The last step of a KEK rotation: destroys the old KEK once the new one (--kek-label) exists
// and passed the self-test. Refuses to destroy the KEK the server is configured with.
bool delete_old_kek(Pkcs11Client &client, const Options &o) {
    if (o.delete_kek == o.kek_label) {
        throw ToolError{"refusing to delete KEK '" + o.delete_kek +
                        "': it is the KEK named by --kek-label (the one the server uses)"};
    }
    std::vector<CK_OBJECT_HANDLE> old = find_keys(client, o.delete_kek);
    if (old.empty()) {
        std::printf("KEK '%s': already absent\n", o.delete_kek.c_str());
        return false;
    }
    for (CK_OBJECT_HANDLE h : old) {
        rv_check(client.functions()->C_DestroyObject(client.session(), h), "C_DestroyObject");
    }
    std::printf("KEK '%s': deleted\n", o.delete_kek.c_str());
    return true;
}

int run(const Options &o) {
    Pkcs11Client client(o.module, o.init_args);
    bool changed = ensure_token(client, o);
    {
        SecureBuffer pin = envelope::read_pin_file(o.pin_file);
        client.login(pin.view());
    }
    CK_OBJECT_HANDLE kek = CK_INVALID_HANDLE;
    if (!o.delete_kek.empty() && find_keys(client, o.kek_label).empty()) {
        throw ToolError{"refusing to delete KEK '" + o.delete_kek + "': the KEK named by " +
                        "--kek-label ('" + o.kek_label + "') does not exist on the token"};
    }
    changed = ensure_kek(client, o, &kek) || changed;
    client.choose_wrapping(o.wrap, kek);
    std::printf("wrapping: %s\n", client.wrap_description().c_str());
    self_test(client, kek);
    if (!o.delete_kek.empty()) {
        if (o.check) throw UsageError{"--check and --delete-kek exclude each other"};
        changed = delete_old_kek(client, o) || changed;
    }
    list_keks(client);
    std::printf("result: %s\n", changed ? "changed" : "unchanged (nothing to do)");
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    Options o;
    try {
        o = parse_args(argc, argv);
    } catch (const UsageError &e) {
        std::fprintf(stderr, "%s: %s\n%s", kProg, e.message.c_str(), kUsage);
        return 2;
    }
    try {
        return run(o);
    } catch (const UsageError &e) {
        std::fflush(stdout);
        std::fprintf(stderr, "%s: %s\n", kProg, e.message.c_str());
        return 2;
    } catch (const ToolError &e) {
        std::fflush(stdout);
        std::fprintf(stderr, "%s: %s\n", kProg, e.message.c_str());
        return 1;
    } catch (const Pkcs11Error &e) {
        std::fflush(stdout);
        std::fprintf(stderr, "%s: %s [%s]\n", kProg, e.what(),
                     envelope::pkcs11_failure_name(e.failure()));
        return 1;
    } catch (const std::exception &e) {
        std::fflush(stdout);
        std::fprintf(stderr, "%s: %s\n", kProg, e.what());
        return 1;
    }
}
