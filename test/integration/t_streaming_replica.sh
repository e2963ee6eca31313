#!/usr/bin/env bash
# t_streaming_replica: a hot standby made with pg_basebackup -R, started against the same
# SoftHSM token (one KEK), decrypts everything the primary wrote: its keeper starts once the
# standby is consistent, a loader reads the replicated envelope.keyring (read-only), and the
# standby reports the same key check values as the primary. Key creation on the standby fails
# cleanly (read-only transaction, SQLSTATE 25006). A key created on the primary later reaches
# the standby as keyring table data; values sealed with it decrypt there through a lazy unwrap
# by the standby's own keeper. Neither server log holds the marker plaintext.
# A failed create_key / rotate_key on the standby leaves no orphan DEK in its cache, and a
# destroy_key on the primary stops the running standby from decrypting with that key.
set -euo pipefail
# shellcheck source=test/integration/lib.sh
source "$(dirname "$0")/lib.sh"

PORT_P=$((IT_PORT_BASE + 300))
PORT_S=$((IT_PORT_BASE + 301))
MARKER="MARKER-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

it_init
pg_init primary
pg_conf primary "wal_level = replica"
pg_conf primary "max_wal_senders = 4"
pg_start primary "$PORT_P"
wait_ready primary "$PORT_P"

#------------------------------------------------------------------------------
# Primary: keys default + k2, a table with values under each (and NULL / empty / long).
#------------------------------------------------------------------------------
psql_at "$PORT_P" postgres "CREATE EXTENSION pg_envelope" >/dev/null
psql_at "$PORT_P" postgres "SELECT envelope.create_key('k2')" >/dev/null
psql_at "$PORT_P" postgres "
  CREATE TABLE t (id int PRIMARY KEY, k text, v encrypted_text);
  INSERT INTO t SELECT g, 'default', '$MARKER default ' || g FROM generate_series(1, 200) g;
  INSERT INTO t SELECT g, 'k2', envelope.encrypt('$MARKER k2 ' || g, 'k2') FROM generate_series(201, 400) g;
  INSERT INTO t VALUES (401, 'null', NULL), (402, 'empty', ''),
                       (403, 'toasted', repeat('$MARKER long ', 2000));" >/dev/null

digest_sql="SELECT count(*) || ':' || md5(string_agg(id || '=' || coalesce(v::text, '<null>'), '|' ORDER BY id)) FROM t"
keys_sql="SELECT string_agg(name || ' ' || id || ' ' || version || ' ' || state || ' '
            || coalesce(key_check_value, 'NONE:' || problem), E'\n' ORDER BY name, version) FROM envelope.keys"
digest_p=$(psql_at "$PORT_P" postgres "$digest_sql")
[[ $digest_p == 403:* ]] || fail "unexpected digest on the primary: $digest_p"
keys_p=$(psql_at "$PORT_P" postgres "$keys_sql")
assert_eq 2 "$(wc -l <<<"$keys_p")" "primary: 2 keys (default, k2)"

#------------------------------------------------------------------------------
# Standby: pg_basebackup -R as postgres, same token (same softhsm2.conf), hot_standby on.
#------------------------------------------------------------------------------
as_pg "$PG_BIN/pg_basebackup" -h "$IT_SOCK" -p "$PORT_P" -U postgres -D "$IT_TMP/standby" \
  -R -X stream -c fast >"$IT_TMP/basebackup.log" 2>&1 || { cat "$IT_TMP/basebackup.log"; fail "pg_basebackup -R"; }
pass "pg_basebackup -R made the standby"
[[ -f $IT_TMP/standby/standby.signal ]] || fail "pg_basebackup -R wrote no standby.signal"
pg_conf standby "hot_standby = on"
pg_start standby "$PORT_S"
assert_eq t "$(psql_at "$PORT_S" postgres "SELECT pg_is_in_recovery()")" "the standby is in recovery"
wait_ready standby "$PORT_S"
pass "standby keeper is ready (envelope.status() from the replicated extension)"

