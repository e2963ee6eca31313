#!/usr/bin/env bash
# t_shredding: once destroy_key() commits, no session opens a value under that DEK again,
# whatever it does: a REPEATABLE READ snapshot older than the destroy (with and without the key
# already in its cipher cache), a destroy made in session_replication_role = replica (what
# logical-replication apply workers use), a prepared transaction (2PC), and any attempt to undo
# it through the keyring: DELETE, TRUNCATE (also in replica mode), DELETE + re-INSERT of a saved
# row, or updating the row back to active. (On a standby: t_streaming_replica.)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=$((IT_PORT_BASE + 620))
it_init
pg_init a
pg_conf a "max_prepared_transactions = 4"
pg_start a "$PORT"
wait_ready a "$PORT"
psql_at "$PORT" postgres "CREATE EXTENSION pg_envelope"

# One table, one key per vector, ten values under each.
setup_key() {  # KEY
  psql_at "$PORT" postgres "SELECT envelope.create_key('$1');
    INSERT INTO t SELECT '$1', g, envelope.encrypt('$1 value ' || g, '$1') FROM generate_series(1, 10) g" >/dev/null
}
psql_at "$PORT" postgres "CREATE TABLE t (k text, n int, v encrypted_text)"
for k in rr rr_cached replica twopc undo; do setup_key "$k"; done

opened() {  # KEY: how many of its values a fresh session opens (errors count as not opened)
  psql_at "$PORT" postgres "
    CREATE OR REPLACE FUNCTION pg_temp.opens(x encrypted_text) RETURNS int LANGUAGE plpgsql AS
      \$\$ BEGIN PERFORM envelope.decrypt(x); RETURN 1; EXCEPTION WHEN OTHERS THEN RETURN 0; END \$\$;
    SELECT sum(pg_temp.opens(v)) FROM t WHERE k = '$1'"
}
for k in rr rr_cached replica twopc undo; do assert_eq 10 "$(opened "$k")" "$k: 10 values open before"; done

# A session that runs psql commands from a pipe, so it can hold a snapshot across steps.
start_session() {  # NAME
  mkfifo "$IT_TMP/$1.in"
  chmod 666 "$IT_TMP/$1.in"
  as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT" -U postgres -d postgres -AtX -q \
    -f "$IT_TMP/$1.in" >"$IT_TMP/$1.out" 2>&1 &
  eval "exec {fd_$1}>\"$IT_TMP/$1.in\""
}
say_to() { local fd="fd_$1"; echo "$2" >&"${!fd}"; sleep 0.3; }
end_session() { local fd="fd_$1"; eval "exec ${!fd}>&-"; wait; }

# 1. REPEATABLE READ: the snapshot predates the destroy; the DEK must not come back.
start_session rr
say_to rr "BEGIN ISOLATION LEVEL REPEATABLE READ;"
say_to rr "SELECT 'snapshot', count(*) FROM t;"
say_to rr "SELECT 'cached', envelope.decrypt(v) FROM t WHERE k = 'rr_cached' AND n = 1;"
psql_at "$PORT" postgres "SELECT envelope.destroy_key('rr', 1, force => true), envelope.destroy_key('rr_cached', 1, force => true)" >/dev/null
say_to rr "SELECT 'after', envelope.decrypt(v) FROM t WHERE k = 'rr' AND n = 1;"
say_to rr "SELECT 'after_cached', envelope.decrypt(v) FROM t WHERE k = 'rr_cached' AND n = 2;"
say_to rr "COMMIT;"
end_session rr
out=$(cat "$IT_TMP/rr.out")
assert_contains "$out" "cached|rr_cached value 1" "rr: the old snapshot decrypted before the destroy"
assert_not_contains "$out" "after|" "rr: after the destroy the old snapshot opens nothing"
assert_not_contains "$out" "after_cached|" "rr: not even with the key in its cipher cache"
assert_contains "$out" "has been destroyed" "rr: the error says the key version was destroyed"
assert_eq 0 "$(opened rr)" "rr: 0 values open in other sessions afterwards"
assert_eq 0 "$(opened rr_cached)" "rr_cached: 0 values open in other sessions afterwards"

