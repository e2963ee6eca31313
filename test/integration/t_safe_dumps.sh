#!/usr/bin/env bash
# t_safe_dumps: with no pg_envelope-specific option anywhere (envelope.io = auto, the default),
# pg_dump in every format (-Fp, -Fc, -Fd, -Ft, --inserts, --column-inserts) and pg_dumpall
# write no plaintext of encrypted_text columns, as a superuser and as a backup role that holds
# no key privilege; each dump restores with no options (pg_restore, psql -f) into a fresh
# database of another cluster that reaches the same KEK, every value identical. A deliberate
# plaintext export (envelope.io = plaintext) still works, and an application's session still
# refuses a sealed value given as plaintext (no oracle).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT_A=$((IT_PORT_BASE + 650))
PORT_B=$((IT_PORT_BASE + 651))
MARKER="SAFEMARK-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
it_init
pg_init a
pg_init b
pg_start a "$PORT_A"
pg_start b "$PORT_B"
wait_ready a "$PORT_A"
wait_ready b "$PORT_B"

psql_at "$PORT_A" postgres "CREATE EXTENSION pg_envelope" >/dev/null
psql_at "$PORT_A" postgres "
  SELECT envelope.create_key('k1'), envelope.create_key('k2');
  CREATE SCHEMA app; CREATE SCHEMA zz;
  CREATE TABLE app.t (id int PRIMARY KEY, v encrypted_text, c encrypted_text);
  INSERT INTO app.t SELECT g, '$MARKER app ' || g, envelope.encrypt('$MARKER ctx ' || g, 'k1', g::text::bytea)
    FROM generate_series(1, 20) g;
  CREATE TABLE public.p (id int PRIMARY KEY, v encrypted_text);
  INSERT INTO public.p SELECT g, envelope.encrypt('$MARKER p ' || g, 'k2') FROM generate_series(1, 20) g;
  CREATE TABLE zz.q (id int PRIMARY KEY, v encrypted_text);
  INSERT INTO zz.q SELECT g, '$MARKER q ' || g FROM generate_series(1, 20) g;
  CREATE ROLE backup LOGIN;
  GRANT USAGE ON SCHEMA app, zz TO backup;
  GRANT SELECT ON ALL TABLES IN SCHEMA app, zz, public TO backup;
  GRANT SELECT ON ALL TABLES IN SCHEMA envelope TO backup;
  GRANT SELECT ON ALL SEQUENCES IN SCHEMA envelope TO backup;" >/dev/null
digest="SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
  SELECT 'app' || id || v::text || envelope.decrypt(c, id::text::bytea) AS x FROM app.t
  UNION ALL SELECT 'p' || id || v::text FROM public.p UNION ALL SELECT 'q' || id || v::text FROM zz.q) s"
digest_a=$(psql_at "$PORT_A" postgres "$digest")

# The backup role holds no key privilege: it cannot read a value, yet dumps everything.
out=$(IT_USER=backup psql_fail "$PORT_A" postgres "SELECT v FROM zz.q WHERE id = 1")
assert_contains "$out" "permission denied for key" "the backup role reads no plaintext"

dump() {  # USER NAME ARGS...: pg_dump with no pg_envelope option; fails on any error
  local user=$1 name=$2; shift 2
  as_pg PGHOST="$IT_SOCK" PGUSER="$user" "$PG_BIN/pg_dump" -p "$PORT_A" -d postgres "$@" \
    -f "$IT_TMP/$name" 2>"$IT_TMP/$name.err" || { cat "$IT_TMP/$name.err"; fail "pg_dump $name"; }
}
no_marker() {  # PATH
  if grep -a -r -q -- "$MARKER" "$1"; then fail "$(basename "$1") holds a marker plaintext"; fi
  pass "$(basename "$1"): no marker plaintext"
}
n=0
for user in postgres backup; do
  dump "$user" "$user.sql"
  dump "$user" "$user.custom" -Fc
  dump "$user" "$user.dir" -Fd
  dump "$user" "$user.tar" -Ft
  dump "$user" "$user.inserts.sql" --inserts
  dump "$user" "$user.colinserts.sql" --column-inserts
  for f in sql custom dir tar inserts.sql colinserts.sql; do no_marker "$IT_TMP/$user.$f"; done
done
as_pg PGHOST="$IT_SOCK" PGUSER=postgres "$PG_BIN/pg_dumpall" -p "$PORT_A" -f "$IT_TMP/all.sql" ||
  fail "pg_dumpall"
