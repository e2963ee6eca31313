#!/usr/bin/env bash
# t_restart: after a clean restart (pg_ctl restart -m fast) the keeper loads the keys of every
# database that has the extension (keys_loaded = non-destroyed keyring rows across databases),
# all data decrypts and every key keeps its key check value. A database created after startup
# (from template0) gets working keys with CREATE EXTENSION, without a restart.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=$((IT_PORT_BASE + 140))
it_init
pg_init a
pg_start a "$PORT"
wait_ready a "$PORT"

psql_at "$PORT" postgres "CREATE DATABASE db2 TEMPLATE template0"
psql_at "$PORT" postgres "CREATE DATABASE plain_db TEMPLATE template0"   # no extension
for db in postgres db2; do
  psql_at "$PORT" "$db" "CREATE EXTENSION pg_envelope" || fail "CREATE EXTENSION in $db"
  psql_at "$PORT" "$db" "CREATE TABLE t (id serial PRIMARY KEY, k text, plain text, v encrypted_text)"
done
# postgres: default + k1..k5, k1 rotated twice (v1, v2 decrypt_only; v3 active), k5's
# rotated-away v1 destroyed. db2: default + x1, x2.
for k in k1 k2 k3 k4 k5; do psql_at "$PORT" postgres "SELECT envelope.create_key('$k')" >/dev/null; done
fill() {  # DB KEY...
  local db=$1 k; shift
  for k in "$@"; do
    psql_at "$PORT" "$db" "INSERT INTO t (k, plain, v)
      SELECT '$k', '$db $k ' || g, envelope.encrypt('$db $k ' || g, '$k') FROM generate_series(1, 10) g"
  done
}
fill postgres default k1 k2 k3 k4 k5
psql_at "$PORT" postgres "SELECT envelope.rotate_key('k1')" >/dev/null
fill postgres k1
psql_at "$PORT" postgres "SELECT envelope.rotate_key('k1')" >/dev/null
fill postgres k1
psql_at "$PORT" postgres "CREATE TABLE t_old AS SELECT * FROM t WHERE k = 'k5'; DELETE FROM t WHERE k = 'k5'"
psql_at "$PORT" postgres "SELECT envelope.rotate_key('k5')" >/dev/null
psql_at "$PORT" postgres "UPDATE envelope.keyring SET state = 'destroyed', wrapped_dek = NULL
  WHERE name = 'k5' AND version = 1"
fill postgres k5
for k in x1 x2; do psql_at "$PORT" db2 "SELECT envelope.create_key('$k')" >/dev/null; done
fill db2 default x1 x2

live_rows() {  # non-destroyed keyring rows across databases with the extension
  local n=0 db
  for db in postgres db2 "$@"; do
    n=$((n + $(psql_at "$PORT" "$db" "SELECT count(*) FROM envelope.keyring WHERE state <> 'destroyed'")))
  done
  echo "$n"
}
assert_eq 8 "$(psql_at "$PORT" postgres "SELECT count(*) FROM envelope.keyring WHERE state <> 'destroyed'")" \
  "postgres: 8 live key versions (default, k1 v1-v3, k2, k3, k4, k5 v2)"
LIVE=$(live_rows)
assert_eq 11 "$LIVE" "11 live key versions across both databases"

snapshot() {  # DB: name|version|state|kcv of every key
  psql_at "$PORT" "$1" "SELECT name, version, state, key_check_value FROM envelope.keys"
}
kcv_postgres=$(snapshot postgres)
kcv_db2=$(snapshot db2)
assert_eq 8 "$(grep -cE '\|[0-9a-f]{16}$' <<<"$kcv_postgres")" "postgres: every live key has a check value"
assert_contains "$kcv_postgres" "k5|1|destroyed|" "postgres: k5 v1 is destroyed"

check_data() {  # DB WHEN
  assert_eq "t" "$(psql_at "$PORT" "$1" \
    "SELECT count(*) > 0 AND count(*) = count(*) FILTER (WHERE v::text = plain) FROM t")" \
    "$1 ($2): every value decrypts"
}

