// The C++/PostgreSQL boundary: entry guards that keep C++ exceptions out of PostgreSQL, and
// pg_call(), which turns a PostgreSQL ERROR raised under C++ frames into a C++ exception.
//
// The rule (docs/architecture.md, "The boundary"): src/core never calls PostgreSQL, and src/pg
// sees only the noexcept API of src/core (src/core/api; checked at build time by
// script/check-core-api). Code in src/pg throws nothing itself; guarded() is the safety net at
// every extern "C" entry point, and nothing with a non-trivial destructor lives on a stack
// frame that an ereport(ERROR) can unwind.
#pragma once
#include "pg_includes.hpp"

#include <cstdio>
#include <exception>
#include <new>
#include <type_traits>
#include <utility>

namespace envelope::pg {

// A C++ exception that carries the SQLSTATE and texts of the PostgreSQL error it should become.
// Texts live in fixed buffers so raising it never allocates.
class SqlError : public std::exception {
  public:
    SqlError(int sqlstate, const char *message, const char *detail = nullptr,
             const char *hint = nullptr) noexcept
        : sqlstate_(sqlstate) {
        copy(message_, message);
        copy(detail_, detail);
        copy(hint_, hint);
    }
    const char *what() const noexcept override { return message_; }
    int sqlstate() const noexcept { return sqlstate_; }
    const char *detail() const noexcept { return detail_; }
    const char *hint() const noexcept { return hint_; }

  private:
    template <size_t N>
    static void copy(char (&dst)[N], const char *src) noexcept {
        std::snprintf(dst, N, "%s", src ? src : "");
    }
    int sqlstate_;
    char message_[256];
    char detail_[512];
    char hint_[256];
};

// A PostgreSQL error caught by pg_call(), to be re-thrown once C++ frames are gone.
class PgErrorException : public std::exception {
  public:
    explicit PgErrorException(ErrorData *edata) noexcept : edata_(edata) {}
    const char *what() const noexcept override {
        return edata_ && edata_->message ? edata_->message : "PostgreSQL error";
    }
    ErrorData *edata() const noexcept { return edata_; }

  private:
    ErrorData *edata_;
};

// What a failed entry point reports; plain data so raising it skips no destructor.
// The texts are filled only when something was thrown (record_current_exception clears them
// first): zeroing 1 KiB on every call of every SQL function cost ~5 % of a 32 B scan.
struct EntryFailure {
    bool failed = false;
    ErrorData *pg_error = nullptr;
    int sqlstate = ERRCODE_INTERNAL_ERROR;
    char message[256];
    char detail[512];
    char hint[256];
};

// Classifies the exception being handled (call only inside a catch handler).
void record_current_exception(EntryFailure &failure) noexcept;

[[noreturn]] void raise_entry_failure(const EntryFailure &failure, const char *entry_name);

// Runs fn (a C++ body) and converts anything it throws into a PostgreSQL ERROR raised only
// after the catch handler has completed. Every extern "C" entry point goes through here.
// PostgreSQL's error stack (the longjmp target and the context callbacks) is saved on entry and
// restored before the ERROR is raised, so an exception thrown from inside a PG_TRY block or
// under a pushed error-context callback cannot leave either pointing into dead frames.
template <typename Fn>
auto guarded(const char *entry_name, Fn &&fn) -> decltype(fn()) {
    EntryFailure failure;
    sigjmp_buf *const saved_exception_stack = PG_exception_stack;
    ErrorContextCallback *const saved_context_stack = error_context_stack;
    try {
        return fn();
    } catch (...) {
        record_current_exception(failure);
    }
    PG_exception_stack = saved_exception_stack;
    error_context_stack = saved_context_stack;
    raise_entry_failure(failure, entry_name);
}

// Calls a PostgreSQL function from C++ code. A PostgreSQL ERROR inside fn is caught, the
// error state and memory context are restored, and it is re-thrown as PgErrorException so
// C++ destructors run. fn must not throw C++ exceptions itself (never throw inside PG_TRY).
template <typename Fn>
auto pg_call(Fn &&fn) -> decltype(fn()) {
    using Result = decltype(fn());
    MemoryContext caller_context = CurrentMemoryContext;
    ErrorData *volatile edata = nullptr;
    if constexpr (std::is_void_v<Result>) {
        PG_TRY();
        { fn(); }
        PG_CATCH();
        {
            MemoryContextSwitchTo(caller_context);
            edata = CopyErrorData();
            FlushErrorState();
        }
        PG_END_TRY();
        if (edata) throw PgErrorException(edata);
    } else {
        Result volatile_result{};
        Result *volatile slot = &volatile_result;
        PG_TRY();
        { *slot = fn(); }
        PG_CATCH();
        {
            MemoryContextSwitchTo(caller_context);
            edata = CopyErrorData();
            FlushErrorState();
        }
        PG_END_TRY();
        if (edata) throw PgErrorException(edata);
        return *slot;
    }
}

}  // namespace envelope::pg

namespace envelope::pg {

// How many SQL entry points of pg_envelope are running in this process. While it is above
// zero, every message of level WARNING or above is written to the server log without its
// STATEMENT and CONTEXT lines, which can quote a plaintext value (an INSERT's literal, a COPY
// line); the client still receives them. An ERROR leaves the count raised until the
// transaction ends (more hiding, never less); xact_end resets it.
extern int sql_entry_depth;
void install_log_filter();  // from _PG_init

}  // namespace envelope::pg

// Declares a SQL-callable function whose body is C++ run under guarded().
#define ENVELOPE_SQL_FUNCTION(name)                                                       \
    extern "C" {                                                                          \
    PGDLLEXPORT Datum name(PG_FUNCTION_ARGS);                                             \
    PG_FUNCTION_INFO_V1(name);                                                            \
    }                                                                                     \
    static Datum name##_body([[maybe_unused]] FunctionCallInfo fcinfo);                   \
    Datum name(PG_FUNCTION_ARGS) {                                                        \
        ++envelope::pg::sql_entry_depth;                                                  \
        Datum result = envelope::pg::guarded(#name, [&] { return name##_body(fcinfo); }); \
        --envelope::pg::sql_entry_depth;                                                  \
        return result;                                                                    \
    }                                                                                     \
    static Datum name##_body([[maybe_unused]] FunctionCallInfo fcinfo)
