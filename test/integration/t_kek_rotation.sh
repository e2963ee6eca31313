#!/usr/bin/env bash
# t_kek_rotation: the KEK is replaced without rewriting any table.
# 10,000 keys in 3 databases (plus values under some of them), a streaming standby. A second
# KEK is provisioned beside the first and both servers are told to use it; pg_envelope_rewrap
# re-wraps every key. The first run is interrupted by SIGKILL of the keeper halfway: every
# key stays usable (rows under either KEK), and a second run, while 4 sessions insert and read
# in the 3 databases, finishes the job with 0 errors; progress (keys per KEK label) is visible
# while it runs. The old KEK is then deleted from the token (the provisioning tool refused
# while it was the configured one), both servers restart, and everything decrypts; the standby
# decrypts at every step. The token holds 2 secret keys during the rotation and 1 after.
set -euo pipefail
# shellcheck source=test/integration/lib.sh
source "$(dirname "$0")/lib.sh"

PORT_P=$((IT_PORT_BASE + 890))
PORT_S=$((IT_PORT_BASE + 891))
NKEYS=${KEK_ROTATION_KEYS:-10000}
REWRAP=$ENVELOPE_ROOT/hsm/pg_envelope_rewrap
DBS=(db1 db2 db3)

it_init
pg_init primary
pg_conf primary "wal_level = replica"
pg_conf primary "max_wal_senders = 4"
pg_conf primary "envelope.max_keys = 12000"
pg_conf primary "restart_after_crash = on"
pg_start primary "$PORT_P"
wait_ready primary "$PORT_P"

# pg_envelope in the maintenance database too (status checks run there; its key rotates too).
psql_at "$PORT_P" postgres "CREATE EXTENSION pg_envelope" >/dev/null
per_db=$(((NKEYS + 2) / 3))
for db in "${DBS[@]}"; do
  psql_at "$PORT_P" postgres "CREATE DATABASE $db" >/dev/null
  psql_at "$PORT_P" "$db" "CREATE EXTENSION pg_envelope" >/dev/null
  psql_at "$PORT_P" "$db" "SELECT count(envelope.create_key('k' || g)) FROM generate_series(2, $per_db) g" >/dev/null
  psql_at "$PORT_P" "$db" "
    CREATE TABLE t (id serial PRIMARY KEY, k text, v encrypted_text);
    INSERT INTO t (k, v) SELECT 'k' || (g % 50 + 2), envelope.encrypt('$db value ' || g, 'k' || (g % 50 + 2))
      FROM generate_series(1, 1000) g;
    INSERT INTO t (k, v) SELECT 'default', 'default value ' || g FROM generate_series(1, 100) g" >/dev/null
done
total=$(for db in "${DBS[@]}"; do psql_at "$PORT_P" "$db" "SELECT count(*) FROM envelope.keyring"; done | awk '{s += $1} END {print s}')
[[ $total -ge $NKEYS ]] || fail "expected $NKEYS keys, made $total"
pass "$total keys in 3 databases, 1,100 values each"

digest() {  # digest PORT: every value of every database, decrypted
  local port=$1 db
  for db in "${DBS[@]}"; do
    psql_at "$port" "$db" "SELECT count(*) || ':' || md5(string_agg(id || '=' || v::text, '|' ORDER BY id)) FROM t WHERE id <= 1100"
  done | paste -sd' '
}
before=$(digest "$PORT_P")

# Streaming standby on the same token.
as_pg "$PG_BIN/pg_basebackup" -h "$IT_SOCK" -p "$PORT_P" -U postgres -D "$IT_TMP/standby" \
  -R -X stream -c fast >"$IT_TMP/basebackup.log" 2>&1 || { cat "$IT_TMP/basebackup.log"; fail "pg_basebackup"; }
pg_conf standby "hot_standby = on"
pg_start standby "$PORT_S"
wait_ready standby "$PORT_S" ready 60
assert_eq "$before" "$(digest "$PORT_S")" "the standby decrypts every value before the rotation"

# secret_keys LABEL: the number of secret keys on the token, listed by the provisioning tool
# (checking that the KEK LABEL exists).
secret_keys() {
  it_provision_tool --kek-label "$1" --check 2>/dev/null | grep -c "^secret key on the token:" || true
}
assert_eq 1 "$(secret_keys pg_envelope-kek)" "the token holds 1 secret key"

# ---- step 1: a second KEK beside the first; both servers use it for new wraps ----
provision_token "$IT_HSM" --kek-label pg_envelope-kek2 >"$IT_TMP/provision2.log" 2>&1 ||
  { cat "$IT_TMP/provision2.log"; fail "provisioning the second KEK"; }
assert_file_contains "$IT_TMP/provision2.log" "KEK 'pg_envelope-kek2': created" "the new KEK is created"
assert_eq 2 "$(secret_keys pg_envelope-kek2)" "the token holds 2 secret keys during the rotation"
for s in primary standby; do pg_conf "$s" "envelope.kek_label = 'pg_envelope-kek2'"; done
as_pg "$PG_BIN/pg_ctl" -D "$IT_TMP/primary" reload >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$IT_TMP/standby" reload >/dev/null
sleep 1
wait_ready primary "$PORT_P"
wait_ready standby "$PORT_S"

# ---- step 2a: rewrap, interrupted by SIGKILL of the keeper halfway ----
rewrap() { as_pg "$REWRAP" -h "$IT_SOCK" -p "$PORT_P" -U postgres "$@"; }
rewrap --batch 200 >"$IT_TMP/rewrap1.log" 2>&1 &
rpid=$!
for ((i = 0; i < 300; i++)); do
  moved=$(psql_at "$PORT_P" db1 "SELECT coalesce(sum(keys) FILTER (WHERE kek_label = 'pg_envelope-kek2'), 0) FROM envelope.kek_usage" 2>/dev/null || echo 0)
  [[ $moved -ge 1000 ]] && break
  sleep 0.05
