// Shared usage statistics (see key_stats.hpp). Plain C-style code only under the lock: no
// allocation, nothing that can throw or raise.
#include "shmem/key_stats.hpp"
#include "shmem/shmem.hpp"

extern "C" {
#include "common/hashfn.h"
#include "storage/fd.h"
}

#include <cstdio>
#include <cstring>

namespace envelope::pg {

int key_stats_max_setting = 4096;

namespace {

constexpr uint32 kFileMagic = 0x45535431;  // "EST1"
constexpr const char *kDir = "pg_envelope";
constexpr const char *kFile = "pg_envelope/key_stats";
constexpr const char *kTemp = "pg_envelope/key_stats.tmp";
constexpr int kEvictBuckets = 64;

struct KeyStatsShared {
    int capacity;
    int count;
    uint32 index_mask;  // index has index_mask + 1 buckets: 0 = empty, else entry number + 1
    int64 evictions;
    // followed by int32 index[index_mask + 1] and KeyStatsRow rows[capacity]
};

KeyStatsShared *shared = nullptr;
int32 *index_of = nullptr;
KeyStatsRow *rows_of = nullptr;

uint32 index_size(int capacity) {
    uint32 n = 1;
    while (n < static_cast<uint32>(capacity) * 2) n <<= 1;
    return n;
}

uint32 hash_key(const KeyStatsKey &k) {
    return hash_bytes(reinterpret_cast<const unsigned char *>(&k), sizeof k);
}

bool same_key(const KeyStatsKey &a, const KeyStatsKey &b) {
    return memcmp(&a, &b, sizeof a) == 0;
}

void index_insert(int entry) {
    uint32 b = hash_key(rows_of[entry].key) & shared->index_mask;
    while (index_of[b] != 0) b = (b + 1) & shared->index_mask;
    index_of[b] = entry + 1;
}

void rebuild_index() {
    memset(index_of, 0, sizeof(int32) * (shared->index_mask + 1));
    for (int i = 0; i < shared->count; ++i) index_insert(i);
}

int find(const KeyStatsKey &k) {
    uint32 b = hash_key(k) & shared->index_mask;
    while (index_of[b] != 0) {
        const int e = index_of[b] - 1;
        if (same_key(rows_of[e].key, k)) return e;
        b = (b + 1) & shared->index_mask;
    }
    return -1;
}

// Drops the least recently used sixteenth (at least one row): a 64-bucket histogram of last use
// finds the cut-off without sorting or allocating; rows are compacted and the index rebuilt.
void evict() {
    const int want = Max(1, shared->count / 16);
    TimestampTz lo = rows_of[0].last_use, hi = rows_of[0].last_use;
    for (int i = 1; i < shared->count; ++i) {
        lo = Min(lo, rows_of[i].last_use);
        hi = Max(hi, rows_of[i].last_use);
    }
    const TimestampTz span = hi - lo + 1;
    int histogram[kEvictBuckets] = {};
    auto bucket = [&](TimestampTz t) {
        return static_cast<int>(((t - lo) * static_cast<__int128>(kEvictBuckets)) / span);
    };
    for (int i = 0; i < shared->count; ++i) histogram[bucket(rows_of[i].last_use)]++;
    int cut = 0, dropped = 0;
    while (cut < kEvictBuckets - 1 && dropped + histogram[cut] < want) dropped += histogram[cut++];
    // Rows in buckets below `cut` go, and from bucket `cut` as many as still needed.
    int from_cut = want - dropped;
    int kept = 0;
    for (int i = 0; i < shared->count; ++i) {
        const int b = bucket(rows_of[i].last_use);
        bool drop = b < cut;
        if (b == cut && from_cut > 0) {
            drop = true;
            from_cut--;
        }
        if (drop) {
            shared->evictions++;
            continue;
        }
        if (kept != i) rows_of[kept] = rows_of[i];
        kept++;
    }
    shared->count = kept;
    rebuild_index();
}

// At a clean shutdown the postmaster (no other process is left) writes the table out.
void save_at_shutdown(int code, Datum) {
    if (code != 0 || shared == nullptr || shared->count == 0) return;
    if (MakePGDirectory(kDir) != 0 && errno != EEXIST) return;
    FILE *f = fopen(kTemp, "w");
    if (f == nullptr) return;
    const uint32 header[2] = {kFileMagic, static_cast<uint32>(shared->count)};
    bool ok = fwrite(header, sizeof header, 1, f) == 1 &&
              fwrite(rows_of, sizeof(KeyStatsRow), shared->count, f) ==
                  static_cast<size_t>(shared->count);
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(kTemp, kFile) != 0) {
        ereport(LOG, (errmsg("pg_envelope: cannot save key statistics: %m")));
        unlink(kTemp);
    }
}

void load_saved() {
    FILE *f = fopen(kFile, "r");
    if (f == nullptr) return;
    uint32 header[2];
    if (fread(header, sizeof header, 1, f) == 1 && header[0] == kFileMagic) {
        KeyStatsRow row;
        for (uint32 i = 0; i < header[1] && fread(&row, sizeof row, 1, f) == 1; ++i) {
            if (shared->count == shared->capacity) evict();
            rows_of[shared->count] = row;
            index_insert(shared->count);
            shared->count++;
        }
    }
    fclose(f);
    // Like pg_stat_statements: the file is not left for backups and standbys to copy.
    unlink(kFile);
}

}  // namespace

