// The shared-memory DEK cache's layout and lookup logic, independent of PostgreSQL so it can be
// unit-tested and benchmarked. The caller provides the memory and the locking: writers hold an
// exclusive lock, lookups hold a shared one (or use the generation counter to skip locking).
#pragma once
#include "envelope_format.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace envelope {

// Whether a hash bucket holds a key (open addressing needs tombstones to keep probe chains).
enum class Occupancy : uint32_t { empty = 0, live = 1, tombstone = 2 };
// What a cached key may do: the keyring state of its version, minus "destroyed" (never cached).
enum class KeyUse : uint32_t { active = 1, decrypt_only = 2 };

struct KeyEntry {
    uint32_t database;      // database OID
    Occupancy occupancy;    // only live entries hold a key
    KeyUse use;             // meaningful for live entries
    DekId id;               // keyring row id
    uint64_t change_count;  // bumped every time the entry changes (backends drop stale state)
    std::atomic<uint64_t> encryptions;  // nonces drawn under this key (NIST SP 800-38D budget)
    std::atomic<uint64_t> reserved;     // encryptions durably reserved on disk (>= encryptions
                                        // once a seal is allowed to proceed)
    uint8_t key[kDekSize];
};

struct KeyTableHeader {
    uint32_t capacity;  // most keys that may be cached (envelope.max_keys)
    uint32_t buckets;   // power of two >= 2 * capacity
    uint32_t used;      // live keys
    uint32_t tombstones;
    std::atomic<uint64_t> generation;  // bumped on every insert/remove: lock-free staleness test
};

class KeyTable {
  public:
    static size_t bytes_needed(uint32_t capacity) noexcept;

    // Views a region of bytes_needed(capacity) bytes; initialize=true formats it.
    KeyTable(void *region, uint32_t capacity, bool initialize) noexcept;

    // Entry index, or -1. Caller holds at least a shared lock. Indexes are valid only while
    // the lock is held: an insert may rebuild the table and move entries.
    int find(uint32_t database, const DekId &id) const noexcept;
    const KeyEntry &entry(int index) const noexcept { return entries_[index]; }
    KeyEntry &entry(int index) noexcept { return entries_[index]; }

    enum class InsertResult { inserted, replaced, full };
    // Installs or refreshes a key (exclusive lock held). index receives the entry.
    InsertResult insert(uint32_t database, const DekId &id, const uint8_t key[kDekSize], KeyUse use,
                        uint64_t encryptions, int *index) noexcept;
    // Changes what a cached key may do; false if not cached.
    bool set_use(uint32_t database, const DekId &id, KeyUse use) noexcept;
    // Removes one key (wiping the bytes); false if it was not cached.
    bool remove(uint32_t database, const DekId &id) noexcept;
    // Removes every key of a database; returns how many.
    uint32_t remove_database(uint32_t database) noexcept;
    // Wipes everything.
    void clear() noexcept;

    uint32_t used() const noexcept { return header_->used; }
    uint32_t capacity() const noexcept { return header_->capacity; }
    uint32_t count_database(uint32_t database) const noexcept;
    uint64_t generation() const noexcept {
        return header_->generation.load(std::memory_order_acquire);
    }
    uint32_t buckets() const noexcept { return header_->buckets; }

  private:
    uint32_t home(uint32_t database, const DekId &id) const noexcept;
    void bump() noexcept;
    void rebuild() noexcept;  // drops tombstones when they pile up

    KeyTableHeader *header_;
    KeyEntry *entries_;
};

}  // namespace envelope
