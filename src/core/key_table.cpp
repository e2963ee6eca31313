// Open-addressing hash table of DEKs over caller-provided (shared) memory.
#include "key_table.hpp"
#include "wipe.hpp"

#include <cstring>
#include <new>

namespace envelope {

namespace {

uint32_t round_up_pow2(uint32_t n) {
    uint32_t p = 1;
    while (p < n) p <<= 1;
    return p;
}

uint32_t bucket_count(uint32_t capacity) {
    return round_up_pow2(capacity < 4 ? 8 : capacity * 2);
}

size_t header_bytes() {
    return (sizeof(KeyTableHeader) + alignof(KeyEntry) - 1) / alignof(KeyEntry) * alignof(KeyEntry);
}

}  // namespace

size_t KeyTable::bytes_needed(uint32_t capacity) noexcept {
    return header_bytes() + sizeof(KeyEntry) * bucket_count(capacity);
}

KeyTable::KeyTable(void *region, uint32_t capacity, bool initialize) noexcept
    : header_(static_cast<KeyTableHeader *>(region)),
      entries_(reinterpret_cast<KeyEntry *>(static_cast<char *>(region) + header_bytes())) {
    if (!initialize) return;
    const uint32_t buckets = bucket_count(capacity);
    new (header_) KeyTableHeader{};
    header_->capacity = capacity;
    header_->buckets = buckets;
    header_->generation.store(1, std::memory_order_relaxed);
    for (uint32_t i = 0; i < buckets; ++i) {
        KeyEntry *e = new (&entries_[i]) KeyEntry{};
        e->encryptions.store(0, std::memory_order_relaxed);
        e->reserved.store(0, std::memory_order_relaxed);
    }
}

uint32_t KeyTable::home(uint32_t database, const DekId &id) const noexcept {
    // DEK ids are random UUIDs: their bytes are already uniformly distributed.
    uint32_t h;
    std::memcpy(&h, id.data() + 12, sizeof h);
    h ^= database * 0x9E3779B1u;
    return h & (header_->buckets - 1);
}

int KeyTable::find(uint32_t database, const DekId &id) const noexcept {
    const uint32_t mask = header_->buckets - 1;
    for (uint32_t i = home(database, id), n = 0; n < header_->buckets; i = (i + 1) & mask, ++n) {
        const KeyEntry &s = entries_[i];
        if (s.occupancy == Occupancy::empty) return -1;
        if (s.occupancy == Occupancy::live && s.database == database && s.id == id) {
            return static_cast<int>(i);
        }
    }
    return -1;
}

void KeyTable::bump() noexcept {
    header_->generation.fetch_add(1, std::memory_order_acq_rel);
}

KeyTable::InsertResult KeyTable::insert(uint32_t database, const DekId &id,
                                        const uint8_t key[kDekSize], KeyUse use,
                                        uint64_t encryptions, int *index) noexcept {
    int found = find(database, id);
    if (found >= 0) {
        KeyEntry &s = entries_[found];
        std::memcpy(s.key, key, sizeof s.key);
        s.use = use;
        s.change_count++;
        if (encryptions > s.encryptions.load(std::memory_order_relaxed)) {
            s.encryptions.store(encryptions, std::memory_order_relaxed);
        }
        if (encryptions > s.reserved.load(std::memory_order_relaxed)) {
            s.reserved.store(encryptions, std::memory_order_relaxed);
        }
        bump();
        if (index) *index = found;
        return InsertResult::replaced;
    }
    if (header_->used >= header_->capacity) return InsertResult::full;
    if (header_->used + header_->tombstones + 1 > header_->buckets * 3 / 4) rebuild();

    const uint32_t mask = header_->buckets - 1;
    uint32_t i = home(database, id);
    while (entries_[i].occupancy == Occupancy::live) i = (i + 1) & mask;
    KeyEntry &s = entries_[i];
    if (s.occupancy == Occupancy::tombstone) header_->tombstones--;
    s.database = database;
    s.id = id;
    std::memcpy(s.key, key, sizeof s.key);
    s.change_count++;
    s.encryptions.store(encryptions, std::memory_order_relaxed);
    s.reserved.store(encryptions, std::memory_order_relaxed);  // the seed came from disk
    s.use = use;
    s.occupancy = Occupancy::live;
    header_->used++;
    bump();
    if (index) *index = static_cast<int>(i);
    return InsertResult::inserted;
}

bool KeyTable::set_use(uint32_t database, const DekId &id, KeyUse use) noexcept {
    int found = find(database, id);
    if (found < 0) return false;
    entries_[found].use = use;
    entries_[found].change_count++;
    bump();
    return true;
}

bool KeyTable::remove(uint32_t database, const DekId &id) noexcept {
    int found = find(database, id);
    if (found < 0) return false;
    KeyEntry &s = entries_[found];
    secure_zero(s.key, sizeof s.key);
    s.occupancy = Occupancy::tombstone;
    s.change_count++;
    header_->used--;
    header_->tombstones++;
    bump();
    return true;
}

uint32_t KeyTable::remove_database(uint32_t database) noexcept {
    uint32_t removed = 0;
    for (uint32_t i = 0; i < header_->buckets; ++i) {
        KeyEntry &s = entries_[i];
        if (s.occupancy == Occupancy::live && s.database == database) {
            secure_zero(s.key, sizeof s.key);
            s.occupancy = Occupancy::tombstone;
            s.change_count++;
            header_->used--;
            header_->tombstones++;
            ++removed;
        }
    }
    if (removed) bump();
    return removed;
}

void KeyTable::clear() noexcept {
    for (uint32_t i = 0; i < header_->buckets; ++i) {
        KeyEntry &s = entries_[i];
        secure_zero(s.key, sizeof s.key);
        s.occupancy = Occupancy::empty;
        s.change_count++;
        s.encryptions.store(0, std::memory_order_relaxed);
        s.reserved.store(0, std::memory_order_relaxed);
    }
    header_->used = 0;
    header_->tombstones = 0;
    bump();
}

uint32_t KeyTable::count_database(uint32_t database) const noexcept {
    uint32_t n = 0;
    for (uint32_t i = 0; i < header_->buckets; ++i) {
        const KeyEntry &s = entries_[i];
        if (s.occupancy == Occupancy::live && s.database == database) ++n;
    }
    return n;
}

// Re-inserts live keys in place so probe chains no longer run over tombstones. Runs under the
// exclusive lock; readers are excluded, so moving entries is safe.
void KeyTable::rebuild() noexcept {
    const uint32_t mask = header_->buckets - 1;
    // Turn tombstones into holes, then move each live entry to the earliest free bucket of its
    // chain.
    for (uint32_t i = 0; i < header_->buckets; ++i) {
        if (entries_[i].occupancy == Occupancy::tombstone) entries_[i].occupancy = Occupancy::empty;
    }
    header_->tombstones = 0;
    // Robin-hood style repair: re-place every live entry whose chain now has a hole.
    bool moved = true;
    while (moved) {
        moved = false;
        for (uint32_t i = 0; i < header_->buckets; ++i) {
            KeyEntry &s = entries_[i];
            if (s.occupancy != Occupancy::live) continue;
            uint32_t j = home(s.database, s.id);
            while (j != i && entries_[j].occupancy == Occupancy::live) j = (j + 1) & mask;
            if (j == i) continue;
            KeyEntry &d = entries_[j];
            d.database = s.database;
            d.id = s.id;
            std::memcpy(d.key, s.key, sizeof d.key);
            d.change_count = s.change_count + 1;
            d.encryptions.store(s.encryptions.load(std::memory_order_relaxed),
                                std::memory_order_relaxed);
            d.reserved.store(s.reserved.load(std::memory_order_relaxed), std::memory_order_relaxed);
            d.use = s.use;
            d.occupancy = Occupancy::live;
            secure_zero(s.key, sizeof s.key);
            s.occupancy = Occupancy::empty;
            s.change_count++;
            moved = true;
        }
    }
    bump();
}

}  // namespace envelope
