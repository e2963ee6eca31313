#!/usr/bin/env bash
# t_log_plaintext: no plaintext reaches the server log through pg_envelope's errors. With the
# defaults log_min_error_statement = error and log_statement = none, and log_min_messages =
# debug1: the HSM down during INSERT and COPY FROM, a plaintext file loaded in sealed mode,
# a tampered value, a role without the key privilege writing, and a context-bound value read
# without its context. Each fails (as it must) and a marker plaintext never appears in the log,
# while the errors themselves are logged.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=$((IT_PORT_BASE + 640))
MARKER="PLAINMARK-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
it_init
pg_init a
pg_conf a "log_min_messages = debug1"
pg_start a "$PORT"
wait_ready a "$PORT"
psql_at "$PORT" postgres "CREATE EXTENSION pg_envelope"
psql_at "$PORT" postgres "CREATE TABLE t (id int, v encrypted_text);
  CREATE ROLE nokey LOGIN; GRANT INSERT, SELECT ON t TO nokey"
LOG=$(it_log a)

# A role without the encrypt privilege writes the marker.
out=$(as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT" -U nokey -d postgres -AtX -q \
  -c "INSERT INTO t VALUES (1, '$MARKER denied')" 2>&1) && fail "nokey could insert"
assert_contains "$out" "permission denied for key" "denied insert"

# A context-bound value read without its context, in a statement that carries the marker.
psql_at "$PORT" postgres "INSERT INTO t VALUES (2, envelope.encrypt('x', NULL, '\\x01'))"
psql_fail "$PORT" postgres "SELECT v, '$MARKER select' FROM t WHERE id = 2" >/dev/null

# A tampered value.
psql_fail "$PORT" postgres "SELECT envelope.decrypt_bytea(overlay(envelope.encrypt_bytea('a') PLACING '\\xff' FROM 40 FOR 1)), '$MARKER tamper'" >/dev/null

# A plaintext file loaded in sealed mode (COPY's CONTEXT line would quote the row).
printf '3\t%s copy sealed\n' "$MARKER" >"$IT_TMP/plain.tsv"
chmod 644 "$IT_TMP/plain.tsv"
psql_fail "$PORT" postgres "SET envelope.io = sealed; COPY t FROM '$IT_TMP/plain.tsv'" >/dev/null

# The HSM down: a PIN file that does not exist, then INSERT and COPY FROM under a key that is
# not in the shared cache (cached keys keep working while the HSM is down, by design).
psql_at "$PORT" postgres "SELECT envelope.create_key('evicted')" >/dev/null
pg_conf a "envelope.pin_file = '$IT_TMP/no-such-pin'"
psql_at "$PORT" postgres "SELECT pg_reload_conf()" >/dev/null
wait_ready a "$PORT" failed 30
psql_at "$PORT" postgres "SELECT envelope._forget_key(id) FROM envelope.keyring WHERE name = 'evicted'" >/dev/null
psql_fail "$PORT" postgres "INSERT INTO t VALUES (4, envelope.encrypt('$MARKER insert', 'no_such_key'))" >/dev/null
psql_fail "$PORT" postgres "SET envelope.default_key = 'evicted'; INSERT INTO t VALUES (5, '$MARKER insert hsm down')" >/dev/null
printf '6\t%s copy hsm down\n' "$MARKER" >"$IT_TMP/plain2.tsv"
chmod 644 "$IT_TMP/plain2.tsv"
psql_fail "$PORT" postgres "SET envelope.default_key = 'evicted'; COPY t FROM '$IT_TMP/plain2.tsv'" >/dev/null

sleep 0.5
assert_file_contains "$LOG" "permission denied for key" "the denial is logged"
assert_file_contains "$LOG" "invalid sealed encrypted_text value" "the sealed-mode COPY error is logged"
assert_file_contains "$LOG" "the HSM is not available" "the HSM errors are logged"
assert_file_not_contains "$LOG" "$MARKER" "no marker plaintext in the server log"
