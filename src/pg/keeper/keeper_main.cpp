// The keeper: the only process that loads the PKCS#11 module. It logs in, finds the KEK, has
// loader workers feed it every database's wrapped DEKs, installs unwrapped DEKs in the shared
// cache, and then serves requests, waking on its latch.
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
#include "protected_memory.hpp"
#include "wipe.hpp"

#include <cstring>

namespace envelope::pg {

namespace {

// Keeper-local state. Static storage: nothing here is on a stack an ERROR could unwind.
envelope::HsmLink hsm;
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
    const bool login =
        kind == envelope::Pkcs11Failure::login || kind == envelope::Pkcs11Failure::pin_file;
    backoff_ms = Min(backoff_ms, login ? kMaxLoginBackoffMs : kMaxDeviceBackoffMs);
    next_attempt = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), backoff_ms);
    keeper_status_failure(message, kek_found, next_attempt);
    // Log each distinct reason once, not on every retry.
    if (strcmp(last_logged_error, message) != 0) {
        strlcpy(last_logged_error, message, sizeof last_logged_error);
        ereport(LOG, (errmsg("pg_envelope keeper: the HSM is not usable: %s", message),
                      errhint("Retrying with backoff; fix the envelope.* settings or the token "
                              "and reload the configuration.")));
    }
    backoff_ms = Min(backoff_ms * 2, login ? kMaxLoginBackoffMs : kMaxDeviceBackoffMs);
}

bool settings_changed() {
    return strcmp(connected_module, setting_pkcs11_module) != 0 ||
           strcmp(connected_token, setting_token_label) != 0 ||
           strcmp(connected_pin_file, setting_pin_file) != 0 ||
           strcmp(connected_kek, setting_kek_label) != 0 ||
           strcmp(connected_init_args, setting_pkcs11_init_args) != 0 ||
           connected_wrap_mechanism != setting_wrap_mechanism;
}

// Loads the module, logs in and finds the KEK. On failure the status says why.
bool connect_hsm() {
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
    envelope::HsmResult r = hsm.connect(hs);
    if (!r.ok) {
        record_failure(r.message, false, r.failure);
        return false;
    }
    backoff_ms = 1000;
    last_logged_error[0] = '\0';
    keeper_status_wrapping("pkcs11", hsm.wrap_mechanism());
    keeper_status_connected(!load_scheduler_active());
    ereport(LOG, (errmsg("pg_envelope keeper: logged in to token \"%s\", KEK \"%s\" found; "
                         "new keys are wrapped with %s",
                         setting_token_label, setting_kek_label, hsm.wrap_mechanism())));
    last_health_check = GetCurrentTimestamp();
    return true;
}

void try_connect() {
    if (connect_hsm()) load_scheduler_start();
}

void disconnect(const char *why) {
    hsm.disconnect();
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
    hsm.disconnect();
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
    if (out.error == KeyError::hsm_unavailable && hsm.connected() && !hsm.alive())
        disconnect(r.message);
}

void perform(const KeeperRequest &in, KeeperRequest &out) {
    out.error = KeyError::none;
    out.message[0] = '\0';
    if (!hsm.connected()) {
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
            return hsm.rewrap_dek(identity_view, {in.wrapped, in.wrapped_len}, in.kek_label,
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
            return hsm.unwrap_dek(identity_view, {in.wrapped, in.wrapped_len}, key, in.kek_label);
        });
        if (!r.ok) {
            report_unwrap_failure(r, out);
            return;
        }
    } else {
        size_t wrapped_len = 0;
        envelope::HsmResult r = with_reconnect([&] {
            return hsm.create_dek(identity_view, key, out.wrapped, sizeof out.wrapped,
                                  &wrapped_len);
        });
        if (!r.ok) {
            out.error = KeyError::hsm_unavailable;
            strlcpy(out.message, r.message, sizeof out.message);
            if (hsm.connected() && !hsm.alive()) disconnect(r.message);
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
    hsm.disconnect();
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
            if (settings_changed() || !hsm.connected()) {
                hsm.disconnect();
                backoff_ms = 1000;
                next_attempt = 0;
                last_logged_error[0] = '\0';
            }
        }
        TimestampTz now = GetCurrentTimestamp();
        if (!hsm.connected() && now >= next_attempt) try_connect();
        if (hsm.connected() && TimestampDifferenceExceeds(last_health_check, now, kHealthCheckMs)) {
            last_health_check = now;
            if (!hsm.alive()) disconnect("the token stopped answering (removed or failed)");
        }
        request_service_reclaim();
        request_service_serve(perform);
        if (hsm.connected()) load_scheduler_drive();
        if (TimestampDifferenceExceeds(last_counts_save, now, kCountsSaveMs)) {
            last_counts_save = now;
            counts_save(false);
        }

        long timeout =
            hsm.connected()
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
