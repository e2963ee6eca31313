// The keeper: the only process that holds the KEK (it loads the PKCS#11 module, or runs the IKM
// command and derives the KEK). It connects to the KEK provider, has loader workers feed it
// every database's wrapped DEKs, installs unwrapped DEKs in the shared cache, and then serves
// requests, waking on its latch.
#include "keeper/keeper_main.hpp"
#include "boundary/guard.hpp"
#include "keeper/encryption_counts.hpp"
#include "keeper/load_scheduler.hpp"
#include "keeper/request_service.hpp"
#include "postmaster/settings.hpp"
#include "shmem/keeper_status.hpp"
#include "shmem/key_cache.hpp"
#include "shmem/shmem.hpp"

#include "hsm_link.hpp"
#include "ikm_kek_link.hpp"
#include "protected_memory.hpp"
#include "wipe.hpp"

extern "C" {
#include "storage/fd.h"
}

#include <cerrno>
#include <cstring>

namespace envelope::pg {

namespace {

// Keeper-local state. Static storage: nothing here is on a stack an ERROR could unwind.
envelope::HsmLink pkcs11_link;
envelope::IkmKekLink ikm_link;
// The provider chosen at the last connect (envelope.kek_provider).
envelope::KekLink *link = &pkcs11_link;
int connected_provider = kek_pkcs11;
char connected_ikm_command[MAXPGPATH];
int connected_ikm_timeout = 0;
char connected_module[MAXPGPATH];
char connected_token[kLabelSize];
char connected_pin_file[MAXPGPATH];
char connected_kek[kLabelSize];
char connected_init_args[MAXPGPATH];
int connected_wrap_mechanism = -1;
int backoff_ms = 1000;
TimestampTz next_attempt = 0;
// A wrong PIN is retried slowly (tokens lock after a few wrong PINs); a missing or failing
// device quickly, so a short outage ends within seconds of the token coming back.
constexpr int kMaxLoginBackoffMs = 30000;
constexpr int kMaxDeviceBackoffMs = 2000;
constexpr long kHealthCheckMs = 5000;
constexpr long kCountsSaveMs = 10000;
TimestampTz last_counts_save = 0;
TimestampTz last_health_check = 0;
char last_logged_error[kStatusMessageSize];

void record_failure(const char *message, bool kek_found,
                    envelope::Pkcs11Failure kind = envelope::Pkcs11Failure::device) {
    // An IKM command may ask a remote service or a person: it is retried slowly too.
    const bool login =
        kind == envelope::Pkcs11Failure::login || kind == envelope::Pkcs11Failure::pin_file ||
        kind == envelope::Pkcs11Failure::ikm_command || kind == envelope::Pkcs11Failure::ikm_salt;
    backoff_ms = Min(backoff_ms, login ? kMaxLoginBackoffMs : kMaxDeviceBackoffMs);
    next_attempt = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), backoff_ms);
    keeper_status_failure(message, kek_found, next_attempt);
    // Log each distinct reason once, not on every retry.
    if (strcmp(last_logged_error, message) != 0) {
        strlcpy(last_logged_error, message, sizeof last_logged_error);
        ereport(LOG,
                (errmsg("pg_envelope keeper: the %s is not usable: %s",
                        connected_provider == kek_ikm_command ? "IKM command" : "HSM", message),
                 errhint("Retrying with backoff; fix the envelope.* settings or the %s "
                         "and reload the configuration.",
                         connected_provider == kek_ikm_command ? "command" : "token")));
    }
    backoff_ms = Min(backoff_ms * 2, login ? kMaxLoginBackoffMs : kMaxDeviceBackoffMs);
}

bool settings_changed() {
    if (connected_provider != setting_kek_provider) return true;
    if (setting_kek_provider == kek_ikm_command)
        return strcmp(connected_ikm_command, setting_ikm_command) != 0 ||
               connected_ikm_timeout != setting_ikm_timeout_ms ||
               strcmp(connected_kek, setting_kek_label) != 0;
    return strcmp(connected_module, setting_pkcs11_module) != 0 ||
           strcmp(connected_token, setting_token_label) != 0 ||
           strcmp(connected_pin_file, setting_pin_file) != 0 ||
           strcmp(connected_kek, setting_kek_label) != 0 ||
           strcmp(connected_init_args, setting_pkcs11_init_args) != 0 ||
           connected_wrap_mechanism != setting_wrap_mechanism;
}

