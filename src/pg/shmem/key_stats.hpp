// Per-(database, role, key version) usage statistics in shared memory, under their own lock.
// Sessions add their per-backend sums at transaction end (session/key_usage.cpp); nothing on
// the per-value path takes this lock. Bounded: envelope.stats_max entries; when the table is
// full the least recently used sixteenth (by last use) is dropped. The postmaster writes the
// table to PGDATA/pg_envelope/key_stats at a clean shutdown and reads it back (and removes the
// file) at start-up; a crash loses the statistics, as with pg_stat_statements.
#pragma once
#include "boundary/pg_includes.hpp"

#include "envelope_format.hpp"

namespace envelope::pg {

extern int key_stats_max_setting;  // envelope.stats_max

struct KeyStatsKey {
    Oid database;
    Oid role;
    envelope::DekId id;
};

struct KeyStatsRow {
    KeyStatsKey key;
    int64 sealed;
    int64 opened;
    int64 denied;
    TimestampTz first_use;
    TimestampTz last_use;
};

Size key_stats_shmem_size();
void key_stats_shmem_attach();

// Adds n sums (first_use and last_use of each row are taken as `now`). One lock acquisition.
void key_stats_add(const KeyStatsRow *rows, int n, TimestampTz now);
// Copies up to room rows out; returns how many.
int key_stats_copy(KeyStatsRow *out, int room);
int key_stats_capacity();
// Forgets everything; returns the number of rows dropped.
int key_stats_reset();
// Rows dropped by eviction since start-up or the last reset.
int64 key_stats_evictions();

}  // namespace envelope::pg