# 2. A destroy in replica mode (apply workers skip ordinary triggers).
start_session reader
say_to reader "SELECT 'warm', envelope.decrypt(v) FROM t WHERE k = 'replica' AND n = 1;"
psql_at "$PORT" postgres "SET session_replication_role = replica; SELECT envelope.destroy_key('replica', 1, force => true)" >/dev/null
say_to reader "SELECT 'after', envelope.decrypt(v) FROM t WHERE k = 'replica' AND n = 2;"
end_session reader
out=$(cat "$IT_TMP/reader.out")
assert_contains "$out" "warm|replica value 1" "replica: a session had the key cached"
assert_not_contains "$out" "after|" "replica: that session opens nothing after the destroy"
assert_eq 0 "$(opened replica)" "replica: 0 values open"

# 3. Two-phase commit: the destroy is prepared in one session and committed from another.
psql_at "$PORT" postgres "BEGIN; SELECT envelope.destroy_key('twopc', 1, force => true); PREPARE TRANSACTION 'shred'" >/dev/null
assert_eq 10 "$(opened twopc)" "twopc: values still open while the destroy is only prepared"
start_session holder
say_to holder "SELECT 'warm', envelope.decrypt(v) FROM t WHERE k = 'twopc' AND n = 1;"
psql_at "$PORT" postgres "COMMIT PREPARED 'shred'"
say_to holder "SELECT 'after', envelope.decrypt(v) FROM t WHERE k = 'twopc' AND n = 2;"
end_session holder
assert_not_contains "$(cat "$IT_TMP/holder.out")" "after|" "twopc: a session with the key cached opens nothing after COMMIT PREPARED"
assert_eq 0 "$(opened twopc)" "twopc: 0 values open"

# 4. Undoing a destroy through the keyring is refused, in replica mode too.
saved=$(psql_at "$PORT" postgres "SELECT id || ' ' || encode(wrapped_dek, 'hex') || ' ' || kek_label FROM envelope.keyring WHERE name = 'undo'")
read -r undo_id undo_wrapped undo_kek <<<"$saved"
psql_at "$PORT" postgres "SELECT envelope.destroy_key('undo', 1, force => true)" >/dev/null
for sql in "DELETE FROM envelope.keyring WHERE name = 'undo'" \
           "TRUNCATE envelope.keyring" \
           "SET session_replication_role = replica; DELETE FROM envelope.keyring WHERE name = 'undo'" \
           "SET session_replication_role = replica; TRUNCATE envelope.keyring" \
           "UPDATE envelope.keyring SET state = 'active', wrapped_dek = decode('$undo_wrapped', 'hex') WHERE id = '$undo_id'" \
           "SET session_replication_role = replica; UPDATE envelope.keyring SET state = 'active', wrapped_dek = decode('$undo_wrapped', 'hex') WHERE id = '$undo_id'" \
           "INSERT INTO envelope.keyring (id, name, version, state, kek_label, wrapped_dek) VALUES ('$undo_id', 'undo', 1, 'active', '$undo_kek', decode('$undo_wrapped', 'hex'))"; do
  out=$(psql_fail "$PORT" postgres "$sql")
  pass "refused: ${sql:0:70}"
done
assert_eq 0 "$(opened undo)" "undo: 0 values open after every attempt"
assert_eq "destroyed" "$(psql_at "$PORT" postgres "SELECT state FROM envelope.keyring WHERE id = '$undo_id'")" \
  "undo: the row is still destroyed"
# The other keys were never touched.
assert_eq 10 "$(psql_at "$PORT" postgres "SELECT count(*) FROM t WHERE k = 'rr' AND v IS NOT NULL")" "rows stay (only the DEK is gone)"
