#!/usr/bin/env bash
# t_core_dumps: no DEK and no AES key schedule of pg_envelope in memory a core dump includes.
# A backend that sealed and opened values (small ones: Nettle; 4 KiB ones: libgcrypt) and
# looked a value up through a blind index, a parallel worker that opened values, and the
# keeper are each dumped; every dump is searched for every key of the keyring (unwrapped
# through the token by the test-only probe), for each key's expanded AES-256 key schedule (in
# both word byte orders), and for the HMAC key derived from the index key.
# Dumps: kernel core files (SIGABRT, core size unlimited) when this machine's core_pattern
# writes plain files; otherwise gcore (gdb), which honours MADV_DONTDUMP the same way. The
# test prints which it used. Live processes are also read through /proc/PID/mem, every
# mapping that smaps does not mark "dd". Positive controls prove each search can find bytes:
# a marker of this test in every dump and every live-memory read.
set -euo pipefail
# shellcheck source=test/integration/lib.sh
source "$(dirname "$0")/lib.sh"

PORT=$((IT_PORT_BASE + 850))
MARKER='COREDUMP-PLAIN-7f3a9c'
PY=${PYTHON:-/usr/bin/python3}

it_init
pg_init a
pg_conf a "max_parallel_workers_per_gather = 2"
pg_conf a "restart_after_crash = on"
PGDATA_A=$IT_TMP/a
# Kernel core files land in the process's working directory (PGDATA) when core_pattern is a
# plain name; pg_ctl -c lifts the core size limit for the server.
start_server() {
  echo "$PORT" >"$IT_TMP/a.port"
  [[ " ${IT_SERVERS[*]} " == *" a "* ]] || IT_SERVERS+=(a)
  as_pg SOFTHSM2_CONF="$IT_SOFTHSM_CONF" "$PG_BIN/pg_ctl" -D "$PGDATA_A" -l "$IT_TMP/a.log" \
    -c -o "-p $PORT" -w -t 60 start >/dev/null || fail "starting the server"
}
start_server
wait_ready a "$PORT"

psql_at "$PORT" postgres "CREATE EXTENSION pg_envelope" >/dev/null
psql_at "$PORT" postgres "SELECT envelope.create_key('other')" >/dev/null
psql_at "$PORT" postgres "SELECT envelope.create_key('third')" >/dev/null   # made by the keeper
psql_at "$PORT" postgres "SELECT envelope.create_index_key('idx')" >/dev/null
psql_at "$PORT" postgres "
  CREATE TABLE t (id int, v encrypted_text, w encrypted_text);
  INSERT INTO t SELECT g, '$MARKER ' || g, CASE WHEN g % 50 = 0 THEN repeat('$MARKER', 200) END
    FROM generate_series(1, 20000) g;
  UPDATE t SET w = envelope.encrypt('$MARKER other ' || id, 'other') WHERE id % 7 = 0;
  CREATE INDEX t_v_blind ON t USING hash (v envelope.blind_ops (key = 'idx'));
  ANALYZE t" >/dev/null

