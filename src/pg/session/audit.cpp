// Audit log lines (see audit.hpp).
#include "session/audit.hpp"

#include <cstdio>

namespace envelope::pg {

void audit_quote(const char *name, char *out, size_t out_size) {
    size_t o = 0;
    auto put = [&](char c) {
        if (o + 2 < out_size) out[o++] = c;
    };
    put('"');
    for (const unsigned char *p = reinterpret_cast<const unsigned char *>(name ? name : ""); *p;
         ++p) {
        if (*p < 0x20 || *p == 0x7f || *p == '"' || *p == '\\') {
            if (o + 6 >= out_size) break;
            o += snprintf(out + o, out_size - o, "\\x%02x", *p);
        } else {
            put(static_cast<char>(*p));
        }
    }
    if (o + 1 < out_size) out[o++] = '"';
    out[o] = '\0';
}

void audit_line(const char *action, const char *role, const char *key_name, int version,
                const char *outcome, const char *extra) {
    char role_q[4 * NAMEDATALEN + 3];
    char key_q[4 * 256 + 3];
    audit_quote(role, role_q, sizeof role_q);
    audit_quote(key_name, key_q, sizeof key_q);
    char version_text[16] = "-";
    if (version > 0) snprintf(version_text, sizeof version_text, "%d", version);
    ereport(LOG,
            (errmsg("pg_envelope audit: action=%s role=%s key=%s version=%s outcome=%s%s%s", action,
                    role_q, key_q, version_text, outcome, extra ? " " : "", extra ? extra : ""),
             errhidestmt(true), errhidecontext(true)));
}

}  // namespace envelope::pg
