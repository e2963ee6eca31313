#!/usr/bin/env bash
# t_audit: per-role key statistics and the audit trail on a real server with
# envelope.audit = all.
# - Counts are exact under 4 concurrent sessions (seals and opens per role and key version).
# - A denial from a role without decrypt appears in the log (one structured line) and in
#   envelope.key_stats.
# - Key management writes audit lines and envelope.key_events rows; use lines are rate-limited.
# - Counts and events survive a restart; a dump carries the events.
# - Nothing secret in the log: no marker plaintext (raw, hex, base64), no DEK (raw, hex), no
#   wrapped DEK (hex).
set -euo pipefail
# shellcheck source=test/integration/lib.sh
source "$(dirname "$0")/lib.sh"

PORT=$((IT_PORT_BASE + 700))
it_init
pg_init a
pg_conf a "envelope.audit = all"
pg_conf a "log_min_error_statement = error"
pg_start a "$PORT"
wait_ready a "$PORT"
LOG=$(it_log a)

rnd() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }
marker="MARKER-$(rnd)"

psql_at "$PORT" postgres "CREATE EXTENSION pg_envelope" || fail "CREATE EXTENSION"
psql_at "$PORT" postgres "SELECT envelope.create_key('payroll')" >/dev/null
psql_at "$PORT" postgres "CREATE ROLE app; CREATE ROLE nobody;
  SELECT envelope.grant_key('payroll', 'app', 'all');
  CREATE TABLE t (id serial PRIMARY KEY, s int, v encrypted_text);
  GRANT SELECT, INSERT ON t TO app, nobody; GRANT USAGE ON SEQUENCE t_id_seq TO app, nobody" >/dev/null
# The marker travels as COPY data, never in SQL text.
printf '%s\n' "$marker" | as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT" -U postgres -d postgres -AtX -q \
  -v ON_ERROR_STOP=1 -c "SET envelope.default_key = 'payroll'" -c "COPY t (v) FROM STDIN"
psql_at "$PORT" postgres "SELECT envelope.key_stats_reset()" >/dev/null

# --- 4 concurrent sessions as app: each seals 200 values (2 transactions) and opens every
# value of its own 5 times (5 transactions): 4 * 200 sealed, 4 * 5 * 200 opened.
session() {
  local n=$1
  as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT" -U postgres -d postgres -AtX -q -v ON_ERROR_STOP=1 \
    -c "SET ROLE app" \
    -c "INSERT INTO t (s, v) SELECT $n, envelope.encrypt('v' || g, 'payroll') FROM generate_series(1, 100) g" \
    -c "INSERT INTO t (s, v) SELECT $n, envelope.encrypt('w' || g, 'payroll') FROM generate_series(1, 100) g" \
    -c "SELECT count(v::text) FROM t WHERE s = $n" -c "SELECT count(v::text) FROM t WHERE s = $n" \
    -c "SELECT count(v::text) FROM t WHERE s = $n" -c "SELECT count(v::text) FROM t WHERE s = $n" \
    -c "SELECT count(envelope.decrypt(v)) FROM t WHERE s = $n" >"$IT_TMP/session$n.out" 2>&1
}
pids=()
for n in 1 2 3 4; do session "$n" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent session failed: $(cat "$IT_TMP"/session*.out)"; done
stats_of() {
  psql_at "$PORT" postgres "SELECT sealed || ' ' || opened || ' ' || denied FROM envelope.key_stats
    WHERE role = '$1' AND key_name = 'payroll' AND key_version = 1"
}
assert_eq "800 4000 0" "$(stats_of app)" "4 concurrent sessions: exact seals and opens for app"

# --- A denial from a role without decrypt: in the log and in the view.
out=$(psql_fail_state "$PORT" postgres 42501 "SET ROLE nobody; SELECT v FROM t WHERE s = 1 LIMIT 1")
assert_not_contains "$out" "MARKER" "the denial shows no value"
assert_file_contains "$LOG" 'pg_envelope audit: action=decrypt role="nobody" key="payroll" version=1 outcome=denied' \
  "the denial is one audit line"
assert_eq "0 0 1" "$(stats_of nobody)" "the denial is counted for nobody"

# --- Key management: audit lines and events.
psql_at "$PORT" postgres "SELECT envelope.rotate_key('payroll'); SELECT envelope.revoke_key('payroll', 'app', 'encrypt');
  SELECT envelope.destroy_key('payroll', 2)" >/dev/null
