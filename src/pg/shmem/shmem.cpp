// Reserves pg_envelope's shared memory and lock tranche, and attaches every owner's structure.
#include "shmem/shmem.hpp"
#include "shmem/keeper_status.hpp"
#include "shmem/key_cache.hpp"
#include "shmem/key_stats.hpp"
#include "shmem/request_queue.hpp"

#include <sys/mman.h>
#include <unistd.h>

namespace envelope::pg {

namespace {
constexpr const char *kTranche = "pg_envelope";
bool requested = false;
bool attached = false;
}  // namespace

LWLock *shared_lock(SharedLock which) {
    return &GetNamedLWLockTranche(kTranche)[static_cast<int>(which)].lock;
}

void shmem_request() {
    Size size = add_size(key_cache_shmem_size(), keeper_status_shmem_size());
    size = add_size(size, request_queue_shmem_size());
    size = add_size(size, key_stats_shmem_size());
    RequestAddinShmemSpace(size);
    RequestNamedLWLockTranche(kTranche, kSharedLockCount);
    requested = true;
}

void shmem_startup() {
    LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
    key_cache_shmem_attach();
    keeper_status_shmem_attach();
    request_queue_shmem_attach();
    key_stats_shmem_attach();
    LWLockRelease(AddinShmemInitLock);
    attached = true;
}

void protect_secret_pages(void *region, Size size, const char *what) {
    const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    // The region may start and end mid-page: cover the partial pages around it too.
    const uintptr_t begin = reinterpret_cast<uintptr_t>(region) & ~(page - 1);
    const uintptr_t end = (reinterpret_cast<uintptr_t>(region) + size + page - 1) & ~(page - 1);
    if (end <= begin) return;
    void *p = reinterpret_cast<void *>(begin);  // NOLINT(performance-no-int-to-ptr): page math
    size_t len = end - begin;
    if (madvise(p, len, MADV_DONTDUMP) != 0) {
        ereport(LOG, (errmsg("pg_envelope: madvise(MADV_DONTDUMP) on the %s failed: %m", what)));
    }
    if (mlock(p, len) != 0) {
        ereport(
            DEBUG1,
            (errmsg("pg_envelope: mlock of the %s failed (%m); its pages may be swapped", what)));
    }
}

bool loaded_via_preload() {
    return requested && attached;
}

void ensure_preloaded() {
    if (!loaded_via_preload()) {
        ereport(ERROR,
                (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                 errmsg("pg_envelope must be loaded via shared_preload_libraries"),
                 errhint("Add pg_envelope to shared_preload_libraries in postgresql.conf and "
                         "restart the server.")));
    }
}

}  // namespace envelope::pg
