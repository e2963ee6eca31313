// envelope.has_key_privilege(): the same decision the value paths make, for any role.
#include "boundary/guard.hpp"
#include "session/key_privileges.hpp"
#include "shmem/shmem.hpp"

using namespace envelope::pg;

ENVELOPE_SQL_FUNCTION(envelope_has_key_privilege) {
    ensure_preloaded();
    const Oid role = PG_GETARG_OID(0);
    const char *key_name = text_to_cstring(PG_GETARG_TEXT_PP(1));
    const char *privilege = text_to_cstring(PG_GETARG_TEXT_PP(2));
    const bool all = strcmp(privilege, "all") == 0;
    const bool encrypt = all || strcmp(privilege, "encrypt") == 0;
    const bool decrypt = all || strcmp(privilege, "decrypt") == 0;
    if (strcmp(privilege, "search") == 0)
        PG_RETURN_BOOL(role_has_key_privilege(role, key_name, KeyPrivilege::search));
    if (!encrypt && !decrypt) {
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("invalid key privilege \"%s\"", privilege),
                        errhint("Use encrypt, decrypt, search or all.")));
    }
    bool allowed = true;
    if (encrypt) allowed = role_has_key_privilege(role, key_name, KeyPrivilege::encrypt);
    if (allowed && decrypt) allowed = role_has_key_privilege(role, key_name, KeyPrivilege::decrypt);
    PG_RETURN_BOOL(allowed);
}