Size key_stats_shmem_size() {
    Size size = MAXALIGN(sizeof(KeyStatsShared));
    size = add_size(size, MAXALIGN(mul_size(sizeof(int32), index_size(key_stats_max_setting))));
    return add_size(size, mul_size(sizeof(KeyStatsRow), key_stats_max_setting));
}

void key_stats_shmem_attach() {
    bool found = false;
    auto *base = static_cast<char *>(
        ShmemInitStruct("pg_envelope key statistics", key_stats_shmem_size(), &found));
    shared = reinterpret_cast<KeyStatsShared *>(base);
    const uint32 buckets = index_size(key_stats_max_setting);
    index_of = reinterpret_cast<int32 *>(base + MAXALIGN(sizeof(KeyStatsShared)));
    rows_of = reinterpret_cast<KeyStatsRow *>(base + MAXALIGN(sizeof(KeyStatsShared)) +
                                              MAXALIGN(sizeof(int32) * buckets));
    if (!found) {
        shared->capacity = key_stats_max_setting;
        shared->count = 0;
        shared->index_mask = buckets - 1;
        shared->evictions = 0;
        memset(index_of, 0, sizeof(int32) * buckets);
        if (!IsUnderPostmaster) load_saved();
    }
    if (!IsUnderPostmaster) on_shmem_exit(save_at_shutdown, 0);
}

void key_stats_add(const KeyStatsRow *rows, int n, TimestampTz now) {
    LWLock *lock = shared_lock(SharedLock::key_stats);
    LWLockAcquire(lock, LW_EXCLUSIVE);
    for (int i = 0; i < n; ++i) {
        int e = find(rows[i].key);
        if (e < 0) {
            if (shared->count == shared->capacity) evict();
            e = shared->count++;
            rows_of[e] = KeyStatsRow{rows[i].key, 0, 0, 0, now, now};
            index_insert(e);
        }
        KeyStatsRow &r = rows_of[e];
        r.sealed += rows[i].sealed;
        r.opened += rows[i].opened;
        r.denied += rows[i].denied;
        r.last_use = now;
    }
    LWLockRelease(lock);
}

int key_stats_copy(KeyStatsRow *out, int room) {
    LWLock *lock = shared_lock(SharedLock::key_stats);
    LWLockAcquire(lock, LW_SHARED);
    const int n = Min(room, shared->count);
    memcpy(out, rows_of, sizeof(KeyStatsRow) * n);
    LWLockRelease(lock);
    return n;
}

int key_stats_capacity() {
    return shared->capacity;
}

int key_stats_reset() {
    LWLock *lock = shared_lock(SharedLock::key_stats);
    LWLockAcquire(lock, LW_EXCLUSIVE);
    const int n = shared->count;
    shared->count = 0;
    shared->evictions = 0;
    memset(index_of, 0, sizeof(int32) * (shared->index_mask + 1));
    LWLockRelease(lock);
    return n;
}

int64 key_stats_evictions() {
    LWLock *lock = shared_lock(SharedLock::key_stats);
    LWLockAcquire(lock, LW_SHARED);
    const int64 n = shared->evictions;
    LWLockRelease(lock);
    return n;
}

}  // namespace envelope::pg
