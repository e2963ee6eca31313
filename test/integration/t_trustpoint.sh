#!/usr/bin/env bash
# t_trustpoint: migration from Trustpoint. Legacy data is made here by an independent
# implementation (Python `cryptography`): a known KEK written into the token as the server user
# (label trustpoint-kek, CKA_DECRYPT), a DEK wrapped as 8 random bytes || AES-256-ECB(KEK, DEK),
# and fields base64(nonce || tag || AES-256-GCM(DEK, text || 0x00 * n || n)).
#  - envelope.import_legacy_key() stores the DEK (checked by unwrapping the keyring row through
#    the token) and the fields re-seal through envelope.import_legacy_value(): n = 0, 7, 15,
#    empty, multibyte UTF-8, a 3 KiB PEM; still after rotate_key (version 1 opens them).
#  - Tampered tag / ciphertext, another DEK, bad padding with a valid tag -> XX001; bad base64,
#    short input -> 22P02; invalid UTF-8 -> 22021; wrong labels and blob sizes; a sample field
#    refuses an import under the wrong legacy KEK and nothing is stored.
#  - Privileges: encrypt and decrypt on the key are both needed (42501); importing keys is for
#    superusers and envelope_admin.
#  - A restart loads the imported key from the keyring like any other.
#  - No field, plaintext, DEK or KEK appears in the server log; no DEK or KEK under PGDATA.
set -euo pipefail
# shellcheck source=test/integration/lib.sh
source "$(dirname "$0")/lib.sh"

PORT=$((IT_PORT_BASE + 1000))
# Debian's interpreter (python3-cryptography), not whatever python3 comes first on PATH.
PY=${PYTHON:-/usr/bin/python3}
"$PY" -c 'import cryptography' 2>/dev/null ||
  fail "python3-cryptography is needed (script/bootstrap installs it)"
PROBE=$ENVELOPE_ROOT/build/envelope_test_dek_probe
[[ -x $PROBE ]] || fail "test probe $PROBE not built (script/build builds it with the tests)"

it_init
pg_init tp
pg_conf tp "log_min_messages = info"
pg_start tp "$PORT"
wait_ready tp "$PORT"
PGDATA_TP=$IT_TMP/tp
LOG=$(it_log tp)
psql_at "$PORT" postgres "CREATE EXTENSION pg_envelope" >/dev/null

#------------------------------------------------------------------------------
# Legacy vectors. One line per item: NAME HEX-OR-BASE64 [PLAINTEXT-HEX].
#------------------------------------------------------------------------------
VEC=$IT_TMP/vectors
make_pg_dir "$VEC"
"$PY" - "$VEC" <<'PY' || fail "generating the Trustpoint vectors"
import base64, os, sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

out = sys.argv[1]
kek, wrong_kek = os.urandom(32), os.urandom(32)
dek, other_dek = os.urandom(32), os.urandom(32)

def ecb_wrap(k, d):
    e = Cipher(algorithms.AES(k), modes.ECB()).encryptor()
    return os.urandom(8) + e.update(d) + e.finalize()

def field(d, padded):
    nonce = os.urandom(12)
    sealed = AESGCM(d).encrypt(nonce, padded, None)  # ciphertext || tag
    return base64.b64encode(nonce + sealed[-16:] + sealed[:-16]).decode()

def pad(pt):
    n = 15 - len(pt) % 16
    return pt + b"\0" * n + bytes([n])

pem = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(
    base64.b64encode(os.urandom(48)).decode() for _ in range(48)) + "\n-----END PRIVATE KEY-----\n"
# Exact lengths for the padding cases (n = 15 - len % 16): 15, 24 and 32 bytes.
texts = {
    "n0": ("TPMARK-n0-" + os.urandom(16).hex())[:15],
    "n7": ("TPMARK-n7-" + os.urandom(16).hex())[:24],
    "n15": ("TPMARK-n15-" + os.urandom(16).hex())[:32],
    "empty": "",
    "utf8": "TPMARK-ünïcødé-密码-🔑-" + os.urandom(3).hex(),
    "pem": pem,
}
assert 15 - len(texts["n0"].encode()) % 16 == 0
assert 15 - len(texts["n7"].encode()) % 16 == 7
assert 15 - len(texts["n15"].encode()) % 16 == 15
assert len(pem.encode()) > 3072

lines = ["kek %s" % kek.hex(), "wrong_kek %s" % wrong_kek.hex(), "dek %s" % dek.hex(),
         "other_dek %s" % other_dek.hex(),
         "wrapped %s" % ecb_wrap(kek, dek).hex(),
         "wrapped_other %s" % ecb_wrap(kek, other_dek).hex()]
