#!/usr/bin/env bash
# t_dump_restore: pg_dump in sealed mode (envelope.io = sealed) writes no plaintext; the dump
# restores into another cluster that reaches the same KEK (same SoftHSM token) and every value
# decrypts to the same plaintext, under keys with the same key check values. Restoring the same
# dump in explicit plaintext mode (envelope.io = plaintext) fails loudly and encrypts nothing twice.
#
# Cluster a and cluster b are two servers using one SoftHSM token directory (one KEK).
set -euo pipefail
# shellcheck source=test/integration/lib.sh
source "$(dirname "$0")/lib.sh"

PORT_A=$((IT_PORT_BASE + 200))
PORT_B=$((IT_PORT_BASE + 201))
MARKER='MARKER-7f3a9c'
SEALED='-c envelope.io=sealed'

it_init
pg_init a
pg_init b
pg_start a "$PORT_A"
pg_start b "$PORT_B"
wait_ready a "$PORT_A"
wait_ready b "$PORT_B"


#------------------------------------------------------------------------------
# Cluster a: keys beyond default (one rotated), values under each, a marker plaintext.
#------------------------------------------------------------------------------
psql_at "$PORT_A" postgres "CREATE EXTENSION pg_envelope" >/dev/null
psql_at "$PORT_A" postgres "
  SELECT envelope.create_key('tenant_a');
  SELECT envelope.create_key('tenant_b');" >/dev/null
psql_at "$PORT_A" postgres "
  CREATE TABLE people (id int PRIMARY KEY, name text, secret encrypted_text, note encrypted_text);
  INSERT INTO people VALUES
    (1, 'marker', '$MARKER', NULL),
    (2, 'unicode', 'Zoë 日本語 🔐', 'second column'),
    (3, 'empty', '', ''),
    (4, 'nulls', NULL, NULL),
    (5, 'tenant_a v1', envelope.encrypt('$MARKER under tenant_a v1', 'tenant_a'), NULL),
    (6, 'tenant_b', envelope.encrypt('under tenant_b', 'tenant_b'), 'quote '' and tab	here');
  SELECT envelope.rotate_key('tenant_a');
  INSERT INTO people VALUES
    (7, 'tenant_a v2', envelope.encrypt('under tenant_a v2', 'tenant_a'), NULL);
  INSERT INTO people SELECT g, 'bulk', 'bulk $MARKER ' || g, repeat('x', g) FROM generate_series(100, 399) g;
  INSERT INTO people VALUES (1000, 'toasted', repeat('$MARKER ', 1000), NULL);" >/dev/null

digest_sql="SELECT count(*) || ':' || md5(string_agg(id || '=' || coalesce(secret::text, '<null>') || '/'
              || coalesce(note::text, '<null>'), '|' ORDER BY id)) FROM people"
digest_a=$(psql_at "$PORT_A" postgres "$digest_sql")
[[ $digest_a == 308:* ]] || fail "unexpected digest in a: $digest_a"
pass "cluster a: 308 rows under default, tenant_a v1+v2, tenant_b"

# The keys of a, by id: name, version, state, key check value.
keys_sql="SELECT string_agg(id || ' ' || name || ' ' || version || ' ' || state || ' ' || key_check_value, E'\n'
            ORDER BY name, version) FROM envelope.keys"
keys_a=$(psql_at "$PORT_A" postgres "$keys_sql")
assert_eq 4 "$(wc -l <<<"$keys_a")" "cluster a has 4 key versions"

#------------------------------------------------------------------------------
# Dumps in sealed mode: custom and plain formats. Neither holds the marker.
#------------------------------------------------------------------------------
DUMP_FC=$IT_TMP/sealed.dump
DUMP_SQL=$IT_TMP/sealed.sql
DUMP_PLAIN_MODE=$IT_TMP/plaintext-mode.sql
pgtool PGOPTIONS="$SEALED" pg_dump -p "$PORT_A" -d postgres -Fc -f "$DUMP_FC" ||
  fail "pg_dump -Fc in sealed mode"
pgtool PGOPTIONS="$SEALED" pg_dump -p "$PORT_A" -d postgres -f "$DUMP_SQL" ||
  fail "pg_dump (plain) in sealed mode"
