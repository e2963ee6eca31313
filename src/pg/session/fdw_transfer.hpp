// envelope_fdw's side of the type's I/O: while one of its callbacks talks to a shard, the
// coordinator's encrypted_text I/O is sealed (parameters sent, rows received).
#pragma once
#include "boundary/pg_includes.hpp"

extern "C" {
#include "foreign/fdwapi.h"
}

namespace envelope::pg {

// True while an envelope_fdw callback that moves values to or from a shard is running in this
// process. Client literals, bind parameters and COPY lines are converted before those
// callbacks run (and initplans the remote query needs are run before the flag is raised), so
// no value a client sends reaches encrypted_text input while it is set.
bool fdw_transfer_active();

// Fills routine with postgres_fdw's callbacks, each that talks to a shard wrapped so it runs
// with fdw_transfer_active() true.
void fdw_wrap_postgres_fdw(FdwRoutine *routine);

// postgres_fdw's option validator, then envelope_fdw's own rules for a foreign server: its
// connection must set envelope.io = sealed on the shard, and `extensions` must not list
// pg_envelope (postgres_fdw would then deparse encrypted_text constants into the remote query
// while planning, outside the transfer callbacks, that is as plaintext).
void fdw_validate_options(Datum options, Oid catalog);

}  // namespace envelope::pg
