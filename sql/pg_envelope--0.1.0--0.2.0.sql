-- pg_envelope 0.1.0 -> 0.2.0: per-key privileges (encrypt, decrypt) checked in C on every path
-- that seals or opens a value, and the envelope_admin role for key management.
-- After this update a role that is not a superuser reads no plaintext until granted
-- (README, "Key privileges"); nothing is granted to PUBLIC.
\echo Use "ALTER EXTENSION pg_envelope UPDATE TO '0.2.0'" to load this file. \quit

-- A cluster-wide role; created once, kept when the extension is dropped.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'envelope_admin') THEN
        CREATE ROLE envelope_admin NOLOGIN;
    END IF;
END
$$;

CREATE TABLE envelope.key_privileges (
    key_name   text NOT NULL CHECK (key_name <> '' AND length(key_name) < 64),
    grantee    name NOT NULL,
    privilege  text NOT NULL CHECK (privilege IN ('encrypt', 'decrypt')),
    granted_by name NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (key_name, grantee, privilege)
);
COMMENT ON TABLE envelope.key_privileges IS
  'Key privileges: which role (by name) may seal (encrypt) or open (decrypt) values under which key; read through envelope.key_grants';
REVOKE ALL ON envelope.key_privileges FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('envelope.key_privileges', '');
-- Every session drops its cached privilege decisions when grants change, in replica mode too.
CREATE TRIGGER key_privileges_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON envelope.key_privileges FOR EACH STATEMENT EXECUTE FUNCTION envelope._keyring_changed();
ALTER TABLE envelope.key_privileges ENABLE ALWAYS TRIGGER key_privileges_changed;

-- 'encrypt', 'decrypt' or 'all' as the list of stored privileges; anything else is an error.
CREATE FUNCTION envelope._key_privilege_list(privilege text) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    CASE privilege
        WHEN 'encrypt' THEN RETURN ARRAY['encrypt'];
        WHEN 'decrypt' THEN RETURN ARRAY['decrypt'];
        WHEN 'all' THEN RETURN ARRAY['encrypt', 'decrypt'];
        ELSE RAISE EXCEPTION 'invalid key privilege "%"', privilege
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use encrypt, decrypt or all.';
    END CASE;
END
$$;
COMMENT ON FUNCTION envelope._key_privilege_list(text) IS
  'Internal: the stored privileges that encrypt, decrypt or all stands for';
REVOKE ALL ON FUNCTION envelope._key_privilege_list(text) FROM PUBLIC;

CREATE FUNCTION envelope.grant_key(key_name text, grantee regrole, privilege text)
    RETURNS void
    LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    privileges text[] := envelope._key_privilege_list(grant_key.privilege);
    role_name name;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM envelope.keyring k WHERE k.name = grant_key.key_name) THEN
        RAISE EXCEPTION 'key "%" does not exist', grant_key.key_name
            USING ERRCODE = 'undefined_object';
    END IF;
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
  'Grants encrypt, decrypt or all on a key (every version) to a role; members of the role get it too';
REVOKE ALL ON FUNCTION envelope.grant_key(text, regrole, text) FROM PUBLIC;

CREATE FUNCTION envelope.revoke_key(key_name text, grantee regrole, privilege text)
    RETURNS void
    LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    privileges text[] := envelope._key_privilege_list(revoke_key.privilege);
    role_name name;
BEGIN
    SELECT r.rolname INTO STRICT role_name FROM pg_catalog.pg_roles r
        WHERE r.oid OPERATOR(pg_catalog.=) revoke_key.grantee;
    DELETE FROM envelope.key_privileges g
        WHERE g.key_name OPERATOR(pg_catalog.=) revoke_key.key_name
          AND g.grantee OPERATOR(pg_catalog.=) role_name
          AND g.privilege OPERATOR(pg_catalog.=) ANY (privileges);
    INSERT INTO envelope.key_events (action, key_name, grantee, privilege)
        VALUES ('revoke', revoke_key.key_name, role_name, revoke_key.privilege);
    PERFORM envelope._audit('revoke', revoke_key.key_name, NULL, 'ok', role_name,
                            revoke_key.privilege);
END
$$;
COMMENT ON FUNCTION envelope.revoke_key(text, regrole, text) IS
  'Revokes encrypt, decrypt or all on a key from a role; sessions see the change at once';
REVOKE ALL ON FUNCTION envelope.revoke_key(text, regrole, text) FROM PUBLIC;

CREATE FUNCTION envelope.has_key_privilege(role regrole, key_name text, privilege text)
    RETURNS boolean
    AS 'MODULE_PATHNAME', 'envelope_has_key_privilege' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION envelope.has_key_privilege(regrole, text, text) IS
  'Whether a role may use a key: privilege is encrypt, decrypt or all (superusers always may)';