if grep -a -q -- "$MARKER" "$DUMP_FC"; then fail "custom-format sealed dump contains the marker"; fi
pass "custom-format sealed dump does not contain the marker"
if grep -a -q -- "$MARKER" "$DUMP_SQL"; then fail "plain sealed dump contains the marker"; fi
pass "plain sealed dump does not contain the marker"
# The custom format compresses; the plain dump shows the values are sealed.
n_sealed=$(grep -a -c -E $'^[0-9]+\t[^\t]*\t(pgenv1:[A-Za-z0-9+/=]+|\\\\N)\t' "$DUMP_SQL" || true)
assert_eq 308 "$n_sealed" "plain dump: all 308 rows carry sealed values (or NULL)"
assert_file_contains "$DUMP_SQL" "COPY envelope.keyring" "the dump carries the keyring (wrapped DEKs)"
# For contrast: a dump in explicit plaintext mode (a deliberate plaintext export) carries it.
pgtool PGOPTIONS='-c envelope.io=plaintext' pg_dump -p "$PORT_A" -d postgres -f "$DUMP_PLAIN_MODE" ||
  fail "pg_dump in plaintext mode"
assert_file_contains "$DUMP_PLAIN_MODE" "$MARKER" "(contrast) a plaintext-mode dump holds plaintext"

#------------------------------------------------------------------------------
# Restore into cluster b.
#------------------------------------------------------------------------------
restored_keys_check() {  # DB: A's key ids in b have the same name/version/state/KCV as in a
  local db=$1 got
  got=$(psql_at "$PORT_B" "$db" "SELECT string_agg(id || ' ' || name || ' ' || version || ' ' || state
           || ' ' || coalesce(key_check_value, 'NONE:' || problem), E'\n' ORDER BY name, version)
         FROM envelope.keys WHERE id IN (SELECT id FROM envelope.keyring WHERE created_at < '$t_b_start')")
  assert_eq "$keys_a" "$got" "$db: restored keys have a's ids, versions, states and key check values"
}
t_b_start=$(psql_at "$PORT_A" postgres "SELECT max(created_at) + interval '1 microsecond' FROM envelope.keyring")
sleep 0.1

# 1. Custom format, pg_restore in sealed mode.
pgtool createdb -p "$PORT_B" r_custom || fail "createdb r_custom"
out=$(pgtool PGOPTIONS="$SEALED" pg_restore -p "$PORT_B" -d r_custom --exit-on-error "$DUMP_FC" 2>&1) ||
  { echo "$out"; fail "pg_restore of the sealed custom dump in sealed mode"; }
pass "pg_restore (custom format, sealed mode) exits 0"
assert_eq "$digest_a" "$(psql_at "$PORT_B" r_custom "$digest_sql")" \
  "r_custom: every value decrypts to the same plaintext (count + md5)"
restored_keys_check r_custom

