#!/usr/bin/env bash
# t_ikm_provider: envelope.kek_provider = ikm_command, whatever PGE_TOKEN says. Keys work end to
# end with a KEK derived from an IKM command and the cluster's salt file; each failure of the
# command (exit 1, hang past envelope.ikm_timeout, non-hex, 16 bytes, missing, group-writable)
# is a clear status() error with a keeper that stays not ready, and fixing it + reload recovers
# without a restart; restart, backend and keeper crashes, rotate_key + destroy_key, KEK label
# rotation with rewrap_keys(); sealed dump/restore into another database, into a cluster with
# the same IKM and a copy of the salt file, and (failing cleanly) into one without the salt;
# neither the IKM (hex or bytes) nor the derived KEKs (nor DEKs) are in PGDATA, WAL, dumps or
# logs.
set -euo pipefail
export PGE_TOKEN=ikm
# Each cluster here creates its own salt, except where the test copies one on purpose.
export IKM_SHARED_SALT=0
# shellcheck source=test/integration/lib.sh
source "$(dirname "$0")/lib.sh"

PORT_A=$((IT_PORT_BASE + 1100))
PORT_B=$((IT_PORT_BASE + 1101))
PORT_C=$((IT_PORT_BASE + 1102))
MARKER='IKM-MARKER-5d1e'
SEALED='-c envelope.io=sealed'

it_init
IKM_CMD=$IT_HSM/ikm-command
IKM_HEX=$(cat "$IT_HSM/ikm.hex")
[[ $IKM_HEX =~ ^[0-9a-f]{64}$ ]] || fail "the provider wrote no IKM"
pg_init a
pg_start a "$PORT_A"
wait_ready a "$PORT_A"

#------------------------------------------------------------------------------
# 1. Keys work end to end; the salt file; what status() shows.
#------------------------------------------------------------------------------
SALT=$IT_TMP/a/pg_envelope/ikm_salt
[[ -f $SALT ]] || fail "no salt file at $SALT"
assert_eq "32 600 $PG_USER" "$(stat -c '%s %a %U' "$SALT")" "the salt file: 32 bytes, mode 0600, the server user's"
assert_file_contains "$(it_log a)" "created the IKM salt file" "the keeper logs that it created the salt"
assert_eq "ready|$IKM_CMD|<null>|pg_envelope-kek|t" \
  "$(status_at "$PORT_A" postgres "concat_ws('|', keeper_state, pkcs11_module, coalesce(token_label, '<null>'), kek_label, kek_found)")" \
  "status(): the command's path in pkcs11_module, no token label"

psql_at "$PORT_A" postgres "CREATE EXTENSION pg_envelope" >/dev/null
psql_at "$PORT_A" postgres "SELECT envelope.create_key('k1'); SELECT envelope.create_key('shred')" >/dev/null
psql_at "$PORT_A" postgres "CREATE TABLE t (id int PRIMARY KEY, v encrypted_text);
  INSERT INTO t SELECT g, '$MARKER ' || g FROM generate_series(1, 100) g;
  INSERT INTO t SELECT g, envelope.encrypt('$MARKER k1 ' || g, 'k1') FROM generate_series(101, 200) g;
  INSERT INTO t VALUES (1000, repeat('$MARKER toast ', 500))" >/dev/null
DIGEST="SELECT count(*) || ':' || md5(string_agg(id || '=' || v::text, '|' ORDER BY id)) FROM t"
digest=$(psql_at "$PORT_A" postgres "$DIGEST")
[[ $digest == 201:* ]] || fail "unexpected digest $digest"
assert_eq "$MARKER 7" "$(psql_at "$PORT_A" postgres "SELECT v FROM t WHERE id = 7")" "a value seals and opens"
pass "keys work end to end with the IKM-derived KEK"

#------------------------------------------------------------------------------
# 2. rotate_key and destroy_key (crypto-shredding).
#------------------------------------------------------------------------------
psql_at "$PORT_A" postgres "CREATE TABLE s (id int, v encrypted_text);
  INSERT INTO s VALUES (1, envelope.encrypt('$MARKER shredded', 'shred'))" >/dev/null
