-- blind_index: equality search on encrypted_text through blind indexes (envelope.blind_ops),
-- unique tags (envelope.blind_tag), index keys, the search privilege, loud key failures.
\set VERBOSITY default
SELECT envelope.create_key('bi_data') IS NOT NULL AS created;
SELECT envelope.create_index_key('bi_ssn') IS NOT NULL AS created;
SELECT envelope.create_index_key('bi_mail') IS NOT NULL AS created;
SELECT envelope.create_index_key('bi_coarse') IS NOT NULL AS created;
SELECT name, version, state, purpose FROM envelope.keys WHERE name LIKE 'bi_%' ORDER BY name;

-- Index keys and data keys never stand in for each other.
SELECT envelope.encrypt('x', 'bi_ssn');
SET envelope.default_key = 'bi_ssn';
SELECT 'x'::text::encrypted_text;
RESET envelope.default_key;
SELECT envelope.blind_tag('x', 'bi_data');
SELECT envelope.create_index_key('bi_ssn');
SELECT envelope.rotate_key('bi_ssn');
UPDATE envelope.keyring SET purpose = 'data' WHERE name = 'bi_coarse';

SET envelope.default_key = 'bi_data';
CREATE TABLE bi_people (id int PRIMARY KEY, ssn encrypted_text, email encrypted_text);
INSERT INTO bi_people
SELECT g, format('%s-%s-%s', 100 + g % 900, 10 + g % 90, 1000 + g), format('user%s@example.com', g)
FROM generate_series(1, 2000) g;
INSERT INTO bi_people VALUES (3001, '078-05-1120', 'Alice@Example.COM'),
    (3002, '', 'ﬁrst@example.com'), (3003, NULL, NULL), (3004, 'Grüße, 東京', 'bob@example.com'),
    (3005, '078-05-1120', 'ALICE@example.com');

-- The options are checked when the index is created.
CREATE INDEX ON bi_people USING hash (ssn envelope.blind_ops);
CREATE INDEX ON bi_people USING hash (ssn envelope.blind_ops (key = 'no_such_key'));
CREATE INDEX ON bi_people USING hash (ssn envelope.blind_ops (key = 'bi_data'));
CREATE INDEX ON bi_people USING hash (ssn envelope.blind_ops (key = 'bi_ssn', bits = 33));
CREATE INDEX ON bi_people USING hash (ssn envelope.blind_ops (key = 'bi_ssn', normalization = 'upper'));
CREATE INDEX bi_people_ssn ON bi_people USING hash (ssn envelope.blind_ops (key = 'bi_ssn'));
CREATE INDEX bi_people_email ON bi_people
    USING hash (email envelope.blind_ops (key = 'bi_mail', normalization = 'casefold'));
ANALYZE bi_people;

-- The planner answers = with the index (and rechecks the plaintext).
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM bi_people WHERE ssn = '078-05-1120';
SELECT id FROM bi_people WHERE ssn = '078-05-1120' ORDER BY id;
SELECT id, ssn FROM bi_people WHERE ssn = '101-11-1001';
SELECT id FROM bi_people WHERE ssn = 'not there';
SELECT id FROM bi_people WHERE ssn = '';
SELECT id FROM bi_people WHERE ssn = 'Grüße, 東京';
SELECT count(*) FROM bi_people WHERE ssn = NULL;
SELECT count(*) FROM bi_people WHERE ssn IS NULL;
-- A prepared statement: the probe is computed at execution.
PREPARE bi_find(text) AS SELECT id FROM bi_people WHERE ssn = $1 ORDER BY id;
EXECUTE bi_find('078-05-1120');
EXECUTE bi_find('102-12-1002');
-- The same rows without the index.
RESET enable_seqscan;
SET enable_indexscan = off;
SET enable_bitmapscan = off;
SELECT id FROM bi_people WHERE ssn = '078-05-1120' ORDER BY id;
SELECT count(*) FROM bi_people WHERE ssn <> '078-05-1120';
RESET enable_indexscan;
RESET enable_bitmapscan;

