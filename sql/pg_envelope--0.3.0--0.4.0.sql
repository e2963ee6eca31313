-- pg_envelope 0.3.0 -> 0.4.0. Each feature of this version has its own delimited section.
\echo Use "ALTER EXTENSION pg_envelope UPDATE TO '0.4.0'" to load this file. \quit

-------------------------------------------------------------------------------
-- Key providers and wrapping mechanisms (issue 14; README "Key providers"): the KEK may come
-- from a PKCS#11 token (AES-GCM, RFC 3394/5649 key wrap, or key wrap computed from the token's
-- AES-ECB) or from an IKM command; each wrapped DEK records how it was wrapped.
-------------------------------------------------------------------------------

-- status() gains the KEK provider and how new DEKs are wrapped (OUT columns change: replaced).
DROP FUNCTION envelope.status();
CREATE FUNCTION envelope.status(
    OUT keeper_state text, OUT keeper_pid integer, OUT pkcs11_module text,
    OUT token_label text, OUT kek_label text, OUT kek_found boolean, OUT last_error text,
    OUT last_error_at timestamptz, OUT next_retry_at timestamptz, OUT keys_cached integer,
    OUT keys_cached_total integer, OUT cache_capacity integer, OUT databases_loaded integer,
    OUT keys_loaded bigint, OUT load_failures bigint, OUT last_load_ms double precision,
    OUT kek_provider text, OUT wrap_mechanism text)
    AS 'MODULE_PATHNAME', 'envelope_status' LANGUAGE C STRICT VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION envelope.status() IS
  'Keeper state, HSM (module, token, KEK, last error; details for superusers, envelope_admin, pg_monitor), keys cached in this database and in all, cache capacity, keys the keeper put in the cache since it started (keys_loaded) and those it could not (load_failures), its start-up load (databases_loaded, last_load_ms), the KEK provider (pkcs11 or ikm_command) and how new keys are wrapped (wrap_mechanism)';

-- How each DEK is wrapped, from the first byte of its wrapped form (the format the keeper
-- reads back): aes-gcm, rfc3394 (CKM_AES_KEY_WRAP or computed from CKM_AES_ECB), rfc5649.
CREATE FUNCTION envelope._wrap_format(wrapped bytea) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp
    RETURN CASE get_byte(wrapped, 0) WHEN 1 THEN 'aes-gcm' WHEN 2 THEN 'rfc3394'
                                     WHEN 3 THEN 'rfc5649' ELSE 'unknown' END;
COMMENT ON FUNCTION envelope._wrap_format(bytea) IS
  'Internal: the wrap format named by a wrapped DEK''s first byte';

-- envelope.keys gains wrap_format (NULL once a version is destroyed).
CREATE OR REPLACE VIEW envelope.keys AS
    SELECT k.name, k.id, k.version, k.state, k.kek_label, k.created_at, k.state_changed_at,
           r.key_check_value, envelope._encryptions(k.id) AS encryptions, r.problem, k.purpose,
           (SELECT max(e.at) FROM envelope.key_events e
             WHERE e.action = 'auto_rotate' AND e.key_id = k.id) AS auto_rotated_at,
           CASE WHEN k.wrapped_dek IS NOT NULL AND octet_length(k.wrapped_dek) > 0
                THEN envelope._wrap_format(k.wrapped_dek) END AS wrap_format
    FROM envelope.keyring k
    LEFT JOIN LATERAL envelope._key_report(k.id) r ON k.state <> 'destroyed'
    ORDER BY k.name, k.version;
COMMENT ON VIEW envelope.keys IS
  'Keys with state, KEK label, public key check value, encryptions so far, load problems, purpose (data or index), when a version was rotated away automatically, and how its DEK is wrapped (wrap_format)';


-------------------------------------------------------------------------------
-- Migrating from Trustpoint (issue 14; README "Migrating from Trustpoint"): legacy DEKs
-- re-wrapped inside the keeper, legacy fields re-sealed as encrypted_text.
-------------------------------------------------------------------------------
CREATE FUNCTION envelope._import_legacy_dek(id uuid, wrapped bytea, legacy_kek_label text,
    OUT wrapped_dek bytea, OUT kek_label text)
    AS 'MODULE_PATHNAME', 'envelope_import_legacy_dek' LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION envelope._import_legacy_dek(uuid, bytea, text) IS
  'Internal: the keeper decrypts a Trustpoint wrapped DEK with the legacy KEK inside the token, wraps it bound to id under the current KEK and caches it';