psql_at "$PORT_A" postgres "SELECT envelope.rotate_key('k1'); SELECT envelope.rotate_key('shred')" >/dev/null
psql_at "$PORT_A" postgres "INSERT INTO t SELECT g, envelope.encrypt('$MARKER k1v2 ' || g, 'k1') FROM generate_series(201, 210) g;
  INSERT INTO s VALUES (2, envelope.encrypt('$MARKER kept', 'shred'))" >/dev/null
psql_fail_state "$PORT_A" postgres 55006 "SELECT envelope.destroy_key('shred', 1)" >/dev/null
psql_at "$PORT_A" postgres "SELECT envelope.destroy_key('shred', 1, force => true)" >/dev/null
assert_eq "destroyed|true" "$(psql_at "$PORT_A" postgres "SELECT state || '|' || (wrapped_dek IS NULL)::text FROM envelope.keyring WHERE name = 'shred' AND version = 1")" \
  "destroy_key drops the wrapped DEK"
psql_fail "$PORT_A" postgres "SELECT v::text FROM s WHERE id = 1" >/dev/null
assert_eq "$MARKER kept" "$(psql_at "$PORT_A" postgres "SELECT v FROM s WHERE id = 2")" "the rotated version still opens"
digest=$(psql_at "$PORT_A" postgres "$DIGEST")
[[ $digest == 211:* ]] || fail "unexpected digest after rotation $digest"
pass "rotate_key and destroy_key work"

#------------------------------------------------------------------------------
# 3. Restart, SIGKILL of the keeper, SIGKILL of a backend.
#------------------------------------------------------------------------------
pg_restart a
wait_ready a "$PORT_A"
assert_eq "$digest" "$(psql_at "$PORT_A" postgres "$DIGEST")" "after a restart every value reads back"
psql_fail "$PORT_A" postgres "SELECT v::text FROM s WHERE id = 1" >/dev/null
pass "the destroyed version stays unreadable after the restart"

crash_and_check() {  # VICTIM_PID WHAT
  local victim=$1 what=$2 old_keeper
  old_keeper=$(status_at "$PORT_A" postgres keeper_pid)
  kill -9 "$victim"
  sleep 1
  wait_ready a "$PORT_A" ready 60
  [[ $(status_at "$PORT_A" postgres keeper_pid) != "$old_keeper" ]] || fail "$what: the keeper was not restarted"
  assert_file_contains "$(it_log a)" "(PID $victim) was terminated by signal 9" "$what: the postmaster saw it die"
  assert_eq "$digest" "$(psql_at "$PORT_A" postgres "$DIGEST")" "$what: every value reads back"
}
crash_and_check "$(status_at "$PORT_A" postgres keeper_pid)" "keeper SIGKILL"
as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT_A" -U postgres -d postgres -AtXq \
  -c "SET application_name = 'ikm_victim'" -c "SELECT pg_sleep(120)" >/dev/null 2>&1 &
victim=""
for ((i = 0; i < 100; i++)); do
  victim=$(psql_at "$PORT_A" postgres "SELECT pid FROM pg_stat_activity WHERE application_name = 'ikm_victim' AND query LIKE 'SELECT pg_sleep%'")
  [[ -n $victim ]] && break
  sleep 0.1
done
[[ -n $victim ]] || fail "the victim backend did not show up"
crash_and_check "$victim" "backend SIGKILL"
wait 2>/dev/null || true

