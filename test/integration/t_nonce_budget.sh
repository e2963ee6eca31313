#!/usr/bin/env bash
# t_nonce_budget: the encryption count of a data key never goes down, and seals past
# envelope.nonce_limit are refused.
# - Before a seal uses a count beyond what is reserved on disk, a block is reserved durably
#   (PGDATA/pg_envelope/reserved/...): values sealed just before a crash (SIGKILL of a backend,
#   then of the keeper, each well inside the keeper's 10 s save interval) are still counted
#   after the restart. Without the reservation the count fell back to the last periodic save.
# - The limit: exactly nonce_limit seals succeed, the next is refused with 54000 naming the key,
#   the WARNING comes at nonce_warning_threshold, and a restart does not reset the budget;
#   rotating gives a fresh budget.
set -euo pipefail
# shellcheck source=test/integration/lib.sh
source "$(dirname "$0")/lib.sh"

PORT=$((IT_PORT_BASE + 880))
it_init
pg_init a
pg_conf a "envelope.nonce_warning_threshold = 30"
pg_conf a "restart_after_crash = on"
pg_start a "$PORT"
wait_ready a "$PORT"
psql_at "$PORT" postgres "CREATE EXTENSION pg_envelope" >/dev/null
psql_at "$PORT" postgres "ALTER SYSTEM SET envelope.nonce_limit = 40" >/dev/null
psql_at "$PORT" postgres "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
psql_at "$PORT" postgres "SELECT envelope.create_key('nb'), envelope.create_key('crash')" >/dev/null
psql_at "$PORT" postgres "CREATE TABLE t (k text, v encrypted_text)" >/dev/null
count_of() {
  psql_at "$PORT" postgres "SELECT encryptions FROM envelope.keys WHERE name = '$1' AND state = 'active'"
}

# ---- the limit ----
out=$(psql_at "$PORT" postgres "INSERT INTO t SELECT 'nb', envelope.encrypt('v' || g, 'nb') FROM generate_series(1, 40) g" 2>&1)
assert_contains "$out" "WARNING:  data key" "the WARNING at nonce_warning_threshold"
assert_eq 40 "$(count_of nb)" "40 seals counted"
out=$(psql_fail_state "$PORT" postgres 54000 "SELECT envelope.encrypt('one too many', 'nb')")
assert_contains "$out" "has used its nonce budget" "the 41st seal is refused"
assert_contains "$out" "envelope.nonce_limit allows 40 encryptions" "the error says the limit"
assert_not_contains "$out" "one too many" "the error does not echo the plaintext"
assert_eq 40 "$(psql_at "$PORT" postgres "SELECT count(*) FROM t WHERE k = 'nb' AND v::text LIKE 'v%'")" \
  "the 40 values sealed before the limit still open"

# ---- the budget survives a restart; rotation gives a new one ----
pg_restart a
wait_ready a "$PORT"
psql_fail_state "$PORT" postgres 54000 "SELECT envelope.encrypt('still refused', 'nb')" >/dev/null
pass "after a restart 'nb' is still refused"
psql_at "$PORT" postgres "SELECT envelope.rotate_key('nb')" >/dev/null
assert_eq 1 "$(psql_at "$PORT" postgres "SELECT count(*) FROM (SELECT envelope.encrypt('fresh', 'nb')) s")" \
  "a rotated key seals again"
assert_eq 40 "$(psql_at "$PORT" postgres "SELECT count(*) FROM t WHERE k = 'nb' AND v::text LIKE 'v%'")" \
  "values under the exhausted version still open"

