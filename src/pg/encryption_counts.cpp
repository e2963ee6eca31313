// Keeper-side persistence of encryption counts (see encryption_counts.hpp).
#include "encryption_counts.hpp"
#include "shared_state.hpp"

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

bool parse_id(const char *hex, envelope::DekId &id) {
    for (size_t i = 0; i < id.size(); ++i) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) return false;
        id[i] = static_cast<uint8>(v);
    }
    return true;
}

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
        if (sscanf(line, "%u %32s %llu", &db, hex, &count) == 3 && strlen(hex) == 32 &&
            parse_id(hex, id)) {
            saved_counts[{db, id}] = count;
        }
    }
    fclose(f);
}

uint64 counts_seed(Oid database, const envelope::DekId &id) {
    if (!loaded) counts_load();
    auto it = saved_counts.find({database, id});
    return it == saved_counts.end() ? 0 : it->second;
}

void counts_save(bool force) {
    if (!loaded) counts_load();
    SharedState *s = shared_state();
    uint64 total = 0;
    LWLockAcquire(s->cache_lock, LW_SHARED);
    envelope::KeyTable &t = key_table();
    for (uint32 i = 0; i < t.buckets(); ++i) {
        const envelope::KeySlot &slot = t.slot(static_cast<int>(i));
        if (slot.state != envelope::KeyState::active &&
            slot.state != envelope::KeyState::decrypt_only)
            continue;
        uint64 n = slot.encryptions.load(std::memory_order_relaxed);
        total += n;
        uint64 &saved = saved_counts[{slot.database, slot.id}];
        if (n > saved) saved = n;
    }
    LWLockRelease(s->cache_lock);
    if (!force && total == last_saved_total) return;

    if (MakePGDirectory(kDir) != 0 && errno != EEXIST) {
        elog(LOG, "pg_envelope keeper: cannot create directory \"%s\": %m", kDir);
        return;
    }
    FILE *f = fopen(kTemp, "w");
    if (f == nullptr) {
        elog(LOG, "pg_envelope keeper: cannot write \"%s\": %m", kTemp);
        return;
    }
    for (const auto &[key, count] : saved_counts) {
        char hex[33];
        for (size_t i = 0; i < key.second.size(); ++i)
            snprintf(hex + 2 * i, 3, "%02x", key.second[i]);
        fprintf(f, "%u %s %" PRIu64 "\n", key.first, hex, count);
    }
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(kTemp, kFile) != 0) {
        elog(LOG, "pg_envelope keeper: cannot save encryption counts: %m");
        return;
    }
    last_saved_total = total;
}

}  // namespace envelope::pg