#------------------------------------------------------------------------------
# 4. Failure modes of the command: a clear status() error, the keeper not ready, retries with
#    backoff, and recovery by fixing the command + reload, without a restart.
#------------------------------------------------------------------------------
CMDS=$IT_TMP/cmds
make_pg_dir "$CMDS"
write_cmd() {  # NAME BODY [MODE]: an executable script owned by the server user
  printf '#!/bin/sh\n%s\n' "$2" >"$CMDS/$1"
  chown "$PG_USER" "$CMDS/$1"
  chmod "${3:-0700}" "$CMDS/$1"
}
reload_a() { as_pg "$PG_BIN/pg_ctl" -D "$IT_TMP/a" reload >/dev/null; }
keeper_pid=$(status_at "$PORT_A" postgres keeper_pid)
check_failure() {  # NAME PATH NEEDLE
  local name=$1 path=$2 needle=$3 st="" i
  pg_conf a "envelope.ikm_command = '$path'"
  reload_a
  for ((i = 0; i < 150; i++)); do
    st=$(status_at "$PORT_A" postgres "keeper_state || '|' || coalesce(last_error, '')")
    [[ $st == failed\|*"$needle"* ]] && break
    sleep 0.2
  done
  assert_contains "$st" "failed|" "$name: the keeper is not ready"
  assert_contains "$st" "$needle" "$name: status() says: $needle"
  assert_not_contains "$st" "stderr-secret" "$name: status() shows nothing the command wrote"
  assert_file_contains "$(it_log a)" "the IKM command is not usable: " "$name: the reason is logged"
  out=$(psql_fail_state "$PORT_A" postgres 55000 "SELECT envelope.create_key('new_$name')")
  assert_contains "$out" "the KEK from envelope.ikm_command is not available" "$name: creating a key fails with SQLSTATE 55000"
  assert_contains "$out" "$needle" "$name: the error's detail gives the reason"
}
write_cmd exit1 "echo stderr-secret >&2; exit 1"
check_failure exit1 "$CMDS/exit1" "exited with status 1 (14 bytes on stderr, not logged)"
# Retries with backoff: the attempts go on, further apart.
sleep 3
retry=$(status_at "$PORT_A" postgres "next_retry_at > last_error_at")
assert_eq t "$retry" "exit1: a retry is scheduled after the last error"
# Fix the command in place and reload: ready again, same keeper process.
cp "$IKM_CMD" "$CMDS/exit1"
chown "$PG_USER" "$CMDS/exit1"
reload_a
wait_ready a "$PORT_A" ready 30
assert_eq "$keeper_pid" "$(status_at "$PORT_A" postgres keeper_pid)" "exit1 fixed + reload: ready without a restart"
assert_eq "$digest" "$(psql_at "$PORT_A" postgres "$DIGEST")" "exit1 fixed: every value reads back"

write_cmd hang "exec sleep 60"
pg_conf a "envelope.ikm_timeout = '500ms'"
check_failure hang "$CMDS/hang" "did not finish within 500 ms (envelope.ikm_timeout) and was killed"
sleep 1
# A retry may be running right now; the killed ones must not pile up.
n=$(pgrep -c -f '^sleep 60$' -u "$PG_USER" || true)
[[ $n -le 1 ]] || fail "hang: $n timed-out commands are still running"
pass "hang: the command's process group is killed at the timeout"
pg_conf a "envelope.ikm_timeout = '10s'"
write_cmd nonhex "printf 'xyz-not-hex-stderr-secret\n'"
check_failure nonhex "$CMDS/nonhex" "printed something other than lowercase hex"
write_cmd short "printf '%s\n' ${IKM_HEX:0:32}"
check_failure short "$CMDS/short" "printed 16 bytes of IKM; at least 32 are needed"
check_failure missing "$CMDS/missing" "No such file or directory"
write_cmd gw "printf '%s\n' $IKM_HEX" 0720
check_failure group_writable "$CMDS/gw" "is writable by group or others"
assert_file_not_contains "$(it_log a)" "stderr-secret" "the log holds nothing the commands printed"
assert_file_not_contains "$(it_log a)" "$IKM_HEX" "the log does not hold the IKM"
chmod 0700 "$CMDS/gw"
reload_a
wait_ready a "$PORT_A" ready 30
pass "group_writable fixed (chmod 0700) + reload: ready"
pg_conf a "envelope.ikm_command = '$IKM_CMD'"
reload_a
wait_ready a "$PORT_A" ready 30
assert_eq "$keeper_pid" "$(status_at "$PORT_A" postgres keeper_pid)" "after every failure the same keeper recovered (no restart)"
assert_eq "$digest" "$(psql_at "$PORT_A" postgres "$DIGEST")" "after the failures every value reads back"
assert_eq "32 600" "$(stat -c '%s %a' "$SALT")" "the salt file is unchanged"

#------------------------------------------------------------------------------
# 5. KEK label rotation: a new label derives a new KEK from the same IKM; rewrap_keys() moves
#    every DEK to it (the old label's KEK is derived on demand).
#------------------------------------------------------------------------------
pg_conf a "envelope.kek_label = 'pg_envelope-kek2'"
reload_a
wait_ready a "$PORT_A" ready 30
assert_eq "pg_envelope-kek2" "$(status_at "$PORT_A" postgres kek_label)" "status() shows the new KEK label"
psql_at "$PORT_A" postgres "SELECT envelope.create_key('after_rotation')" >/dev/null
psql_at "$PORT_A" postgres "CALL envelope.rewrap_keys()" >/dev/null
assert_eq "pg_envelope-kek2" "$(psql_at "$PORT_A" postgres "SELECT string_agg(kek_label, ',') FROM envelope.kek_usage")" \
  "after rewrap_keys() every key is wrapped under the new label"
