// The shared DEK cache (see key_cache.hpp). cache lock: shared for lookups, exclusive for
// changes. The region is kept out of core dumps and locked in RAM where the OS allows.
#include "shmem/key_cache.hpp"
#include "shmem/shmem.hpp"

#include "hkdf.hpp"

#include <new>

namespace envelope::pg {

int max_keys_setting = 1024;

namespace {

alignas(envelope::KeyTable) unsigned char table_storage[sizeof(envelope::KeyTable)];
envelope::KeyTable *table = nullptr;

uint32 capacity_setting() {
    return static_cast<uint32>(max_keys_setting);
}

LWLock *cache_lock() {
    return shared_lock(SharedLock::key_cache);
}

// Runs fn(table) under the cache lock in the given mode.
template <typename Fn>
auto with_cache(LWLockMode mode, Fn &&fn) {
    LWLockAcquire(cache_lock(), mode);
    auto result = fn(*table);
    LWLockRelease(cache_lock());
    return result;
}

}  // namespace

Size key_cache_shmem_size() {
    return envelope::KeyTable::bytes_needed(capacity_setting());
}

void key_cache_shmem_attach() {
    bool found = false;
    void *region = ShmemInitStruct("pg_envelope key cache", key_cache_shmem_size(), &found);
    table = new (table_storage) envelope::KeyTable(region, capacity_setting(), !found);
    if (!found) protect_secret_pages(region, key_cache_shmem_size(), "key cache");
}

uint64 key_cache_generation() {
    return table->generation();
}

bool key_cache_contains(Oid database, const DekId &id) {
    return with_cache(LW_SHARED, [&](envelope::KeyTable &t) { return t.find(database, id) >= 0; });
}

bool key_cache_install(Oid database, const DekId &id, const uint8 key[envelope::kDekSize],
                       KeyUse use, uint64 encryptions_so_far) {
    return with_cache(LW_EXCLUSIVE, [&](envelope::KeyTable &t) {
        return t.insert(database, id, key, use, encryptions_so_far, nullptr) !=
               envelope::KeyTable::InsertResult::full;
    });
}

void key_cache_forget(Oid database, const DekId &id) {
    with_cache(LW_EXCLUSIVE, [&](envelope::KeyTable &t) { return t.remove(database, id); });
}

void key_cache_forget_database(Oid database) {
    with_cache(LW_EXCLUSIVE, [&](envelope::KeyTable &t) { return t.remove_database(database); });
}

namespace {

// Keys a session's context (cipher or tagger: both have ready/reset/init(key), all noexcept)
// from the cache entry when the entry changed since `known`; resets it if the key is gone.
template <typename Context>
bool key_context(Oid database, const DekId &id, CachedKeyState &known, Context &context) {
    bool ok = with_cache(LW_SHARED, [&](envelope::KeyTable &t) {
        int index = t.find(database, id);
        if (index < 0) return false;
        const envelope::KeyEntry &e = t.entry(index);
        known.use = e.use;
        if (e.change_count == known.change_count && context.ready()) return true;
        known.change_count = e.change_count;
        context.reset();
        return context.init(e.key);  // noexcept: no C++ exception under the lock
    });
    if (!ok) context.reset();
    return ok;
}

}  // namespace

bool key_cache_key_cipher(Oid database, const DekId &id, CachedKeyState &known,
                          envelope::AesGcmKey &cipher) {
    return key_context(database, id, known, cipher);
}

bool key_cache_key_tagger(Oid database, const DekId &id, CachedKeyState &known,
                          envelope::TagKey &tagger) {
    return key_context(database, id, known, tagger);
}

SealCount key_cache_count_encryption(Oid database, const DekId &id) {
    // Under the shared lock: entries move only under the exclusive one.
    return with_cache(LW_SHARED, [&](envelope::KeyTable &t) -> SealCount {
        int index = t.find(database, id);
        if (index < 0) return SealCount{false, 0, 0};
        envelope::KeyEntry &e = t.entry(index);
        const uint64 n = e.encryptions.fetch_add(1, std::memory_order_relaxed) + 1;
        return SealCount{true, n, e.reserved.load(std::memory_order_acquire)};
    });
}

uint64 key_cache_reserved(Oid database, const DekId &id) {
    return with_cache(LW_SHARED, [&](envelope::KeyTable &t) -> uint64 {
        int index = t.find(database, id);
        return index < 0 ? 0 : t.entry(index).reserved.load(std::memory_order_acquire);
    });
}

void key_cache_raise_reserved(Oid database, const DekId &id, uint64 to) {
    with_cache(LW_SHARED, [&](envelope::KeyTable &t) {
        int index = t.find(database, id);
        if (index < 0) return false;
        std::atomic<uint64_t> &r = t.entry(index).reserved;
        uint64_t seen = r.load(std::memory_order_relaxed);
        while (seen < to && !r.compare_exchange_weak(seen, to, std::memory_order_release)) {
        }
        return true;
    });
}

int64 key_cache_encryptions(Oid database, const DekId &id) {
    return with_cache(LW_SHARED, [&](envelope::KeyTable &t) -> int64 {
        int index = t.find(database, id);
        if (index < 0) return -1;
        return static_cast<int64>(t.entry(index).encryptions.load(std::memory_order_relaxed));
    });
}

bool key_cache_check_value(Oid database, const DekId &id, char out[17], bool *ok) {
    return with_cache(LW_SHARED, [&](envelope::KeyTable &t) {
        int index = t.find(database, id);
        if (index < 0) return false;
        *ok = envelope::key_check_value(t.entry(index).key, out);
        return true;
    });
}

KeyCacheCounts key_cache_counts(Oid database) {
    return with_cache(LW_SHARED, [&](envelope::KeyTable &t) {
        return KeyCacheCounts{static_cast<int>(t.count_database(database)),
                              static_cast<int>(t.used()), static_cast<int>(t.capacity())};
    });
}

int key_cache_copy_counts(CachedKeyCount *out, int room) {
    return with_cache(LW_SHARED, [&](envelope::KeyTable &t) {
        int n = 0;
        for (uint32 i = 0; i < t.buckets() && n < room; ++i) {
            const envelope::KeyEntry &e = t.entry(static_cast<int>(i));
            if (e.occupancy != envelope::Occupancy::live) continue;
            out[n++] =
                CachedKeyCount{e.database, e.id, e.encryptions.load(std::memory_order_relaxed)};
        }
        return n;
    });
}

int key_cache_capacity() {
    return static_cast<int>(capacity_setting());
}

}  // namespace envelope::pg
