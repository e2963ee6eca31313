-- pg_envelope: install script (master copy; the build copies it to pg_envelope--<version>.sql).
\echo Use "CREATE EXTENSION pg_envelope" to load this file. \quit

CREATE SCHEMA envelope;
COMMENT ON SCHEMA envelope IS 'pg_envelope key management and encryption functions';
REVOKE ALL ON SCHEMA envelope FROM PUBLIC;
GRANT USAGE ON SCHEMA envelope TO PUBLIC;

-------------------------------------------------------------------------------
-- Keyring: one row per DEK version, holding only the DEK wrapped by the HSM's KEK.
-------------------------------------------------------------------------------
CREATE TABLE envelope.keyring (
    id               uuid PRIMARY KEY,
    name             text NOT NULL CHECK (name <> '' AND length(name) < 64),
    version          integer NOT NULL CHECK (version >= 1),
    state            text NOT NULL DEFAULT 'active'
                     CHECK (state IN ('active', 'decrypt_only', 'destroyed')),
    kek_label        text NOT NULL,
    wrapped_dek      bytea CHECK ((state = 'destroyed') = (wrapped_dek IS NULL)),
    created_at       timestamptz NOT NULL DEFAULT now(),
    state_changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX keyring_name_idx ON envelope.keyring (name, version);
-- Sessions look up destroyed keys after every keyring change (to evict them on standbys).
CREATE INDEX keyring_destroyed_idx ON envelope.keyring (id) WHERE state = 'destroyed';
COMMENT ON TABLE envelope.keyring IS
  'Data encryption keys (DEKs), each stored only wrapped by the HSM key-encryption key (KEK)';
COMMENT ON COLUMN envelope.keyring.id IS 'DEK id; named in every value sealed with this DEK';
COMMENT ON COLUMN envelope.keyring.wrapped_dek IS
  'AES-256-GCM wrap of the DEK under the KEK, bound to the id; NULL once destroyed';
REVOKE ALL ON envelope.keyring FROM PUBLIC;
-- pg_dump dumps the keyring (wrapped bytes only) with the extension.
SELECT pg_catalog.pg_extension_config_dump('envelope.keyring', '');

CREATE FUNCTION envelope._keyring_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'envelope_keyring_changed' LANGUAGE C;
COMMENT ON FUNCTION envelope._keyring_changed() IS
  'Internal: tells every session to re-resolve key names after a keyring change';
REVOKE ALL ON FUNCTION envelope._keyring_changed() FROM PUBLIC;
CREATE TRIGGER keyring_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON envelope.keyring FOR EACH STATEMENT EXECUTE FUNCTION envelope._keyring_changed();

CREATE FUNCTION envelope._keyring_row_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'envelope_keyring_row_changed' LANGUAGE C;
COMMENT ON FUNCTION envelope._keyring_row_changed() IS
  'Internal: wipes a destroyed or deleted key from the shared cache when the change commits';
REVOKE ALL ON FUNCTION envelope._keyring_row_changed() FROM PUBLIC;
CREATE TRIGGER keyring_row_changed AFTER UPDATE OR DELETE
    ON envelope.keyring FOR EACH ROW EXECUTE FUNCTION envelope._keyring_row_changed();

-------------------------------------------------------------------------------
-- Internal C functions (not for PUBLIC).
-------------------------------------------------------------------------------
CREATE FUNCTION envelope._new_wrapped_dek(id uuid, OUT wrapped_dek bytea, OUT kek_label text)
    AS 'MODULE_PATHNAME', 'envelope_new_wrapped_dek' LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION envelope._new_wrapped_dek(uuid) IS
  'Internal: the keeper generates a DEK in the HSM, wraps it bound to id and caches it';
REVOKE ALL ON FUNCTION envelope._new_wrapped_dek(uuid) FROM PUBLIC;

CREATE FUNCTION envelope._key_check_value(id uuid) RETURNS text
    AS 'MODULE_PATHNAME', 'envelope_key_check_value' LANGUAGE C STRICT STABLE;
COMMENT ON FUNCTION envelope._key_check_value(uuid) IS
  'Internal: public fingerprint of a DEK (HKDF-SHA256 of the key, 8 bytes, hex)';
REVOKE ALL ON FUNCTION envelope._key_check_value(uuid) FROM PUBLIC;

CREATE FUNCTION envelope._encryptions(id uuid) RETURNS bigint
    AS 'MODULE_PATHNAME', 'envelope_encryptions' LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION envelope._encryptions(uuid) IS
  'Internal: number of values sealed under a DEK (NULL while it is not cached)';
REVOKE ALL ON FUNCTION envelope._encryptions(uuid) FROM PUBLIC;

CREATE FUNCTION envelope._forget_key(id uuid) RETURNS void
    AS 'MODULE_PATHNAME', 'envelope_forget_key' LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION envelope._forget_key(uuid) IS
  'Internal: removes a DEK from the shared-memory cache, wiping it';
REVOKE ALL ON FUNCTION envelope._forget_key(uuid) FROM PUBLIC;

-- Key check value, or the reason the key cannot be loaded, for the keys view.
CREATE FUNCTION envelope._key_report(id uuid, OUT key_check_value text, OUT problem text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    key_check_value := envelope._key_check_value(id);
EXCEPTION WHEN OTHERS THEN
    problem := SQLERRM;
END
$$;
COMMENT ON FUNCTION envelope._key_report(uuid) IS
  'Internal: key check value of a DEK, or why it cannot be loaded';
REVOKE ALL ON FUNCTION envelope._key_report(uuid) FROM PUBLIC;

-------------------------------------------------------------------------------
-- Status
-------------------------------------------------------------------------------
CREATE FUNCTION envelope.status(
    OUT keeper_state text, OUT keeper_pid integer, OUT pkcs11_module text,
    OUT token_label text, OUT kek_label text, OUT kek_found boolean, OUT last_error text,
    OUT last_error_at timestamptz, OUT next_retry_at timestamptz, OUT keys_cached integer,
    OUT keys_cached_total integer, OUT cache_capacity integer, OUT databases_loaded integer,
    OUT keys_loaded bigint, OUT load_failures bigint, OUT last_load_ms double precision)
    AS 'MODULE_PATHNAME', 'envelope_status' LANGUAGE C STRICT VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION envelope.status() IS
  'State of the keeper, the HSM (module, token, KEK, last error) and the shared key cache';

-------------------------------------------------------------------------------
-- Key management
-------------------------------------------------------------------------------
CREATE FUNCTION envelope.create_key(name text) RETURNS uuid
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
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION envelope.create_key(text) IS
  'Creates a named key (version 1): a new DEK generated and wrapped by the HSM; returns its id';
REVOKE ALL ON FUNCTION envelope.create_key(text) FROM PUBLIC;

CREATE FUNCTION envelope.rotate_key(name text) RETURNS uuid
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
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION envelope.rotate_key(text) IS
  'Adds a new active version of a key; older versions stay usable for decryption only';
REVOKE ALL ON FUNCTION envelope.rotate_key(text) FROM PUBLIC;

CREATE FUNCTION envelope.destroy_key(name text, version integer) RETURNS uuid
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
    RETURN destroyed_id;
END
$$;
COMMENT ON FUNCTION envelope.destroy_key(text, integer) IS
  'Crypto-shredding: deletes the wrapped DEK of one key version and wipes it from the cache at commit; values sealed under it can never be decrypted again';
REVOKE ALL ON FUNCTION envelope.destroy_key(text, integer) FROM PUBLIC;

CREATE VIEW envelope.keys AS
    SELECT k.name, k.id, k.version, k.state, k.kek_label, k.created_at, k.state_changed_at,
           r.key_check_value, envelope._encryptions(k.id) AS encryptions, r.problem
    FROM envelope.keyring k
    LEFT JOIN LATERAL envelope._key_report(k.id) r ON k.state <> 'destroyed'
    ORDER BY k.name, k.version;
COMMENT ON VIEW envelope.keys IS
  'Keys with state, KEK label, public key check value, encryptions so far and load problems';
REVOKE ALL ON envelope.keys FROM PUBLIC;

-------------------------------------------------------------------------------
-- The encrypted_text type: stored as envelope v1 bytes; I/O is transparent by default and
-- carries the sealed printable form when envelope.io = 'sealed'.
-------------------------------------------------------------------------------
CREATE TYPE @extschema@.encrypted_text;

CREATE FUNCTION envelope.encrypted_text_in(cstring) RETURNS @extschema@.encrypted_text
    AS 'MODULE_PATHNAME', 'envelope_encrypted_text_in' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION envelope.encrypted_text_in(cstring) IS
  'encrypted_text input: seals plaintext (or, with envelope.io = sealed, verifies a sealed value)';
CREATE FUNCTION envelope.encrypted_text_out(@extschema@.encrypted_text) RETURNS cstring
    AS 'MODULE_PATHNAME', 'envelope_encrypted_text_out' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION envelope.encrypted_text_out(@extschema@.encrypted_text) IS
  'encrypted_text output: opens the value (or, with envelope.io = sealed, prints it sealed)';
CREATE FUNCTION envelope.encrypted_text_recv(internal) RETURNS @extschema@.encrypted_text
    AS 'MODULE_PATHNAME', 'envelope_encrypted_text_recv' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION envelope.encrypted_text_recv(internal) IS
  'encrypted_text binary input; runs the same checks as text input';
CREATE FUNCTION envelope.encrypted_text_send(@extschema@.encrypted_text) RETURNS bytea
    AS 'MODULE_PATHNAME', 'envelope_encrypted_text_send' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION envelope.encrypted_text_send(@extschema@.encrypted_text) IS
  'encrypted_text binary output';

-- Ciphertext does not compress: store out of line without compression attempts.
CREATE TYPE @extschema@.encrypted_text (
    INPUT = envelope.encrypted_text_in,
    OUTPUT = envelope.encrypted_text_out,
    RECEIVE = envelope.encrypted_text_recv,
    SEND = envelope.encrypted_text_send,
    INTERNALLENGTH = VARIABLE,
    STORAGE = external,
    CATEGORY = 'S'
);
COMMENT ON TYPE @extschema@.encrypted_text IS
  'Text encrypted with AES-256-GCM under an HSM-wrapped data key (envelope v1)';

CREATE FUNCTION envelope.encrypt(plaintext text, key_name text DEFAULT NULL,
                                 context bytea DEFAULT NULL)
    RETURNS @extschema@.encrypted_text
    AS 'MODULE_PATHNAME', 'envelope_encrypt_text' LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION envelope.encrypt(text, text, bytea) IS
  'Seals text under the active version of key_name (default: envelope.default_key); context, if given, must be given again to decrypt';

CREATE FUNCTION envelope.decrypt(value @extschema@.encrypted_text, context bytea DEFAULT NULL)
    RETURNS text
    AS 'MODULE_PATHNAME', 'envelope_decrypt_text' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION envelope.decrypt(@extschema@.encrypted_text, bytea) IS
  'Opens an encrypted_text value; fails unless context matches the one used to encrypt';

CREATE FUNCTION envelope.encrypt_bytea(data bytea, key_name text DEFAULT NULL,
                                       context bytea DEFAULT NULL) RETURNS bytea
    AS 'MODULE_PATHNAME', 'envelope_encrypt_bytea' LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION envelope.encrypt_bytea(bytea, text, bytea) IS
  'Seals bytes into envelope v1 bytes under the active version of key_name';

CREATE FUNCTION envelope.decrypt_bytea(sealed bytea, context bytea DEFAULT NULL) RETURNS bytea
    AS 'MODULE_PATHNAME', 'envelope_decrypt_bytea' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION envelope.decrypt_bytea(bytea, bytea) IS
  'Opens envelope bytes made by encrypt_bytea(); fails unless context matches';

-- Cast functions take exactly one argument.
CREATE FUNCTION envelope.to_encrypted_text(text) RETURNS @extschema@.encrypted_text
    AS 'MODULE_PATHNAME', 'envelope_encrypt_text' LANGUAGE C STRICT VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION envelope.to_encrypted_text(text) IS
  'Cast text -> encrypted_text: seals under envelope.default_key';
CREATE FUNCTION envelope.to_text(@extschema@.encrypted_text) RETURNS text
    AS 'MODULE_PATHNAME', 'envelope_decrypt_text' LANGUAGE C STRICT STABLE PARALLEL SAFE;
COMMENT ON FUNCTION envelope.to_text(@extschema@.encrypted_text) IS
  'Cast encrypted_text -> text: opens the value';

CREATE CAST (text AS @extschema@.encrypted_text)
    WITH FUNCTION envelope.to_encrypted_text(text) AS ASSIGNMENT;
CREATE CAST (@extschema@.encrypted_text AS text)
    WITH FUNCTION envelope.to_text(@extschema@.encrypted_text);

-- Every new database that installs the extension gets a key named "default". If the HSM is not
-- ready this fails, and so does CREATE EXTENSION: no half-installed extension.
SELECT envelope.create_key('default');
