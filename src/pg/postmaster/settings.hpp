// pg_envelope's GUCs (envelope.*), defined in _PG_init.
#pragma once
#include "boundary/pg_includes.hpp"

namespace envelope::pg {

extern char *setting_pkcs11_module;
extern char *setting_token_label;
extern char *setting_pin_file;
extern char *setting_kek_label;
extern int setting_kek_provider;  // KekProvider
extern char *setting_ikm_command;
extern int setting_ikm_timeout_ms;
extern char *setting_pkcs11_init_args;
extern int setting_wrap_mechanism;  // envelope::WrapChoice
extern int setting_request_timeout_ms;
extern char *setting_default_key;
extern int setting_pad_block;
extern int setting_io_mode;  // IoMode
extern int setting_nonce_warning_threshold;
extern double setting_nonce_limit;
extern double setting_auto_rotate_at;
extern int setting_audit;  // AuditLevel

// envelope.kek_provider: where the keeper gets the KEK (README, "Key providers").
enum KekProvider { kek_pkcs11 = 0, kek_ikm_command = 1 };
enum IoMode { io_plaintext = 0, io_sealed = 1, io_auto = 2 };
// envelope.audit: each level logs what the one before it logs, and more.
enum AuditLevel { audit_off = 0, audit_management = 1, audit_denials = 2, audit_all = 3 };

void define_settings();

}  // namespace envelope::pg
