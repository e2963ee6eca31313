-- verify: envelope.verify() counts, per key version, values that open, cannot be checked
-- without a context, are under a destroyed key, or fail; sealed input checks only the form.
SELECT envelope.create_key('vf_a') IS NOT NULL AS a, envelope.create_key('vf_b') IS NOT NULL AS b;
CREATE TABLE vf (id int PRIMARY KEY, v encrypted_text, b bytea);
INSERT INTO vf SELECT g, envelope.encrypt('a' || g, 'vf_a'), envelope.encrypt_bytea('\x01', 'vf_a')
FROM generate_series(1, 5) g;
INSERT INTO vf SELECT g, envelope.encrypt('ctx ' || g, 'vf_b', g::text::bytea), NULL
FROM generate_series(6, 8) g;
SELECT envelope.rotate_key('vf_a') IS NOT NULL AS rotated;   -- v1 now decrypt_only
INSERT INTO vf SELECT g, envelope.encrypt('a2 ' || g, 'vf_a'), 'garbage' FROM generate_series(9, 10) g;
-- A value whose ciphertext was tampered with loads in sealed mode (form only) ...
SET envelope.io = sealed;
SELECT v AS sealed FROM vf WHERE id = 1 \gset
SELECT overlay(decode(substr(:'sealed', 8), 'base64') PLACING '\xff' FROM 40 FOR 1) AS tampered \gset
CREATE FUNCTION pg_temp.sealed_in(b bytea) RETURNS encrypted_text LANGUAGE sql AS
  $$ SELECT envelope.encrypted_text_in(('pgenv1:' || replace(encode(b, 'base64'), E'\n', ''))::cstring) $$;
INSERT INTO vf VALUES (11, pg_temp.sealed_in(:'tampered'), NULL);
-- ... and so does a value under a key this database has never seen.
INSERT INTO vf VALUES (12, pg_temp.sealed_in(overlay(decode(substr(:'sealed', 8), 'base64')
                       PLACING '\x000102030405060708090a0b0c0d0e0f' FROM 2 FOR 16)), NULL);
-- Malformed text is still refused, and so is sealed input in plaintext mode.
INSERT INTO vf VALUES (13, 'pgenv1:AAAA', NULL);
RESET envelope.io;
\set VERBOSITY terse
INSERT INTO vf VALUES (13, :'sealed', NULL);
\set VERBOSITY default
-- Shred a version that holds values: vf_a v2 (ids 9 and 10).
SELECT envelope.destroy_key('vf_a', 2, force => true) IS NOT NULL AS destroyed;

SELECT coalesce(key_name, '(unknown)') AS key_name, key_version, opened, unchecked, destroyed, failed
FROM envelope.verify('vf', 'v') ORDER BY 1, 2;
-- With a context expression every value can be checked: context-bound ones with theirs, the
-- others with none (NULL); what does not open then failed.
SELECT coalesce(key_name, '(unknown)') AS key_name, key_version, opened, unchecked, destroyed, failed
FROM envelope.verify('vf', 'v', $$CASE WHEN id BETWEEN 6 AND 8 THEN id::text::bytea END$$)
ORDER BY 1, 2;
-- bytea columns made by encrypt_bytea; a value that is no envelope at all counts as failed
-- with no key.
SELECT coalesce(key_name, '(not an envelope)') AS key_name, key_version, opened, failed
FROM envelope.verify('vf', 'b') ORDER BY 1, 2;
-- Errors: no such column, a column of another type, and a role without the privilege.
SELECT * FROM envelope.verify('vf', 'nope');
SELECT * FROM envelope.verify('vf', 'id');
CREATE ROLE vf_reader;
GRANT SELECT ON vf TO vf_reader;
SET ROLE vf_reader;
SELECT * FROM envelope.verify('vf', 'v');
RESET ROLE;
REVOKE SELECT ON vf FROM vf_reader;
SET ROLE vf_reader;
SELECT * FROM envelope.verify('vf', 'v');
RESET ROLE;
DROP ROLE vf_reader;
DROP TABLE vf;
