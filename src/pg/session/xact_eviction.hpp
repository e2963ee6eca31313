// Deferred removal of keys from the shared cache at transaction end: a destroyed key leaves at
// commit (a rollback must lose nothing), a key created by an aborted transaction leaves at abort
// (no orphan slots). Evicting more than needed is always safe: keys are unwrapped on next use.
#pragma once
#include "boundary/pg_includes.hpp"
#include "envelope_format.hpp"

namespace envelope::pg {

enum class EvictWhen { on_commit, on_abort };

void evict_at_transaction_end(const envelope::DekId &id, EvictWhen when);

}  // namespace envelope::pg