#------------------------------------------------------------------------------
# The standby reads everything the same way.
#------------------------------------------------------------------------------
assert_eq "$digest_p" "$(psql_at "$PORT_S" postgres "$digest_sql")" \
  "standby: every row decrypts to the primary's plaintext (count + md5)"
assert_eq "$keys_p" "$(psql_at "$PORT_S" postgres "$keys_sql")" \
  "standby: envelope.keys ids, versions, states and key check values equal the primary's"
st_p=$(status_at "$PORT_P" postgres "keys_cached")
st_s=$(status_at "$PORT_S" postgres "keys_cached")
assert_eq "$st_p" "$st_s" "status keys_cached on the standby equals the primary's ($st_p)"
assert_eq "2|0|2" "$(status_at "$PORT_S" postgres "keys_loaded, load_failures, keys_cached_total")" \
  "standby loader: 2 keys loaded at startup, no failures"
# encrypt() is a read-only function: the standby can seal (not store) values too.
assert_eq "round trip" "$(psql_at "$PORT_S" postgres "SELECT envelope.decrypt(envelope.encrypt('round trip', 'k2'))")" \
  "standby: encrypt()/decrypt() round trip under k2"

#------------------------------------------------------------------------------
# create_key on the standby: read-only transaction error, nothing changes.
#------------------------------------------------------------------------------
cached_before=$(status_at "$PORT_S" postgres "keys_cached_total")
out=$(psql_fail_state "$PORT_S" postgres 25006 "SELECT envelope.create_key('on_standby')")
pass "standby: create_key fails with SQLSTATE 25006 (read_only_sql_transaction)"
assert_contains "$out" "read-only transaction" "standby: the error says read-only transaction"
out=$(psql_fail_state "$PORT_S" postgres 25006 "SELECT envelope.rotate_key('k2')")
pass "standby: rotate_key fails with SQLSTATE 25006"
assert_eq 0 "$(psql_at "$PORT_S" postgres "SELECT count(*) FROM envelope.keyring WHERE name = 'on_standby'")" \
  "standby: no keyring row appeared"
cached_after=$(status_at "$PORT_S" postgres "keys_cached_total")
[[ $cached_after == "$cached_before" ]] ||
  fail "failed create_key/rotate_key on the standby left orphan DEKs in the cache ($cached_before -> $cached_after)"
pass "standby: the failed create_key left the key cache unchanged"

#------------------------------------------------------------------------------
# A key created on the primary later: replicated as keyring data, lazily unwrapped on the standby.
#------------------------------------------------------------------------------
psql_at "$PORT_P" postgres "SELECT envelope.create_key('k3')" >/dev/null
psql_at "$PORT_P" postgres "
  INSERT INTO t SELECT g, 'k3', envelope.encrypt('$MARKER k3 ' || g, 'k3') FROM generate_series(501, 600) g;" >/dev/null
psql_at "$PORT_P" postgres "SELECT envelope.rotate_key('k2')" >/dev/null
psql_at "$PORT_P" postgres "
  INSERT INTO t SELECT g, 'k2v2', envelope.encrypt('$MARKER k2v2 ' || g, 'k2') FROM generate_series(601, 650) g;" >/dev/null
lsn=$(psql_at "$PORT_P" postgres "SELECT pg_current_wal_lsn()")
for ((i = 0; i < 150; i++)); do
  [[ $(psql_at "$PORT_S" postgres "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn") == t ]] && break
  sleep 0.2
done
[[ $(psql_at "$PORT_S" postgres "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn") == t ]] ||
  fail "the standby did not replay up to $lsn within 30s"
pass "standby replayed up to the primary's LSN $lsn"

assert_eq 0 "$(psql_at "$PORT_S" postgres "SELECT count(*) FROM envelope.keyring WHERE name = 'k3' AND envelope._encryptions(id) IS NOT NULL")" \
  "standby: k3 is not cached before first use"
