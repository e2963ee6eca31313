// Backend key access: per-backend keyed cipher contexts validated against the shared cache's
// generation counter (no lock on the hot path), keyring reads as the keyring owner, and
// name -> active key resolution invalidated through relcache callbacks on the keyring.
#include "key_access.hpp"
#include "keeper_client.hpp"
#include "settings.hpp"
#include "shared_state.hpp"

#include "secure_buffer.hpp"

extern "C" {
#include "catalog/pg_class.h"
#include "utils/syscache.h"
}

#include <cstring>

namespace envelope::pg {

namespace {

constexpr int kLocalKeys = 64;
constexpr int kNames = 16;

struct LocalKey {
    uint64 slot_version;
    uint64 checked_generation;
    uint64 last_use;
    envelope::AesGcmKey cipher;
    Oid database;
    int slot;
    envelope::KeyState state;
    envelope::DekId id;
    bool used;
    bool warned;
};

// Static storage: these C++ objects never live on a stack an ERROR could unwind.
LocalKey local_keys[kLocalKeys];
LocalKey *last_hit = nullptr;
uint64 use_clock = 0;

struct NameEntry {
    bool used;
    Oid database;
    char name[NAMEDATALEN];
    envelope::DekId id;
};
NameEntry names[kNames];
int next_name = 0;
bool callback_registered = false;
Oid keyring_relid_cache = InvalidOid;
// Set when the keyring may have changed under us. Starts set: on a standby, keys destroyed on
// the primary may still sit in the shared cache (replay runs no triggers).
bool keyring_changed = true;

void forget_names(Datum, Oid relid) {
    if (relid != InvalidOid && relid != keyring_relid_cache) return;
    for (auto &n : names) n.used = false;
    keyring_relid_cache = InvalidOid;
    keyring_changed = true;
}

Oid keyring_relid() {
    if (!OidIsValid(keyring_relid_cache)) {
        Oid nsp = get_namespace_oid("envelope", true);
        Oid rel = OidIsValid(nsp) ? get_relname_relid("keyring", nsp) : InvalidOid;
        if (!OidIsValid(rel)) {
            ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                            errmsg("extension pg_envelope is not installed in this database"),
                            errhint("Run CREATE EXTENSION pg_envelope;")));
        }
        keyring_relid_cache = rel;
    }
    if (!callback_registered) {
        CacheRegisterRelcacheCallback(forget_names, 0);
        callback_registered = true;
    }
    return keyring_relid_cache;
}

Oid keyring_owner() {
    Oid relid = keyring_relid();
    HeapTuple tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
    if (!HeapTupleIsValid(tp)) elog(ERROR, "cache lookup failed for relation %u", relid);
    Oid owner = reinterpret_cast<Form_pg_class>(GETSTRUCT(tp))->relowner;
    ReleaseSysCache(tp);
    return owner;
}

// Runs a read-only keyring query as the keyring's owner (the table is not readable by PUBLIC).
// Returns SPI_processed; the caller reads SPI_tuptable and must call SPI_finish().
uint64 keyring_query(const char *sql, int nargs, Oid *types, Datum *values, long limit = 1) {
    Oid owner = keyring_owner();
    Oid save_user;
    int save_sec;
    GetUserIdAndSecContext(&save_user, &save_sec);
    bool pushed = false;
    if (!ActiveSnapshotSet()) {
        PushActiveSnapshot(GetTransactionSnapshot());
        pushed = true;
    }
    if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "SPI_connect failed");
    SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
    volatile int rc = 0;
    PG_TRY();
    { rc = SPI_execute_with_args(sql, nargs, types, values, nullptr, true, limit); }
    PG_FINALLY();
    { SetUserIdAndSecContext(save_user, save_sec); }
    PG_END_TRY();
    if (pushed) PopActiveSnapshot();
    if (rc != SPI_OK_SELECT) elog(ERROR, "pg_envelope: keyring query failed (%d)", rc);
    return SPI_processed;
}

LocalKey *find_local(const envelope::DekId &id) {
    if (last_hit && last_hit->used && last_hit->database == MyDatabaseId && last_hit->id == id)
        return last_hit;
    for (auto &k : local_keys) {
        if (k.used && k.database == MyDatabaseId && k.id == id) return &k;
    }
    return nullptr;
}

