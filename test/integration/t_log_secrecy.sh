#!/usr/bin/env bash
# t_log_secrecy: with log_min_messages = debug1 the server log, after normal use and after
# provoked errors (wrong-context decrypt, tampered and truncated values, a corrupted wrapped
# key, a wrong PIN via reload), contains no PIN, no wrapped DEK bytes (hex or base64), and no
# marker plaintext (raw, hex or base64).
#
# What this does and does not prove: DEKs cannot be read from SQL, so "no key bytes" is
# checked through their wrapped form (the full wrapped DEK and its ciphertext part), not the raw
# DEK. The markers never appear in any SQL text (they travel as COPY data), so a marker in the
# log could only come from the extension (or PostgreSQL) printing a decrypted value; error
# statements are logged (log_min_error_statement = error) but contain no marker.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=$((IT_PORT_BASE + 150))
it_init
pg_init a
pg_conf a "log_min_messages = debug1"
pg_conf a "log_statement = 'none'"
pg_conf a "log_min_error_statement = error"
pg_start a "$PORT"
wait_ready a "$PORT"
LOG=$(it_log a)

# psql_stdin DB SQL...: runs the -c commands with this script's stdin (COPY FROM STDIN data).
psql_stdin() {
  local db=$1; shift
  local args=() c
  for c in "$@"; do args+=(-c "$c"); done
  as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT" -U postgres -d "$db" -AtX -q -v ON_ERROR_STOP=1 "${args[@]}"
}

rnd() { od -An -N12 -tx1 /dev/urandom | tr -d ' \n'; }
marker1="MARKER1-$(rnd)"   # encrypted_text under "default" (via COPY)
marker_b="MARKERB-$(rnd)"  # encrypted_text under "b" (via COPY)
marker2="MARKER2-$(rnd)"   # envelope.encrypt() with a context, and encrypt_bytea()

psql_at "$PORT" postgres "CREATE EXTENSION pg_envelope" || fail "CREATE EXTENSION"
for k in a b; do psql_at "$PORT" postgres "SELECT envelope.create_key('$k')" >/dev/null; done
psql_at "$PORT" postgres "CREATE TABLE t (id serial PRIMARY KEY, v encrypted_text);
  CREATE TABLE staging (p text)"
printf '%s\n' "$marker1" | psql_stdin postgres "COPY t (v) FROM STDIN"
printf '%s\n' "$marker_b" | psql_stdin postgres "SET envelope.default_key = 'b'" "COPY t (v) FROM STDIN"
printf '%s\n' "$marker2" | psql_stdin postgres "COPY staging (p) FROM STDIN"
psql_at "$PORT" postgres "
  CREATE TABLE t2 AS SELECT envelope.encrypt(p, 'a', 'ctx1'::bytea) AS v FROM staging;
  CREATE TABLE tb AS SELECT envelope.encrypt_bytea(convert_to(p, 'UTF8'), 'a') AS b FROM staging;
  DROP TABLE staging"
assert_eq "$marker1"$'\n'"$marker_b" "$(psql_at "$PORT" postgres "SELECT v FROM t ORDER BY id")" \
  "the COPY-loaded markers decrypt"
assert_eq "$marker2" "$(psql_at "$PORT" postgres "SELECT envelope.decrypt(v, 'ctx1'::bytea) FROM t2")" \
  "marker2 decrypts with its context"
assert_eq "$marker2" "$(psql_at "$PORT" postgres "SELECT convert_from(envelope.decrypt_bytea(b), 'UTF8') FROM tb")" \
  "marker2 opens as bytea"

# --- Provoked errors.
psql_fail_state "$PORT" postgres XX001 "SELECT envelope.decrypt(v, 'wrong'::bytea) FROM t2" >/dev/null
pass "decrypt with the wrong context fails (XX001)"
psql_fail_state "$PORT" postgres XX001 "SELECT envelope.decrypt(v) FROM t2" >/dev/null
pass "decrypt without the context fails (XX001)"
psql_fail_state "$PORT" postgres XX001 "SELECT envelope.decrypt_bytea(set_byte(b, 40, get_byte(b, 40) # 1)) FROM tb" >/dev/null
pass "a tampered value fails (XX001)"
psql_fail "$PORT" postgres "SELECT envelope.decrypt_bytea(substring(b FROM 1 FOR 30)) FROM tb" >/dev/null
pass "a truncated value fails"
psql_fail "$PORT" postgres "SELECT envelope.decrypt_bytea(b || '\\x00'::bytea) FROM tb" >/dev/null
pass "a value with trailing garbage fails"

