// Raises the PostgreSQL error recorded by a guarded entry point.
#include "guard.hpp"

namespace envelope::pg {

void raise_entry_failure(const EntryFailure &failure, const char *entry_name) {
    if (failure.pg_error != nullptr) ReThrowError(failure.pg_error);
    ereport(ERROR, (errcode(failure.sqlstate), errmsg("%s", failure.message),
                    failure.detail[0] ? errdetail("%s", failure.detail) : 0,
                    failure.hint[0] ? errhint("%s", failure.hint) : 0,
                    failure.sqlstate == ERRCODE_INTERNAL_ERROR
                        ? errcontext("pg_envelope function %s", entry_name)
                        : 0));
}

}  // namespace envelope::pg
