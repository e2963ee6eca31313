// Trustpoint migration in a session: a legacy field opened with version 1 of a key (the
// imported DEK) and sealed again as an encrypted_text value.
#pragma once
#include "boundary/pg_includes.hpp"

namespace envelope::pg {

// Opens the Trustpoint field `text` (base64) with version 1 of key_name, checks and strips its
// padding, and seals the plaintext under the key's active version as envelope.encrypt() does.
// Requires encrypt and decrypt on the key (42501). Errors never quote the field or the
// plaintext: 22P02 malformed field, XX001 failed tag or bad padding, 22021 not UTF-8 text.
bytea *reseal_legacy_value(const char *text, size_t len, const char *key_name);

}  // namespace envelope::pg
