#!/usr/bin/env bash
# t_sharding: a sharded table with encrypted_text columns: a coordinator whose partitioned
# table has foreign-table partitions (envelope_fdw) on two shard clusters, all three reaching
# the same KEK (one SoftHSM token). The setup is README "Scaling out".
#
# Checked: every write path through the coordinator (literals, protocol bind parameters,
# INSERT ... SELECT in batches, COPY in plaintext and sealed mode, encrypt(), UPDATE, DELETE)
# reads back from the coordinator, rows sit on the right shard, SELECT pruned to one shard and
# across both (async append); values are sealed once (by the coordinator) and cross the
# connections only sealed: the shards' statement logs (log_statement = all, debug1) and an
# strace of every byte shard 1's backends receive and send hold no marker plaintext, and the
# shards seal and open nothing. One keyring: the coordinator's envelope.keyring and
# envelope.key_privileges are published to the shards; created, rotated and destroyed keys and
# grants take effect on every server (a revoke reaches a shard session that is already open);
# a destroy commits with remote_apply and wipes the key from every server's cache.
# Failures: a shard whose keeper cannot reach the HSM fails queries that need a key with
# pg_envelope's 55000 error (the coordinator's sealed traffic does not need the shard's keys);
# a shard that is down fails every query that touches it, never a partial answer.
set -euo pipefail
# shellcheck source=test/integration/lib.sh
source "$(dirname "$0")/lib.sh"

PORT_C=$((IT_PORT_BASE + 900))
PORT_S1=$((IT_PORT_BASE + 901))
PORT_S2=$((IT_PORT_BASE + 902))
MARKER="FDWMARK-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
# Statements with the marker go to the coordinator only (it does not log statements; errors of
# pg_envelope and envelope_fdw hide them); the shards log every statement they receive.

it_init
pg_init coord
pg_conf coord "wal_level = logical"
pg_conf coord "max_wal_senders = 10"
pg_conf coord "max_replication_slots = 10"
pg_conf coord "synchronous_standby_names = 'ANY 2 (envelope_keys_s1, envelope_keys_s2)'"
pg_conf coord "synchronous_commit = local"
for s in shard1 shard2; do
  pg_init "$s"
  pg_conf "$s" "log_statement = 'all'"
  pg_conf "$s" "log_min_messages = debug1"
  pg_conf "$s" "log_parameter_max_length = -1"
  pg_conf "$s" "log_connections = on"
  pg_conf "$s" "wal_retrieve_retry_interval = '500ms'"
done
pg_start coord "$PORT_C"
# Shard 1 runs under strace from its start, which records every byte its processes receive and
# send on sockets. strace is its parent (tracing a child needs no ptrace capability and passes
# Yama's ptrace_scope = 1) and runs it as the server user. Where ptrace is forbidden outright
# (a container's seccomp profile), strace cannot run at all: the wire is then checked through
# the shards' own logs of every statement and bind parameter they received (below), and the
# test says so.
STRACE_PID=""
if (cd / && strace -u "$PG_USER" -f -qq -o /dev/null true) >/dev/null 2>&1; then
  echo "$PORT_S1" >"$IT_TMP/shard1.port"
  IT_SERVERS+=(shard1)
  (cd / && exec env SOFTHSM2_CONF="$IT_SOFTHSM_CONF" strace -u "$PG_USER" -f -qq \
    -e trace=recvfrom,sendto,recvmsg,sendmsg -e signal=none -s 1000000 -o "$IT_TMP/shard1.strace" \
    "$PG_BIN/postgres" -D "$IT_TMP/shard1" -p "$PORT_S1" >>"$IT_TMP/shard1.log" 2>&1) &
  strace_sub=$!
  for ((i = 0; i < 50; i++)); do  # the subshell execs strace (or, in some shells, forks it)
    if [[ $(ps -o comm= -p "$strace_sub" 2>/dev/null) == strace ]]; then STRACE_PID=$strace_sub; break; fi
    STRACE_PID=$(pgrep -P "$strace_sub" -x strace || true)
    [[ -n $STRACE_PID ]] && break
    sleep 0.1
  done
  [[ -n $STRACE_PID ]] || fail "strace did not start"