CREATE VIEW envelope.key_grants AS
    SELECT g.key_name, g.grantee, g.privilege, g.granted_by, g.granted_at
    FROM envelope.key_privileges g
    ORDER BY g.key_name, g.grantee, g.privilege;
COMMENT ON VIEW envelope.key_grants IS
  'Key privileges granted: key, grantee role, privilege (encrypt or decrypt), granted by (session user), when';
REVOKE ALL ON envelope.key_grants FROM PUBLIC;

-- Shredding and cache invalidation must also work for sessions in replica mode (logical
-- replication apply workers), which skip ordinary triggers.
ALTER TABLE envelope.keyring ENABLE ALWAYS TRIGGER keyring_changed;
ALTER TABLE envelope.keyring ENABLE ALWAYS TRIGGER keyring_row_changed;

-- Shredding holds: key states only move forward (active -> decrypt_only -> destroyed), a row
-- keeps its id, name and version, and rows are never deleted or truncated (DROP EXTENSION
-- removes the keyring whole). Enforced in replica mode too.
CREATE FUNCTION envelope._keyring_guard() RETURNS trigger
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
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION envelope._keyring_guard() IS
  'Internal: key states only move forward; keyring rows are never deleted or truncated';
REVOKE ALL ON FUNCTION envelope._keyring_guard() FROM PUBLIC;
CREATE TRIGGER keyring_guard_rows BEFORE UPDATE OR DELETE ON envelope.keyring
    FOR EACH ROW EXECUTE FUNCTION envelope._keyring_guard();
CREATE TRIGGER keyring_guard_truncate BEFORE TRUNCATE ON envelope.keyring
    FOR EACH STATEMENT EXECUTE FUNCTION envelope._keyring_guard();
ALTER TABLE envelope.keyring ENABLE ALWAYS TRIGGER keyring_guard_rows;
ALTER TABLE envelope.keyring ENABLE ALWAYS TRIGGER keyring_guard_truncate;

CREATE FUNCTION envelope.verify(tbl regclass, col name, context_expr text DEFAULT NULL,
    OUT key_name text, OUT key_version integer, OUT key_id uuid, OUT opened bigint,
    OUT unchecked bigint, OUT destroyed bigint, OUT failed bigint)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'envelope_verify' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION envelope.verify(regclass, name, text) IS
  'Opens every value of an encrypted_text or bytea column and counts, per key version, values that open, cannot be checked without a context, are under a destroyed key, or fail (context_expr: SQL over the row giving its context)';

COMMENT ON FUNCTION envelope.status() IS
  'Keeper state, HSM (module, token, KEK, last error; details for superusers, envelope_admin, pg_monitor), keys cached in this database and in all, cache capacity, keys the keeper put in the cache since it started (keys_loaded) and those it could not (load_failures), and its start-up load (databases_loaded, last_load_ms)';

-- Key management by delegation: envelope_admin members manage keys and their privileges.
GRANT USAGE ON SCHEMA envelope TO envelope_admin;
GRANT EXECUTE ON FUNCTION envelope.create_key(text), envelope.rotate_key(text),
    envelope.destroy_key(text, integer), envelope.grant_key(text, regrole, text),
    envelope.revoke_key(text, regrole, text), envelope._encryptions(uuid),
    envelope._key_report(uuid) TO envelope_admin;
GRANT SELECT ON envelope.keys, envelope.key_grants TO envelope_admin;


-------------------------------------------------------------------------------
-- Auditing (README, "Auditing"): key management events in a table that is dumped and
-- replicated, structured audit log lines (envelope.audit), per-role key statistics.
-------------------------------------------------------------------------------
-- One row per key management event. Actions today: create, rotate, destroy, grant, revoke;
-- the column is free text so later events (KEK rotation, re-encryption start and finish) are
-- new values, not a schema change. role is the session user who ran the function. No unique
-- constraint on id: restoring a dump's history into a database with events of its own must
-- never fail on a clash.
CREATE TABLE envelope.key_events (
    id          bigserial NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    action      text NOT NULL CHECK (action ~ '^[a-z_]+$'),
    key_name    text NOT NULL,
    key_version integer,
    key_id      uuid,
    role        name NOT NULL DEFAULT session_user,
    grantee     name,
    privilege   text
);
CREATE INDEX key_events_key_idx ON envelope.key_events (key_name, at);
COMMENT ON TABLE envelope.key_events IS
  'Key management history: who created, rotated, destroyed, granted or revoked which key, when (dumped and replicated)';
REVOKE ALL ON envelope.key_events FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('envelope.key_events', '');
SELECT pg_catalog.pg_extension_config_dump('envelope.key_events_id_seq', '');

