-- pg_envelope 0.2.0 -> 0.3.0.
\echo Use "ALTER EXTENSION pg_envelope UPDATE TO '0.3.0'" to load this file. \quit

-------------------------------------------------------------------------------
-- Sharding (issue 16; README "Scaling out"): the envelope_fdw foreign-data wrapper
-- (postgres_fdw with encrypted_text sealed on the wire) and keyring invalidation for
-- keyrings that reach shards by logical replication.
-------------------------------------------------------------------------------
CREATE FUNCTION envelope.fdw_handler() RETURNS fdw_handler
    AS 'MODULE_PATHNAME', 'envelope_fdw_handler' LANGUAGE C STRICT;
COMMENT ON FUNCTION envelope.fdw_handler() IS
  'Handler of envelope_fdw: postgres_fdw whose callbacks move encrypted_text sealed';
CREATE FUNCTION envelope.fdw_validator(options text[], catalog oid) RETURNS void
    AS 'MODULE_PATHNAME', 'envelope_fdw_validator' LANGUAGE C STRICT;
COMMENT ON FUNCTION envelope.fdw_validator(text[], oid) IS
  'Validator of envelope_fdw: postgres_fdw''s options; a server must set envelope.io = sealed on the shard and must not list pg_envelope in extensions';
-- Using the wrapper takes USAGE on it, granted by a superuser like postgres_fdw's.
CREATE FOREIGN DATA WRAPPER envelope_fdw
    HANDLER envelope.fdw_handler VALIDATOR envelope.fdw_validator;
COMMENT ON FOREIGN DATA WRAPPER envelope_fdw IS
  'postgres_fdw for sharded tables with encrypted_text columns: values cross the connection only sealed';

-- Logical replication applies rows without firing statement triggers, so a shard's sessions
-- would keep stale key names and privilege decisions after a replicated rotate or revoke.
-- These row triggers fire only in replica mode (apply workers, whose rows the statement
-- triggers miss) and send the same invalidation.
CREATE TRIGGER keyring_changed_replica AFTER INSERT OR UPDATE OR DELETE
    ON envelope.keyring FOR EACH ROW EXECUTE FUNCTION envelope._keyring_changed();
ALTER TABLE envelope.keyring ENABLE REPLICA TRIGGER keyring_changed_replica;
CREATE TRIGGER key_privileges_changed_replica AFTER INSERT OR UPDATE OR DELETE
    ON envelope.key_privileges FOR EACH ROW EXECUTE FUNCTION envelope._keyring_changed();
ALTER TABLE envelope.key_privileges ENABLE REPLICA TRIGGER key_privileges_changed_replica;
-------------------------------------------------------------------------------
-- End of sharding (issue 16).
-------------------------------------------------------------------------------

-------------------------------------------------------------------------------
-- Key lifecycle (issue 13; README "Re-encrypting a column" and "Shredding"): which key
-- versions a database's values use, destroy_key() that refuses while values remain, and
-- online re-encryption with progress.
-------------------------------------------------------------------------------
CREATE FUNCTION envelope.value_key_id(value encrypted_text) RETURNS uuid
    AS 'MODULE_PATHNAME', 'envelope_value_key_id' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION envelope.value_key_id(encrypted_text) IS
  'The DEK id in a sealed value''s header (no key, no privilege, no decryption)';
CREATE FUNCTION envelope.value_key_id(value bytea) RETURNS uuid
    AS 'MODULE_PATHNAME', 'envelope_value_key_id' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION envelope.value_key_id(bytea) IS
  'The DEK id in the header of envelope bytes (encrypt_bytea output); NULL for bytes that are not an envelope';

