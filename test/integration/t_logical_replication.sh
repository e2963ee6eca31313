#!/usr/bin/env bash
# t_logical_replication: logical replication of encrypted_text columns between two clusters
# that reach the same KEK (one SoftHSM token), with ciphertext on the wire.
#
# Procedure that works (documented in the notes this test prints):
#   1. Both clusters preload pg_envelope with the same KEK; CREATE EXTENSION in both databases
#      (the subscriber gets its own "default" key; that is fine, see below).
#   2. Copy the publisher's keyring rows into the subscriber BEFORE the subscription syncs:
#        pg_dump --data-only -t envelope.keyring PUBDB | psql SUBDB
#      The subscriber then has two rows "default" version 1 (different ids); envelope.keyring
#      has no unique (name, version), both unwrap, and new local values use the newer one.
#      Keys created or rotated on the publisher later must be copied again before values sealed
#      with them arrive (apply stops with "key ... does not exist in this database" until then):
#      an idempotent top-up is COPY of the publisher's keyring into a temp table and
#      INSERT ... ON CONFLICT (id) DO UPDATE (sync_keyring below). Alternatively, publish
#      envelope.keyring itself (database s_keys below): new keys then arrive in commit order.
#   3. Nothing else: with envelope.io = auto (the default) a walsender prints sealed values (the
#      table sync's COPY and the streamed changes) and the apply and table sync workers parse
#      sealed input. Explicit settings are honoured too (a connection option -c envelope.io=sealed,
#      ALTER ROLE <subscription owner> or ALTER DATABASE ... SET envelope.io).
# Also shown: with no envelope option anywhere (s_plain) the subscriber stores the publisher's
# ciphertext unchanged; a subscriber forced to envelope.io = plaintext fails its sync loudly
# (nothing stored, nothing encrypted twice).
# A test_decoding slot read in sealed mode (pg_logical_slot_peek_changes,
# and pg_recvlogical through a walsender with no envelope option) carries no marker plaintext.
set -euo pipefail
# shellcheck source=test/integration/lib.sh
source "$(dirname "$0")/lib.sh"

PORT_PUB=$((IT_PORT_BASE + 310))
PORT_SUB=$((IT_PORT_BASE + 311))
MARKER="MARKER-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
SEALED_OPT="options=''-c envelope.io=sealed''"

it_init
pg_init pub
pg_conf pub "wal_level = logical"
pg_conf pub "max_wal_senders = 20"
pg_conf pub "max_replication_slots = 20"
pg_init sub
pg_conf sub "max_worker_processes = 24"
pg_conf sub "max_logical_replication_workers = 16"
pg_conf sub "max_replication_slots = 20"
pg_conf sub "wal_retrieve_retry_interval = '500ms'"
pg_start pub "$PORT_PUB"
pg_start sub "$PORT_SUB"
wait_ready pub "$PORT_PUB"
wait_ready sub "$PORT_SUB"

psql_as() {  # ROLE PORT DB SQL
  as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$2" -U "$1" -d "$3" -AtX -q -v ON_ERROR_STOP=1 -c "$4"
}
pub_conn() { echo "host=$IT_SOCK port=$PORT_PUB user=postgres dbname=postgres${1:+ $1}"; }

#------------------------------------------------------------------------------
# Publisher: keys default + k2, people with marker plaintexts, a publication, decoding slots.
#------------------------------------------------------------------------------
psql_at "$PORT_PUB" postgres "CREATE EXTENSION pg_envelope" >/dev/null
psql_at "$PORT_PUB" postgres "SELECT envelope.create_key('k2')" >/dev/null
psql_at "$PORT_PUB" postgres "
  CREATE TABLE people (id int PRIMARY KEY, ssn encrypted_text);
  INSERT INTO people SELECT g, '$MARKER default ' || g FROM generate_series(1, 100) g;
  INSERT INTO people SELECT g, envelope.encrypt('$MARKER k2 ' || g, 'k2') FROM generate_series(101, 150) g;
  INSERT INTO people VALUES (151, NULL), (152, ''), (153, repeat('$MARKER long ', 500));
  CREATE PUBLICATION pub FOR TABLE people;
  CREATE PUBLICATION pub_keys FOR TABLE envelope.keyring;" >/dev/null
psql_at "$PORT_PUB" postgres "
  SELECT pg_create_logical_replication_slot('td_peek', 'test_decoding');
  SELECT pg_create_logical_replication_slot('td_recv', 'test_decoding');" >/dev/null
