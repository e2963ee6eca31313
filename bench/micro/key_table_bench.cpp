// Cost of the shared DEK cache lookup: KeyTable::find() hits and misses on a table holding
// 10,000 keys at capacity 16,384 (32,768 buckets), and the backend fast path that skips
// find() altogether: an acquire load of the table's generation compared with the one the
// backend saw last time.
#include "key_table.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <vector>

namespace {

using namespace envelope;

constexpr uint32_t kCapacity = 16384;
constexpr uint32_t kKeys = 10000;
constexpr uint32_t kDatabase = 16384;  // a typical user database OID

DekId random_id(std::mt19937_64 &rng) {
    DekId id;
    for (size_t i = 0; i < id.size(); i += 8) {
        uint64_t r = rng();
        for (size_t j = 0; j < 8 && i + j < id.size(); ++j)
            id[i + j] = static_cast<uint8_t>(r >> (8 * j));
    }
    return id;
}

// A formatted table with kKeys random ids, plus kKeys ids that are not in it. Built once.
struct Loaded {
    std::unique_ptr<unsigned char[]> memory;
    std::unique_ptr<KeyTable> table;
    std::vector<DekId> present;
    std::vector<DekId> absent;

    Loaded() {
        const size_t bytes = KeyTable::bytes_needed(kCapacity);
        memory.reset(new (std::align_val_t(64)) unsigned char[bytes]);
        table = std::make_unique<KeyTable>(memory.get(), kCapacity, true);
        std::mt19937_64 rng(42);
        uint8_t key[32] = {};
        for (uint32_t i = 0; i < kKeys; ++i) {
            DekId id = random_id(rng);
            key[0] = static_cast<uint8_t>(i);
            if (table->insert(kDatabase, id, key, KeyUse::active, 0, nullptr) !=
                KeyTable::InsertResult::inserted) {
                std::abort();
            }
            present.push_back(id);
        }
        for (uint32_t i = 0; i < kKeys; ++i) absent.push_back(random_id(rng));
        // Visit in a scrambled order so consecutive lookups touch unrelated buckets.
        std::shuffle(present.begin(), present.end(), rng);
    }
};

Loaded &loaded() {
    static Loaded l;
    return l;
}

void BM_KeyTableFindHit(benchmark::State &state) {
    Loaded &l = loaded();
    const KeyTable &t = *l.table;
    size_t i = 0;
    for (auto _ : state) {
        int idx = t.find(kDatabase, l.present[i]);
        benchmark::DoNotOptimize(idx);
        if (++i == l.present.size()) i = 0;
    }
    state.counters["keys"] = static_cast<double>(t.used());
    state.counters["buckets"] = static_cast<double>(t.buckets());
}
BENCHMARK(BM_KeyTableFindHit);

// The same key every time: the slot stays in L1, as in a scan that reads one key's values.
void BM_KeyTableFindHitSameKey(benchmark::State &state) {
    Loaded &l = loaded();
    const KeyTable &t = *l.table;
    const DekId id = l.present[123];
    for (auto _ : state) {
        benchmark::DoNotOptimize(id);
        int idx = t.find(kDatabase, id);
        benchmark::DoNotOptimize(idx);
    }
}
BENCHMARK(BM_KeyTableFindHitSameKey);

void BM_KeyTableFindMiss(benchmark::State &state) {
    Loaded &l = loaded();
    const KeyTable &t = *l.table;
    size_t i = 0;
    for (auto _ : state) {
        int idx = t.find(kDatabase, l.absent[i]);
        benchmark::DoNotOptimize(idx);
        if (idx >= 0) state.SkipWithError("unexpected hit");
        if (++i == l.absent.size()) i = 0;
    }
}
BENCHMARK(BM_KeyTableFindMiss);

// A present id looked up under another database: probes the same chain, then misses.
void BM_KeyTableFindMissOtherDatabase(benchmark::State &state) {
    Loaded &l = loaded();
    const KeyTable &t = *l.table;
    size_t i = 0;
    for (auto _ : state) {
        int idx = t.find(kDatabase + 1, l.present[i]);
        benchmark::DoNotOptimize(idx);
        if (++i == l.present.size()) i = 0;
    }
}
BENCHMARK(BM_KeyTableFindMissOtherDatabase);

// Backend fast path: acquire load of the generation + compare with the cached value.
void BM_KeyTableGenerationCheck(benchmark::State &state) {
    Loaded &l = loaded();
    const KeyTable &t = *l.table;
    uint64_t seen = t.generation();
    int64_t stale = 0;
    for (auto _ : state) {
        uint64_t g = t.generation();
        stale += (g != seen);
        benchmark::DoNotOptimize(stale);
    }
    if (stale != 0) state.SkipWithError("generation changed");
}
BENCHMARK(BM_KeyTableGenerationCheck);

}  // namespace
