-- audit: the envelope.audit setting, key management events in envelope.key_events, per-role
-- key statistics in envelope.key_stats, their reset, and who may see them.
\set VERBOSITY default
SHOW envelope.audit;
SET envelope.audit = 'sometimes';
SET envelope.audit = 'all';
SHOW envelope.audit;
RESET envelope.audit;

-- Key management events: one row each, by the session user.
SELECT envelope.key_stats_reset() >= 0 AS reset;
SELECT envelope.create_key('au_key') IS NOT NULL AS created;
SELECT envelope.rotate_key('au_key') IS NOT NULL AS rotated;
CREATE ROLE au_reader;
CREATE ROLE au_nobody;
CREATE ROLE au_monitor IN ROLE pg_monitor;
CREATE ROLE au_admin IN ROLE envelope_admin;
SELECT envelope.grant_key('au_key', 'au_reader', 'decrypt');
SELECT envelope.grant_key('au_key', 'au_nobody', 'all');
SELECT envelope.revoke_key('au_key', 'au_nobody', 'all');
SELECT action, key_name, key_version, key_id IS NOT NULL AS has_id, role = session_user AS by_me,
       grantee, privilege, at <= now() AS at_ok
FROM envelope.key_events WHERE key_name = 'au_key' ORDER BY id;
-- Failed management writes no event.
SELECT envelope.rotate_key('au_no_such_key');
SELECT count(*) FROM envelope.key_events WHERE key_name = 'au_no_such_key';
-- The event table refuses actions that are not words.
\set VERBOSITY terse
INSERT INTO envelope.key_events (action, key_name) VALUES ('bad action', 'au_key');
\set VERBOSITY default

-- Statistics: seals and opens per role and key version, counted at transaction end.
CREATE TABLE au_data (id int PRIMARY KEY, v encrypted_text);
GRANT SELECT ON au_data TO au_reader, au_nobody, au_monitor, au_admin;
INSERT INTO au_data SELECT g, envelope.encrypt('au value ' || g, 'au_key') FROM generate_series(1, 5) g;
SET ROLE au_reader;
SELECT count(v::text) FROM au_data;
SELECT v FROM au_data WHERE id = 1;
RESET ROLE;
-- Denials are counted too (the transaction that was refused aborts; its counts still go in).
SET ROLE au_nobody;
SELECT v FROM au_data WHERE id = 2;
RESET ROLE;
SELECT CASE WHEN role = current_user THEN 'superuser' ELSE role END AS role, key_name,
       key_version, sealed, opened, denied, first_use <= last_use AS times_ok,
       database = current_database() AS this_db
FROM envelope.key_stats WHERE key_name = 'au_key' ORDER BY 1;
-- Another version of the key gets its own row.
SELECT envelope.rotate_key('au_key') IS NOT NULL AS rotated;
SELECT envelope.decrypt(envelope.encrypt('au three', 'au_key')) AS round_trip;
SELECT key_version, sealed, opened FROM envelope.key_stats
WHERE key_name = 'au_key' AND role = current_user ORDER BY key_version;

-- Visible to superusers, envelope_admin and pg_monitor only.
SET ROLE au_nobody;
SELECT count(*) FROM envelope.key_stats;
SELECT count(*) FROM envelope._key_stats();
SELECT count(*) FROM envelope.key_events;
SELECT envelope.key_stats_reset();
RESET ROLE;
-- Granting EXECUTE alone is not enough: the function checks the role itself.
GRANT EXECUTE ON FUNCTION envelope._key_stats(), envelope.key_stats_reset() TO au_nobody;
SET ROLE au_nobody;
SELECT count(*) FROM envelope._key_stats();
SELECT envelope.key_stats_reset();
RESET ROLE;
REVOKE EXECUTE ON FUNCTION envelope._key_stats(), envelope.key_stats_reset() FROM au_nobody;
SET ROLE au_monitor;
SELECT count(*) > 0 AS monitor_sees_stats FROM envelope.key_stats WHERE key_name = 'au_key';
SELECT count(*) > 0 AS monitor_sees_events FROM envelope.key_events WHERE key_name = 'au_key';
SELECT envelope.key_stats_reset();
RESET ROLE;
SET ROLE au_admin;
SELECT count(*) > 0 AS admin_sees_stats FROM envelope.key_stats WHERE key_name = 'au_key';
SELECT envelope.key_stats_reset() > 0 AS admin_reset;
RESET ROLE;
SELECT count(*) AS after_reset FROM envelope.key_stats WHERE key_name = 'au_key';

-- The audit line function is internal.
SET ROLE au_admin;
SELECT envelope._audit('create', 'au_key', 1, 'ok');
RESET ROLE;
SELECT envelope._audit('bad action', 'au_key', 1, 'ok');

DROP TABLE au_data;
DROP ROLE au_reader, au_nobody, au_monitor, au_admin;
