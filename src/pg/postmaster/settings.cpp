// Defines the envelope.* configuration parameters.
#include "postmaster/settings.hpp"
#include "shmem/key_cache.hpp"
#include "shmem/key_stats.hpp"

#include "hsm_types.hpp"

namespace envelope::pg {

char *setting_pkcs11_module = nullptr;
char *setting_token_label = nullptr;
char *setting_pin_file = nullptr;
char *setting_kek_label = nullptr;
int setting_kek_provider = kek_pkcs11;
char *setting_ikm_command = nullptr;
int setting_ikm_timeout_ms = 10000;
char *setting_pkcs11_init_args = nullptr;
int setting_wrap_mechanism = static_cast<int>(envelope::WrapChoice::automatic);
int setting_request_timeout_ms = 10000;
char *setting_default_key = nullptr;
int setting_pad_block = 16;
int setting_io_mode = io_auto;
int setting_nonce_warning_threshold = 1 << 30;
double setting_nonce_limit = 4294967296.0;
double setting_auto_rotate_at = 2147483648.0;
int setting_audit = audit_management;

namespace {
const struct config_enum_entry kek_provider_options[] = {
    {"pkcs11", kek_pkcs11, false},
    {"ikm_command", kek_ikm_command, false},
    {nullptr, 0, false},
};

const struct config_enum_entry io_mode_options[] = {
    {"plaintext", io_plaintext, false},
    {"sealed", io_sealed, false},
    {"auto", io_auto, false},
    {nullptr, 0, false},
};

// Names as in parse_wrap_choice (pkcs11_client), values envelope::WrapChoice.
const struct config_enum_entry wrap_mechanism_options[] = {
    {"auto", static_cast<int>(envelope::WrapChoice::automatic), false},
    {"aes_gcm", static_cast<int>(envelope::WrapChoice::aes_gcm), false},
    {"aes_kw", static_cast<int>(envelope::WrapChoice::aes_kw), false},
    {"aes_kwp", static_cast<int>(envelope::WrapChoice::aes_kwp), false},
    {"ecb_kw", static_cast<int>(envelope::WrapChoice::ecb_kw), false},
    {nullptr, 0, false},
};

const struct config_enum_entry audit_options[] = {
    {"off", audit_off, false},
    {"management", audit_management, false},
    {"denials", audit_denials, false},
    {"all", audit_all, false},
    {nullptr, 0, false},
};

bool check_pad_block(int *newval, void **, GucSource) {
    if (*newval > 1 && (*newval & (*newval - 1)) != 0) {
        GUC_check_errdetail("envelope.pad_block must be 0 (off) or a power of two.");
        return false;
    }
    return true;
}
}  // namespace

void define_settings() {
    DefineCustomStringVariable("envelope.pkcs11_module",
                               "Path of the PKCS#11 module the keeper loads.", nullptr,
                               &setting_pkcs11_module, "/usr/lib/softhsm/libsofthsm2.so",
                               PGC_SIGHUP, GUC_SUPERUSER_ONLY, nullptr, nullptr, nullptr);
    DefineCustomStringVariable("envelope.token_label",
                               "Label of the PKCS#11 token that holds the KEK.", nullptr,
                               &setting_token_label, "pg_envelope", PGC_SIGHUP, GUC_SUPERUSER_ONLY,
                               nullptr, nullptr, nullptr);
    DefineCustomStringVariable(
        "envelope.pin_file",
        "File holding the token's user PIN (readable only by the server user).", nullptr,
        &setting_pin_file, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY, nullptr, nullptr, nullptr);
    DefineCustomStringVariable("envelope.kek_label",
                               "Label of the key-encryption key (CKA_LABEL in the token; part of "
                               "the HKDF info with ikm_command).",
                               nullptr, &setting_kek_label, "pg_envelope-kek", PGC_SIGHUP,
                               GUC_SUPERUSER_ONLY, nullptr, nullptr, nullptr);
    DefineCustomEnumVariable(
        "envelope.kek_provider",
        "Where the keeper gets the key-encryption key: pkcs11 (a token) or ikm_command (derived "
        "with HKDF from the output of envelope.ikm_command).",
        nullptr, &setting_kek_provider, kek_pkcs11, kek_provider_options, PGC_SIGHUP,
        GUC_SUPERUSER_ONLY, nullptr, nullptr, nullptr);
    DefineCustomStringVariable(
        "envelope.ikm_command",
        "Absolute path (and optional space-separated arguments) of the program that prints the "
        "input keying material as lowercase hex, for envelope.kek_provider = ikm_command.",
        "Run by the keeper as the server user without a shell; it must not be writable by group "
        "or others.",
        &setting_ikm_command, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("envelope.ikm_timeout",
                            "How long envelope.ikm_command may run before it is killed.", nullptr,
                            &setting_ikm_timeout_ms, 10000, 100, 600000, PGC_SIGHUP,
                            GUC_UNIT_MS | GUC_SUPERUSER_ONLY, nullptr, nullptr, nullptr);
    DefineCustomStringVariable(
        "envelope.pkcs11_init_args",
        "Module-specific string passed to C_Initialize as pReserved (NSS's softoken needs its "
        "database directory here); empty = none.",
        nullptr, &setting_pkcs11_init_args, "", PGC_SIGHUP, GUC_SUPERUSER_ONLY, nullptr, nullptr,
        nullptr);
    DefineCustomEnumVariable(
        "envelope.wrap_mechanism",
        "How new data keys are wrapped: auto (the best the token offers: AES-GCM, then RFC "
        "3394/5649 key wrap, then RFC 3394 computed from AES-ECB), or aes_gcm, aes_kw, aes_kwp, "
        "ecb_kw to insist on one.",
        nullptr, &setting_wrap_mechanism, static_cast<int>(envelope::WrapChoice::automatic),
        wrap_mechanism_options, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable(
        "envelope.max_keys", "Number of data keys the shared-memory cache can hold.", nullptr,
        &max_keys_setting, 1024, 16, 1000000, PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("envelope.request_timeout",
                            "How long a backend waits for the keeper to unwrap or create a key.",
                            nullptr, &setting_request_timeout_ms, 10000, 100, 600000, PGC_SUSET,
                            GUC_UNIT_MS, nullptr, nullptr, nullptr);
    DefineCustomStringVariable("envelope.default_key",
                               "Key name used by encrypted_text input and by encrypt() when no "
                               "key is named.",
                               nullptr, &setting_default_key, "default", PGC_USERSET, 0, nullptr,
                               nullptr, nullptr);
    DefineCustomIntVariable(
        "envelope.pad_block",
        "Plaintext is padded to a multiple of this many bytes before sealing (0 = off).", nullptr,
        &setting_pad_block, 16, 0, 4096, PGC_USERSET, 0, check_pad_block, nullptr, nullptr);
    DefineCustomEnumVariable(
        "envelope.io",
        "Text and binary I/O of encrypted_text: plaintext (transparent), sealed (ciphertext), or "
        "auto (sealed for dump and restore tools and logical replication, else plaintext).",
        nullptr, &setting_io_mode, io_auto, io_mode_options, PGC_USERSET, 0, nullptr, nullptr,
        nullptr);
    DefineCustomIntVariable(
        "envelope.nonce_warning_threshold",
        "Encryptions under one data key after which a WARNING suggests rotating it.", nullptr,
        &setting_nonce_warning_threshold, 1 << 30, 1, INT_MAX, PGC_SUSET, 0, nullptr, nullptr,
        nullptr);
    DefineCustomRealVariable(
        "envelope.nonce_limit",
        "Encryptions allowed under one data key; further seals under it are refused.",
        "Random 96-bit nonces allow 2^32 encryptions per key (NIST SP 800-38D); the count never "
        "undercounts (blocks are reserved on disk before use).",
        &setting_nonce_limit, 4294967296.0, 1.0, 4294967296.0, PGC_SIGHUP, 0, nullptr, nullptr,
        nullptr);
    DefineCustomRealVariable(
        "envelope.auto_rotate_at",
        "Encryptions under a data key at which it is rotated automatically (0 = off).",
        "The session whose seal reaches the count starts a worker that rotates the key once; "
        "keep it well below envelope.nonce_limit.",
        &setting_auto_rotate_at, 2147483648.0, 0.0, 4294967296.0, PGC_SIGHUP, 0, nullptr, nullptr,
        nullptr);
    DefineCustomEnumVariable(
        "envelope.audit",
        "Audit log lines: off, management (key management), denials (and privilege denials), "
        "all (and key use, at most one line per role and key per minute per session).",
        nullptr, &setting_audit, audit_management, audit_options, PGC_SUSET, 0, nullptr, nullptr,
        nullptr);
    DefineCustomIntVariable("envelope.stats_max",
                            "Rows (database, role, key version) envelope.key_stats keeps; the "
                            "least recently used are dropped when it is full.",
                            nullptr, &key_stats_max_setting, 4096, 100, 1000000, PGC_POSTMASTER, 0,
                            nullptr, nullptr, nullptr);
    MarkGUCPrefixReserved("envelope");
}

}  // namespace envelope::pg
