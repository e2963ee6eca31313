// Entry points that exercise the C++/PostgreSQL boundary. They are not part of the extension's
// SQL API; the regression suite binds them with CREATE FUNCTION ... AS 'pg_envelope'.
#include "guard.hpp"

#include <new>
#include <stdexcept>

using namespace envelope::pg;

namespace {
int destructor_runs = 0;

struct CountsDestruction {
    ~CountsDestruction() { ++destructor_runs; }
};
}  // namespace

// Throws the C++ exception named by its argument inside a guarded SQL function.
ENVELOPE_SQL_FUNCTION(envelope_selftest_throw) {
    const char *kind = text_to_cstring(PG_GETARG_TEXT_PP(0));
    if (strcmp(kind, "runtime_error") == 0) throw std::runtime_error("selftest: C++ runtime_error");
    if (strcmp(kind, "sql_error") == 0)
        throw SqlError(ERRCODE_INVALID_PARAMETER_VALUE, "selftest: SqlError", "A detail.",
                       "A hint.");
    if (strcmp(kind, "bad_alloc") == 0) throw std::bad_alloc();
    if (strcmp(kind, "int") == 0) throw 42;
    PG_RETURN_TEXT_P(cstring_to_text("no exception"));
}

// Raises a PostgreSQL ERROR from inside pg_call() while a C++ object is alive: the object's
// destructor must run, and the original error must reach the client unchanged.
ENVELOPE_SQL_FUNCTION(envelope_selftest_pg_error) {
    CountsDestruction guard_object;
    pg_call([] {
        ereport(ERROR, (errcode(ERRCODE_DIVISION_BY_ZERO),
                        errmsg("selftest: PostgreSQL error under C++")));
    });
    PG_RETURN_VOID();
}

// How many CountsDestruction objects were destroyed in this backend.
ENVELOPE_SQL_FUNCTION(envelope_selftest_destructor_runs) {
    PG_RETURN_INT32(destructor_runs);
}