digest_p=$(psql_at "$PORT_P" postgres "$digest_sql")
[[ $digest_p == 553:* ]] || fail "unexpected digest on the primary: $digest_p"
assert_eq "$digest_p" "$(psql_at "$PORT_S" postgres "$digest_sql")" \
  "standby: rows under the new k3 and rotated k2 v2 decrypt identically (lazy unwrap by its keeper)"
keys_p=$(psql_at "$PORT_P" postgres "$keys_sql")
assert_eq 4 "$(wc -l <<<"$keys_p")" "primary: 4 key versions (default, k2 v1+v2, k3)"
assert_eq "$keys_p" "$(psql_at "$PORT_S" postgres "$keys_sql")" \
  "standby: key check values of k3 and k2 v2 equal the primary's"
# The standby resolves key names through the replayed keyring (k2 now means version 2).
assert_eq "t" "$(psql_at "$PORT_S" postgres "
  SET envelope.io = 'sealed';
  SELECT substr(decode(substr(envelope.encrypted_text_out(envelope.encrypt('x', 'k2'))::text, 8), 'base64'), 2, 16)
         = (SELECT uuid_send(id) FROM envelope.keyring WHERE name = 'k2' AND version = 2)")" \
  "standby: encrypt(.., 'k2') uses the replicated active version 2"
# keys_cached on the standby, less the orphans the failed create_key/rotate_key left (if any).
orphans=$((cached_after - cached_before))
assert_eq "$(status_at "$PORT_P" postgres keys_cached)" "$(( $(status_at "$PORT_S" postgres keys_cached) - orphans ))" \
  "status keys_cached equal on both after the new keys are used (standby less $orphans orphan(s))"

# Sealed output on the standby is the stored ciphertext; it matches the primary byte for byte.
sealed_sql="SET envelope.io = 'sealed'; SELECT md5(string_agg(coalesce(envelope.encrypted_text_out(v)::text, '-'), '|' ORDER BY id)) FROM t"
assert_eq "$(psql_at "$PORT_P" postgres "$sealed_sql")" "$(psql_at "$PORT_S" postgres "$sealed_sql")" \
  "sealed output identical on primary and standby (same stored ciphertext)"

#------------------------------------------------------------------------------
# Crypto-shredding on the primary (destroy_key) as seen by the standby.
#------------------------------------------------------------------------------
k3_sql="SELECT count(*) FROM t WHERE k = 'k3' AND v::text LIKE '%k3%'"
psql_at "$PORT_P" postgres "SELECT envelope.destroy_key('k3', 1, force => true)" >/dev/null
psql_fail_state "$PORT_P" postgres 55000 "$k3_sql" >/dev/null
pass "primary: values under the destroyed k3 no longer decrypt (55000)"
lsn=$(psql_at "$PORT_P" postgres "SELECT pg_current_wal_lsn()")
for ((i = 0; i < 150; i++)); do
  [[ $(psql_at "$PORT_S" postgres "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn") == t ]] && break
  sleep 0.2
done
assert_eq "destroyed|t" "$(psql_at "$PORT_S" postgres "SELECT state, wrapped_dek IS NULL FROM envelope.keyring WHERE name = 'k3'")" \
  "standby: the destroyed keyring row was replayed"
if out=$(psql_at "$PORT_S" postgres "$k3_sql" 2>&1); then
  fail "after destroy_key on the primary the running standby still decrypts k3 ($out values)"
fi
pass "standby: values under the destroyed k3 no longer decrypt"
pg_restart standby
wait_ready standby "$PORT_S"
psql_fail_state "$PORT_S" postgres 55000 "$k3_sql" >/dev/null
pass "standby after a restart: values under the destroyed k3 no longer decrypt (55000)"

assert_file_not_contains "$(it_log primary)" "$MARKER" "primary log has no marker plaintext"
assert_file_not_contains "$(it_log standby)" "$MARKER" "standby log has no marker plaintext"
echo "t_streaming_replica: all checks passed"