# ---- reservations survive a crash ----
# (with the default limit: after a crash a key's count is its reservation, up to 2^20 over)
psql_at "$PORT" postgres "ALTER SYSTEM RESET envelope.nonce_limit" >/dev/null
psql_at "$PORT" postgres "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
res_dir=$IT_TMP/a/pg_envelope/reserved
psql_at "$PORT" postgres "INSERT INTO t SELECT 'crash', envelope.encrypt('c' || g, 'crash') FROM generate_series(1, 25) g" >/dev/null
assert_eq 25 "$(count_of crash)" "25 seals under 'crash'"
crash_id=$(psql_at "$PORT" postgres "SELECT replace(id::text, '-', '') FROM envelope.keyring WHERE name = 'crash'")
file=$(ls "$res_dir"/*-"$crash_id")
reserved=$(cat "$file")
[[ $reserved -ge 25 ]] || fail "reservation file holds $reserved < 25"
pass "the reservation on disk covers the seals ($reserved)"
# SIGKILL a backend right away (the keeper's periodic save runs every 10 s).
as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT" -U postgres -d postgres -AtX -q -c "SELECT pg_sleep(60)" >/dev/null 2>&1 &
sleep 0.5
spid=$(psql_at "$PORT" postgres "SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'")
kill -KILL "$spid"
sleep 1
wait_ready a "$PORT" ready 60
after=$(count_of crash)
[[ $after -ge 25 ]] || fail "after a crash the count went down to $after"
pass "after a backend crash the count is $after (>= 25: never lower)"
# Again with the keeper itself, after more seals.
psql_at "$PORT" postgres "INSERT INTO t SELECT 'crash', envelope.encrypt('d' || g, 'crash') FROM generate_series(1, 10) g" >/dev/null
before_kill=$(count_of crash)
kpid=$(psql_at "$PORT" postgres "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_envelope keeper'")
kill -KILL "$kpid"
sleep 1
wait_ready a "$PORT" ready 60
after=$(count_of crash)
[[ $after -ge $before_kill ]] || fail "after a keeper crash the count went down from $before_kill to $after"
pass "after a keeper crash the count is $after (>= $before_kill)"


# ---- automatic rotation at envelope.auto_rotate_at, once ----
psql_at "$PORT" postgres "ALTER SYSTEM SET envelope.auto_rotate_at = 20" >/dev/null
psql_at "$PORT" postgres "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
psql_at "$PORT" postgres "SELECT envelope.create_key('ar')" >/dev/null
v1=$(psql_at "$PORT" postgres "SELECT id FROM envelope.keyring WHERE name = 'ar' AND version = 1")
# Four sessions seal 28 values concurrently across the threshold (20): version 1 reaches it once;
# version 2 gets at most 8, so it is not rotated in turn (every version rotates at its own 20).
for s in 1 2 3 4; do
  psql_at "$PORT" postgres "INSERT INTO t SELECT 'ar', envelope.encrypt('ar $s ' || g, 'ar') FROM generate_series(1, 7) g" >/dev/null &
done
wait
for ((i = 0; i < 100; i++)); do
  [[ $(psql_at "$PORT" postgres "SELECT count(*) FROM envelope.keyring WHERE name = 'ar'") -ge 2 ]] && break
  sleep 0.1
done
assert_eq "1 active|2" "$(psql_at "$PORT" postgres "SELECT count(*) || ' ' || min(state::text) || '|' || max(version) FROM envelope.keyring WHERE name = 'ar' AND state = 'active'")" \
  "'ar' was rotated automatically: version 2 is the active one"
sleep 1   # let any other request arrive: it must not rotate again
assert_eq 2 "$(psql_at "$PORT" postgres "SELECT max(version) FROM envelope.keyring WHERE name = 'ar'")" \
  "four sessions crossing the threshold rotated it once"
assert_eq "auto_rotate|1|20 encryptions" "$(psql_at "$PORT" postgres "SELECT string_agg(action || '|' || key_version || '|' || privilege, ',') FROM envelope.key_events WHERE key_name = 'ar' AND action = 'auto_rotate'")" \
  "key_events records one automatic rotation, at the threshold"
assert_eq t "$(psql_at "$PORT" postgres "SELECT auto_rotated_at IS NOT NULL FROM envelope.keys WHERE id = '$v1'")" \
  "envelope.keys shows when version 1 was rotated away"
assert_file_contains "$(it_log a)" "pg_envelope: data key $v1 reached" "the rotation is logged"
assert_eq 2 "$(psql_at "$PORT" postgres "SELECT k.version FROM envelope.keyring k WHERE k.id = envelope.value_key_id(envelope.encrypt('after', 'ar'))")" \
  "new values go to version 2"
assert_eq 28 "$(psql_at "$PORT" postgres "SELECT count(*) FROM t WHERE k = 'ar' AND v::text LIKE 'ar %'")" \
  "every value sealed around the rotation opens"
