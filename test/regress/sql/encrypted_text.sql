-- encrypted_text: round trips, envelope layout and padding, casts, encrypt()/decrypt() with key
-- names and context, the bytea functions, sealed I/O, tamper/truncation/relabel rejection and
-- the encryption counter with its nonce warning. Ciphertexts and ids are never printed: only
-- booleans, lengths and SQLSTATEs.
\set VERBOSITY default

-- Helpers. env_bytes: the stored envelope bytes of a value (its sealed printable form, decoded).
-- from_bytes: envelope bytes fed to the type's input function in sealed mode (verified there).
-- try_*: 'ok' or the SQLSTATE of the error.
CREATE FUNCTION env_bytes(encrypted_text) RETURNS bytea
    LANGUAGE sql SET envelope.io = 'sealed'
    AS $$ SELECT decode(substr(envelope.encrypted_text_out($1)::text, 8), 'base64') $$;
CREATE FUNCTION printable(bytea) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT 'pgenv1:' || translate(encode($1, 'base64'), E'\n', '') $$;
CREATE FUNCTION from_bytes(bytea) RETURNS encrypted_text
    LANGUAGE sql SET envelope.io = 'sealed'
    AS $$ SELECT envelope.encrypted_text_in(printable($1)::cstring) $$;
-- Sealed input checks the form only (so a restore never depends on keys); a value is
-- authenticated where it is opened. try_sealed_load: only the input; try_sealed_input: the
-- input, then opening the value (the way a restored value is read).
CREATE FUNCTION try_sealed_load(b bytea) RETURNS text
    LANGUAGE plpgsql SET envelope.io = 'sealed' AS $$
BEGIN
    PERFORM envelope.encrypted_text_in(printable(b)::cstring);
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;
CREATE FUNCTION try_sealed_input(b bytea) RETURNS text
    LANGUAGE plpgsql SET envelope.io = 'sealed' AS $$
BEGIN
    PERFORM envelope.decrypt(envelope.encrypted_text_in(printable(b)::cstring));
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;
CREATE FUNCTION try_decrypt_bytea(b bytea, ctx bytea DEFAULT NULL) RETURNS text
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM envelope.decrypt_bytea(b, ctx);
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END
$$;
CREATE FUNCTION try_sql(q text) RETURNS text
    LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
-- error_of: the full error of a statement whose text must not be echoed (it holds a sealed
-- value, which differs in every run, and psql would print it in the LINE of the error).
CREATE FUNCTION error_of(q text, OUT state text, OUT message text, OUT detail text,
                         OUT hint text)
    LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    state := 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                            detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
END
$$;

-------------------------------------------------------------------------------
-- The type is usable unqualified; storage is external (no compression attempts).
-------------------------------------------------------------------------------
CREATE TABLE people (id serial, name text, ssn encrypted_text);
SELECT format_type(atttypid, atttypmod) AS type, attstorage
FROM pg_attribute WHERE attrelid = 'people'::regclass AND attname = 'ssn';

-------------------------------------------------------------------------------
-- Round trips through the table (input seals, output opens).
-------------------------------------------------------------------------------
INSERT INTO people (name, ssn) VALUES
    ('ascii', '123-45-6789'),
    ('utf8', 'Zoë Ñandú 日本語 🔐'),
    ('empty', ''),
    ('one', 'x'),
    ('null', NULL);
SELECT name, ssn, ssn IS NULL AS is_null, length(ssn::text) AS chars,
       octet_length(ssn::text) AS bytes
FROM people ORDER BY id;
-- NULL stays NULL (the column, the casts and the functions).
SELECT ssn IS NULL AS stored_null, ssn::text IS NULL AS cast_null,
       envelope.decrypt(ssn) IS NULL AS decrypt_null
FROM people WHERE name = 'null';
SELECT NULL::encrypted_text IS NULL AS null_literal,
       envelope.encrypt(NULL) IS NULL AS encrypt_null,
       envelope.encrypt(NULL, 'default', '\x01') IS NULL AS encrypt_null_with_args,
       envelope.decrypt(NULL) IS NULL AS decrypt_null,
       envelope.encrypt_bytea(NULL) IS NULL AS encrypt_bytea_null,
       envelope.decrypt_bytea(NULL) IS NULL AS decrypt_bytea_null;
