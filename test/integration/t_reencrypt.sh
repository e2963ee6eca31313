#!/usr/bin/env bash
# t_reencrypt: envelope.reencrypt() moves 1,000,000 values (a table without a primary key) to
# a new key version while other sessions update the same table: every value ends under the new
# version, no update is lost, the progress view's readings increase while it runs; a canceled
# run records it and a second CALL finishes the job. Prints the rate next to a plain UPDATE
# that rewrites the same column.
set -euo pipefail
# shellcheck source=test/integration/lib.sh
source "$(dirname "$0")/lib.sh"

PORT=$((IT_PORT_BASE + 870))
ROWS=${REENCRYPT_ROWS:-1000000}

it_init
pg_init a
pg_conf a "max_wal_size = '4GB'"
pg_start a "$PORT"
wait_ready a "$PORT"
psql_at "$PORT" postgres "CREATE EXTENSION pg_envelope" >/dev/null
psql_at "$PORT" postgres "SELECT envelope.create_key('rk')" >/dev/null
psql_at "$PORT" postgres "
  CREATE TABLE t (id int, n int NOT NULL DEFAULT 0, v encrypted_text);
  INSERT INTO t (id, v) SELECT g, envelope.encrypt('row ' || g, 'rk') FROM generate_series(1, $ROWS) g;
  CREATE INDEX ON t (id)" >/dev/null
psql_at "$PORT" postgres "VACUUM ANALYZE t" >/dev/null
psql_at "$PORT" postgres "SELECT envelope.rotate_key('rk')" >/dev/null

# Writers: one rewrites values (recording what it wrote last per id), one bumps n only, which
# copies the old envelope into a new row version, possibly behind the re-encryption's position.
WRITES=$IT_TMP/writes.sql
run_writers() {
  local until=$1
  as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT" -U postgres -d postgres -AtX -q -v ON_ERROR_STOP=1 <<SQL >"$IT_TMP/writer1.log" 2>&1 &
CREATE TABLE written (id int PRIMARY KEY, val text);
DO \$\$
DECLARE i bigint := 0; k int;
BEGIN
  WHILE clock_timestamp() < '$until'::timestamptz LOOP
    i := i + 1;
    k := 1 + (i * 7919) % $ROWS;
    UPDATE t SET v = envelope.encrypt('upd ' || i, 'rk') WHERE id = k;
    INSERT INTO written VALUES (k, 'upd ' || i) ON CONFLICT (id) DO UPDATE SET val = excluded.val;
    COMMIT;
  END LOOP;
END
\$\$;
SQL
  as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT" -U postgres -d postgres -AtX -q -v ON_ERROR_STOP=1 <<SQL >"$IT_TMP/writer2.log" 2>&1 &
DO \$\$
DECLARE i bigint := 0;
BEGIN
  WHILE clock_timestamp() < '$until'::timestamptz LOOP
    i := i + 1;
    UPDATE t SET n = n + 1 WHERE id = 1 + (i * 104729) % $ROWS;
    COMMIT;
  END LOOP;
END
\$\$;
SQL
}

until=$(psql_at "$PORT" postgres "SELECT clock_timestamp() + interval '12 seconds'")
run_writers "$until"
sleep 1
start=$(date +%s.%N)
as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT" -U postgres -d postgres -AtX -q -v ON_ERROR_STOP=1 \
  -c "CALL envelope.reencrypt('t', 'v', 'rk')" >"$IT_TMP/reencrypt.log" 2>&1 &
rpid=$!
# Progress from another session while it runs.
readings=()
for ((i = 0; i < 200; i++)); do
  r=$(psql_at "$PORT" postgres "SELECT rows_done || ' ' || running FROM envelope.reencrypt_progress WHERE table_name = 't'::regclass" || true)
  [[ -n $r ]] && readings+=("$r")
  kill -0 "$rpid" 2>/dev/null || break
  sleep 0.5
done
wait "$rpid" || { cat "$IT_TMP/reencrypt.log"; fail "reencrypt failed"; }
elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
wait   # the writers
grep -q ERROR "$IT_TMP/writer1.log" "$IT_TMP/writer2.log" && { cat "$IT_TMP"/writer*.log; fail "a writer failed"; }
running=$(printf '%s\n' "${readings[@]}" | awk '$2 == "true" {print $1}')
distinct=$(sort -un <<<"$running" | wc -l)
[[ $distinct -ge 3 ]] || fail "fewer than 3 distinct progress readings while running: ${readings[*]}"
sort -nc <<<"$running" || fail "progress went backwards: $running"
pass "progress visible from another session while running: $distinct increasing readings"

