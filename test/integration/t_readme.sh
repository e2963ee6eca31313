#!/usr/bin/env bash
# t_readme: the README's SQL examples run top to bottom, unchanged, in a database prepared the
# way script/server prepares its own (extension created with CREATE EXTENSION IF NOT EXISTS).
# Every ```sql block of the introduction, "Quick start" and "Using it" is split into statements
# and fed, in order, to one psql session (as a reader pasting them would). A statement whose
# text carries the comment "-- error expected" must fail (with the SQLSTATE given in
# parentheses right after it, if any: "-- error expected (XX001): ..."); every other statement
# must succeed.
set -euo pipefail
# shellcheck source=test/integration/lib.sh
source "$(dirname "$0")/lib.sh"

PORT=$((IT_PORT_BASE + 500))
README=$ENVELOPE_ROOT/README.md
# Debian's interpreter, like the other tests; only the standard library is used.
PYTHON=${PYTHON:-/usr/bin/python3}
# The sealed COPY example writes and reads this server-side file.
COPY_FILE=/tmp/people.copy

it_init
pg_init a
pg_start a "$PORT"
wait_ready a "$PORT"
# As script/server does it.
as_pg PGOPTIONS='-c client_min_messages=warning' "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT" \
  -U postgres -d postgres -X -q -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION IF NOT EXISTS pg_envelope' ||
  fail "CREATE EXTENSION IF NOT EXISTS pg_envelope"
rm -f "$COPY_FILE"

# Extract the statements: $IT_TMP/readme.psql (each statement unchanged, followed by a line that
# reports its outcome) and $IT_TMP/readme.tsv (number, README line, expectation, SQLSTATE, text).
"$PYTHON" - "$README" "$IT_TMP/readme.psql" "$IT_TMP/readme.tsv" <<'PY' || fail "extracting the README's SQL"
import re, sys

readme, script_path, manifest_path = sys.argv[1:4]
SECTIONS = {None, "Quick start", "Using it"}       # None: the introduction before any "## "
MARKER = re.compile(r"--\s*error expected(?:\s*\(([0-9A-Z]{5})\))?")

blocks, section, fence = [], None, None
for no, line in enumerate(open(readme, encoding="utf-8"), 1):
    if fence is None:
        if line.startswith("## "):
            section = line[3:].strip()
        elif line.startswith("```"):
            fence = (line[3:].strip(), no + 1, [])
    elif line.startswith("```"):
        lang, first, lines = fence
        if lang == "sql" and section in SECTIONS:
            blocks.append((section, first, lines))
        fence = None
    else:
        fence[2].append(line)
if fence is not None:
    sys.exit("README: unterminated code block")

def statements(first, lines):
    """(README line, text) of each statement; the text runs to the end of the line of its ';',
    so a comment after the ';' belongs to it. Quotes, comments and dollar quotes are skipped."""
    text = "".join(lines)
    out, start, i, n = [], 0, 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("--", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
        elif c in "'\"":
            i += 1
            while True:
                i = text.index(c, i) + 1
                if text[i:i + 1] != c:
                    break
                i += 1
        elif c == "$" and re.match(r"\$\w*\$", text[i:]):
            tag = re.match(r"\$\w*\$", text[i:]).group(0)
            i = text.index(tag, i + len(tag)) + len(tag)
        elif c == ";":
            end = text.find("\n", i)
            end = n if end < 0 else end + 1
            chunk = text[start:end]
            # Leading blank and comment-only lines (a previous line's comment continued) are
            # sent along but do not count as where the statement starts.
            lead = re.match(r"(?:\s*--[^\n]*\n)*\s*", chunk).end()
            out.append((first + text.count("\n", 0, start + lead), chunk[lead:].strip()))
            start = i = end
        else:
            i += 1
    rest = re.sub(r"--[^\n]*", "", text[start:]).strip()
    if rest:
        sys.exit("README line %d: SQL without a closing ';': %s" % (first, rest))
    return out

found = {s for s, _, _ in blocks}
for want in (None, "Using it"):
    if want not in found:
        sys.exit("README: no ```sql block in section %s" % (want or "introduction"))
with open(script_path, "w", encoding="utf-8") as script, \
     open(manifest_path, "w", encoding="utf-8") as manifest:
    k = 0
    for section, first, lines in blocks:
        for line, stmt in statements(first, lines):
            k += 1
            m = MARKER.search(stmt)
            expect = "error" if m else "ok"
            state = (m.group(1) or "-") if m else "-"
            head = stmt.splitlines()[0]
            manifest.write("%d\t%d\t%s\t%s\t%s\n" % (k, line, expect, state, head))
            script.write("%s\n\\echo @@result %d :ERROR :SQLSTATE\n" % (stmt, k))
print("extracted %d statements from %d sql blocks (sections: %s)"
      % (k, len(blocks), ", ".join(sorted(s or "introduction" for s in found))))
PY

total=$(wc -l <"$IT_TMP/readme.tsv")
# A floor, so a README reorganisation cannot quietly leave the test with nothing to run.
((total >= 20)) || fail "only $total statements extracted from the README"
grep -q "	error	" "$IT_TMP/readme.tsv" || fail "no statement marked '-- error expected'"

# One session, like pasting into psql: no ON_ERROR_STOP, so the statements after an expected
# error run too. The result lines go to stdout; the SQL's own output and errors are kept for
# the report.
rc=0
as_pg "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT" -U postgres -d postgres -X -v ON_ERROR_STOP=0 \
  <"$IT_TMP/readme.psql" >"$IT_TMP/readme.out" 2>&1 || rc=$?
[[ $rc -eq 0 ]] || { cat "$IT_TMP/readme.out"; fail "psql exited $rc"; }

bad=0
while IFS=$'\t' read -r k line expect want head; do
  got_error="" got_state=""
  read -r got_error got_state < <(sed -n "s/^@@result $k \([a-z]*\) \([0-9A-Z]*\)$/\1 \2/p" "$IT_TMP/readme.out") || true
  where="README line $line: $head"
  if [[ -z $got_error ]]; then
    echo "FAIL: $where: no result (psql stopped before it)"; bad=$((bad + 1))
  elif [[ $expect == ok && $got_error != false ]]; then
    echo "FAIL: $where: failed with SQLSTATE $got_state"; bad=$((bad + 1))
  elif [[ $expect == error && $got_error != true ]]; then
    echo "FAIL: $where: marked '-- error expected' but succeeded"; bad=$((bad + 1))
  elif [[ $expect == error && $want != - && $got_state != "$want" ]]; then
    echo "FAIL: $where: expected SQLSTATE $want, got $got_state"; bad=$((bad + 1))
  elif [[ $expect == error ]]; then
    pass "$where (fails as marked: $got_state)"
  else
    pass "$where"
  fi
done <"$IT_TMP/readme.tsv"
rm -f "$COPY_FILE"
if ((bad > 0)); then
  echo "---- psql output ----"
  grep -v '^@@result ' "$IT_TMP/readme.out"
  fail "$bad of $total README statements did not behave as the README says"
fi
echo "t_readme: all $total README statements behave as documented"
