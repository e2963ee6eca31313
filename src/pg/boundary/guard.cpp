// Raises the PostgreSQL error recorded by a guarded entry point.
#include "guard.hpp"

#include <cstdio>

namespace envelope::pg {

int sql_entry_depth = 0;

namespace {

emit_log_hook_type previous_emit_log_hook = nullptr;

void hide_values_from_log(ErrorData *edata) {
    if (sql_entry_depth > 0 && edata->elevel >= WARNING) {
        edata->hide_stmt = true;
        edata->hide_ctx = true;
    }
    if (previous_emit_log_hook) previous_emit_log_hook(edata);
}

void reset_entry_depth(XactEvent event, void *) {
    switch (event) {
        case XACT_EVENT_COMMIT:
        case XACT_EVENT_PARALLEL_COMMIT:
        case XACT_EVENT_ABORT:
        case XACT_EVENT_PARALLEL_ABORT:
        case XACT_EVENT_PREPARE:
            sql_entry_depth = 0;
            break;
        default:
            break;
    }
}

}  // namespace

void install_log_filter() {
    previous_emit_log_hook = emit_log_hook;
    emit_log_hook = hide_values_from_log;
    RegisterXactCallback(reset_entry_depth, nullptr);
}

void record_current_exception(EntryFailure &failure) noexcept {
    failure.failed = true;
    failure.message[0] = failure.detail[0] = failure.hint[0] = '\0';
    try {
        throw;
    } catch (const PgErrorException &e) {
        failure.pg_error = e.edata();
    } catch (const SqlError &e) {
        failure.sqlstate = e.sqlstate();
        std::snprintf(failure.message, sizeof failure.message, "%s", e.what());
        std::snprintf(failure.detail, sizeof failure.detail, "%s", e.detail());
        std::snprintf(failure.hint, sizeof failure.hint, "%s", e.hint());
    } catch (const std::bad_alloc &) {
        failure.sqlstate = ERRCODE_OUT_OF_MEMORY;
        std::snprintf(failure.message, sizeof failure.message, "out of memory");
    } catch (const std::exception &e) {
        std::snprintf(failure.message, sizeof failure.message, "%s", e.what());
    } catch (...) {
        std::snprintf(failure.message, sizeof failure.message, "unknown C++ exception");
    }
}

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
