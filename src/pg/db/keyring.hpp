// Every read of envelope.keyring, and name -> key resolution. Runs in any process connected to
// a database (sessions, loaders). Reads go straight through the table and its indexes (genam):
// no SQL is parsed and no role is assumed, so nothing the caller controls (search_path,
// operators, GUCs, role or database settings) can change what runs. Reads use the latest
// committed state (plus the caller's own changes), also in parallel workers.
#pragma once
#include "boundary/pg_includes.hpp"

#include "envelope_format.hpp"
#include "key_table.hpp"

namespace envelope::pg {

enum class KeyringState { active, decrypt_only, destroyed };

// Key names are 1 to 63 characters; in UTF-8 that is at most 252 bytes.
constexpr int kKeyNameBytes = 256;

struct KeyringRow {
    bool found;
    KeyringState state;
    char name[kKeyNameBytes];
    int version;
    bool index_key;      // purpose 'index' (0.3.0): keys tags, never seals or opens a value
    bytea *wrapped;      // palloc'd in the caller's context; nullptr once destroyed
    char kek_label[64];  // the KEK that wrapped it (a KEK rotation moves rows to another)
};

// The keyring row of a DEK id.
KeyringRow keyring_read(const envelope::DekId &id);

// The DEK id of the active version of a named key. False if there is none. Resolutions are
// cached per session (compared on the full name) and dropped on every keyring change.
// index_key (optional) receives whether the key is an index key (purpose 'index').
bool keyring_find_active(const char *name, envelope::DekId &out, bool *index_key = nullptr);

// The DEK id of one version of a named key (any state). False if there is none. index_key
// (optional) receives whether the key is an index key.
bool keyring_find_version(const char *name, int version, envelope::DekId &out,
                          bool *index_key = nullptr);

// Ids of destroyed key versions, palloc'd in the current context.
int keyring_destroyed_ids(envelope::DekId **out);

// Keys a loader hands to the keeper at start-up, palloc'd in the current context.
struct LoadableKey {
    envelope::DekId id;
    envelope::KeyUse use;
    bytea *wrapped;
    char *description;  // "name (version N)" for messages
    char *kek_label;    // the KEK that wrapped it
};
int keyring_loadable_keys(LoadableKey **out);

// True once after each change of the keyring seen by this session (and at session start).
bool keyring_take_change();

// Roles granted `privilege` ("encrypt" or "decrypt") on key `key_name`, from
// envelope.key_privileges (grantees are stored by role name; names that no longer exist are
// skipped). Returns how many were written to out (at most room); -1 when this database's
// extension predates key privileges (0.1.0, where every role may use every key).
int keyring_grantees(const char *key_name, const char *privilege, Oid *out, int room);

// Bumped whenever envelope.key_privileges changes (a relcache invalidation on it).
uint64 keyring_grants_epoch();

// The attribute number of a column of one of the extension's tables, by name (never by
// position). Raises data_corrupted (XX001) if the column is missing.
AttrNumber extension_column(TupleDesc desc, const char *table, const char *column);

// "key "NAME" version N (uuid)" for messages, into out.
void describe_key(const KeyringRow &row, const envelope::DekId &id, char *out, size_t out_size);

}  // namespace envelope::pg
