-- trustpoint: the SQL-visible error paths of the Trustpoint migration that need no legacy KEK
-- (t_trustpoint covers imports and round trips with a real legacy KEK in the token).
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE FUNCTION tp_try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
SELECT envelope.create_key('tp_key') IS NOT NULL AS created;

-- import_legacy_value: malformed fields are 22P02 and never echoed.
SELECT envelope.import_legacy_value('not*base64!', 'tp_key');
SELECT envelope.import_legacy_value('AAAA', 'tp_key');
SELECT t AS input, tp_try(format('SELECT envelope.import_legacy_value(%L, %L)', t, 'tp_key'))
FROM (VALUES ('not*base64!'), ('    '), (''), ('QUJD QUJD'), ('QUJDRA=='),
             (E'QUJD\n'), ('QUJ='),
             -- 40 bytes (shorter than nonce, tag and one block)
             (encode(substr(sha256('a') || sha256('b'), 1, 40), 'base64')),
             -- 28 + 20 bytes: not whole blocks
             (encode(substr(sha256('a') || sha256('b'), 1, 48), 'base64')))
     AS v(t);
SELECT position('not*base64!' IN tp_try('SELECT envelope.import_legacy_value(''not*base64!'', ''tp_key'')')) = 0
    AS input_not_echoed;
-- A well-formed field the key does not open: XX001.
SELECT envelope.import_legacy_value(
    replace(encode(substr(sha256('n') || sha256('t') || sha256('c'), 1, 92), 'base64'), E'\n', ''),
    'tp_key') IS NULL;
SELECT tp_try(format('SELECT envelope.import_legacy_value(%L, %L)',
    encode(substr(sha256('n') || sha256('t'), 1, 44), 'base64'), 'tp_key')) AS wrong_key;
-- Unknown keys; NULLs give NULL.
SELECT envelope.import_legacy_value('QUJD', 'tp_no_such_key');
SELECT envelope.import_legacy_value(NULL, 'tp_key') IS NULL AS null_field,
       envelope.import_legacy_value('QUJD', NULL) IS NULL AS null_key;

-- Privileges: encrypt and decrypt on the key, checked before the field is looked at.
CREATE ROLE tp_clerk;
SET ROLE tp_clerk;
SELECT envelope.import_legacy_value('not*base64!', 'tp_key');
RESET ROLE;
SELECT envelope.grant_key('tp_key', 'tp_clerk', 'encrypt');
SET ROLE tp_clerk;
SELECT envelope.import_legacy_value('not*base64!', 'tp_key');
RESET ROLE;
SELECT envelope.grant_key('tp_key', 'tp_clerk', 'decrypt');
SET ROLE tp_clerk;
SELECT tp_try('SELECT envelope.import_legacy_value(''not*base64!'', ''tp_key'')') AS with_both;
-- Importing keys is key management: not for ordinary roles.
SELECT envelope.import_legacy_key('tp_clerk_key', '\x00');
RESET ROLE;

-- import_legacy_key: argument checks before the keeper is asked; nothing is stored.
SELECT envelope.import_legacy_key('tp_key', decode(repeat('00', 40), 'hex'));
SELECT envelope.import_legacy_key('', decode(repeat('00', 40), 'hex'));
SELECT envelope.import_legacy_key(NULL, decode(repeat('00', 40), 'hex'));
SELECT envelope.import_legacy_key('tp_imp', '\x0001');
SELECT envelope.import_legacy_key('tp_imp', decode(repeat('00', 41), 'hex'));
SELECT envelope.import_legacy_key('tp_imp', decode(repeat('00', 40), 'hex'), 'pg_envelope-kek');
SELECT envelope.import_legacy_key('tp_imp', decode(repeat('00', 40), 'hex'), repeat('k', 64));
SELECT envelope.import_legacy_key('tp_imp', decode(repeat('00', 40), 'hex'), '');
SELECT envelope.import_legacy_key('tp_imp', decode(repeat('00', 40), 'hex'));
SELECT envelope.import_legacy_key('tp_imp', decode(repeat('00', 40), 'hex'), 'tp-no-such-kek');
SELECT count(*) AS stored FROM envelope.keyring WHERE name = 'tp_imp';
SELECT count(*) AS events FROM envelope.key_events WHERE key_name = 'tp_imp';

-- Both functions are documented in the catalog.
SELECT p.oid::regprocedure AS function, obj_description(p.oid, 'pg_proc') IS NOT NULL AS commented
FROM pg_proc p
WHERE p.pronamespace = 'envelope'::regnamespace AND p.proname LIKE '%legacy%'
ORDER BY 1::text;
SELECT has_function_privilege('public', 'envelope.import_legacy_value(text, text)', 'execute') AS value_public,
       has_function_privilege('public', 'envelope.import_legacy_key(text, bytea, text, text)', 'execute') AS key_public,
       has_function_privilege('envelope_admin', 'envelope.import_legacy_key(text, bytea, text, text)', 'execute') AS key_admin;

SELECT envelope.revoke_key('tp_key', 'tp_clerk', 'all');
DROP ROLE tp_clerk;
DROP FUNCTION tp_try(text);
