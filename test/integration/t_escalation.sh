#!/usr/bin/env bash
# t_escalation: pg_envelope cannot be turned against the server, and holds no decryption oracle.
# A role with CREATE on its own schema plants operators (=, <> on text and uuid) and functions
# that would make it a superuser if anything ran them with elevated rights, then puts its schema
# ahead of pg_catalog via SET, ALTER ROLE ... SET and (as a database owner) ALTER DATABASE ...
# SET followed by a server restart (the keeper's loaders read the keyring). It uses every path
# that reads the keyring. The role never becomes a superuser; a positive control at the end shows
# the planted trap was armed all along. Then a role without key privileges, holding sealed
# values and envelope bytes, gets 42501 from every path that would open them.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PORT=$((IT_PORT_BASE + 600))
it_init
pg_init a
pg_start a "$PORT"
wait_ready a "$PORT"

as_mallory() { IT_USER=mallory psql_at "$PORT" "$@"; }  # DB SQL: a fresh session as mallory
not_superuser() {
  assert_eq f "$(psql_at "$PORT" postgres "SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'")" \
    "mallory is still not a superuser after: $1"
}

# The trap, planted by mallory in schemas it owns: every planted function tries to make mallory
# a superuser (which only works when it runs with a superuser's rights) and then behaves like
# the real thing, so nothing visibly breaks.
plant() {  # DB
  as_mallory "$1" "
    CREATE SCHEMA m;
    CREATE FUNCTION m.pwn() RETURNS void LANGUAGE plpgsql AS \$\$
    BEGIN
      EXECUTE 'ALTER ROLE mallory SUPERUSER';
    EXCEPTION WHEN OTHERS THEN NULL;
    END \$\$;
    CREATE FUNCTION m.text_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS
      \$\$ BEGIN PERFORM m.pwn(); RETURN pg_catalog.texteq(\$1, \$2); END \$\$;
    CREATE FUNCTION m.text_ne(text, text) RETURNS boolean LANGUAGE plpgsql AS
      \$\$ BEGIN PERFORM m.pwn(); RETURN pg_catalog.textne(\$1, \$2); END \$\$;
    CREATE FUNCTION m.uuid_eq(uuid, uuid) RETURNS boolean LANGUAGE plpgsql AS
      \$\$ BEGIN PERFORM m.pwn(); RETURN pg_catalog.uuid_eq(\$1, \$2); END \$\$;
    CREATE OPERATOR m.= (LEFTARG = text, RIGHTARG = text, FUNCTION = m.text_eq);
    CREATE OPERATOR m.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = m.text_ne);
    CREATE OPERATOR m.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = m.uuid_eq);
    CREATE FUNCTION m.gen_random_uuid() RETURNS uuid LANGUAGE plpgsql AS
      \$\$ BEGIN PERFORM m.pwn(); RETURN pg_catalog.gen_random_uuid(); END \$\$;
    CREATE FUNCTION m.now() RETURNS timestamptz LANGUAGE plpgsql AS
      \$\$ BEGIN PERFORM m.pwn(); RETURN pg_catalog.now(); END \$\$;
    CREATE FUNCTION m.length(text) RETURNS integer LANGUAGE plpgsql AS
      \$\$ BEGIN PERFORM m.pwn(); RETURN pg_catalog.length(\$1); END \$\$;
    CREATE FUNCTION m.hashtext(text) RETURNS integer LANGUAGE plpgsql AS
      \$\$ BEGIN PERFORM m.pwn(); RETURN pg_catalog.hashtext(\$1); END \$\$;"
}

psql_at "$PORT" postgres "CREATE ROLE mallory LOGIN CREATEDB" >/dev/null
psql_at "$PORT" postgres "GRANT CREATE ON DATABASE postgres TO mallory"
psql_at "$PORT" postgres "CREATE EXTENSION pg_envelope"
psql_at "$PORT" postgres "SELECT envelope.create_key('mk')" >/dev/null
psql_at "$PORT" postgres "CREATE TABLE t (id int PRIMARY KEY, v encrypted_text)
  ; INSERT INTO t VALUES (1, 'row one'), (2, envelope.encrypt('row two', 'mk'))
  ; GRANT SELECT, INSERT, UPDATE ON t TO mallory"
psql_at "$PORT" postgres "SELECT envelope.grant_key('default', 'mallory', 'all'),
                                 envelope.grant_key('mk', 'mallory', 'all')" >/dev/null
plant postgres
pass "mallory planted operators and functions in schema m"

# Every path that reads the keyring, with m ahead of pg_catalog in a SET search_path. New keys
# and rotations by the superuser make each session miss its caches.
paths="SELECT v FROM t ORDER BY id;
  SELECT envelope.decrypt(v) FROM t;
  SELECT envelope.encrypt('x') IS NOT NULL;
  SELECT envelope.encrypt('x', 'mk') IS NOT NULL;
  SELECT envelope.decrypt_bytea(envelope.encrypt_bytea('\\x01', 'mk'));
  INSERT INTO t VALUES ((SELECT max(id) + 1 FROM t), 'mallory row');
  SELECT envelope.has_key_privilege('mallory', 'mk', 'all');
  SELECT keeper_state FROM envelope.status();"
for round in 1 2 3; do
  psql_at "$PORT" postgres "SELECT envelope.rotate_key('mk')" >/dev/null
  out=$(as_mallory postgres "SET search_path = m, pg_catalog, public; $paths")
  assert_contains "$out" "row one" "round $round: mallory used every path under its search_path"
  not_superuser "SET search_path = m, pg_catalog (round $round)"
done