pass "publisher: people (153 rows under default and k2), publications pub and pub_keys, two test_decoding slots"

# Digest in plaintext mode whatever the database/role default is.
digest_sql="SET envelope.io = 'plaintext';
  SELECT count(*) || ':' || md5(string_agg(id || '=' || coalesce(ssn::text, '<null>'), '|' ORDER BY id)) FROM people"
digest() { psql_at "$1" "$2" "$digest_sql"; }
count_at() { psql_at "$PORT_SUB" "$1" "SELECT count(*) FROM people"; }
wait_count() {  # DB N [TIMEOUT_S]
  local db=$1 n=$2 t=${3:-60} i
  for ((i = 0; i < t * 5; i++)); do
    [[ $(count_at "$db") == "$n" ]] && return 0
    sleep 0.2
  done
  fail "$db: people did not reach $n rows within ${t}s (has $(count_at "$db"))"
}

# Idempotent keyring top-up from the publisher (new rows added, state changes applied).
sync_keyring() {  # SUBDB
  pgtool psql -X -q -p "$PORT_PUB" -d postgres -v ON_ERROR_STOP=1 -c "COPY envelope.keyring TO STDOUT" |
    pgtool psql -X -q -p "$PORT_SUB" -d "$1" -v ON_ERROR_STOP=1 \
      -c "CREATE TEMP TABLE pub_keyring (LIKE envelope.keyring)" \
      -c "COPY pub_keyring FROM STDIN" \
      -c "INSERT INTO envelope.keyring SELECT * FROM pub_keyring
          ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, wrapped_dek = EXCLUDED.wrapped_dek,
                                         state_changed_at = EXCLUDED.state_changed_at"
}

#------------------------------------------------------------------------------
# Subscriber databases, one per variant.
#   s_role   keyring copied with pg_dump; owner role has envelope.io = sealed
#   s_db     keyring copied with pg_dump; database has envelope.io = sealed
#   s_keys   keyring published (pub_keys); database has envelope.io = sealed
#   s_plain  keyring copied with pg_dump; no envelope option anywhere (envelope.io = auto)
#   s_half   sealed walsender, subscriber database forced to envelope.io = plaintext
#------------------------------------------------------------------------------
psql_at "$PORT_SUB" postgres "CREATE ROLE sub_owner LOGIN SUPERUSER" >/dev/null
psql_at "$PORT_SUB" postgres "ALTER ROLE sub_owner SET envelope.io = 'sealed'" >/dev/null
for db in s_role s_db s_keys s_plain s_half; do
  psql_at "$PORT_SUB" postgres "CREATE DATABASE $db" >/dev/null
  psql_at "$PORT_SUB" "$db" "CREATE EXTENSION pg_envelope;
    CREATE TABLE people (id int PRIMARY KEY, ssn encrypted_text);" >/dev/null
done
psql_at "$PORT_SUB" postgres "ALTER DATABASE s_db SET envelope.io = 'sealed'" >/dev/null
psql_at "$PORT_SUB" postgres "ALTER DATABASE s_keys SET envelope.io = 'sealed'" >/dev/null
psql_at "$PORT_SUB" postgres "ALTER DATABASE s_half SET envelope.io = 'plaintext'" >/dev/null

for db in s_role s_db s_half s_plain; do
  pgtool pg_dump -p "$PORT_PUB" -d postgres --data-only -t envelope.keyring -f "$IT_TMP/keyring.sql" ||
    fail "pg_dump --data-only -t envelope.keyring"
  pgtool psql -X -q -v ON_ERROR_STOP=1 -p "$PORT_SUB" -d "$db" -f "$IT_TMP/keyring.sql" >/dev/null ||
    fail "$db: loading the publisher's keyring rows"
done
assert_file_contains "$IT_TMP/keyring.sql" "COPY envelope.keyring" "pg_dump --data-only -t envelope.keyring dumps the keyring rows"
defaults=$(psql_at "$PORT_SUB" s_role "SELECT count(*) || ' rows, ' || count(DISTINCT id) || ' ids, versions '
             || string_agg(version::text, ',') FROM envelope.keyring WHERE name = 'default'")
assert_eq "2 rows, 2 ids, versions 1,1" "$defaults" \
  "s_role: publisher's default v1 sits beside the subscriber's own default v1 (no conflict)"
keys_sql="SELECT string_agg(name || ' ' || id || ' ' || version || ' ' || coalesce(key_check_value, 'NONE:' || problem), E'\n'
            ORDER BY name, version, id) FROM envelope.keys WHERE id IN (@IDS@)"
