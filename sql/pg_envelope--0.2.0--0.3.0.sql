-- pg_envelope 0.2.0 -> 0.3.0.
\echo Use "ALTER EXTENSION pg_envelope UPDATE TO '0.3.0'" to load this file. \quit

-------------------------------------------------------------------------------
-- Sharding (issue 16; README "Scaling out"): the envelope_fdw foreign-data wrapper
-- (postgres_fdw with encrypted_text sealed on the wire) and keyring invalidation for
-- keyrings that reach shards by logical replication.
-------------------------------------------------------------------------------
CREATE FUNCTION envelope.fdw_handler() RETURNS fdw_handler
    AS 'MODULE_PATHNAME', 'envelope_fdw_handler' LANGUAGE C STRICT;
COMMENT ON FUNCTION envelope.fdw_handler() IS
  'Handler of envelope_fdw: postgres_fdw whose callbacks move encrypted_text sealed';
CREATE FUNCTION envelope.fdw_validator(options text[], catalog oid) RETURNS void
    AS 'MODULE_PATHNAME', 'envelope_fdw_validator' LANGUAGE C STRICT;
COMMENT ON FUNCTION envelope.fdw_validator(text[], oid) IS
  'Validator of envelope_fdw: postgres_fdw''s options; a server must set envelope.io = sealed on the shard and must not list pg_envelope in extensions';
-- Using the wrapper takes USAGE on it, granted by a superuser like postgres_fdw's.
CREATE FOREIGN DATA WRAPPER envelope_fdw
    HANDLER envelope.fdw_handler VALIDATOR envelope.fdw_validator;
COMMENT ON FOREIGN DATA WRAPPER envelope_fdw IS
  'postgres_fdw for sharded tables with encrypted_text columns: values cross the connection only sealed';

-- Logical replication applies rows without firing statement triggers, so a shard's sessions
-- would keep stale key names and privilege decisions after a replicated rotate or revoke.
-- These row triggers fire only in replica mode (apply workers, whose rows the statement
-- triggers miss) and send the same invalidation.
CREATE TRIGGER keyring_changed_replica AFTER INSERT OR UPDATE OR DELETE
    ON envelope.keyring FOR EACH ROW EXECUTE FUNCTION envelope._keyring_changed();
ALTER TABLE envelope.keyring ENABLE REPLICA TRIGGER keyring_changed_replica;
CREATE TRIGGER key_privileges_changed_replica AFTER INSERT OR UPDATE OR DELETE
    ON envelope.key_privileges FOR EACH ROW EXECUTE FUNCTION envelope._keyring_changed();
ALTER TABLE envelope.key_privileges ENABLE REPLICA TRIGGER key_privileges_changed_replica;
-------------------------------------------------------------------------------
-- End of sharding (issue 16).
-------------------------------------------------------------------------------
