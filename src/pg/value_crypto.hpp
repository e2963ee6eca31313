// Sealing and opening of SQL values: envelope v1 bytes in a varlena, with the payload kind
// (text or bytea) bound into the associated data so one kind can never be read as the other.
#pragma once
#include "pg_includes.hpp"

namespace envelope::pg {

enum class PayloadKind : char { text = 'T', bytea = 'B' };

// Seals data under the active version of key `key_name` (NULL: envelope.default_key) and
// returns a varlena holding the envelope bytes, palloc'd in the current context.
bytea *seal_value(const char *data, size_t len, const char *key_name, PayloadKind kind,
                  const bytea *context);

// Opens envelope bytes; returns a palloc'd varlena (text or bytea) with the plaintext.
// Raises an authentication ERROR that never includes plaintext or key bytes.
struct varlena *open_value(const uint8 *sealed, size_t len, PayloadKind kind, const bytea *context);

// Checks a sealed value without returning its plaintext: well-formed, known key, authentic.
void verify_sealed(const uint8 *sealed, size_t len, PayloadKind kind);

// Parses the printable form ("pgenv1:" + base64) into a varlena of envelope bytes, verified.
bytea *parse_sealed_text(const char *text, size_t len);

// The printable form of a stored value, palloc'd NUL-terminated.
char *sealed_to_text(const bytea *stored);

// True if text is a complete, well-formed printable sealed value (used to refuse encrypting
// a sealed value a second time).
bool looks_like_sealed_value(const char *text, size_t len);

}  // namespace envelope::pg