pub_ids=$(psql_at "$PORT_PUB" postgres "SELECT string_agg(quote_literal(id), ',') FROM envelope.keyring")
keys_pub=$(psql_at "$PORT_PUB" postgres "${keys_sql//@IDS@/$pub_ids}")
assert_eq "$keys_pub" "$(psql_at "$PORT_SUB" s_role "${keys_sql//@IDS@/$pub_ids}")" \
  "s_role: copied keys unwrap on the subscriber with the publisher's key check values"

psql_as sub_owner "$PORT_SUB" s_role "CREATE SUBSCRIPTION sub_role CONNECTION '$(pub_conn "$SEALED_OPT")' PUBLICATION pub" >/dev/null 2>&1 ||
  fail "CREATE SUBSCRIPTION sub_role"
psql_at "$PORT_SUB" s_db "CREATE SUBSCRIPTION sub_db CONNECTION '$(pub_conn "$SEALED_OPT")' PUBLICATION pub" >/dev/null 2>&1 ||
  fail "CREATE SUBSCRIPTION sub_db"
psql_at "$PORT_SUB" s_keys "CREATE SUBSCRIPTION sub_keys CONNECTION '$(pub_conn "$SEALED_OPT")' PUBLICATION pub_keys, pub" >/dev/null 2>&1 ||
  fail "CREATE SUBSCRIPTION sub_keys"
psql_at "$PORT_SUB" s_plain "CREATE SUBSCRIPTION sub_plain CONNECTION '$(pub_conn)' PUBLICATION pub" >/dev/null 2>&1 ||
  fail "CREATE SUBSCRIPTION sub_plain"
psql_at "$PORT_SUB" s_half "CREATE SUBSCRIPTION sub_half CONNECTION '$(pub_conn "$SEALED_OPT")' PUBLICATION pub" >/dev/null 2>&1 ||
  fail "CREATE SUBSCRIPTION sub_half"
pass "five subscriptions created"

#------------------------------------------------------------------------------
# Initial table sync.
#------------------------------------------------------------------------------
digest_pub=$(digest "$PORT_PUB" postgres)
[[ $digest_pub == 153:* ]] || fail "unexpected publisher digest: $digest_pub"
for db in s_role s_db s_keys s_plain; do
  wait_count "$db" 153
  assert_eq "$digest_pub" "$(digest "$PORT_SUB" "$db")" "$db: initial sync decrypts identically on the subscriber"
done
sealed_sql="SET envelope.io = 'sealed';
  SELECT md5(string_agg(coalesce(envelope.encrypted_text_out(ssn)::text, '-'), '|' ORDER BY id)) FROM people"
sealed_pub=$(psql_at "$PORT_PUB" postgres "$sealed_sql")
for db in s_role s_db s_keys s_plain; do
  assert_eq "$sealed_pub" "$(psql_at "$PORT_SUB" "$db" "$sealed_sql")" \
    "$db: the subscriber stores the publisher's ciphertext unchanged (sealed transfer)"
done
pass "s_plain: with no envelope option anywhere the transfer is sealed (envelope.io = auto)"

# s_half: sealed values into a subscriber forced to plaintext mode: loud failure, nothing stored.
for ((i = 0; i < 100; i++)); do
  grep -q "input is already a sealed encrypted_text value" "$(it_log sub)" && break
  sleep 0.2
done
assert_file_contains "$(it_log sub)" "input is already a sealed encrypted_text value" \
  "s_half: the subscriber forced to plaintext mode fails its table sync loudly (already sealed)"
assert_eq 0 "$(count_at s_half)" "s_half: no row stored (nothing encrypted twice)"

#------------------------------------------------------------------------------
# Streamed changes after the sync.
#------------------------------------------------------------------------------
psql_at "$PORT_PUB" postgres "
  INSERT INTO people SELECT g, '$MARKER later ' || g FROM generate_series(201, 250) g;
  INSERT INTO people SELECT g, envelope.encrypt('$MARKER later k2 ' || g, 'k2') FROM generate_series(251, 260) g;
  UPDATE people SET ssn = '$MARKER updated' WHERE id = 1;
  DELETE FROM people WHERE id = 2;" >/dev/null
digest_pub=$(digest "$PORT_PUB" postgres)
for db in s_role s_db s_keys s_plain; do
  wait_count "$db" 212
  for ((i = 0; i < 50; i++)); do [[ $(digest "$PORT_SUB" "$db") == "$digest_pub" ]] && break; sleep 0.2; done
  assert_eq "$digest_pub" "$(digest "$PORT_SUB" "$db")" "$db: streamed INSERT/UPDATE/DELETE decrypt identically"
done

#------------------------------------------------------------------------------
# A key created on the publisher after the keyring copy.
#------------------------------------------------------------------------------
psql_at "$PORT_PUB" postgres "SELECT envelope.create_key('k_late')" >/dev/null
psql_at "$PORT_PUB" postgres "
  INSERT INTO people SELECT g, envelope.encrypt('$MARKER k_late ' || g, 'k_late') FROM generate_series(301, 310) g;" >/dev/null
digest_pub=$(digest "$PORT_PUB" postgres)
# s_keys gets the keyring row through the publication, in commit order: no manual step.
wait_count s_keys 222
assert_eq "$digest_pub" "$(digest "$PORT_SUB" s_keys)" "s_keys: rows under a new publisher key arrive with its keyring row (keyring published)"
# s_role / s_db: apply stops on the unknown key until the keyring is topped up.
for ((i = 0; i < 100; i++)); do
  grep -q "does not exist in this database" "$(it_log sub)" && break
  sleep 0.2
done
assert_file_contains "$(it_log sub)" "does not exist in this database" \
  "s_role/s_db: apply fails loudly on values under a key not copied yet"
assert_eq 212 "$(count_at s_role)" "s_role: nothing applied before the keyring top-up"
for db in s_role s_db; do
  sync_keyring "$db" || fail "$db: keyring top-up"
  wait_count "$db" 222
  assert_eq "$digest_pub" "$(digest "$PORT_SUB" "$db")" "$db: after the keyring top-up the apply resumes and k_late rows decrypt"
done
sync_keyring s_role || fail "keyring top-up is not idempotent"
pass "the keyring top-up is idempotent"

#------------------------------------------------------------------------------
# Decoding output: test_decoding slot peeked in a sealed session, and pg_recvlogical through
# a sealed walsender, carry ciphertext and no marker.
#------------------------------------------------------------------------------
peek=$(psql_at "$PORT_PUB" postgres "SET envelope.io = 'sealed';
  SELECT string_agg(data, E'\n') FROM pg_logical_slot_peek_changes('td_peek', NULL, NULL)")
assert_contains "$peek" "encrypted_text]:'pgenv1:" "peek (sealed session): values are printed sealed"
assert_not_contains "$peek" "$MARKER" "peek (sealed session): no marker plaintext"
# (the marker is split in the SQL text: decoding LOG lines quote the statement)
peek_plain=$(psql_at "$PORT_PUB" postgres "SET envelope.io = 'plaintext';
  SELECT count(*) FROM pg_logical_slot_peek_changes('td_peek', NULL, NULL) WHERE data LIKE '%' || '${MARKER:0:7}' || '${MARKER:7}' || '%'")
[[ $peek_plain -gt 0 ]] || fail "(contrast) expected plaintext in a plaintext-mode peek"
pass "(contrast) a plaintext-mode peek prints $peek_plain changes with plaintext"
end_lsn=$(psql_at "$PORT_PUB" postgres "SELECT pg_current_wal_lsn()")
pgtool pg_recvlogical -p "$PORT_PUB" -d postgres --slot td_recv --start \
  --endpos "$end_lsn" --no-loop -f - >"$IT_TMP/recvlogical.out" 2>"$IT_TMP/recvlogical.err" ||
  { cat "$IT_TMP/recvlogical.err"; fail "pg_recvlogical (walsender, no envelope option)"; }
assert_file_contains "$IT_TMP/recvlogical.out" "encrypted_text]:'pgenv1:" "pg_recvlogical: a walsender with no envelope option emits pgenv1 values (auto)"
assert_file_not_contains "$IT_TMP/recvlogical.out" "$MARKER" "pg_recvlogical: no marker plaintext crosses the wire"

assert_file_not_contains "$(it_log pub)" "$MARKER" "publisher log has no marker plaintext"
assert_file_not_contains "$(it_log sub)" "$MARKER" "subscriber log has no marker plaintext"
echo "t_logical_replication: all checks passed"
