// envelope.key_stats (through envelope._key_stats()), envelope.key_stats_reset() and
// envelope._audit(), the audit line of key management functions. Statistics are visible to
// superusers, envelope_admin and pg_monitor only; a reset needs a superuser or envelope_admin.
#include "boundary/guard.hpp"
#include "session/audit.hpp"
#include "shmem/key_stats.hpp"
#include "shmem/shmem.hpp"

extern "C" {
#include "catalog/pg_authid.h"
#include "utils/acl.h"
}

using namespace envelope::pg;

namespace {

bool is_admin(Oid user) {
    if (superuser_arg(user)) return true;
    const Oid admin = get_role_oid("envelope_admin", true);
    return OidIsValid(admin) && has_privs_of_role(user, admin);
}

void require(bool allowed, const char *what, const char *who) {
    if (allowed) return;
    ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                    errmsg("permission denied to %s", what), errdetail("Only %s may.", who)));
}

// Actions and outcomes are words ([a-z_]) so they cannot forge a log line.
void require_word(const char *s, const char *what) {
    bool ok = s[0] != '\0';
    for (const char *p = s; *p; ++p) ok = ok && ((*p >= 'a' && *p <= 'z') || *p == '_');
    if (!ok) {
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("invalid audit %s \"%s\"", what, s)));
    }
}

}  // namespace

// envelope._key_stats(OUT dbid oid, OUT userid oid, OUT key_id uuid, OUT sealed bigint,
//                     OUT opened bigint, OUT denied bigint, OUT first_use timestamptz,
//                     OUT last_use timestamptz)
ENVELOPE_SQL_FUNCTION(envelope_key_stats) {
    ensure_preloaded();
    const Oid user = GetUserId();
    require(is_admin(user) || has_privs_of_role(user, ROLE_PG_MONITOR), "read key statistics",
            "superusers and members of envelope_admin or pg_monitor");
    InitMaterializedSRF(fcinfo, 0);
    auto *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
    const int room = key_stats_capacity();
    auto *rows = static_cast<KeyStatsRow *>(palloc(sizeof(KeyStatsRow) * room));
    const int n = key_stats_copy(rows, room);
    for (int i = 0; i < n; ++i) {
        Datum v[8];
        bool nulls[8] = {};
        auto *u = static_cast<pg_uuid_t *>(palloc(sizeof(pg_uuid_t)));
        memcpy(u->data, rows[i].key.id.data(), UUID_LEN);
        v[0] = ObjectIdGetDatum(rows[i].key.database);
        v[1] = ObjectIdGetDatum(rows[i].key.role);
        v[2] = UUIDPGetDatum(u);
        v[3] = Int64GetDatum(rows[i].sealed);
        v[4] = Int64GetDatum(rows[i].opened);
        v[5] = Int64GetDatum(rows[i].denied);
        v[6] = TimestampTzGetDatum(rows[i].first_use);
        v[7] = TimestampTzGetDatum(rows[i].last_use);
        tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, nulls);
    }
    pfree(rows);
    return (Datum)0;
}

// envelope.key_stats_reset() -> bigint: rows dropped.
ENVELOPE_SQL_FUNCTION(envelope_key_stats_reset) {
    ensure_preloaded();
    require(is_admin(GetUserId()), "reset key statistics",
            "superusers and members of envelope_admin");
    PG_RETURN_INT64(key_stats_reset());
}

// envelope._audit(action text, key_name text, version integer, outcome text,
//                 grantee text DEFAULT NULL, privilege text DEFAULT NULL): one audit line for a
// key management event, as the session user, when envelope.audit is management or more.
ENVELOPE_SQL_FUNCTION(envelope_audit) {
    if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(3)) {
        ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
                        errmsg("audit action, key name and outcome are required")));
    }
    const char *action = text_to_cstring(PG_GETARG_TEXT_PP(0));
    const char *outcome = text_to_cstring(PG_GETARG_TEXT_PP(3));
    require_word(action, "action");
    require_word(outcome, "outcome");
    if (!audit_enabled(audit_management)) PG_RETURN_VOID();
    const char *key_name = text_to_cstring(PG_GETARG_TEXT_PP(1));
    const int version = PG_ARGISNULL(2) ? 0 : PG_GETARG_INT32(2);
    char extra[4 * NAMEDATALEN + 64] = "";
    if (!PG_ARGISNULL(4)) {
        char grantee[4 * NAMEDATALEN + 3];
        audit_quote(text_to_cstring(PG_GETARG_TEXT_PP(4)), grantee, sizeof grantee);
        const char *privilege = PG_ARGISNULL(5) ? "-" : text_to_cstring(PG_GETARG_TEXT_PP(5));
        require_word(privilege[0] == '-' ? "all" : privilege, "privilege");
        snprintf(extra, sizeof extra, "grantee=%s privilege=%s", grantee, privilege);
    }
    audit_line(action, GetUserNameFromId(GetSessionUserId(), false), key_name, version, outcome,
               extra[0] ? extra : nullptr);
    PG_RETURN_VOID();
}