REVOKE ALL ON FUNCTION envelope._import_legacy_dek(uuid, bytea, text) FROM PUBLIC;

-- Not STRICT: sample is optional. Mirrors create_key (name rules, lock, keyring row, history,
-- audit line); the imported DEK is version 1, the version that opens the legacy fields.
CREATE FUNCTION envelope.import_legacy_key(name text, wrapped bytea,
    legacy_kek_label text DEFAULT 'trustpoint-kek', sample text DEFAULT NULL) RETURNS uuid
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    new_id uuid := gen_random_uuid();
    w record;
BEGIN
    IF import_legacy_key.name IS NULL OR import_legacy_key.wrapped IS NULL
       OR import_legacy_key.legacy_kek_label IS NULL THEN
        RAISE EXCEPTION 'name, wrapped and legacy_kek_label must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF import_legacy_key.name = '' OR length(import_legacy_key.name) >= 64 THEN
        RAISE EXCEPTION 'invalid key name "%"', import_legacy_key.name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Key names are 1 to 63 characters long.';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('pg_envelope.key:' || import_legacy_key.name));
    IF EXISTS (SELECT 1 FROM envelope.keyring k WHERE k.name = import_legacy_key.name) THEN
        RAISE EXCEPTION 'key "%" already exists', import_legacy_key.name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Import the legacy DEK under a new key name.';
    END IF;
    -- A KEK that wraps pg_envelope's DEKs is never used to decrypt a legacy blob (the keeper
    -- also refuses the KEK it is connected to).
    IF EXISTS (SELECT 1 FROM envelope.keyring k
               WHERE k.kek_label = import_legacy_key.legacy_kek_label) THEN
        RAISE EXCEPTION 'the legacy KEK label names a KEK of pg_envelope'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass the label of Trustpoint''s KEK (default ''trustpoint-kek'').';
    END IF;
    SELECT * INTO w FROM envelope._import_legacy_dek(new_id, import_legacy_key.wrapped,
                                                      import_legacy_key.legacy_kek_label);
    INSERT INTO envelope.keyring (id, name, version, state, kek_label, wrapped_dek)
        VALUES (new_id, import_legacy_key.name, 1, 'active', w.kek_label, w.wrapped_dek);
    -- AES-ECB wrapping has no integrity: a wrong KEK or blob yields a wrong key silently.
    -- A sample field that does not open aborts the import (XX001), so nothing is stored.
    IF import_legacy_key.sample IS NOT NULL THEN
        PERFORM envelope.import_legacy_value(import_legacy_key.sample, import_legacy_key.name);
    END IF;
    INSERT INTO envelope.key_events (action, key_name, key_version, key_id)
        VALUES ('import_legacy_key', import_legacy_key.name, 1, new_id);
    PERFORM envelope._audit('import_legacy_key', import_legacy_key.name, 1, 'ok');
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION envelope.import_legacy_key(text, bytea, text, text) IS
  'Trustpoint migration: the keeper decrypts Trustpoint''s 40-byte wrapped DEK with the legacy KEK inside the token, wraps it under the current KEK and stores it as version 1 of a new key; a sample field, if given, must open with it or nothing is stored; returns the key id';
REVOKE ALL ON FUNCTION envelope.import_legacy_key(text, bytea, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION envelope.import_legacy_key(text, bytea, text, text) TO envelope_admin;

CREATE FUNCTION envelope.import_legacy_value(stored text, key_name text)
    RETURNS @extschema@.encrypted_text
    AS 'MODULE_PATHNAME', 'envelope_import_legacy_value' LANGUAGE C STRICT VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION envelope.import_legacy_value(text, text) IS
  'Trustpoint migration: opens a Trustpoint field (base64 of nonce, tag, AES-256-GCM ciphertext of padded text) with version 1 of key_name, checks and strips the padding, and seals the text under the key''s active version (needs encrypt and decrypt on the key)';