pg_restart a
wait_ready a "$PORT_A"
assert_eq "$digest" "$(psql_at "$PORT_A" postgres "$DIGEST")" "after the rewrap and a restart every value reads back"
assert_eq 0 "$(status_at "$PORT_A" postgres load_failures)" "no key failed to load"

#------------------------------------------------------------------------------
# 6. Sealed dump and restore: another database, a cluster with the IKM and a copy of the salt,
#    a cluster with the IKM but its own salt (fails cleanly).
#------------------------------------------------------------------------------
DUMP=$IT_TMP/sealed.dump
pgtool PGOPTIONS="$SEALED" pg_dump -p "$PORT_A" -d postgres -Fc -f "$DUMP" || fail "sealed pg_dump"
if grep -a -q -- "$MARKER" "$DUMP"; then fail "the sealed dump holds plaintext"; fi
pass "the sealed dump holds no plaintext"
pgtool createdb -p "$PORT_A" copy || fail "createdb copy"
pgtool PGOPTIONS="$SEALED" pg_restore -p "$PORT_A" -d copy --exit-on-error "$DUMP" || fail "restore into copy"
assert_eq "$digest" "$(psql_at "$PORT_A" copy "$DIGEST")" "restored into another database: every value reads back"

pg_init b
make_pg_dir "$IT_TMP/b/pg_envelope"
cp "$SALT" "$IT_TMP/b/pg_envelope/ikm_salt"
chown "$PG_USER" "$IT_TMP/b/pg_envelope/ikm_salt"
chmod 0600 "$IT_TMP/b/pg_envelope/ikm_salt"
pg_start b "$PORT_B"
wait_ready b "$PORT_B"
assert_file_not_contains "$(it_log b)" "created the IKM salt file" "b uses the copied salt"
pgtool PGOPTIONS="$SEALED" pg_restore -p "$PORT_B" -d postgres --exit-on-error "$DUMP" || fail "restore into b"
assert_eq "$digest" "$(psql_at "$PORT_B" postgres "$DIGEST")" \
  "restored into a cluster with the same IKM and a copy of the salt: every value reads back"

pg_init c
pg_start c "$PORT_C"
wait_ready c "$PORT_C"
assert_file_contains "$(it_log c)" "created the IKM salt file" "c made its own salt"
pgtool PGOPTIONS="$SEALED" pg_restore -p "$PORT_C" -d postgres --exit-on-error "$DUMP" >/dev/null 2>&1 ||
  fail "the sealed restore into c loads (the rows are sealed)"
out=$(psql_fail "$PORT_C" postgres "SELECT v::text FROM t WHERE id = 7")
assert_contains "$out" "ikm_salt" "without the salt copy: the error names the salt file"
assert_not_contains "$out" "$MARKER" "the error shows no plaintext"
pass "without the salt copy the restore fails cleanly: $(head -n 1 <<<"$out")"
psql_at "$PORT_C" postgres "SELECT envelope.create_key('own_key')" >/dev/null
assert_eq "c's own" "$(psql_at "$PORT_C" postgres "SELECT envelope.decrypt(envelope.encrypt('c''s own', 'own_key'))")" \
  "c still makes and uses its own keys"

#------------------------------------------------------------------------------
# 7. At rest: neither the IKM (hex or bytes) nor the derived KEKs (both labels) in PGDATA, WAL,
#    the dump or the server logs; positive controls show the scan finds them where they are.
#------------------------------------------------------------------------------
cat >"$IT_TMP/needles.py" <<'PY'
# Prints the needles (hex): the IKM as text, the IKM bytes, the KEK for each label and the DEK
# it unwraps from the keyring (a wrong KEK cannot pass GCM: the unwrap checks the KEK).
import sys
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
ikm_hex, salt_path, wrapped_file = sys.argv[1:4]
ikm = bytes.fromhex(ikm_hex)
salt = open(salt_path, 'rb').read()
print(ikm_hex.encode().hex())
print(ikm.hex())
for line in open(wrapped_file):
    label, ident, blob = line.split()
    kek = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt,
               info=b'pg_envelope/kek/v1\0' + label.encode()).derive(ikm)
    blob = bytes.fromhex(blob)
    dek = AESGCM(kek).decrypt(blob[1:13], blob[13:], b'pg_envelope/dek-wrap/v1\0' + ident.encode())
    print(kek.hex())
    print(dek.hex())
