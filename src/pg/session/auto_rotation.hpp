// Automatic rotation before a data key's nonce budget runs out (envelope.auto_rotate_at): the
// session whose seal reaches the threshold starts a rotator worker in its database.
#pragma once
#include "boundary/pg_includes.hpp"
#include "key_table.hpp"

namespace envelope::pg {

// What the session passes the rotator in bgw_extra.
struct RotationRequest {
    envelope::DekId id;
    uint64 encryptions;
};

// Called with a key's new count after each seal; starts the rotator when the count reaches
// envelope.auto_rotate_at (and every 65,536 seals after, in case a start failed or the
// rotation could not commit). Never raises an ERROR: a rotation that cannot start now is
// retried by a later seal, and the seal itself goes on.
void maybe_request_rotation(const envelope::DekId &id, uint64 count);

}  // namespace envelope::pg
