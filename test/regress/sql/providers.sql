-- Key provider settings (README "Key providers"): their defaults and descriptions, that only
-- the configuration file sets them (PGC_SIGHUP), and that only superusers can read them.
SELECT name, setting, unit, context, vartype, enumvals, short_desc
  FROM pg_settings
 WHERE name IN ('envelope.kek_provider', 'envelope.ikm_command', 'envelope.ikm_timeout')
 ORDER BY name;
SHOW envelope.kek_provider;
-- A session cannot choose the provider or the command, for itself or for a role.
SET envelope.kek_provider = 'ikm_command';
SET envelope.ikm_command = '/bin/true';
SELECT set_config('envelope.ikm_timeout', '100', false);
ALTER ROLE CURRENT_USER SET envelope.ikm_command = '/bin/true';
ALTER DATABASE contrib_regression SET envelope.kek_provider = 'ikm_command';
-- Values the settings refuse, before a configuration file could hold them.
ALTER SYSTEM SET envelope.kek_provider = 'file';
ALTER SYSTEM SET envelope.ikm_timeout = 10;
-- Not visible to other roles: the command path says where the IKM comes from.
CREATE ROLE provider_reader;
SET ROLE provider_reader;
SHOW envelope.ikm_command;
SHOW envelope.kek_provider;
SELECT count(*) AS visible FROM pg_settings WHERE name LIKE 'envelope.ikm%' OR name = 'envelope.kek_provider';
RESET ROLE;
DROP ROLE provider_reader;
-- The keeper is still on the PKCS#11 token this suite runs with.
SELECT keeper_state, token_label <> '' AS has_token FROM envelope.status();
-- How tokens wrap (README "PKCS#11 tokens and how they wrap"): envelope.wrap_mechanism and
-- envelope.pkcs11_init_args come from the configuration file only; the init string (it names
-- files) only superusers can read.
SELECT name, setting, context, vartype, enumvals
  FROM pg_settings
 WHERE name IN ('envelope.wrap_mechanism', 'envelope.pkcs11_init_args')
 ORDER BY name;
SET envelope.wrap_mechanism = 'ecb_kw';
ALTER ROLE CURRENT_USER SET envelope.pkcs11_init_args = 'configdir=''sql:/tmp''';
ALTER SYSTEM SET envelope.wrap_mechanism = 'des';
CREATE ROLE wrap_reader;
SET ROLE wrap_reader;
SHOW envelope.pkcs11_init_args;
SHOW envelope.wrap_mechanism;
RESET ROLE;
DROP ROLE wrap_reader;
-- status() says what the keeper uses; envelope.keys how each DEK is wrapped.
SELECT kek_provider, wrap_mechanism FROM envelope.status();
SELECT envelope.create_key('providers_wrapped') IS NOT NULL AS created;
SELECT name, wrap_format FROM envelope.keys WHERE name = 'providers_wrapped';
SELECT envelope._wrap_format('\x01'::bytea) AS gcm, envelope._wrap_format('\x02'::bytea) AS kw,
       envelope._wrap_format('\x03'::bytea) AS kwp, envelope._wrap_format('\x07'::bytea) AS other;