// The path of envelope.ikm_command without its arguments (they could carry anything): what
// the status and the log show.
void ikm_command_path(char out[MAXPGPATH]) {
    const char *p = setting_ikm_command;
    while (*p == ' ' || *p == '\t') ++p;
    size_t n = strcspn(p, " \t");
    if (n >= MAXPGPATH) n = MAXPGPATH - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

// Runs the IKM command and derives the KEK. On failure the status says why.
bool connect_ikm() {
    char path[MAXPGPATH];
    ikm_command_path(path);
    keeper_status_connecting(path, "", setting_kek_label);
    keeper_status_wrapping("ikm_command", "");
    link = &ikm_link;
    connected_provider = kek_ikm_command;
    strlcpy(connected_ikm_command, setting_ikm_command, sizeof connected_ikm_command);
    connected_ikm_timeout = setting_ikm_timeout_ms;
    strlcpy(connected_kek, setting_kek_label, sizeof connected_kek);

    // The salt lives with the cluster, next to the other pg_envelope files (the keeper's
    // working directory is the data directory).
    if (MakePGDirectory("pg_envelope") != 0 && errno != EEXIST) {
        char message[kStatusMessageSize];
        snprintf(message, sizeof message, "could not create directory \"pg_envelope\": %s",
                 strerror(errno));
        record_failure(message, false, envelope::Pkcs11Failure::ikm_salt);
        return false;
    }
    char salt_path[MAXPGPATH];
    snprintf(salt_path, sizeof salt_path, "%s/pg_envelope/ikm_salt", DataDir);
    const bool had_created = ikm_link.created_salt();
    envelope::IkmSettings is{setting_ikm_command, setting_ikm_timeout_ms, salt_path,
                             setting_kek_label};
    envelope::HsmResult r = ikm_link.connect(is);
    envelope::wipe_vector_registers();
    if (!had_created && ikm_link.created_salt())
        ereport(LOG, (errmsg("pg_envelope keeper: created the IKM salt file \"%s\"", salt_path),
                      errhint("Back it up with the cluster: keys wrapped under this salt cannot "
                              "be unwrapped without it.")));
    if (!r.ok) {
        record_failure(r.message, false, r.failure);
        return false;
    }
    backoff_ms = 1000;
    last_logged_error[0] = '\0';
    keeper_status_wrapping("ikm_command", "AES-256-GCM in software (HKDF-derived KEK)");
    keeper_status_connected(!load_scheduler_active());
    ereport(LOG, (errmsg("pg_envelope keeper: KEK \"%s\" derived from the IKM of \"%s\"",
                         setting_kek_label, path)));
    last_health_check = GetCurrentTimestamp();
    return true;
}

// Loads the module, logs in and finds the KEK (or derives it from the IKM command, with
// envelope.kek_provider = ikm_command). On failure the status says why.
bool connect_hsm() {
    if (setting_kek_provider == kek_ikm_command) return connect_ikm();
    link = &pkcs11_link;
    connected_provider = kek_pkcs11;
    keeper_status_connecting(setting_pkcs11_module, setting_token_label, setting_kek_label);
    strlcpy(connected_module, setting_pkcs11_module, sizeof connected_module);
    strlcpy(connected_token, setting_token_label, sizeof connected_token);
    strlcpy(connected_pin_file, setting_pin_file, sizeof connected_pin_file);
    strlcpy(connected_kek, setting_kek_label, sizeof connected_kek);
    strlcpy(connected_init_args, setting_pkcs11_init_args, sizeof connected_init_args);
    connected_wrap_mechanism = setting_wrap_mechanism;
    keeper_status_wrapping("pkcs11", "");

    if (setting_pin_file[0] == '\0') {
        record_failure("envelope.pin_file is not set", false, envelope::Pkcs11Failure::pin_file);
        return false;
    }
    envelope::HsmSettings hs{setting_pkcs11_module, setting_token_label, setting_pin_file,
                             setting_kek_label};
    hs.init_reserved = setting_pkcs11_init_args;
    hs.wrap_choice = static_cast<envelope::WrapChoice>(setting_wrap_mechanism);
    envelope::HsmResult r = pkcs11_link.connect(hs);
    if (!r.ok) {
        record_failure(r.message, false, r.failure);
        return false;
    }
    backoff_ms = 1000;
    last_logged_error[0] = '\0';
    keeper_status_wrapping("pkcs11", pkcs11_link.wrap_mechanism());
    keeper_status_connected(!load_scheduler_active());
    ereport(LOG, (errmsg("pg_envelope keeper: logged in to token \"%s\", KEK \"%s\" found; "
                         "new keys are wrapped with %s",
                         setting_token_label, setting_kek_label, pkcs11_link.wrap_mechanism())));
    last_health_check = GetCurrentTimestamp();
    return true;
}

void try_connect() {
    if (connect_hsm()) load_scheduler_start();
}

void disconnect(const char *why) {
    link->disconnect();
    if (why) record_failure(why, false);
}

// A failed HSM operation can mean only that the session or object handles went stale (the
// token was removed and came back, or reloaded): reconnect once and retry the operation once.
// A wrapped key that does not authenticate is the key's problem, not the token's. If
// reconnecting fails, the status says why and the keeper keeps retrying with a short backoff.
template <typename Operation>
envelope::HsmResult with_reconnect(Operation &&operation) {
    envelope::HsmResult r = operation();
    if (r.ok || r.failure == envelope::Pkcs11Failure::unwrap_auth ||
        r.failure == envelope::Pkcs11Failure::malformed)
        return r;
    ereport(LOG, (errmsg("pg_envelope keeper: %s; reconnecting to the token", r.message)));
    link->disconnect();
    if (!connect_hsm()) return r;
    return operation();
}

// Unwraps or creates one DEK and installs it in the shared cache. Runs without any lock held;
// the HSM call is the slow part.
// An unwrap (or the unwrap half of a rewrap) failed: a wrapped key that does not authenticate
// is the key's problem; anything else is the HSM's, and a dead session is dropped.
void report_unwrap_failure(const envelope::HsmResult &r, KeeperRequest &out) {
    out.error = r.failure == envelope::Pkcs11Failure::unwrap_auth ||
                        r.failure == envelope::Pkcs11Failure::malformed
                    ? KeyError::unwrap_failed
                    : KeyError::hsm_unavailable;
    strlcpy(out.message, r.message, sizeof out.message);
    if (out.error == KeyError::hsm_unavailable && link->connected() && !link->alive())
        disconnect(r.message);
}

void perform(const KeeperRequest &in, KeeperRequest &out) {
    out.error = KeyError::none;
    out.message[0] = '\0';
    if (!link->connected()) {
        KeeperStatus st = keeper_status_snapshot();
        out.error = KeyError::hsm_unavailable;
        strlcpy(out.message, st.last_error[0] ? st.last_error : "the keeper is not connected",
                sizeof out.message);
        return;
    }
    char identity[envelope::kDekIdentitySize];
    envelope::dek_identity(in.id.data(), identity);
    envelope::ByteView identity_view(identity, strlen(identity));
    // The plaintext DEK passes through protected memory only (never this stack).
    static uint8 *key = static_cast<uint8 *>(envelope::protected_alloc(envelope::kDekSize));
    if (key == nullptr) {
        out.error = KeyError::hsm_unavailable;
        strlcpy(out.message, "no protected memory for key material (mmap/MADV_DONTDUMP failed)",
                sizeof out.message);
        return;
    }

    if (in.kind == RequestKind::rewrap) {
        // KEK rotation: the DEK is unwrapped and wrapped again inside the token; it is not
        // (re)installed in the cache (its bytes do not change).
        size_t wrapped_len = 0;
        envelope::HsmResult r = with_reconnect([&] {
            return link->rewrap_dek(identity_view, {in.wrapped, in.wrapped_len}, in.kek_label,
                                    out.wrapped, sizeof out.wrapped, &wrapped_len);
        });
        envelope::wipe_vector_registers();
        if (!r.ok) {
            report_unwrap_failure(r, out);
            return;
        }
        out.wrapped_len = static_cast<uint32>(wrapped_len);
        strlcpy(out.kek_label, connected_kek, sizeof out.kek_label);
        return;
    }
    if (in.kind == RequestKind::unwrap) {
        if (key_cache_contains(in.database, in.id)) return;
        if (!envelope::wrapped_dek_size_ok(in.wrapped_len)) {
            out.error = KeyError::malformed;
            snprintf(out.message, sizeof out.message,
                     "wrapped key is %u bytes, expected %zu (AES-GCM) or %zu (key wrap)",
                     in.wrapped_len, envelope::kWrappedDekSize, envelope::kWrappedDekKwSize);
            return;
        }
        envelope::HsmResult r = with_reconnect([&] {
            return link->unwrap_dek(identity_view, {in.wrapped, in.wrapped_len}, key, in.kek_label);
        });
        if (!r.ok) {
            report_unwrap_failure(r, out);
            return;
        }
    } else if (in.kind == RequestKind::import_legacy) {
        // Trustpoint migration: the legacy KEK decrypts the DEK inside the token; the DEK is
        // wrapped under the connected KEK and installed like a new one.
        if (link != &pkcs11_link) {
            out.error = KeyError::no_token;
            strlcpy(out.message, "the keeper's KEK comes from envelope.ikm_command, not a token",
                    sizeof out.message);
            return;
        }
        size_t wrapped_len = 0;
        envelope::HsmResult r = with_reconnect([&] {
            return pkcs11_link.import_legacy_dek(in.kek_label, {in.wrapped, in.wrapped_len},
                                                 identity_view, key, out.wrapped,
                                                 sizeof out.wrapped, &wrapped_len);
        });
        if (!r.ok) {
            envelope::secure_zero(key, envelope::kDekSize);
            envelope::wipe_vector_registers();
            switch (r.failure) {
                case envelope::Pkcs11Failure::key_not_found:
                    out.error = KeyError::legacy_kek_not_found;
                    break;
                case envelope::Pkcs11Failure::malformed:
                    out.error = KeyError::malformed;
                    break;
                case envelope::Pkcs11Failure::other:
                    out.error = KeyError::legacy_kek_unusable;
                    break;
                default:
                    out.error = KeyError::hsm_unavailable;
                    break;
            }
            strlcpy(out.message, r.message, sizeof out.message);
            if (out.error == KeyError::hsm_unavailable && link->connected() && !link->alive())
                disconnect(r.message);
            return;
        }
        out.wrapped_len = static_cast<uint32>(wrapped_len);
        strlcpy(out.kek_label, connected_kek, sizeof out.kek_label);
    } else {
        size_t wrapped_len = 0;
        envelope::HsmResult r = with_reconnect([&] {
            return link->create_dek(identity_view, key, out.wrapped, sizeof out.wrapped,
                                    &wrapped_len);
        });
        if (!r.ok) {
            out.error = KeyError::hsm_unavailable;
            strlcpy(out.message, r.message, sizeof out.message);
            if (link->connected() && !link->alive()) disconnect(r.message);
            return;
        }
        out.wrapped_len = static_cast<uint32>(wrapped_len);
        strlcpy(out.kek_label, connected_kek, sizeof out.kek_label);
    }

    const uint64 seed = in.kind == RequestKind::unwrap ? counts_seed(in.database, in.id) : 0;
    const bool installed = key_cache_install(in.database, in.id, key, in.use, seed);
    envelope::secure_zero(key, envelope::kDekSize);
    envelope::wipe_vector_registers();  // the token's AES and our copies passed through them
    if (!installed) {
        out.error = KeyError::cache_full;
        snprintf(out.message, sizeof out.message, "all %d slots (envelope.max_keys) are in use",
                 key_cache_capacity());
    }
}

// Requesters must never be left waiting: answer them before anything that could fail.
void keeper_exit(int, Datum) {
    pkcs11_link.disconnect();
    ikm_link.disconnect();
    if (!loaded_via_preload()) return;
    LWLockReleaseAll();
    request_service_fail_all("the pg_envelope keeper exited");
    keeper_status_exited();
    guarded("envelope keeper exit", [] { counts_save(true); });
}

void keeper_loop() {
    for (;;) {
        CHECK_FOR_INTERRUPTS();
        if (ConfigReloadPending) {
            ConfigReloadPending = false;
            ProcessConfigFile(PGC_SIGHUP);
            if (settings_changed() || !link->connected()) {
                link->disconnect();
                backoff_ms = 1000;
                next_attempt = 0;
                last_logged_error[0] = '\0';
            }
        }
        TimestampTz now = GetCurrentTimestamp();
        if (!link->connected() && now >= next_attempt) try_connect();
        if (link->connected() &&
            TimestampDifferenceExceeds(last_health_check, now, kHealthCheckMs)) {
            last_health_check = now;
            if (!link->alive()) disconnect("the token stopped answering (removed or failed)");
        }
        request_service_reclaim();
        request_service_serve(perform);
        if (link->connected()) load_scheduler_drive();
        if (TimestampDifferenceExceeds(last_counts_save, now, kCountsSaveMs)) {
            last_counts_save = now;
            counts_save(false);
        }

        long timeout =
            link->connected()
                ? kHealthCheckMs
                : Max(1L, TimestampDifferenceMilliseconds(GetCurrentTimestamp(), next_attempt));
        (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, timeout,
                        PG_WAIT_EXTENSION);
        ResetLatch(MyLatch);
    }
}

}  // namespace

void register_keeper() {
    BackgroundWorker w;
    memset(&w, 0, sizeof w);
    w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
    w.bgw_start_time = BgWorkerStart_ConsistentState;
    w.bgw_restart_time = 1;
    strlcpy(w.bgw_library_name, "pg_envelope", sizeof w.bgw_library_name);
    strlcpy(w.bgw_function_name, "envelope_keeper_main", sizeof w.bgw_function_name);
    strlcpy(w.bgw_name, "pg_envelope keeper", sizeof w.bgw_name);
    strlcpy(w.bgw_type, "pg_envelope keeper", sizeof w.bgw_type);
    RegisterBackgroundWorker(&w);
}

}  // namespace envelope::pg

using namespace envelope::pg;

void envelope_keeper_main(Datum) {
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    pqsignal(SIGTERM, die);
    BackgroundWorkerUnblockSignals();
    BackgroundWorkerInitializeConnection(nullptr, nullptr, 0);
    pgstat_report_appname("pg_envelope keeper");

    before_shmem_exit(keeper_exit, 0);
    request_service_attach_keeper();
    keeper_status_started(MyProcPid);
    guarded("envelope_keeper_main", [] {
        counts_load();
        keeper_loop();
    });
}
