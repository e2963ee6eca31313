// Durable reservations of encryption counts: before a seal may use a count beyond what is
// reserved on disk, a block is reserved (written and fsynced, file and directory), so a crash
// can only make the persisted count higher than the truth, never lower. One small file per
// key: PGDATA/pg_envelope/reserved/<database oid>-<DEK id hex>. Sessions write them (under the
// count_reservations lock); the keeper reads them when it seeds a key's count.
#pragma once
#include "boundary/pg_includes.hpp"
#include "key_table.hpp"

namespace envelope::pg {

// Encryptions reserved per block: one fsync per 2^20 seals per key; a crash or restart
// over-counts a key by less than this.
constexpr uint64 kReservationBlock = uint64{1} << 20;

// Makes sure at least `needed` encryptions under the key are reserved on disk (and in the key
// cache). ERROR (58030) if the reservation cannot be made durable: the seal must not proceed.
void reserve_encryptions(Oid database, const envelope::DekId &id, uint64 needed);

// The reserved count on disk for a key (0 if none).
uint64 reserved_on_disk(Oid database, const envelope::DekId &id);

}  // namespace envelope::pg