PY
cat >"$IT_TMP/scan.py" <<'PY'
# scan.py NEEDLES_FILE PATH...: prints the files (under the paths) holding any needle.
import os, sys
needles = [bytes.fromhex(l.strip()) for l in open(sys.argv[1]) if l.strip()]
for root in sys.argv[2:]:
    walk = [(root, [], [''])] if os.path.isfile(root) else os.walk(root)
    for d, _, files in walk:
        for f in files:
            p = os.path.join(d, f) if f else d
            try:
                data = open(p, 'rb').read()
            except OSError:
                continue
            for i, n in enumerate(needles):
                if n in data:
                    print(f'{p} needle#{i}')
PY
# One wrapped DEK under each label (a made one under the new label; switch back to make one
# under the old).
pg_conf a "envelope.kek_label = 'pg_envelope-kek'"
reload_a
wait_ready a "$PORT_A" ready 30
psql_at "$PORT_A" postgres "SELECT envelope.create_key('under_old_label')" >/dev/null
psql_at "$PORT_A" postgres "SELECT kek_label || ' dek:' || replace(id::text, '-', '') || ' ' || encode(wrapped_dek, 'hex')
  FROM envelope.keyring WHERE name IN ('under_old_label', 'after_rotation')" >"$IT_TMP/wrapped.txt"
assert_eq "pg_envelope-kek pg_envelope-kek2" "$(cut -d' ' -f1 "$IT_TMP/wrapped.txt" | sort | paste -sd' ')" \
  "one wrapped DEK under each label"
python3 "$IT_TMP/needles.py" "$IKM_HEX" "$SALT" "$IT_TMP/wrapped.txt" >"$IT_TMP/needles.txt" ||
  fail "deriving the KEKs in Python (or unwrapping with them) failed"
assert_eq 6 "$(wc -l <"$IT_TMP/needles.txt")" "6 needles: IKM hex, IKM bytes, KEK of each label, a DEK under each"
pass "the KEKs computed with Python's HKDF unwrap the keyring's DEKs (positive control of the KEKs)"
psql_at "$PORT_A" postgres "CHECKPOINT" >/dev/null
psql_at "$PORT_B" postgres "CHECKPOINT" >/dev/null
pgtool PGOPTIONS="$SEALED" pg_dump -p "$PORT_A" -d postgres -Fp -f "$IT_TMP/sealed.sql" || fail "sealed plain dump"
pg_stop a
pg_stop b
pg_stop c
mkdir -p "$IT_TMP/control"
python3 - "$IT_TMP/needles.txt" "$IT_TMP/control/blob" <<'PY'
import sys
needles = [bytes.fromhex(l.strip()) for l in open(sys.argv[1]) if l.strip()]
open(sys.argv[2], 'wb').write(b'x'.join(b'padding' + n for n in needles))
PY
assert_eq 6 "$(python3 "$IT_TMP/scan.py" "$IT_TMP/needles.txt" "$IT_TMP/control" | wc -l)" \
  "positive control: the scan finds each needle in a file that holds it"
assert_eq 2 "$(python3 "$IT_TMP/scan.py" "$IT_TMP/needles.txt" "$IT_HSM/ikm.hex" "$IKM_CMD" | wc -l)" \
  "positive control: the IKM hex is in the provider's files (outside PGDATA)"
hits=$(python3 "$IT_TMP/scan.py" "$IT_TMP/needles.txt" "$IT_TMP/a" "$IT_TMP/b" "$IT_TMP/c" \
  "$DUMP" "$IT_TMP/sealed.sql" "$(it_log a)" "$(it_log b)" "$(it_log c)")
[[ -z $hits ]] || fail "IKM or KEK found at rest: $hits"
pass "0 hits for the IKM (hex, bytes), both KEKs and two DEKs in PGDATA + WAL of a, b, c, the dumps and the logs"
