// Reservation files of encryption counts (see count_reservations.hpp).
#include "storage/count_reservations.hpp"
#include "shmem/key_cache.hpp"
#include "shmem/shmem.hpp"

#include "hex.hpp"

extern "C" {
#include "storage/fd.h"
}

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <unistd.h>

namespace envelope::pg {

namespace {

constexpr const char *kTopDir = "pg_envelope";
constexpr const char *kDir = "pg_envelope/reserved";

void file_path(Oid database, const envelope::DekId &id, char *out, size_t room) {
    char hex[2 * envelope::kDekIdSize + 1];
    envelope::hex_encode(envelope::ByteView(id.data(), id.size()), hex);
    snprintf(out, room, "%s/%u-%s", kDir, database, hex);
}

[[noreturn]] void fail_io(const char *what, const char *path) {
    ereport(ERROR, (errcode_for_file_access(),
                    errmsg("pg_envelope: cannot reserve encryption counts: could not %s \"%s\": %m",
                           what, path),
                    errhint("The nonce budget of a data key is counted on disk before values "
                            "are sealed; check the data directory's disk.")));
}

void write_durably(const char *path, uint64 value) {
    if (MakePGDirectory(kTopDir) != 0 && errno != EEXIST) fail_io("create directory", kTopDir);
    if (MakePGDirectory(kDir) != 0 && errno != EEXIST) fail_io("create directory", kDir);
    char tmp[MAXPGPATH + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    char text[32];
    const int len = snprintf(text, sizeof text, "%" PRIu64 "\n", value);
    int fd = OpenTransientFile(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
    if (fd < 0) fail_io("create", tmp);
    errno = 0;
    if (write(fd, text, len) != len) {
        if (errno == 0) errno = ENOSPC;
        CloseTransientFile(fd);
        fail_io("write", tmp);
    }
    if (pg_fsync(fd) != 0) {
        CloseTransientFile(fd);
        fail_io("fsync", tmp);
    }
    if (CloseTransientFile(fd) != 0) fail_io("close", tmp);
    // fsyncs the file and the directory around the rename: the new value survives an OS crash.
    if (durable_rename(tmp, path, ERROR) != 0) fail_io("rename", tmp);
}

}  // namespace

void reserve_encryptions(Oid database, const envelope::DekId &id, uint64 needed) {
    LWLock *lock = shared_lock(SharedLock::count_reservations);
    LWLockAcquire(lock, LW_EXCLUSIVE);
    // Another session may have reserved past `needed` while this one waited.
    const uint64 current = key_cache_reserved(database, id);
    if (current < needed) {
        const uint64 target = needed + kReservationBlock;
        char path[MAXPGPATH];
        file_path(database, id, path, sizeof path);
        write_durably(path, target);  // an ERROR releases the lock at abort
        key_cache_raise_reserved(database, id, target);
    }
    LWLockRelease(lock);
}

uint64 reserved_on_disk(Oid database, const envelope::DekId &id) {
    char path[MAXPGPATH];
    file_path(database, id, path, sizeof path);
    FILE *f = AllocateFile(path, "r");
    if (f == nullptr) return 0;
    unsigned long long value = 0;
    if (fscanf(f, "%llu", &value) != 1) value = 0;
    FreeFile(f);
    return value;
}

}  // namespace envelope::pg