else
  echo "# strace cannot trace here (ptrace not permitted): shard 1 runs without it; the wire is checked through the shards' statement and parameter logs"
  pg_start shard1 "$PORT_S1"
fi
pg_start shard2 "$PORT_S2"
wait_ready coord "$PORT_C"
wait_ready shard1 "$PORT_S1"
wait_ready shard2 "$PORT_S2"

psql_as() {  # ROLE PORT SQL
  as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$2" -U "$1" -d postgres -AtX -q -v ON_ERROR_STOP=1 -c "$3"
}
app() { psql_as app "$PORT_C" "$1"; }
wait_until() {  # PORT SQL WANT MSG: polls SQL on PORT until it prints WANT (30 s)
  local i got=""
  for ((i = 0; i < 150; i++)); do
    got=$(psql_at "$1" postgres "$2" 2>/dev/null) && [[ $got == "$3" ]] && return 0
    sleep 0.2
  done
  fail "$4: expected '$3', got '$got'"
}

#------------------------------------------------------------------------------
# Setup (README "Scaling out").
#------------------------------------------------------------------------------
for port in "$PORT_C" "$PORT_S1" "$PORT_S2"; do
  psql_at "$port" postgres "CREATE ROLE app LOGIN" >/dev/null
done
psql_at "$PORT_C" postgres "CREATE EXTENSION pg_envelope;
  CREATE PUBLICATION envelope_keys FOR TABLE envelope.keyring, envelope.key_privileges;" >/dev/null
for n in 1 2; do
  port_var=PORT_S$n
  port=${!port_var}
  psql_at "$port" postgres "CREATE EXTENSION pg_envelope;
    SELECT envelope.destroy_key('default', 1, force => true);
    CREATE ROLE fdw_shard LOGIN;
    CREATE TABLE accounts (id int PRIMARY KEY, owner text, secret encrypted_text);
    GRANT SELECT, INSERT, UPDATE, DELETE ON accounts TO fdw_shard;
    GRANT SELECT ON accounts TO app;" >/dev/null
  psql_at "$port" postgres "CREATE SUBSCRIPTION envelope_keys_s$n
    CONNECTION 'host=$IT_SOCK port=$PORT_C dbname=postgres user=postgres'
    PUBLICATION envelope_keys" >/dev/null 2>&1 || fail "shard $n: CREATE SUBSCRIPTION"
  psql_at "$PORT_C" postgres "
    CREATE SERVER shard$n FOREIGN DATA WRAPPER envelope_fdw OPTIONS (host '$IT_SOCK', port '$port',
      dbname 'postgres', options '-c envelope.io=sealed', async_capable 'true', batch_size '50');
    CREATE USER MAPPING FOR postgres SERVER shard$n OPTIONS (user 'fdw_shard');
    CREATE USER MAPPING FOR app SERVER shard$n OPTIONS (user 'fdw_shard', password_required 'false');" >/dev/null
done
psql_at "$PORT_C" postgres "
  CREATE TABLE accounts (id int NOT NULL, owner text, secret encrypted_text) PARTITION BY RANGE (id);
  CREATE FOREIGN TABLE accounts_s1 PARTITION OF accounts FOR VALUES FROM (MINVALUE) TO (1000000)
    SERVER shard1 OPTIONS (table_name 'accounts');
  CREATE FOREIGN TABLE accounts_s2 PARTITION OF accounts FOR VALUES FROM (1000000) TO (MAXVALUE)
    SERVER shard2 OPTIONS (table_name 'accounts');
  GRANT SELECT, INSERT, UPDATE, DELETE ON accounts TO app;
  SELECT envelope.grant_key('default', 'app', 'all');" >/dev/null
keyring_sql="SELECT string_agg(id || ' ' || name || ' ' || version || ' ' || state, ',' ORDER BY id)
  FROM envelope.keyring WHERE id IN (@IDS@)"
