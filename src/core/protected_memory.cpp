// Protected blocks (see protected_memory.hpp). Each block is one mapping whose first cache
// line is a header linking it into a process-wide list, so exit can wipe them all.
#include "protected_memory.hpp"

#include "wipe.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>

namespace envelope {

namespace {

struct alignas(64) BlockHeader {
    BlockHeader *prev;
    BlockHeader *next;
    size_t mapped;  // bytes mapped, header included
    bool locked;
};
static_assert(sizeof(BlockHeader) == 64, "the user area starts one cache line in");

// PostgreSQL processes are single-threaded; the tools and tests are not, so the list is
// guarded anyway (uncontended: blocks are made when a key is installed, not per value).
std::mutex list_mutex;
BlockHeader *head = nullptr;

size_t page_size() noexcept {
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? static_cast<size_t>(p) : 4096;
}

uint8_t *user_area(BlockHeader *h) noexcept {
    return reinterpret_cast<uint8_t *>(h) + sizeof(BlockHeader);
}

void wipe_at_exit() {
    protected_wipe_all();
}

}  // namespace

void *protected_alloc(size_t bytes) noexcept {
    // A process that ever held keys wipes them when it exits normally (PostgreSQL's
    // proc_exit ends in exit()); a crash leaves them only in pages no core dump includes.
    static const bool wipe_registered = std::atexit(wipe_at_exit) == 0;
    (void)wipe_registered;
    const size_t page = page_size();
    if (bytes > SIZE_MAX / 2) return nullptr;
    const size_t mapped = (bytes + sizeof(BlockHeader) + page - 1) / page * page;
    void *base = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return nullptr;
    // Excluded from core dumps before anything secret is written; refuse the block otherwise.
    if (madvise(base, mapped, MADV_DONTDUMP) != 0) {
        munmap(base, mapped);
        return nullptr;
    }
    // Never inherited by a child: a fork of this process gets no copy of the keys.
    (void)madvise(base, mapped, MADV_DONTFORK);
    auto *h = static_cast<BlockHeader *>(base);
    h->mapped = mapped;
    h->locked = mlock(base, mapped) == 0;  // RLIMIT_MEMLOCK may refuse: still not dumped
    std::lock_guard<std::mutex> guard(list_mutex);
    h->prev = nullptr;
    h->next = head;
    if (head) head->prev = h;
    head = h;
    return user_area(h);
}

void protected_free(void *block) noexcept {
    if (block == nullptr) return;
    auto *h = reinterpret_cast<BlockHeader *>(static_cast<uint8_t *>(block) - sizeof(BlockHeader));
    {
        std::lock_guard<std::mutex> guard(list_mutex);
        if (h->prev) h->prev->next = h->next;
        if (h->next) h->next->prev = h->prev;
        if (head == h) head = h->next;
    }
    const size_t mapped = h->mapped;
    const bool locked = h->locked;
    secure_zero(h, mapped);
    if (locked) munlock(h, mapped);
    munmap(h, mapped);
}

size_t protected_usable_size(const void *block) noexcept {
    if (block == nullptr) return 0;
    const auto *h = reinterpret_cast<const BlockHeader *>(static_cast<const uint8_t *>(block) -
                                                          sizeof(BlockHeader));
    return h->mapped - sizeof(BlockHeader);
}

void protected_wipe_all() noexcept {
    std::lock_guard<std::mutex> guard(list_mutex);
    for (BlockHeader *h = head; h; h = h->next) secure_zero(user_area(h), h->mapped - sizeof *h);
}

ProtectedMemoryStats protected_memory_stats() noexcept {
    ProtectedMemoryStats s{0, 0, 0};
    std::lock_guard<std::mutex> guard(list_mutex);
    for (BlockHeader *h = head; h; h = h->next) {
        ++s.blocks;
        s.bytes += h->mapped;
        if (h->locked) s.locked_bytes += h->mapped;
    }
    return s;
}

bool is_protected(const void *p, size_t n) noexcept {
    const auto *begin = static_cast<const uint8_t *>(p);
    std::lock_guard<std::mutex> guard(list_mutex);
    for (BlockHeader *h = head; h; h = h->next) {
        const uint8_t *lo = user_area(h);
        const uint8_t *hi = reinterpret_cast<const uint8_t *>(h) + h->mapped;
        if (begin >= lo && begin < hi && n <= static_cast<size_t>(hi - begin)) return true;
    }
    return false;
}

}  // namespace envelope
