// Transaction-end eviction of cached keys (see xact_eviction.hpp).
#include "session/xact_eviction.hpp"
#include "shmem/key_cache.hpp"

namespace envelope::pg {

namespace {

constexpr int kMaxPending = 1024;

// One list per trigger event; when a list overflows, the whole database is evicted instead.
struct PendingList {
    envelope::DekId ids[kMaxPending];
    int count = 0;
    bool overflow = false;

    void add(const envelope::DekId &id) {
        if (count < kMaxPending) {
            ids[count++] = id;
        } else {
            overflow = true;
        }
    }
    void evict(Oid database) {
        if (overflow) {
            key_cache_forget_database(database);
        } else {
            for (int i = 0; i < count; ++i) key_cache_forget(database, ids[i]);
        }
        clear();
    }
    void clear() {
        count = 0;
        overflow = false;
    }
};

PendingList at_commit;
PendingList at_abort;
Oid pending_database = InvalidOid;
bool callbacks_registered = false;

void on_transaction_end(XactEvent event, void *) {
    switch (event) {
        case XACT_EVENT_COMMIT:
        case XACT_EVENT_PARALLEL_COMMIT:
            at_commit.evict(pending_database);
            at_abort.clear();
            break;
        case XACT_EVENT_ABORT:
        case XACT_EVENT_PARALLEL_ABORT:
            at_abort.evict(pending_database);
            at_commit.clear();
            break;
        case XACT_EVENT_PREPARE:
            // The outcome is decided later, maybe in another session: evict both lists now
            // (always safe). After COMMIT PREPARED every session sweeps destroyed keys on its
            // next use of a value (the keyring's invalidation is part of the commit).
            at_commit.evict(pending_database);
            at_abort.evict(pending_database);
            break;
        default:
            break;
    }
}

// A rolled-back savepoint may hold a create: evict what is pending (parents' keys too; they
// come back on use).
void on_subtransaction_end(SubXactEvent event, SubTransactionId, SubTransactionId, void *) {
    if (event == SUBXACT_EVENT_ABORT_SUB) at_abort.evict(pending_database);
}

}  // namespace

void evict_at_transaction_end(const envelope::DekId &id, EvictWhen when) {
    if (!callbacks_registered) {
        RegisterXactCallback(on_transaction_end, nullptr);
        RegisterSubXactCallback(on_subtransaction_end, nullptr);
        callbacks_registered = true;
    }
    pending_database = MyDatabaseId;
    (when == EvictWhen::on_commit ? at_commit : at_abort).add(id);
}

}  // namespace envelope::pg