ids_c=$(psql_at "$PORT_C" postgres "SELECT string_agg(quote_literal(id), ',') FROM envelope.keyring")
keyring_c=$(psql_at "$PORT_C" postgres "${keyring_sql//@IDS@/$ids_c}")
for port in "$PORT_S1" "$PORT_S2"; do
  wait_until "$port" "${keyring_sql//@IDS@/$ids_c}" "$keyring_c" "shard on $port: the coordinator's keyring arrives"
  wait_until "$port" "SELECT count(*) FROM envelope.key_grants WHERE grantee = 'app'" 2 "shard on $port: grants arrive"
  assert_eq "default|1|destroyed" "$(psql_at "$port" postgres "SELECT name, version, state FROM envelope.keyring
      WHERE id NOT IN ($ids_c)")" "shard on $port: its only own key is its unused default, destroyed at setup"
done
pass "three clusters, one keyring (the coordinator's DEK ids on every server), accounts sharded by id"

[[ -z $STRACE_PID ]] || kill -0 "$STRACE_PID" 2>/dev/null || fail "strace of shard 1 is not running"

#------------------------------------------------------------------------------
# Write paths through the coordinator, each read back from the coordinator.
#------------------------------------------------------------------------------
plain_sql() {  # ids in a range: "id|owner|secret" lines, read through the coordinator
  app "SELECT id || '|' || owner || '|' || coalesce(secret::text, '<null>') FROM accounts
       WHERE id BETWEEN $1 AND $2 ORDER BY id"
}
app "INSERT INTO accounts VALUES (1, 'literal', '$MARKER literal 1'), (1000001, 'literal', '$MARKER literal 2')"
assert_eq "1|literal|$MARKER literal 1" "$(plain_sql 1 1)" "literal INSERT routed to shard 1 reads back"
assert_eq "1000001|literal|$MARKER literal 2" "$(plain_sql 1000001 1000001)" "literal INSERT routed to shard 2 reads back"

# Protocol-level bind parameters (pgbench -M prepared sends them as text parameters).
printf '%s\n' "INSERT INTO accounts VALUES (:id1, 'param', :v1), (:id2, 'param', :v2);" >"$IT_TMP/bind.sql"
chmod 644 "$IT_TMP/bind.sql"
pgtool pgbench -n -M prepared -t 1 -p "$PORT_C" -d postgres -U app -f "$IT_TMP/bind.sql" \
  -D id1=2 -D id2=1000002 -D "v1=$MARKER param 1" -D "v2=$MARKER param 2" >"$IT_TMP/pgbench.out" 2>&1 ||
  { cat "$IT_TMP/pgbench.out"; fail "pgbench with bind parameters"; }
assert_eq "2|param|$MARKER param 1" "$(plain_sql 2 2)" "bind parameter INSERT (shard 1) reads back"
assert_eq "1000002|param|$MARKER param 2" "$(plain_sql 1000002 1000002)" "bind parameter INSERT (shard 2) reads back"

# INSERT ... SELECT: postgres_fdw batch inserts (batch_size 50).
app "INSERT INTO accounts SELECT g, 'batch', '$MARKER batch' || ' ' || g FROM generate_series(100, 199) g;
     INSERT INTO accounts SELECT g, 'batch', '$MARKER batch' || ' ' || g FROM generate_series(1000100, 1000199) g"
assert_eq 200 "$(app "SELECT count(*) FROM accounts WHERE owner = 'batch'
    AND secret::text = '$MARKER batch ' || id")" "200 batch-inserted rows read back"

# COPY FROM in plaintext mode.
printf '3\tcopy\t%s copy 1\n1000003\tcopy\t%s copy 2\n4\tcopy\t\\N\n' "$MARKER" "$MARKER" >"$IT_TMP/copy_plain.txt"
chmod 644 "$IT_TMP/copy_plain.txt"
pgtool psql -X -q -v ON_ERROR_STOP=1 -p "$PORT_C" -d postgres -U app \
  -c "\\copy accounts FROM '$IT_TMP/copy_plain.txt'" || fail "COPY FROM (plaintext mode)"
assert_eq "3|copy|$MARKER copy 1
4|copy|<null>" "$(plain_sql 3 4)" "plaintext COPY FROM (shard 1) reads back, NULL stays NULL"
assert_eq "1000003|copy|$MARKER copy 2" "$(plain_sql 1000003 1000003)" "plaintext COPY FROM (shard 2) reads back"