-- NULL key name means envelope.default_key, NULL context means no context.
SELECT envelope.decrypt(envelope.encrypt('k', NULL, NULL)) AS null_key_and_context,
       envelope.decrypt(envelope.encrypt('k'), NULL) AS null_context,
       envelope.decrypt_bytea(envelope.encrypt_bytea('\xab', NULL, NULL), NULL) AS bytea_nulls;
-- An empty context is the same associated data as no context.
SELECT envelope.decrypt(envelope.encrypt('e', NULL, '\x'::bytea)) AS empty_context_is_none;

-- The stored values are envelopes (not plaintext), each 45 bytes + the padded plaintext.
SELECT name, octet_length(env_bytes(ssn)) AS envelope_len,
       get_byte(env_bytes(ssn), 0) AS version,
       substr(env_bytes(ssn), 2, 16) = (SELECT uuid_send(id) FROM envelope.keyring
                                        WHERE name = 'default' AND state = 'active') AS default_key_id,
       -- (only checked for plaintexts long enough not to occur in random bytes by chance)
       CASE WHEN octet_length(ssn::text) >= 8
            THEN position(convert_to(ssn::text, 'UTF8') IN env_bytes(ssn)) = 0 END
           AS no_plaintext_inside
FROM people WHERE ssn IS NOT NULL ORDER BY id;

-- 1 MiB value.
CREATE TABLE big (v encrypted_text);
INSERT INTO big SELECT repeat('0123456789abcdef', 65536);
SELECT length(v::text) AS chars, v::text = repeat('0123456789abcdef', 65536) AS round_trip,
       octet_length(env_bytes(v)) AS envelope_len, pg_column_size(v) AS stored
FROM big;
DROP TABLE big;

-- A value over 2 kB goes out of line to TOAST, uncompressed: its stored size is the plaintext
-- plus 45 bytes of envelope plus the padding, even for a very compressible plaintext.
CREATE TABLE toasted (id int, v encrypted_text);
INSERT INTO toasted VALUES (1, repeat('a', 3000)), (2, repeat('é', 5000));
SELECT id, length(v::text) AS chars, octet_length(v::text) AS plain_bytes,
       pg_column_size(v) AS stored, pg_column_size(v) - octet_length(v::text) AS overhead,
       v::text = CASE id WHEN 1 THEN repeat('a', 3000) ELSE repeat('é', 5000) END AS round_trip
FROM toasted ORDER BY id;
SELECT pg_relation_size(reltoastrelid) > 0 AS toast_used FROM pg_class WHERE oid = 'toasted'::regclass;
DROP TABLE toasted;

-------------------------------------------------------------------------------
-- Envelope length = 45 + padded length (plaintext || 0x80, rounded up to pad_block).
-------------------------------------------------------------------------------
SHOW envelope.pad_block;
SELECT n, octet_length(env_bytes(repeat('p', n)::encrypted_text)) AS text_len,
       octet_length(envelope.encrypt_bytea(convert_to(repeat('p', n), 'UTF8'))) AS bytea_len,
       45 + ((n + 1 + 15) / 16) * 16 AS want
FROM unnest(ARRAY[0, 1, 14, 15, 16, 17, 31, 32, 100]) AS n ORDER BY n;
SET envelope.pad_block = 0;
SELECT n, octet_length(env_bytes(repeat('p', n)::encrypted_text)) AS text_len,
       octet_length(envelope.encrypt_bytea(convert_to(repeat('p', n), 'UTF8'))) AS bytea_len,
       45 + n + 1 AS want
FROM unnest(ARRAY[0, 1, 15, 16, 17, 100]) AS n ORDER BY n;
SET envelope.pad_block = 64;
SELECT n, octet_length(env_bytes(repeat('p', n)::encrypted_text)) AS text_len,
       octet_length(envelope.encrypt_bytea(convert_to(repeat('p', n), 'UTF8'))) AS bytea_len,
       45 + ((n + 1 + 63) / 64) * 64 AS want
FROM unnest(ARRAY[0, 1, 62, 63, 64, 100, 127, 128]) AS n ORDER BY n;
-- Values sealed under any padding open under any other setting.
SET envelope.pad_block = 4096;
SELECT octet_length(env_bytes('abc'::encrypted_text)) AS len_4096,
       ('abc'::encrypted_text)::text AS round_trip;
