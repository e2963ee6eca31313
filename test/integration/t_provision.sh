#!/usr/bin/env bash
# t_provision: hsm/provision-softhsm is idempotent, creates exactly one KEK with the right
# label, and pg_envelope_provision --check fails for a KEK label that does not exist.
set -euo pipefail
# shellcheck source=test/integration/lib.sh
source "$(dirname "$0")/lib.sh"

it_init --no-token
dir=$IT_TMP/prov

out=$(provision_token "$dir" 2>&1) || { echo "$out"; fail "first provisioning run"; }
assert_contains "$out" "result: changed" "first run changes things"
assert_contains "$out" "export SOFTHSM2_CONF=$dir/softhsm2.conf" "prints the SOFTHSM2_CONF export"
assert_contains "$out" "envelope.pin_file = '$dir/user.pin'" "prints the envelope settings"
assert_eq "postgres 600" "$(stat -c '%U %a' "$dir/user.pin")" "user PIN file: postgres, 0600"
assert_eq "postgres 600" "$(stat -c '%U %a' "$dir/so.pin")" "SO PIN file: postgres, 0600"

out=$(provision_token "$dir" 2>&1) || { echo "$out"; fail "second provisioning run"; }
assert_contains "$out" "result: unchanged" "second run changes nothing"

pin=$(head -n 1 "$dir/user.pin")
objects=$(as_pg SOFTHSM2_CONF="$dir/softhsm2.conf" pkcs11-tool --module "$SOFTHSM_MODULE" \
  --token-label pg_envelope --login --pin "$pin" --list-objects --type secrkey 2>&1) ||
  { echo "$objects"; fail "pkcs11-tool --list-objects"; }
count=$(grep -c '^Secret Key Object' <<<"$objects" || true)
assert_eq 1 "$count" "exactly one secret key object on the token"
label=$(sed -n 's/^ *label: *//p' <<<"$objects")
assert_eq "pg_envelope-kek" "$label" "the secret key is the KEK"

tool=$(command -v pg_envelope_provision || echo "$ENVELOPE_ROOT/build/pg_envelope_provision")
check() {  # KEK_LABEL
  as_pg SOFTHSM2_CONF="$dir/softhsm2.conf" "$tool" --module "$SOFTHSM_MODULE" \
    --token-label pg_envelope --kek-label "$1" --pin-file "$dir/user.pin" --check
}
out=$(check pg_envelope-kek 2>&1) || { echo "$out"; fail "--check with the right KEK label"; }
pass "--check with the right KEK label exits 0"
if out=$(check no-such-kek 2>&1); then
  echo "$out"
  fail "--check with a wrong KEK label exited 0"
fi
pass "--check with a wrong KEK label exits non-zero"
echo "t_provision: all checks passed"