# COPY in sealed mode: the sealed form out of the coordinator and back in under new ids.
pgtool PGOPTIONS='-c envelope.io=sealed' psql -X -q -v ON_ERROR_STOP=1 -p "$PORT_C" -d postgres -U app \
  -c "\\copy (SELECT id + 10, 'sealedcopy', secret FROM accounts WHERE owner IN ('literal', 'copy') ORDER BY id) TO '$IT_TMP/copy_sealed.txt'" ||
  fail "COPY TO (sealed mode)"
assert_file_not_contains "$IT_TMP/copy_sealed.txt" "$MARKER" "sealed COPY TO through the coordinator holds no plaintext"
assert_file_contains "$IT_TMP/copy_sealed.txt" "pgenv1:" "sealed COPY TO carries envelopes"
pgtool PGOPTIONS='-c envelope.io=sealed' psql -X -q -v ON_ERROR_STOP=1 -p "$PORT_C" -d postgres -U app \
  -c "\\copy accounts FROM '$IT_TMP/copy_sealed.txt'" || fail "COPY FROM (sealed mode)"
assert_eq "$(app "SELECT string_agg(id + 10 || '=' || coalesce(secret::text, '-'), ',' ORDER BY id) FROM accounts WHERE owner IN ('literal', 'copy')")" \
  "$(app "SELECT string_agg(id || '=' || coalesce(secret::text, '-'), ',' ORDER BY id) FROM accounts WHERE owner = 'sealedcopy'")" \
  "sealed COPY FROM through the coordinator: the same plaintexts read back"
sealed_in=$(cut -f1,3 "$IT_TMP/copy_sealed.txt" | grep -v '^1000' | sort | md5sum)
sealed_s1=$(pgtool PGOPTIONS='-c envelope.io=sealed' psql -X -q -At -F $'\t' -p "$PORT_S1" -d postgres \
  -c "SELECT id, coalesce(envelope.encrypted_text_out(secret)::text, '\\N') FROM accounts WHERE owner = 'sealedcopy'" | sort | md5sum)
assert_eq "$sealed_in" "$sealed_s1" "shard 1 stores exactly the envelopes the sealed COPY carried"

# COPY TO in plaintext mode through the coordinator.
pgtool psql -X -q -v ON_ERROR_STOP=1 -p "$PORT_C" -d postgres -U app \
  -c "\\copy (SELECT id, secret FROM accounts WHERE owner = 'copy' ORDER BY id) TO '$IT_TMP/copy_out.txt'" ||
  fail "COPY TO (plaintext mode)"
assert_eq "$(printf '3\t%s copy 1\n4\t\\N\n1000003\t%s copy 2' "$MARKER" "$MARKER")" "$(cat "$IT_TMP/copy_out.txt")" \
  "plaintext COPY TO through the coordinator"

# encrypt()/decrypt() in queries, under a key created on the coordinator.
psql_at "$PORT_C" postgres "SELECT envelope.create_key('k2'); SELECT envelope.grant_key('k2', 'app', 'all')" >/dev/null
k2=$(psql_at "$PORT_C" postgres "SELECT id FROM envelope.keyring WHERE name = 'k2'")
app "INSERT INTO accounts VALUES (5, 'k2', envelope.encrypt('$MARKER k2 1', 'k2')), (1000005, 'k2', envelope.encrypt('$MARKER k2 2', 'k2'))"
assert_eq "5|$MARKER k2 1
1000005|$MARKER k2 2" "$(app "SELECT id || '|' || envelope.decrypt(secret) FROM accounts WHERE owner = 'k2' ORDER BY id")" \
  "encrypt() under a coordinator-created key, decrypt() through the coordinator"

# UPDATE and DELETE (with RETURNING), on both shards.
assert_eq "1|$MARKER updated 1" "$(app "UPDATE accounts SET secret = '$MARKER updated 1' WHERE id = 1 RETURNING id || '|' || secret")" \
  "UPDATE on shard 1 with RETURNING"