no_marker "$IT_TMP/all.sql"
assert_file_contains "$IT_TMP/postgres.sql" "pgenv1:" "the plain dump carries sealed values"

restore() {  # DB TOOL ARGS...: into a fresh database of cluster b, no pg_envelope option
  local db=$1 tool=$2; shift 2
  pgtool createdb -p "$PORT_B" "$db" || fail "createdb $db"
  local out
  out=$(pgtool "$tool" -p "$PORT_B" -d "$db" "$@" 2>&1) || { echo "$out"; fail "$tool into $db"; }
  assert_eq "$digest_a" "$(psql_at "$PORT_B" "$db" "$digest")" "$db: every value identical after $tool"
}
# Roles are cluster objects (pg_dumpall -g carries them); the dumps grant to backup.
psql_at "$PORT_B" postgres "CREATE ROLE backup LOGIN"
restore r_sql psql -X -q -v ON_ERROR_STOP=1 -f "$IT_TMP/postgres.sql"
restore r_custom pg_restore --exit-on-error "$IT_TMP/postgres.custom"
restore r_dir pg_restore --exit-on-error "$IT_TMP/postgres.dir"
restore r_tar pg_restore --exit-on-error "$IT_TMP/postgres.tar"
restore r_inserts psql -X -q -v ON_ERROR_STOP=1 -f "$IT_TMP/postgres.inserts.sql"
restore r_colinserts psql -X -q -v ON_ERROR_STOP=1 -f "$IT_TMP/postgres.colinserts.sql"
restore r_backup pg_restore --exit-on-error "$IT_TMP/backup.custom"

# pg_dumpall restores into a fresh cluster (c) that reaches the same KEK.
pg_init c
PORT_C=$((IT_PORT_BASE + 652))
pg_start c "$PORT_C"
wait_ready c "$PORT_C"
out=$(pgtool psql -X -q -p "$PORT_C" -d postgres -f "$IT_TMP/all.sql" 2>&1) || { echo "$out"; fail "psql -f pg_dumpall"; }
assert_eq "$digest_a" "$(psql_at "$PORT_C" postgres "$digest")" "fresh cluster: every value identical after pg_dumpall | psql -f"

# A deliberate plaintext export is one option away, both ways (values sealed with a context can
# only be opened with it, so app.t's data stays out of this one).
digest_pq="SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
  SELECT 'p' || id || v::text AS x FROM public.p UNION ALL SELECT 'q' || id || v::text FROM zz.q) s"
pgtool PGOPTIONS='-c envelope.io=plaintext' pg_dump -p "$PORT_A" -d postgres --exclude-table-data=app.t \
  -f "$IT_TMP/export.sql" || fail "plaintext export"
assert_file_contains "$IT_TMP/export.sql" "$MARKER" "envelope.io = plaintext exports plaintext"
pgtool createdb -p "$PORT_B" r_export || fail "createdb r_export"
out=$(pgtool PGOPTIONS='-c envelope.io=plaintext' psql -X -q -v ON_ERROR_STOP=1 -p "$PORT_B" -d r_export \
  -f "$IT_TMP/export.sql" 2>&1) || { echo "$out"; fail "restoring the plaintext export"; }
assert_eq "$(psql_at "$PORT_A" postgres "$digest_pq")" "$(psql_at "$PORT_B" r_export "$digest_pq")" \
  "the plaintext export restores (re-encrypted)"

# No oracle: an application's session (its own application_name, a normal search_path) still
# refuses a sealed value given as plaintext, even with an empty search_path.
sealed=$(sed -n 's/^1\t\(pgenv1:[^\t]*\)$/\1/p' "$IT_TMP/postgres.sql" | head -n 1)
[[ $sealed == pgenv1:* ]] || fail "no sealed value found in the plain dump"
for session in "app|" "app|-c search_path=" "psql|-c search_path=public"; do
  appname=${session%%|*} opts=${session#*|}
  out=$(as_pg PGAPPNAME="$appname" PGOPTIONS="$opts" "$PG_BIN/psql" -h "$IT_SOCK" -p "$PORT_A" -U postgres \
    -d postgres -AtX -v ON_ERROR_STOP=1 -c "INSERT INTO zz.q VALUES (99, '$sealed')" 2>&1) &&
    fail "accepted a sealed value as plaintext (application_name $appname, '$opts')"
  assert_contains "$out" "already a sealed encrypted_text value" \
    "refused as plaintext input (application_name $appname, options '$opts')"
done
