#!/usr/bin/env bash
# t_hsm_unusable: for each way the HSM can be unusable (PKCS#11 module missing, token absent,
# KEK label unknown; a wrong PIN is t_pin_failure) the server still starts, the keeper reports
# 'failed' with the reason, SQL that needs the HSM fails with SQLSTATE 55000 (create_key,
# CREATE EXTENSION, reading values whose key is not cached), keys cached before a runtime
# breakage keep working, and fixing the setting + reload recovers without a restart.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=$((IT_PORT_BASE + 110))
it_init
pg_init a
pg_start a "$PORT"
wait_ready a "$PORT"

# Data under two keys ("default" and k2).
psql_at "$PORT" postgres "CREATE EXTENSION pg_envelope" || fail "CREATE EXTENSION"
psql_at "$PORT" postgres "SELECT envelope.create_key('k2')" >/dev/null
psql_at "$PORT" postgres "
  CREATE TABLE t (id int PRIMARY KEY, v encrypted_text);
  INSERT INTO t VALUES (1, 'value under default'), (2, envelope.encrypt('value under k2', 'k2'))"
want_rows=$'1|value under default\n2|value under k2'
assert_eq "$want_rows" "$(psql_at "$PORT" postgres "SELECT id, v FROM t ORDER BY id")" \
  "data decrypts while the HSM is usable"
started=$(psql_at "$PORT" postgres "SELECT pg_postmaster_start_time()")

# check_failed CASE NEEDLE: keeper failed with NEEDLE in last_error; SQL needing the HSM or an
# uncached key fails with 55000; CREATE EXTENSION fails and leaves nothing behind.
check_failed() {
  local case=$1 needle=$2 st err out
  wait_ready a "$PORT" failed 60
  st=$(status_at "$PORT" postgres "keeper_state, kek_found, last_error IS NOT NULL")
  assert_eq "failed|f|t" "$st" "$case: keeper failed, KEK not found, last_error set"
  err=$(status_at "$PORT" postgres "last_error")
  assert_contains "$err" "$needle" "$case: last_error names the reason ($err)"
  assert_file_contains "$(it_log a)" "the HSM is not usable: $needle" "$case: the reason is logged"

  out=$(psql_fail_state "$PORT" postgres 55000 "SELECT envelope.create_key('x_$case')")
  assert_contains "$out" "the HSM is not available to pg_envelope" "$case: create_key fails with 55000"
  assert_contains "$out" "$needle" "$case: create_key's error carries the reason"
  out=$(psql_fail_state "$PORT" "other_$case" 55000 "CREATE EXTENSION pg_envelope")
  pass "$case: CREATE EXTENSION fails with 55000"
  assert_eq 0 "$(psql_at "$PORT" "other_$case" \
    "SELECT count(*) FROM pg_extension WHERE extname = 'pg_envelope'")" \
    "$case: the failed CREATE EXTENSION left no extension behind"
  assert_eq 0 "$(status_at "$PORT" postgres keys_cached_total)" "$case: nothing is cached"
  psql_fail_state "$PORT" postgres 55000 "SELECT id, v FROM t ORDER BY id" >/dev/null
  pass "$case: reading encrypted_text with an uncached key fails with 55000"
  psql_fail_state "$PORT" postgres 55000 "SELECT envelope.decrypt(v) FROM t WHERE id = 2" >/dev/null
  pass "$case: envelope.decrypt() with an uncached key fails with 55000"
  psql_fail_state "$PORT" postgres 55000 "INSERT INTO t VALUES (99, 'x')" >/dev/null
  pass "$case: encrypting with an uncached key fails with 55000"
}

