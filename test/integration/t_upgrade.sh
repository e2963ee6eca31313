#!/usr/bin/env bash
# t_upgrade: the update path from the oldest version. A database installs pg_envelope 0.1.0,
# writes data (as a superuser and as an application role), then runs
# ALTER EXTENSION pg_envelope UPDATE: every value reads back identically, the application role
# reads no plaintext until it is granted the key (nothing is granted to PUBLIC), and after the
# grant it does. A fresh install is at the newest version with the same objects as the updated
# one. Grants are data of the extension: a sealed dump restores them with the keys and values.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=$((IT_PORT_BASE + 610))
it_init
pg_init a
pg_start a "$PORT"
wait_ready a "$PORT"

latest=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$("$PG_CONFIG" --sharedir)/extension/pg_envelope.control")
psql_at "$PORT" postgres "CREATE DATABASE old_db"
psql_at "$PORT" old_db "CREATE EXTENSION pg_envelope VERSION '0.1.0'"
assert_eq 0.1.0 "$(psql_at "$PORT" old_db "SELECT extversion FROM pg_extension WHERE extname = 'pg_envelope'")" \
  "installed the oldest version"
psql_at "$PORT" old_db "CREATE ROLE app LOGIN" >/dev/null
psql_at "$PORT" old_db "SELECT envelope.create_key('payroll')" >/dev/null
psql_at "$PORT" old_db "CREATE TABLE t (id int PRIMARY KEY, v encrypted_text, ctx encrypted_text)
  ; GRANT SELECT, INSERT ON t TO app
  ; INSERT INTO t SELECT g, 'value ' || g, envelope.encrypt('ctx ' || g, 'payroll', g::text::bytea)
    FROM generate_series(1, 50) g"
as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT" -U app -d old_db -AtX -q -v ON_ERROR_STOP=1 \
  -c "INSERT INTO t VALUES (51, 'written by app under 0.1.0', NULL)"
before=$(psql_at "$PORT" old_db "SELECT id, v, envelope.decrypt(ctx, id::text::bytea) FROM t ORDER BY id")
sealed_before=$(pgtool PGOPTIONS='-c envelope.io=sealed' psql -p "$PORT" -d old_db -AtX -c "SELECT id, v FROM t ORDER BY id")
app_before=$(as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT" -U app -d old_db -AtX -q -c "SELECT v FROM t WHERE id = 51")
assert_eq "written by app under 0.1.0" "$app_before" "0.1.0: any role with the table privilege reads plaintext"

psql_at "$PORT" old_db "ALTER EXTENSION pg_envelope UPDATE"
assert_eq "$latest" "$(psql_at "$PORT" old_db "SELECT extversion FROM pg_extension WHERE extname = 'pg_envelope'")" \
  "updated to $latest"
assert_eq "$before" "$(psql_at "$PORT" old_db "SELECT id, v, envelope.decrypt(ctx, id::text::bytea) FROM t ORDER BY id")" \
  "every value reads back identically after the update"
assert_eq "$sealed_before" "$(pgtool PGOPTIONS='-c envelope.io=sealed' psql -p "$PORT" -d old_db -AtX -c "SELECT id, v FROM t ORDER BY id")" \
  "the stored ciphertext is untouched"
out=$(psql_fail "$PORT" old_db "SET ROLE app; SELECT v FROM t WHERE id = 51")
assert_contains "$out" 'permission denied for key "default"' "after the update app needs a grant"
assert_eq 0 "$(psql_at "$PORT" old_db "SELECT count(*) FROM envelope.key_grants")" "the update granted nothing"
assert_eq f "$(psql_at "$PORT" old_db "SELECT envelope.has_key_privilege('app', 'default', 'decrypt')")" \
  "no PUBLIC grant"
psql_at "$PORT" old_db "SELECT envelope.grant_key('default', 'app', 'all')" >/dev/null
assert_eq "written by app under 0.1.0" \
  "$(as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT" -U app -d old_db -AtX -q -c "SELECT v FROM t WHERE id = 51")" \
  "after the grant app reads again"
out=$(psql_fail "$PORT" old_db "SET ROLE app; SELECT envelope.decrypt(ctx, id::text::bytea) FROM t WHERE id = 1")
assert_contains "$out" 'permission denied for key "payroll"' "grants are per key"

# A fresh install has exactly the objects of the updated one.
psql_at "$PORT" postgres "CREATE DATABASE new_db"
psql_at "$PORT" new_db "CREATE EXTENSION pg_envelope"
objects() {
  psql_at "$PORT" "$1" "SELECT pg_describe_object(classid, objid, objsubid) FROM pg_depend
    WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
      AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_envelope') ORDER BY 1"
}
assert_eq "$(objects old_db)" "$(objects new_db)" "fresh install and updated install have the same objects"
assert_eq "$(psql_at "$PORT" old_db "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'envelope.keyring'::regclass ORDER BY 1")" \
  "$(psql_at "$PORT" new_db "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'envelope.keyring'::regclass ORDER BY 1")" \
  "the keyring's triggers are the same (enabled always)"

