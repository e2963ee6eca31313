-- encrypted_text_parallel: parallel workers decrypt (and the type's functions are parallel
-- safe); a parallel plan returns the same results as a serial one.
\set VERBOSITY default
CREATE TABLE par (id int, v encrypted_text);
INSERT INTO par SELECT g, 'row ' || g || ' ' || md5(g::text) FROM generate_series(1, 20000) g;
ANALYZE par;

-- The SQL functions and the type's I/O are marked parallel safe.
SELECT p.proname, p.proparallel
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'envelope'
  AND p.proname IN ('encrypted_text_in', 'encrypted_text_out', 'encrypted_text_recv',
                    'encrypted_text_send', 'encrypt', 'decrypt', 'encrypt_bytea', 'decrypt_bytea',
                    'to_encrypted_text', 'to_text')
ORDER BY 1;

-- Serial results first.
SET max_parallel_workers_per_gather = 0;
SELECT count(*) AS serial_count FROM par WHERE v::text LIKE '%7%' \gset
SELECT md5(string_agg(v::text, ',' ORDER BY id)) AS serial_md5 FROM par WHERE v::text LIKE '%7%' \gset
SELECT count(*) AS serial_decrypt_count FROM par WHERE envelope.decrypt(v) LIKE '%99%' \gset

SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT count(*) FROM par WHERE v::text LIKE '%7%';
EXPLAIN (COSTS OFF) SELECT count(*) FROM par WHERE envelope.decrypt(v) LIKE '%99%';

-- Workers really run and decrypt (each worker reads the keys from the shared cache).
CREATE FUNCTION par_workers_launched(q text) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    line text;
    launched int := 0;
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) ' || q LOOP
        IF line ~ 'Workers Launched: [0-9]+' THEN
            launched := launched + substring(line FROM 'Workers Launched: ([0-9]+)')::int;
        END IF;
    END LOOP;
    RETURN launched;
END
$$;
SELECT par_workers_launched($$SELECT count(*) FROM par WHERE v::text LIKE '%7%'$$) > 0
       AS workers_launched;

SELECT count(*) = :serial_count AS same_count, count(*) > 0 AS found
FROM par WHERE v::text LIKE '%7%';
SELECT count(*) = :serial_decrypt_count AS same_decrypt_count FROM par WHERE envelope.decrypt(v) LIKE '%99%';
-- Rows themselves, gathered from the workers (output function runs in the leader; the
-- filter's decryption in the workers).
SELECT md5(string_agg(v::text, ',' ORDER BY id)) = :'serial_md5' AS same_rows
FROM par WHERE v::text LIKE '%7%';
-- A parallel aggregate over decrypted values.
EXPLAIN (COSTS OFF) SELECT sum(length(v::text)) FROM par;
SELECT sum(length(v::text)) = (SELECT sum(length('row ' || g || ' ' || md5(g::text)))
                              FROM generate_series(1, 20000) g) AS same_sum
FROM par;
-- Encrypting and decrypting in the same (parallel-enabled) query.
SELECT count(*) FILTER (WHERE envelope.decrypt(envelope.encrypt(v::text)) = v::text) AS round_trips
FROM par WHERE id % 100 = 0;

RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
DROP FUNCTION par_workers_launched(text);
DROP TABLE par;
