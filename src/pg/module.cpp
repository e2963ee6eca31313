// Module entry: _PG_init defines settings, reserves shared memory and registers the keeper.
// No PKCS#11 call happens here (the postmaster must never initialise the module).
#include "guard.hpp"
#include "keeper.hpp"
#include "settings.hpp"
#include "shared_state.hpp"

extern "C" {
PG_MODULE_MAGIC;
PGDLLEXPORT void _PG_init(void);
}

namespace {
shmem_request_hook_type prev_shmem_request_hook = nullptr;
shmem_startup_hook_type prev_shmem_startup_hook = nullptr;

void envelope_shmem_request() {
    if (prev_shmem_request_hook) prev_shmem_request_hook();
    envelope::pg::shared_state_request();
}

void envelope_shmem_startup() {
    if (prev_shmem_startup_hook) prev_shmem_startup_hook();
    envelope::pg::shared_state_startup();
}
}  // namespace

void _PG_init(void) {
    if (!process_shared_preload_libraries_in_progress) {
        ereport(ERROR,
                (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                 errmsg("pg_envelope must be loaded via shared_preload_libraries"),
                 errhint("Add pg_envelope to shared_preload_libraries in postgresql.conf and "
                         "restart the server.")));
    }
    envelope::pg::define_settings();

    prev_shmem_request_hook = shmem_request_hook;
    shmem_request_hook = envelope_shmem_request;
    prev_shmem_startup_hook = shmem_startup_hook;
    shmem_startup_hook = envelope_shmem_startup;

    envelope::pg::register_keeper();
}