SET envelope.pad_block = 1;
SELECT octet_length(env_bytes('abc'::encrypted_text)) AS len_1;
RESET envelope.pad_block;
SELECT count(*) AS opened_under_default_padding FROM people WHERE ssn::text IS NOT NULL;
-- Only 0 or powers of two up to 4096.
SET envelope.pad_block = 3;
SET envelope.pad_block = 8192;
SET envelope.pad_block = -1;
SHOW envelope.pad_block;

-------------------------------------------------------------------------------
-- Randomised: the same plaintext twice gives different envelopes (same key, other nonce).
-------------------------------------------------------------------------------
WITH two AS (SELECT env_bytes('same'::encrypted_text) AS a, env_bytes('same'::encrypted_text) AS b)
SELECT a <> b AS envelopes_differ, substr(a, 1, 17) = substr(b, 1, 17) AS same_header,
       substr(a, 18, 12) <> substr(b, 18, 12) AS nonces_differ,
       substr(a, 30) <> substr(b, 30) AS ciphertexts_differ
FROM two;
SELECT count(DISTINCT env_bytes(envelope.encrypt('same'))) AS distinct_envelopes
FROM generate_series(1, 50);

-------------------------------------------------------------------------------
-- Casts: text -> encrypted_text is an assignment cast, encrypted_text -> text explicit.
-------------------------------------------------------------------------------
SELECT castcontext, castmethod
FROM pg_cast WHERE castsource = 'text'::regtype AND casttarget = 'encrypted_text'::regtype;
SELECT castcontext, castmethod
FROM pg_cast WHERE castsource = 'encrypted_text'::regtype AND casttarget = 'text'::regtype;
SELECT ('abc'::text)::encrypted_text::text AS text_round_trip,
       CAST(CAST('xyz' AS text) AS encrypted_text)::text AS cast_syntax,
       ('varchar'::varchar)::encrypted_text::text AS from_varchar;
-- No implicit cast either way.
CREATE FUNCTION takes_encrypted(encrypted_text) RETURNS text LANGUAGE sql
    AS $$ SELECT $1::text $$;
SELECT takes_encrypted('implicit?'::text);
SELECT takes_encrypted('literal');
SELECT length('abc'::encrypted_text);
SELECT upper(ssn) FROM people WHERE name = 'ascii';
DROP FUNCTION takes_encrypted(encrypted_text);

-- Assignment cast in INSERT ... SELECT from a text column and in UPDATE.
CREATE TABLE src (name text, ssn text);
INSERT INTO src VALUES ('a', 'from text column'), ('b', ''), ('c', NULL), ('d', 'ünïcödé');
CREATE TABLE dst (name text, ssn encrypted_text);
INSERT INTO dst SELECT name, ssn FROM src;
SELECT d.name, d.ssn::text AS ssn, d.ssn::text IS NOT DISTINCT FROM s.ssn AS same
FROM dst d JOIN src s USING (name) ORDER BY d.name;
UPDATE dst SET ssn = name || '-updated' WHERE name = 'a';
SELECT ssn FROM dst WHERE name = 'a';
-- Assignment also works when the session is in sealed mode: the cast always seals plaintext.
SET envelope.io = 'sealed';
INSERT INTO dst SELECT 'e', 'cast while sealed'::text;
RESET envelope.io;
SELECT ssn FROM dst WHERE name = 'e';

-------------------------------------------------------------------------------
-- encrypt()/decrypt() with a key name and a context.
-------------------------------------------------------------------------------
SELECT envelope.create_key('et_tenant') IS NOT NULL AS created;
CREATE TABLE ctx_values AS
SELECT envelope.encrypt('tenant secret', 'et_tenant', convert_to('row-42', 'UTF8')) AS v;
SELECT substr(env_bytes(v), 2, 16) = (SELECT uuid_send(id) FROM envelope.keyring
                                      WHERE name = 'et_tenant') AS sealed_with_et_tenant
FROM ctx_values;
SELECT envelope.decrypt(v, convert_to('row-42', 'UTF8')) AS right_context FROM ctx_values;
SELECT envelope.decrypt(v, convert_to('row-43', 'UTF8')) FROM ctx_values;
SELECT envelope.decrypt(v) FROM ctx_values;
SELECT v::text FROM ctx_values;
SELECT v FROM ctx_values;
SELECT try_sql($q$SELECT envelope.decrypt(v, '\x') FROM ctx_values$q$) AS empty_context;
-- In sealed mode the value is printed sealed (no decryption) and reloads: its context is
-- still needed to open it.
SET envelope.io = 'sealed';
SELECT envelope.encrypted_text_out(v)::text LIKE 'pgenv1:%' AS printed_sealed FROM ctx_values;
SELECT try_sealed_load(env_bytes(v)) AS sealed_load_of_context_value,
       try_sealed_input(env_bytes(v)) AS opened_without_context FROM ctx_values;
