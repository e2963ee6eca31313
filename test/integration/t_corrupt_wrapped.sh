#!/usr/bin/env bash
# t_corrupt_wrapped: a wrapped DEK that was modified (a), copied from another key's row (c) or
# truncated (d) never yields a key: after a restart the loader warns about exactly those keys,
# values sealed under them fail with SQLSTATE XX001 naming the key, the keys view reports a
# problem, and the intact keys (b, default) keep working. Restoring the original wrapped bytes
# makes a usable again without a restart.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=$((IT_PORT_BASE + 120))
it_init
pg_init a
pg_start a "$PORT"
wait_ready a "$PORT"

psql_at "$PORT" postgres "CREATE EXTENSION pg_envelope" || fail "CREATE EXTENSION"
for k in a b c d; do psql_at "$PORT" postgres "SELECT envelope.create_key('$k')" >/dev/null; done
psql_at "$PORT" postgres "
  CREATE TABLE t (k text PRIMARY KEY, v encrypted_text);
  INSERT INTO t VALUES ('default', 'plain under default'),
    ('a', envelope.encrypt('plain under a', 'a')), ('b', envelope.encrypt('plain under b', 'b')),
    ('c', envelope.encrypt('plain under c', 'c')), ('d', envelope.encrypt('plain under d', 'd'))"
assert_eq 5 "$(psql_at "$PORT" postgres "SELECT count(*) FROM t WHERE v::text = 'plain under ' || k")" \
  "all five values decrypt before the corruption"
kcv_b=$(psql_at "$PORT" postgres "SELECT key_check_value FROM envelope.keys WHERE name = 'b'")
kcv_default=$(psql_at "$PORT" postgres "SELECT key_check_value FROM envelope.keys WHERE name = 'default'")
[[ $kcv_b =~ ^[0-9a-f]{16}$ ]] || fail "key check value of b looks wrong: '$kcv_b'"
# 61 bytes wrapped with AES-GCM, 57 with a key wrap (tokens without GCM: PGE_TOKEN=opencryptoki).
format=$(psql_at "$PORT" postgres "SELECT wrap_format FROM envelope.keys WHERE name = 'a'")
case $format in aes-gcm) size=61 ;; rfc3394|rfc5649) size=57 ;; *) fail "unknown wrap format '$format'" ;; esac
assert_eq "$size" "$(psql_at "$PORT" postgres "SELECT length(wrapped_dek) FROM envelope.keyring WHERE name = 'a'")" \
  "wrapped DEKs ($format) are $size bytes"

# Restart (empty cache, everything reloaded), then corrupt the keyring as a superuser.
pg_restart a
wait_ready a "$PORT"
assert_eq "5|5|0" "$(status_at "$PORT" postgres "keys_cached, keys_loaded, load_failures")" \
  "intact keyring: all 5 keys load after a restart"
orig_a=$(psql_at "$PORT" postgres "SELECT encode(wrapped_dek, 'hex') FROM envelope.keyring WHERE name = 'a'")
psql_at "$PORT" postgres "
  UPDATE envelope.keyring SET wrapped_dek = set_byte(wrapped_dek, 30, get_byte(wrapped_dek, 30) # 1)
    WHERE name = 'a';
  UPDATE envelope.keyring SET wrapped_dek = (SELECT wrapped_dek FROM envelope.keyring WHERE name = 'b')
    WHERE name = 'c';
  UPDATE envelope.keyring SET wrapped_dek = substring(wrapped_dek FROM 1 FOR $((size - 1))) WHERE name = 'd'"
assert_eq 1 "$(psql_at "$PORT" postgres "SELECT count(DISTINCT wrapped_dek) FROM envelope.keyring WHERE name IN ('b', 'c')")" \
  "c now holds b's wrapped bytes"

pg_restart a
wait_ready a "$PORT"
assert_eq "2|2|3" "$(status_at "$PORT" postgres "keys_cached, keys_loaded, load_failures")" \
  "after the restart: default and b loaded, a, c and d failed"

# Values under a, c (and d) fail with XX001 and name the key; b and default decrypt.
for k in a c; do
  out=$(psql_fail_state "$PORT" postgres XX001 "SELECT v FROM t WHERE k = '$k'")
  assert_contains "$out" "cannot unwrap key \"$k\" version 1" "$k: reading the value fails with XX001 naming the key"
  assert_contains "$out" "failed authentication" "$k: the detail says the wrapped key failed authentication"
  out=$(psql_fail_state "$PORT" postgres XX001 "SELECT envelope.decrypt(v) FROM t WHERE k = '$k'")
  assert_contains "$out" "key \"$k\" version 1" "$k: envelope.decrypt() fails with XX001 naming the key"
  out=$(psql_fail_state "$PORT" postgres XX001 "SELECT envelope.encrypt('new', '$k')")
  assert_contains "$out" "key \"$k\" version 1" "$k: encrypting under it fails with XX001 too"
done
out=$(psql_fail_state "$PORT" postgres XX001 "SELECT v FROM t WHERE k = 'd'")
assert_contains "$out" "wrapped key of key \"d\" version 1" "d (truncated): XX001, malformed, naming the key"
assert_contains "$out" "$((size - 1)) bytes" "d (truncated): the detail gives the length"
assert_eq $'b|plain under b\ndefault|plain under default' \
  "$(psql_at "$PORT" postgres "SELECT k, v FROM t WHERE k IN ('b', 'default') ORDER BY k")" \
  "values under b and default still decrypt"
assert_eq "again b" "$(psql_at "$PORT" postgres "SELECT envelope.encrypt('again b', 'b')::text")" \
  "b can still seal new values"

# The keys view: a problem for a, c, d; b and default keep their key check values.
view=$(psql_at "$PORT" postgres "SELECT name, key_check_value IS NULL, problem IS NOT NULL FROM envelope.keys ORDER BY name")
assert_eq $'a|t|t\nb|f|f\nc|t|t\nd|t|t\ndefault|f|f' "$view" "envelope.keys: problem for a, c, d only"
assert_contains "$(psql_at "$PORT" postgres "SELECT problem FROM envelope.keys WHERE name = 'a'")" \
  "cannot unwrap key \"a\" version 1" "envelope.keys: a's problem names it"
assert_eq "$kcv_b" "$(psql_at "$PORT" postgres "SELECT key_check_value FROM envelope.keys WHERE name = 'b'")" \
  "b: same key check value as before"
assert_eq "$kcv_default" "$(psql_at "$PORT" postgres "SELECT key_check_value FROM envelope.keys WHERE name = 'default'")" \
  "default: same key check value as before"

# The loader warned about exactly the broken keys.
log=$(it_log a)
for k in a c d; do
  assert_file_contains "$log" "WARNING:  pg_envelope: key $k (version 1) in database \"postgres\" cannot be loaded" \
    "the loader's WARNING names $k"
done
for k in b default; do
  assert_file_not_contains "$log" "key $k (version 1) in database \"postgres\" cannot be loaded" \
    "no loader WARNING for $k"
done

# Restoring a's original wrapped bytes (from a backup) makes it usable again without a restart.
psql_at "$PORT" postgres "UPDATE envelope.keyring SET wrapped_dek = decode('$orig_a', 'hex') WHERE name = 'a'"
assert_eq "plain under a" "$(psql_at "$PORT" postgres "SELECT v FROM t WHERE k = 'a'")" \
  "a decrypts again after restoring its wrapped DEK"
echo "t_corrupt_wrapped: all checks passed"
