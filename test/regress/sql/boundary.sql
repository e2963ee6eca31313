-- boundary: a C++ exception inside a SQL function becomes an ordinary ERROR; a PostgreSQL
-- ERROR raised under C++ frames unwinds them (destructors run) and reaches the client intact.
-- The self-test entry points live in the test-only library pg_envelope_selftest.so.
CREATE FUNCTION selftest_throw(text) RETURNS text
    AS 'pg_envelope_selftest', 'envelope_selftest_throw' LANGUAGE C STRICT;
CREATE FUNCTION selftest_pg_error() RETURNS void
    AS 'pg_envelope_selftest', 'envelope_selftest_pg_error' LANGUAGE C STRICT;
CREATE FUNCTION selftest_destructor_runs() RETURNS integer
    AS 'pg_envelope_selftest', 'envelope_selftest_destructor_runs' LANGUAGE C STRICT;
CREATE FUNCTION selftest_throw_under_context() RETURNS void
    AS 'pg_envelope_selftest', 'envelope_selftest_throw_under_context' LANGUAGE C STRICT;

\set VERBOSITY default
SELECT selftest_throw('none');
SELECT selftest_throw('runtime_error');
SELECT selftest_throw('sql_error');
SELECT selftest_throw('bad_alloc');
SELECT selftest_throw('int');
-- guarded() restores PostgreSQL's error stack: no CONTEXT line from the thrower's dead frame.
SELECT selftest_throw_under_context();

-- The session is still usable, and so is a transaction after a caught failure.
SELECT 1 AS still_alive;
BEGIN;
SAVEPOINT s;
SELECT selftest_throw('runtime_error');
ROLLBACK TO SAVEPOINT s;
SELECT 2 AS after_rollback_to_savepoint;
COMMIT;

-- SQLSTATEs survive the crossing.
\set VERBOSITY sqlstate
SELECT selftest_throw('sql_error');
SELECT selftest_throw('runtime_error');
SELECT selftest_pg_error();
\set VERBOSITY default

-- The C++ object alive when the PostgreSQL error was raised was destroyed exactly once per call.
SELECT selftest_destructor_runs() AS destructor_runs;
SELECT selftest_pg_error();
SELECT selftest_destructor_runs() AS destructor_runs;

DROP FUNCTION selftest_throw(text);
DROP FUNCTION selftest_pg_error();
DROP FUNCTION selftest_destructor_runs();