RESET envelope.io;
-- A context value made with the default key too.
SELECT envelope.decrypt(envelope.encrypt('default+ctx', NULL, '\x0102'), '\x0102') AS ok,
       try_sql($q$SELECT envelope.decrypt(envelope.encrypt('x', NULL, '\x0102'), '\x0103')$q$)
           AS wrong;

-- Unknown key names.
SELECT envelope.encrypt('x', 'no_such_key');
SELECT envelope.encrypt_bytea('\x00', 'no_such_key');
SELECT try_sql($q$SELECT envelope.encrypt('x', 'no_such_key')$q$) AS unknown_key;
SET envelope.default_key = 'no_such_key';
INSERT INTO people (name, ssn) VALUES ('nokey', 'x');
SELECT 'x'::text::encrypted_text;
SELECT envelope.encrypt('explicit key still works', 'default')::text AS explicit_key;
RESET envelope.default_key;
-- default_key picks the key used by input and by encrypt() without a key name.
SET envelope.default_key = 'et_tenant';
SELECT substr(env_bytes('via default_key'::encrypted_text), 2, 16) =
       (SELECT uuid_send(id) FROM envelope.keyring WHERE name = 'et_tenant') AS input_uses_it,
       substr(env_bytes(envelope.encrypt('x')), 2, 16) =
       (SELECT uuid_send(id) FROM envelope.keyring WHERE name = 'et_tenant') AS encrypt_uses_it;
RESET envelope.default_key;

-------------------------------------------------------------------------------
-- encrypt_bytea()/decrypt_bytea(): arbitrary bytes (NULs included), with and without context.
-------------------------------------------------------------------------------
SELECT envelope.decrypt_bytea(envelope.encrypt_bytea('\x00ff0080000000')) AS round_trip,
       envelope.decrypt_bytea(envelope.encrypt_bytea('\x')) AS empty,
       octet_length(envelope.encrypt_bytea('\x')) AS empty_len,
       get_byte(envelope.encrypt_bytea('\x01'), 0) AS version,
       envelope.decrypt_bytea(envelope.encrypt_bytea('\xdeadbeef', 'et_tenant', '\x99'), '\x99')
           AS key_and_context;
SELECT envelope.decrypt_bytea(envelope.encrypt_bytea('\xdeadbeef', 'et_tenant', '\x99'), '\x98');
SELECT envelope.decrypt_bytea(envelope.encrypt_bytea('\xdeadbeef', 'et_tenant', '\x99'));
SELECT envelope.decrypt_bytea(envelope.encrypt_bytea('\xdeadbeef'), '\x99');
SELECT envelope.decrypt_bytea(decode(repeat('00', 200), 'hex')) AS zeros;
SELECT envelope.decrypt_bytea('\x01');
SELECT envelope.decrypt_bytea('\x');
SELECT envelope.decrypt_bytea(set_byte(envelope.encrypt_bytea('\x01'), 0, 2));
SELECT envelope.encrypt_bytea(convert_to('x', 'UTF8')) <> envelope.encrypt_bytea(convert_to('x', 'UTF8'))
       AS bytea_randomised;

-- A bytea envelope is not a text value and vice versa (the payload kind is authenticated).
SELECT try_sealed_input(envelope.encrypt_bytea(convert_to('bytes', 'UTF8'))) AS bytea_as_text;
SELECT from_bytes(envelope.encrypt_bytea(convert_to('bytes', 'UTF8')));
SELECT envelope.decrypt_bytea(env_bytes('text value'::encrypted_text));
SELECT try_decrypt_bytea(env_bytes('text value'::encrypted_text)) AS text_as_bytea;
-- ... while the same round trip with matching kinds works.
SELECT from_bytes(env_bytes('text value'::encrypted_text))::text AS text_as_text;

-------------------------------------------------------------------------------
-- Sealed I/O mode.
-------------------------------------------------------------------------------
SET envelope.io = 'sealed';
SELECT ssn::text AS cast_still_decrypts FROM people WHERE name = 'ascii';
SELECT ssn AS printed FROM people WHERE name = 'ascii' \gset sealed_
SELECT :'sealed_printed' ~ '^pgenv1:[A-Za-z0-9+/]+={0,2}$' AS looks_sealed,
       length(:'sealed_printed') AS printed_len;
