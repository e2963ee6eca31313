#!/usr/bin/env bash
# t_at_rest: plaintext loaded into encrypted_text never reaches disk or the server log.
# A marker is loaded with COPY FROM STDIN (so no logged statement holds it), updated, toasted,
# read back; after CHECKPOINT and a WAL switch no file under PGDATA (heap, TOAST, WAL, stats,
# pg_envelope/) contains it and the server log (log_statement = all) does not either. Positive
# controls prove the search works: a marker in a plain text column is found in PGDATA, and the
# wrapped DEK bytes are found in the keyring's table files.
# The wrapped DEK (hex, base64, raw bytes) appears nowhere in the server log, and the DEK
# itself (unwrapped through the token by a test-only probe) appears nowhere at all.
set -euo pipefail
# shellcheck source=test/integration/lib.sh
source "$(dirname "$0")/lib.sh"

PORT=$((IT_PORT_BASE + 202))
MARKER='ATREST-MARKER-51c0e2'
CONTROL='ATREST-CONTROL-9b7d44'

it_init
pg_init a
pg_conf a "log_statement = 'all'"
pg_conf a "log_min_messages = info"
pg_start a "$PORT"
wait_ready a "$PORT"
PGDATA_A=$IT_TMP/a
LOG=$(it_log a)

psql_at "$PORT" postgres "CREATE EXTENSION pg_envelope" >/dev/null
psql_at "$PORT" postgres "SELECT envelope.create_key('other')" >/dev/null
psql_at "$PORT" postgres "CREATE TABLE secrets (id int PRIMARY KEY, v encrypted_text, control text)" >/dev/null

# COPY FROM STDIN: the data travels in the COPY stream, never in a statement text.
{
  echo "1	$MARKER	$CONTROL"
  echo "2	$MARKER with more text	\\N"
  for i in $(seq 3 200); do echo "$i	row $i $MARKER	\\N"; done
  # > 2 kB: stored out of line in the TOAST table.
  printf '1000\t'; for i in $(seq 1 300); do printf '%s ' "$MARKER"; done; printf '\t\\N\n'
} | as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT" -U postgres -d postgres -AtX -q -v ON_ERROR_STOP=1 \
      -c "COPY secrets FROM STDIN" || fail "COPY FROM STDIN"
assert_eq 201 "$(psql_at "$PORT" postgres "SELECT count(*) FROM secrets WHERE v::text LIKE '%' || chr(65) || 'TREST-MARKER-51c0e2%'")" \
  "201 marker rows load and decrypt"
# Update some (old row versions stay in the heap and the WAL until vacuum), read them back.
psql_at "$PORT" postgres "UPDATE secrets SET v = (v::text || ' updated')::encrypted_text WHERE id <= 10" >/dev/null
psql_at "$PORT" postgres "SELECT count(*) FROM secrets WHERE v::text LIKE '%updated'" >/dev/null
assert_eq t "$(psql_at "$PORT" postgres "SELECT pg_relation_size(reltoastrelid) > 0 FROM pg_class WHERE relname = 'secrets'")" \
  "the long value went to the TOAST table"
psql_at "$PORT" postgres "CHECKPOINT" >/dev/null
psql_at "$PORT" postgres "SELECT pg_switch_wal()" >/dev/null
psql_at "$PORT" postgres "CHECKPOINT" >/dev/null

# Positive control: the plain text column's marker is on disk, so the search can find things.
hits=$(grep -r -a -l -F -- "$CONTROL" "$PGDATA_A" || true)
[[ -n $hits ]] || fail "control marker not found in PGDATA: the search would not find anything"
pass "control: a plaintext text column is found in PGDATA ($(wc -l <<<"$hits") files)"
[[ $hits == *pg_wal* ]] || fail "control marker not found in the WAL"
pass "control: the plaintext text column is found in the WAL too"

hits=$(grep -r -a -l -F -- "$MARKER" "$PGDATA_A" || true)
[[ -z $hits ]] || { echo "$hits"; fail "the encrypted marker is on disk in the files above"; }
pass "the encrypted marker is nowhere under PGDATA (heap, TOAST, WAL, pg_envelope/, stats)"
assert_file_not_contains "$LOG" "$MARKER" "the server log does not contain the marker"
assert_file_contains "$LOG" "COPY secrets FROM STDIN" "the log does hold the statements (log_statement = all)"

