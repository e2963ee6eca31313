// A session's way to the key of a value (see session_keys.hpp).
#include "session/session_keys.hpp"
#include "session/auto_rotation.hpp"
#include "storage/count_reservations.hpp"
#include "db/keyring.hpp"
#include "postmaster/settings.hpp"
#include "session/keeper_client.hpp"
#include "shmem/shmem.hpp"

#include "hex.hpp"

namespace envelope::pg {

namespace {

// Evicts cached keys whose keyring rows are destroyed, once after each keyring change. On a
// primary destroy_key() already evicted them at commit; this covers standbys and subscribers,
// where the keyring changes by replay or by an apply worker that fires no triggers.
void sweep_destroyed_keys() {
    envelope::DekId *ids = nullptr;
    const int n = keyring_destroyed_ids(&ids);
    for (int i = 0; i < n; ++i) {
        if (key_cache_contains(MyDatabaseId, ids[i])) key_cache_forget(MyDatabaseId, ids[i]);
    }
    pfree(ids);
}

}  // namespace

namespace {

[[noreturn]] void raise_unknown_key(const envelope::DekId &id) {
    char uuid[37];
    envelope::format_uuid(id.data(), uuid);
    ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
                    errmsg("key %s does not exist in this database", uuid),
                    errhint("The value was sealed with a key that is not in this database's "
                            "envelope.keyring: restore or replicate the keyring's rows too "
                            "(see the README, \"Backup, dump and restore\" and "
                            "\"Replication\").")));
}

}  // namespace

void raise_index_key_misuse(const char *name) {
    ereport(ERROR, (errcode(ERRCODE_WRONG_OBJECT_TYPE), errmsg("key \"%s\" is an index key", name),
                    errdetail("Index keys compute search tags only; they never seal or open "
                              "a value."),
                    errhint("Seal values under a data key (envelope.create_key())."),
                    errhidestmt(true), errhidecontext(true)));
}

void require_keyring_row(const envelope::DekId &id) {
    if (!keyring_read(id).found) raise_unknown_key(id);
}

void load_key(const envelope::DekId &id) {
    KeyringRow row = keyring_read(id);
    if (!row.found) raise_unknown_key(id);
    char description[kKeyNameBytes + 96];
    describe_key(row, id, description, sizeof description);
    if (row.state == KeyringState::destroyed || row.wrapped == nullptr) {
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("%s has been destroyed", description)));
    }
    UnwrapItem item{};
    item.id = id;
    item.use = row.state == KeyringState::active ? envelope::KeyUse::active
                                                 : envelope::KeyUse::decrypt_only;
    item.wrapped = reinterpret_cast<const uint8 *>(VARDATA_ANY(row.wrapped));
    item.wrapped_len = VARSIZE_ANY_EXHDR(row.wrapped);
    item.kek_label = row.kek_label;
    keeper_unwrap(MyDatabaseId, &item, 1);
    raise_key_error(item.error, item.message, description);
}

void sweep_if_keyring_changed() {
    if (unlikely(keyring_take_change())) sweep_destroyed_keys();
}

LocalCipher *key_for_open(const envelope::DekId &id) {
    ensure_preloaded();
    sweep_if_keyring_changed();
    LocalCipher *k = cipher_cache_lookup(id);
    if (!k) {
        load_key(id);
        k = cipher_cache_lookup(id);
    }
    if (!k) {
        char uuid[37];
        envelope::format_uuid(id.data(), uuid);
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("key %s was removed from the cache while loading it", uuid),
                        errhint("Retry the statement.")));
    }
    return k;
}

LocalCipher *key_for_seal(const char *name) {
    ensure_preloaded();
    if (name == nullptr) name = setting_default_key;
    envelope::DekId id;
    bool index_key = false;
    if (!keyring_find_active(name, id, &index_key)) {
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
                        errmsg("key \"%s\" does not exist or has no active version", name),
                        errhint("Create it with envelope.create_key(), or set "
                                "envelope.default_key to an existing key.")));
    }
    if (index_key) raise_index_key_misuse(name);
    return key_for_open(id);
}

void count_seal(LocalCipher *key) {
    const SealCount c = key_cache_count_encryption(MyDatabaseId, key->id);
    if (!c.cached) return;  // evicted meanwhile: the seal fails when it looks the key up again
    // Reserve on disk before the nonce is used, so a crash can only over-count.
    if (c.count > c.reserved) reserve_encryptions(MyDatabaseId, key->id, c.count);
    const uint64 n = c.count;
    if (static_cast<double>(n) > setting_nonce_limit) {
        char uuid[37];
        envelope::format_uuid(key->id.data(), uuid);
        ereport(ERROR,
                (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
                 errmsg("data key %s has used its nonce budget", uuid),
                 errdetail("envelope.nonce_limit allows %.0f encryptions under one data key; this "
                           "seal would be number %llu.",
                           setting_nonce_limit, static_cast<unsigned long long>(n)),
                 errhint("Rotate the key with envelope.rotate_key(); values sealed so far still "
                         "open.")));
    }
    maybe_request_rotation(key->id, n);
    if (n < static_cast<uint64>(setting_nonce_warning_threshold) || key->nonce_warned) return;
    key->nonce_warned = true;
    char uuid[37];
    envelope::format_uuid(key->id.data(), uuid);
    ereport(WARNING,
            (errmsg("data key %s has sealed %llu values", uuid, static_cast<unsigned long long>(n)),
             errdetail("Random 96-bit nonces allow about 2^32 encryptions per key; "
                       "envelope.nonce_warning_threshold is %d.",
                       setting_nonce_warning_threshold),
             errhint("Rotate the key with envelope.rotate_key().")));
}

}  // namespace envelope::pg
