#!/usr/bin/env bash
# t_psycopg2: a Python client (psycopg2 from Debian) uses encrypted_text like text: bound
# parameters (unicode, empty string, None, long values) go in through execute() and
# executemany(), values come back as str equal to the inputs; sealed mode round-trips through
# the client; a wrong context raises a psycopg2 error with pgcode XX001 and the connection
# stays usable.
set -euo pipefail
# shellcheck source=test/integration/lib.sh
source "$(dirname "$0")/lib.sh"

PORT=$((IT_PORT_BASE + 203))

# Debian's interpreter (python3-psycopg2), not whatever python3 comes first on PATH.
PYTHON=${PYTHON:-/usr/bin/python3}
"$PYTHON" -c 'import psycopg2' 2>/dev/null ||
  fail "python3-psycopg2 is not installed (apt-get install python3-psycopg2)"

it_init
pg_init a
pg_start a "$PORT"
wait_ready a "$PORT"
psql_at "$PORT" postgres "CREATE EXTENSION pg_envelope" >/dev/null

cat >"$IT_TMP/client.py" <<'PY'
import sys
import psycopg2
import psycopg2.errors

sock, port = sys.argv[1], int(sys.argv[2])
conn = psycopg2.connect(host=sock, port=port, user="postgres", dbname="postgres")
conn.autocommit = False
cur = conn.cursor()
checks = 0


def ok(cond, msg):
    global checks
    if not cond:
        print("FAIL: " + msg)
        sys.exit(1)
    checks += 1
    print("ok - " + msg)


cur.execute("CREATE TABLE py (id serial PRIMARY KEY, v encrypted_text)")
values = [
    "plain ascii",
    "Zoë Ñandú 日本語 🔐 ünïcödé",
    "",
    None,
    "quote ' double \" backslash \\ tab \t newline \n end",
    "x" * 100000,
    "pgenv1:not-base64",  # looks a bit like a sealed value, but is not one: plaintext
]
ids = []
for v in values:
    cur.execute("INSERT INTO py (v) VALUES (%s) RETURNING id", (v,))
    ids.append(cur.fetchone()[0])
conn.commit()

cur.execute("SELECT id, v FROM py ORDER BY id")
rows = cur.fetchall()
ok(len(rows) == len(values), "execute(): %d rows inserted with bound parameters" % len(values))
for (rid, got), want in zip(rows, values):
    ok(got == want and (want is None or isinstance(got, str)),
       "execute(): row %d comes back %s equal to the input (%s)"
       % (rid, "as str" if want is not None else "as None", repr(want[:20]) if want else repr(want)))

# The column is not text: it is the extension's type, and the stored bytes are envelopes.
cur.execute("SELECT pg_typeof(v)::text, octet_length(envelope.encrypted_text_send(v)) FROM py WHERE id = %s",
            (ids[0],))
typ, sent_len = cur.fetchone()
ok(typ == "encrypted_text", "the column's type is encrypted_text")
ok(sent_len == len(values[0].encode()), "binary send in plaintext mode returns the plaintext bytes")

# executemany
many = [("many %d ✓" % i,) for i in range(50)] + [("",), (None,)]
cur.executemany("INSERT INTO py (v) VALUES (%s)", many)
conn.commit()
cur.execute("SELECT v FROM py WHERE id > %s ORDER BY id", (ids[-1],))
got = [r[0] for r in cur.fetchall()]
ok(got == [m[0] for m in many], "executemany(): %d values round-trip (incl. '' and None)" % len(many))

# Parameters in WHERE through the explicit cast.
cur.execute("SELECT count(*) FROM py WHERE v::text = %s", (values[1],))
ok(cur.fetchone()[0] == 1, "a bound parameter compares against v::text")

# Sealed mode through the client: strings come back sealed and load back identically.
cur.execute("SET envelope.io = 'sealed'")
cur.execute("SELECT id, v FROM py WHERE v IS NOT NULL ORDER BY id")
sealed = cur.fetchall()
ok(all(isinstance(s, str) and s.startswith("pgenv1:") for _, s in sealed),
   "sealed mode: %d values come back as 'pgenv1:' strings" % len(sealed))
ok(all(values[0] not in s for _, s in sealed), "sealed mode: no plaintext in what the client gets")
cur.execute("CREATE TABLE py_copy (id int, v encrypted_text)")
cur.executemany("INSERT INTO py_copy VALUES (%s, %s)", sealed)
cur.execute("RESET envelope.io")
cur.execute("SELECT count(*), count(*) FILTER (WHERE a.v::text = b.v::text) FROM py a JOIN py_copy b USING (id)")
n, same = cur.fetchone()
ok(n == len(sealed) and same == n, "sealed values loaded back in sealed mode open to the same plaintexts")
conn.commit()

# A sealed string sent as a plaintext parameter is refused (no double encryption).
try:
    cur.execute("INSERT INTO py (v) VALUES (%s)", (sealed[0][1],))
    ok(False, "a sealed value as plaintext input must fail")
except psycopg2.Error as e:
    ok(e.pgcode == "22P02" and "already a sealed" in e.pgerror,
       "a sealed value as plaintext input raises pgcode 22P02 'already a sealed'")
    conn.rollback()

# Context: right context opens, wrong context raises pgcode XX001 (DataCorrupted).
cur.execute("CREATE TABLE py_ctx AS SELECT envelope.encrypt(%s, NULL, %s) AS v",
            ("with context ✓", psycopg2.Binary(b"ctx-1")))
conn.commit()
cur.execute("SELECT envelope.decrypt(v, %s) FROM py_ctx", (psycopg2.Binary(b"ctx-1"),))
ok(cur.fetchone()[0] == "with context ✓", "decrypt with the right context (bound bytea) opens the value")
for label, ctx in (("wrong", psycopg2.Binary(b"ctx-2")), ("missing", None)):
    try:
        cur.execute("SELECT envelope.decrypt(v, %s) FROM py_ctx", (ctx,))
        cur.fetchall()
        ok(False, "decrypt with a %s context must fail" % label)
    except psycopg2.Error as e:
        ok(e.pgcode == "XX001", "decrypt with a %s context raises pgcode XX001 (got %s)" % (label, e.pgcode))
        ok(isinstance(e, psycopg2.errors.DataCorrupted), "... as psycopg2.errors.DataCorrupted")
        ok("with context" not in str(e), "... and the error text holds no plaintext")
        conn.rollback()
# Reading the column directly needs the context too (the output function has none).
try:
    cur.execute("SELECT v FROM py_ctx")
    cur.fetchall()
    ok(False, "output of a context-bound value without context must fail")
except psycopg2.Error as e:
    ok(e.pgcode == "XX001", "plain output of a context-bound value raises XX001")
    conn.rollback()

# The connection is still usable.
cur.execute("SELECT count(*) FROM py")
ok(cur.fetchone()[0] == len(values) + len(many), "the connection is usable after the errors")
conn.close()
print("python: %d checks passed" % checks)
PY
chmod 0644 "$IT_TMP/client.py"
out=$(as_pg "$PYTHON" "$IT_TMP/client.py" "$IT_SOCK" "$PORT" 2>&1) || { echo "$out"; fail "psycopg2 script"; }
echo "$out"
assert_contains "$out" "python: " "the psycopg2 script ran to the end"
echo "t_psycopg2: all checks passed"