# The wrapped DEKs: present in the keyring table files (expected: they are wrapped), absent
# from the log in hex, base64 and raw form.
mapfile -t wrapped < <(psql_at "$PORT" postgres "SELECT encode(wrapped_dek, 'hex') FROM envelope.keyring ORDER BY name")
assert_eq 2 "${#wrapped[@]}" "two wrapped DEKs (default, other)"
for hex in "${wrapped[@]}"; do
  [[ $hex =~ ^[0-9a-f]{122}$ || $hex =~ ^0[23][0-9a-f]{112}$ ]] || fail "wrapped DEK hex looks wrong"  # AES-GCM or key wrap
  b64=$(xxd -r -p <<<"$hex" | base64 -w0)
  assert_file_not_contains "$LOG" "$hex" "wrapped DEK (hex) not in the log"
  assert_file_not_contains "$LOG" "${b64:0:40}" "wrapped DEK (base64) not in the log"
  as_pg "${PYTHON:-/usr/bin/python3}" - "$hex" "$PGDATA_A" "$LOG" <<'PY' || fail "raw wrapped DEK search"
import os, sys
raw = bytes.fromhex(sys.argv[1])
probe = raw[8:40]                         # 32 bytes from inside the wrapped blob
in_data = []
for root, _, files in os.walk(sys.argv[2]):
    for f in files:
        p = os.path.join(root, f)
        try:
            with open(p, 'rb') as fh:
                if probe in fh.read():
                    in_data.append(p)
        except OSError:
            pass
with open(sys.argv[3], 'rb') as fh:
    in_log = probe in fh.read()
if not in_data:
    sys.exit("raw wrapped DEK not found in PGDATA: the byte search does not work")
if in_log:
    sys.exit("raw wrapped DEK bytes found in the server log")
print("ok - wrapped DEK raw bytes: in %d PGDATA file(s) (keyring table/WAL), not in the log" % len(in_data))
PY
done

# The DEKs themselves: unwrapped through the token by a test-only probe, then searched for
# (raw bytes, hex) in every file under PGDATA and in the server log. None may appear.
PROBE=$ENVELOPE_ROOT/build/envelope_test_dek_probe
[[ -x $PROBE ]] || fail "test probe $PROBE not built (script/build builds it with the tests)"
mapfile -t rows < <(psql_at "$PORT" postgres "
  SELECT replace(id::text, '-', '') || ' ' || encode(wrapped_dek, 'hex') FROM envelope.keyring ORDER BY name")
for row in "${rows[@]}"; do
  dek=$(as_pg SOFTHSM2_CONF="$IT_SOFTHSM_CONF" ENVELOPE_PROBE_INIT_ARGS="$(it_token_init_args)" \
        "$PROBE" "$(it_token_module)" pg_envelope "$IT_PIN_FILE" \
        pg_envelope-kek ${row}) || fail "probe could not unwrap a DEK"
  [[ $dek =~ ^[0-9a-f]{64}$ ]] || fail "probe output is not a 32-byte hex DEK"
  as_pg "${PYTHON:-/usr/bin/python3}" - "$dek" "$PGDATA_A" "$LOG" <<'PY' || fail "DEK found at rest"
import os, sys
dek = bytes.fromhex(sys.argv[1])
needles = [dek, dek[:16], dek[16:], sys.argv[1].encode(), sys.argv[1].upper().encode()]
found = []
paths = [sys.argv[3]]
for root, _, files in os.walk(sys.argv[2]):
    paths += [os.path.join(root, f) for f in files]
for p in paths:
    try:
        with open(p, 'rb') as fh:
            data = fh.read()
    except OSError:
        continue
    if any(n in data for n in needles):
        found.append(p)
if found:
    sys.exit("DEK bytes found in: " + ", ".join(found))
print("ok - DEK (raw, either half, hex) in none of %d files under PGDATA nor the log" % (len(paths) - 1))
PY
done
pass "no DEK appears anywhere under PGDATA or in the server log"

# The pg_envelope/ state directory holds counts by DEK id only.
if [[ -d $PGDATA_A/pg_envelope ]]; then
  for f in "$PGDATA_A"/pg_envelope/*; do
    [[ -f $f ]] || continue
    if grep -a -v -q -E '^[0-9]+ [0-9a-f]{32} [0-9]+$' "$f"; then
      fail "unexpected content in $f"
    fi
  done
  pass "pg_envelope/ files hold only 'database dek-id count' lines"
fi
echo "t_at_rest: all checks passed"
