// Starting the rotator worker (see auto_rotation.hpp).
#include "session/auto_rotation.hpp"
#include "postmaster/settings.hpp"

extern "C" {
#include "access/xlog.h"
#include "postmaster/bgworker.h"
}

#include <cstring>

namespace envelope::pg {

namespace {

constexpr uint64 kRetryEvery = 65536;

}  // namespace

void maybe_request_rotation(const envelope::DekId &id, uint64 count) {
    if (setting_auto_rotate_at <= 0) return;
    const auto at = static_cast<uint64>(setting_auto_rotate_at);
    if (count < at || (count - at) % kRetryEvery != 0) return;
    if (RecoveryInProgress()) return;  // a standby cannot rotate; its primary will

    BackgroundWorker w;
    memset(&w, 0, sizeof w);
    w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
    w.bgw_start_time = BgWorkerStart_RecoveryFinished;
    w.bgw_restart_time = BGW_NEVER_RESTART;
    strlcpy(w.bgw_library_name, "pg_envelope", sizeof w.bgw_library_name);
    strlcpy(w.bgw_function_name, "envelope_rotator_main", sizeof w.bgw_function_name);
    snprintf(w.bgw_name, sizeof w.bgw_name, "pg_envelope rotator for database %u", MyDatabaseId);
    strlcpy(w.bgw_type, "pg_envelope rotator", sizeof w.bgw_type);
    w.bgw_main_arg = ObjectIdGetDatum(MyDatabaseId);
    RotationRequest request{id, count};
    static_assert(sizeof request <= BGW_EXTRALEN, "the request fits bgw_extra");
    memcpy(w.bgw_extra, &request, sizeof request);
    w.bgw_notify_pid = 0;
    if (!RegisterDynamicBackgroundWorker(&w, nullptr)) {
        ereport(LOG, (errmsg("pg_envelope: could not start the rotator for a data key at %llu "
                             "encryptions (no free background worker slot); a later seal "
                             "retries",
                             static_cast<unsigned long long>(count))));
    }
}

}  // namespace envelope::pg
