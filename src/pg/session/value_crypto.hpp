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

// Parses the printable form ("pgenv1:" + base64) into a varlena of envelope bytes, checked:
// well-formed, known key, authentic (opened into a wiped scratch buffer).
bytea *parse_sealed_text(const char *text, size_t len);

// The printable form of a stored value, palloc'd NUL-terminated.
char *sealed_to_text(const bytea *stored);

}  // namespace envelope::pg
