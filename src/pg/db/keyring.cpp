// Keyring reads through genam (see keyring.hpp).
#include "db/keyring.hpp"

#include "hex.hpp"

extern "C" {
#include "access/genam.h"
#include "access/skey.h"
#include "catalog/dependency.h"
#include "catalog/index.h"
#include "catalog/pg_collation.h"
#include "utils/fmgroids.h"
#include "utils/acl.h"
#include "utils/rel.h"
}

#include <cstring>

namespace envelope::pg {

namespace {

// The keyring's relations in this database, looked up once per session and verified to be
// members of the extension (a same-named table of a user's is never read as the keyring).
struct KeyringRelations {
    Oid database = InvalidOid;
    Oid table = InvalidOid;
    Oid by_id = InvalidOid;          // keyring_pkey (id)
    Oid by_name = InvalidOid;        // keyring_name_idx (name, version)
    Oid grants = InvalidOid;         // key_privileges (absent before 0.2.0)
    Oid grants_by_key = InvalidOid;  // key_privileges_pkey (key_name, grantee, privilege)
};
KeyringRelations relations;
bool callback_registered = false;

constexpr int kNames = 16;
struct NameEntry {
    bool used;
    Oid database;
    char name[kKeyNameBytes];
    envelope::DekId id;
    bool index_key;
};
NameEntry names[kNames];
int next_name = 0;
// Set when the keyring may have changed. Starts set: on a standby, keys destroyed on the
// primary may still sit in the shared cache (replay runs no triggers).
bool keyring_changed = true;
uint64 grants_epoch = 1;

// Relcache callback. While the relations are not looked up (after a reset), any invalidation
// counts as ours: the grants' relid is then unknown, and missing a revocation is not an option.
void forget_keyring_state(Datum, Oid relid) {
    const bool ours = relid == InvalidOid || !OidIsValid(relations.table) ||
                      relid == relations.table || relid == relations.grants;
    if (!ours) return;
    grants_epoch++;
    for (auto &n : names) n.used = false;
    relations = KeyringRelations{};
    keyring_changed = true;
}

Oid member_table(Oid nsp, const char *name, Oid extension) {
    Oid rel = get_relname_relid(name, nsp);
    if (!OidIsValid(rel) || getExtensionOfObject(RelationRelationId, rel) != extension)
        return InvalidOid;
    return rel;
}

Oid index_of(Oid nsp, const char *name, Oid table) {
    Oid index = get_relname_relid(name, nsp);
    if (!OidIsValid(index) || IndexGetRelation(index, true) != table) return InvalidOid;
    return index;
}

bool look_up_relations() {
    if (!callback_registered) {
        CacheRegisterRelcacheCallback(forget_keyring_state, 0);
        callback_registered = true;
    }
    if (relations.database == MyDatabaseId && OidIsValid(relations.table)) return true;
    relations = KeyringRelations{};
    Oid extension = get_extension_oid("pg_envelope", true);
    Oid nsp = OidIsValid(extension) ? get_namespace_oid("envelope", true) : InvalidOid;
    if (!OidIsValid(nsp)) return false;
    KeyringRelations found;
    found.table = member_table(nsp, "keyring", extension);
    found.by_id = index_of(nsp, "keyring_pkey", found.table);
    found.by_name = index_of(nsp, "keyring_name_idx", found.table);
    if (!OidIsValid(found.table) || !OidIsValid(found.by_id) || !OidIsValid(found.by_name))
        return false;
    found.grants = member_table(nsp, "key_privileges", extension);
    if (OidIsValid(found.grants)) {
        found.grants_by_key = index_of(nsp, "key_privileges_pkey", found.grants);
        if (!OidIsValid(found.grants_by_key)) found.grants = InvalidOid;
    }
    found.database = MyDatabaseId;
    relations = found;
    return true;
}

void require_relations() {
    if (look_up_relations()) return;
    ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                    errmsg("extension pg_envelope is not installed in this database"),
                    errhint("Run CREATE EXTENSION pg_envelope;")));
}

