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

