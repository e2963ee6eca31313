-- pg_envelope 0.2.0 -> 0.3.0. Each feature of this version has its own delimited section.
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
               LEFT JOIN LATERAL envelope._key_name_of(u.id) r ON true
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

-- The name, version and state of one key id, for anyone who has the id: ids are random and
-- known only from the headers of values the caller can read (key_usage's case). No listing of
-- the keyring, no wrapped key, no KEK label.
CREATE FUNCTION envelope._key_name_of(key_id uuid, OUT name text, OUT version integer,
    OUT state text)
    LANGUAGE sql STABLE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT k.name, k.version, k.state::text FROM envelope.keyring k WHERE k.id = key_id
$$;
GRANT EXECUTE ON FUNCTION envelope._key_name_of(uuid) TO PUBLIC;

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
-- Searching encrypted columns (issue 12; README, "Searching encrypted columns"): index keys
-- of their own in the keyring (purpose 'index'), the search privilege, the hash operator class
-- envelope.blind_ops with planner support for `column = 'plaintext'` and envelope.matches(),
-- and envelope.blind_tag() for unique indexes.
-------------------------------------------------------------------------------

-- A key is a data key (seals and opens values) or an index key (computes search tags only);
-- never both, and a row's purpose never changes.
ALTER TABLE envelope.keyring ADD COLUMN purpose text NOT NULL DEFAULT 'data'
    CHECK (purpose IN ('data', 'index'));
COMMENT ON COLUMN envelope.keyring.purpose IS
  'data: seals and opens values; index: keys the HMAC tags of blind indexes only';

CREATE OR REPLACE FUNCTION envelope._keyring_guard() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rank_old integer;
    rank_new integer;
BEGIN
    IF TG_OP = 'DELETE' OR TG_OP = 'TRUNCATE' THEN
        RAISE EXCEPTION 'rows of envelope.keyring cannot be deleted'
            USING ERRCODE = 'restrict_violation',
                  DETAIL = 'A deleted keyring row could be restored from a backup and undo a destroy.',
                  HINT = 'Destroy a key version with envelope.destroy_key(); DROP EXTENSION removes the whole keyring.';
    END IF;
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.name IS DISTINCT FROM OLD.name
       OR NEW.version IS DISTINCT FROM OLD.version THEN
        RAISE EXCEPTION 'the id, name and version of a keyring row cannot change'
            USING ERRCODE = 'restrict_violation';
    END IF;
    rank_old := array_position(ARRAY['active', 'decrypt_only', 'destroyed'], OLD.state);
    rank_new := array_position(ARRAY['active', 'decrypt_only', 'destroyed'], NEW.state);
    IF rank_new < rank_old THEN
        RAISE EXCEPTION 'key "%" version % cannot go from % back to %', OLD.name, OLD.version,
            OLD.state, NEW.state
            USING ERRCODE = 'restrict_violation',
                  DETAIL = 'Key states only move forward: active, decrypt_only, destroyed.',
                  HINT = 'Create a new version with envelope.rotate_key().';
    END IF;
    IF NEW.purpose IS DISTINCT FROM OLD.purpose THEN
        RAISE EXCEPTION 'the purpose of a keyring row cannot change'
            USING ERRCODE = 'restrict_violation',
                  DETAIL = 'A data key never computes search tags and an index key never seals a value.';
    END IF;
    RETURN NEW;
END
$$;

-- search: may compute tags of chosen plaintexts under an index key, i.e. test guesses.
ALTER TABLE envelope.key_privileges DROP CONSTRAINT key_privileges_privilege_check;
ALTER TABLE envelope.key_privileges ADD CONSTRAINT key_privileges_privilege_check
    CHECK (privilege IN ('encrypt', 'decrypt', 'search'));
COMMENT ON TABLE envelope.key_privileges IS
  'Key privileges: which role (by name) may seal (encrypt) or open (decrypt) values under a data key, or compute search tags (search) under an index key; read through envelope.key_grants';

-- What revoke_key removes: one privilege, or all of them.
CREATE OR REPLACE FUNCTION envelope._key_privilege_list(privilege text) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    CASE privilege
        WHEN 'encrypt' THEN RETURN ARRAY['encrypt'];
        WHEN 'decrypt' THEN RETURN ARRAY['decrypt'];
        WHEN 'search' THEN RETURN ARRAY['search'];
        WHEN 'all' THEN RETURN ARRAY['encrypt', 'decrypt', 'search'];
        ELSE RAISE EXCEPTION 'invalid key privilege "%"', privilege
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use encrypt, decrypt, search or all.';
    END CASE;
END
$$;

-- What grant_key stores: the privileges that apply to a key of that purpose.
CREATE FUNCTION envelope._key_privilege_list(privilege text, purpose text) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF purpose = 'index' THEN
        IF privilege IN ('search', 'all') THEN RETURN ARRAY['search']; END IF;
        IF privilege IN ('encrypt', 'decrypt') THEN
            RAISE EXCEPTION 'the % privilege does not apply to index keys', privilege
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Index keys have one privilege, search.';
        END IF;
    ELSE
        IF privilege = 'all' THEN RETURN ARRAY['encrypt', 'decrypt']; END IF;
        IF privilege IN ('encrypt', 'decrypt') THEN RETURN ARRAY[privilege]; END IF;
        IF privilege = 'search' THEN
            RAISE EXCEPTION 'the search privilege applies to index keys only'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Grant search on the index key of the column''s index.';
        END IF;
    END IF;
    RAISE EXCEPTION 'invalid key privilege "%"', privilege
        USING ERRCODE = 'invalid_parameter_value', HINT = 'Use encrypt, decrypt, search or all.';
END
$$;
COMMENT ON FUNCTION envelope._key_privilege_list(text, text) IS
  'Internal: the stored privileges that a granted privilege stands for on a key of that purpose';
REVOKE ALL ON FUNCTION envelope._key_privilege_list(text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION envelope.grant_key(key_name text, grantee regrole, privilege text)
    RETURNS void
    LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    key_purpose text;
    privileges text[];
    role_name name;
BEGIN
    SELECT k.purpose INTO key_purpose FROM envelope.keyring k
        WHERE k.name = grant_key.key_name LIMIT 1;
    IF key_purpose IS NULL THEN
        RAISE EXCEPTION 'key "%" does not exist', grant_key.key_name
            USING ERRCODE = 'undefined_object';
    END IF;
    privileges := envelope._key_privilege_list(grant_key.privilege, key_purpose);
    SELECT r.rolname INTO STRICT role_name FROM pg_catalog.pg_roles r
        WHERE r.oid OPERATOR(pg_catalog.=) grant_key.grantee;
    INSERT INTO envelope.key_privileges (key_name, grantee, privilege, granted_by)
        SELECT grant_key.key_name, role_name, p, session_user FROM unnest(privileges) p
        ON CONFLICT DO NOTHING;
    INSERT INTO envelope.key_events (action, key_name, grantee, privilege)
        VALUES ('grant', grant_key.key_name, role_name, grant_key.privilege);
    PERFORM envelope._audit('grant', grant_key.key_name, NULL, 'ok', role_name,
                            grant_key.privilege);
END
$$;
COMMENT ON FUNCTION envelope.grant_key(text, regrole, text) IS
  'Grants a key privilege (data keys: encrypt, decrypt or all; index keys: search or all) on every version of a key to a role; members of the role get it too';
COMMENT ON FUNCTION envelope.revoke_key(text, regrole, text) IS
  'Revokes encrypt, decrypt, search or all on a key from a role; sessions see the change at once';
COMMENT ON FUNCTION envelope.has_key_privilege(regrole, text, text) IS
  'Whether a role may use a key: privilege is encrypt, decrypt, all (both) or search (superusers always may)';

CREATE FUNCTION envelope.create_index_key(name text) RETURNS uuid
    LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    new_id uuid := gen_random_uuid();
    w record;
BEGIN
    IF create_index_key.name = '' OR length(create_index_key.name) >= 64 THEN
        RAISE EXCEPTION 'invalid key name "%"', create_index_key.name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Key names are 1 to 63 characters long.';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('pg_envelope.key:' || create_index_key.name));
    IF EXISTS (SELECT 1 FROM envelope.keyring k WHERE k.name = create_index_key.name) THEN
        RAISE EXCEPTION 'key "%" already exists', create_index_key.name
            USING ERRCODE = 'duplicate_object';
    END IF;
    -- The keeper makes 32 random bytes in the HSM and wraps them under the KEK, as for a DEK.
    SELECT * INTO w FROM envelope._new_wrapped_dek(new_id);
    INSERT INTO envelope.keyring (id, name, version, state, kek_label, wrapped_dek, purpose)
        VALUES (new_id, create_index_key.name, 1, 'active', w.kek_label, w.wrapped_dek, 'index');
    INSERT INTO envelope.key_events (action, key_name, key_version, key_id)
        VALUES ('create_index_key', create_index_key.name, 1, new_id);
    PERFORM envelope._audit('create_index_key', create_index_key.name, 1, 'ok');
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION envelope.create_index_key(text) IS
  'Creates a named index key (version 1), wrapped by the HSM KEK, that computes the search tags of blind indexes and nothing else; returns its id';
REVOKE ALL ON FUNCTION envelope.create_index_key(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION envelope.rotate_key(name text) RETURNS uuid
    LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    new_id uuid := gen_random_uuid();
    next_version integer;
    w record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('pg_envelope.key:' || rotate_key.name));
    SELECT max(k.version) + 1 INTO next_version FROM envelope.keyring k
        WHERE k.name = rotate_key.name;
    IF next_version IS NULL THEN
        RAISE EXCEPTION 'key "%" does not exist', rotate_key.name
            USING ERRCODE = 'undefined_object';
    END IF;
    IF EXISTS (SELECT 1 FROM envelope.keyring k
               WHERE k.name = rotate_key.name AND k.purpose = 'index') THEN
        RAISE EXCEPTION 'key "%" is an index key', rotate_key.name
            USING ERRCODE = 'wrong_object_type',
                  DETAIL = 'Indexes keep tags made under the key version they were built with.',
                  HINT = 'Use envelope.rotate_index_key(), which rebuilds the indexes in the same transaction.';
    END IF;
    SELECT * INTO w FROM envelope._new_wrapped_dek(new_id);
    UPDATE envelope.keyring k SET state = 'decrypt_only', state_changed_at = now()
        WHERE k.name = rotate_key.name AND k.state = 'active';
    INSERT INTO envelope.keyring (id, name, version, state, kek_label, wrapped_dek)
        VALUES (new_id, rotate_key.name, next_version, 'active', w.kek_label, w.wrapped_dek);
    INSERT INTO envelope.key_events (action, key_name, key_version, key_id)
        VALUES ('rotate', rotate_key.name, next_version, new_id);
    PERFORM envelope._audit('rotate', rotate_key.name, next_version, 'ok');
    RETURN new_id;
END
$$;

-- Indexes of this database whose tags an index key computes: blind_ops indexes naming it in
-- their key option, and expression indexes calling envelope.blind_tag() with its name (found
-- in the index definition; an index naming a longer key that ends the same way is rebuilt
-- too, which is harmless).
CREATE FUNCTION envelope.indexes_using_key(key_name text) RETURNS SETOF regclass
    LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
    SELECT i.indexrelid::regclass FROM pg_index i
    WHERE EXISTS (
            SELECT 1 FROM pg_attribute a
            WHERE a.attrelid = i.indexrelid AND a.attoptions IS NOT NULL
              AND ('key=' || key_name) = ANY (a.attoptions))
          AND EXISTS (
            SELECT 1 FROM unnest(i.indclass::oid[]) c(oid) JOIN pg_opclass o ON o.oid = c.oid
            WHERE o.opcname = 'blind_ops'
              AND o.opcnamespace = 'envelope'::regnamespace)
       OR EXISTS (
            SELECT 1 FROM pg_depend d JOIN pg_proc p ON p.oid = d.refobjid
            WHERE d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid
              AND d.refclassid = 'pg_proc'::regclass AND p.proname = 'blind_tag'
              AND p.pronamespace = 'envelope'::regnamespace)
          AND strpos(pg_get_indexdef(i.indexrelid), quote_literal(key_name) || '::text') > 0
    ORDER BY 1
$$;
COMMENT ON FUNCTION envelope.indexes_using_key(text) IS
  'Indexes whose tags the index key computes (blind_ops indexes and envelope.blind_tag() expression indexes)';

CREATE FUNCTION envelope.rotate_index_key(name text) RETURNS uuid
    LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    new_id uuid := gen_random_uuid();
    next_version integer;
    w record;
    idx regclass;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('pg_envelope.key:' || rotate_index_key.name));
    SELECT max(k.version) + 1 INTO next_version FROM envelope.keyring k
        WHERE k.name = rotate_index_key.name AND k.purpose = 'index';
    IF next_version IS NULL THEN
        RAISE EXCEPTION 'index key "%" does not exist', rotate_index_key.name
            USING ERRCODE = 'undefined_object';
    END IF;
    SELECT * INTO w FROM envelope._new_wrapped_dek(new_id);
    UPDATE envelope.keyring k SET state = 'decrypt_only', state_changed_at = now()
        WHERE k.name = rotate_index_key.name AND k.state = 'active';
    INSERT INTO envelope.keyring (id, name, version, state, kek_label, wrapped_dek, purpose)
        VALUES (new_id, rotate_index_key.name, next_version, 'active', w.kek_label,
                w.wrapped_dek, 'index');
    -- Same transaction: no session ever searches an index with a key version it was not
    -- built with.
    FOR idx IN SELECT * FROM envelope.indexes_using_key(rotate_index_key.name) LOOP
        EXECUTE format('REINDEX INDEX %s', idx);
    END LOOP;
    INSERT INTO envelope.key_events (action, key_name, key_version, key_id)
        VALUES ('rotate_index_key', rotate_index_key.name, next_version, new_id);
    PERFORM envelope._audit('rotate_index_key', rotate_index_key.name, next_version, 'ok');
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION envelope.rotate_index_key(text) IS
  'Adds a new version of an index key and rebuilds every index that uses the key (REINDEX) in the same transaction; the old version becomes decrypt_only and can then be destroyed';
REVOKE ALL ON FUNCTION envelope.rotate_index_key(text) FROM PUBLIC;

CREATE OR REPLACE VIEW envelope.keys AS
    SELECT k.name, k.id, k.version, k.state, k.kek_label, k.created_at, k.state_changed_at,
           r.key_check_value, envelope._encryptions(k.id) AS encryptions, r.problem, k.purpose
    FROM envelope.keyring k
    LEFT JOIN LATERAL envelope._key_report(k.id) r ON k.state <> 'destroyed'
    ORDER BY k.name, k.version;
COMMENT ON VIEW envelope.keys IS
  'Keys with state, KEK label, public key check value, encryptions so far, load problems and purpose (data or index)';

GRANT EXECUTE ON FUNCTION envelope.create_index_key(text), envelope.rotate_index_key(text)
    TO envelope_admin;

-- encrypted_text = text: the plaintext equals the text. Answered by an envelope.blind_ops
-- index of the column when there is one (planner support), else by opening every value.
CREATE FUNCTION envelope.blind_support(internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'envelope_blind_support' LANGUAGE C STRICT;
COMMENT ON FUNCTION envelope.blind_support(internal) IS
  'Internal: planner support that answers = and envelope.matches() through an envelope.blind_ops index';

CREATE FUNCTION envelope.encrypted_text_eq_text(@extschema@.encrypted_text, text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'envelope_encrypted_text_eq_text'
    LANGUAGE C STRICT STABLE PARALLEL SAFE COST 100 SUPPORT envelope.blind_support;
COMMENT ON FUNCTION envelope.encrypted_text_eq_text(@extschema@.encrypted_text, text) IS
  'encrypted_text = text: the value opens to exactly this text (decrypt privilege)';
CREATE FUNCTION envelope.encrypted_text_ne_text(@extschema@.encrypted_text, text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'envelope_encrypted_text_ne_text'
    LANGUAGE C STRICT STABLE PARALLEL SAFE COST 100;
COMMENT ON FUNCTION envelope.encrypted_text_ne_text(@extschema@.encrypted_text, text) IS
  'encrypted_text <> text: the value opens to another text (decrypt privilege)';
CREATE OPERATOR @extschema@.= (
    LEFTARG = @extschema@.encrypted_text, RIGHTARG = text,
    FUNCTION = envelope.encrypted_text_eq_text,
    NEGATOR = OPERATOR(@extschema@.<>), RESTRICT = eqsel, JOIN = eqjoinsel);
COMMENT ON OPERATOR @extschema@.= (@extschema@.encrypted_text, text) IS
  'The encrypted value equals this plaintext; uses an envelope.blind_ops index of the column';
CREATE OPERATOR @extschema@.<> (
    LEFTARG = @extschema@.encrypted_text, RIGHTARG = text,
    FUNCTION = envelope.encrypted_text_ne_text,
    NEGATOR = OPERATOR(@extschema@.=), RESTRICT = neqsel, JOIN = neqjoinsel);
COMMENT ON OPERATOR @extschema@.<> (@extschema@.encrypted_text, text) IS
  'The encrypted value differs from this plaintext';

CREATE FUNCTION envelope.matches(value @extschema@.encrypted_text, probe text,
                                 normalization text DEFAULT 'none') RETURNS boolean
    AS 'MODULE_PATHNAME', 'envelope_matches'
    LANGUAGE C STRICT STABLE PARALLEL SAFE COST 100 SUPPORT envelope.blind_support;
COMMENT ON FUNCTION envelope.matches(@extschema@.encrypted_text, text, text) IS
  'The encrypted value equals probe once both are normalised (none, nfkc, casefold); uses an envelope.blind_ops index with the same normalization';

-- What a query compares an index with: the tag of a plaintext under an index key version.
CREATE TYPE envelope.tag_probe;
CREATE FUNCTION envelope.tag_probe_in(cstring) RETURNS envelope.tag_probe
    AS 'MODULE_PATHNAME', 'envelope_tag_probe_in' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION envelope.tag_probe_in(cstring) IS
  'tag_probe input: refused (probes are made by envelope.tag_probe())';
CREATE FUNCTION envelope.tag_probe_out(envelope.tag_probe) RETURNS cstring
    AS 'MODULE_PATHNAME', 'envelope_tag_probe_out' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION envelope.tag_probe_out(envelope.tag_probe) IS
  'tag_probe output: key version id/normalization/bits/tag (hex)';
CREATE TYPE envelope.tag_probe (
    INPUT = envelope.tag_probe_in, OUTPUT = envelope.tag_probe_out,
    INTERNALLENGTH = VARIABLE, STORAGE = plain);
COMMENT ON TYPE envelope.tag_probe IS
  'The HMAC tag of a plaintext under an index key version, as compared with a blind index';

CREATE FUNCTION envelope.tag_probe(value text, key_name text, normalization text, bits integer)
    RETURNS envelope.tag_probe
    AS 'MODULE_PATHNAME', 'envelope_tag_probe' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION envelope.tag_probe(text, text, text, integer) IS
  'Tag of a plaintext under the active version of an index key (search privilege); the planner writes it for = and matches()';
CREATE FUNCTION envelope.tag_probe_hash(envelope.tag_probe) RETURNS integer
    AS 'MODULE_PATHNAME', 'envelope_tag_probe_hash' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION envelope.tag_probe_hash(envelope.tag_probe) IS
  'Internal: the hash a blind index compares, from a probe';
CREATE FUNCTION envelope.encrypted_text_eq_probe(@extschema@.encrypted_text, envelope.tag_probe)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'envelope_encrypted_text_eq_probe'
    LANGUAGE C STRICT STABLE PARALLEL SAFE COST 100;
COMMENT ON FUNCTION envelope.encrypted_text_eq_probe(@extschema@.encrypted_text, envelope.tag_probe) IS
  'The value has the full tag of the probe (search privilege): the blind index condition';
CREATE OPERATOR envelope.= (
    LEFTARG = @extschema@.encrypted_text, RIGHTARG = envelope.tag_probe,
    FUNCTION = envelope.encrypted_text_eq_probe, RESTRICT = eqsel, JOIN = eqjoinsel);
COMMENT ON OPERATOR envelope.= (@extschema@.encrypted_text, envelope.tag_probe) IS
  'The value has the probe''s tag: the condition a blind index answers';

CREATE FUNCTION envelope.blind_hash(@extschema@.encrypted_text) RETURNS integer
    AS 'MODULE_PATHNAME', 'envelope_blind_hash' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION envelope.blind_hash(@extschema@.encrypted_text) IS
  'Internal: the truncated tag a blind index keeps for a value (only inside an index)';
CREATE FUNCTION envelope.blind_options(internal) RETURNS void
    AS 'MODULE_PATHNAME', 'envelope_blind_options' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION envelope.blind_options(internal) IS
  'Internal: the options of envelope.blind_ops (key, bits, normalization)';

CREATE OPERATOR FAMILY envelope.blind_ops USING hash;
CREATE OPERATOR CLASS envelope.blind_ops FOR TYPE @extschema@.encrypted_text
    USING hash FAMILY envelope.blind_ops AS
    FUNCTION 1 envelope.blind_hash(@extschema@.encrypted_text),
    FUNCTION 3 envelope.blind_options(internal);
ALTER OPERATOR FAMILY envelope.blind_ops USING hash ADD
    OPERATOR 1 envelope.= (@extschema@.encrypted_text, envelope.tag_probe),
    FUNCTION 1 (envelope.tag_probe, envelope.tag_probe) envelope.tag_probe_hash(envelope.tag_probe);
COMMENT ON OPERATOR CLASS envelope.blind_ops USING hash IS
  'Blind index of an encrypted_text column: keeps bits (1-32) of an HMAC tag of each normalised plaintext under the index key named in key';

-- Full-length tags for unique (btree) indexes and for lookups through them.
CREATE FUNCTION envelope.blind_tag(value @extschema@.encrypted_text, key_name text,
                                   normalization text DEFAULT 'none') RETURNS bytea
    AS 'MODULE_PATHNAME', 'envelope_blind_tag_value' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION envelope.blind_tag(@extschema@.encrypted_text, text, text) IS
  'HMAC-SHA-256 tag (32 bytes) of a value''s normalised plaintext under the active version of an index key (search privilege); IMMUTABLE for unique indexes: rotate the key with envelope.rotate_index_key()';
CREATE FUNCTION envelope.blind_tag(value text, key_name text, normalization text DEFAULT 'none')
    RETURNS bytea
    AS 'MODULE_PATHNAME', 'envelope_blind_tag_text' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION envelope.blind_tag(text, text, text) IS
  'HMAC-SHA-256 tag (32 bytes) of a normalised plaintext under the active version of an index key (search privilege)';

-------------------------------------------------------------------------------
-- End of: Searching encrypted columns (issue 12)
-------------------------------------------------------------------------------

-------------------------------------------------------------------------------
-- Automatic rotation before the nonce budget (issue 13; README "Configuration",
-- envelope.auto_rotate_at): a session whose seal takes a data key's count to
-- envelope.auto_rotate_at starts a short-lived worker in its database that calls this.
-------------------------------------------------------------------------------
-- Rotates the key of version old_id if that version is still the active one (so concurrent or
-- repeated requests rotate once), records it in key_events, returns the new version's id (NULL
-- when nothing was done).
CREATE FUNCTION envelope._auto_rotate(old_id uuid, encryptions bigint) RETURNS uuid
    LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    k record;
    new_id uuid;
BEGIN
    SELECT r.name, r.version, r.state INTO k FROM envelope.keyring r WHERE r.id = old_id;
    IF NOT FOUND OR k.state <> 'active' THEN
        RETURN NULL;
    END IF;
    -- rotate_key serialises rotations of one name (advisory lock) and re-reads the state.
    PERFORM pg_advisory_xact_lock(hashtext('pg_envelope.key:' || k.name));
    IF (SELECT r.state FROM envelope.keyring r WHERE r.id = old_id) <> 'active' THEN
        RETURN NULL;
    END IF;
    new_id := envelope.rotate_key(k.name);
    INSERT INTO envelope.key_events (action, key_name, key_version, key_id, privilege)
        VALUES ('auto_rotate', k.name, k.version, old_id, encryptions::text || ' encryptions');
    RETURN new_id;
END
$$;
REVOKE ALL ON FUNCTION envelope._auto_rotate(uuid, bigint) FROM PUBLIC;
COMMENT ON FUNCTION envelope._auto_rotate(uuid, bigint) IS
  'Internal: rotates a data key whose active version reached envelope.auto_rotate_at (once)';

-- envelope.keys gains auto_rotated_at: when a version was rotated away automatically.
CREATE OR REPLACE VIEW envelope.keys AS
    SELECT k.name, k.id, k.version, k.state, k.kek_label, k.created_at, k.state_changed_at,
           r.key_check_value, envelope._encryptions(k.id) AS encryptions, r.problem, k.purpose,
           (SELECT max(e.at) FROM envelope.key_events e
             WHERE e.action = 'auto_rotate' AND e.key_id = k.id) AS auto_rotated_at
    FROM envelope.keyring k
    LEFT JOIN LATERAL envelope._key_report(k.id) r ON k.state <> 'destroyed'
    ORDER BY k.name, k.version;
COMMENT ON VIEW envelope.keys IS
  'Keys with state, KEK label, public key check value, encryptions so far, load problems, purpose (data or index) and when a version was rotated away automatically';
-------------------------------------------------------------------------------
-- End of automatic rotation (issue 13).
-------------------------------------------------------------------------------

-------------------------------------------------------------------------------
-- KEK rotation (issue 13; README "Rotating the KEK"): every keyring row records the KEK that
-- wrapped it (kek_label, since 0.1.0); the keeper unwraps each DEK with that KEK, and
-- rewrap_keys() moves rows to the KEK the keeper is connected to (envelope.kek_label), inside
-- the token, without touching any table but the keyring.
-------------------------------------------------------------------------------
CREATE FUNCTION envelope._rewrap(id uuid, wrapped bytea, kek_label text,
    OUT wrapped_dek bytea, OUT kek_label text)
    AS 'MODULE_PATHNAME', 'envelope_rewrap' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION envelope._rewrap(uuid, bytea, text) FROM PUBLIC;
COMMENT ON FUNCTION envelope._rewrap(uuid, bytea, text) IS
  'Internal: the keeper wraps a DEK again under the KEK it is connected to';

-- Keys per KEK label in this database (destroyed versions hold no wrapped key).
CREATE VIEW envelope.kek_usage AS
    SELECT k.kek_label, count(*) AS keys, min(k.created_at) AS oldest_key
    FROM envelope.keyring k
    WHERE k.state <> 'destroyed' AND k.wrapped_dek IS NOT NULL
    GROUP BY k.kek_label
    ORDER BY k.kek_label;
COMMENT ON VIEW envelope.kek_usage IS
  'Keys of this database per KEK label (what a KEK rotation still has to move)';
GRANT SELECT ON envelope.kek_usage TO envelope_admin;

-- One batch: re-wraps up to batch keys not under envelope.kek_label (rows locked by others are
-- skipped, so concurrent runs share the work). Returns how many it moved.
CREATE FUNCTION envelope._rewrap_batch(batch integer) RETURNS integer
    LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    target text := current_setting('envelope.kek_label');
    r record;
    w record;
    n integer := 0;
BEGIN
    FOR r IN SELECT k.id, k.wrapped_dek, k.kek_label FROM envelope.keyring k
              WHERE k.state <> 'destroyed' AND k.wrapped_dek IS NOT NULL AND k.kek_label <> target
              ORDER BY k.id LIMIT batch FOR UPDATE SKIP LOCKED LOOP
        SELECT * INTO w FROM envelope._rewrap(r.id, r.wrapped_dek, r.kek_label);
        IF w.kek_label <> target THEN
            RAISE EXCEPTION 'the keeper wraps under KEK "%", but envelope.kek_label is "%"',
                w.kek_label, target
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Reload the configuration (SELECT pg_reload_conf()) and wait for the keeper to be ready.';
        END IF;
        UPDATE envelope.keyring k SET wrapped_dek = w.wrapped_dek, kek_label = w.kek_label
         WHERE k.id = r.id;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION envelope._rewrap_batch(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION envelope._rewrap_batch(integer) TO envelope_admin;

-- Re-wraps every key of this database under envelope.kek_label, committing after every batch
-- (resumable: a crash or cancel leaves each row wrapped under one KEK or the other, both
-- usable; CALL again to finish). Progress: envelope.kek_usage. pg_envelope_rewrap runs it in
-- every database.
CREATE PROCEDURE envelope.rewrap_keys(batch integer DEFAULT 500)
    LANGUAGE plpgsql AS $$
DECLARE
    moved integer;
    total bigint := 0;
BEGIN
    IF batch < 1 THEN
        RAISE EXCEPTION 'batch must be positive' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOOP
        moved := envelope._rewrap_batch(batch);
        COMMIT;
        total := total + moved;
        EXIT WHEN moved = 0;
    END LOOP;
    RAISE NOTICE 'pg_envelope: % key(s) of database % re-wrapped under KEK "%"', total,
        pg_catalog.current_database(), pg_catalog.current_setting('envelope.kek_label');
END
$$;
REVOKE ALL ON PROCEDURE envelope.rewrap_keys(integer) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE envelope.rewrap_keys(integer) TO envelope_admin;
COMMENT ON PROCEDURE envelope.rewrap_keys(integer) IS
  'KEK rotation: wraps every key of this database again under envelope.kek_label, in committed batches (superuser, envelope_admin)';
-------------------------------------------------------------------------------
-- End of KEK rotation (issue 13).
-------------------------------------------------------------------------------
