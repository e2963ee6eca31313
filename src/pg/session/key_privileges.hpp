// Per-key privileges, checked in C on every path that seals (encrypt) or opens (decrypt) a
// value. Decisions are cached per session and per key, and dropped when envelope.key_privileges
// or role membership changes, or the current user changes.
#pragma once
#include "boundary/pg_includes.hpp"
#include "session/cipher_cache.hpp"

namespace envelope::pg {

// encrypt and decrypt apply to data keys, search to index keys (session/index_keys).
enum class KeyPrivilege { encrypt = 0, decrypt = 1, search = 2 };
const char *key_privilege_name(KeyPrivilege p);

// Whether role may use key_name that way: superusers, and members of a role granted the
// privilege on the key (membership counts as for PostgreSQL's own privileges).
bool role_has_key_privilege(Oid role, const char *key_name, KeyPrivilege p);

// The epoch a cached decision is valid for: grants and role membership unchanged.
uint64 key_privilege_stamp();

// Raises 42501 naming the key and the privilege unless the current user has it (encrypt or
// decrypt; an index key raises 42809). The key's
// name is looked up in the keyring once per session.
void require_key_privilege(LocalCipher *key, KeyPrivilege p);

}  // namespace envelope::pg