# The keeper loads the updated database's keys after a restart.
pg_restart a
wait_ready a "$PORT"
assert_eq "$before" "$(psql_at "$PORT" old_db "SELECT id, v, envelope.decrypt(ctx, id::text::bytea) FROM t ORDER BY id")" \
  "values read back after a restart"

# Grants survive a sealed dump and restore, with the keys and the values. (Context-bound values
# are left out: a one-step sealed restore of those is the restore work's test, t_dump_restore.)
psql_at "$PORT" old_db "UPDATE t SET ctx = NULL"
pgtool PGOPTIONS='-c envelope.io=sealed' pg_dump -p "$PORT" -Fc -d old_db -f "$IT_TMP/old.dump"
psql_at "$PORT" postgres "CREATE DATABASE restored"
pgtool PGOPTIONS='-c envelope.io=sealed' pg_restore -p "$PORT" -d restored "$IT_TMP/old.dump" 2>"$IT_TMP/restore.err" || {
  cat "$IT_TMP/restore.err"; fail "restoring the dump"; }
assert_eq "$(psql_at "$PORT" old_db "SELECT key_name, grantee, privilege FROM envelope.key_grants")" \
  "$(psql_at "$PORT" restored "SELECT key_name, grantee, privilege FROM envelope.key_grants")" \
  "grants are restored"
assert_eq "written by app under 0.1.0" \
  "$(as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT" -U app -d restored -AtX -q -c "SELECT v FROM t WHERE id = 51")" \
  "app reads in the restored database through its restored grant"


#------------------------------------------------------------------------------
# Sharding (issue 16): data written at 0.2.0 reads back after the update to 0.3.0, and the
# update's objects work: envelope_fdw moves it sealed over a loopback server, and the keyring
# and grants have their replica-mode invalidation triggers.
#------------------------------------------------------------------------------
psql_at "$PORT" postgres "CREATE DATABASE db02"
psql_at "$PORT" db02 "CREATE EXTENSION pg_envelope VERSION '0.2.0'"
psql_at "$PORT" db02 "CREATE TABLE shard_t (id int PRIMARY KEY, v encrypted_text);
  INSERT INTO shard_t SELECT g, 'written at 0.2.0 ' || g FROM generate_series(1, 20) g"
before02=$(psql_at "$PORT" db02 "SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM shard_t")
assert_eq 0 "$(psql_at "$PORT" db02 "SELECT count(*) FROM pg_foreign_data_wrapper WHERE fdwname = 'envelope_fdw'")" \
  "0.2.0 has no envelope_fdw"
psql_at "$PORT" db02 "ALTER EXTENSION pg_envelope UPDATE TO '0.3.0'"
assert_eq "$before02" "$(psql_at "$PORT" db02 "SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM shard_t")" \
  "0.2.0 -> 0.3.0: every value reads back"
psql_at "$PORT" db02 "
  CREATE SERVER loop FOREIGN DATA WRAPPER envelope_fdw
    OPTIONS (host '$IT_SOCK', port '$PORT', dbname 'db02', options '-c envelope.io=sealed');
  CREATE USER MAPPING FOR postgres SERVER loop;
  CREATE FOREIGN TABLE shard_ft (id int, v encrypted_text) SERVER loop OPTIONS (table_name 'shard_t');
  INSERT INTO shard_ft VALUES (21, 'written through envelope_fdw');" >/dev/null
assert_eq "$before02,21=written through envelope_fdw" \
  "$(psql_at "$PORT" db02 "SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM shard_ft")" \
  "after the update, envelope_fdw reads the 0.2.0 values and writes new ones"
