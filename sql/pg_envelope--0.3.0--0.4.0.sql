-- pg_envelope 0.3.0 -> 0.4.0. Each feature of this version has its own delimited section.
\echo Use "ALTER EXTENSION pg_envelope UPDATE TO '0.4.0'" to load this file. \quit

-------------------------------------------------------------------------------
-- Key providers and wrapping mechanisms (issue 14; README "Key providers"): the KEK may come
-- from a PKCS#11 token (AES-GCM, RFC 3394/5649 key wrap, or key wrap computed from the token's
-- AES-ECB) or from an IKM command; each wrapped DEK records how it was wrapped.
-------------------------------------------------------------------------------


-------------------------------------------------------------------------------
-- Migrating from Trustpoint (issue 14; README "Migrating from Trustpoint"): legacy DEKs
-- re-wrapped inside the keeper, legacy fields re-sealed as encrypted_text.
-------------------------------------------------------------------------------

