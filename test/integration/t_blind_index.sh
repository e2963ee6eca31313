#!/usr/bin/env bash
# t_blind_index: a blind index (envelope.blind_ops hash index) and a unique tag index
# (envelope.blind_tag btree) on encrypted_text columns keep answering equality lookups through
# the index after a restart, after crash recovery (immediate stop, WAL replay), on a streaming
# standby (same token) including rows replicated after it started, and in a database restored
# from a sealed dump. After ANALYZE, CHECKPOINT and a WAL switch the marker plaintext is
# nowhere under PGDATA (heap, index files, WAL, pg_statistic) while a plain-text control is
# found. A reader needs search on the index key (a denial is an audit line). With the HSM
# unusable after a restart (keys not loaded), a lookup through the index is an error (55000),
# never zero rows.
set -euo pipefail
# shellcheck source=test/integration/lib.sh
source "$(dirname "$0")/lib.sh"

PORT_P=$((IT_PORT_BASE + 800))
PORT_S=$((IT_PORT_BASE + 801))
MARKER="BLIND-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
MARKER2="BLIND2-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
CONTROL="BLINDCONTROL-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
SEALED='-c envelope.io=sealed'

it_init
pg_init primary
pg_conf primary "wal_level = replica"
pg_conf primary "max_wal_senders = 4"
pg_start primary "$PORT_P"
wait_ready primary "$PORT_P"

psql_at "$PORT_P" postgres "CREATE EXTENSION pg_envelope" >/dev/null
psql_at "$PORT_P" postgres "SELECT envelope.create_index_key('people_ssn')" >/dev/null
psql_at "$PORT_P" postgres "SELECT envelope.create_index_key('people_mail')" >/dev/null
psql_at "$PORT_P" postgres "
  CREATE TABLE people (id int PRIMARY KEY, ssn encrypted_text, email encrypted_text, note text);
  CREATE INDEX people_ssn_idx ON people USING hash (ssn envelope.blind_ops (key = 'people_ssn'));
  CREATE UNIQUE INDEX people_email_idx ON people ((envelope.blind_tag(email, 'people_mail', 'casefold')));" >/dev/null
# COPY FROM STDIN: the markers travel in the COPY stream, never in a statement text.
{
  for i in $(seq 1 3000); do printf '%s\tssn-%s\tuser%s@example.com\t\\N\n' "$i" "$i" "$i"; done
  printf '5000\t%s\t%s@example.com\t%s\n' "$MARKER" "$MARKER" "$CONTROL"
} | as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT_P" -U postgres -d postgres -AtX -q -v ON_ERROR_STOP=1 \
      -c "COPY people FROM STDIN" || fail "COPY FROM STDIN"
pass "3001 rows loaded under two blind indexes"

# lookup PORT DB VALUE: ids whose ssn equals VALUE, with the plan forced onto the index.
lookup() {
  psql_at "$1" "$2" "SET enable_seqscan = off; SELECT string_agg(id::text, ',' ORDER BY id) FROM people WHERE ssn = '$3'"
}
# uses_index PORT DB: the plan of a lookup reads people_ssn_idx.
uses_index() {
  local plan
  plan=$(psql_at "$1" "$2" "SET enable_seqscan = off; EXPLAIN (COSTS OFF) SELECT id FROM people WHERE ssn = 'ssn-7'")
  assert_contains "$plan" "people_ssn_idx" "$3: the lookup's plan reads the blind index"
}
# check_all PORT DB WHEN: every lookup answers through the index.
check_all() {
  uses_index "$1" "$2" "$3"
  assert_eq 5000 "$(lookup "$1" "$2" "$MARKER")" "$3: the marker row is found through the blind index"
  assert_eq 1234 "$(lookup "$1" "$2" "ssn-1234")" "$3: another row is found"
  assert_eq "" "$(lookup "$1" "$2" "ssn-99999")" "$3: an absent value finds nothing"
  assert_eq 17 "$(psql_at "$1" "$2" "SET enable_seqscan = off; SELECT id FROM people
      WHERE envelope.blind_tag(email, 'people_mail', 'casefold') = envelope.blind_tag('USER17@example.com', 'people_mail', 'casefold')")" \
    "$3: the unique tag index finds a row, case-insensitively"
}