# Clean restart.
as_pg SOFTHSM2_CONF="$IT_SOFTHSM_CONF" "$PG_BIN/pg_ctl" -D "$IT_TMP/a" -l "$IT_TMP/a.log" \
  -m fast -w -t 60 restart >/dev/null || fail "pg_ctl restart -m fast"
pass "pg_ctl restart -m fast"
wait_ready a "$PORT"
want_dbs=$(psql_at "$PORT" postgres "SELECT count(*) FROM pg_database WHERE datallowconn AND NOT datistemplate")
st=$(status_at "$PORT" postgres "keys_loaded, load_failures, keys_cached_total, databases_loaded")
assert_eq "$LIVE|0|$LIVE|$want_dbs" "$st" \
  "keys_loaded = keys_cached_total = live keyring rows of both databases; every database visited"
assert_eq 8 "$(status_at "$PORT" postgres keys_cached)" "postgres: its 8 keys are cached"
assert_eq 3 "$(status_at "$PORT" db2 keys_cached)" "db2: its 3 keys are cached before any use"
check_data postgres "after restart"
check_data db2 "after restart"
assert_eq "$kcv_postgres" "$(snapshot postgres)" "postgres: same key check values after the restart"
assert_eq "$kcv_db2" "$(snapshot db2)" "db2: same key check values after the restart"
assert_eq "$LIVE" "$(status_at "$PORT" postgres keys_cached_total)" \
  "reading everything needed no extra unwraps (cache unchanged)"
assert_file_contains "$(it_log a)" "ready; $LIVE keys loaded from $want_dbs databases" "the keeper logs the load"
out=$(psql_fail_state "$PORT" postgres 55000 "SELECT v FROM t_old LIMIT 1")
assert_contains "$out" "key \"k5\" version 1" "a value under the destroyed k5 v1 fails with 55000"
assert_contains "$out" "has been destroyed" "... saying the key was destroyed"
psql_fail_state "$PORT" postgres 42704 "SELECT envelope.encrypt('x', 'nope')" >/dev/null
pass "an unknown key name fails with 42704"

# A database created after startup, from template0, with CREATE EXTENSION: works at once.
psql_at "$PORT" postgres "CREATE DATABASE db3 TEMPLATE template0"
psql_at "$PORT" db3 "CREATE EXTENSION pg_envelope" || fail "CREATE EXTENSION in db3"
psql_at "$PORT" db3 "SELECT envelope.create_key('late')" >/dev/null
psql_at "$PORT" db3 "CREATE TABLE t (id serial PRIMARY KEY, k text, plain text, v encrypted_text)"
fill db3 default late
check_data db3 "created after startup"
assert_eq 2 "$(status_at "$PORT" db3 keys_cached)" "db3: both keys cached without a restart"
assert_eq "$((LIVE + 2))" "$(status_at "$PORT" postgres keys_cached_total)" "the cache holds db3's keys too"
# Evict db3's keys from the cache: a fresh session unwraps them on demand through the keeper.
psql_at "$PORT" db3 "SELECT envelope._forget_key(id) FROM envelope.keyring" >/dev/null
assert_eq 0 "$(status_at "$PORT" db3 keys_cached)" "db3: keys evicted"
check_data db3 "after eviction, unwrapped on demand"
assert_eq 2 "$(status_at "$PORT" db3 keys_cached)" "db3: keys cached again after on-demand unwrap"

# Another restart loads all three databases.
pg_restart a
wait_ready a "$PORT"
LIVE3=$(live_rows db3)
assert_eq "$((LIVE + 2))" "$LIVE3" "live rows include db3's 2 keys"
assert_eq "$LIVE3|0" "$(status_at "$PORT" postgres "keys_loaded, load_failures")" \
  "second restart: keys_loaded covers all three databases"
for db in postgres db2 db3; do check_data "$db" "after second restart"; done
echo "t_restart: all checks passed"