// Attribute numbers of the keyring's columns, by name (never by position).
// purpose exists from 0.3.0 on (InvalidAttrNumber before: every key is a data key).
struct Columns {
    AttrNumber id, name, version, state, wrapped, purpose, kek_label;
};

AttrNumber optional_column(TupleDesc desc, const char *column) {
    for (int i = 0; i < desc->natts; ++i) {
        Form_pg_attribute a = TupleDescAttr(desc, i);
        if (!a->attisdropped && strcmp(NameStr(a->attname), column) == 0) return a->attnum;
    }
    return InvalidAttrNumber;
}

Columns columns_of(TupleDesc desc) {
    return Columns{extension_column(desc, "keyring", "id"),
                   extension_column(desc, "keyring", "name"),
                   extension_column(desc, "keyring", "version"),
                   extension_column(desc, "keyring", "state"),
                   extension_column(desc, "keyring", "wrapped_dek"),
                   optional_column(desc, "purpose"),
                   extension_column(desc, "keyring", "kek_label")};
}

KeyringState parse_state(const char *s) {
    if (strcmp(s, "active") == 0) return KeyringState::active;
    if (strcmp(s, "decrypt_only") == 0) return KeyringState::decrypt_only;
    return KeyringState::destroyed;
}

// The latest committed state of a row (plus this transaction's own changes), never what an
// older snapshot of the caller shows: a fresh MVCC snapshot, or inside a parallel operation
// (which cannot take one) SnapshotSelf, which judges each row by its current commit status.
Snapshot latest_state_snapshot() {
    return IsInParallelMode() ? SnapshotSelf : RegisterSnapshot(GetLatestSnapshot());
}

void release_snapshot(Snapshot snapshot) {
    if (snapshot != SnapshotSelf) UnregisterSnapshot(snapshot);
}

enum class ScanBy { everything, id, name };

// One scan of the keyring under the latest snapshot: fn(tuple, desc, columns) for each row
// that matches the optional key (on the id or the name index); fn returns false to stop.
template <typename Fn>
void scan_keyring(ScanBy by, ScanKey key, Fn &&fn) {
    // A copy: opening the table may process invalidations that reset `relations`.
    const KeyringRelations rels = relations;
    Relation rel = table_open(rels.table, AccessShareLock);
    TupleDesc desc = RelationGetDescr(rel);
    Columns cols = columns_of(desc);
    Oid index = InvalidOid;
    int nkeys = 0;
    if (by != ScanBy::everything) {
        index = by == ScanBy::id ? rels.by_id : rels.by_name;
        key->sk_attno = by == ScanBy::id ? cols.id : cols.name;
        nkeys = 1;
    }
    Snapshot snapshot = latest_state_snapshot();
    SysScanDesc scan = systable_beginscan(rel, index, OidIsValid(index), snapshot, nkeys, key);
    HeapTuple tuple;
    while (HeapTupleIsValid(tuple = systable_getnext(scan))) {
        if (!fn(tuple, desc, cols)) break;
    }
    systable_endscan(scan);
    release_snapshot(snapshot);
    table_close(rel, AccessShareLock);
}

envelope::DekId id_of(HeapTuple t, TupleDesc d, const Columns &c) {
    bool isnull;
    envelope::DekId id{};
    Datum v = heap_getattr(t, c.id, d, &isnull);
    if (!isnull) memcpy(id.data(), DatumGetUUIDP(v)->data, UUID_LEN);
    return id;
}

char *text_of(HeapTuple t, TupleDesc d, AttrNumber n) {
    bool isnull;
    Datum v = heap_getattr(t, n, d, &isnull);
    return isnull ? pstrdup("") : TextDatumGetCString(v);
}

bool is_index_key(HeapTuple t, TupleDesc d, const Columns &c) {
    if (c.purpose == InvalidAttrNumber) return false;
    return strcmp(text_of(t, d, c.purpose), "index") == 0;
}

}  // namespace

