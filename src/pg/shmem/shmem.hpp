// pg_envelope's shared memory as a whole: asks the postmaster for space and locks, then lets
// each owner attach its own named structure (key cache, keeper status, request queue, key
// statistics).
#pragma once
#include "boundary/pg_includes.hpp"

namespace envelope::pg {

// The named LWLock tranche; each owner takes its own lock and no other module takes it.
enum class SharedLock {
    key_cache = 0,
    keeper_status = 1,
    request_queue = 2,
    key_stats = 3,
    count_reservations = 4,  // storage/count_reservations.cpp: one writer of reservation files
};
constexpr int kSharedLockCount = 5;
LWLock *shared_lock(SharedLock which);

void shmem_request();  // from shmem_request_hook
void shmem_startup();  // from shmem_startup_hook

// Maps page-aligned memory around [p, p + n) out of core dumps and locks it in RAM where the OS
// allows. Secrets live only in memory protected this way.
void protect_secret_pages(void *p, Size n, const char *what);

// True once shared_preload_libraries loaded us (otherwise SQL functions refuse to run).
bool loaded_via_preload();
void ensure_preloaded();

}  // namespace envelope::pg
