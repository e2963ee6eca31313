// KeyTable: the shared-memory DEK cache's hashing, capacity, removal and wiping.
#include "key_table.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

using envelope::DekId;
using envelope::KeyTable;
using envelope::KeyUse;

namespace {

DekId random_id(std::mt19937_64 &rng) {
    DekId id;
    for (auto &b : id) b = static_cast<uint8_t>(rng());
    return id;
}

struct TableFixture {
    explicit TableFixture(uint32_t capacity)
        : memory(KeyTable::bytes_needed(capacity) + 64), table(aligned(), capacity, true) {}
    void *aligned() {
        return reinterpret_cast<void *>((reinterpret_cast<uintptr_t>(memory.data()) + 63) &
                                        ~uintptr_t(63));
    }
    std::vector<unsigned char> memory;
    KeyTable table;
};

}  // namespace

TEST(KeyTableTest, InsertFindRemove) {
    TableFixture f(16);
    std::mt19937_64 rng(1);
    DekId id = random_id(rng);
    uint8_t key[32];
    std::memset(key, 0xAB, sizeof key);
    EXPECT_EQ(f.table.find(5, id), -1);
    int idx = -1;
    EXPECT_EQ(f.table.insert(5, id, key, KeyUse::active, 0, &idx),
              KeyTable::InsertResult::inserted);
    ASSERT_GE(idx, 0);
    EXPECT_EQ(f.table.find(5, id), idx);
    EXPECT_EQ(f.table.find(6, id), -1) << "keys are per database";
    EXPECT_EQ(std::memcmp(f.table.entry(idx).key, key, 32), 0);
    EXPECT_EQ(f.table.used(), 1u);
    uint64_t gen = f.table.generation();
    EXPECT_TRUE(f.table.remove(5, id));
    EXPECT_GT(f.table.generation(), gen);
    EXPECT_EQ(f.table.find(5, id), -1);
    EXPECT_EQ(f.table.used(), 0u);
    const uint8_t zero[32] = {};
    EXPECT_EQ(std::memcmp(f.table.entry(idx).key, zero, 32), 0) << "removed key bytes are wiped";
    EXPECT_FALSE(f.table.remove(5, id));
}

TEST(KeyTableTest, ReplaceBumpsSlotVersion) {
    TableFixture f(16);
    std::mt19937_64 rng(2);
    DekId id = random_id(rng);
    uint8_t key[32] = {1};
    int idx;
    f.table.insert(1, id, key, KeyUse::active, 7, &idx);
    uint64_t v = f.table.entry(idx).change_count;
    EXPECT_EQ(f.table.insert(1, id, key, KeyUse::decrypt_only, 3, &idx),
              KeyTable::InsertResult::replaced);
    EXPECT_GT(f.table.entry(idx).change_count, v);
    EXPECT_EQ(f.table.entry(idx).use, KeyUse::decrypt_only);
    EXPECT_EQ(f.table.entry(idx).encryptions.load(), 7u) << "counts never go backwards";
}

TEST(KeyTableTest, FullIsReported) {
    TableFixture f(16);
    std::mt19937_64 rng(3);
    uint8_t key[32] = {};
    for (int i = 0; i < 16; ++i) {
        EXPECT_EQ(f.table.insert(1, random_id(rng), key, KeyUse::active, 0, nullptr),
                  KeyTable::InsertResult::inserted);
    }
    EXPECT_EQ(f.table.insert(1, random_id(rng), key, KeyUse::active, 0, nullptr),
              KeyTable::InsertResult::full);
}

TEST(KeyTableTest, ChurnWithTombstonesKeepsEveryKeyFindable) {
    const uint32_t capacity = 1000;
    TableFixture f(capacity);
    std::mt19937_64 rng(4);
    std::vector<std::pair<uint32_t, DekId>> live;
    uint8_t key[32] = {};
    for (int round = 0; round < 20000; ++round) {
        if (live.size() < capacity && (live.empty() || rng() % 3 != 0)) {
            DekId id = random_id(rng);
            uint32_t db = static_cast<uint32_t>(rng() % 4);
            key[0] = static_cast<uint8_t>(round);
            ASSERT_NE(f.table.insert(db, id, key, KeyUse::active, 0, nullptr),
                      KeyTable::InsertResult::full);
            live.emplace_back(db, id);
        } else {
            size_t i = rng() % live.size();
            ASSERT_TRUE(f.table.remove(live[i].first, live[i].second));
            live[i] = live.back();
            live.pop_back();
        }
    }
    EXPECT_EQ(f.table.used(), live.size());
    for (auto &[db, id] : live) EXPECT_GE(f.table.find(db, id), 0);
}

TEST(KeyTableTest, RemoveDatabaseAndCount) {
    TableFixture f(64);
    std::mt19937_64 rng(5);
    uint8_t key[32] = {};
    for (int i = 0; i < 10; ++i) f.table.insert(1, random_id(rng), key, KeyUse::active, 0, nullptr);
    for (int i = 0; i < 5; ++i) f.table.insert(2, random_id(rng), key, KeyUse::active, 0, nullptr);
    EXPECT_EQ(f.table.count_database(1), 10u);
    EXPECT_EQ(f.table.remove_database(1), 10u);
    EXPECT_EQ(f.table.count_database(1), 0u);
    EXPECT_EQ(f.table.count_database(2), 5u);
    f.table.clear();
    EXPECT_EQ(f.table.used(), 0u);
}

TEST(KeyTableTest, AttachSeesFormattedTable) {
    TableFixture f(32);
    std::mt19937_64 rng(6);
    DekId id = random_id(rng);
    uint8_t key[32] = {9};
    f.table.insert(3, id, key, KeyUse::active, 0, nullptr);
    KeyTable other(f.aligned(), 32, false);
    EXPECT_GE(other.find(3, id), 0);
    EXPECT_EQ(other.capacity(), 32u);
}