-- Normalisation: matches() with the index's normalization uses it; = stays exact.
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM bi_people WHERE envelope.matches(email, 'alice@example.com', 'casefold');
SELECT id FROM bi_people WHERE envelope.matches(email, 'alice@example.com', 'casefold') ORDER BY id;
SELECT id FROM bi_people WHERE envelope.matches(email, 'FIRST@EXAMPLE.COM', 'casefold');
SELECT id FROM bi_people WHERE email = 'Alice@Example.COM';
SELECT id FROM bi_people WHERE email = 'alice@example.com';
-- Another normalization cannot use this index (a sequential scan answers).
EXPLAIN (COSTS OFF) SELECT id FROM bi_people WHERE envelope.matches(email, 'alice@example.com', 'nfkc');
SELECT id FROM bi_people WHERE envelope.matches(email, 'ﬁrst@example.com', 'nfkc');
SELECT envelope.matches('x'::text::encrypted_text, 'x', 'upper');
RESET enable_seqscan;

-- Truncated tags: 2 bits leave four hash values for 2005 rows; the recheck keeps answers exact.
CREATE INDEX bi_people_coarse ON bi_people USING hash (ssn envelope.blind_ops (key = 'bi_coarse', bits = 2));
DROP INDEX bi_people_ssn;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM bi_people WHERE ssn = '078-05-1120';
SELECT id FROM bi_people WHERE ssn = '078-05-1120' ORDER BY id;
SELECT id FROM bi_people WHERE ssn = '103-13-1003';
RESET enable_seqscan;
DROP INDEX bi_people_coarse;
CREATE INDEX bi_people_ssn ON bi_people USING hash (ssn envelope.blind_ops (key = 'bi_ssn'));

-- Probes: made by tag_probe() only.
SELECT 'x'::envelope.tag_probe;
SELECT envelope.tag_probe('x', 'bi_ssn', 'none', 0);
SELECT envelope.tag_probe('x', 'bi_ssn', 'lower', 32);
SELECT length(envelope.tag_probe('x', 'bi_ssn', 'none', 32)::text);
SELECT envelope.blind_hash(ssn) FROM bi_people WHERE id = 1;

-- Uniqueness of plaintexts: a unique btree index of full-length tags.
CREATE TABLE bi_accounts (id int, email encrypted_text);
CREATE UNIQUE INDEX bi_accounts_email ON bi_accounts ((envelope.blind_tag(email, 'bi_mail', 'casefold')));
INSERT INTO bi_accounts VALUES (1, 'carol@example.com'), (2, 'dave@example.com');
-- (terse: the detail shows the tag, which differs with every key)
\set VERBOSITY terse
INSERT INTO bi_accounts VALUES (3, 'Carol@Example.com');
\set VERBOSITY default
INSERT INTO bi_accounts VALUES (4, NULL), (5, NULL);
INSERT INTO bi_accounts VALUES (6, 'carol@example.com')
    ON CONFLICT ((envelope.blind_tag(email, 'bi_mail', 'casefold'))) DO NOTHING;
SELECT count(*) FROM bi_accounts;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM bi_accounts
WHERE envelope.blind_tag(email, 'bi_mail', 'casefold') = envelope.blind_tag('DAVE@example.com', 'bi_mail', 'casefold');
SELECT id FROM bi_accounts
WHERE envelope.blind_tag(email, 'bi_mail', 'casefold') = envelope.blind_tag('DAVE@example.com', 'bi_mail', 'casefold');
RESET enable_seqscan;
SELECT length(envelope.blind_tag('x', 'bi_mail')) AS tag_bytes,
       envelope.blind_tag('x', 'bi_mail') = envelope.blind_tag('x', 'bi_mail') AS deterministic,
       envelope.blind_tag('x', 'bi_mail') <> envelope.blind_tag('x', 'bi_ssn') AS per_key,
       envelope.blind_tag('x', 'bi_mail') <> envelope.blind_tag('x', 'bi_mail', 'casefold') AS per_normalization;

-- Nothing of the plaintexts (or of the values) lands in the statistics.
SELECT count(*) AS stat_rows_with_plaintext FROM pg_statistic s
WHERE s.starelid IN ('bi_people'::regclass, 'bi_people_ssn'::regclass, 'bi_accounts'::regclass,
                     'bi_accounts_email'::regclass)
  AND (coalesce(s.stavalues1::text, '') || coalesce(s.stavalues2::text, '') ||
       coalesce(s.stavalues3::text, '')) ~ '(078-05-1120|example|pgenv1)';

