-- privileges: per-key encrypt/decrypt privileges checked on every path that seals or opens a
-- value; key management by envelope_admin; what status() shows to whom; full key names.
\set VERBOSITY default
SELECT envelope.create_key('pv_app') IS NOT NULL AS created;
SELECT envelope.create_key('pv_other') IS NOT NULL AS created;
CREATE TABLE pv_data (id int PRIMARY KEY, v encrypted_text);
SET envelope.default_key = 'pv_app';
INSERT INTO pv_data VALUES (1, 'pv secret one');
INSERT INTO pv_data VALUES (2, envelope.encrypt('pv secret two', 'pv_other'));
RESET envelope.default_key;

CREATE ROLE pv_nobody;
CREATE ROLE pv_reader;
CREATE ROLE pv_ingest;
CREATE ROLE pv_group;
CREATE ROLE pv_member IN ROLE pv_group;
CREATE ROLE pv_admin IN ROLE envelope_admin;
GRANT SELECT, INSERT ON pv_data TO pv_nobody, pv_reader, pv_ingest, pv_member;

-- Granting: by superusers; privilege names checked; unknown keys refused.
SELECT envelope.grant_key('pv_app', 'pv_reader', 'decrypt');
SELECT envelope.grant_key('pv_app', 'pv_ingest', 'encrypt');
SELECT envelope.grant_key('pv_app', 'pv_group', 'all');
SELECT envelope.grant_key('pv_app', 'pv_reader', 'read');
SELECT envelope.grant_key('no_such_key', 'pv_reader', 'decrypt');
SELECT envelope.grant_key('pv_app', 'pv_reader', 'decrypt');  -- again: no error, no duplicate
SELECT key_name, grantee, privilege, granted_by FROM envelope.key_grants
WHERE key_name LIKE 'pv_%';
SELECT r AS role, envelope.has_key_privilege(r::regrole, 'pv_app', 'encrypt') AS enc,
       envelope.has_key_privilege(r::regrole, 'pv_app', 'decrypt') AS dec,
       envelope.has_key_privilege(r::regrole, 'pv_app', 'all') AS all
FROM unnest(ARRAY['pv_nobody', 'pv_reader', 'pv_ingest', 'pv_member', 'postgres']) r;
SELECT envelope.has_key_privilege('pv_reader', 'pv_app', 'write');

-- A role without decrypt gets 42501 from every path that opens, and never the value.
SET ROLE pv_nobody;
\set VERBOSITY sqlstate
SELECT v FROM pv_data WHERE id = 1;
\set VERBOSITY default
SELECT v FROM pv_data WHERE id = 1;
SELECT v::text FROM pv_data WHERE id = 1;
SELECT envelope.decrypt(v) FROM pv_data WHERE id = 1;
SELECT envelope.decrypt_bytea(envelope.encrypt_bytea('x')) ;
COPY (SELECT v FROM pv_data WHERE id = 1) TO STDOUT;
-- ... and from every path that seals.
INSERT INTO pv_data VALUES (3, 'nobody writes');
SELECT envelope.encrypt('x', 'pv_app');
SELECT 'x'::text::encrypted_text;
-- Sealed mode needs no key privilege (a backup role dumps ciphertext, reads nothing).
SET envelope.io = sealed;
SELECT v AS sealed_output FROM pv_data WHERE id = 1 \gset
SELECT left(:'sealed_output', 7) AS sealed_prefix;
-- Holding the sealed value opens nothing: no decryption oracle.
SELECT envelope.decrypt(:'sealed_output'::encrypted_text);
SELECT v::text FROM pv_data WHERE id = 1;
RESET envelope.io;
RESET ROLE;

-- decrypt only: reads, cannot write; other keys stay closed.
SET ROLE pv_reader;
SELECT v FROM pv_data WHERE id = 1;
SELECT v FROM pv_data WHERE id = 2;
INSERT INTO pv_data VALUES (4, envelope.encrypt('reader writes', 'pv_app'));
RESET ROLE;

