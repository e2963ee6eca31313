// The keeper's start-up loading: lists databases and runs one loader worker at a time until
// every database's keyring has been handed to the keeper, then reports ready.
#pragma once
#include "boundary/pg_includes.hpp"

namespace envelope::pg {

void load_scheduler_start();   // after a successful connection to the HSM
void load_scheduler_drive();   // each keeper loop iteration while connected
bool load_scheduler_active();  // start-up loading has not finished

}  // namespace envelope::pg
