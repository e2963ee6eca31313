// The keeper background worker (sole user of the HSM) and its per-database loader workers.
#pragma once
#include "pg_includes.hpp"

namespace envelope::pg {

void register_keeper();

}  // namespace envelope::pg

extern "C" {
PGDLLEXPORT void envelope_keeper_main(Datum arg);
PGDLLEXPORT void envelope_loader_main(Datum arg);
}
