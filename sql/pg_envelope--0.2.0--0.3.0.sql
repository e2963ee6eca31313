-- pg_envelope 0.2.0 -> 0.3.0. Each feature of this version has its own delimited section.
\echo Use "ALTER EXTENSION pg_envelope UPDATE TO '0.3.0'" to load this file. \quit

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
