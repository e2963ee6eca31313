// Test-only library: entry points that exercise the C++/PostgreSQL boundary. Never part of
// pg_envelope.so; the regression suite binds them with CREATE FUNCTION ... AS
// 'pg_envelope_selftest'.
#include "boundary/guard.hpp"

#include <new>
#include <stdexcept>

extern "C" {
PG_MODULE_MAGIC;
}

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

// Throws a C++ exception while an error-context callback of this frame is pushed: guarded()
// must restore the error stack, so the ERROR's CONTEXT never calls into the dead frame.
ENVELOPE_SQL_FUNCTION(envelope_selftest_throw_under_context) {
    ErrorContextCallback callback;
    callback.callback = [](void *arg) { errcontext("stale frame %s", static_cast<char *>(arg)); };
    char label[] = "callback";
    callback.arg = label;
    callback.previous = error_context_stack;
    error_context_stack = &callback;
    throw std::runtime_error("selftest: thrown under an error context callback");
}

// How many CountsDestruction objects were destroyed in this backend.
ENVELOPE_SQL_FUNCTION(envelope_selftest_destructor_runs) {
    PG_RETURN_INT32(destructor_runs);
}