check_all "$PORT_P" postgres "primary"
out=$(psql_fail_state "$PORT_P" postgres 23505 "INSERT INTO people VALUES (6000, 'x', 'User1@Example.com', NULL)")
pass "the unique tag index refuses a case variant of an existing e-mail"

# A role with decrypt on the data key but no search on the index key is refused (42501) and the
# denial is an audit line; with search it finds the row. The log never holds the marker.
psql_at "$PORT_P" postgres "CREATE ROLE reader; GRANT SELECT ON people TO reader;
  SELECT envelope.grant_key('default', 'reader', 'decrypt')" >/dev/null
out=$(psql_fail_state "$PORT_P" postgres 42501 "SET envelope.audit = denials; SET ROLE reader; SELECT id FROM people WHERE ssn = '$MARKER'")
assert_contains "$out" 'lacks the search privilege' "reader without search: 42501"
assert_file_contains "$(it_log primary)" 'pg_envelope audit: action=search role="reader" key="people_ssn" version=1 outcome=denied'   "the search denial is an audit line"
psql_at "$PORT_P" postgres "SELECT envelope.grant_key('people_ssn', 'reader', 'search')" >/dev/null
assert_eq 5000 "$(psql_at "$PORT_P" postgres "SET ROLE reader; SET enable_seqscan = off; SELECT id FROM people WHERE ssn = '$MARKER'")"   "reader with decrypt (data key) and search (index key) finds the row"
assert_file_not_contains "$(it_log primary)" "$MARKER" "the server log does not contain the marker"

#------------------------------------------------------------------------------
# No plaintext under PGDATA, pg_statistic included.
#------------------------------------------------------------------------------
psql_at "$PORT_P" postgres "ANALYZE people" >/dev/null
assert_eq 0 "$(psql_at "$PORT_P" postgres "SELECT count(*) FROM pg_statistic s
    WHERE s.starelid IN ('people'::regclass, 'people_ssn_idx'::regclass, 'people_email_idx'::regclass)
      AND s.staattnum > 0 AND concat_ws('|', s.stavalues1::text, s.stavalues2::text, s.stavalues3::text,
                                        s.stavalues4::text, s.stavalues5::text) ~ '(BLIND|example|ssn-)'")" \
  "pg_statistic of the table and its indexes holds no plaintext after ANALYZE"
assert_eq t "$(psql_at "$PORT_P" postgres "SELECT count(*) > 0 FROM pg_statistic WHERE starelid = 'people_email_idx'::regclass")" \
  "ANALYZE did compute statistics of the tag index (tags, not plaintext)"
psql_at "$PORT_P" postgres "CHECKPOINT" >/dev/null
psql_at "$PORT_P" postgres "SELECT pg_switch_wal()" >/dev/null
psql_at "$PORT_P" postgres "CHECKPOINT" >/dev/null
hits=$(grep -r -a -l -F -- "$CONTROL" "$IT_TMP/primary" || true)
[[ $hits == *pg_wal* && $hits == *base* ]] || fail "control marker not found in the heap and the WAL: the search would find nothing"
pass "positive control: the plain-text marker is found in PGDATA (heap and WAL)"
hits=$(grep -r -a -l -F -- "$MARKER" "$IT_TMP/primary" || true)
[[ -z $hits ]] || { echo "$hits"; fail "the marker plaintext is on disk in the files above"; }
idx_file=$IT_TMP/primary/$(psql_at "$PORT_P" postgres "SELECT pg_relation_filepath('people_ssn_idx')")
[[ -s $idx_file ]] || fail "the blind index file $idx_file is missing or empty"
pass "the marker plaintext is nowhere under PGDATA (heap, index files, WAL, statistics)"

