// Open-addressing hash table of DEKs over caller-provided (shared) memory.
#include "key_table.hpp"
#include "secure_buffer.hpp"

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
    return (sizeof(KeyTableHeader) + alignof(KeySlot) - 1) / alignof(KeySlot) * alignof(KeySlot);
}

}  // namespace

size_t KeyTable::bytes_needed(uint32_t capacity) noexcept {
    return header_bytes() + sizeof(KeySlot) * bucket_count(capacity);
}

KeyTable::KeyTable(void *region, uint32_t capacity, bool initialize) noexcept
    : header_(static_cast<KeyTableHeader *>(region)),
      slots_(reinterpret_cast<KeySlot *>(static_cast<char *>(region) + header_bytes())) {
    if (!initialize) return;
    const uint32_t buckets = bucket_count(capacity);
    new (header_) KeyTableHeader{};
    header_->capacity = capacity;
    header_->buckets = buckets;
    header_->generation.store(1, std::memory_order_relaxed);
    for (uint32_t i = 0; i < buckets; ++i) {
        KeySlot *s = new (&slots_[i]) KeySlot{};
        s->encryptions.store(0, std::memory_order_relaxed);
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
        const KeySlot &s = slots_[i];
        if (s.state == KeyState::empty) return -1;
        if (s.state != KeyState::tombstone && s.database == database && s.id == id) {
            return static_cast<int>(i);
        }
    }
    return -1;
}

void KeyTable::bump() noexcept {
    header_->generation.fetch_add(1, std::memory_order_acq_rel);
}

KeyTable::InsertResult KeyTable::insert(uint32_t database, const DekId &id, const uint8_t key[32],
                                        KeyState state, uint64_t encryptions, int *index) noexcept {
    int found = find(database, id);
    if (found >= 0) {
        KeySlot &s = slots_[found];
        std::memcpy(s.key, key, sizeof s.key);
        s.state = state;
        s.version++;
        if (encryptions > s.encryptions.load(std::memory_order_relaxed)) {
            s.encryptions.store(encryptions, std::memory_order_relaxed);
        }
        bump();
        if (index) *index = found;
        return InsertResult::replaced;
    }
    if (header_->used >= header_->capacity) return InsertResult::full;
    if (header_->used + header_->tombstones + 1 > header_->buckets * 3 / 4) rebuild();

    const uint32_t mask = header_->buckets - 1;
    uint32_t i = home(database, id);
    while (slots_[i].state == KeyState::active || slots_[i].state == KeyState::decrypt_only) {
        i = (i + 1) & mask;
    }
    KeySlot &s = slots_[i];
    if (s.state == KeyState::tombstone) header_->tombstones--;
    s.database = database;
    s.id = id;
    std::memcpy(s.key, key, sizeof s.key);
    s.version++;
    s.encryptions.store(encryptions, std::memory_order_relaxed);
    s.state = state;
    header_->used++;
    bump();
    if (index) *index = static_cast<int>(i);
    return InsertResult::inserted;
}

bool KeyTable::set_state(uint32_t database, const DekId &id, KeyState state) noexcept {
    int found = find(database, id);
    if (found < 0) return false;
    slots_[found].state = state;
    slots_[found].version++;
    bump();
    return true;
}

bool KeyTable::remove(uint32_t database, const DekId &id) noexcept {
    int found = find(database, id);
    if (found < 0) return false;
    KeySlot &s = slots_[found];
    secure_zero(s.key, sizeof s.key);
    s.state = KeyState::tombstone;
    s.version++;
    header_->used--;
    header_->tombstones++;
    bump();
    return true;
}

uint32_t KeyTable::remove_database(uint32_t database) noexcept {
    uint32_t removed = 0;
    for (uint32_t i = 0; i < header_->buckets; ++i) {
        KeySlot &s = slots_[i];
        if ((s.state == KeyState::active || s.state == KeyState::decrypt_only) &&
            s.database == database) {
            secure_zero(s.key, sizeof s.key);
            s.state = KeyState::tombstone;
            s.version++;
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
        KeySlot &s = slots_[i];
        secure_zero(s.key, sizeof s.key);
        s.state = KeyState::empty;
        s.version++;
        s.encryptions.store(0, std::memory_order_relaxed);
    }
    header_->used = 0;
    header_->tombstones = 0;
    bump();
}

uint32_t KeyTable::count_database(uint32_t database) const noexcept {
    uint32_t n = 0;
    for (uint32_t i = 0; i < header_->buckets; ++i) {
        const KeySlot &s = slots_[i];
        if ((s.state == KeyState::active || s.state == KeyState::decrypt_only) &&
            s.database == database) {
            ++n;
        }
    }
    return n;
}

// Re-inserts live keys in place so probe chains no longer run over tombstones. Runs under the
// exclusive lock; readers are excluded, so moving slots is safe.
void KeyTable::rebuild() noexcept {
    const uint32_t mask = header_->buckets - 1;
    // Mark every live slot, then move each to its earliest free position in its chain.
    for (uint32_t i = 0; i < header_->buckets; ++i) {
        if (slots_[i].state == KeyState::tombstone) {
            slots_[i].state = KeyState::empty;
        }
    }
    header_->tombstones = 0;
    // Robin-hood style repair: re-place every live entry whose chain now has a hole.
    bool moved = true;
    while (moved) {
        moved = false;
        for (uint32_t i = 0; i < header_->buckets; ++i) {
            KeySlot &s = slots_[i];
            if (s.state != KeyState::active && s.state != KeyState::decrypt_only) continue;
            uint32_t j = home(s.database, s.id);
            while (j != i && (slots_[j].state == KeyState::active ||
                              slots_[j].state == KeyState::decrypt_only)) {
                j = (j + 1) & mask;
            }
            if (j == i) continue;
            KeySlot &d = slots_[j];
            d.database = s.database;
            d.id = s.id;
            std::memcpy(d.key, s.key, sizeof d.key);
            d.version = s.version + 1;
            d.encryptions.store(s.encryptions.load(std::memory_order_relaxed),
                                std::memory_order_relaxed);
            d.state = s.state;
            secure_zero(s.key, sizeof s.key);
            s.state = KeyState::empty;
            s.version++;
            moved = true;
        }
    }
    bump();
}

}  // namespace envelope