for line in 'action=create role="postgres" key="payroll" version=1 outcome=ok' \
            'action=grant role="postgres" key="payroll" version=- outcome=ok grantee="app" privilege=all' \
            'action=rotate role="postgres" key="payroll" version=2 outcome=ok' \
            'action=revoke role="postgres" key="payroll" version=- outcome=ok grantee="app" privilege=encrypt' \
            'action=destroy role="postgres" key="payroll" version=2 outcome=ok'; do
  assert_file_contains "$LOG" "pg_envelope audit: $line" "audit line: ${line%% *}"
done
events=$(psql_at "$PORT" postgres "SELECT string_agg(action, ',' ORDER BY id) FROM envelope.key_events WHERE key_name = 'payroll'")
assert_eq "create,grant,rotate,revoke,destroy" "$events" "key_events has the history"

# --- envelope.audit = all: use lines, rate-limited to one per role and key per minute per session.
uses=$(grep -c 'pg_envelope audit: action=use role="app" key="payroll" version=1 outcome=allowed' "$LOG" || true)
[[ $uses -ge 4 && $uses -le 8 ]] || fail "expected one or two use lines per session, got $uses"
pass "use lines: $uses for 4 sessions of 7 transactions each (rate-limited)"

# --- Counts and events survive a restart.
pg_restart a
wait_ready a "$PORT"
assert_eq "800 4000 0" "$(stats_of app)" "app's counts survive a restart"
assert_eq "0 0 1" "$(stats_of nobody)" "nobody's denial survives a restart"
assert_eq "$events" "$(psql_at "$PORT" postgres "SELECT string_agg(action, ',' ORDER BY id) FROM envelope.key_events WHERE key_name = 'payroll'")" \
  "key_events survive a restart"
# ... and a dump: a restored copy carries the history.
pgtool PGOPTIONS='-c envelope.io=sealed' pg_dump -p "$PORT" -Fc -d postgres -f "$IT_TMP/a.dump" ||
  fail "pg_dump"
pgtool createdb -p "$PORT" restored
pgtool PGOPTIONS='-c envelope.io=sealed' pg_restore -p "$PORT" -d restored "$IT_TMP/a.dump" \
  2>"$IT_TMP/restore.err" || { cat "$IT_TMP/restore.err"; fail "pg_restore"; }
assert_eq "$events" "$(psql_at "$PORT" restored "SELECT string_agg(action, ',' ORDER BY id) FROM envelope.key_events WHERE key_name = 'payroll'")" \
  "a restored copy carries key_events"
psql_at "$PORT" postgres "SET ROLE app; SELECT count(v::text) FROM t WHERE s = 1" >/dev/null
assert_eq "800 4200 0" "$(stats_of app)" "counting goes on after the restart"

# --- Nothing secret in the log.
assert_eq "$marker" "$(psql_at "$PORT" postgres "SELECT v FROM t WHERE s IS NULL")" "the marker decrypts"
psql_at "$PORT" postgres "SELECT 1" >/dev/null
assert_file_not_contains "$LOG" "$marker" "no marker plaintext in the log"
assert_file_not_contains "$LOG" "$(printf '%s' "$marker" | od -An -tx1 | tr -d ' \n')" "no marker (hex) in the log"
assert_file_not_contains "$LOG" "$(printf '%s' "$marker" | base64 | cut -c1-24)" "no marker (base64) in the log"
PROBE=$ENVELOPE_ROOT/build/envelope_test_dek_probe
[[ -x $PROBE ]] || fail "test probe $PROBE not built"
row=$(psql_at "$PORT" postgres "SELECT replace(id::text, '-', '') || ' ' || encode(wrapped_dek, 'hex')
  FROM envelope.keyring WHERE name = 'payroll' AND version = 1")
dek=$(as_pg SOFTHSM2_CONF="$IT_SOFTHSM_CONF" ENVELOPE_PROBE_INIT_ARGS="$(it_token_init_args)" \
  "$PROBE" "$(it_token_module)" pg_envelope "$IT_PIN_FILE" \
      pg_envelope-kek ${row}) || fail "probe could not unwrap the DEK"
[[ $dek =~ ^[0-9a-f]{64}$ ]] || fail "probe output is not a 32-byte hex DEK"
assert_file_not_contains "$LOG" "$dek" "no DEK (hex) in the log"
assert_file_not_contains "$LOG" "${dek^^}" "no DEK (upper-case hex) in the log"
assert_file_not_contains "$LOG" "${row#* }" "no wrapped DEK (hex) in the log"
as_pg "${PYTHON:-/usr/bin/python3}" - "$dek" "$LOG" <<'PY' || fail "raw DEK bytes in the log"
import sys
dek = bytes.fromhex(sys.argv[1])
data = open(sys.argv[2], 'rb').read()
sys.exit(1 if any(n in data for n in (dek, dek[:16], dek[16:])) else 0)
PY
pass "no raw DEK bytes in the log"