-- The encrypted_text columns of ordinary, partitioned and materialized tables that hold rows
-- (partitions are reached through their parent; inheritance children are scanned ONLY).
CREATE FUNCTION envelope._encrypted_columns(tbl regclass DEFAULT NULL)
    RETURNS TABLE (relid regclass, attname name, scan_only boolean)
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT c.oid::regclass, a.attname, c.relkind <> 'p'
    FROM pg_class c
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    JOIN pg_type t ON t.oid = a.atttypid AND t.typname = 'encrypted_text'
    JOIN pg_extension e ON e.extname = 'pg_envelope' AND t.typnamespace = e.extnamespace
    WHERE c.relkind IN ('r', 'p', 'm')
      AND (tbl IS NULL AND NOT c.relispartition OR c.oid = tbl)
    ORDER BY c.oid, a.attnum
$$;
REVOKE ALL ON FUNCTION envelope._encrypted_columns(regclass) FROM PUBLIC;

-- Values per key version, counted from the headers (no decryption). With the caller's rights:
-- a named table needs SELECT; for the whole database, tables the caller cannot read are
-- skipped with a NOTICE saying how many.
CREATE FUNCTION envelope.key_usage(tbl regclass DEFAULT NULL)
    RETURNS TABLE (table_name regclass, column_name name, key_name text, key_version integer,
                   key_id uuid, key_state text, value_count bigint)
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER AS $$
DECLARE
    c record;
    skipped integer := 0;
BEGIN
    FOR c IN SELECT * FROM envelope._usage_columns(tbl) LOOP
        IF NOT pg_catalog.has_table_privilege(c.relid, 'SELECT') THEN
            IF tbl IS NOT NULL THEN
                RAISE EXCEPTION 'permission denied for table %', c.relid
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            skipped := skipped + 1;
            CONTINUE;
        END IF;
        RETURN QUERY EXECUTE pg_catalog.format(
            'SELECT %L::regclass, %L::name, r.name, r.version, u.id, r.state, u.n
               FROM (SELECT envelope.value_key_id(%I) AS id, pg_catalog.count(*) AS n
                       FROM %s %s WHERE %I IS NOT NULL GROUP BY 1) u
               LEFT JOIN envelope._key_names() r ON r.id = u.id
              ORDER BY 3, 4',
            c.relid, c.attname, c.attname, CASE WHEN c.scan_only THEN 'ONLY' ELSE '' END,
            c.relid, c.attname);
    END LOOP;
    IF skipped > 0 THEN
        RAISE NOTICE 'key_usage skipped % column(s) of tables you cannot read', skipped;
    END IF;
END
$$;
COMMENT ON FUNCTION envelope.key_usage(regclass) IS
  'Values per key version in one table''s encrypted_text columns or in every one of the database (counted from value headers; tables the caller cannot read are skipped)';

-- Column lister callable by key_usage's invoker (the catalog query only; no data).
CREATE FUNCTION envelope._usage_columns(tbl regclass)
    RETURNS TABLE (relid regclass, attname name, scan_only boolean)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM envelope._encrypted_columns(tbl)
$$;
GRANT EXECUTE ON FUNCTION envelope._usage_columns(regclass) TO PUBLIC;

-- Key names and states by id, for anyone: what envelope.keys shows without the sensitive parts
-- (no wrapped key, no KEK label). Names are already visible to whoever can read key_grants or
-- is granted a key; ids are in every value's header.
CREATE FUNCTION envelope._key_names(OUT id uuid, OUT name text, OUT version integer,
    OUT state text)
    RETURNS SETOF record
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT k.id, k.name, k.version, k.state::text FROM envelope.keyring k
$$;
GRANT EXECUTE ON FUNCTION envelope._key_names() TO PUBLIC;

-- destroy_key(name, version, force): refuses while values under the version remain in any
-- encrypted_text column of this database ("remain" = visible to this transaction's snapshot in
-- ordinary, partitioned and materialized tables; cost: one scan of every such column, reading
-- headers only). force => true shreds them. Values elsewhere (other databases, bytea columns,
-- foreign tables, backups) are not counted: they are shredded too.
DROP FUNCTION envelope.destroy_key(text, integer);
CREATE FUNCTION envelope.destroy_key(name text, version integer, force boolean DEFAULT false)
    RETURNS uuid
    LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    destroyed_id uuid;
    c record;
    n bigint;
    remaining bigint := 0;
    columns integer := 0;
