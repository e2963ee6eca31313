// Per-session cipher contexts (see cipher_cache.hpp). Static storage: these C++ objects never
// live on a stack an ERROR could unwind.
#include "session/cipher_cache.hpp"

namespace envelope::pg {

namespace {

constexpr int kLocalCiphers = 64;
LocalCipher local[kLocalCiphers];
LocalCipher *last_hit = nullptr;
uint64 use_clock = 0;

LocalCipher *find_local(const envelope::DekId &id) {
    if (last_hit && last_hit->used && last_hit->database == MyDatabaseId && last_hit->id == id)
        return last_hit;
    for (auto &k : local) {
        if (k.used && k.database == MyDatabaseId && k.id == id) return &k;
    }
    return nullptr;
}

// Refreshes an entry from the shared cache. False (and the entry freed) if no longer cached.
bool revalidate(LocalCipher &k, uint64 generation) {
    if (!key_cache_key_cipher(k.database, k.id, k.known, k.cipher)) {
        k.used = false;
        return false;
    }
    k.checked_generation = generation;
    return true;
}

LocalCipher *install_local(const envelope::DekId &id, uint64 generation) {
    LocalCipher *victim = nullptr;
    for (auto &k : local) {
        if (!k.used) {
            victim = &k;
            break;
        }
        if (victim == nullptr || k.last_use < victim->last_use) victim = &k;
    }
    victim->cipher.reset();
    victim->used = true;
    victim->nonce_warned = false;
    victim->name_known = false;
    victim->index_key = false;
    victim->version = 0;
    victim->usage_slot = 0;
    victim->privileges = PrivilegeDecisions{InvalidOid, 0, {false, false}};
    victim->database = MyDatabaseId;
    victim->id = id;
    victim->known = CachedKeyState{0, envelope::KeyUse::active};
    if (!revalidate(*victim, generation)) return nullptr;
    return victim;
}

}  // namespace

void cipher_cache_forget_decisions() {
    for (auto &k : local) k.privileges.role = InvalidOid;
}

LocalCipher *cipher_cache_lookup(const envelope::DekId &id) {
    const uint64 generation = key_cache_generation();
    LocalCipher *k = find_local(id);
    if (k && k->checked_generation != generation && !revalidate(*k, generation)) k = nullptr;
    if (!k) k = install_local(id, generation);
    if (k) {
        k->last_use = ++use_clock;
        last_hit = k;
    }
    return k;
}

}  // namespace envelope::pg
