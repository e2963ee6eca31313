-- lifecycle: key_usage() counts values per key version from headers, destroy_key() refuses
-- while values remain (force shreds), reencrypt() moves a column online and shows progress.
SELECT envelope.create_key('lc') IS NOT NULL AS created;
CREATE TABLE lc_t (id int, v encrypted_text);          -- no primary key on purpose
INSERT INTO lc_t SELECT g, envelope.encrypt('v1 row ' || g, 'lc') FROM generate_series(1, 300) g;
INSERT INTO lc_t VALUES (0, NULL);
SELECT envelope.rotate_key('lc') IS NOT NULL AS rotated;
INSERT INTO lc_t SELECT g, envelope.encrypt('v2 row ' || g, 'lc') FROM generate_series(301, 350) g;

SELECT table_name, column_name, key_name, key_version, key_state, value_count
FROM envelope.key_usage('lc_t') ORDER BY key_version;
SELECT envelope.value_key_id(NULL::encrypted_text) IS NULL AS null_in_null_out,
       envelope.value_key_id('\x0102'::bytea) IS NULL AS not_an_envelope;

-- Version 1 still seals 300 values: refused, loudly, with the way out.
\set VERBOSITY verbose
SELECT envelope.destroy_key('lc', 1);
\set VERBOSITY default

-- Re-encryption: bad arguments first.
CALL envelope.reencrypt('lc_t', 'id', 'lc');
CALL envelope.reencrypt('lc_t', 'v', 'lc', batch_pages => 0);
BEGIN;
CALL envelope.reencrypt('lc_t', 'v', 'lc');
ROLLBACK;
-- The real run, in small batches so it commits many times.
CALL envelope.reencrypt('lc_t', 'v', 'lc', batch_pages => 1);
SELECT key_name, key_version, value_count FROM envelope.key_usage('lc_t');
SELECT table_name, column_name, key_name, phase, rows_done, rows_total, running,
       eta = updated AS eta_is_end, passes
FROM envelope.reencrypt_progress WHERE table_name = 'lc_t'::regclass;
SELECT count(*) AS readable FROM lc_t WHERE v::text ~ '^v[12] row ';
-- Nothing left: a second run moves nothing, and version 1 can go without force.
CALL envelope.reencrypt('lc_t', 'v', 'lc');
SELECT rows_done, rows_total, phase FROM envelope.reencrypt_progress WHERE table_name = 'lc_t'::regclass;
SELECT envelope.destroy_key('lc', 1) IS NOT NULL AS destroyed_without_force;

-- Values sealed with a context: the context expression is evaluated per row.
SELECT envelope.create_key('lc_ctx') IS NOT NULL AS created;
CREATE TABLE lc_ctx (id int PRIMARY KEY, v encrypted_text);
INSERT INTO lc_ctx SELECT g, envelope.encrypt('ctx ' || g, 'lc_ctx', g::text::bytea)
FROM generate_series(1, 20) g;
SELECT envelope.rotate_key('lc_ctx') IS NOT NULL AS rotated;
-- Without the context nothing opens: the batch fails, moves nothing, and the run says so.
CALL envelope.reencrypt('lc_ctx', 'v', 'lc_ctx');
SELECT phase, rows_done, running FROM envelope.reencrypt_progress WHERE table_name = 'lc_ctx'::regclass;
CALL envelope.reencrypt('lc_ctx', 'v', 'lc_ctx', context => 'id::text::bytea');
SELECT key_version, value_count FROM envelope.key_usage('lc_ctx');
SELECT count(*) AS open_with_context FROM lc_ctx
WHERE envelope.decrypt(v, id::text::bytea) = 'ctx ' || id;

-- Moving to another named key, through a partitioned table.
SELECT envelope.create_key('lc_other') IS NOT NULL AS created;
CREATE TABLE lc_part (id int, v encrypted_text) PARTITION BY RANGE (id);
CREATE TABLE lc_part_1 PARTITION OF lc_part FOR VALUES FROM (0) TO (100);
CREATE TABLE lc_part_2 PARTITION OF lc_part FOR VALUES FROM (100) TO (200);
INSERT INTO lc_part SELECT g, envelope.encrypt('p ' || g, 'lc') FROM generate_series(0, 199) g;
CALL envelope.reencrypt('lc_part', 'v', 'lc_other');
SELECT key_name, value_count FROM envelope.key_usage('lc_part');
-- key_usage() over the whole database lists the parent, not its partitions.
SELECT table_name, key_name, key_version, value_count FROM envelope.key_usage()
WHERE table_name::text LIKE 'lc%' ORDER BY 1, 2, 3;

-- force shreds values that remain.
CREATE TABLE lc_doomed (v encrypted_text);
SELECT envelope.create_key('lc_doomed') IS NOT NULL AS created;
INSERT INTO lc_doomed VALUES (envelope.encrypt('gone', 'lc_doomed'));
SELECT envelope.destroy_key('lc_doomed', 1);
SELECT envelope.destroy_key('lc_doomed', 1, force => true) IS NOT NULL AS forced;
SELECT action FROM envelope.key_events WHERE key_name = 'lc_doomed' ORDER BY id;
SELECT key_state, value_count FROM envelope.key_usage('lc_doomed');

-- Hostile and unprivileged roles.
CREATE ROLE lc_reader;
CREATE ROLE lc_writer;
GRANT USAGE ON SCHEMA envelope TO lc_reader, lc_writer;
GRANT SELECT ON lc_ctx TO lc_writer;
SELECT envelope.grant_key('lc_ctx', 'lc_writer', 'all');
GRANT SELECT, UPDATE ON lc_t TO lc_writer;
SELECT envelope.rotate_key('lc') IS NOT NULL AS rotated;
SET ROLE lc_reader;
SELECT * FROM envelope.key_usage('lc_t');                    -- no SELECT on the table
SELECT count(*) AS skipped_quietly FROM envelope.key_usage() WHERE table_name::text LIKE 'lc%';
SELECT count(*) AS progress_rows_visible FROM envelope.reencrypt_progress;  -- none of its tables
-- Key names come only for ids the caller has (from values it can read): no listing.
SELECT name IS NULL AS unknown_id FROM envelope._key_name_of(gen_random_uuid());
INSERT INTO envelope.reencrypt_runs (pid, relid, column_name, key_name, key_id, phase)
VALUES (1, 'lc_t'::regclass, 'v', 'x', gen_random_uuid(), 'forged');
RESET ROLE;
SET ROLE lc_writer;
CALL envelope.reencrypt('lc_ctx', 'v', 'lc_ctx', context => 'id::text::bytea');  -- no UPDATE
CALL envelope.reencrypt('lc_t', 'v', 'lc');                  -- no key privilege
RESET ROLE;
SELECT envelope.grant_key('lc', 'lc_writer', 'encrypt'), envelope.grant_key('lc', 'lc_writer', 'decrypt');
SET ROLE lc_writer;
CALL envelope.reencrypt('lc_t', 'v', 'lc');
SELECT key_version, value_count FROM envelope.key_usage('lc_t');
RESET ROLE;
DROP TABLE lc_t, lc_ctx, lc_part, lc_doomed;
DELETE FROM envelope.reencrypt_runs;
DROP OWNED BY lc_reader;
DROP ROLE lc_reader;
SELECT envelope.revoke_key('lc', 'lc_writer', 'all'), envelope.revoke_key('lc_ctx', 'lc_writer', 'all');
DROP OWNED BY lc_writer;
DROP ROLE lc_writer;
