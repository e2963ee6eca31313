// Sealing and opening of SQL values: envelope v1 bytes in a varlena, with the payload kind
// (text or bytea) bound into the associated data so one kind can never be read as the other.
#pragma once
#include "boundary/pg_includes.hpp"

namespace envelope::pg {

enum class PayloadKind : char { text = 'T', bytea = 'B' };

// Seals data under the active version of key `key_name` (NULL: envelope.default_key) and
// returns a varlena holding the envelope bytes, palloc'd in the current context.
bytea *seal_value(const char *data, size_t len, const char *key_name, PayloadKind kind,
                  const bytea *context);

// Seals text given as plaintext input, refusing text that is already a sealed value (a value
// is never encrypted twice).
bytea *seal_plaintext_input(const char *text, size_t len, const char *key_name,
                            const bytea *context);

// Opens envelope bytes; returns a palloc'd varlena (text or bytea) with the plaintext.
// Raises an authentication ERROR that never includes plaintext or key bytes.
struct varlena *open_value(const uint8 *sealed, size_t len, PayloadKind kind, const bytea *context);
// Opens a text value straight into a NUL-terminated palloc'd string (type output: no
// intermediate plaintext copy is left behind).
char *open_text_cstring(const uint8 *sealed, size_t len);

// Opens a text value (no context) to compute an index tag from it, without the decrypt
// privilege check: the plaintext never leaves the caller, which keeps only a keyed tag that
// goes into an index (session/index_keys). Raises like open_value otherwise.
struct varlena *open_text_for_tag(const uint8 *sealed, size_t len);

// Parses the printable form ("pgenv1:" + base64) into a varlena of envelope bytes. Only the
// form is checked (strict base64, envelope layout, version): no key is needed, so a restore
// loads every value whatever the order of the keyring's data and whatever the key's state;
// authenticity is checked where a value is opened (and by envelope.verify()).
bytea *parse_sealed_text(const char *text, size_t len);

// envelope.verify()'s view of one value: opened (authentic), not openable, or under a key
// version that no longer decrypts.
enum class ValueCheck { opened, auth_failed };
// Opens a parsed value into a wiped scratch buffer, with the decrypt privilege checked.
// Raises when the key cannot be used (unknown, destroyed, HSM down); returns auth_failed when
// the value does not authenticate with this context.
ValueCheck check_value(const uint8 *sealed, size_t len, PayloadKind kind, const bytea *context);

// The printable form of a stored value, palloc'd NUL-terminated.
char *sealed_to_text(const bytea *stored);

}  // namespace envelope::pg