// Refreshes a local entry from the shared cache. False if the key is no longer cached.
bool revalidate(LocalKey &k, uint64 generation) {
    SharedState *s = shared_state();
    bool ok = true;
    LWLockAcquire(s->cache_lock, LW_SHARED);
    int idx = key_table().find(k.database, k.id);
    if (idx < 0) {
        ok = false;
    } else {
        const envelope::KeySlot &slot = key_table().slot(idx);
        if (slot.version != k.slot_version || idx != k.slot || !k.cipher.ready()) {
            k.cipher.reset();
            ok = k.cipher.init(slot.key);
            k.slot = idx;
            k.slot_version = slot.version;
        }
        k.state = slot.state;
    }
    LWLockRelease(s->cache_lock);
    if (!ok) {
        k.cipher.reset();
        k.used = false;
        return false;
    }
    k.checked_generation = generation;
    return true;
}

// Copies a shared-cache key into a local entry. False if the shared cache lacks it.
LocalKey *install_local(const envelope::DekId &id, uint64 generation) {
    LocalKey *victim = nullptr;
    for (auto &k : local_keys) {
        if (!k.used) {
            victim = &k;
            break;
        }
        if (victim == nullptr || k.last_use < victim->last_use) victim = &k;
    }
    victim->cipher.reset();
    victim->used = true;
    victim->warned = false;
    victim->database = MyDatabaseId;
    victim->id = id;
    victim->slot = -1;
    victim->slot_version = 0;
    if (!revalidate(*victim, generation)) return nullptr;
    return victim;
}

LocalKey *lookup(const envelope::DekId &id) {
    uint64 generation = key_table().generation();
    LocalKey *k = find_local(id);
    if (k && k->checked_generation == generation) {
        // fast path: nothing in the shared cache changed since we last looked
    } else if (k) {
        if (!revalidate(*k, generation)) k = nullptr;
    }
    if (!k) k = install_local(id, generation);
    if (k) {
        k->last_use = ++use_clock;
        last_hit = k;
    }
    return k;
}

KeyHandle handle_of(LocalKey *k) {
    return KeyHandle{&k->cipher, k->slot, k->id};
}

// Evicts cached keys whose keyring rows are destroyed, once after each keyring change. On a
// primary destroy_key() already evicted them at commit; this covers standbys and subscribers,
// where the keyring changes by replay or by an apply worker that fires no triggers.
void sweep_destroyed_keys() {
    keyring_changed = false;
    MemoryContext caller = CurrentMemoryContext;  // SPI_finish() frees SPI's own context
    uint64 n = keyring_query("SELECT id FROM envelope.keyring WHERE state = 'destroyed'", 0,
                             nullptr, nullptr, 0);
    envelope::DekId *ids = static_cast<envelope::DekId *>(
        MemoryContextAlloc(caller, sizeof(envelope::DekId) * Max(n, 1)));
    for (uint64 i = 0; i < n; ++i) {
        bool isnull;
        Datum d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
        memcpy(ids[i].data(), DatumGetUUIDP(d)->data, UUID_LEN);
    }
    SPI_finish();
    SharedState *s = shared_state();
    for (uint64 i = 0; i < n; ++i) {
        LWLockAcquire(s->cache_lock, LW_SHARED);
        bool cached = key_table().find(MyDatabaseId, ids[i]) >= 0;
        LWLockRelease(s->cache_lock);
        if (cached) cache_forget(MyDatabaseId, &ids[i]);
    }
    pfree(ids);
}

}  // namespace

void format_dek_id(const envelope::DekId &id, char out[37]) {
    static const char hex[] = "0123456789abcdef";
    int o = 0;
    for (int i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
        out[o++] = hex[id[i] >> 4];
        out[o++] = hex[id[i] & 15];
    }
    out[o] = '\0';
}

KeyringRow read_keyring_row(const envelope::DekId &id) {
    KeyringRow row{};
    pg_uuid_t uuid;
    memcpy(uuid.data, id.data(), UUID_LEN);
    Oid types[1] = {UUIDOID};
    Datum values[1] = {UUIDPGetDatum(&uuid)};
    MemoryContext caller = CurrentMemoryContext;
    uint64 n = keyring_query(
        "SELECT state, name, version, wrapped_dek FROM envelope.keyring WHERE id = $1", 1, types,
        values);
    if (n > 0) {
        HeapTuple t = SPI_tuptable->vals[0];
        TupleDesc d = SPI_tuptable->tupdesc;
        bool isnull;
        row.found = true;
        strlcpy(row.state, SPI_getvalue(t, d, 1), sizeof row.state);
        strlcpy(row.name, SPI_getvalue(t, d, 2), sizeof row.name);
        row.version = DatumGetInt32(SPI_getbinval(t, d, 3, &isnull));
        Datum w = SPI_getbinval(t, d, 4, &isnull);
        if (!isnull) {
            MemoryContext old = MemoryContextSwitchTo(caller);
            row.wrapped = DatumGetByteaPCopy(w);
            MemoryContextSwitchTo(old);
        }
    }
    SPI_finish();
    return row;
}

