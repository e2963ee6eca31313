// Allocates the keeper request queue (see request_queue.hpp).
#include "shmem/request_queue.hpp"
#include "shmem/shmem.hpp"

namespace envelope::pg {

namespace {
RequestQueue *queue = nullptr;
}

Size request_queue_shmem_size() {
    return MAXALIGN(sizeof(RequestQueue));
}

void request_queue_shmem_attach() {
    bool found = false;
    queue = static_cast<RequestQueue *>(
        ShmemInitStruct("pg_envelope request queue", request_queue_shmem_size(), &found));
    if (found) return;
    memset(queue, 0, sizeof *queue);
    ConditionVariableInit(&queue->entry_freed_cv);
    for (auto &r : queue->entries) ConditionVariableInit(&r.done_cv);
}

RequestQueue *request_queue() {
    return queue;
}

LWLock *request_queue_lock() {
    return shared_lock(SharedLock::request_queue);
}

}  // namespace envelope::pg
