// Persists per-DEK encryption counts (the nonce budget) across restarts: the keeper saves the
// cache's counters to PGDATA/pg_envelope/encryptions periodically and at exit, and seeds keys
// it loads from that file. Counts are approximate: a crash loses at most one save interval.
#pragma once
#include "boundary/pg_includes.hpp"
#include "envelope_format.hpp"

namespace envelope::pg {

void counts_load();
uint64 counts_seed(Oid database, const envelope::DekId &id);
// Writes the file if any counter moved since the last save (always when force is set).
void counts_save(bool force);

}  // namespace envelope::pg