int keyring_grantees(const char *key_name, const char *privilege, Oid *out, int room) {
    require_relations();
    const KeyringRelations rels = relations;
    if (!OidIsValid(rels.grants)) return -1;
    Relation rel = table_open(rels.grants, AccessShareLock);
    TupleDesc desc = RelationGetDescr(rel);
    const AttrNumber key_att = extension_column(desc, "key_privileges", "key_name");
    const AttrNumber grantee_att = extension_column(desc, "key_privileges", "grantee");
    const AttrNumber privilege_att = extension_column(desc, "key_privileges", "privilege");
    ScanKeyData key;
    ScanKeyEntryInitialize(&key, 0, key_att, BTEqualStrategyNumber, InvalidOid,
                           DEFAULT_COLLATION_OID, F_TEXTEQ, CStringGetTextDatum(key_name));
    Snapshot snapshot = latest_state_snapshot();
    SysScanDesc scan = systable_beginscan(rel, rels.grants_by_key, true, snapshot, 1, &key);
    int n = 0;
    HeapTuple t;
    while (HeapTupleIsValid(t = systable_getnext(scan)) && n < room) {
        if (strcmp(text_of(t, desc, privilege_att), privilege) != 0) continue;
        bool isnull;
        Datum g = heap_getattr(t, grantee_att, desc, &isnull);
        if (isnull) continue;
        Oid role = get_role_oid(NameStr(*DatumGetName(g)), true);
        if (OidIsValid(role)) out[n++] = role;
    }
    systable_endscan(scan);
    release_snapshot(snapshot);
    table_close(rel, AccessShareLock);
    return n;
}

uint64 keyring_grants_epoch() {
    if (!callback_registered) (void)look_up_relations();
    return grants_epoch;
}

AttrNumber extension_column(TupleDesc desc, const char *table, const char *column) {
    for (int i = 0; i < desc->natts; ++i) {
        Form_pg_attribute a = TupleDescAttr(desc, i);
        if (!a->attisdropped && strcmp(NameStr(a->attname), column) == 0) return a->attnum;
    }
    ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED),
                    errmsg("envelope.%s lacks column \"%s\"", table, column),
                    errhint("The extension's schema was changed by hand; reinstall it from "
                            "a backup.")));
}

KeyringRow keyring_read(const envelope::DekId &id) {
    require_relations();
    KeyringRow row{};
    pg_uuid_t uuid;
    memcpy(uuid.data, id.data(), UUID_LEN);
    ScanKeyData key;
    ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_UUID_EQ, UUIDPGetDatum(&uuid));
    MemoryContext caller = CurrentMemoryContext;
    scan_keyring(ScanBy::id, &key, [&](HeapTuple t, TupleDesc d, const Columns &c) {
        bool isnull;
        row.found = true;
        char *state = text_of(t, d, c.state);
        row.state = parse_state(state);
        char *name = text_of(t, d, c.name);
        strlcpy(row.name, name, sizeof row.name);
        row.version = DatumGetInt32(heap_getattr(t, c.version, d, &isnull));
        row.index_key = is_index_key(t, d, c);
        strlcpy(row.kek_label, text_of(t, d, c.kek_label), sizeof row.kek_label);
        Datum w = heap_getattr(t, c.wrapped, d, &isnull);
        if (!isnull) {
            MemoryContext old = MemoryContextSwitchTo(caller);
            row.wrapped = DatumGetByteaPCopy(w);
            MemoryContextSwitchTo(old);
        }
        return false;  // ids are unique
    });
    return row;
}

bool keyring_find_active(const char *name, envelope::DekId &out, bool *index_key) {
    require_relations();
    const bool cacheable = strlen(name) < sizeof names[0].name;
    if (cacheable) {
        for (const auto &n : names) {
            if (n.used && n.database == MyDatabaseId && strcmp(n.name, name) == 0) {
                out = n.id;
                if (index_key) *index_key = n.index_key;
                return true;
            }
        }
    }
    ScanKeyData key;
    ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid, DEFAULT_COLLATION_OID,
                           F_TEXTEQ, CStringGetTextDatum(name));
    bool found = false;
    bool found_index_key = false;
    int best_version = 0;
    scan_keyring(ScanBy::name, &key, [&](HeapTuple t, TupleDesc d, const Columns &c) {
        char *state = text_of(t, d, c.state);
        if (parse_state(state) != KeyringState::active) return true;
        bool isnull;
        int version = DatumGetInt32(heap_getattr(t, c.version, d, &isnull));
        if (!found || version > best_version) {
            found = true;
            best_version = version;
            out = id_of(t, d, c);
            found_index_key = is_index_key(t, d, c);
        }
        return true;
    });
    if (found && cacheable) {
        NameEntry &e = names[next_name];
        next_name = (next_name + 1) % kNames;
        e.used = true;
        e.database = MyDatabaseId;
        strlcpy(e.name, name, sizeof e.name);
        e.id = out;
        e.index_key = found_index_key;
    }
    if (index_key) *index_key = found_index_key;
    return found;
}

