#!/usr/bin/env bash
# t_wrap_mechanisms: one keyring holding DEKs wrapped every way a token can (README "PKCS#11
# tokens and how they wrap"). On SoftHSM2, whose KEK was provisioned for key wrap, the server
# wraps new keys with AES-GCM, the token's RFC 3394 key wrap, its RFC 5649 key wrap (its
# CKM_AES_KEY_WRAP_PAD, identified by the known-answer test) and RFC 3394 computed from AES-ECB,
# as envelope.wrap_mechanism says after each reload; status() and envelope.keys say which; after
# a restart under each setting every value decrypts (a standby too). Insisting on a mechanism
# the token or KEK cannot do is a clear status() error until the setting is fixed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=$((IT_PORT_BASE + 1200))
PORT_S=$((IT_PORT_BASE + 1201))
# A KEK that may wrap (needed by the token's own key wrap); later one that may only encrypt.
PGE_TOKEN=softhsm
it_init --no-token
provision_token "$IT_HSM" >"$IT_TMP/provision.log" 2>&1 || { cat "$IT_TMP/provision.log"; fail "provisioning"; }
it_provision_tool --kek-label kek-kw --wrap-mechanism aes_kw >"$IT_TMP/kw.log" 2>&1 ||
  { cat "$IT_TMP/kw.log"; fail "provisioning a KEK for key wrap"; }
assert_file_contains "$IT_TMP/kw.log" "wrapping: CKM_AES_KEY_WRAP (RFC 3394)" \
  "the provisioning tool identifies the token's RFC 3394 key wrap"
pg_init a
pg_conf a "envelope.kek_label = 'kek-kw'"
pg_conf a "wal_level = replica"
pg_start a "$PORT"
wait_ready a "$PORT"
psql_at "$PORT" postgres "CREATE EXTENSION pg_envelope;
  CREATE TABLE t (m text PRIMARY KEY, v encrypted_text)" >/dev/null

set_mechanism() {  # MECHANISM: reload with envelope.wrap_mechanism = MECHANISM, wait for ready
  psql_at "$PORT" postgres "ALTER SYSTEM SET envelope.wrap_mechanism = '$1'"
  psql_at "$PORT" postgres "SELECT pg_reload_conf()" >/dev/null
  for _ in $(seq 1 100); do
    [[ $(status_at "$PORT" postgres "keeper_state || '|' || coalesce(wrap_mechanism, '')") == "ready|$2" ]] && return 0
    sleep 0.1
  done
  fail "envelope.wrap_mechanism = $1: status() never showed ready|$2 (got $(status_at "$PORT" postgres "keeper_state, wrap_mechanism, last_error"))"
}

declare -A want_desc=(
  [aes_gcm]="CKM_AES_GCM"
  [aes_kw]="CKM_AES_KEY_WRAP (RFC 3394)"
  [aes_kwp]="CKM_AES_KEY_WRAP_PAD (RFC 5649)"
  [ecb_kw]="RFC 3394 from CKM_AES_ECB"
)
declare -A want_format=([aes_gcm]=aes-gcm [aes_kw]=rfc3394 [aes_kwp]=rfc5649 [ecb_kw]=rfc3394)
declare -A want_len=([aes_gcm]=61 [aes_kw]=57 [aes_kwp]=57 [ecb_kw]=57)
assert_eq "pkcs11|CKM_AES_GCM" "$(status_at "$PORT" postgres "kek_provider || '|' || wrap_mechanism")" \
  "auto on SoftHSM2 wraps with AES-GCM"
for m in aes_gcm aes_kw aes_kwp ecb_kw; do
  set_mechanism "$m" "${want_desc[$m]}"
  psql_at "$PORT" postgres "SELECT envelope.create_key('k_$m');
    INSERT INTO t VALUES ('$m', envelope.encrypt('sealed under a key wrapped by $m', 'k_$m'))" >/dev/null
  assert_eq "${want_format[$m]}|${want_len[$m]}" \
    "$(psql_at "$PORT" postgres "SELECT k.wrap_format || '|' || length(r.wrapped_dek)
       FROM envelope.keys k JOIN envelope.keyring r USING (id) WHERE k.name = 'k_$m'")" \
    "$m: status() says ${want_desc[$m]}; the key is wrapped ${want_format[$m]} (${want_len[$m]} bytes)"