CREATE FUNCTION envelope._audit(action text, key_name text, version integer, outcome text,
                                grantee text DEFAULT NULL, privilege text DEFAULT NULL)
    RETURNS void
    AS 'MODULE_PATHNAME', 'envelope_audit' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION envelope._audit(text, text, integer, text, text, text) IS
  'Internal: writes one key management audit line (as the session user) when envelope.audit allows it';
REVOKE ALL ON FUNCTION envelope._audit(text, text, integer, text, text, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION envelope.create_key(name text) RETURNS uuid
    LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    new_id uuid := gen_random_uuid();
    w record;
BEGIN
    -- Checked here, before a DEK exists, so no error text can ever echo a wrapped key.
    IF create_key.name = '' OR length(create_key.name) >= 64 THEN
        RAISE EXCEPTION 'invalid key name "%"', create_key.name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Key names are 1 to 63 characters long.';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('pg_envelope.key:' || create_key.name));
    IF EXISTS (SELECT 1 FROM envelope.keyring k WHERE k.name = create_key.name) THEN
        RAISE EXCEPTION 'key "%" already exists', create_key.name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Use envelope.rotate_key() to add a new version of an existing key.';
    END IF;
    SELECT * INTO w FROM envelope._new_wrapped_dek(new_id);
    INSERT INTO envelope.keyring (id, name, version, state, kek_label, wrapped_dek)
        VALUES (new_id, create_key.name, 1, 'active', w.kek_label, w.wrapped_dek);
    INSERT INTO envelope.key_events (action, key_name, key_version, key_id)
        VALUES ('create', create_key.name, 1, new_id);
    PERFORM envelope._audit('create', create_key.name, 1, 'ok');
    RETURN new_id;
END
$$;

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

CREATE OR REPLACE FUNCTION envelope.destroy_key(name text, version integer) RETURNS uuid
    LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    destroyed_id uuid;
BEGIN
    UPDATE envelope.keyring k
        SET state = 'destroyed', wrapped_dek = NULL, state_changed_at = now()
        WHERE k.name = destroy_key.name AND k.version = destroy_key.version
          AND k.state <> 'destroyed'
        RETURNING k.id INTO destroyed_id;
    IF destroyed_id IS NULL THEN
        RAISE EXCEPTION 'key "%" version % does not exist or is already destroyed',
            destroy_key.name, destroy_key.version
            USING ERRCODE = 'undefined_object';
    END IF;
    INSERT INTO envelope.key_events (action, key_name, key_version, key_id)
        VALUES ('destroy', destroy_key.name, destroy_key.version, destroyed_id);
    PERFORM envelope._audit('destroy', destroy_key.name, destroy_key.version, 'ok');
    RETURN destroyed_id;
END
$$;

-- Per (database, role, key version) counts kept in shared memory (envelope.stats_max rows,
-- least recently used dropped first), summed per session and added at transaction end.
CREATE FUNCTION envelope._key_stats(OUT dbid oid, OUT userid oid, OUT key_id uuid,
    OUT sealed bigint, OUT opened bigint, OUT denied bigint, OUT first_use timestamptz,
    OUT last_use timestamptz)
    RETURNS SETOF record
    AS 'MODULE_PATHNAME', 'envelope_key_stats' LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION envelope._key_stats() IS
  'Internal: key use counts per database, role and key version (superusers, envelope_admin, pg_monitor)';
REVOKE ALL ON FUNCTION envelope._key_stats() FROM PUBLIC;

-- Key names and versions are known for this database's keys only (other databases' rows show
-- their key_id).
CREATE VIEW envelope.key_stats AS
    SELECT s.dbid, d.datname AS database, s.userid, r.rolname AS role, k.name AS key_name,
           k.version AS key_version, s.key_id, s.sealed, s.opened, s.denied, s.first_use,
           s.last_use
    FROM envelope._key_stats() s
    LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.dbid
    LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) s.userid
    LEFT JOIN envelope.keyring k ON k.id OPERATOR(pg_catalog.=) s.key_id
         AND d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database();
COMMENT ON VIEW envelope.key_stats IS
  'Values sealed and opened, and privilege denials, per database, role and key version, with first and last use';
REVOKE ALL ON envelope.key_stats FROM PUBLIC;

CREATE FUNCTION envelope.key_stats_reset() RETURNS bigint
    AS 'MODULE_PATHNAME', 'envelope_key_stats_reset' LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION envelope.key_stats_reset() IS
  'Forgets every key statistic (all databases); returns the rows dropped (superuser, envelope_admin)';
REVOKE ALL ON FUNCTION envelope.key_stats_reset() FROM PUBLIC;

GRANT SELECT ON envelope.key_stats, envelope.key_events TO envelope_admin, pg_monitor;
GRANT EXECUTE ON FUNCTION envelope._key_stats() TO envelope_admin, pg_monitor;
GRANT EXECUTE ON FUNCTION envelope.key_stats_reset() TO envelope_admin;