void ensure_cached(const envelope::DekId &id) {
    char idtext[37];
    format_dek_id(id, idtext);
    KeyringRow row = read_keyring_row(id);
    if (!row.found) {
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
                        errmsg("key %s does not exist in this database", idtext),
                        errhint("The value was sealed with a key that is not in this database's "
                                "envelope.keyring. When restoring a dump, load the data of "
                                "envelope.keyring before the tables that use it (see the "
                                "README, \"Backup, dump and restore\").")));
    }
    char description[NAMEDATALEN * 2 + 64];
    snprintf(description, sizeof description, "key \"%s\" version %d (%s)", row.name, row.version,
             idtext);
    if (strcmp(row.state, "destroyed") == 0 || row.wrapped == nullptr) {
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("%s has been destroyed", description)));
    }
    UnwrapItem item{};
    item.id = id;
    item.state = strcmp(row.state, "active") == 0 ? envelope::KeyState::active
                                                  : envelope::KeyState::decrypt_only;
    item.wrapped = reinterpret_cast<const uint8 *>(VARDATA_ANY(row.wrapped));
    item.wrapped_len = VARSIZE_ANY_EXHDR(row.wrapped);
    keeper_unwrap(MyDatabaseId, &item, 1);
    raise_key_error(item.error, item.message, description);
}

KeyHandle key_for_decrypt(const envelope::DekId &id) {
    ensure_preloaded();
    if (unlikely(keyring_changed)) sweep_destroyed_keys();
    LocalKey *k = lookup(id);
    if (!k) {
        ensure_cached(id);
        k = lookup(id);
    }
    if (!k) {
        char idtext[37];
        format_dek_id(id, idtext);
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("key %s was removed from the cache while loading it", idtext),
                        errhint("Retry the statement.")));
    }
    return handle_of(k);
}

KeyHandle key_for_encrypt(const char *name) {
    ensure_preloaded();
    if (name == nullptr) name = setting_default_key;
    (void)keyring_relid();  // registers the invalidation callback before we cache names
    NameEntry *hit = nullptr;
    for (auto &n : names) {
        if (n.used && n.database == MyDatabaseId && strcmp(n.name, name) == 0) {
            hit = &n;
            break;
        }
    }
    if (hit == nullptr) {
        Oid types[1] = {TEXTOID};
        Datum values[1] = {CStringGetTextDatum(name)};
        uint64 rows = keyring_query(
            "SELECT id FROM envelope.keyring WHERE name = $1 AND state = 'active' "
            "ORDER BY version DESC, created_at DESC LIMIT 1",
            1, types, values);
        envelope::DekId id{};
        if (rows > 0) {
            bool isnull;
            pg_uuid_t *u = DatumGetUUIDP(
                SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
            memcpy(id.data(), u->data, UUID_LEN);
        }
        SPI_finish();
        if (rows == 0) {
            ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
                            errmsg("key \"%s\" does not exist or has no active version", name),
                            errhint("Create it with envelope.create_key(), or set "
                                    "envelope.default_key to an existing key.")));
        }
        hit = &names[next_name];
        next_name = (next_name + 1) % kNames;
        hit->used = true;
        hit->database = MyDatabaseId;
        strlcpy(hit->name, name, sizeof hit->name);
        hit->id = id;
    }
    KeyHandle h = key_for_decrypt(hit->id);
    return h;
}

void count_encryption(const KeyHandle &key) {
    envelope::KeySlot &slot = key_table().slot(key.slot);
    uint64 n = slot.encryptions.fetch_add(1, std::memory_order_relaxed) + 1;
    if (n < static_cast<uint64>(setting_nonce_warning_threshold)) return;
    LocalKey *k = find_local(key.id);
    if (k == nullptr || k->warned) return;
    k->warned = true;
    char idtext[37];
    format_dek_id(key.id, idtext);
    ereport(WARNING, (errmsg("data key %s has sealed %llu values", idtext,
                             static_cast<unsigned long long>(n)),
                      errdetail("Random 96-bit nonces allow about 2^32 encryptions per key; "
                                "envelope.nonce_warning_threshold is %d.",
                                setting_nonce_warning_threshold),
                      errhint("Rotate the key with envelope.rotate_key().")));
}

}  // namespace envelope::pg