for name, t in texts.items():
    b = t.encode()
    lines.append("field_%s %s %s" % (name, field(dek, pad(b)), b.hex()))
good = base64.b64decode(field(dek, pad(b"TPMARK-tamper-me-please")))
tag_flipped = bytearray(good); tag_flipped[12] ^= 1
ct_flipped = bytearray(good); ct_flipped[30] ^= 0x80
lines += [
    "tampered_tag %s" % base64.b64encode(bytes(tag_flipped)).decode(),
    "tampered_ct %s" % base64.b64encode(bytes(ct_flipped)).decode(),
    "other_key_field %s" % field(other_dek, pad(b"TPMARK-under-the-other-dek")),
    # Valid tags, invalid padding: a count above 15, and a non-zero byte among the pad bytes.
    "bad_pad_count %s" % field(dek, b"TPMARK-badcount" + bytes([16])),
    "bad_pad_byte %s" % field(dek, b"TPMARK-ba" + b"\0\0\x01\0\0\0" + bytes([6])),
    "bad_utf8 %s" % field(dek, pad(b"TPMARK-\xff\xfe-not-utf8")),
    "short %s" % base64.b64encode(os.urandom(40)).decode(),
    "not_blocks %s" % base64.b64encode(os.urandom(28 + 20)).decode(),
]
with open(os.path.join(out, "vectors.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
with open(os.path.join(out, "kek.bin"), "wb") as f:
    f.write(kek)
with open(os.path.join(out, "wrong_kek.bin"), "wb") as f:
    f.write(wrong_kek)
PY
vec() { awk -v k="$1" '$1 == k { print $2 }' "$VEC/vectors.txt"; }
vec_plain() { awk -v k="$1" '$1 == k { print $3 }' "$VEC/vectors.txt"; }
chown "$PG_USER" "$VEC"/*.bin
pass "legacy vectors made with python3-cryptography (AES-ECB wrap, AES-GCM fields)"

#------------------------------------------------------------------------------
# The legacy KEK goes into the running server's token, as the server user, like an operator
# would copy it: sensitive, with CKA_DECRYPT. A second key stands for a wrong legacy KEK.
#------------------------------------------------------------------------------
write_kek() {
  as_pg SOFTHSM2_CONF="$IT_SOFTHSM_CONF" pkcs11-tool --module "$SOFTHSM_MODULE" \
    --token-label pg_envelope --login --pin "$(cat "$IT_PIN_FILE")" \
    --write-object "$1" --type secrkey --key-type AES:32 --label "$2" \
    --usage-decrypt --sensitive >"$IT_TMP/pkcs11-tool.log" 2>&1 ||
    { cat "$IT_TMP/pkcs11-tool.log"; fail "writing $2 into the token"; }
}
write_kek "$VEC/kek.bin" trustpoint-kek
write_kek "$VEC/wrong_kek.bin" trustpoint-kek-wrong
rm -f "$VEC/kek.bin" "$VEC/wrong_kek.bin"
pass "legacy KEKs written into the token (sensitive, decrypt)"

#------------------------------------------------------------------------------
# Import errors that store nothing.
#------------------------------------------------------------------------------
WRAPPED=$(vec wrapped)
out=$(psql_fail_state "$PORT" postgres 42704 \
  "SELECT envelope.import_legacy_key('tp', '\\x$WRAPPED', 'no-such-kek')")
assert_contains "$out" "no secret key labelled 'no-such-kek'" "an unknown legacy KEK label is named in the error"
psql_fail_state "$PORT" postgres 22023 \
  "SELECT envelope.import_legacy_key('tp', '\\x$WRAPPED', 'pg_envelope-kek')" >/dev/null
pass "pg_envelope's own KEK is refused as a legacy KEK (22023)"
out=$(psql_fail_state "$PORT" postgres 22023 \
  "SELECT envelope.import_legacy_key('tp', '\\x${WRAPPED:0:78}')")
assert_contains "$out" "is 40 bytes, not 39" "a wrapped DEK of the wrong size is refused (22023)"
# The wrong legacy KEK decrypts to a wrong DEK without any error (ECB has no integrity); a
# sample field catches it and the import stores nothing.
out=$(psql_fail_state "$PORT" postgres XX001 \
  "SELECT envelope.import_legacy_key('tp', '\\x$WRAPPED', 'trustpoint-kek-wrong', '$(vec field_n7)')")
assert_contains "$out" "Trustpoint field failed authentication" "a sample field refuses an import under the wrong legacy KEK"
assert_eq 0 "$(psql_at "$PORT" postgres "SELECT count(*) FROM envelope.keyring WHERE name = 'tp'")" \
  "a refused import leaves no keyring row"

#------------------------------------------------------------------------------
# Import, with a sample; the keyring row unwraps (through the token) to Trustpoint's DEK.
#------------------------------------------------------------------------------
KEY_ID=$(psql_at "$PORT" postgres \
  "SELECT envelope.import_legacy_key('tp', '\\x$WRAPPED', 'trustpoint-kek', '$(vec field_n0)')")
[[ $KEY_ID =~ ^[0-9a-f-]{36}$ ]] || fail "import_legacy_key returned '$KEY_ID'"
assert_eq "1|active|pg_envelope-kek" "$(psql_at "$PORT" postgres \
  "SELECT version || '|' || state || '|' || kek_label FROM envelope.keyring WHERE name = 'tp'")" \
  "the imported DEK is version 1 of key 'tp', wrapped under the current KEK"
row=$(psql_at "$PORT" postgres \
  "SELECT replace(id::text, '-', '') || ' ' || encode(wrapped_dek, 'hex') FROM envelope.keyring WHERE name = 'tp'")
# shellcheck disable=SC2086  # id and wrapped hex are two arguments
probed=$(as_pg SOFTHSM2_CONF="$IT_SOFTHSM_CONF" "$PROBE" "$SOFTHSM_MODULE" pg_envelope "$IT_PIN_FILE" \
  pg_envelope-kek $row) || fail "probe could not unwrap the imported DEK"
[[ $probed == "$(vec dek)" ]] || fail "the keyring row does not unwrap to Trustpoint's DEK"
pass "the keyring row unwraps to exactly Trustpoint's DEK"
assert_eq "import_legacy_key" "$(psql_at "$PORT" postgres \
  "SELECT string_agg(action, ',') FROM envelope.key_events WHERE key_name = 'tp'")" \
  "the import is in the key history"
psql_fail_state "$PORT" postgres 42710 \
  "SELECT envelope.import_legacy_key('tp', '\\x$WRAPPED')" >/dev/null
pass "importing under an existing key name is refused (42710)"
psql_at "$PORT" postgres "SELECT envelope.import_legacy_key('other', '\\x$(vec wrapped_other)')" >/dev/null

#------------------------------------------------------------------------------
# The migration itself: old column -> encrypted_text, as the README describes.
#------------------------------------------------------------------------------
psql_at "$PORT" postgres "CREATE TABLE creds (id text PRIMARY KEY, secret_old text)"
for n in n0 n7 n15 empty utf8 pem; do
  psql_at "$PORT" postgres "INSERT INTO creds VALUES ('$n', '$(vec "field_$n")')"
done
psql_at "$PORT" postgres "ALTER TABLE creds ADD COLUMN secret encrypted_text;
  UPDATE creds SET secret = envelope.import_legacy_value(secret_old, 'tp')"
check_plaintexts() {
  local n got
  for n in n0 n7 n15 empty utf8 pem; do
    got=$(psql_at "$PORT" postgres \
      "SELECT encode(convert_to(secret::text, 'UTF8'), 'hex') FROM creds WHERE id = '$n'")
    [[ $got == "$(vec_plain "field_$n")" ]] || fail "$1: field $n does not read back"
  done
  pass "$1: n = 0, 7, 15, empty, multibyte UTF-8 and a 3 KiB PEM read back exactly"
}
check_plaintexts "after the migration"
assert_eq "6|$KEY_ID" "$(psql_at "$PORT" postgres \
  "SELECT count(*) || '|' || min(envelope.value_key_id(secret)::text) FROM creds")" \
  "every re-sealed value names the imported key"
psql_at "$PORT" postgres "ALTER TABLE creds DROP COLUMN secret_old"

# After a rotation version 1 still opens legacy fields; new values are sealed under version 2.
V2=$(psql_at "$PORT" postgres "SELECT envelope.rotate_key('tp')")
got=$(psql_at "$PORT" postgres "SELECT envelope.value_key_id(envelope.import_legacy_value('$(vec field_n7)', 'tp'))
  || ' ' || encode(convert_to(envelope.import_legacy_value('$(vec field_n7)', 'tp')::text, 'UTF8'), 'hex')")
assert_eq "$V2 $(vec_plain field_n7)" "$got" "after rotate_key, version 1 opens legacy fields and version 2 seals them"

#------------------------------------------------------------------------------
# Rejections: XX001 for anything that does not authenticate or unpad, 22P02 for malformed
# input, 22021 for bytes that are not text.
#------------------------------------------------------------------------------
reject() {
  local state=$1 input=$2 key=$3 what=$4 out
  out=$(psql_fail_state "$PORT" postgres "$state" \
    "SELECT envelope.import_legacy_value('$input', '$key')")
  [[ $out != *"$input"* ]] || fail "$what: the error echoes the input"
  pass "$what ($state)"
}
reject XX001 "$(vec tampered_tag)" tp "a tampered tag is refused"
reject XX001 "$(vec tampered_ct)" tp "a tampered ciphertext is refused"
reject XX001 "$(vec other_key_field)" tp "a field of another DEK is refused"
reject XX001 "$(vec field_n7)" other "a field opened with the wrong key is refused"
reject XX001 "$(vec bad_pad_count)" tp "a padding count above 15 (valid tag) is refused"
reject XX001 "$(vec bad_pad_byte)" tp "a non-zero pad byte (valid tag) is refused"
reject 22021 "$(vec bad_utf8)" tp "a plaintext that is not UTF-8 is refused"
reject 22P02 "$(vec short)" tp "a field shorter than nonce, tag and one block is refused"
reject 22P02 "$(vec not_blocks)" tp "a field that is not whole blocks is refused"
reject 22P02 "TPMARK-not*base64!" tp "invalid base64 is refused"
reject 22P02 "    " tp "whitespace-only input is refused"
psql_fail_state "$PORT" postgres 22P02 \
  "SELECT envelope.import_legacy_value(E'$(vec field_n15)\\n', 'tp')" >/dev/null
pass "a field with a trailing newline is refused (22P02)"
reject 42704 "$(vec field_n7)" no_such_key "an unknown key is refused"

#------------------------------------------------------------------------------
# Privileges: both encrypt and decrypt on the key; key import for admins only.
#------------------------------------------------------------------------------
psql_at "$PORT" postgres "CREATE ROLE clerk LOGIN; GRANT SELECT, UPDATE, INSERT ON creds TO clerk;
  CREATE TABLE legacy_q (v text); INSERT INTO legacy_q VALUES ('$(vec field_utf8)');
  GRANT SELECT ON legacy_q TO clerk"
# The field travels in a column, not in the statement.
MIGRATE="INSERT INTO creds SELECT 'q', envelope.import_legacy_value(v, 'tp') FROM legacy_q"
out=$(IT_USER=clerk psql_fail_state "$PORT" postgres 42501 "$MIGRATE")
assert_contains "$out" "encrypt" "a role without the key grant is refused (42501)"
psql_at "$PORT" postgres "SELECT envelope.grant_key('tp', 'clerk', 'encrypt')" >/dev/null
out=$(IT_USER=clerk psql_fail_state "$PORT" postgres 42501 "$MIGRATE")
assert_contains "$out" "decrypt" "encrypt alone is not enough (42501)"
psql_at "$PORT" postgres "SELECT envelope.grant_key('tp', 'clerk', 'decrypt')" >/dev/null
IT_USER=clerk psql_at "$PORT" postgres "$MIGRATE"
assert_eq "$(vec_plain field_utf8)" "$(psql_at "$PORT" postgres \
  "SELECT encode(convert_to(secret::text, 'UTF8'), 'hex') FROM creds WHERE id = 'q'")" \
  "with encrypt and decrypt the role migrates a field"
IT_USER=clerk psql_fail_state "$PORT" postgres 42501 \
  "SELECT envelope.import_legacy_key('tp2', '\\x$WRAPPED')" >/dev/null
pass "a role that is not an admin cannot import a key (42501)"
psql_at "$PORT" postgres "CREATE ROLE keyadm LOGIN IN ROLE envelope_admin"
IT_USER=keyadm psql_at "$PORT" postgres "SELECT envelope.import_legacy_key('tp_adm', '\\x$WRAPPED')" >/dev/null
pass "an envelope_admin member imports a key"

#------------------------------------------------------------------------------
# Bulk: 5,000 Trustpoint fields (64-byte secrets) through one UPDATE; the rate is reported.
#------------------------------------------------------------------------------
BULK_DEK=$(vec dek)
"$PY" - "$BULK_DEK" >"$VEC/bulk.copy" <<'PY' || fail "generating bulk fields"
import base64, os, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
aead = AESGCM(bytes.fromhex(sys.argv[1]))
for i in range(5000):
    pt = ("bulk-%05d-" % i).encode() + os.urandom(27).hex().encode()[:53]   # 64 bytes
    padded = pt + b"\0" * 15 + bytes([15])
    nonce = os.urandom(12)
    sealed = aead.encrypt(nonce, padded, None)
    print("%d\t%s\t%s" % (i, base64.b64encode(nonce + sealed[-16:] + sealed[:-16]).decode(),
                          pt.decode()))
PY
psql_at "$PORT" postgres "CREATE TABLE bulk (id int PRIMARY KEY, old text, want text, v encrypted_text)"
as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT" -U postgres -d postgres -AtX -q -v ON_ERROR_STOP=1 \
  -c "COPY bulk (id, old, want) FROM STDIN" <"$VEC/bulk.copy" || fail "loading bulk fields"
ms=$(psql_at "$PORT" postgres "DO \$\$
  DECLARE t0 timestamptz := clock_timestamp();
  BEGIN
    UPDATE bulk SET v = envelope.import_legacy_value(old, 'tp');
    RAISE NOTICE 'ms=%', round(extract(epoch FROM clock_timestamp() - t0) * 1000);
  END \$\$" 2>&1 | sed -n 's/.*ms=\([0-9]*\).*/\1/p')
assert_eq 5000 "$(psql_at "$PORT" postgres "SELECT count(*) FROM bulk WHERE v::text = want")" \
  "5,000 bulk fields migrate and read back"
echo "ok - measured: 5,000 fields re-sealed in ${ms} ms ($((5000 * 1000 / (ms > 0 ? ms : 1))) fields/s)"

#------------------------------------------------------------------------------
# Restart: the keeper loads the imported key from the keyring like any other.
#------------------------------------------------------------------------------
pg_restart tp
wait_ready tp "$PORT"
check_plaintexts "after a restart"
assert_eq "$(vec_plain field_pem)" "$(psql_at "$PORT" postgres \
  "SELECT encode(convert_to(envelope.import_legacy_value('$(vec field_pem)', 'tp')::text, 'UTF8'), 'hex')")" \
  "after a restart legacy fields still import"

#------------------------------------------------------------------------------
# Secrecy: no field, plaintext, DEK or KEK in the server log; no DEK or KEK under PGDATA.
#------------------------------------------------------------------------------
psql_at "$PORT" postgres "CHECKPOINT" >/dev/null
# Positive control: the errors are in the log (their statements are not).
assert_file_contains "$LOG" "ERROR:  Trustpoint field failed authentication" "the refusals are logged"
assert_file_contains "$LOG" "ERROR:  invalid Trustpoint field: not base64" "malformed input is logged as an error"
for k in tampered_tag tampered_ct other_key_field bad_pad_count bad_pad_byte bad_utf8 short not_blocks field_n7 field_n15; do
  assert_file_not_contains "$LOG" "$(vec "$k")" "field $k is not in the server log"
done
assert_file_not_contains "$LOG" "TPMARK-not*base64!" "invalid base64 input is not in the server log"
assert_file_not_contains "$LOG" "TPMARK" "no plaintext marker is in the server log"
plains=()
for n in n0 n7 n15 utf8 pem; do plains+=("$(vec_plain "field_$n")"); done
as_pg "$PY" - "$PGDATA_TP" "$LOG" "$(vec dek)" "$(vec other_dek)" "$(vec kek)" "$(vec wrong_kek)" \
  -- "${plains[@]}" <<'PY' || fail "key bytes or plaintext found at rest or in the log"
import os, sys
root, log = sys.argv[1], sys.argv[2]
sep = sys.argv.index("--")
needles = []
for h in sys.argv[3:sep]:
    b = bytes.fromhex(h)
    needles += [b, b[:16], b[16:], h.encode(), h.upper().encode()]
# Plaintexts: whole, and for the PEM one of its lines.
for h in sys.argv[sep + 1:]:
    b = bytes.fromhex(h)
    needles += [b] + ([b.split(b"\n")[5]] if b.count(b"\n") > 5 else [])
paths = [log]
for d, _, files in os.walk(root):
    paths += [os.path.join(d, f) for f in files]
found = []
for p in paths:
    try:
        with open(p, "rb") as fh:
            data = fh.read()
    except OSError:
        continue
    if any(n in data for n in needles):
        found.append(p)
if found:
    sys.exit("key bytes or plaintext found in: " + ", ".join(found))
print("ok - DEKs, legacy KEKs (raw, halves, hex) and plaintexts in none of %d files under "
      "PGDATA nor the log" % (len(paths) - 1))
PY
