#!/usr/bin/env bash
# t_keeper_wedge: the keeper cannot be wedged. 100 sessions waiting on a stopped keeper
# (SIGSTOP, standing in for a slow HSM) are terminated; after SIGCONT every operation works
# at once (well within one request_timeout). The same with statement_timeout ending the waits, and with a
# waiter killed by SIGKILL (crash restart). Then the token becomes unreadable for a few seconds
# while keys are used: status() says why while it is down, and within 5 s of the token coming
# back everything works again, with no reload and no restart.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=$((IT_PORT_BASE + 630))
it_init
pg_init a
pg_conf a "envelope.request_timeout = '30s'"
pg_conf a "max_connections = 150"
pg_start a "$PORT"
wait_ready a "$PORT"
psql_at "$PORT" postgres "CREATE EXTENSION pg_envelope"
psql_at "$PORT" postgres "CREATE TABLE t (id serial, v encrypted_text)"
keeper_pid() { psql_at "$PORT" postgres "SELECT keeper_pid FROM envelope.status()"; }
works() {  # a new key, a value under it, read back: within the request timeout
  local k="w_$RANDOM$RANDOM"
  psql_at "$PORT" postgres "SELECT envelope.create_key('$k');
    INSERT INTO t (v) VALUES (envelope.encrypt('works $k', '$k'));
    SELECT envelope.decrypt(v) FROM t WHERE v::text = 'works $k'" | tail -n 1
}
waiters() {  # N SQL: N background sessions running SQL (each needs the keeper)
  local i
  for ((i = 0; i < $1; i++)); do
    as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT" -U postgres -d postgres -AtX -q \
      -c "$2" >/dev/null 2>&1 &
  done
}
count_waiting() {
  psql_at "$PORT" postgres "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%create_key(''x_%'"
}

# 1. 100 waiters terminated while the keeper is stopped.
kp=$(keeper_pid)
kill -STOP "$kp"
waiters 100 "SELECT envelope.create_key('x_' || pg_backend_pid())"
for _ in $(seq 1 150); do [[ $(count_waiting) -ge 100 ]] && break; sleep 0.1; done
assert_eq 100 "$(count_waiting)" "100 sessions wait on the stopped keeper"
psql_at "$PORT" postgres "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
  WHERE query LIKE '%create_key(''x_%'" >/dev/null
wait 2>/dev/null || true
kill -CONT "$kp"
start=$SECONDS
got=$(works)
[[ $got == works* ]] || fail "after terminating 100 waiters: $got"
((SECONDS - start <= 5)) || fail "recovery took $((SECONDS - start)) s"
pass "after 100 terminated waiters every operation works at once"

# 2. statement_timeout ends the waits (ERROR path).
kill -STOP "$kp"
waiters 60 "SET statement_timeout = '300ms'; SELECT envelope.create_key('x_' || pg_backend_pid())"
wait 2>/dev/null || true
kill -CONT "$kp"
got=$(works)
[[ $got == works* ]] || fail "after 60 statement timeouts: $got"
pass "after 60 waits ended by statement_timeout every operation works"

# 3. SIGKILL of a waiter: the postmaster restarts every process and reinitialises shared memory.
kill -STOP "$kp"
waiters 5 "SELECT envelope.create_key('x_' || pg_backend_pid())"
for _ in $(seq 1 50); do [[ $(count_waiting) -ge 5 ]] && break; sleep 0.1; done
victim=$(psql_at "$PORT" postgres "SELECT pid FROM pg_stat_activity WHERE query LIKE '%create_key(''x_%' LIMIT 1")
kill -KILL "$victim"
kill -CONT "$kp" 2>/dev/null || true
wait 2>/dev/null || true
wait_ready a "$PORT" ready 30
got=$(works)
[[ $got == works* ]] || fail "after SIGKILL of a waiter: $got"
pass "after a waiter was killed (crash restart) every operation works"

# 4. The token is unreadable for a few seconds while keys are used.
tokens=$IT_HSM/tokens
chmod 000 "$tokens"
psql_fail "$PORT" postgres "SELECT envelope.create_key('during_outage')" >/dev/null
state=$(psql_at "$PORT" postgres "SELECT keeper_state || '|' || coalesce(last_error, '') FROM envelope.status()")
[[ $state == failed\|?* ]] || fail "while the token is unreadable status() must say failed and why (got: $state)"
pass "while the token is unreadable, status() says failed: ${state#failed|}"
sleep 2
chmod 700 "$tokens"
start=$SECONDS
ok=""
while ((SECONDS - start <= 5)); do
  got=$(works 2>/dev/null || true)
  if [[ $got == works* ]]; then ok=1; break; fi
  sleep 0.2
done
[[ -n $ok ]] || fail "not working within 5 s after the token came back (status: $(psql_at "$PORT" postgres "SELECT keeper_state, last_error FROM envelope.status()"))"
pass "working again $((SECONDS - start)) s after the token came back, without reload or restart"
assert_eq "ready|" "$(psql_at "$PORT" postgres "SELECT keeper_state || '|' || coalesce(last_error, '') FROM envelope.status()")" \
  "status() is ready with no error again"
assert_eq 0 "$(psql_at "$PORT" postgres "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%create_key(''x_%'")" \
  "no waiter left behind"
