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
-- (Sealed values are kept in a table: psql's \gset would capture the decrypted output.)
CREATE TABLE sealed_values (label text PRIMARY KEY, v encrypted_text);
INSERT INTO sealed_values VALUES ('v1', envelope.encrypt('before rotation', 'payroll'));
SELECT envelope.rotate_key('payroll') IS NOT NULL AS rotated;
SELECT name, version, state FROM envelope.keys WHERE name = 'payroll' ORDER BY version;
SELECT envelope.decrypt(v) AS old_version_still_decrypts FROM sealed_values WHERE label = 'v1';
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

-- Privileges: PUBLIC can use the type and functions, not the keyring or key management; a
-- role needs key privileges to read or write plaintext (see the privileges test).
CREATE ROLE envelope_user;
GRANT SELECT ON sealed_values TO envelope_user;
SELECT envelope.grant_key('payroll', 'envelope_user', 'decrypt');
SELECT envelope.grant_key('default', 'envelope_user', 'encrypt');
SET ROLE envelope_user;
SELECT envelope.decrypt(v) AS user_can_decrypt FROM sealed_values WHERE label = 'v1';
SELECT envelope.encrypt('user data') IS NOT NULL AS user_can_encrypt;
SELECT count(*) FROM envelope.keyring;
SELECT count(*) FROM envelope.keys;
SELECT envelope.create_key('mine');
SELECT envelope.rotate_key('default');
SELECT * FROM envelope._new_wrapped_dek(gen_random_uuid());
RESET ROLE;
REVOKE ALL ON sealed_values FROM envelope_user;
SELECT envelope.revoke_key('payroll', 'envelope_user', 'all');
SELECT envelope.revoke_key('default', 'envelope_user', 'all');
DROP ROLE envelope_user;

-- A keyring row copied onto another id does not unwrap (the wrap is bound to the id),
-- and the error names the key.
INSERT INTO envelope.keyring (id, name, version, state, kek_label, wrapped_dek)
SELECT '00000000-0000-4000-8000-000000000001', 'copied', 1, 'active', kek_label, wrapped_dek
FROM envelope.keyring WHERE name = 'payroll' AND version = 1;
SELECT envelope.encrypt('x', 'copied');
SELECT name, key_check_value, problem FROM envelope.keys WHERE name = 'copied';
-- Keyring rows are never deleted, states never move back, ids never change (shredding
-- holds); a destroyed key version cannot be used.
DELETE FROM envelope.keyring WHERE name = 'copied';
TRUNCATE envelope.keyring;
UPDATE envelope.keyring SET id = gen_random_uuid() WHERE name = 'copied';
SELECT envelope.destroy_key('copied', 1, force => true) IS NOT NULL AS destroyed;
UPDATE envelope.keyring SET state = 'active' WHERE name = 'copied';
SET session_replication_role = replica;
DELETE FROM envelope.keyring WHERE name = 'copied';
RESET session_replication_role;
SELECT envelope.encrypt('x', 'copied');

-- A key created by a transaction (or savepoint) that rolls back leaves no orphan in the cache.
SELECT keys_cached AS cached_before FROM envelope.status() \gset
BEGIN;
SELECT envelope.create_key('rolled_back') IS NOT NULL AS created;
ROLLBACK;
BEGIN;
SAVEPOINT s;
SELECT envelope.rotate_key('payroll') IS NOT NULL AS rotated;
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT keys_cached = :cached_before AS no_orphans FROM envelope.status();
SELECT count(*) AS rolled_back_rows FROM envelope.keyring WHERE name = 'rolled_back' OR version > 2;

-- Crypto-shredding: destroying a key version wipes its wrapped DEK and, at commit, its cached
-- copy; values sealed under it can never be opened again. Other versions keep working.
INSERT INTO sealed_values VALUES ('v2', envelope.encrypt('shred me', 'payroll'));
SELECT keys_cached AS cached_before FROM envelope.status() \gset
BEGIN;
SELECT envelope.destroy_key('payroll', 1, force => true) IS NOT NULL AS destroyed;
ROLLBACK;
SELECT envelope.decrypt(v) AS rollback_keeps_the_key FROM sealed_values WHERE label = 'v1';
SELECT envelope.destroy_key('payroll', 1, force => true) IS NOT NULL AS destroyed;
SELECT keys_cached = :cached_before - 1 AS wiped_from_cache FROM envelope.status();
\set VERBOSITY sqlstate
SELECT envelope.decrypt(v) FROM sealed_values WHERE label = 'v1';
SELECT v FROM sealed_values WHERE label = 'v1';
\set VERBOSITY default
SELECT envelope.decrypt(v) AS version_2_still_works FROM sealed_values WHERE label = 'v2';
SELECT name, version, state, key_check_value IS NOT NULL AS has_kcv, problem FROM envelope.keys
WHERE name = 'payroll'
ORDER BY version;
SELECT wrapped_dek IS NULL AS wrapped_dek_gone FROM envelope.keyring
WHERE name = 'payroll' AND version = 1;
SELECT envelope.destroy_key('payroll', 1, force => true);
SELECT envelope.destroy_key('payroll', 99, force => true);
DROP TABLE sealed_values;