app "UPDATE accounts SET secret = '$MARKER updated 2' WHERE id = 1000001"
app "DELETE FROM accounts WHERE id IN (2, 1000002)"
assert_eq "1|literal|$MARKER updated 1" "$(plain_sql 1 2)" "UPDATE and DELETE on shard 1 read back"
assert_eq "1000001|literal|$MARKER updated 2" "$(plain_sql 1000001 1000002)" "UPDATE and DELETE on shard 2 read back"

#------------------------------------------------------------------------------
# Reads through the coordinator: pruned to one shard, across both.
#------------------------------------------------------------------------------
plan=$(app "EXPLAIN (VERBOSE, COSTS OFF) SELECT secret FROM accounts WHERE id = 5")
assert_contains "$plan" "accounts_s1" "a query on one id scans shard 1"
assert_not_contains "$plan" "accounts_s2" "... and only shard 1 (pruned)"
plan=$(app "EXPLAIN (VERBOSE, COSTS OFF) SELECT id, secret FROM accounts WHERE owner = 'k2'")
assert_contains "$plan" "Async Foreign Scan on public.accounts_s2" "a query over all ids scans both shards asynchronously"
assert_eq "5|$MARKER k2 1" "$(app "SELECT id || '|' || secret FROM accounts WHERE id = 5")" "pruned SELECT"
total=$(app "SELECT count(*) FROM accounts")
assert_eq 212 "$total" "SELECT count(*) across shards (aggregate pushed down)"
#------------------------------------------------------------------------------
# Sealed on the wire: every byte shard 1's backends received and sent while the coordinator
# wrote and read (the shards' own sessions open values only after this).
#------------------------------------------------------------------------------
if [[ -n $STRACE_PID ]]; then
  kill "$STRACE_PID"  # strace detaches; shard 1 keeps running
  for ((i = 0; i < 50; i++)); do kill -0 "$STRACE_PID" 2>/dev/null || break; sleep 0.1; done
  psql_at "$PORT_S1" postgres "SELECT 1" >/dev/null || fail "shard 1 stopped with strace"
  fdw_backends=$(sed -n 's/^\([0-9]*\) .*application_name.*postgres_fdw.*/\1/p' "$IT_TMP/shard1.strace" | sort -u | wc -l)
  [[ $fdw_backends -gt 0 ]] || fail "no postgres_fdw connection in the strace of shard 1"
  envelopes=$(grep -c 'pgenv1:' "$IT_TMP/shard1.strace" || true)
  [[ $envelopes -gt 0 ]] || fail "the strace of shard 1 shows no envelope"
  assert_file_not_contains "$IT_TMP/shard1.strace" "$MARKER" \
    "strace of shard 1 ($fdw_backends postgres_fdw backends, $envelopes socket calls carrying envelopes): no marker plaintext received or sent"
fi

#------------------------------------------------------------------------------
# Rows on the right shard, readable there with the same keys.
#------------------------------------------------------------------------------
on_s1=$(psql_at "$PORT_S1" postgres "SELECT count(*) || ',' || max(id) FROM accounts")
on_s2=$(psql_at "$PORT_S2" postgres "SELECT count(*) || ',' || min(id) FROM accounts")
assert_eq "107,199" "$on_s1" "shard 1 holds the ids below 1000000"
assert_eq "105,1000001" "$on_s2" "shard 2 holds the ids from 1000000"
digest="SELECT md5(string_agg(id || '=' || coalesce(secret::text, '-'), ',' ORDER BY id)) FROM accounts"
assert_eq "$(app "$digest WHERE id < 1000000")" "$(psql_at "$PORT_S1" postgres "$digest")" \
  "shard 1 opens its rows itself to the same plaintexts (same DEK ids, same KEK)"
assert_eq "$(app "$digest WHERE id >= 1000000")" "$(psql_at "$PORT_S2" postgres "$digest")" \
  "shard 2 opens its rows itself to the same plaintexts"

#------------------------------------------------------------------------------
# Sealed once: statement logs of both shards, and who sealed and opened what.
#------------------------------------------------------------------------------
for s in shard1 shard2; do
  n=$(grep -c "parameters: .*'pgenv1:" "$(it_log "$s")" || true)
  [[ $n -gt 0 ]] || fail "$s: no logged bind parameter carries an envelope"
  assert_file_not_contains "$(it_log "$s")" "$MARKER" "$s: log_statement = all, debug1: no marker plaintext in $n+ logged statements with envelope parameters"
