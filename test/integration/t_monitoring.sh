#!/usr/bin/env bash
# t_monitoring: every query of docs/monitoring/queries.yaml (postgres_exporter's custom-queries
# format, parsed with python3-yaml) runs against a real server as a monitoring role that has
# only the grants the README gives it, and returns rows whose columns are exactly the declared
# ones, with numbers where postgres_exporter needs numbers. The values are checked too: with a
# ready keeper, with a failing one (unknown KEK label after a reload) and after it recovers.
set -euo pipefail
# shellcheck source=test/integration/lib.sh
source "$(dirname "$0")/lib.sh"

PORT=$((IT_PORT_BASE + 510))
QUERIES=$ENVELOPE_ROOT/docs/monitoring/queries.yaml
# Debian's interpreter (python3-yaml, python3-psycopg2), not whatever python3 is first on PATH.
PYTHON=${PYTHON:-/usr/bin/python3}
"$PYTHON" -c 'import yaml, psycopg2' 2>/dev/null ||
  fail "python3-yaml and python3-psycopg2 are needed (script/bootstrap installs them)"
[[ -f $QUERIES ]] || fail "no $QUERIES"

it_init
pg_init a
pg_start a "$PORT"
wait_ready a "$PORT"
psql_at "$PORT" postgres "CREATE EXTENSION pg_envelope" >/dev/null
psql_at "$PORT" postgres "SELECT envelope.create_key('payroll')" >/dev/null
psql_at "$PORT" postgres "CREATE TABLE t (v encrypted_text)" >/dev/null
psql_at "$PORT" postgres "INSERT INTO t SELECT envelope.encrypt('v' || g, 'payroll') FROM generate_series(1, 5) g" >/dev/null
psql_at "$PORT" postgres "SELECT envelope.rotate_key('payroll')" >/dev/null
psql_at "$PORT" postgres "INSERT INTO t SELECT envelope.encrypt('w' || g, 'payroll') FROM generate_series(1, 3) g" >/dev/null
# The exporter's role: pg_monitor plus the grants README.md (Monitoring) lists, nothing else.
psql_at "$PORT" postgres "CREATE ROLE exporter LOGIN IN ROLE pg_monitor;
  GRANT SELECT ON envelope.keys TO exporter;
  GRANT EXECUTE ON FUNCTION envelope._key_report(uuid), envelope._encryptions(uuid) TO exporter" >/dev/null
assert_file_contains "$ENVELOPE_ROOT/README.md" \
  "GRANT EXECUTE ON FUNCTION envelope._key_report(uuid), envelope._encryptions(uuid) TO" \
  "the README documents the grants this role uses"

cat >"$IT_TMP/scrape.py" <<'PY'
# Runs each query like postgres_exporter would and prints one line per value:
#   <prefix>_<column>{label="value",...} <number>
# Fails (exit 1) on a query error, no rows, undeclared or missing columns, a non-numeric
# GAUGE/COUNTER, or an unknown usage.
import decimal, sys
import psycopg2
import yaml

path, sock, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(path, encoding="utf-8") as fh:
    spec = yaml.safe_load(fh)
if not isinstance(spec, dict) or not spec:
    sys.exit("%s: no queries" % path)
conn = psycopg2.connect(host=sock, port=port, user="exporter", dbname="postgres")
conn.autocommit = True
cur = conn.cursor()
problems = []
for prefix, q in spec.items():
    cols = {}
    for m in q.get("metrics") or []:
        (name, opts), = m.items()
        if opts.get("usage") not in ("LABEL", "GAUGE", "COUNTER", "DISCARD"):
            problems.append("%s.%s: unexpected usage %r" % (prefix, name, opts.get("usage")))
        if not opts.get("description"):
            problems.append("%s.%s: no description" % (prefix, name))
        cols[name] = opts.get("usage")
    try:
        cur.execute(q["query"])
    except psycopg2.Error as e:
        problems.append("%s: query failed: %s" % (prefix, e.pgerror or e))
        continue
    got = [d[0] for d in cur.description]
    if sorted(got) != sorted(cols):
        problems.append("%s: columns %s, declared %s" % (prefix, got, sorted(cols)))
        continue
    rows = cur.fetchall()
    if not rows:
        problems.append("%s: no rows" % prefix)
    for row in rows:
        r = dict(zip(got, row))
        labels = ",".join('%s="%s"' % (c, "" if r[c] is None else r[c])
                          for c in got if cols[c] == "LABEL")
        for c in got:
            if cols[c] not in ("GAUGE", "COUNTER"):
                continue
            v = r[c]
            if v is None:
                v = float("nan")          # postgres_exporter reports NULL as NaN
            elif isinstance(v, (bool, int, float, decimal.Decimal)):
                v = float(v)
            else:
                problems.append("%s.%s: %r is not a number" % (prefix, c, v))
                continue
            print("%s_%s{%s} %r" % (prefix, c, labels, v))