# check_recovered CASE: ready again without a restart; the data decrypts and keys can be created.
check_recovered() {
  local case=$1
  wait_ready a "$PORT" ready 60
  st=$(status_at "$PORT" postgres "keeper_state, kek_found, last_error IS NULL")
  assert_eq "ready|t|t" "$st" "$case: ready again after fixing the setting and reloading"
  assert_eq "$started" "$(psql_at "$PORT" postgres "SELECT pg_postmaster_start_time()")" \
    "$case: recovered without a restart"
  assert_eq "$want_rows" "$(psql_at "$PORT" postgres "SELECT id, v FROM t ORDER BY id")" \
    "$case: the data decrypts again"
  assert_eq "value under k2" \
    "$(psql_at "$PORT" postgres "SELECT envelope.decrypt(v) FROM t WHERE id = 2")" \
    "$case: envelope.decrypt() works again"
  psql_at "$PORT" postgres "SELECT envelope.create_key('after_$case')" >/dev/null ||
    fail "$case: create_key after recovery"
  pass "$case: create_key works again"
  psql_at "$PORT" "other_$case" "CREATE EXTENSION pg_envelope" ||
    fail "$case: CREATE EXTENSION after recovery"
  pass "$case: CREATE EXTENSION works again"
}

for case in module token kek; do
  psql_at "$PORT" postgres "CREATE DATABASE other_$case TEMPLATE template0"
done

# --- 1. PKCS#11 module path that does not exist: broken at startup (ALTER SYSTEM), fixed with
#        ALTER SYSTEM RESET + reload.
psql_at "$PORT" postgres "ALTER SYSTEM SET envelope.pkcs11_module = '/nonexistent/libnope-pkcs11.so'"
pg_stop a
pg_start a "$PORT"
pass "module: the server starts with a missing PKCS#11 module"
started=$(psql_at "$PORT" postgres "SELECT pg_postmaster_start_time()")
check_failed module "cannot load PKCS#11 module /nonexistent/libnope-pkcs11.so"
psql_at "$PORT" postgres "ALTER SYSTEM RESET envelope.pkcs11_module"
psql_at "$PORT" postgres "SELECT pg_reload_conf()" >/dev/null
check_recovered module

# --- 2. Token label that does not exist: broken at startup by editing postgresql.conf, fixed by
#        editing it back + reload.
pg_stop a
pg_conf a "envelope.token_label = 'no-such-token'  # t_hsm_unusable"
pg_start a "$PORT"
pass "token: the server starts with an unknown token label"
started=$(psql_at "$PORT" postgres "SELECT pg_postmaster_start_time()")
check_failed token "no token labelled 'no-such-token'"
sed -i '/# t_hsm_unusable$/d' "$IT_TMP/a/postgresql.conf"
psql_at "$PORT" postgres "SELECT pg_reload_conf()" >/dev/null
check_recovered token

# --- 3. Unknown KEK label. First broken at runtime (reload): keys cached before need no HSM, so
#        the data still decrypts in a fresh session while new keys cannot be created. Then a
#        restart with the broken setting (nothing cached), then fixed with ALTER SYSTEM + reload.
psql_at "$PORT" postgres "ALTER SYSTEM SET envelope.kek_label = 'no-such-kek'"
psql_at "$PORT" postgres "SELECT pg_reload_conf()" >/dev/null
wait_ready a "$PORT" failed 60
assert_contains "$(status_at "$PORT" postgres last_error)" "no secret key labelled 'no-such-kek'" \
  "kek (runtime): last_error names the missing KEK"
assert_eq "$want_rows" "$(psql_at "$PORT" postgres "SELECT id, v FROM t ORDER BY id")" \
  "kek (runtime): keys cached before the breakage still decrypt in a fresh session"
psql_fail_state "$PORT" postgres 55000 "SELECT envelope.create_key('x_runtime')" >/dev/null
pass "kek (runtime): create_key fails with 55000"
pg_stop a
pg_start a "$PORT"
pass "kek: the server starts with an unknown KEK label"
started=$(psql_at "$PORT" postgres "SELECT pg_postmaster_start_time()")
check_failed kek "no secret key labelled 'no-such-kek'"
psql_at "$PORT" postgres "ALTER SYSTEM SET envelope.kek_label = 'pg_envelope-kek'"
psql_at "$PORT" postgres "SELECT pg_reload_conf()" >/dev/null
check_recovered kek

echo "t_hsm_unusable: all checks passed"
