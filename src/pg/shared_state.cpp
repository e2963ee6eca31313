// Allocates and attaches pg_envelope's shared memory; the cache region is kept out of core dumps
// and locked in RAM where the OS allows.
#include "shared_state.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <new>

namespace envelope::pg {

int max_keys_setting = 1024;

namespace {
SharedState *state = nullptr;
alignas(envelope::KeyTable) unsigned char table_storage[sizeof(envelope::KeyTable)];
envelope::KeyTable *table = nullptr;
bool preloaded = false;

Size header_size() {
    return MAXALIGN(sizeof(SharedState));
}

// Applies MADV_DONTDUMP and mlock to the page-aligned interior of the key region.
void protect_key_region(void *region, Size size) {
    const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    // The region may start and end mid-page: cover the partial pages around it too.
    const uintptr_t begin = reinterpret_cast<uintptr_t>(region) & ~(page - 1);
    const uintptr_t end = (reinterpret_cast<uintptr_t>(region) + size + page - 1) & ~(page - 1);
    if (end <= begin) return;
    void *p = reinterpret_cast<void *>(begin);  // NOLINT(performance-no-int-to-ptr): page math
    size_t len = end - begin;
    if (madvise(p, len, MADV_DONTDUMP) != 0) {
        elog(LOG, "pg_envelope: madvise(MADV_DONTDUMP) on the key cache failed: %m");
    }
    if (mlock(p, len) != 0) {
        elog(DEBUG1, "pg_envelope: mlock of the key cache failed (%m); key pages may be swapped");
    }
}
}  // namespace

const char *keeper_state_name(KeeperState s) {
    switch (s) {
        case KeeperState::not_started:
            return "not started";
        case KeeperState::connecting:
            return "connecting";
        case KeeperState::loading:
            return "loading keys";
        case KeeperState::ready:
            return "ready";
        case KeeperState::failed:
            return "failed";
    }
    return "unknown";
}

Size shared_state_size() {
    return add_size(header_size(),
                    envelope::KeyTable::bytes_needed(static_cast<uint32_t>(max_keys_setting)));
}

void shared_state_request() {
    RequestAddinShmemSpace(shared_state_size());
    RequestNamedLWLockTranche("pg_envelope", 2);
    preloaded = true;
}

void shared_state_startup() {
    bool found = false;
    LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
    state = static_cast<SharedState *>(ShmemInitStruct("pg_envelope", shared_state_size(), &found));
    void *region = reinterpret_cast<char *>(state) + header_size();
    if (!found) {
        memset(state, 0, header_size());
        LWLockPadded *locks = GetNamedLWLockTranche("pg_envelope");
        state->cache_lock = &locks[0].lock;
        state->request_lock = &locks[1].lock;
        ConditionVariableInit(&state->request_freed_cv);
        for (auto &r : state->requests) ConditionVariableInit(&r.done_cv);
        state->status.state = KeeperState::not_started;
        table = new (table_storage)
            envelope::KeyTable(region, static_cast<uint32_t>(max_keys_setting), true);
        protect_key_region(
            region, envelope::KeyTable::bytes_needed(static_cast<uint32_t>(max_keys_setting)));
    } else {
        table = new (table_storage)
            envelope::KeyTable(region, static_cast<uint32_t>(max_keys_setting), false);
    }
    LWLockRelease(AddinShmemInitLock);
}

SharedState *shared_state() {
    return state;
}
envelope::KeyTable &key_table() {
    return *table;
}
bool loaded_via_preload() {
    return preloaded && state != nullptr;
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