-- Fed back in sealed mode: the same envelope, the same plaintext.
CREATE TABLE reloaded (ssn encrypted_text);
INSERT INTO reloaded VALUES (:'sealed_printed');
SELECT r.ssn::text = p.ssn::text AS same_plaintext, env_bytes(r.ssn) = env_bytes(p.ssn) AS same_envelope
FROM reloaded r, people p WHERE p.name = 'ascii';
-- Every row round-trips through its printed sealed form.
SELECT count(*) AS rows, bool_and(from_bytes(env_bytes(ssn))::text = ssn::text) AS all_same
FROM people WHERE ssn IS NOT NULL;
-- Plaintext is not accepted as input in sealed mode.
INSERT INTO reloaded VALUES ('plain text while sealed');
RESET envelope.io;
SELECT ssn AS plaintext_mode FROM reloaded;

-- A sealed value fed to plaintext input is refused, never encrypted a second time.
-- (Terse: the error position would echo the sealed literal; error_of shows the hint.)
\set VERBOSITY terse
INSERT INTO reloaded VALUES (:'sealed_printed');
SELECT :'sealed_printed'::encrypted_text;
\set VERBOSITY default
\x on
SELECT * FROM error_of(format('INSERT INTO reloaded VALUES (%L)', :'sealed_printed'));
SELECT * FROM error_of(format('SELECT %L::encrypted_text', :'sealed_printed'));
\x off
SELECT (:'sealed_printed'::text)::encrypted_text;
SELECT envelope.encrypt(:'sealed_printed');
SELECT count(*) AS still_one_row FROM reloaded;
-- Text that merely starts with the prefix but is not an envelope is ordinary plaintext.
SELECT ('pgenv1:'::encrypted_text)::text AS bare_prefix,
       ('pgenv1:hello'::encrypted_text)::text AS not_base64,
       ('pgenv1:AAAA'::encrypted_text)::text AS too_short_to_be_sealed;

-- Garbage in sealed mode.
SET envelope.io = 'sealed';
SELECT 'pgenv2:AAAA'::encrypted_text;
\set VERBOSITY terse
SELECT 'PGENV1:' || substr(:'sealed_printed', 8) AS upper_prefix \gset
SELECT :'upper_prefix'::encrypted_text;
SELECT ' ' || :'sealed_printed' AS leading_space \gset
SELECT :'leading_space'::encrypted_text;
SELECT 'pgenv1:!!!!'::encrypted_text;
SELECT 'pgenv1:AAA'::encrypted_text;
SELECT :'sealed_printed' || E'\n' AS trailing_newline \gset
SELECT :'trailing_newline'::encrypted_text;
SELECT ''::encrypted_text;
SELECT printable(decode(repeat('01', 45), 'hex')) AS too_short \gset
SELECT :'too_short'::encrypted_text;
-- 46 bytes of 0x01 parse as version 1 with an id that is no key.
SELECT try_sealed_input(decode(repeat('01', 46), 'hex')) AS min_length_garbage;
SELECT printable(set_byte(decode(substr(:'sealed_printed', 8), 'base64'), 0, 2)) AS version_2 \gset
SELECT :'version_2'::encrypted_text;
SELECT printable(set_byte(decode(substr(:'sealed_printed', 8), 'base64'), 0, 0)) AS version_0 \gset
SELECT :'version_0'::encrypted_text;
\set VERBOSITY default
\x on
SELECT * FROM error_of(format('SELECT %L::encrypted_text', :'version_2'));
\x off
RESET envelope.io;

-------------------------------------------------------------------------------
-- Relabelling: a value's DEK id replaced by another existing key's id fails authentication
-- (the header is associated data), even though that key unwraps fine.
-------------------------------------------------------------------------------
SELECT try_sealed_input(overlay(env_bytes(ssn) PLACING (SELECT uuid_send(id) FROM envelope.keyring
                                                    WHERE name = 'et_tenant') FROM 2 FOR 16))
       AS relabelled_to_et_tenant
FROM people WHERE name = 'ascii';
SELECT from_bytes(overlay(env_bytes(ssn) PLACING (SELECT uuid_send(id) FROM envelope.keyring
                                              WHERE name = 'et_tenant') FROM 2 FOR 16))
