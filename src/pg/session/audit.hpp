// Structured audit lines in the server log (envelope.audit). One line per event:
//   pg_envelope audit: action=ACTION role="ROLE" key="KEY" version=N outcome=OUTCOME [...]
// Names are quoted with control characters, quotes and backslashes escaped, so no name can
// forge a line. Never a value, a key byte or a wrapped key.
#pragma once
#include "boundary/pg_includes.hpp"
#include "postmaster/settings.hpp"

namespace envelope::pg {

inline bool audit_enabled(AuditLevel level) {
    return setting_audit >= level;
}

// version <= 0: not applicable. extra (may be null) is appended as is; it must be built from
// numbers and audit_quote() output only.
void audit_line(const char *action, const char *role, const char *key_name, int version,
                const char *outcome, const char *extra);

// Writes "NAME" with escapes into out (size >= 4 * strlen(name) + 3 suffices; truncates).
void audit_quote(const char *name, char *out, size_t out_size);

}  // namespace envelope::pg