# What happens to "default": CREATE EXTENSION made a new default v1 in b, then the dump's
# keyring rows were added, so there are two rows "default" version 1.
defaults=$(psql_at "$PORT_B" r_custom "SELECT count(*) || ' rows, ' || count(DISTINCT id) || ' ids, versions '
             || string_agg(version::text, ',') || ', states ' || string_agg(DISTINCT state, ',')
           FROM envelope.keyring WHERE name = 'default'")
echo "note: r_custom keyring rows named default: $defaults"
assert_eq "2 rows, 2 ids, versions 1,1, states active" "$defaults" \
  "r_custom: two active 'default' version-1 rows (b's own + a's restored)"
# Which one seals new values: the newest active version by (version, created_at): b's own.
new_is_b=$(psql_at "$PORT_B" r_custom "
  SET envelope.io = 'sealed';
  SELECT substr(decode(substr(envelope.encrypted_text_out(envelope.encrypt('new in b'))::text, 8), 'base64'), 2, 16)
         = (SELECT uuid_send(id) FROM envelope.keyring WHERE name = 'default' AND created_at >= '$t_b_start')")
echo "note: new values in r_custom are sealed under b's own default key: $new_is_b"
assert_eq "new value" "$(psql_at "$PORT_B" r_custom "
  INSERT INTO people VALUES (2000, 'new', 'new value', NULL);
  SELECT secret::text FROM people WHERE id = 2000")" "r_custom: new values seal and open after the restore"
assert_eq "under tenant_a v2+" "$(psql_at "$PORT_B" r_custom "
  SELECT envelope.decrypt(envelope.encrypt('under tenant_a v2+', 'tenant_a'))")" \
  "r_custom: a restored key (tenant_a) seals new values"

# 2. Plain format, psql -f in sealed mode.
pgtool createdb -p "$PORT_B" r_plain || fail "createdb r_plain"
out=$(pgtool PGOPTIONS="$SEALED" psql -X -q -v ON_ERROR_STOP=1 -p "$PORT_B" -d r_plain -f "$DUMP_SQL" 2>&1) ||
  { echo "$out"; fail "psql -f of the sealed plain dump in sealed mode"; }
pass "psql -f (plain format, sealed mode) exits 0"
assert_eq "$digest_a" "$(psql_at "$PORT_B" r_plain "$digest_sql")" \
  "r_plain: every value decrypts to the same plaintext (count + md5)"
restored_keys_check r_plain

# 3. The custom dump restored in explicit plaintext mode: loud failure, nothing encrypted twice.
PLAIN='-c envelope.io=plaintext'
pgtool createdb -p "$PORT_B" r_custom_wrong || fail "createdb r_custom_wrong"
rc=0
out=$(pgtool PGOPTIONS="$PLAIN" pg_restore -p "$PORT_B" -d r_custom_wrong "$DUMP_FC" 2>&1) || rc=$?
[[ $rc -ne 0 ]] || { echo "$out"; fail "pg_restore in plaintext mode exited 0"; }
pass "pg_restore (custom) in plaintext mode exits $rc"
assert_contains "$out" "already a sealed encrypted_text value" "pg_restore error says the input is already sealed"
assert_contains "$out" "envelope.io = 'sealed'" "pg_restore error hints at envelope.io = 'sealed'"
assert_not_contains "$out" "$MARKER" "the pg_restore errors show no plaintext"
assert_eq 0 "$(psql_at "$PORT_B" r_custom_wrong "SELECT count(*) FROM people")" \
  "r_custom_wrong: no row was loaded (none encrypted twice)"

# 4. The plain dump through psql in plaintext mode: same.
pgtool createdb -p "$PORT_B" r_plain_wrong || fail "createdb r_plain_wrong"
rc=0
out=$(pgtool PGOPTIONS="$PLAIN" psql -X -q -v ON_ERROR_STOP=1 -p "$PORT_B" -d r_plain_wrong -f "$DUMP_SQL" 2>&1) || rc=$?
[[ $rc -ne 0 ]] || { echo "$out"; fail "psql -f in plaintext mode exited 0"; }
pass "psql -f (plain) in plaintext mode exits $rc"
assert_contains "$out" "already a sealed encrypted_text value" "psql error says the input is already sealed"
assert_eq 0 "$(psql_at "$PORT_B" r_plain_wrong "SELECT count(*) FROM people")" \
  "r_plain_wrong: no row was loaded (none encrypted twice)"
# Even continuing past errors (no ON_ERROR_STOP) loads nothing double-encrypted.
pgtool createdb -p "$PORT_B" r_plain_continue || fail "createdb r_plain_continue"
pgtool PGOPTIONS="$PLAIN" psql -X -q -p "$PORT_B" -d r_plain_continue -f "$DUMP_SQL" >/dev/null 2>&1 || true
assert_eq 0 "$(psql_at "$PORT_B" r_plain_continue "SELECT count(*) FROM people")" \
  "r_plain_continue: psql without ON_ERROR_STOP loads no people row either"

# 5. One pg_restore step restores every row bit-identically, whatever the schema names: app
# sorts before envelope (pg_dump writes its data before the keyring's) and zz after; values
# sealed with a context, under a decrypt_only version and under a destroyed key all come back.
# Sealed input checks only the form of a value; envelope.verify() then counts what opens.
psql_at "$PORT_A" postgres "CREATE DATABASE appdb" >/dev/null
psql_at "$PORT_A" appdb "
  CREATE EXTENSION pg_envelope;
  SELECT envelope.create_key('k'), envelope.create_key('gone');
  CREATE SCHEMA app; CREATE SCHEMA zz;
  CREATE TABLE app.acct (id int PRIMARY KEY, v encrypted_text);
  INSERT INTO app.acct SELECT g, 'acct $MARKER ' || g FROM generate_series(1, 50) g;
  CREATE TABLE app.ctx (id int PRIMARY KEY, v encrypted_text);
  INSERT INTO app.ctx SELECT g, envelope.encrypt('ctx $MARKER ' || g, 'k', g::text::bytea)
    FROM generate_series(1, 10) g;
  SELECT envelope.rotate_key('k');
  CREATE TABLE zz.shred (id int PRIMARY KEY, v encrypted_text);
  INSERT INTO zz.shred SELECT g, envelope.encrypt('gone $MARKER ' || g, 'gone') FROM generate_series(1, 5) g;
  SELECT envelope.destroy_key('gone', 1, force => true);" >/dev/null
sealed_rows="SELECT 'acct', id, v FROM app.acct UNION ALL SELECT 'ctx', id, v FROM app.ctx
             UNION ALL SELECT 'shred', id, v FROM zz.shred ORDER BY 1, 2"
rows_a=$(pgtool PGOPTIONS="$SEALED" psql -X -At -p "$PORT_A" -d appdb -c "$sealed_rows")
DUMP_APP=$IT_TMP/appdb.dump
pgtool PGOPTIONS="$SEALED" pg_dump -p "$PORT_A" -Fc -f "$DUMP_APP" appdb || fail "pg_dump appdb"
order=$(pgtool pg_restore -l "$DUMP_APP" | grep -n 'TABLE DATA' | tr '\n' ' ')
[[ $order == *"app acct"*"envelope keyring"*"zz shred"* ]] ||
  fail "expected app data before the keyring and zz after it: $order"
pass "pg_dump orders app's data before envelope.keyring and zz's after"

pgtool createdb -p "$PORT_B" r_app || fail "createdb r_app"
out=$(pgtool PGOPTIONS="$SEALED" pg_restore -p "$PORT_B" -d r_app --exit-on-error "$DUMP_APP" 2>&1) ||
  { echo "$out"; fail "one-step sealed pg_restore of appdb"; }
pass "one pg_restore step, exit 0"
assert_eq "$rows_a" "$(pgtool PGOPTIONS="$SEALED" psql -X -At -p "$PORT_B" -d r_app -c "$sealed_rows")" \
  "r_app: all 65 rows restored, bytes identical (context-bound, decrypt_only, destroyed included)"
verify() {  # TABLE [CONTEXT_EXPR]
  psql_at "$PORT_B" r_app "SELECT key_name || ' v' || key_version || ': ' || opened || ' opened, '
      || unchecked || ' unchecked, ' || destroyed || ' destroyed, ' || failed || ' failed'
    FROM envelope.verify('$1', 'v'${2:+, \$\$$2\$\$}) ORDER BY key_name, key_version"
}
assert_eq "default v1: 50 opened, 0 unchecked, 0 destroyed, 0 failed" "$(verify app.acct)" "verify app.acct"
assert_eq "k v1: 0 opened, 10 unchecked, 0 destroyed, 0 failed" "$(verify app.ctx)" \
  "verify app.ctx without the context: cannot be checked"
assert_eq "k v1: 10 opened, 0 unchecked, 0 destroyed, 0 failed" "$(verify app.ctx 'id::text::bytea')" \
  "verify app.ctx with its context: every value opens (under the decrypt_only version)"
assert_eq "gone v1: 0 opened, 0 unchecked, 5 destroyed, 0 failed" "$(verify zz.shred)" \
  "verify zz.shred: under a destroyed key"
assert_eq "acct 1 acct $MARKER 1" "$(psql_at "$PORT_B" r_app "SELECT 'acct ' || id || ' ' || v FROM app.acct WHERE id = 1")" \
  "r_app: restored values decrypt"

# Neither server logged the marker.
assert_file_not_contains "$(it_log a)" "$MARKER" "server log of a has no marker"
assert_file_not_contains "$(it_log b)" "$MARKER" "server log of b has no marker"
echo "t_dump_restore: all checks passed"
