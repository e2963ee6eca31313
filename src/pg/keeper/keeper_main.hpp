// The keeper background worker: the only process that talks to the HSM.
#pragma once
#include "boundary/pg_includes.hpp"

namespace envelope::pg {

void register_keeper();  // from _PG_init

}  // namespace envelope::pg

extern "C" {
PGDLLEXPORT void envelope_keeper_main(Datum arg);
}
