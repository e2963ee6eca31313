// Module entry: _PG_init defines settings, reserves shared memory and registers the keeper.
// No PKCS#11 call happens here (the postmaster must never initialise the module).
#include "boundary/guard.hpp"
#include "keeper/keeper_main.hpp"
#include "postmaster/settings.hpp"
#include "shmem/key_cache.hpp"
#include "shmem/shmem.hpp"

extern "C" {
#include "catalog/objectaccess.h"
#include "catalog/pg_class.h"

PG_MODULE_MAGIC;
PGDLLEXPORT void _PG_init(void);
}

namespace {
shmem_request_hook_type prev_shmem_request_hook = nullptr;
shmem_startup_hook_type prev_shmem_startup_hook = nullptr;

void envelope_shmem_request() {
    if (prev_shmem_request_hook) prev_shmem_request_hook();
    envelope::pg::shmem_request();
}

void envelope_shmem_startup() {
    if (prev_shmem_startup_hook) prev_shmem_startup_hook();
    envelope::pg::shmem_startup();
}

object_access_hook_type prev_object_access_hook = nullptr;

bool is_keyring(Oid relid) {
    const char *name = get_rel_name(relid);
    if (name == nullptr || strcmp(name, "keyring") != 0) return false;
    const char *nsp = get_namespace_name(get_rel_namespace(relid));
    return nsp != nullptr && strcmp(nsp, "envelope") == 0;
}

// Dropping a database, or the keyring with the extension, wipes that database's keys from the
// shared cache at once instead of leaving them until the next restart. Evicting is always safe:
// if the drop rolls back, keys are unwrapped again on first use.
void envelope_object_access(ObjectAccessType access, Oid class_id, Oid object_id, int sub_id,
                            void *arg) {
    if (prev_object_access_hook) prev_object_access_hook(access, class_id, object_id, sub_id, arg);
    if (access != OAT_DROP || !envelope::pg::loaded_via_preload()) return;
    if (class_id == DatabaseRelationId) {
        envelope::pg::key_cache_forget_database(object_id);
    } else if (class_id == RelationRelationId && sub_id == 0 && is_keyring(object_id)) {
        envelope::pg::key_cache_forget_database(MyDatabaseId);
    }
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
    envelope::pg::install_log_filter();

    prev_shmem_request_hook = shmem_request_hook;
    shmem_request_hook = envelope_shmem_request;
    prev_shmem_startup_hook = shmem_startup_hook;
    shmem_startup_hook = envelope_shmem_startup;

    prev_object_access_hook = object_access_hook;
    object_access_hook = envelope_object_access;

    envelope::pg::register_keeper();
}
