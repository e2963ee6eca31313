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
BEGIN
    DELETE FROM envelope.key_privileges g
        WHERE g.key_name OPERATOR(pg_catalog.=) revoke_key.key_name
          AND g.grantee OPERATOR(pg_catalog.=) (SELECT r.rolname FROM pg_catalog.pg_roles r
                                               WHERE r.oid OPERATOR(pg_catalog.=) revoke_key.grantee)
          AND g.privilege OPERATOR(pg_catalog.=) ANY (privileges);
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

-- status(): columns named so they cannot be misread. The start-up load's figures say they are
-- about the start-up load (a key created later is cached but was never "loaded" at start-up),
-- and the cache counts say which database they count.
DROP FUNCTION envelope.status();
CREATE FUNCTION envelope.status(
    OUT keeper_state text, OUT keeper_pid integer, OUT pkcs11_module text,
    OUT token_label text, OUT kek_label text, OUT kek_found boolean, OUT last_error text,
    OUT last_error_at timestamptz, OUT next_retry_at timestamptz, OUT keys_cached_here integer,
    OUT keys_cached_total integer, OUT cache_capacity integer, OUT startup_databases integer,
    OUT startup_keys_loaded bigint, OUT startup_load_failures bigint,
    OUT startup_load_ms double precision)
    AS 'MODULE_PATHNAME', 'envelope_status' LANGUAGE C STRICT VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION envelope.status() IS
  'Keeper state, HSM (module, token, KEK, last error; details for superusers, envelope_admin, pg_monitor), keys cached in this database and in all, cache capacity, and the start-up load (databases, keys, failures, ms)';

-- Key management by delegation: envelope_admin members manage keys and their privileges.
GRANT USAGE ON SCHEMA envelope TO envelope_admin;
GRANT EXECUTE ON FUNCTION envelope.create_key(text), envelope.rotate_key(text),
    envelope.destroy_key(text, integer), envelope.grant_key(text, regrole, text),
    envelope.revoke_key(text, regrole, text), envelope._encryptions(uuid),
    envelope._key_report(uuid) TO envelope_admin;
GRANT SELECT ON envelope.keys, envelope.key_grants TO envelope_admin;