assert_eq "key_privileges_changed_replica|R
keyring_changed_replica|R" "$(psql_at "$PORT" db02 "SELECT tgname, tgenabled FROM pg_trigger
    WHERE tgname LIKE '%_replica' ORDER BY 1")" "the replica-mode invalidation triggers are installed"
out=$(psql_fail "$PORT" db02 "ALTER SERVER loop OPTIONS (SET options '-c envelope.io=auto')")
assert_contains "$out" "must set envelope.io = sealed" "the updated validator guards the server's options"

#------------------------------------------------------------------------------
# Key lifecycle (issue 13): the 0.2.0 values re-encrypt after the update, key_usage() counts
# them, and the replaced destroy_key() refuses while values remain.
#------------------------------------------------------------------------------
psql_at "$PORT" db02 "SELECT envelope.rotate_key('default')" >/dev/null
psql_at "$PORT" db02 "CALL envelope.reencrypt('shard_t', 'v')" >/dev/null
assert_eq "2|21" "$(psql_at "$PORT" db02 "SELECT string_agg(key_version || '|' || value_count, ',') FROM envelope.key_usage('shard_t')")" \
  "0.2.0 values re-encrypted to version 2 after the update"
assert_eq "$before02,21=written through envelope_fdw" \
  "$(psql_at "$PORT" db02 "SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM shard_t")" \
  "and still read back"
psql_at "$PORT" db02 "INSERT INTO shard_t VALUES (22, envelope.encrypt('pinned', 'default'))" >/dev/null
psql_at "$PORT" db02 "SELECT envelope.rotate_key('default')" >/dev/null
psql_fail_state "$PORT" db02 55006 "SELECT envelope.destroy_key('default', 2)" >/dev/null
pass "the updated destroy_key refuses a version that still seals values"
assert_eq 1 "$(psql_at "$PORT" db02 "SELECT count(*) FROM pg_proc WHERE proname = 'destroy_key'")" \
  "one destroy_key after the update (the two-argument one was replaced)"

# From 0.2.0: data and grants written there read back after the update, existing keys are data
# keys, and the search objects of 0.3.0 (index keys, the search privilege, blind indexes) work
# on the old data.
psql_at "$PORT" postgres "CREATE DATABASE db_020"
psql_at "$PORT" db_020 "CREATE EXTENSION pg_envelope VERSION '0.2.0'"
psql_at "$PORT" db_020 "SELECT envelope.create_key('people')" >/dev/null
psql_at "$PORT" db_020 "CREATE TABLE people (id int PRIMARY KEY, ssn encrypted_text)
  ; GRANT SELECT ON people TO app
  ; SET envelope.default_key = 'people'
  ; INSERT INTO people SELECT g, 'ssn-' || g FROM generate_series(1, 500) g" >/dev/null
psql_at "$PORT" db_020 "SELECT envelope.grant_key('people', 'app', 'decrypt')" >/dev/null
before_020=$(psql_at "$PORT" db_020 "SELECT id, ssn FROM people ORDER BY id")
grants_020=$(psql_at "$PORT" db_020 "SELECT key_name, grantee, privilege FROM envelope.key_grants")
psql_at "$PORT" db_020 "ALTER EXTENSION pg_envelope UPDATE"
assert_eq "$latest" "$(psql_at "$PORT" db_020 "SELECT extversion FROM pg_extension WHERE extname = 'pg_envelope'")" \
  "0.2.0 database updated to $latest"
assert_eq "$before_020" "$(psql_at "$PORT" db_020 "SELECT id, ssn FROM people ORDER BY id")" \
  "0.2.0 values read back after the update"
assert_eq "$grants_020" "$(psql_at "$PORT" db_020 "SELECT key_name, grantee, privilege FROM envelope.key_grants")" \
  "0.2.0 grants are kept"
assert_eq "data,data" "$(psql_at "$PORT" db_020 "SELECT string_agg(purpose, ',' ORDER BY name) FROM envelope.keys")" \
  "keys made before the update are data keys"
psql_at "$PORT" db_020 "SELECT envelope.create_index_key('people_ssn')" >/dev/null
psql_at "$PORT" db_020 "CREATE INDEX people_ssn_idx ON people USING hash (ssn envelope.blind_ops (key = 'people_ssn'))"
plan=$(psql_at "$PORT" db_020 "SET enable_seqscan = off; EXPLAIN (COSTS OFF) SELECT id FROM people WHERE ssn = 'ssn-42'")
assert_contains "$plan" "people_ssn_idx" "a blind index on 0.2.0 data is used for ="
out=$(psql_fail "$PORT" db_020 "SET ROLE app; SET enable_seqscan = off; SELECT id FROM people WHERE ssn = 'ssn-42'")
assert_contains "$out" "lacks the search privilege" "searching needs the search privilege on the index key"
psql_at "$PORT" db_020 "SELECT envelope.grant_key('people_ssn', 'app', 'search')" >/dev/null
assert_eq 42 "$(as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT" -U app -d db_020 -AtX -q \
  -c "SET enable_seqscan = off; SELECT id FROM people WHERE ssn = 'ssn-42'")" \
  "app finds the row through the blind index once granted search"
psql_at "$PORT" db_020 "SELECT envelope.rotate_index_key('people_ssn')" >/dev/null
assert_eq 43 "$(psql_at "$PORT" db_020 "SET enable_seqscan = off; SELECT id FROM people WHERE ssn = 'ssn-43'")" \
  "after rotate_index_key the rebuilt index answers"