#------------------------------------------------------------------------------
# Restart and crash recovery.
#------------------------------------------------------------------------------
pg_restart primary
wait_ready primary "$PORT_P"
check_all "$PORT_P" postgres "after a restart"

psql_at "$PORT_P" postgres "INSERT INTO people VALUES (5001, '$MARKER2', 'second@example.com', NULL)" >/dev/null
pg_stop primary immediate
pass "primary stopped with -m immediate after an insert (crash)"
pg_start primary "$PORT_P"
wait_ready primary "$PORT_P"
assert_file_contains "$(it_log primary)" "database system was not properly shut down" "the primary ran crash recovery"
check_all "$PORT_P" postgres "after crash recovery"
assert_eq 5001 "$(lookup "$PORT_P" postgres "$MARKER2")" "after crash recovery: the row inserted before the crash is found through the index"

#------------------------------------------------------------------------------
# Streaming standby: same token, same answers through its copy of the index.
#------------------------------------------------------------------------------
as_pg "$PG_BIN/pg_basebackup" -h "$IT_SOCK" -p "$PORT_P" -U postgres -D "$IT_TMP/standby" \
  -R -X stream -c fast >"$IT_TMP/basebackup.log" 2>&1 || { cat "$IT_TMP/basebackup.log"; fail "pg_basebackup -R"; }
pg_conf standby "hot_standby = on"
pg_start standby "$PORT_S"
wait_ready standby "$PORT_S"
assert_eq t "$(psql_at "$PORT_S" postgres "SELECT pg_is_in_recovery()")" "the standby is in recovery"
check_all "$PORT_S" postgres "standby"
psql_at "$PORT_P" postgres "INSERT INTO people VALUES (5002, 'after-standby', 'third@example.com', NULL)" >/dev/null
lsn=$(psql_at "$PORT_P" postgres "SELECT pg_current_wal_lsn()")
for _ in $(seq 1 100); do
  [[ $(psql_at "$PORT_S" postgres "SELECT pg_last_wal_replay_lsn() >= '$lsn'") == t ]] && break
  sleep 0.1
done
assert_eq 5002 "$(lookup "$PORT_S" postgres after-standby)" "standby: a row inserted on the primary later is found through the replayed index"
pg_stop standby

#------------------------------------------------------------------------------
# Sealed dump and restore into a new database: the restore rebuilds the indexes.
#------------------------------------------------------------------------------
DUMP=$IT_TMP/sealed.dump
pgtool PGOPTIONS="$SEALED" pg_dump -p "$PORT_P" -d postgres -Fc -f "$DUMP" || fail "pg_dump -Fc in sealed mode"
if grep -a -q -- "$MARKER" "$DUMP"; then fail "the sealed dump contains the marker"; fi
pass "the sealed dump does not contain the marker"
pgtool createdb -p "$PORT_P" restored || fail "createdb restored"
out=$(pgtool PGOPTIONS="$SEALED" pg_restore -p "$PORT_P" -d restored --exit-on-error "$DUMP" 2>&1) ||
  { echo "$out"; fail "pg_restore of the sealed dump"; }
pass "pg_restore of the sealed dump exits 0"
check_all "$PORT_P" restored "restored database"
assert_eq 5002 "$(lookup "$PORT_P" restored after-standby)" "restored database: the last row is found"

#------------------------------------------------------------------------------
# HSM unusable after a restart: the index key cannot be loaded, a lookup fails loudly.
#------------------------------------------------------------------------------
pg_conf primary "envelope.token_label = 'no-such-token'"
pg_restart primary
wait_ready primary "$PORT_P" failed 60
out=$(psql_fail_state "$PORT_P" postgres 55000 "SET enable_seqscan = off; SELECT id FROM people WHERE ssn = 'ssn-5'")
pass "keys not loaded: a lookup through the blind index fails with 55000, not zero rows"
assert_not_contains "$out" "ssn-5" "the error does not echo the searched value"

echo "t_blind_index: all checks passed"
