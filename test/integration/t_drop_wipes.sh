#!/usr/bin/env bash
# t_drop_wipes: DROP EXTENSION and DROP DATABASE remove that database's keys from the shared
# cache at once (their bytes are wiped), other databases' keys stay; a DROP EXTENSION that is
# rolled back loses nothing (keys are unwrapped again on first use).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=$((IT_PORT_BASE + 400))
it_init
pg_init a
pg_start a "$PORT"
wait_ready a "$PORT"

psql_at "$PORT" postgres "CREATE EXTENSION pg_envelope" >/dev/null
for db in d1 d2; do
  psql_at "$PORT" postgres "CREATE DATABASE $db" >/dev/null
  psql_at "$PORT" "$db" "CREATE EXTENSION pg_envelope; SELECT envelope.create_key('k');
                          CREATE TABLE t (v encrypted_text);
                          INSERT INTO t VALUES ('kept'), (envelope.encrypt('kept', 'k'));" >/dev/null
done
total() { status_at "$PORT" postgres keys_cached_total; }
assert_eq 5 "$(total)" "5 keys cached: default in postgres, default + k in d1 and d2"

# Rolled-back DROP EXTENSION: keys evicted during the drop come back on first use.
psql_at "$PORT" d1 "BEGIN; DROP EXTENSION pg_envelope CASCADE; ROLLBACK;" >/dev/null
assert_eq 3 "$(total)" "the rolled-back drop evicted d1's 2 keys"
assert_eq "kept kept" "$(psql_at "$PORT" d1 "SELECT string_agg(v::text, ' ') FROM t")" \
  "d1 still decrypts (both keys) after the rollback"
assert_eq 5 "$(total)" "d1's keys were unwrapped again on use"

psql_at "$PORT" d1 "DROP EXTENSION pg_envelope CASCADE" >/dev/null 2>&1
assert_eq 3 "$(total)" "DROP EXTENSION removed d1's 2 keys"
assert_eq 2 "$(status_at "$PORT" d2 keys_cached)" "d2 keeps its keys"

psql_at "$PORT" postgres "DROP DATABASE d2" >/dev/null
assert_eq 1 "$(total)" "DROP DATABASE removed d2's keys; only postgres' default remains"
assert_eq t "$(psql_at "$PORT" postgres "SELECT envelope.decrypt(envelope.encrypt('x')) = 'x'")" \
  "the remaining key still works"
echo "t_drop_wipes: all checks passed"
