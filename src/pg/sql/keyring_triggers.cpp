// Triggers on envelope.keyring: wipe destroyed or deleted keys from the shared cache at commit,
// and tell every session to drop its cached name resolutions.
#include "boundary/guard.hpp"
#include "db/keyring.hpp"
#include "session/xact_eviction.hpp"

extern "C" {
#include "commands/trigger.h"
}

#include <cstring>

using namespace envelope::pg;

namespace {

TriggerData *trigger_data(FunctionCallInfo fcinfo) {
    if (!CALLED_AS_TRIGGER(fcinfo)) {
        ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
                        errmsg("pg_envelope keyring functions must be called as triggers")));
    }
    return reinterpret_cast<TriggerData *>(fcinfo->context);
}

}  // namespace

// Row trigger (AFTER UPDATE OR DELETE): a row that is deleted, or whose key is destroyed, has
// its DEK wiped from the shared cache when the transaction commits.
ENVELOPE_SQL_FUNCTION(envelope_keyring_row_changed) {
    TriggerData *td = trigger_data(fcinfo);
    TupleDesc desc = RelationGetDescr(td->tg_relation);
    const AttrNumber id_att = extension_column(desc, "keyring", "id");
    const AttrNumber state_att = extension_column(desc, "keyring", "state");
    bool evict = TRIGGER_FIRED_BY_DELETE(td->tg_event);
    if (TRIGGER_FIRED_BY_UPDATE(td->tg_event)) {
        bool isnull;
        Datum state = heap_getattr(td->tg_newtuple, state_att, desc, &isnull);
        evict = !isnull && strcmp(TextDatumGetCString(state), "destroyed") == 0;
    }
    if (evict) {
        bool isnull;
        Datum d = heap_getattr(td->tg_trigtuple, id_att, desc, &isnull);
        if (!isnull) {
            envelope::DekId id;
            memcpy(id.data(), DatumGetUUIDP(d)->data, UUID_LEN);
            evict_at_transaction_end(id, EvictWhen::on_commit);
        }
    }
    return PointerGetDatum(nullptr);
}

// Statement trigger: tells every session to drop cached name -> key resolutions.
ENVELOPE_SQL_FUNCTION(envelope_keyring_changed) {
    TriggerData *td = trigger_data(fcinfo);
    CacheInvalidateRelcacheByRelid(RelationGetRelid(td->tg_relation));
    return PointerGetDatum(nullptr);
}
