// SQL entry points of the envelope_fdw foreign-data wrapper (handler and option validator).
#include "boundary/guard.hpp"
#include "session/fdw_transfer.hpp"

using namespace envelope::pg;

ENVELOPE_SQL_FUNCTION(envelope_fdw_handler) {
    FdwRoutine *routine = makeNode(FdwRoutine);
    fdw_wrap_postgres_fdw(routine);
    PG_RETURN_POINTER(routine);
}

ENVELOPE_SQL_FUNCTION(envelope_fdw_validator) {
    fdw_validate_options(PG_GETARG_DATUM(0), PG_GETARG_OID(1));
    PG_RETURN_VOID();
}