done
for port in "$PORT_S1" "$PORT_S2"; do
  assert_eq "0|0" "$(psql_at "$port" postgres "SELECT coalesce(sum(sealed), 0) || '|' || coalesce(sum(opened) FILTER (WHERE role = 'fdw_shard'), 0) FROM envelope.key_stats")" \
    "shard on $port sealed nothing, and opened nothing for the coordinator"
done
sealed_c=$(psql_at "$PORT_C" postgres "SELECT sum(sealed) FROM envelope.key_stats")
assert_eq 210 "$sealed_c" "the coordinator sealed each value once (210 plaintexts written through it; sealed COPY input is not sealed again)"

#------------------------------------------------------------------------------
# One keyring: grants, rotation, destroy on every server.
#------------------------------------------------------------------------------
# A session on shard 1 that is already open sees a revoke made on the coordinator.
coproc S1 { as_pg stdbuf -oL "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT_S1" -U app -d postgres -AtX -q 2>&1; }
# s1 SQL: runs SQL in that session; its output (errors too) in $S1_OUT. (Coprocess file
# descriptors do not reach command substitutions, hence the variable.)
s1() {
  printf '%s\n\\echo __end__\n' "$1" >&"${S1[1]}"
  local line
  S1_OUT=""
  while IFS= read -r -t 30 line <&"${S1[0]}"; do
    [[ $line == __end__ ]] && return 0
    S1_OUT+="$line"
  done
  fail "no answer from the session on shard 1"
}
s1 "SELECT secret FROM accounts WHERE id = 5;"
assert_eq "$MARKER k2 1" "$S1_OUT" "shard 1, open session of app: the replicated grant lets it decrypt"
psql_at "$PORT_C" postgres "SET synchronous_commit = remote_apply; SELECT envelope.revoke_key('k2', 'app', 'decrypt')" >/dev/null
s1 "SELECT secret FROM accounts WHERE id = 5;"
assert_contains "$S1_OUT" 'permission denied for key "k2"' \
  "shard 1, same session: the coordinator's revoke applies at once (remote_apply)"
psql_at "$PORT_C" postgres "SET synchronous_commit = remote_apply; SELECT envelope.grant_key('k2', 'app', 'decrypt')" >/dev/null
s1 "SELECT secret FROM accounts WHERE id = 5;"
assert_eq "$MARKER k2 1" "$S1_OUT" "shard 1, same session: the grant is back"

# Rotation: the coordinator seals under version 2; every shard opens it.
psql_at "$PORT_C" postgres "SET synchronous_commit = remote_apply; SELECT envelope.rotate_key('k2')" >/dev/null
app "INSERT INTO accounts VALUES (6, 'k2', envelope.encrypt('$MARKER k2 v2a', 'k2')), (1000006, 'k2', envelope.encrypt('$MARKER k2 v2b', 'k2'))"
for port in "$PORT_S1" "$PORT_S2"; do
  assert_eq "k2 1 1 0