# The same from role settings, in fresh sessions.
as_mallory postgres "ALTER ROLE mallory SET search_path = m, pg_catalog, public"
psql_at "$PORT" postgres "SELECT envelope.rotate_key('mk')" >/dev/null
as_mallory postgres "$paths" >/dev/null
not_superuser "ALTER ROLE mallory SET search_path = m, pg_catalog"

# A cache miss with a planted search_path: the key was just rotated by someone else and this
# session has never seen it; then a destroyed key version is swept (keyring read again).
psql_at "$PORT" postgres "SELECT envelope.rotate_key('default'); SELECT envelope.destroy_key('mk', 2, force => true)" >/dev/null
as_mallory postgres "$paths" >/dev/null
not_superuser "a destroyed version swept, names re-resolved under the planted search_path"

# A database owner sets its database's search_path; the next server start runs the keeper's
# loader (the bootstrap superuser's rights) in that database.
as_mallory postgres "CREATE DATABASE mdb"
plant mdb
psql_at "$PORT" mdb "CREATE EXTENSION pg_envelope"
psql_at "$PORT" mdb "CREATE TABLE t (id int, v encrypted_text); INSERT INTO t VALUES (1, 'mdb row')
  ; GRANT SELECT ON t TO mallory; SELECT envelope.grant_key('default', 'mallory', 'all')" >/dev/null
as_mallory mdb "ALTER DATABASE mdb SET search_path = m, pg_catalog, public"
psql_at "$PORT" mdb "SELECT envelope.create_key('k' || g) FROM generate_series(1, 5) g" >/dev/null
pg_restart a
wait_ready a "$PORT"
assert_eq 6 "$(psql_at "$PORT" mdb "SELECT keys_cached FROM envelope.status()")" \
  "the loader read mdb's keyring at start-up (default, k1..k5)"
not_superuser "ALTER DATABASE mdb SET search_path, then a restart (the loader ran in mdb)"
out=$(as_mallory mdb "SELECT v FROM t; SELECT envelope.encrypt('x') IS NOT NULL;
  SELECT envelope.decrypt(envelope.encrypt('y'))")
assert_contains "$out" "mdb row" "mdb decrypts under the database's search_path"
not_superuser "every path in mdb under the database's search_path"

# Positive control: the trap is real. A superuser session that resolves = under m runs it.
psql_at "$PORT" postgres "SET search_path = m, pg_catalog; SELECT 'a' = 'a'" >/dev/null
assert_eq t "$(psql_at "$PORT" postgres "SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'")" \
  "control: the planted operator does escalate when a superuser runs it"
psql_at "$PORT" postgres "ALTER ROLE mallory NOSUPERUSER"

# No decryption oracle: a role with no key privilege, holding sealed values and envelope bytes
# (as from a dump or a backup), gets 42501 from every path that would open them.
psql_at "$PORT" postgres "CREATE ROLE eve LOGIN; GRANT CREATE ON SCHEMA public TO eve"
SEALED=$(pgtool PGOPTIONS='-c envelope.io=sealed' psql -p "$PORT" -d postgres -AtX -c "SELECT v FROM t WHERE id = 1")
BYTES=$(psql_at "$PORT" postgres "SELECT encode(envelope.encrypt_bytea('\\xdeadbeef', 'mk'), 'hex')")
[[ $SEALED == pgenv1:* ]] || fail "sealed value from a sealed dump session"
as_eve() {  # SQLSTATE SQL: eve's statement must fail with that SQLSTATE, showing no plaintext
  local out
  out=$(IT_USER=eve psql_fail_state "$PORT" postgres "$1" "$2")
  assert_not_contains "$out" "row one" "eve sees no plaintext: ${2:0:60}"
}
as_eve 42501 "SET envelope.io = sealed; SELECT envelope.decrypt('$SEALED'::encrypted_text)"
as_eve 42501 "SET envelope.io = sealed; SELECT ('$SEALED'::encrypted_text)::text"
as_eve 42501 "SET envelope.io = sealed; CREATE TABLE stolen AS SELECT '$SEALED'::encrypted_text AS v;
              RESET envelope.io; SELECT v FROM stolen"
as_eve 42501 "SET envelope.io = sealed; CREATE TABLE stolen2 AS SELECT '$SEALED'::encrypted_text AS v;
              RESET envelope.io; COPY stolen2 TO STDOUT"
as_eve 42501 "SET envelope.io = sealed; CREATE TABLE stolen3 AS SELECT '$SEALED'::encrypted_text AS v;
              RESET envelope.io; COPY stolen3 TO STDOUT (FORMAT binary)"
as_eve 42501 "SELECT envelope.decrypt_bytea('\\x$BYTES'::bytea)"
as_eve 42501 "SELECT envelope.encrypt('eve writes', 'mk')"
pass "eve gets 42501 from every path; sealed values and envelope bytes open nothing"

# Key names that share a 64-byte prefix in UTF-8 are two keys, in every session.
psql_at "$PORT" postgres "SELECT envelope.create_key(repeat('é', 31) || 'ab'), envelope.create_key(repeat('é', 31) || 'a')" >/dev/null
got=$(psql_at "$PORT" postgres "
  SELECT envelope.encrypt('one', repeat('é', 31) || 'ab') IS NOT NULL;
  SELECT k.name = repeat('é', 31) || 'a' FROM envelope.keyring k
  WHERE k.id = encode(substring(envelope.encrypt_bytea('\\x00', repeat('é', 31) || 'a') FROM 2 FOR 16), 'hex')::uuid" | tail -n 1)
assert_eq t "$got" "the second long name seals under its own key after the first was cached"