if problems:
    sys.exit("\n".join(problems))
PY

scrape() {  # prints the metrics; fails the test on any problem
  as_pg "$PYTHON" "$IT_TMP/scrape.py" "$QUERIES" "$IT_SOCK" "$PORT" || fail "scraping $QUERIES ($1)"
}
metric() {  # METRICS NAME{LABELS}: the value of one series ('' if absent)
  awk -v k="$2" '$1 == k { print $2 }' <<<"$1"
}

m=$(scrape "keeper ready")
echo "$m" | sed 's/^/  /'
pass "every query returns rows with its declared columns (keeper ready)"
assert_eq 4 "$(grep -c '^pg_envelope_keeper_' <<<"$m")" "keeper: ready, kek_found, failing, last_error_age_seconds"
assert_eq 1.0 "$(metric "$m" 'pg_envelope_keeper_ready{state="ready"}')" "keeper: ready = 1"
assert_eq 0.0 "$(metric "$m" 'pg_envelope_keeper_failing{state="ready"}')" "keeper: not failing"
assert_eq nan "$(metric "$m" 'pg_envelope_keeper_last_error_age_seconds{state="ready"}')" \
  "keeper: no error since startup (NaN)"
assert_eq 1024.0 "$(metric "$m" 'pg_envelope_cache_cache_capacity{datname="postgres"}')" "cache: capacity = envelope.max_keys"
assert_eq 3.0 "$(metric "$m" 'pg_envelope_cache_keys_cached{datname="postgres"}')" "cache: default, payroll v1 and v2 cached"
assert_eq 5.0 "$(metric "$m" 'pg_envelope_key_encryptions{datname="postgres",key_name="payroll",key_version="1",key_state="decrypt_only"}')" \
  "key: payroll v1 sealed 5 values"
assert_eq 3.0 "$(metric "$m" 'pg_envelope_key_encryptions{datname="postgres",key_name="payroll",key_version="2",key_state="active"}')" \
  "key: payroll v2 sealed 3 values"
assert_eq 4294967296.0 "$(metric "$m" 'pg_envelope_key_nonce_budget{datname="postgres",key_name="payroll",key_version="2",key_state="active"}')" \
  "key: the nonce budget is 2^32"
assert_eq 3 "$(metric "$m" 'pg_envelope_key_nonce_budget_used_ratio{datname="postgres",key_name="payroll",key_version="2",key_state="active"}' |
  awk '{ printf "%.0f", $1 * 4294967296 }')" "key: used ratio = encryptions / 2^32"
assert_eq 0.0 "$(metric "$m" 'pg_envelope_load_load_failures{}')" "load: no failures"

# A KEK label the token does not have: the keeper fails on reload and says so.
psql_at "$PORT" postgres "ALTER SYSTEM SET envelope.kek_label = 'no-such-kek'" >/dev/null
psql_at "$PORT" postgres "SELECT pg_reload_conf()" >/dev/null
wait_ready a "$PORT" failed
m=$(scrape "keeper failed")
pass "every query returns rows with its declared columns (keeper failed)"
assert_eq 0.0 "$(metric "$m" 'pg_envelope_keeper_ready{state="failed"}')" "keeper: ready = 0 while failed"
assert_eq 1.0 "$(metric "$m" 'pg_envelope_keeper_failing{state="failed"}')" "keeper: failing = 1"
age=$(metric "$m" 'pg_envelope_keeper_last_error_age_seconds{state="failed"}')
awk -v a="$age" 'BEGIN { exit !(a >= 0 && a < 60) }' || fail "keeper: last error age '$age' is not a recent age"
pass "keeper: last error age is a number of seconds ($age)"

psql_at "$PORT" postgres "ALTER SYSTEM RESET envelope.kek_label" >/dev/null
psql_at "$PORT" postgres "SELECT pg_reload_conf()" >/dev/null
wait_ready a "$PORT"
m=$(scrape "keeper recovered")
assert_eq 0.0 "$(metric "$m" 'pg_envelope_keeper_failing{state="ready"}')" "keeper: not failing after recovery"
age=$(metric "$m" 'pg_envelope_keeper_last_error_age_seconds{state="ready"}')
awk -v a="$age" 'BEGIN { exit !(a >= 0 && a < 120) }' || fail "keeper: last error age '$age' lost after recovery"
pass "keeper: the last error's age stays available after recovery ($age)"
echo "t_monitoring: all checks passed"