k2 2 1 0" "$(psql_at "$port" postgres "SELECT key_name, key_version, opened, failed FROM envelope.verify('accounts', 'secret')
      WHERE key_name = 'k2' ORDER BY key_version" | tr '|' ' ')" "shard on $port: k2 versions 1 and 2 open (rotation on the coordinator)"
done

# Destroy: all three caches hold k2 v1 first; after the destroy none does, no value opens.
for port in "$PORT_C" "$PORT_S1" "$PORT_S2"; do
  assert_eq t "$(psql_at "$port" postgres "SELECT envelope._encryptions('$k2') IS NOT NULL")" "server on $port caches k2 v1"
done
psql_at "$PORT_C" postgres "SET synchronous_commit = remote_apply; SELECT envelope.destroy_key('k2', 1, force => true)" >/dev/null
for port in "$PORT_C" "$PORT_S1" "$PORT_S2"; do
  assert_eq t "$(psql_at "$port" postgres "SELECT envelope._encryptions('$k2') IS NULL")" \
    "server on $port: k2 v1 is wiped from the cache when the destroy returns"
done
for port in "$PORT_S1" "$PORT_S2"; do
  assert_eq "0|1" "$(psql_at "$port" postgres "SELECT opened || '|' || destroyed FROM envelope.verify('accounts', 'secret')
      WHERE key_name = 'k2' AND key_version = 1")" "shard on $port: 0 values under k2 v1 open"
done
out=$(psql_fail "$PORT_C" postgres "SELECT secret FROM accounts WHERE id = 1000005")
assert_contains "$out" "destroyed" "coordinator: a k2 v1 value does not open ($out)"
assert_eq "$MARKER k2 v2b" "$(app "SELECT secret FROM accounts WHERE id = 1000006")" "k2 version 2 still opens"
s1_in=${S1[1]}
eval "exec $s1_in>&-"

#------------------------------------------------------------------------------
# Failures.
#------------------------------------------------------------------------------
# Shard 2's keeper cannot reach the KEK.
pg_stop shard2
pg_conf shard2 "envelope.kek_label = 'no-such-kek'"
pg_start shard2 "$PORT_S2"
wait_ready shard2 "$PORT_S2" failed 60
out=$(psql_fail_state "$PORT_S2" postgres 55000 "SELECT secret FROM accounts WHERE id = 1000001")
assert_contains "$out" "the HSM is not available to pg_envelope" "shard 2 without its HSM: reading a value there fails with 55000"
psql_fail_state "$PORT_S2" postgres 55000 "INSERT INTO accounts VALUES (1000900, 'direct', 'x')" >/dev/null
pass "shard 2 without its HSM: sealing a value there fails with 55000"
assert_eq "1000001|literal|$MARKER updated 2" "$(plain_sql 1000001 1000001)" \
  "the coordinator still reads shard 2 (the shard only stores and returns envelopes)"
app "INSERT INTO accounts VALUES (1000007, 'hsm-down', '$MARKER while shard hsm down')"
assert_eq "1000007|hsm-down|$MARKER while shard hsm down" "$(plain_sql 1000007 1000007)" \
  "the coordinator still writes to shard 2"
sed -i '/no-such-kek/d' "$IT_TMP/shard2/postgresql.conf"
pg_restart shard2
wait_ready shard2 "$PORT_S2"

# The coordinator's keeper cannot reach the KEK: sharded queries fail with 55000.
pg_stop coord
pg_conf coord "envelope.kek_label = 'no-such-kek'"
pg_start coord "$PORT_C"
wait_ready coord "$PORT_C" failed 60
IT_USER=app psql_fail_state "$PORT_C" postgres 55000 "SELECT secret FROM accounts WHERE id = 1000001" >/dev/null
pass "coordinator without its HSM: reading the sharded table fails with 55000"
sed -i '/no-such-kek/d' "$IT_TMP/coord/postgresql.conf"
pg_restart coord
wait_ready coord "$PORT_C"

# Shard 2 down: every query touching it fails loudly; shard 1 alone still answers.
pg_stop shard2
out=$(IT_USER=app psql_fail "$PORT_C" postgres "SELECT count(*) FROM accounts")
assert_contains "$out" "could not connect to server" "shard 2 down: a query across shards fails (no partial count)"
out=$(IT_USER=app psql_fail "$PORT_C" postgres "SELECT id, secret FROM accounts WHERE owner = 'k2'")
assert_contains "$out" "could not connect to server" "shard 2 down: a row query across shards fails (no partial rows)"
out=$(IT_USER=app psql_fail "$PORT_C" postgres "INSERT INTO accounts VALUES (1000008, 'down', '$MARKER to a down shard')")
assert_contains "$out" "could not connect to server" "shard 2 down: an INSERT routed to it fails"
assert_eq "1|literal|$MARKER updated 1" "$(plain_sql 1 1)" "shard 2 down: a query pruned to shard 1 answers"
pg_start shard2 "$PORT_S2"
wait_ready shard2 "$PORT_S2"
assert_eq 215 "$(app "SELECT count(*) FROM accounts")" "shard 2 back: all rows again"

for s in coord shard1 shard2; do
  assert_file_not_contains "$(it_log "$s")" "$MARKER" "$s: no marker plaintext in the server log"
done
echo "t_sharding: all checks passed"
