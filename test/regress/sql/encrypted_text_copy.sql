-- encrypted_text_copy: COPY text and binary in both I/O modes. Plaintext mode moves plaintext
-- (sealing on the way in); sealed mode moves the sealed form unchanged, holds no plaintext and
-- never encrypts twice. Files go to the results directory of this pg_regress run.
\set VERBOSITY default
\getenv abs_builddir PG_ABS_BUILDDIR
\set text_plain :abs_builddir '/results/et_copy_plain.txt'
\set bin_plain :abs_builddir '/results/et_copy_plain.bin'
\set text_sealed :abs_builddir '/results/et_copy_sealed.txt'
\set bin_sealed :abs_builddir '/results/et_copy_sealed.bin'

CREATE FUNCTION copy_env_bytes(encrypted_text) RETURNS bytea
    LANGUAGE sql SET envelope.io = 'sealed'
    AS $$ SELECT decode(substr(envelope.encrypted_text_out($1)::text, 8), 'base64') $$;
-- error_of: the error of a statement, without psql echoing the sealed data in a CONTEXT line.
CREATE FUNCTION copy_error_of(q text, OUT state text, OUT message text, OUT hint text)
    LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    state := 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                            hint = PG_EXCEPTION_HINT;
END
$$;

CREATE TABLE copy_src (id int PRIMARY KEY, v encrypted_text);
INSERT INTO copy_src VALUES
    (1, 'COPY-MARKER-plain-5d21'),
    (2, 'tab	and
newline and \backslash'),
    (3, ''),
    (4, NULL),
    (5, 'ünïcödé 日本 🔐'),
    (6, '\N'),
    (7, repeat('long COPY-MARKER ', 300));

-- Plaintext mode, text format: the file holds plaintext; loading it seals again.
COPY (SELECT * FROM copy_src WHERE id < 7 ORDER BY id) TO STDOUT WITH (FORMAT csv);
COPY copy_src TO :'text_plain';
SELECT position('COPY-MARKER-plain-5d21' IN pg_read_file(:'text_plain')) > 0 AS file_has_plaintext;
CREATE TABLE copy_plain_text (LIKE copy_src);
COPY copy_plain_text FROM :'text_plain';
SELECT count(*) AS rows,
       count(*) FILTER (WHERE d.v::text IS NOT DISTINCT FROM s.v::text) AS same_plaintext,
       count(*) FILTER (WHERE copy_env_bytes(d.v) = copy_env_bytes(s.v)) AS same_envelope
FROM copy_plain_text d JOIN copy_src s USING (id);

-- Plaintext mode, binary format (send/recv): the same.
COPY copy_src TO :'bin_plain' WITH (FORMAT binary);
SELECT position(convert_to('COPY-MARKER-plain-5d21', 'UTF8') IN pg_read_binary_file(:'bin_plain')) > 0
       AS file_has_plaintext;
CREATE TABLE copy_plain_bin (LIKE copy_src);
COPY copy_plain_bin FROM :'bin_plain' WITH (FORMAT binary);
SELECT count(*) AS rows,
       count(*) FILTER (WHERE d.v::text IS NOT DISTINCT FROM s.v::text) AS same_plaintext,
       count(*) FILTER (WHERE copy_env_bytes(d.v) = copy_env_bytes(s.v)) AS same_envelope
FROM copy_plain_bin d JOIN copy_src s USING (id);

-- Sealed mode, text format: the file holds only sealed values (and \N); loading it in sealed
-- mode reproduces the identical envelopes, so the identical plaintexts.
SET envelope.io = 'sealed';
COPY copy_src TO :'text_sealed';
COPY copy_src TO :'bin_sealed' WITH (FORMAT binary);
RESET envelope.io;
SELECT position('COPY-MARKER' IN pg_read_file(:'text_sealed')) = 0 AS no_plaintext,
       (SELECT count(*) FROM regexp_split_to_table(rtrim(pg_read_file(:'text_sealed'), E'\n'), E'\n') l
        WHERE l ~ E'^[0-9]+\tpgenv1:[A-Za-z0-9+/]+={0,2}$') AS sealed_lines,
       (SELECT count(*) FROM regexp_split_to_table(rtrim(pg_read_file(:'text_sealed'), E'\n'), E'\n') l
        WHERE l ~ E'^[0-9]+\t\\\\N$') AS null_lines;
SELECT position(convert_to('COPY-MARKER', 'UTF8') IN pg_read_binary_file(:'bin_sealed')) = 0
       AS binary_no_plaintext,
       position(convert_to('pgenv1:', 'UTF8') IN pg_read_binary_file(:'bin_sealed')) > 0
       AS binary_is_sealed;

SET envelope.io = 'sealed';
CREATE TABLE copy_sealed_text (LIKE copy_src);
COPY copy_sealed_text FROM :'text_sealed';
CREATE TABLE copy_sealed_bin (LIKE copy_src);
COPY copy_sealed_bin FROM :'bin_sealed' WITH (FORMAT binary);
RESET envelope.io;
SELECT 'text' AS format, count(*) AS rows,
       count(*) FILTER (WHERE d.v::text IS NOT DISTINCT FROM s.v::text) AS same_plaintext,
       count(*) FILTER (WHERE copy_env_bytes(d.v) IS NOT DISTINCT FROM copy_env_bytes(s.v))
           AS same_envelope
FROM copy_sealed_text d JOIN copy_src s USING (id)
UNION ALL
SELECT 'binary', count(*),
       count(*) FILTER (WHERE d.v::text IS NOT DISTINCT FROM s.v::text),
       count(*) FILTER (WHERE copy_env_bytes(d.v) IS NOT DISTINCT FROM copy_env_bytes(s.v))
FROM copy_sealed_bin d JOIN copy_src s USING (id);
SELECT id, v FROM copy_sealed_text WHERE id < 7 ORDER BY id;
SELECT id, left(v::text, 34) AS v_start, length(v::text) AS chars FROM copy_sealed_text WHERE id = 7;

-- Sealed data loaded in plaintext mode fails (text and binary): nothing is encrypted twice.
-- (Terse: the CONTEXT line would echo the sealed value.)
CREATE TABLE copy_wrong_mode (LIKE copy_src);
\set VERBOSITY terse
COPY copy_wrong_mode FROM :'text_sealed';
COPY copy_wrong_mode FROM :'bin_sealed' WITH (FORMAT binary);
\set VERBOSITY default
SELECT * FROM copy_error_of(format('COPY copy_wrong_mode FROM %L', :'text_sealed'));
SELECT * FROM copy_error_of(format('COPY copy_wrong_mode FROM %L WITH (FORMAT binary)', :'bin_sealed'));
SELECT count(*) AS rows_loaded FROM copy_wrong_mode;
-- ... and plaintext data loaded in sealed mode fails too.
SET envelope.io = 'sealed';
COPY copy_wrong_mode FROM :'text_plain';
COPY copy_wrong_mode FROM :'bin_plain' WITH (FORMAT binary);
RESET envelope.io;
SELECT count(*) AS rows_loaded FROM copy_wrong_mode;

-- COPY FROM STDIN in plaintext mode (text and csv), escapes included.
CREATE TABLE copy_stdin (id int, v encrypted_text);
COPY copy_stdin FROM STDIN;
1	from stdin
2	tab\there, newline\nthere, backslash \\
3	\N
4	
5	ünïcödé
\.
COPY copy_stdin FROM STDIN WITH (FORMAT csv);
6,"csv, with comma"
7,""
8,
\.
SELECT id, v, v IS NULL AS is_null, octet_length(v::text) AS bytes FROM copy_stdin ORDER BY id;
-- In sealed mode, plaintext on STDIN is refused.
SET envelope.io = 'sealed';
COPY copy_stdin FROM STDIN;
9	plaintext while sealed
\.
RESET envelope.io;
SELECT count(*) AS rows FROM copy_stdin;

DROP TABLE copy_src, copy_plain_text, copy_plain_bin, copy_sealed_text, copy_sealed_bin,
    copy_wrong_mode, copy_stdin;
DROP FUNCTION copy_env_bytes(encrypted_text), copy_error_of(text);