# Corrupted wrapped key of b: restart, the loader warns, reading b's value fails.
b_orig=$(psql_at "$PORT" postgres "SELECT encode(wrapped_dek, 'hex') FROM envelope.keyring WHERE name = 'b'")
psql_at "$PORT" postgres "UPDATE envelope.keyring SET wrapped_dek = set_byte(wrapped_dek, 20, get_byte(wrapped_dek, 20) # 128) WHERE name = 'b'"
b_bad=$(psql_at "$PORT" postgres "SELECT encode(wrapped_dek, 'hex') FROM envelope.keyring WHERE name = 'b'")
pg_restart a
wait_ready a "$PORT"
assert_eq 1 "$(status_at "$PORT" postgres load_failures)" "the corrupted key failed to load"
psql_fail_state "$PORT" postgres XX001 "SELECT v FROM t ORDER BY id" >/dev/null
pass "reading a value under the corrupted key fails (XX001)"
assert_file_contains "$LOG" "key b (version 1) in database \"postgres\" cannot be loaded" "the loader warned about b"
psql_at "$PORT" postgres "UPDATE envelope.keyring SET wrapped_dek = decode('$b_orig', 'hex') WHERE name = 'b'"
assert_eq "$marker_b" "$(psql_at "$PORT" postgres "SELECT v FROM t WHERE id = 2")" "b works again once restored"

# Wrong PIN via reload (a different PIN file, owned by postgres, mode 0600), then back.
right_pin=$(head -n 1 "$IT_PIN_FILE")
wrong_pin=9$(od -An -N8 -tu8 /dev/urandom | tr -d ' \n' | cut -c1-15)
[[ $wrong_pin != "$right_pin" ]] || fail "random wrong PIN equals the right one"
wrong_file=$IT_HSM/wrong.pin
printf '%s\n' "$wrong_pin" >"$wrong_file"
chown postgres: "$wrong_file"; chmod 600 "$wrong_file"
psql_at "$PORT" postgres "ALTER SYSTEM SET envelope.pin_file = '$wrong_file'"
psql_at "$PORT" postgres "SELECT pg_reload_conf()" >/dev/null
wait_ready a "$PORT" failed 60
assert_contains "$(status_at "$PORT" postgres last_error)" "CKR_PIN_INCORRECT" "wrong PIN: keeper failed with CKR_PIN_INCORRECT"
psql_fail_state "$PORT" postgres 55000 "SELECT envelope.create_key('while_wrong_pin')" >/dev/null
pass "wrong PIN: create_key fails (55000)"
psql_at "$PORT" postgres "ALTER SYSTEM RESET envelope.pin_file"
psql_at "$PORT" postgres "SELECT pg_reload_conf()" >/dev/null
wait_ready a "$PORT" ready 60
pass "right PIN again: ready"

# Collect every wrapped DEK form before stopping the server (the log is complete after stop).
wrapped=$(psql_at "$PORT" postgres "
  SELECT encode(wrapped_dek, 'hex') || ' ' || replace(encode(wrapped_dek, 'base64'), E'\n', '')
         || ' ' || encode(substring(wrapped_dek FROM 14 FOR 32), 'hex')
  FROM envelope.keyring WHERE wrapped_dek IS NOT NULL")
assert_eq 3 "$(wc -l <<<"$wrapped")" "three wrapped DEKs to look for"
pg_stop a

# --- The log.
assert_file_contains "$LOG" "DEBUG:" "the log was written at debug1"
assert_file_contains "$LOG" "encrypted value failed authentication" "the value errors were logged"
assert_file_not_contains "$LOG" "STATEMENT:" "pg_envelope's errors are logged without their statements"
assert_file_contains "$LOG" "CKR_PIN_INCORRECT" "the login failure was logged"
assert_file_not_contains "$LOG" "$right_pin" "the right PIN is not in the log"
assert_file_not_contains "$LOG" "$wrong_pin" "the wrong PIN is not in the log"
if [[ -s $IT_HSM/so.pin ]]; then  # NSS's database token has no SO PIN
  assert_file_not_contains "$LOG" "$(head -n 1 "$IT_HSM/so.pin")" "the SO PIN is not in the log"
fi
n=0
while read -r hex b64 ct; do
  n=$((n + 1))
  assert_file_not_contains "$LOG" "$hex" "wrapped DEK $n: hex not in the log"
  assert_file_not_contains "$LOG" "${hex^^}" "wrapped DEK $n: upper-case hex not in the log"
  assert_file_not_contains "$LOG" "$b64" "wrapped DEK $n: base64 not in the log"
  assert_file_not_contains "$LOG" "$ct" "wrapped DEK $n: its ciphertext part (hex) not in the log"
done <<<"$wrapped"
assert_file_not_contains "$LOG" "$b_bad" "the corrupted wrapped DEK is not in the log"
assert_file_not_contains "$LOG" "${b_orig:26:64}" "b's wrapped ciphertext part is not in the log"
for m in "$marker1" "$marker_b" "$marker2"; do
  assert_file_not_contains "$LOG" "$m" "marker plaintext not in the log"
  assert_file_not_contains "$LOG" "$(printf '%s' "$m" | od -An -tx1 | tr -d ' \n')" "marker hex not in the log"
  assert_file_not_contains "$LOG" "$(printf '%s' "$m" | base64 -w0)" "marker base64 not in the log"
  assert_file_not_contains "$LOG" "${m#*-}" "marker random part not in the log"
done
echo "t_log_secrecy: all checks passed"
