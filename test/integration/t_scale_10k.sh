#!/usr/bin/env bash
# t_scale_10k: 10,000 keys in one database with one KEK on the token. Prints how long creating
# them takes, the startup load time (status last_load_ms) and the wall time from pg_ctl start to
# keeper_state = 'ready' (informational only: no timing assertions). Asserts that all keys are
# cached after a restart, that a sample decrypts, and that the token still holds exactly one
# secret key. Then a server with envelope.max_keys = 16 refuses the 17th key with SQLSTATE 53400.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=$((IT_PORT_BASE + 160))
PORT_SMALL=$((IT_PORT_BASE + 161))
NKEYS=10000
it_init
pg_init big
pg_conf big "envelope.max_keys = 20000"
pg_start big "$PORT"
wait_ready big "$PORT"
psql_at "$PORT" postgres "CREATE EXTENSION pg_envelope" || fail "CREATE EXTENSION"
assert_eq 20000 "$(status_at "$PORT" postgres cache_capacity)" "cache capacity follows envelope.max_keys"

ms_now() { date +%s%3N; }
t0=$(ms_now)
psql_at "$PORT" postgres "SELECT count(envelope.create_key('k' || g)) FROM generate_series(1, $NKEYS) g" >/dev/null ||
  fail "creating $NKEYS keys in one statement"
create_ms=$(($(ms_now) - t0))
echo "SCALE: created $NKEYS keys in one statement in $create_ms ms"
assert_eq "$((NKEYS + 1))" "$(psql_at "$PORT" postgres "SELECT count(*) FROM envelope.keyring")" \
  "$NKEYS keys (+ default) in the keyring"
assert_eq "$((NKEYS + 1))" "$(status_at "$PORT" postgres keys_cached)" "all new keys are cached at once"

# Sample data under a spread of keys.
SAMPLE="1, 2, 777, 4242, 5000, 9999, $NKEYS"
psql_at "$PORT" postgres "CREATE TABLE t (k text PRIMARY KEY, v encrypted_text);
  INSERT INTO t SELECT 'k' || g, envelope.encrypt('value of k' || g, 'k' || g) FROM unnest(ARRAY[$SAMPLE]) g"
kcv_sample=$(psql_at "$PORT" postgres "SELECT name, key_check_value FROM envelope.keys
  WHERE name IN (SELECT 'k' || g FROM unnest(ARRAY[$SAMPLE]) g)")

pg_stop big
t0=$(ms_now)
pg_start big "$PORT"
wait_ready big "$PORT" ready 240
wall_ms=$(($(ms_now) - t0))
st=$(status_at "$PORT" postgres "keys_loaded, load_failures, keys_cached, round(last_load_ms)")
IFS='|' read -r loaded failures cached load_ms <<<"$st"
echo "SCALE: $loaded keys loaded in $load_ms ms (status last_load_ms)"
echo "SCALE: wall time from pg_ctl start to keeper_state = 'ready': $wall_ms ms"
assert_eq "$((NKEYS + 1))|0|$((NKEYS + 1))" "$loaded|$failures|$cached" \
  "after the restart all $((NKEYS + 1)) keys are loaded and cached, none failed"
assert_eq "t" "$(psql_at "$PORT" postgres "SELECT count(*) = 7 AND bool_and(v::text = 'value of ' || k) FROM t")" \
  "the sample values decrypt"
assert_eq "$kcv_sample" "$(psql_at "$PORT" postgres "SELECT name, key_check_value FROM envelope.keys
  WHERE name IN (SELECT 'k' || g FROM unnest(ARRAY[$SAMPLE]) g)")" "the sample keys kept their key check values"
assert_eq "new under k3333" "$(psql_at "$PORT" postgres "SELECT envelope.encrypt('new under k3333', 'k3333')::text")" \
  "a key without data seals and opens"
assert_eq "$((NKEYS + 1))" "$(status_at "$PORT" postgres keys_cached)" "no extra unwraps were needed"

# One KEK on the token, however many DEKs.
listing=$(it_provision_tool --check 2>&1) || { echo "$listing"; fail "pg_envelope_provision --check"; }
assert_eq "secret key on the token: 'pg_envelope-kek'" "$(grep '^secret key on the token:' <<<"$listing")" \
  "the token holds exactly one secret key, the KEK"
if [[ $PGE_TOKEN != nss ]]; then  # pkcs11-tool cannot pass NSS's C_Initialize string
  all=$(as_pg SOFTHSM2_CONF="$IT_SOFTHSM_CONF" pkcs11-tool --module "$(it_token_module)" \
    --token-label pg_envelope --login --pin "$(head -n 1 "$IT_PIN_FILE")" --list-objects 2>&1) ||
    fail "pkcs11-tool --list-objects (all types)"
  assert_eq 1 "$(grep -cE '^[A-Za-z ]+ Object' <<<"$all" || true)" "the token holds no other object at all"
fi
pg_stop big

# --- Cache full: envelope.max_keys = 16 (the minimum).
pg_init small
pg_conf small "envelope.max_keys = 16"
pg_start small "$PORT_SMALL"
wait_ready small "$PORT_SMALL"
psql_at "$PORT_SMALL" postgres "CREATE EXTENSION pg_envelope" || fail "CREATE EXTENSION (small)"
assert_eq 16 "$(status_at "$PORT_SMALL" postgres cache_capacity)" "small: capacity 16"
for i in $(seq 2 16); do psql_at "$PORT_SMALL" postgres "SELECT envelope.create_key('s$i')" >/dev/null; done
assert_eq "16|16" "$(status_at "$PORT_SMALL" postgres "keys_cached, (SELECT count(*) FROM envelope.keyring)")" \
  "small: 16 keys (default + 15) fill the cache"
out=$(psql_fail_state "$PORT_SMALL" postgres 53400 "SELECT envelope.create_key('s17')")
assert_contains "$out" "key cache is full" "small: the 17th key fails with 53400"
assert_contains "$out" "HINT:  Raise envelope.max_keys" "small: the hint names envelope.max_keys"
assert_eq 16 "$(psql_at "$PORT_SMALL" postgres "SELECT count(*) FROM envelope.keyring")" \
  "small: the failed create_key left no keyring row"
assert_eq "still fine" "$(psql_at "$PORT_SMALL" postgres "SELECT envelope.encrypt('still fine', 's16')::text")" \
  "small: existing keys keep working when the cache is full"
echo "t_scale_10k: all checks passed"
