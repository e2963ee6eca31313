-- sharding: envelope_fdw, postgres_fdw with encrypted_text sealed on the wire. The "shard" is
-- this database over a loopback connection: the coordinator seals and opens, the shard's
-- session (envelope.io = sealed, from the server's options) stores and returns envelopes.
\set VERBOSITY default
SELECT fdwname, fdwhandler::regproc AS handler, fdwvalidator::regproc AS validator
FROM pg_foreign_data_wrapper WHERE fdwname = 'envelope_fdw';

-- A server must set envelope.io = sealed on the shard (the last setting counts) and must not
-- list pg_envelope in extensions; postgres_fdw's own checks run too.
CREATE SERVER sh_bad FOREIGN DATA WRAPPER envelope_fdw OPTIONS (dbname 'x');
CREATE SERVER sh_bad FOREIGN DATA WRAPPER envelope_fdw OPTIONS (options '-c envelope.io=plaintext');
CREATE SERVER sh_bad FOREIGN DATA WRAPPER envelope_fdw
    OPTIONS (options '-c envelope.io=sealed -c envelope.io=auto');
CREATE SERVER sh_bad FOREIGN DATA WRAPPER envelope_fdw
    OPTIONS (options '-c envelope.io=sealed', extensions 'pg_envelope');
CREATE SERVER sh_bad FOREIGN DATA WRAPPER envelope_fdw
    OPTIONS (options '-c envelope.io=sealed', no_such_option 'x');
CREATE SERVER sh_ok1 FOREIGN DATA WRAPPER envelope_fdw OPTIONS (options '--envelope.io=sealed');
CREATE SERVER sh_ok2 FOREIGN DATA WRAPPER envelope_fdw
    OPTIONS (options '-c statement_timeout=0 -cenvelope.io=SEALED', extensions 'pg_trgm');
DROP SERVER sh_ok1, sh_ok2;

DO $$
BEGIN
    EXECUTE format('CREATE SERVER loopback FOREIGN DATA WRAPPER envelope_fdw OPTIONS '
                   '(host %L, port %L, dbname %L, options %L)',
                   current_setting('unix_socket_directories'), current_setting('port'),
                   current_database(), '-c envelope.io=sealed');
END
$$;
ALTER SERVER loopback OPTIONS (SET options '-c envelope.io=plaintext');
ALTER SERVER loopback OPTIONS (ADD extensions 'pg_envelope');
ALTER SERVER loopback OPTIONS (DROP options);
CREATE USER MAPPING FOR CURRENT_USER SERVER loopback;

SELECT envelope.create_key('sh_key') IS NOT NULL AS created;
SET envelope.default_key = 'sh_key';
CREATE TABLE sh_shard (id int PRIMARY KEY, secret encrypted_text);
CREATE TABLE sh_accounts (id int NOT NULL, secret encrypted_text) PARTITION BY RANGE (id);
CREATE TABLE sh_accounts_local PARTITION OF sh_accounts FOR VALUES FROM (MINVALUE) TO (100);
CREATE FOREIGN TABLE sh_accounts_remote PARTITION OF sh_accounts FOR VALUES FROM (100) TO (MAXVALUE)
    SERVER loopback OPTIONS (table_name 'sh_shard');
CREATE VIEW sh_counts AS
    SELECT coalesce(sum(sealed), 0) AS sealed, coalesce(sum(opened), 0) AS opened
    FROM envelope.key_stats WHERE key_name = 'sh_key';

-- INSERT: each value is sealed once, by the coordinator (3 seals for 3 values, not 5).
SELECT sealed AS sealed_before FROM sh_counts \gset
INSERT INTO sh_accounts VALUES (1, 'local one'), (101, 'remote one'), (102, 'remote two');
SELECT sealed - :sealed_before AS sealed FROM sh_counts;
-- SELECT: values are opened once, by the coordinator (3 opens, not 5).
SELECT opened AS opened_before FROM sh_counts \gset
SELECT id, secret FROM sh_accounts ORDER BY id;
SELECT opened - :opened_before AS opened FROM sh_counts;
-- The shard stores the coordinator's envelope unchanged.
SET envelope.io = 'sealed';
SELECT count(*) AS same_envelope FROM sh_accounts_remote r JOIN sh_shard s USING (id)
WHERE envelope.encrypted_text_out(r.secret)::text = envelope.encrypted_text_out(s.secret)::text;
SELECT id, left(envelope.encrypted_text_out(secret)::text, 7) AS prefix FROM sh_accounts ORDER BY id;
-- Whatever envelope.io says on the coordinator, the transfer is sealed.
SET envelope.io = 'plaintext';
SELECT id, secret FROM sh_accounts_remote ORDER BY id;
RESET envelope.io;

-- A client's sealed value is still refused by plaintext input (it is not an FDW transfer).
SET envelope.io = 'sealed';
SELECT envelope.encrypted_text_out(secret)::text AS pasted FROM sh_shard WHERE id = 101 \gset
RESET envelope.io;
\set VERBOSITY terse
INSERT INTO sh_accounts VALUES (103, :'pasted');
\set VERBOSITY default
SELECT count(*) AS rows FROM sh_shard;

-- UPDATE and DELETE through the partitioned table; RETURNING comes back sealed and is opened
-- here.
EXPLAIN (VERBOSE, COSTS OFF) UPDATE sh_accounts SET secret = 'remote one, updated' WHERE id = 101;
UPDATE sh_accounts SET secret = 'remote one, updated' WHERE id = 101 RETURNING id, secret;
DELETE FROM sh_accounts WHERE id = 102 RETURNING id, secret;
SELECT id, secret, envelope.decrypt(secret) = secret::text AS decrypt_agrees FROM sh_accounts
ORDER BY id;

-- encrypt() under another key, COPY in plaintext mode, batch inserts.
SELECT envelope.create_key('sh_key2') IS NOT NULL AS created;
INSERT INTO sh_accounts VALUES (110, envelope.encrypt('under sh_key2', 'sh_key2'));
COPY sh_accounts FROM STDIN;
111	copied one
5	copied local
112	copied two
\.
ALTER SERVER loopback OPTIONS (ADD batch_size '7');
INSERT INTO sh_accounts SELECT g, 'batch ' || g FROM generate_series(200, 229) g;
SELECT count(*) AS batch_rows, count(*) FILTER (WHERE secret::text = 'batch ' || id) AS batch_ok
FROM sh_accounts WHERE id >= 200;
SELECT id, secret FROM sh_accounts WHERE id < 200 ORDER BY id;
COPY (SELECT id, secret FROM sh_accounts WHERE id BETWEEN 100 AND 199 ORDER BY id) TO STDOUT;
SET envelope.io = 'sealed';
SELECT count(*) AS sealed_rows FROM sh_accounts_remote
WHERE envelope.encrypted_text_out(secret)::text LIKE 'pgenv1:%';
RESET envelope.io;

-- Initplans whose values the remote query uses run in the session's own mode (format() sees
-- plaintext: 92 + length('local one') = 101).
SELECT count(*) AS found FROM sh_accounts_remote
WHERE id = 92 + (SELECT length(format('%s', secret)) FROM sh_accounts_local WHERE id = 1);

-- Bound parameters of a generic plan are sent to the shard as they are.
SET plan_cache_mode = force_generic_plan;
PREPARE sh_by_id(int) AS SELECT id, secret FROM sh_accounts_remote WHERE id = $1;
EXECUTE sh_by_id(101);
PREPARE sh_by_id_sub(int) AS SELECT id, secret FROM sh_accounts_remote
    WHERE id = $1 + (SELECT length(format('%s', secret)) FROM sh_accounts_local WHERE id = 1);
EXECUTE sh_by_id_sub(92);
DEALLOCATE sh_by_id;
DEALLOCATE sh_by_id_sub;
RESET plan_cache_mode;

-- ANALYZE samples the shard's rows through the sealed transfer.
ANALYZE sh_accounts_remote;
SELECT reltuples > 0 AS analyzed FROM pg_class WHERE oid = 'sh_accounts_remote'::regclass;

RESET envelope.default_key;
DROP VIEW sh_counts;
DROP TABLE sh_accounts, sh_shard;
DROP SERVER loopback CASCADE;