FROM people WHERE name = 'ascii';
SELECT try_decrypt_bytea(overlay(envelope.encrypt_bytea('\x0102', 'et_tenant') PLACING
                                 (SELECT uuid_send(id) FROM envelope.keyring
                                  WHERE name = 'default' AND state = 'active') FROM 2 FOR 16))
       AS bytea_relabelled_to_default;
-- An id that is no key at all.
SELECT try_sealed_input(overlay(env_bytes(ssn) PLACING '\x000102030405060708090a0b0c0d0e0f'
                                FROM 2 FOR 16)) AS relabelled_to_unknown_id
FROM people WHERE name = 'ascii';

-------------------------------------------------------------------------------
-- Every single-bit flip is rejected; so is every truncation.
-------------------------------------------------------------------------------
CREATE TABLE victim AS
SELECT env_bytes('hello'::encrypted_text) AS small, env_bytes(repeat('K', 1024)::encrypted_text) AS big,
       envelope.encrypt_bytea('\x68656c6c6f', NULL, '\x0c') AS small_bytea;
SELECT octet_length(small) AS small_len, octet_length(big) AS big_len,
       octet_length(small_bytea) AS small_bytea_len,
       try_sealed_input(small) AS small_intact, try_sealed_input(big) AS big_intact,
       try_decrypt_bytea(small_bytea, '\x0c') AS small_bytea_intact
FROM victim;
-- All bits of the small text value (version, id, nonce, ciphertext, tag).
SELECT count(*) AS positions_tried, count(*) FILTER (WHERE r = 'ok') AS accepted,
       string_agg(DISTINCT r, ',' ORDER BY r) AS sqlstates
FROM victim, generate_series(0, octet_length(small) * 8 - 1) AS bit,
     LATERAL try_sealed_input(set_bit(small, bit, 1 - get_bit(small, bit))) AS r;
-- Per field: version -> 0A000, id -> 42704 (no such key), nonce/ciphertext/tag -> XX001.
SELECT CASE WHEN bit < 8 THEN '1 version' WHEN bit < 136 THEN '2 dek id'
            WHEN bit < 232 THEN '3 nonce' WHEN bit < (octet_length(small) - 16) * 8 THEN '4 ciphertext'
            ELSE '5 tag' END AS field,
       count(*) AS positions, string_agg(DISTINCT r, ',' ORDER BY r) AS sqlstates
FROM victim, generate_series(0, octet_length(small) * 8 - 1) AS bit,
     LATERAL try_sealed_input(set_bit(small, bit, 1 - get_bit(small, bit))) AS r
GROUP BY 1 ORDER BY 1;
-- Every 61st bit over the whole ~1 KiB value.
SELECT count(*) AS positions_tried, count(*) FILTER (WHERE r = 'ok') AS accepted,
       min(bit) AS first_bit, max(bit) AS last_bit, octet_length(big) * 8 AS total_bits
FROM victim, generate_series(0, octet_length(big) * 8 - 1, 61) AS bit,
     LATERAL try_sealed_input(set_bit(big, bit, 1 - get_bit(big, bit))) AS r
GROUP BY big;
-- Every bit of the bytea envelope (with its context).
SELECT count(*) AS positions_tried, count(*) FILTER (WHERE r = 'ok') AS accepted
FROM victim, generate_series(0, octet_length(small_bytea) * 8 - 1) AS bit,
     LATERAL try_decrypt_bytea(set_bit(small_bytea, bit, 1 - get_bit(small_bytea, bit)), '\x0c') AS r;
-- Truncations: every length from 0 to len-1 (and one extra byte appended).
SELECT count(*) AS lengths_tried, count(*) FILTER (WHERE r = 'ok') AS accepted,
       string_agg(DISTINCT r, ',' ORDER BY r) AS sqlstates
FROM victim, generate_series(0, octet_length(small) - 1) AS n,
     LATERAL try_sealed_input(substr(small, 1, n)) AS r;
SELECT count(*) AS lengths_tried, count(*) FILTER (WHERE r = 'ok') AS accepted,
       string_agg(DISTINCT r, ',' ORDER BY r) AS sqlstates
FROM victim, generate_series(0, octet_length(big) - 1) AS n,
     LATERAL try_sealed_input(substr(big, 1, n)) AS r;