assert_eq "$(objects db_020)" "$(objects new_db)" "0.2.0 updated and fresh install have the same objects"

#------------------------------------------------------------------------------
# KEK rotation (issue 13): after the update the keys written at 0.2.0 are counted per KEK
# label, and a re-wrap under the same KEK has nothing to do.
#------------------------------------------------------------------------------
assert_eq "pg_envelope-kek" "$(psql_at "$PORT" db02 "SELECT string_agg(kek_label, ',') FROM envelope.kek_usage")" \
  "0.2.0 keys are listed under their KEK after the update"
psql_at "$PORT" db02 "CALL envelope.rewrap_keys()" >/dev/null
pass "rewrap_keys() runs after the update"

#------------------------------------------------------------------------------
# 0.3.0 -> 0.4.0 (issue 14): data written at 0.3.0 reads back after the update, and the
# update has the objects of a fresh install.
#------------------------------------------------------------------------------
psql_at "$PORT" postgres "CREATE DATABASE db03"
psql_at "$PORT" db03 "CREATE EXTENSION pg_envelope VERSION '0.3.0'"
psql_at "$PORT" db03 "SELECT envelope.create_key('k03');
  CREATE TABLE t03 (id int PRIMARY KEY, v encrypted_text);
  INSERT INTO t03 SELECT g, envelope.encrypt('written at 0.3.0 ' || g, 'k03') FROM generate_series(1, 20) g" >/dev/null
before03=$(psql_at "$PORT" db03 "SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM t03")
psql_at "$PORT" db03 "ALTER EXTENSION pg_envelope UPDATE"
assert_eq "$latest" "$(psql_at "$PORT" db03 "SELECT extversion FROM pg_extension WHERE extname = 'pg_envelope'")" \
  "0.3.0 database updated to $latest"
assert_eq "$before03" "$(psql_at "$PORT" db03 "SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM t03")" \
  "0.3.0 -> $latest: every value reads back"
assert_eq "$(objects db03)" "$(objects new_db)" "0.3.0 updated and fresh install have the same objects"
# Trustpoint migration (issue 14) in the updated database: both functions answer, refusing
# malformed input, and a key that was written at 0.3.0 serves as the key name.
psql_fail_state "$PORT" db03 22P02 "SELECT envelope.import_legacy_value('not*base64!', 'k03')" >/dev/null
pass "0.3.0 -> $latest: import_legacy_value refuses a malformed field (22P02)"
psql_fail_state "$PORT" db03 XX001 "SELECT envelope.import_legacy_value(
  encode(substr(sha256('n') || sha256('t'), 1, 44), 'base64'), 'k03')" >/dev/null
pass "0.3.0 -> $latest: import_legacy_value refuses a field the key does not open (XX001)"
psql_fail_state "$PORT" db03 22023 "SELECT envelope.import_legacy_key('tp03', '\\x0001')" >/dev/null
# The keeper looks the legacy KEK up in its token (none with the IKM provider: 0A000).
want_state=42704
[[ $PGE_TOKEN == ikm ]] && want_state=0A000
psql_fail_state "$PORT" db03 "$want_state" \
  "SELECT envelope.import_legacy_key('tp03', decode(repeat('00', 40), 'hex'), 'tp-no-such-kek')" >/dev/null
assert_eq 0 "$(psql_at "$PORT" db03 "SELECT count(*) FROM envelope.keyring WHERE name = 'tp03'")" \
  "0.3.0 -> $latest: import_legacy_key checks its arguments and asks the keeper; nothing stored"
# Key providers (issue 14): after the update the keeper still uses the provider this server is
# configured with (PGE_TOKEN=ikm: a KEK derived from the IKM command), and the keys written at
# 0.3.0 rotate and keep working under it.
want_provider=pkcs11
[[ $PGE_TOKEN == ikm ]] && want_provider=ikm_command
assert_eq "$want_provider" "$(psql_at "$PORT" db03 "SHOW envelope.kek_provider")" "0.4.0: envelope.kek_provider is $want_provider"
assert_eq "ready" "$(psql_at "$PORT" db03 "SELECT keeper_state FROM envelope.status()")" "0.4.0: the keeper is ready"
psql_at "$PORT" db03 "SELECT envelope.rotate_key('k03');
  INSERT INTO t03 VALUES (21, envelope.encrypt('written at 0.4.0', 'k03'))" >/dev/null
assert_eq "$before03,21=written at 0.4.0" "$(psql_at "$PORT" db03 "SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM t03")" \
  "0.4.0: a 0.3.0 key rotates under the configured provider; old and new values read back"
