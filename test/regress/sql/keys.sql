-- keys: key management API, the keys view, privileges, and key-related errors.
SELECT name, version, state FROM envelope.keys ORDER BY name, version;

-- create_key returns the new id; names are unique; bad names are refused.
SELECT envelope.create_key('payroll') IS NOT NULL AS created;
SELECT envelope.create_key('payroll');
SELECT envelope.create_key('');
SELECT envelope.create_key(repeat('x', 64));
SELECT envelope.create_key(NULL) IS NULL AS null_name_gives_null;

-- The view shows a 16-hex-digit key check value, never key bytes; wrapped keys are 61 bytes.
SELECT name, version, state, kek_label, key_check_value ~ '^[0-9a-f]{16}$' AS kcv_ok,
       encryptions, problem
FROM envelope.keys ORDER BY name, version;
SELECT name, octet_length(wrapped_dek) AS wrapped_len, get_byte(wrapped_dek, 0) AS wrap_format
FROM envelope.keyring ORDER BY name;
SELECT count(DISTINCT key_check_value) = count(*) AS distinct_kcvs FROM envelope.keys;

-- Rotation: a new active version; the old one stays for decryption only.
SELECT envelope.encrypt('before rotation', 'payroll') AS v1 \gset
SELECT envelope.rotate_key('payroll') IS NOT NULL AS rotated;
SELECT name, version, state FROM envelope.keys WHERE name = 'payroll' ORDER BY version;
SELECT envelope.decrypt(:'v1'::encrypted_text) AS old_version_still_decrypts;
SELECT envelope.rotate_key('no_such_key');

-- New values use the new version (its id is in the envelope header).
SET envelope.io = 'sealed';
SELECT substr(decode(substr(envelope.encrypted_text_out(envelope.encrypt('after', 'payroll'))::text,
                     8), 'base64'), 2, 16)
       = uuid_send(id) AS new_values_use_version_2
FROM envelope.keyring WHERE name = 'payroll' AND version = 2;
RESET envelope.io;

-- The same DEK gives the same key check value each time it is computed.
SELECT key_check_value = envelope._key_check_value(id) AS stable_kcv
FROM envelope.keys WHERE name = 'default';

-- Status counts the keys of this database.
SELECT keys_cached >= 3 AS keys_cached, keys_cached_total >= keys_cached AS total_ok,
       cache_capacity FROM envelope.status();

-- Privileges: PUBLIC can use the type and functions, not the keyring or key management.
CREATE ROLE envelope_user;
SET ROLE envelope_user;
SELECT envelope.decrypt(:'v1'::encrypted_text) AS user_can_decrypt;
SELECT envelope.encrypt('user data') IS NOT NULL AS user_can_encrypt;
SELECT count(*) FROM envelope.keyring;
SELECT count(*) FROM envelope.keys;
SELECT envelope.create_key('mine');
SELECT envelope.rotate_key('default');
SELECT * FROM envelope._new_wrapped_dek(gen_random_uuid());
RESET ROLE;
DROP ROLE envelope_user;

-- A keyring row copied onto another id does not unwrap (the wrap is bound to the id),
-- and the error names the key.
INSERT INTO envelope.keyring (id, name, version, state, kek_label, wrapped_dek)
SELECT '00000000-0000-4000-8000-000000000001', 'copied', 1, 'active', kek_label, wrapped_dek
FROM envelope.keyring WHERE name = 'payroll' AND version = 1;
SELECT envelope.encrypt('x', 'copied');
SELECT name, key_check_value, problem FROM envelope.keys WHERE name = 'copied';
DELETE FROM envelope.keyring WHERE name = 'copied';

-- A key that is not in the keyring cannot be used.
SELECT envelope.encrypt('x', 'copied');
