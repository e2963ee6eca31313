-- status: the keeper reaches the HSM, the extension installs, envelope.status() reports it.
-- First test of the schedule: pg_regress connects right after the postmaster starts, before
-- the keeper has logged in to the token, and CREATE EXTENSION needs the keeper (it creates
-- the "default" key), so retry it for up to 30 s.
DO $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '30 seconds';
BEGIN
    LOOP
        BEGIN
            CREATE EXTENSION IF NOT EXISTS pg_envelope;
            RETURN;
        EXCEPTION WHEN OTHERS THEN
            IF clock_timestamp() > deadline THEN
                RAISE;
            END IF;
        END;
        PERFORM pg_sleep(0.2);
    END LOOP;
END
$$;

-- Then wait for the keeper to report ready (it may still be loading keys).
DO $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '30 seconds';
BEGIN
    WHILE (SELECT keeper_state FROM envelope.status()) <> 'ready' LOOP
        IF clock_timestamp() > deadline THEN
            RAISE EXCEPTION 'keeper not ready after 30 s: %',
                (SELECT last_error FROM envelope.status());
        END IF;
        PERFORM pg_sleep(0.2);
    END LOOP;
END
$$;

SELECT keeper_state, keeper_pid > 0 AS keeper_running, pkcs11_module, token_label, kek_label,
       kek_found, last_error, next_retry_at IS NULL AS no_retry_pending,
       cache_capacity > 0 AS has_cache
FROM envelope.status();

-- CREATE EXTENSION made the key "default" (version 1, active, under the KEK).
SELECT name, version, state, kek_label FROM envelope.keyring ORDER BY name, version;
SELECT keys_cached >= 1 AS default_key_cached FROM envelope.status();

-- Installing again is a no-op.
CREATE EXTENSION IF NOT EXISTS pg_envelope;