BEGIN
    SELECT k.id INTO destroyed_id FROM envelope.keyring k
        WHERE k.name = destroy_key.name AND k.version = destroy_key.version
          AND k.state <> 'destroyed'
        FOR UPDATE;
    IF destroyed_id IS NULL THEN
        RAISE EXCEPTION 'key "%" version % does not exist or is already destroyed',
            destroy_key.name, destroy_key.version
            USING ERRCODE = 'undefined_object';
    END IF;
    IF NOT force THEN
        FOR c IN SELECT * FROM envelope._encrypted_columns(NULL) LOOP
            EXECUTE format('SELECT count(*) FROM %s %s WHERE envelope.value_key_id(%I) = $1',
                           CASE WHEN c.scan_only THEN 'ONLY' ELSE '' END, c.relid, c.attname)
                INTO n USING destroyed_id;
            IF n > 0 THEN
                remaining := remaining + n;
                columns := columns + 1;
            END IF;
        END LOOP;
        IF remaining > 0 THEN
            RAISE EXCEPTION 'key "%" version % still seals % value(s) in % column(s)',
                destroy_key.name, destroy_key.version, remaining, columns
                USING ERRCODE = 'object_in_use',
                      DETAIL = 'envelope.key_usage() lists them per table and column.',
                      HINT = 'Move them to the active version with CALL envelope.reencrypt(...), or pass force => true to shred them with the key.';
        END IF;
    END IF;
    UPDATE envelope.keyring k
        SET state = 'destroyed', wrapped_dek = NULL, state_changed_at = now()
        WHERE k.id = destroyed_id;
    INSERT INTO envelope.key_events (action, key_name, key_version, key_id)
        VALUES (CASE WHEN force THEN 'destroy_forced' ELSE 'destroy' END,
                destroy_key.name, destroy_key.version, destroyed_id);
    PERFORM envelope._audit('destroy', destroy_key.name, destroy_key.version, 'ok');
    RETURN destroyed_id;
END
$$;
COMMENT ON FUNCTION envelope.destroy_key(text, integer, boolean) IS
  'Crypto-shreds one key version (superuser, envelope_admin); refuses while values under it remain in this database''s encrypted_text columns unless force';
