// Keeper-side persistence of encryption counts (see encryption_counts.hpp).
#include "keeper/encryption_counts.hpp"
#include "shmem/key_cache.hpp"
#include "storage/count_reservations.hpp"

#include "hex.hpp"

extern "C" {
#include "storage/fd.h"
}

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <utility>

namespace envelope::pg {

namespace {

using CountKey = std::pair<Oid, envelope::DekId>;
// Keeper-local; static storage, only used inside the keeper's guarded main.
std::map<CountKey, uint64> saved_counts;
uint64 last_saved_total = 0;
bool loaded = false;

constexpr const char *kDir = "pg_envelope";
constexpr const char *kFile = "pg_envelope/encryptions";
constexpr const char *kTemp = "pg_envelope/encryptions.tmp";

}  // namespace

void counts_load() {
    saved_counts.clear();
    loaded = true;
    FILE *f = fopen(kFile, "r");
    if (f == nullptr) return;
    char line[128];
    while (fgets(line, sizeof line, f) != nullptr) {
        unsigned db;
        char hex[33];
        unsigned long long count;
        envelope::DekId id;
        if (sscanf(line, "%u %32s %llu", &db, hex, &count) == 3 &&
            envelope::hex_decode(hex, strlen(hex), id.data(), id.size())) {
            saved_counts[{db, id}] = count;
        }
    }
    fclose(f);
}

uint64 counts_seed(Oid database, const envelope::DekId &id) {
    if (!loaded) counts_load();
    auto it = saved_counts.find({database, id});
    const uint64 saved = it == saved_counts.end() ? 0 : it->second;
    // The reservation on disk bounds what any session may have used before a crash.
    const uint64 reserved = reserved_on_disk(database, id);
    return reserved > saved ? reserved : saved;
}

void counts_save(bool force) {
    if (!loaded) counts_load();
    // Copy the counters out under the cache lock; merge them into the map after releasing it.
    const int room = key_cache_capacity();
    auto *cached = static_cast<CachedKeyCount *>(palloc(sizeof(CachedKeyCount) * room));
    const int n = key_cache_copy_counts(cached, room);
    uint64 total = 0;
    for (int i = 0; i < n; ++i) {
        total += cached[i].encryptions;
        uint64 &saved = saved_counts[{cached[i].database, cached[i].id}];
        if (cached[i].encryptions > saved) saved = cached[i].encryptions;
    }
    pfree(cached);
    if (!force && total == last_saved_total) return;

    if (MakePGDirectory(kDir) != 0 && errno != EEXIST) {
        ereport(LOG, (errmsg("pg_envelope keeper: cannot create directory \"%s\": %m", kDir)));
        return;
    }
    FILE *f = fopen(kTemp, "w");
    if (f == nullptr) {
        ereport(LOG, (errmsg("pg_envelope keeper: cannot write \"%s\": %m", kTemp)));
        return;
    }
    for (const auto &[key, count] : saved_counts) {
        char hex[2 * envelope::kDekIdSize + 1];
        envelope::hex_encode(envelope::ByteView(key.second.data(), key.second.size()), hex);
        fprintf(f, "%u %s %" PRIu64 "\n", key.first, hex, count);
    }
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(kTemp, kFile) != 0) {
        ereport(LOG, (errmsg("pg_envelope keeper: cannot save encryption counts: %m")));
        return;
    }
    last_saved_total = total;
}

}  // namespace envelope::pg
