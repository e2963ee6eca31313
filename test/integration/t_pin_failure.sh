#!/usr/bin/env bash
# t_pin_failure: a wrong PIN leaves the server up with the keeper 'failed' (CKR_PIN_INCORRECT),
# no PIN ever reaches the log, and fixing the PIN file + reload recovers without a restart.
set -euo pipefail
# shellcheck source=test/integration/lib.sh
source "$(dirname "$0")/lib.sh"

PORT=$((IT_PORT_BASE + 10))
it_init
pg_init a
pg_conf a "log_min_messages = debug1"

# 1. Good token: ready, KEK found, extension installs.
pg_start a "$PORT"
wait_ready a "$PORT"
st=$(status_at "$PORT" postgres "keeper_state, kek_found")
assert_eq "ready|t" "$st" "good PIN: keeper ready and KEK found"
psql_at "$PORT" postgres "CREATE EXTENSION pg_envelope" || fail "CREATE EXTENSION"
pass "CREATE EXTENSION works"
st=$(status_at "$PORT" postgres "keeper_state, kek_found, last_error IS NULL")
assert_eq "ready|t|t" "$st" "status after CREATE EXTENSION"

# 2. Wrong PIN (same owner and mode): the server still starts, the keeper reports the failure.
pg_stop a
right_pin=$(head -n 1 "$IT_PIN_FILE")
wrong_pin=1234567890123456
[[ $wrong_pin != "$right_pin" ]] || wrong_pin=6543210987654321
before=$(stat -c '%U %a' "$IT_PIN_FILE")
printf '%s\n' "$wrong_pin" >"$IT_PIN_FILE"   # truncating keeps owner and mode
assert_eq "$before" "$(stat -c '%U %a' "$IT_PIN_FILE")" "PIN file keeps owner and mode"
assert_eq "postgres 600" "$before" "PIN file is owned by postgres, mode 0600"

pg_start a "$PORT"
pass "server starts with a wrong PIN"
wait_ready a "$PORT" failed 60
started=$(psql_at "$PORT" postgres "SELECT pg_postmaster_start_time()")
err=$(status_at "$PORT" postgres "last_error")
assert_contains "$err" "CKR_PIN_INCORRECT" "last_error names the login failure"
err=$(psql_fail "$PORT" postgres "SELECT envelope.create_key('while_failed')")
pass "SQL needing the HSM fails while the keeper is failed: $err"

# 3. Fix the PIN file and reload: the keeper recovers without a restart.
printf '%s\n' "$right_pin" >"$IT_PIN_FILE"
psql_at "$PORT" postgres "SELECT pg_reload_conf()" >/dev/null
wait_ready a "$PORT" ready 60
st=$(status_at "$PORT" postgres "keeper_state, kek_found, last_error IS NULL")
assert_eq "ready|t|t" "$st" "ready again after fixing the PIN file and reloading"
assert_eq "$started" "$(psql_at "$PORT" postgres "SELECT pg_postmaster_start_time()")" \
  "no restart happened"
id=$(psql_at "$PORT" postgres "SELECT envelope.create_key('after_fix')")
assert_contains "$id" "-" "keys can be created again"

# 4. Neither PIN ever reached the server log (written at debug1).
log=$(it_log a)
assert_file_contains "$log" "DEBUG:" "the log was written at debug1"
assert_file_not_contains "$log" "$wrong_pin" "the wrong PIN is not in the log"
assert_file_not_contains "$log" "$right_pin" "the right PIN is not in the log"
if [[ -s $IT_HSM/so.pin ]]; then  # NSS's database token has no SO PIN
  so_pin=$(head -n 1 "$IT_HSM/so.pin")
  assert_file_not_contains "$log" "$so_pin" "the SO PIN is not in the log"
fi
echo "t_pin_failure: all checks passed"