-- encrypt only: writes, cannot read back.
SET ROLE pv_ingest;
SET envelope.default_key = 'pv_app';
INSERT INTO pv_data VALUES (5, 'ingested');
SELECT v FROM pv_data WHERE id = 5;
RESET envelope.default_key;
RESET ROLE;
SELECT v FROM pv_data WHERE id = 5;

-- Parallel workers check the same privileges (the leader's role).
SET force_parallel_mode = on;
SET ROLE pv_reader;
SELECT v::text AS read_in_a_worker FROM pv_data WHERE id = 1;
RESET ROLE;
SET ROLE pv_nobody;
SELECT v::text FROM pv_data WHERE id = 1;
RESET ROLE;
RESET force_parallel_mode;

-- Membership in a granted role counts.
SET ROLE pv_member;
SELECT envelope.decrypt(envelope.encrypt('via group', 'pv_app')) AS member_round_trip;
RESET ROLE;

-- Revocation takes effect in an existing session at once.
SET ROLE pv_reader;
SELECT v FROM pv_data WHERE id = 1;
RESET ROLE;
SELECT envelope.revoke_key('pv_app', 'pv_reader', 'decrypt');
SET ROLE pv_reader;
SELECT v FROM pv_data WHERE id = 1;
RESET ROLE;
-- Leaving the group takes effect at once too.
REVOKE pv_group FROM pv_member;
SET ROLE pv_member;
SELECT v FROM pv_data WHERE id = 1;
RESET ROLE;

-- Key management without superuser: envelope_admin members create, rotate, destroy, grant.
SET ROLE pv_admin;
SELECT envelope.create_key('pv_admin_key') IS NOT NULL AS admin_created;
SELECT envelope.rotate_key('pv_admin_key') IS NOT NULL AS admin_rotated;
SELECT envelope.destroy_key('pv_admin_key', 1, force => true) IS NOT NULL AS admin_destroyed;
SELECT envelope.grant_key('pv_admin_key', 'pv_reader', 'all');
SELECT count(*) > 0 AS admin_sees_keys FROM envelope.keys WHERE name = 'pv_admin_key';
SELECT count(*) AS admin_sees_grants FROM envelope.key_grants WHERE key_name = 'pv_admin_key';
-- ... but holds no key privilege by being admin, and cannot read the keyring directly.
SELECT v FROM pv_data WHERE id = 1;
SELECT count(*) FROM envelope.keyring;
SELECT pkcs11_module IS NOT NULL AS admin_sees_module FROM envelope.status();
RESET ROLE;

-- Others cannot manage keys or grants, and status() shows them the state only.
SET ROLE pv_nobody;
SELECT envelope.grant_key('pv_app', 'pv_nobody', 'all');
SELECT envelope.revoke_key('pv_app', 'pv_group', 'all');
SELECT envelope.create_key('pv_nope');
SELECT * FROM envelope.key_grants;
SELECT keeper_state, keeper_pid, pkcs11_module, token_label, kek_label, last_error,
       cache_capacity > 0 AS capacity_shown
FROM envelope.status();
RESET ROLE;
SELECT keeper_pid IS NOT NULL AS pid_shown, pkcs11_module IS NOT NULL AS module_shown
FROM envelope.status();

-- Key names are compared in full: two names that share a 64-byte prefix are two keys.
SELECT envelope.create_key(repeat('é', 31) || 'ab') IS NOT NULL AS long_one;
SELECT envelope.create_key(repeat('é', 31) || 'a') IS NOT NULL AS long_two;
SELECT envelope.decrypt(envelope.encrypt('first', repeat('é', 31) || 'ab')) AS first;
SELECT k.name = repeat('é', 31) || 'a' AS sealed_under_the_named_key
FROM envelope.keyring k
WHERE k.id = encode(substring(envelope.encrypt_bytea('\x00', repeat('é', 31) || 'a')
                              FROM 2 FOR 16), 'hex')::uuid;
-- Messages never cut a multibyte character.
SELECT envelope.encrypt('x', repeat('é', 62) || 'z');

DROP TABLE pv_data;
DROP ROLE pv_nobody, pv_reader, pv_ingest, pv_member, pv_group;
DROP ROLE pv_admin;
