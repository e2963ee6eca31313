// Memory for key material: its own anonymous mapping, excluded from core dumps
// (MADV_DONTDUMP), locked in RAM where the OS allows (mlock), wiped on release and on exit.
#pragma once
#include <cstddef>

namespace envelope {

// Page-rounded, zero-filled block of at least `bytes` bytes, aligned to 64. nullptr if the
// mapping or MADV_DONTDUMP fails: key material never falls back to dumpable memory.
void *protected_alloc(size_t bytes) noexcept;
// Wipes and unmaps a block from protected_alloc (nullptr is ignored).
void protected_free(void *block) noexcept;
// Wipes every live block (their owners must not use them afterwards); for process exit.
void protected_wipe_all() noexcept;

struct ProtectedMemoryStats {
    size_t blocks;        // live blocks
    size_t bytes;         // mapped bytes, page-rounded
    size_t locked_bytes;  // of those, locked in RAM (mlock succeeded)
};
ProtectedMemoryStats protected_memory_stats() noexcept;

// Usable bytes of a block from protected_alloc (at least what was asked for).
size_t protected_usable_size(const void *block) noexcept;

// True when every page of [p, p+n) lies in a live protected block (tests, assertions).
bool is_protected(const void *p, size_t n) noexcept;

}  // namespace envelope
