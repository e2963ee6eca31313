// The shared-memory DEK cache's layout and lookup logic, independent of PostgreSQL so it can be
// unit-tested and benchmarked. The caller provides the memory and the locking: writers hold an
// exclusive lock, lookups hold a shared one (or use the generation counter to skip locking).
#pragma once
#include "zone_guard.hpp"
#include "envelope_format.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace envelope {

enum class KeyState : uint32_t { empty = 0, active = 1, decrypt_only = 2, tombstone = 3 };

struct KeySlot {
    uint32_t database;  // database OID
    KeyState state;     // empty / tombstone slots hold no key
    DekId id;           // keyring row id
    uint64_t version;   // bumped every time the slot changes (backends drop stale state)
    std::atomic<uint64_t> encryptions;  // nonces drawn under this key (NIST SP 800-38D budget)
    uint8_t key[32];
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

    // Slot index, or -1. Caller holds at least a shared lock.
    int find(uint32_t database, const DekId &id) const noexcept;
    const KeySlot &slot(int index) const noexcept { return slots_[index]; }
    KeySlot &slot(int index) noexcept { return slots_[index]; }

    enum class InsertResult { inserted, replaced, full };
    // Installs or refreshes a key (exclusive lock held). index receives the slot.
    InsertResult insert(uint32_t database, const DekId &id, const uint8_t key[32], KeyState state,
                        uint64_t encryptions, int *index) noexcept;
    // Changes state of a cached key; false if not cached.
    bool set_state(uint32_t database, const DekId &id, KeyState state) noexcept;
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
    KeySlot *slots_;
};

}  // namespace envelope