done
kpid=$(psql_at "$PORT_P" postgres "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_envelope keeper'")
kill -KILL "$kpid"
wait "$rpid" && fail "the interrupted rewrap reported success"
sleep 1
wait_ready primary "$PORT_P" ready 60
split=$(for db in "${DBS[@]}"; do psql_at "$PORT_P" "$db" "SELECT string_agg(kek_label || '=' || keys, ',') FROM envelope.kek_usage"; done | paste -sd' ')
[[ $split == *pg_envelope-kek=* && $split == *pg_envelope-kek2=* ]] || fail "expected keys under both KEKs after the interruption: $split"
pass "interrupted halfway (keeper SIGKILLed): $split"
assert_eq "$before" "$(digest "$PORT_P")" "every value decrypts with keys under either KEK (primary, after the crash)"
wait_ready standby "$PORT_S" ready 60
assert_eq "$before" "$(digest "$PORT_S")" "and on the standby"

# ---- step 2b: the second run finishes, while 4 sessions insert and read ----
stop_at=$(psql_at "$PORT_P" postgres "SELECT clock_timestamp() + interval '8 seconds'")
for s in 1 2 3 4; do
  db=${DBS[$((s % 3))]}
  as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT_P" -U postgres -d "$db" -AtX -q -v ON_ERROR_STOP=1 <<SQL >"$IT_TMP/load$s.log" 2>&1 &
DO \$\$
DECLARE i int := 0; n bigint;
BEGIN
  WHILE clock_timestamp() < '$stop_at'::timestamptz LOOP
    i := i + 1;
    INSERT INTO t (k, v) VALUES ('k' || (i % 50 + 2), envelope.encrypt('load $s ' || i, 'k' || (i % 50 + 2)));
    SELECT count(*) INTO n FROM t WHERE id % 97 = $s AND length(v::text) > 0;
    COMMIT;
  END LOOP;
END
\$\$;
SQL
done
start=$(date +%s.%N)
rewrap >"$IT_TMP/rewrap2.log" 2>&1 &
rpid=$!
readings=()
while kill -0 "$rpid" 2>/dev/null; do
  r=$(for db in "${DBS[@]}"; do
        psql_at "$PORT_P" "$db" "SELECT coalesce(sum(keys) FILTER (WHERE kek_label = 'pg_envelope-kek'), 0) FROM envelope.kek_usage" 2>/dev/null || echo x
      done | awk '$1 == "x" { bad = 1 } { s += $1 } END { if (!bad) print s }')
  [[ -n $r ]] && readings+=("$r")
  sleep 0.2
done
wait "$rpid" || { cat "$IT_TMP/rewrap2.log"; fail "the second rewrap failed"; }
took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
wait
for s in 1 2 3 4; do
  [[ ! -s $IT_TMP/load$s.log ]] || { cat "$IT_TMP/load$s.log"; fail "load session $s had errors"; }
done
pass "4 sessions inserted and read throughout the rewrap: 0 errors"
assert_file_contains "$IT_TMP/rewrap2.log" "every key is under KEK 'pg_envelope-kek2'" "pg_envelope_rewrap reports completion"
distinct=$(printf '%s\n' "${readings[@]}" | uniq | wc -l)
printf '%s\n' "${readings[@]}" | sort -rnc || fail "progress went backwards: ${readings[*]}"
[[ $distinct -ge 3 ]] || fail "fewer than 3 progress readings: ${readings[*]}"
pass "rewrap of the remaining keys took ${took}s; keys still under the old KEK, read while it ran: $(printf '%s\n' "${readings[@]}" | uniq | paste -sd' ')"
assert_eq "$before" "$(digest "$PORT_S")" "the standby decrypts every value after the rewrap"
rewrap --check >"$IT_TMP/check.log" 2>&1 || { cat "$IT_TMP/check.log"; fail "--check after the rotation"; }
old=$(for db in "${DBS[@]}"; do psql_at "$PORT_P" "$db" "SELECT count(*) FROM envelope.keyring WHERE kek_label = 'pg_envelope-kek' AND state <> 'destroyed'"; done | paste -sd+)
assert_eq "0+0+0" "$old" "no keyring row of any database references the old KEK"

# ---- step 3: delete the old KEK (refused while it is the configured one), restart ----
out=$(it_provision_tool --kek-label pg_envelope-kek --delete-kek pg_envelope-kek 2>&1) &&
  fail "deleting the configured KEK succeeded"
assert_contains "$out" "refusing to delete KEK" "the tool refuses to delete the KEK named by --kek-label"
it_provision_tool --kek-label pg_envelope-kek2 --delete-kek pg_envelope-kek >"$IT_TMP/delete.log" 2>&1 ||
  { cat "$IT_TMP/delete.log"; fail "deleting the old KEK"; }
assert_file_contains "$IT_TMP/delete.log" "KEK 'pg_envelope-kek': deleted" "the old KEK is deleted"
assert_eq 1 "$(secret_keys pg_envelope-kek2)" "the token holds 1 secret key again"
pg_restart primary
pg_restart standby
wait_ready primary "$PORT_P" ready 60
wait_ready standby "$PORT_S" ready 60
assert_eq "$before" "$(digest "$PORT_P")" "after the restart without the old KEK every value decrypts (primary)"
sleep 1
assert_eq "$before" "$(digest "$PORT_S")" "and on the standby"
loaded=$(status_at "$PORT_P" postgres load_failures)
assert_eq 0 "$loaded" "the start-up load had no failures"