assert_eq "2|$ROWS" "$(psql_at "$PORT" postgres "SELECT string_agg(key_version || '|' || value_count, ',') FROM envelope.key_usage('t')")" \
  "every value is under version 2"
assert_eq 0 "$(psql_at "$PORT" postgres "SELECT count(*) FROM t JOIN written w USING (id) WHERE t.v::text <> w.val")" \
  "no lost update: every value a writer wrote last is the value in the table"
nw=$(psql_at "$PORT" postgres "SELECT count(*) FROM written")
bumped=$(psql_at "$PORT" postgres "SELECT count(*) FROM t WHERE n > 0")
[[ $nw -gt 10 && $bumped -gt 10 ]] || fail "the writers did too little ($nw values, $bumped bumps)"
pass "concurrent writers: $nw values rewritten, $bumped rows bumped (old envelopes copied)"
assert_eq 0 "$(psql_at "$PORT" postgres "SELECT count(*) FROM t LEFT JOIN written w USING (id) WHERE w.id IS NULL AND t.v::text <> 'row ' || t.id")" \
  "every other value still opens to its original plaintext"
read -r done_rows passes < <(psql_at "$PORT" postgres "SELECT rows_done || ' ' || passes FROM envelope.reencrypt_progress WHERE table_name = 't'::regclass" | tr '|' ' ')
rate=$(awk -v n="$done_rows" -v s="$elapsed" 'BEGIN { printf "%d", n / s }')
pass "reencrypt: $done_rows rows in ${elapsed}s over $passes pass(es): $rate rows/s"

# Cancel halfway, then resume.
psql_at "$PORT" postgres "SELECT envelope.rotate_key('rk')" >/dev/null
as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT" -U postgres -d postgres -AtX -q \
  -c "SET application_name = 'reenc'" -c "CALL envelope.reencrypt('t', 'v', 'rk', batch_pages => 16)" \
  >"$IT_TMP/cancel.log" 2>&1 &
cpid=$!
for ((i = 0; i < 100; i++)); do
  d=$(psql_at "$PORT" postgres "SELECT rows_done FROM envelope.reencrypt_progress WHERE table_name = 't'::regclass AND running" || true)
  [[ -n $d && $d -gt 0 ]] && break
  sleep 0.1
done
psql_at "$PORT" postgres "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'reenc'" >/dev/null
wait "$cpid" && fail "the canceled CALL succeeded"
assert_contains "$(cat "$IT_TMP/cancel.log")" "canceling statement due to user request" "the CALL was canceled"
# A cancel inside a batch is recorded as 'canceled'; one that lands between batches (at the
# commit or the progress update) leaves 'rewriting'. Either way the run is not shown running.
state=$(psql_at "$PORT" postgres "SELECT phase || ' ' || running FROM envelope.reencrypt_progress WHERE table_name = 't'::regclass")
[[ $state == "canceled false" || $state == "rewriting false" ]] || fail "after the cancel the run shows '$state'"
pass "after the cancel the progress view shows it not running ($state)"
partial=$(psql_at "$PORT" postgres "SELECT value_count FROM envelope.key_usage('t') WHERE key_version = 3")
[[ $partial -gt 0 && $partial -lt $ROWS ]] || fail "expected a partial move before the cancel, got $partial"
pass "canceled after moving $partial of $ROWS values (committed batches stay)"
psql_at "$PORT" postgres "CALL envelope.reencrypt('t', 'v', 'rk')" >/dev/null
assert_eq "3|$ROWS" "$(psql_at "$PORT" postgres "SELECT string_agg(key_version || '|' || value_count, ',') FROM envelope.key_usage('t')")" \
  "the second CALL finished the job"
assert_eq done "$(psql_at "$PORT" postgres "SELECT phase FROM envelope.reencrypt_progress WHERE table_name = 't'::regclass")" "phase done"
# Versions 1 and 2 hold nothing now: destroy without force.
psql_at "$PORT" postgres "SELECT envelope.destroy_key('rk', 1), envelope.destroy_key('rk', 2)" >/dev/null
pass "versions 1 and 2 destroyed without force (key_usage showed 0)"

# A plain UPDATE that rewrites the same column, for the rate comparison.
ustart=$(date +%s.%N)
psql_at "$PORT" postgres "UPDATE t SET v = envelope.encrypt(envelope.decrypt(v), 'rk')" >/dev/null
uelapsed=$(awk -v a="$ustart" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
urate=$(awk -v n="$ROWS" -v s="$uelapsed" 'BEGIN { printf "%d", n / s }')
pass "plain UPDATE of the same column: $ROWS rows in ${uelapsed}s: $urate rows/s (reencrypt: $rate rows/s, online)"