REVOKE ALL ON FUNCTION envelope.destroy_key(text, integer, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION envelope.destroy_key(text, integer, boolean) TO envelope_admin;

-- Progress of envelope.reencrypt(), one row per run, committed with every batch so other
-- sessions see it. Row security: a role sees runs on tables it can read and writes runs on
-- tables it can update.
CREATE TABLE envelope.reencrypt_runs (
    pid         integer NOT NULL,
    relid       oid NOT NULL,
    column_name name NOT NULL,
    key_name    text NOT NULL,
    key_id      uuid NOT NULL,
    phase       text NOT NULL,
    passes      integer NOT NULL DEFAULT 0,
    rows_total  bigint NOT NULL DEFAULT 0,
    rows_done   bigint NOT NULL DEFAULT 0,
    started     timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (relid, column_name)
);
ALTER TABLE envelope.reencrypt_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY reencrypt_runs_read ON envelope.reencrypt_runs FOR SELECT
    USING (pg_catalog.has_table_privilege(relid, 'SELECT'));
CREATE POLICY reencrypt_runs_write ON envelope.reencrypt_runs FOR ALL
    USING (pg_catalog.has_table_privilege(relid, 'UPDATE'))
    WITH CHECK (pg_catalog.has_table_privilege(relid, 'UPDATE'));
GRANT SELECT, INSERT, UPDATE, DELETE ON envelope.reencrypt_runs TO PUBLIC;

-- security_invoker: the row security of reencrypt_runs applies to whoever reads the view.
CREATE VIEW envelope.reencrypt_progress WITH (security_invoker = true, security_barrier) AS
    SELECT r.pid, r.relid::regclass AS table_name, r.column_name, r.key_name, r.phase,
           r.passes, r.rows_done, r.rows_total,
           round(r.rows_done / nullif(extract(epoch FROM r.updated - r.started), 0)) AS rows_per_s,
           r.started, r.updated,
           CASE WHEN r.phase = 'done' THEN r.updated
                WHEN r.rows_done > 0 AND r.rows_total > r.rows_done
                THEN r.updated + (r.updated - r.started) * ((r.rows_total - r.rows_done)::float8 / r.rows_done)
           END AS eta,
           r.phase = 'rewriting' AND EXISTS (
               SELECT 1 FROM pg_catalog.pg_stat_activity a
                WHERE a.pid = r.pid AND a.pid <> pg_catalog.pg_backend_pid() AND a.state = 'active')
               AS running
    FROM envelope.reencrypt_runs r;
COMMENT ON VIEW envelope.reencrypt_progress IS
  'envelope.reencrypt() runs: phase, rows done of the rows found under other key versions, rate, ETA; running = its session is still alive';
GRANT SELECT ON envelope.reencrypt_progress TO PUBLIC;

-- Moves every value of an encrypted_text column to the active version of key_name (default:
-- envelope.default_key), in batches of block ranges, committing after each; a procedure, so
-- it must be CALLed outside an explicit transaction block. With the caller's rights: it
-- opens with decrypt on the old and seals with encrypt on the new key. context: a SQL
-- expression over the row that yields each value's context (bytea), e.g. 'id::text::bytea'.
-- Rows updated concurrently are skipped in the batch (their new version is re-checked) and
-- picked up by the next pass; passes repeat until one finds nothing left (at most 10).
CREATE PROCEDURE envelope.reencrypt(tbl regclass, col name, key_name text DEFAULT NULL,
    context text DEFAULT NULL, batch_pages integer DEFAULT 64, throttle_ms integer DEFAULT 0)
    LANGUAGE plpgsql AS $$
DECLARE
    target_key text := coalesce(key_name, pg_catalog.current_setting('envelope.default_key'));
    target_id uuid;
    ctx text := coalesce(context, 'NULL::bytea');
    part record;
    nblocks bigint;
    blk bigint;
    moved bigint;
    remaining bigint;
    done bigint := 0;
    pass integer := 0;
    block_size integer := pg_catalog.current_setting('block_size')::integer;
    failed boolean := false;
    err_state text;
    err_message text;
    err_detail text;
    err_hint text;
BEGIN
    IF batch_pages < 1 OR throttle_ms < 0 THEN
        RAISE EXCEPTION 'batch_pages must be positive and throttle_ms not negative'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM envelope._usage_columns(tbl) u WHERE u.attname = col) THEN
        RAISE EXCEPTION 'column "%" of % is not an encrypted_text column', col, tbl
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF NOT (pg_catalog.has_column_privilege(tbl, col, 'SELECT')
            AND pg_catalog.has_column_privilege(tbl, col, 'UPDATE')) THEN
        RAISE EXCEPTION 'permission denied for table %', tbl
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'envelope.reencrypt() needs SELECT and UPDATE on the column.';
    END IF;
    -- The active version of the target key, and proof the caller may seal with it.
    target_id := envelope.value_key_id(envelope.encrypt('', target_key));
    EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM %s WHERE envelope.value_key_id(%I) <> $1',
                              tbl, col) INTO remaining USING target_id;
    DELETE FROM envelope.reencrypt_runs r WHERE r.relid = tbl AND r.column_name = col;
    INSERT INTO envelope.reencrypt_runs (pid, relid, column_name, key_name, key_id, phase, rows_total)
        VALUES (pg_catalog.pg_backend_pid(), tbl, col, target_key, target_id, 'rewriting', remaining);
    COMMIT;
    WHILE remaining > 0 AND pass < 10 LOOP
        pass := pass + 1;
        -- Leaf relations (the table itself, or each leaf partition), block range by block range.
        FOR part IN SELECT c.oid::regclass AS relid FROM pg_catalog.pg_class c
                     WHERE c.oid = tbl AND c.relkind = 'r'
                    UNION ALL
                    SELECT p.relid FROM pg_catalog.pg_partition_tree(tbl) p
                      JOIN pg_catalog.pg_class c ON c.oid = p.relid
                     WHERE p.isleaf AND c.relkind = 'r' AND p.relid <> tbl LOOP
            blk := 0;
            LOOP
                nblocks := pg_catalog.pg_relation_size(part.relid) / block_size;
                EXIT WHEN blk >= nblocks;
                -- One batch in a subtransaction, so a failure or a cancel is recorded (and
                -- committed) before it is raised again; COMMIT must stay outside the block.
                BEGIN
                    EXECUTE pg_catalog.format(
                        'UPDATE ONLY %s SET %I = envelope.encrypt(envelope.decrypt(%I, %s), $2, %s)
                          WHERE ctid >= pg_catalog.format(''(%%s,0)'', $3)::tid
                            AND ctid < pg_catalog.format(''(%%s,0)'', $4)::tid
                            AND envelope.value_key_id(%I) <> $1',
                        part.relid, col, col, ctx, ctx, col)
                        USING target_id, target_key, blk, blk + batch_pages;
                    GET DIAGNOSTICS moved = ROW_COUNT;
                EXCEPTION WHEN OTHERS OR query_canceled THEN
                    GET STACKED DIAGNOSTICS err_state = RETURNED_SQLSTATE,
                        err_message = MESSAGE_TEXT, err_detail = PG_EXCEPTION_DETAIL,
                        err_hint = PG_EXCEPTION_HINT;
                    failed := true;
                END;
                IF failed THEN
                    UPDATE envelope.reencrypt_runs r
                       SET phase = CASE WHEN err_state = '57014' THEN 'canceled' ELSE 'failed' END,
                           updated = pg_catalog.clock_timestamp()
                     WHERE r.relid = tbl AND r.column_name = col;
                    COMMIT;
                    RAISE EXCEPTION USING ERRCODE = err_state, MESSAGE = err_message,
                        DETAIL = err_detail, HINT = err_hint;
                END IF;
                done := done + moved;
                blk := blk + batch_pages;
                UPDATE envelope.reencrypt_runs r
                   SET rows_done = done, passes = pass, updated = pg_catalog.clock_timestamp()
                 WHERE r.relid = tbl AND r.column_name = col;
                COMMIT;
                IF throttle_ms > 0 THEN
                    PERFORM pg_catalog.pg_sleep(throttle_ms / 1000.0);
                END IF;
            END LOOP;
        END LOOP;
        EXECUTE pg_catalog.format('SELECT pg_catalog.count(*) FROM %s WHERE envelope.value_key_id(%I) <> $1',
                                  tbl, col) INTO remaining USING target_id;
    END LOOP;
    UPDATE envelope.reencrypt_runs r
       SET phase = CASE WHEN remaining = 0 THEN 'done' ELSE 'incomplete' END,
           rows_total = greatest(r.rows_total, done), passes = pass,
           updated = pg_catalog.clock_timestamp()
     WHERE r.relid = tbl AND r.column_name = col;
    COMMIT;
    IF remaining > 0 THEN
        RAISE WARNING '% value(s) of %.% are still under other key versions after % passes',
            remaining, tbl, col, pass
            USING HINT = 'Concurrent writes keep copying old values; CALL envelope.reencrypt again.';
    END IF;
END
$$;
COMMENT ON PROCEDURE envelope.reencrypt(regclass, name, text, text, integer, integer) IS
  'Moves every value of an encrypted_text column to the active version of a key, online, in committed batches of block ranges; resumable; progress in envelope.reencrypt_progress';
-------------------------------------------------------------------------------
-- End of key lifecycle (issue 13).
-------------------------------------------------------------------------------