done
want=$(for m in aes_gcm aes_kw aes_kwp ecb_kw; do echo "$m|sealed under a key wrapped by $m"; done)
assert_eq "$want" "$(psql_at "$PORT" postgres "SELECT m, v FROM t ORDER BY m")" "every value decrypts"

# The token's RFC 3394 and the one computed from ECB are the same function: a key wrapped by
# one is opened by the other (the keyring row is unwrapped after a restart under ecb_kw).
pgtool pg_basebackup -p "$PORT" -D "$IT_TMP/s" -R -X stream >/dev/null 2>&1 || fail "pg_basebackup"
for m in aes_gcm aes_kw aes_kwp ecb_kw auto; do
  psql_at "$PORT" postgres "ALTER SYSTEM SET envelope.wrap_mechanism = '$m'" >/dev/null
  pg_restart a
  wait_ready a "$PORT"
  assert_eq "5|0" "$(status_at "$PORT" postgres "keys_loaded, load_failures")" \
    "restarted with $m: all 5 keys of the mixed keyring load (default, made with auto, and 4)"
  assert_eq "$want" "$(psql_at "$PORT" postgres "SELECT m, v FROM t ORDER BY m")" \
    "restarted with $m: every value decrypts"
done
pg_start s "$PORT_S"
wait_ready s "$PORT_S"
assert_eq "$want" "$(psql_at "$PORT_S" postgres "SELECT m, v FROM t ORDER BY m")" \
  "a streaming standby decrypts the mixed keyring"

# Insisting on what the token cannot do: a clear error, no keys, then fixed by a reload.
it_provision_tool --kek-label kek-plain >/dev/null 2>&1 || fail "provisioning kek-plain"
psql_at "$PORT" postgres "ALTER SYSTEM SET envelope.kek_label = 'kek-plain'"
psql_at "$PORT" postgres "ALTER SYSTEM SET envelope.wrap_mechanism = 'aes_kw'"
psql_at "$PORT" postgres "SELECT pg_reload_conf()" >/dev/null
wait_ready a "$PORT" failed 30
err=$(status_at "$PORT" postgres "last_error")
assert_contains "$err" "needs a KEK with CKA_WRAP and CKA_UNWRAP" \
  "aes_kw with a KEK that may not wrap: status() says why"
psql_fail_state "$PORT" postgres 55000 "SELECT envelope.create_key('refused')" >/dev/null
pass "no key can be created meanwhile (55000)"
psql_at "$PORT" postgres "ALTER SYSTEM SET envelope.wrap_mechanism = 'ecb_kw'"
psql_at "$PORT" postgres "SELECT pg_reload_conf()" >/dev/null
wait_ready a "$PORT" ready 30
psql_at "$PORT" postgres "SELECT envelope.create_key('k_plain_ecb');
  INSERT INTO t VALUES ('plain_ecb', envelope.encrypt('under kek-plain', 'k_plain_ecb'))" >/dev/null
assert_eq "rfc3394|kek-plain|under kek-plain" "$(psql_at "$PORT" postgres "SELECT k.wrap_format || '|' || k.kek_label || '|' || t.v
    FROM envelope.keys k, t WHERE k.name = 'k_plain_ecb' AND t.m = 'plain_ecb'")" \
  "ecb_kw needs nothing more of the KEK than encrypt/decrypt"
# KEK rotation across mechanisms: every key moves to kek-plain (wrapped from ECB).
psql_at "$PORT" postgres "CALL envelope.rewrap_keys()" >/dev/null
assert_eq "kek-plain|rfc3394|6" "$(psql_at "$PORT" postgres "SELECT kek_label || '|' || wrap_format || '|' || count(*)
    FROM envelope.keys GROUP BY kek_label, wrap_format ORDER BY 1")" "rewrap_keys() re-wraps every format under the new KEK"
pg_restart a
wait_ready a "$PORT"
assert_eq "$want"$'\nplain_ecb|under kek-plain' "$(psql_at "$PORT" postgres "SELECT m, v FROM t ORDER BY m = 'plain_ecb', m")" \
  "after the re-wrap and a restart every value decrypts"
echo "t_wrap_mechanisms: all checks passed"