bool keyring_find_version(const char *name, int version, envelope::DekId &out, bool *index_key) {
    require_relations();
    ScanKeyData key;
    ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid, DEFAULT_COLLATION_OID,
                           F_TEXTEQ, CStringGetTextDatum(name));
    bool found = false;
    scan_keyring(ScanBy::name, &key, [&](HeapTuple t, TupleDesc d, const Columns &c) {
        bool isnull;
        if (DatumGetInt32(heap_getattr(t, c.version, d, &isnull)) != version) return true;
        found = true;
        out = id_of(t, d, c);
        if (index_key) *index_key = is_index_key(t, d, c);
        return false;
    });
    return found;
}

int keyring_destroyed_ids(envelope::DekId **out) {
    require_relations();
    int room = 16, n = 0;
    auto *ids = static_cast<envelope::DekId *>(palloc(sizeof(envelope::DekId) * room));
    scan_keyring(ScanBy::everything, nullptr, [&](HeapTuple t, TupleDesc d, const Columns &c) {
        char *state = text_of(t, d, c.state);
        if (parse_state(state) != KeyringState::destroyed) return true;
        if (n == room) {
            room *= 2;
            ids = static_cast<envelope::DekId *>(repalloc(ids, sizeof(envelope::DekId) * room));
        }
        ids[n++] = id_of(t, d, c);
        return true;
    });
    *out = ids;
    return n;
}

int keyring_loadable_keys(LoadableKey **out) {
    *out = nullptr;
    if (!look_up_relations()) return 0;
    int room = 64, n = 0;
    MemoryContext caller = CurrentMemoryContext;
    auto *keys = static_cast<LoadableKey *>(palloc0(sizeof(LoadableKey) * room));
    scan_keyring(ScanBy::everything, nullptr, [&](HeapTuple t, TupleDesc d, const Columns &c) {
        char *state = text_of(t, d, c.state);
        KeyringState st = parse_state(state);
        bool isnull;
        Datum w = heap_getattr(t, c.wrapped, d, &isnull);
        if (st == KeyringState::destroyed || isnull) return true;
        MemoryContext old = MemoryContextSwitchTo(caller);
        if (n == room) {
            room *= 2;
            keys = static_cast<LoadableKey *>(repalloc(keys, sizeof(LoadableKey) * room));
        }
        LoadableKey &k = keys[n++];
        k.id = id_of(t, d, c);
        k.use =
            st == KeyringState::active ? envelope::KeyUse::active : envelope::KeyUse::decrypt_only;
        k.wrapped = DatumGetByteaPCopy(w);
        int version = DatumGetInt32(heap_getattr(t, c.version, d, &isnull));
        k.description = psprintf("%s (version %d)", text_of(t, d, c.name), version);
        k.kek_label = pstrdup(text_of(t, d, c.kek_label));
        MemoryContextSwitchTo(old);
        return true;
    });
    *out = keys;
    return n;
}

bool keyring_take_change() {
    if (!callback_registered) (void)look_up_relations();
    if (!keyring_changed) return false;
    keyring_changed = false;
    return true;
}

void describe_key(const KeyringRow &row, const envelope::DekId &id, char *out, size_t out_size) {
    char uuid[37];
    envelope::format_uuid(id.data(), uuid);
    snprintf(out, out_size, "key \"%s\" version %d (%s)", row.name, row.version, uuid);
}

}  // namespace envelope::pg