SELECT count(*) AS lengths_tried, count(*) FILTER (WHERE r = 'ok') AS accepted,
       string_agg(DISTINCT r, ',' ORDER BY r) AS sqlstates
FROM victim, generate_series(0, octet_length(small_bytea) - 1) AS n,
     LATERAL try_decrypt_bytea(substr(small_bytea, 1, n), '\x0c') AS r;
SELECT try_sealed_input(small || '\x00'::bytea) AS extra_zero_byte,
       try_decrypt_bytea(small_bytea || '\x00'::bytea, '\x0c') AS bytea_extra_zero_byte
FROM victim;
DROP TABLE victim;

-------------------------------------------------------------------------------
-- Encryption counts and the nonce warning.
-------------------------------------------------------------------------------
-- The keys view counts encryptions per DEK.
SELECT encryptions AS before FROM envelope.keys WHERE name = 'et_tenant' \gset
SELECT count(envelope.encrypt('count me', 'et_tenant')) AS sealed FROM generate_series(1, 3);
SELECT encryptions - :before AS increase FROM envelope.keys WHERE name = 'et_tenant';
SELECT count(envelope.encrypt_bytea('\x00', 'et_tenant')) AS sealed FROM generate_series(1, 2);
SELECT encryptions - :before AS increase FROM envelope.keys WHERE name = 'et_tenant';
-- Decryption does not count.
SELECT envelope.decrypt(envelope.encrypt('d', 'et_tenant')) FROM generate_series(1, 2);
SELECT encryptions - :before AS increase FROM envelope.keys WHERE name = 'et_tenant';
-- The default key's count grows with column input.
SELECT encryptions AS default_before FROM envelope.keys WHERE name = 'default' AND state = 'active' \gset
INSERT INTO people (name, ssn) SELECT 'bulk', 'v' || g FROM generate_series(1, 10) g;
SELECT encryptions - :default_before >= 10 AS default_increased
FROM envelope.keys WHERE name = 'default' AND state = 'active';

-- The threshold is for superusers only.
CREATE ROLE et_user;
SET ROLE et_user;
SET envelope.nonce_warning_threshold = 5;
RESET ROLE;
DROP ROLE et_user;

-- A key with a fixed id (made as create_key() does, so the WARNING text is stable): once its
-- count reaches the threshold this backend warns exactly once.
INSERT INTO envelope.keyring (id, name, version, state, kek_label, wrapped_dek)
SELECT '00000000-0000-4000-8000-0000000000e7', 'et_nonce', 1, 'active', w.kek_label, w.wrapped_dek
FROM envelope._new_wrapped_dek('00000000-0000-4000-8000-0000000000e7') w;
SELECT envelope.decrypt(envelope.encrypt('before threshold', 'et_nonce')) AS warmup;
SELECT encryptions + 2 AS threshold FROM envelope.keys WHERE name = 'et_nonce' \gset
SET envelope.nonce_warning_threshold = :threshold;
SELECT envelope.encrypt('one', 'et_nonce') IS NOT NULL AS sealed_one;
SELECT envelope.encrypt('two', 'et_nonce') IS NOT NULL AS sealed_two;
SELECT envelope.encrypt('three', 'et_nonce') IS NOT NULL AS sealed_three;
SELECT count(envelope.encrypt('more', 'et_nonce')) AS sealed_more FROM generate_series(1, 5);
SELECT encryptions - :threshold AS past_threshold FROM envelope.keys WHERE name = 'et_nonce';
RESET envelope.nonce_warning_threshold;

DROP TABLE people, dst, src, reloaded, ctx_values;

-- Per backend: a new session warns again, once, on its first encryption past the threshold.
\c
SET envelope.nonce_warning_threshold = 3;
SELECT count(envelope.encrypt('new backend', 'et_nonce')) AS sealed FROM generate_series(1, 3);
SELECT envelope.encrypt('and again', 'et_nonce') IS NOT NULL AS sealed_again;
RESET envelope.nonce_warning_threshold;

-- Keyring rows are never deleted: shred this test's keys instead.
SELECT count(envelope.destroy_key(name, version, force => true)) AS shredded FROM envelope.keyring
WHERE name IN ('et_tenant', 'et_nonce') AND state <> 'destroyed';
DROP FUNCTION error_of(text), try_sql(text), try_decrypt_bytea(bytea, bytea),
    try_sealed_input(bytea), try_sealed_load(bytea), from_bytes(bytea), printable(bytea), env_bytes(encrypted_text);