# ---- the needles: every DEK and its key schedule ----
PROBE=$ENVELOPE_ROOT/build/envelope_test_dek_probe
[[ -x $PROBE ]] || fail "test probe $PROBE not built (script/build builds it with the tests)"
NEEDLES=$IT_TMP/needles
: >"$NEEDLES"
chmod 600 "$NEEDLES"
mapfile -t rows < <(psql_at "$PORT" postgres "
  SELECT replace(id::text, '-', '') || ' ' || encode(wrapped_dek, 'hex') FROM envelope.keyring ORDER BY name")
assert_eq 4 "${#rows[@]}" "four keys (default, other, third; index key idx)"
for row in "${rows[@]}"; do
  # shellcheck disable=SC2086  # row is "ID WRAPPED"
  dek=$(as_pg SOFTHSM2_CONF="$IT_SOFTHSM_CONF" "$PROBE" "$SOFTHSM_MODULE" pg_envelope "$IT_PIN_FILE" \
        pg_envelope-kek $row) || fail "probe could not unwrap a DEK"
  [[ $dek =~ ^[0-9a-f]{64}$ ]] || fail "probe output is not a 32-byte hex DEK"
  echo "$dek" >>"$NEEDLES"
done
# The MAC key of the index key: HKDF-SHA-256(index key, no salt, "pg_envelope index tag v1").
idx_row=$(psql_at "$PORT" postgres "
  SELECT replace(id::text, '-', '') || ' ' || encode(wrapped_dek, 'hex') FROM envelope.keyring WHERE name = 'idx'")
# shellcheck disable=SC2086
idx_key=$(as_pg SOFTHSM2_CONF="$IT_SOFTHSM_CONF" "$PROBE" "$SOFTHSM_MODULE" pg_envelope "$IT_PIN_FILE" \
          pg_envelope-kek $idx_row) || fail "probe could not unwrap the index key"
"$PY" - "$idx_key" >>"$NEEDLES" <<'PY'
import hashlib, hmac, sys
ikm = bytes.fromhex(sys.argv[1])
prk = hmac.new(b"\0" * 32, ikm, hashlib.sha256).digest()
okm = hmac.new(prk, b"pg_envelope index tag v1" + b"\x01", hashlib.sha256).digest()
print("raw:" + okm.hex())
PY

# scan.py MODE SOURCE CONTROL: MODE core (a core file) or live (a PID: /proc/PID/mem, every
# mapping not marked dd). Fails if any DEK (whole or either half) or any 32-byte window of its
# expanded key schedule is found, or if the control bytes are not found.
SCAN=$IT_TMP/scan.py
cat >"$SCAN" <<'PY'
import re, sys

def sbox():
    # The AES S-box, derived (inverse in GF(2^8), then the affine map), to expand keys here
    # independently of every library under test.
    def mul(a, b):
        r = 0
        while b:
            if b & 1: r ^= a
            a = ((a << 1) ^ 0x11b) if a & 0x80 else a << 1
            b >>= 1
        return r
    inv = [0] * 256
    for a in range(1, 256):
        for b in range(1, 256):
            if mul(a, b) == 1: inv[a] = b; break
    s = []
    for a in range(256):
        x = inv[a]; y = x
        for _ in range(4):
            x = ((x << 1) | (x >> 7)) & 0xff; y ^= x
        s.append(y ^ 0x63)
    return s

S = sbox()

def expand(key):
    # AES-256 key expansion (FIPS 197, 5.2): 60 words.
    w = [list(key[4*i:4*i+4]) for i in range(8)]
    rcon = 1
    for i in range(8, 60):
        t = list(w[i-1])
        if i % 8 == 0:
            t = [S[b] for b in t[1:] + t[:1]]; t[0] ^= rcon
            rcon = ((rcon << 1) ^ 0x11b) if rcon & 0x80 else rcon << 1
        elif i % 8 == 4:
            t = [S[b] for b in t]
        w.append([a ^ b for a, b in zip(w[i-8], t)])
    return w

def needles(hexkey):
    key = bytes.fromhex(hexkey)
    w = expand(key)
    sched = bytes(b for word in w for b in word)
    swapped = bytes(b for word in w for b in reversed(word))
    out = {"DEK": key, "DEK first half": key[:16], "DEK second half": key[16:]}
    for name, s in (("key schedule", sched), ("key schedule (word-swapped)", swapped)):
        for off in range(32, 240 - 31, 32):   # round keys 2..14, past the raw key
            out["%s bytes %d..%d" % (name, off, off + 31)] = s[off:off+32]
    return out

def live_chunks(pid):
    with open("/proc/%s/smaps" % pid) as f:
        lines = f.read().splitlines()
    maps, cur = [], None
    for line in lines:
        m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
        if m:
            cur = [int(m.group(1), 16), int(m.group(2), 16), line, ""]
            maps.append(cur)
        elif line.startswith("VmFlags:") and cur:
            cur[3] = line
    with open("/proc/%s/mem" % pid, "rb", 0) as mem:
        for lo, hi, desc, flags in maps:
            if " dd" in flags or "[vvar]" in desc or "[vsyscall]" in desc:
                continue
            try:
                mem.seek(lo)
                yield desc, mem.read(hi - lo)
            except (OSError, ValueError, OverflowError):
                continue

mode, source, control = sys.argv[1], sys.argv[2], sys.argv[3].encode()
lines = [l.strip() for l in open(sys.argv[4]) if l.strip()]
keys = [l for l in lines if not l.startswith("raw:")]
raws = [bytes.fromhex(l[4:]) for l in lines if l.startswith("raw:")]
if mode == "core":
    data = open(source, "rb").read()
    chunks = [("core", data)]
else:
    chunks = list(live_chunks(source))
total = sum(len(c) for _, c in chunks)
found_control = any(control in c for _, c in chunks)
hits = []
for k in keys:
    for name, n in needles(k).items():
        for desc, c in chunks:
            if n in c:
                hits.append("%s of DEK %s... in %s" % (name, k[:6], desc.split()[0] if desc else "?"))
for r in raws:
    for desc, c in chunks:
        if r in c or r[:16] in c or r[16:] in c:
            hits.append("derived MAC key %s... in %s" % (r[:3].hex(), desc.split()[0] if desc else "?"))
if hits:
    sys.exit("FOUND key material:\n  " + "\n  ".join(hits[:20]))
if not found_control:
    sys.exit("control bytes not found in %d bytes: the search proves nothing" % total)
print("%d bytes searched, control found, no DEK and no key schedule" % total)
PY
chown "$PG_USER" "$NEEDLES" "$SCAN"

# Scans and gcore run as the server user: reading another process's memory needs only the same
# uid (no CAP_SYS_PTRACE, which containers usually lack).
scan() {  # scan MODE SOURCE CONTROL WHAT
  local out
  out=$(as_pg "$PY" "$SCAN" "$1" "$2" "$3" "$NEEDLES" 2>&1) || { echo "$out"; fail "$4: $out"; }
  pass "$4: $out"
}

# ---- how this machine makes dumps ----
# A kernel core is used when core_pattern is a plain file name (not a pipe to a collector) and
# a SIGABRTed process of the server user actually leaves one.
# IT_CORE_MODE=gcore forces gdb's dumps (to test that path on a machine with kernel cores).
CORE_MODE=gcore
pattern=$(cat /proc/sys/kernel/core_pattern)
if [[ ${IT_CORE_MODE:-} != gcore && $pattern != \|* ]]; then
  probe_dir=$IT_TMP/coreprobe
  make_pg_dir "$probe_dir"
  as_pg bash -c "cd '$probe_dir' && echo \$\$ >pid && ulimit -c unlimited && exec sleep 30" &
  for ((i = 0; i < 25; i++)); do [[ -s $probe_dir/pid ]] && break; sleep 0.2; done
  spid=$(cat "$probe_dir/pid" 2>/dev/null || true)
  if [[ -n $spid ]]; then
    kill -ABRT "$spid" || true
    sleep 1
    if compgen -G "$probe_dir/core*" >/dev/null; then CORE_MODE=kernel; fi
  fi
fi
echo "# dumps: $CORE_MODE (core_pattern '$pattern')"
command -v gcore >/dev/null || [[ $CORE_MODE == kernel ]] || fail "gcore (gdb) is missing: script/bootstrap installs it"

# dump PID NAME: writes NAME's dump to $IT_TMP/NAME.core. Kernel mode aborts the process
# (the postmaster then restarts the cluster); gcore mode leaves it running.
dump() {
  local pid=$1 name=$2 i core
  if [[ $CORE_MODE == kernel ]]; then
    rm -f "$PGDATA_A"/core "$PGDATA_A"/core.*
    kill -ABRT "$pid"
    for ((i = 0; i < 100; i++)); do
      core=$(compgen -G "$PGDATA_A/core*" | head -n 1 || true)
      if [[ -n $core ]] && ! kill -0 "$pid" 2>/dev/null; then break; fi
      sleep 0.2
    done
    [[ -n $core ]] || fail "$name: SIGABRT left no core file in PGDATA"
    sleep 0.5   # the kernel finishes writing before the parent is told
    mv "$core" "$IT_TMP/$name.core"
    chown "$PG_USER" "$IT_TMP/$name.core"
    wait_ready a "$PORT" ready 60
  else
    as_pg gcore -o "$IT_TMP/$name.gcore" "$pid" >/dev/null 2>&1 || fail "$name: gcore failed"
    mv "$IT_TMP/$name.gcore.$pid" "$IT_TMP/$name.core"
  fi
  pass "$name (pid $pid) dumped with $CORE_MODE: $(stat -c %s "$IT_TMP/$name.core") bytes"
}

# sleeping_pid CONDITION: the pid of a process matching CONDITION that sleeps in pg_sleep (waits
# up to 30 s; empty if none).
sleeping_pid() {
  local pid="" i
  for ((i = 0; i < 150; i++)); do
    pid=$(psql_at "$PORT" postgres "SELECT pid FROM pg_stat_activity WHERE $1 AND wait_event = 'PgSleep' LIMIT 1")
    [[ -n $pid ]] && break
    sleep 0.2
  done
  echo "$pid"
}

# ---- a backend that sealed and opened small and large values ----
# Separate -c commands: the INSERT commits before the sleep.
as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT" -U postgres -d postgres -AtX -q \
  -c "SET max_parallel_workers_per_gather = 0" -c "SET application_name = 'core-backend'" \
  -c "INSERT INTO t SELECT -g, '$MARKER new ' || g, repeat('x', 4000) FROM generate_series(1, 200) g" \
  -c "SELECT count(*) FROM t WHERE v::text LIKE '%$MARKER%' AND (w IS NULL OR length(w::text) > 0)" \
  -c "SET enable_seqscan = off" -c "SELECT count(*) FROM t WHERE v = '$MARKER 77'" \
  -c "SELECT pg_sleep(120)" >/dev/null 2>&1 &
bpid=$(sleeping_pid "application_name = 'core-backend' AND query LIKE '%pg_sleep(120)%'")
[[ -n $bpid ]] || fail "the backend did not reach its sleep"
scan live "$bpid" "$MARKER" "backend, live memory (/proc/$bpid/mem, mappings without dd)"
dump "$bpid" backend
scan core "$IT_TMP/backend.core" "$MARKER" "backend core"

# ---- a parallel worker that opened values ----
# Every worker opens rows and then sleeps in the same query (pg_sleep is parallel safe).
PAR_SQL="
  SET application_name = 'core-parallel';
  SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
  SET parallel_leader_participation = off;
  SELECT count(*) FROM t WHERE length(v::text) > 0 AND length(coalesce(w::text, '')) >= 0
    AND (id <> 19999 OR pg_sleep(120) IS NOT NULL);"
as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT" -U postgres -d postgres -AtX -q -c "$PAR_SQL" >/dev/null 2>&1 &
wpid=$(sleeping_pid "backend_type = 'parallel worker'")
[[ -n $wpid ]] || fail "no parallel worker reached its sleep (was the plan parallel?)"
scan live "$wpid" "$MARKER" "parallel worker, live memory"
dump "$wpid" worker
scan core "$IT_TMP/worker.core" "$MARKER" "parallel worker core"

# ---- the keeper, after it unwrapped every DEK (and created one) ----
psql_at "$PORT" postgres "SELECT count(*) FROM t WHERE length(v::text) > 0" >/dev/null
kpid=$(psql_at "$PORT" postgres "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_envelope keeper'")
[[ -n $kpid ]] || fail "no keeper in pg_stat_activity"
# The keeper's control: the token label it was configured with (a GUC string in its memory).
scan live "$kpid" "pg_envelope-kek" "keeper, live memory"
dump "$kpid" keeper
scan core "$IT_TMP/keeper.core" "pg_envelope-kek" "keeper core"

# Afterwards everything still works (the cluster restarted in kernel mode).
wait_ready a "$PORT" ready 60
assert_eq 20200 "$(psql_at "$PORT" postgres "SELECT count(*) FROM t WHERE v::text LIKE '%$MARKER%'")" \
  "every value still opens after the dumps"