-- The search privilege: needed to compare with an index key's tags; decrypt for the recheck.
CREATE ROLE bi_reader;
CREATE ROLE bi_searcher;
GRANT SELECT ON bi_people TO bi_reader, bi_searcher;
SELECT envelope.grant_key('bi_data', 'bi_reader', 'decrypt');
SELECT envelope.grant_key('bi_data', 'bi_searcher', 'decrypt');
SELECT envelope.grant_key('bi_ssn', 'bi_searcher', 'search');
SELECT envelope.grant_key('bi_ssn', 'bi_searcher', 'decrypt');
SELECT envelope.grant_key('bi_data', 'bi_searcher', 'search');
SELECT envelope.has_key_privilege('bi_searcher', 'bi_ssn', 'search') AS searcher,
       envelope.has_key_privilege('bi_reader', 'bi_ssn', 'search') AS reader;
SET enable_seqscan = off;
SET ROLE bi_reader;
SELECT id FROM bi_people WHERE ssn = '078-05-1120';
SELECT envelope.blind_tag('078-05-1120', 'bi_ssn');
SELECT envelope.tag_probe('078-05-1120', 'bi_ssn', 'none', 32) IS NOT NULL;
RESET ROLE;
SET ROLE bi_searcher;
SELECT id FROM bi_people WHERE ssn = '078-05-1120' ORDER BY id;
RESET ROLE;
SELECT envelope.revoke_key('bi_ssn', 'bi_searcher', 'search');
SET ROLE bi_searcher;
SELECT id FROM bi_people WHERE ssn = '078-05-1120' ORDER BY id;
RESET ROLE;
RESET enable_seqscan;
-- Writing through a blind index needs no search (nobody reads its tags back); writing under a
-- unique tag index does (a unique violation answers "exists").
CREATE ROLE bi_writer;
GRANT INSERT ON bi_people, bi_accounts TO bi_writer;
SELECT envelope.grant_key('bi_data', 'bi_writer', 'encrypt');
SET ROLE bi_writer;
INSERT INTO bi_people VALUES (4001, 'written by an encrypt-only role', NULL);
INSERT INTO bi_accounts VALUES (7, 'erin@example.com');
RESET ROLE;
SET enable_seqscan = off;
SELECT id FROM bi_people WHERE ssn = 'written by an encrypt-only role';
RESET enable_seqscan;

-- Rotation: a new version and every index using the key rebuilt in one transaction.
SELECT * FROM envelope.indexes_using_key('bi_ssn');
SELECT * FROM envelope.indexes_using_key('bi_mail');
SELECT pg_relation_filenode('bi_people_ssn') AS ssn_filenode,
       pg_relation_filenode('bi_people_email') AS email_filenode \gset
SELECT envelope.rotate_index_key('bi_ssn') IS NOT NULL AS rotated;
SELECT pg_relation_filenode('bi_people_ssn') <> :ssn_filenode AS ssn_index_rebuilt,
       pg_relation_filenode('bi_people_email') = :email_filenode AS email_index_untouched;
SELECT action, key_name, key_version FROM envelope.key_events
WHERE key_name LIKE 'bi_%' AND action LIKE '%index%' ORDER BY id;
SELECT version, state, purpose FROM envelope.keys WHERE name = 'bi_ssn' ORDER BY version;
SELECT envelope.destroy_key('bi_ssn', 1) IS NOT NULL AS destroyed_old;
SET enable_seqscan = off;
SELECT id FROM bi_people WHERE ssn = '078-05-1120' ORDER BY id;
INSERT INTO bi_people VALUES (3006, '078-05-1120', 'x@example.com');
SELECT id FROM bi_people WHERE ssn = '078-05-1120' ORDER BY id;
SELECT envelope.rotate_index_key('bi_data');
SELECT envelope.rotate_index_key('no_such_key');

-- A destroyed index key: searching and writing through its index are errors, never zero rows.
SELECT envelope.destroy_key('bi_ssn', 2) IS NOT NULL AS destroyed;
SELECT id FROM bi_people WHERE ssn = '078-05-1120';
INSERT INTO bi_people VALUES (3007, '1', NULL);
SELECT envelope.blind_tag('x', 'bi_ssn');
-- Dropping the index makes the column searchable by scanning again.
DROP INDEX bi_people_ssn;
SELECT id FROM bi_people WHERE ssn = '078-05-1120' ORDER BY id;
RESET enable_seqscan;

DROP TABLE bi_people, bi_accounts;
DROP ROLE bi_reader, bi_searcher, bi_writer;
RESET envelope.default_key;
