#!/usr/bin/env bash
# t_crash_recovery: SIGKILL of the keeper, then of a regular backend, makes the postmaster reset
# shared memory; afterwards the keeper rebuilds the key cache (keys_cached back to the full
# count), every key has the same key check value, and all data written before decrypts.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=$((IT_PORT_BASE + 130))
it_init
pg_init a
pg_start a "$PORT"
wait_ready a "$PORT"

psql_at "$PORT" postgres "CREATE EXTENSION pg_envelope" || fail "CREATE EXTENSION"
for k in k1 k2 k3; do psql_at "$PORT" postgres "SELECT envelope.create_key('$k')" >/dev/null; done
psql_at "$PORT" postgres "SELECT envelope.rotate_key('k3')" >/dev/null   # k3 v1 decrypt_only, v2 active
psql_at "$PORT" postgres "
  CREATE TABLE t (id serial PRIMARY KEY, k text, plain text, v encrypted_text);
  INSERT INTO t (k, plain, v)
    SELECT k, 'row ' || g || ' under ' || k, envelope.encrypt('row ' || g || ' under ' || k, k)
    FROM unnest(ARRAY['default', 'k1', 'k2', 'k3']) k, generate_series(1, 25) g"
NKEYS=5   # default, k1, k2, k3 v1, k3 v2
kcvs=$(psql_at "$PORT" postgres "SELECT name, version, key_check_value FROM envelope.keys")
assert_eq "$NKEYS" "$(grep -cE '\|[0-9a-f]{16}$' <<<"$kcvs")" "all $NKEYS keys have key check values"
assert_eq "$NKEYS" "$(status_at "$PORT" postgres keys_cached)" "all keys cached before the crashes"
started=$(psql_at "$PORT" postgres "SELECT pg_postmaster_start_time()")

# wait_reset OLD_KEEPER_PID: waits until a new keeper is ready after the crash reset.
wait_reset() {
  local old=$1 i st=""
  for ((i = 0; i < 300; i++)); do
    st=$(status_at "$PORT" postgres "keeper_pid, keeper_state" 2>/dev/null) || st=""
    if [[ -n $st && $st != "$old|"* && $st == *"|ready" ]]; then return 0; fi
    sleep 0.2
  done
  fail "no ready keeper after the crash reset (last status: '$st')"
}

# check_all WHEN: data, key check values, cache fill, no restart.
check_all() {
  local when=$1
  assert_eq "t" "$(psql_at "$PORT" postgres \
    "SELECT count(*) >= 100 AND count(*) = count(*) FILTER (WHERE v::text = plain) FROM t")" \
    "$when: all values decrypt"
  assert_eq "$kcvs" "$(psql_at "$PORT" postgres "SELECT name, version, key_check_value FROM envelope.keys")" \
    "$when: every key has the same key check value"
  assert_eq "$NKEYS|$NKEYS|0" "$(status_at "$PORT" postgres "keys_cached, keys_loaded, load_failures")" \
    "$when: keys_cached is back to the full count (loaded by the keeper)"
  for k in default k1 k2 k3; do
    got=$(psql_at "$PORT" postgres "SELECT envelope.decrypt(envelope.encrypt('fresh $k', '$k'))")
    [[ $got == "fresh $k" ]] || fail "$when: key $k cannot seal and open a new value"
  done
  pass "$when: every key seals and opens new values"
  assert_eq "$started" "$(psql_at "$PORT" postgres "SELECT pg_postmaster_start_time()")" \
    "$when: the postmaster was not restarted (shared-memory reset only)"
  psql_at "$PORT" postgres "INSERT INTO t (k, plain, v) VALUES ('k1', 'written $when', envelope.encrypt('written $when', 'k1'))"
}

# --- 1. SIGKILL the keeper.
keeper=$(status_at "$PORT" postgres keeper_pid)
[[ $keeper =~ ^[0-9]+$ ]] || fail "no keeper pid in status: '$keeper'"
assert_contains "$(tr '\0' ' ' </proc/"$keeper"/cmdline)" "pg_envelope keeper" "status keeper_pid is the keeper process"
kill -9 "$keeper"
pass "sent SIGKILL to the keeper (pid $keeper)"
wait_reset "$keeper"
log=$(it_log a)
assert_file_contains "$log" "(PID $keeper) was terminated by signal 9" "the postmaster saw the keeper die"
assert_file_contains "$log" "all server processes terminated; reinitializing" "shared memory was reset"
check_all "after keeper SIGKILL"

# --- 2. SIGKILL a regular backend.
keeper=$(status_at "$PORT" postgres keeper_pid)
as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT" -U postgres -d postgres -AtXq \
  -c "SET application_name = 'crash_victim'" -c "SELECT count(*) FROM t WHERE v::text <> ''" \
  -c "SELECT pg_sleep(120)" >/dev/null 2>&1 &
victim_psql=$!
victim=""
for ((i = 0; i < 100; i++)); do
  victim=$(psql_at "$PORT" postgres \
    "SELECT pid FROM pg_stat_activity WHERE application_name = 'crash_victim' AND query LIKE 'SELECT pg_sleep%'")
  [[ -n $victim ]] && break
  sleep 0.1
done
[[ -n $victim ]] || fail "the victim backend did not show up in pg_stat_activity"
kill -9 "$victim"
pass "sent SIGKILL to backend $victim"
wait "$victim_psql" 2>/dev/null || true
wait_reset "$keeper"
assert_file_contains "$log" "(PID $victim) was terminated by signal 9" "the postmaster saw the backend die"
assert_eq 2 "$(grep -c 'all server processes terminated; reinitializing' "$log")" "a second reset happened"
check_all "after backend SIGKILL"
assert_eq "written after keeper SIGKILL" \
  "$(psql_at "$PORT" postgres "SELECT v FROM t WHERE plain = 'written after keeper SIGKILL'")" \
  "a value written between the crashes survives the second reset"
echo "t_crash_recovery: all checks passed"
