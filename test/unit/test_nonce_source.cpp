// NonceSource: distinct output, refill accounting and discarding the buffer in a fork child.
#include "nonce_source.hpp"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <set>

namespace envelope {
namespace {

using Nonce = std::array<uint8_t, 12>;

TEST(NonceSource, DistinctNoncesOverManyCalls) {
    NonceSource &src = NonceSource::instance();
    std::set<Nonce> seen;
    for (int i = 0; i < 20000; ++i) {
        Nonce n{};
        ASSERT_TRUE(src.fill(n.data(), n.size()));
        ASSERT_TRUE(seen.insert(n).second) << "repeated nonce at call " << i;
    }
}

TEST(NonceSource, RefillCountAdvancesEvery4096Bytes) {
    NonceSource &src = NonceSource::instance();
    src.discard();
    uint64_t before = src.refill_count();
    uint8_t b[16];
    ASSERT_TRUE(src.fill(b, 16));  // empty buffer: first refill
    EXPECT_EQ(src.refill_count(), before + 1);
    for (size_t used = 16; used < NonceSource::kBufferSize; used += 16) {
        ASSERT_TRUE(src.fill(b, 16));
        ASSERT_EQ(src.refill_count(), before + 1) << used;
    }
    ASSERT_TRUE(src.fill(b, 16));  // 4096 bytes consumed: next call refills
    EXPECT_EQ(src.refill_count(), before + 2);

    // A request larger than what is left refills instead of splitting across buffers.
    src.discard();
    before = src.refill_count();
    uint8_t big[NonceSource::kBufferSize];
    ASSERT_TRUE(src.fill(big, 4000));
    ASSERT_TRUE(src.fill(big, 100));
    EXPECT_EQ(src.refill_count(), before + 2);
    ASSERT_TRUE(src.fill(big, NonceSource::kBufferSize));
    EXPECT_EQ(src.refill_count(), before + 3);
}

TEST(NonceSource, RejectsOversizedRequest) {
    uint8_t big[NonceSource::kBufferSize + 1];
    EXPECT_FALSE(NonceSource::instance().fill(big, sizeof(big)));
    EXPECT_TRUE(NonceSource::instance().fill(big, 0));
}

TEST(NonceSource, DiscardForcesRefill) {
    NonceSource &src = NonceSource::instance();
    uint8_t b[12];
    ASSERT_TRUE(src.fill(b, sizeof(b)));
    uint64_t before = src.refill_count();
    src.discard();
    ASSERT_TRUE(src.fill(b, sizeof(b)));
    EXPECT_EQ(src.refill_count(), before + 1);
}

TEST(NonceSource, ForkChildDoesNotReuseParentBuffer) {
    NonceSource &src = NonceSource::instance();
    // Make sure the parent has a well-filled buffer that a naive child would share.
    src.discard();
    uint8_t warm[12];
    ASSERT_TRUE(src.fill(warm, sizeof(warm)));
    uint64_t parent_refills = src.refill_count();

    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        struct {
            uint8_t bytes[64];
            uint64_t refills_delta;
        } msg{};
        uint64_t before = NonceSource::instance().refill_count();
        bool ok = NonceSource::instance().fill(msg.bytes, sizeof(msg.bytes));
        msg.refills_delta = NonceSource::instance().refill_count() - before;
        ssize_t w = ok ? write(fds[1], &msg, sizeof(msg)) : -1;
        close(fds[1]);
        _exit(w == static_cast<ssize_t>(sizeof(msg)) ? 0 : 1);
    }
    close(fds[1]);
    struct {
        uint8_t bytes[64];
        uint64_t refills_delta;
    } child{};
    size_t got = 0;
    while (got < sizeof(child)) {
        ssize_t r = read(fds[0], reinterpret_cast<uint8_t *>(&child) + got, sizeof(child) - got);
        if (r <= 0) break;
        got += static_cast<size_t>(r);
    }
    close(fds[0]);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ASSERT_EQ(got, sizeof(child));

    // The child had to refill (its inherited buffer was discarded) ...
    EXPECT_EQ(child.refills_delta, 1u);
    // ... so its bytes differ from what the parent hands out next from the same buffer.
    uint8_t parent_next[64];
    ASSERT_TRUE(src.fill(parent_next, sizeof(parent_next)));
    EXPECT_EQ(src.refill_count(), parent_refills) << "parent should still use its buffer";
    EXPECT_NE(std::memcmp(child.bytes, parent_next, sizeof(parent_next)), 0);
}

}  // namespace
}  // namespace envelope
