// Keeper side of the request protocol: takes pending entries, performs them with a callback,
// writes results back, and fails everything still open when the keeper exits.
#pragma once
#include "boundary/pg_includes.hpp"
#include "shmem/request_queue.hpp"

namespace envelope::pg {

// Performs one request (copied out of shared memory) into `out`; runs without any lock.
using PerformRequest = void (*)(const KeeperRequest &in, KeeperRequest &out);

void request_service_attach_keeper();  // publishes the keeper's latch
void request_service_serve(PerformRequest perform);
// Frees entries whose requester process is gone (it ended without releasing them).
void request_service_reclaim();
// Answers every open request with hsm_unavailable and detaches the latch (keeper exit).
void request_service_fail_all(const char *message);

}  // namespace envelope::pg
