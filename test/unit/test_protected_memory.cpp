// Protected memory: blocks are excluded from core dumps (the kernel's "dd" flag in smaps),
// wiped on release, and every AesGcmKey keeps its key and schedule in one.
#include "aes_gcm.hpp"
#include "protected_memory.hpp"
#include "secure_buffer.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

namespace envelope {
namespace {

// The VmFlags line of the /proc/self/smaps mapping that contains p ("" if none).
std::string vm_flags_of(const void *p) {
    std::ifstream smaps("/proc/self/smaps");
    std::string line;
    const auto addr = reinterpret_cast<uintptr_t>(p);
    bool inside = false;
    while (std::getline(smaps, line)) {
        unsigned long lo = 0, hi = 0;
        if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(':') != 8) {
            inside = addr >= lo && addr < hi;
            continue;
        }
        if (inside && line.rfind("VmFlags:", 0) == 0) return line;
    }
    return "";
}

bool has_flag(const std::string &flags, const char *flag) {
    std::istringstream in(flags.substr(8));
    std::string f;
    while (in >> f) {
        if (f == flag) return true;
    }
    return false;
}

TEST(ProtectedMemory, BlockIsNotDumpedAndIsZeroed) {
    const ProtectedMemoryStats before = protected_memory_stats();
    auto *p = static_cast<uint8_t *>(protected_alloc(100));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
    for (int i = 0; i < 100; ++i) ASSERT_EQ(p[i], 0);
    const std::string flags = vm_flags_of(p);
    ASSERT_FALSE(flags.empty());
    EXPECT_TRUE(has_flag(flags, "dd")) << flags;  // MADV_DONTDUMP
    EXPECT_TRUE(is_protected(p, 100));
    EXPECT_FALSE(is_protected(&before, sizeof before));
    const ProtectedMemoryStats during = protected_memory_stats();
    EXPECT_EQ(during.blocks, before.blocks + 1);
    EXPECT_GE(during.bytes, before.bytes + 100);
    protected_free(p);
    EXPECT_EQ(protected_memory_stats().blocks, before.blocks);
    protected_free(nullptr);  // tolerated
}

TEST(ProtectedMemory, WipeAllZeroesLiveBlocks) {
    auto *p = static_cast<uint8_t *>(protected_alloc(64));
    ASSERT_NE(p, nullptr);
    std::memset(p, 0x5a, 64);
    protected_wipe_all();
    for (int i = 0; i < 64; ++i) ASSERT_EQ(p[i], 0);
    protected_free(p);
}

TEST(ProtectedMemory, SecureBufferLivesInProtectedMemory) {
    SecureBuffer b(32);
    ASSERT_EQ(b.size(), 32u);
    EXPECT_TRUE(is_protected(b.data(), b.size()));
    EXPECT_TRUE(has_flag(vm_flags_of(b.data()), "dd"));
}

// Every key holds two protected blocks: Nettle's context, and libgcrypt's cipher handle (which
// libgcrypt allocates as secure memory, i.e. through protected_alloc).
TEST(ProtectedMemory, CipherKeyAndScheduleAreInProtectedBlocks) {
    ASSERT_TRUE(libgcrypt_engine_available());
    const ProtectedMemoryStats before = protected_memory_stats();
    {
        uint8_t key[kAesKeySize] = {7, 7, 7};
        AesGcmKey k;
        ASSERT_TRUE(k.init(key));
        EXPECT_EQ(protected_memory_stats().blocks, before.blocks + 2);
        ASSERT_TRUE(k.init(key));  // re-keying replaces the blocks, never leaks one
        EXPECT_EQ(protected_memory_stats().blocks, before.blocks + 2);
        k.reset();
        EXPECT_EQ(protected_memory_stats().blocks, before.blocks);
        ASSERT_TRUE(k.init(key));
    }
    EXPECT_EQ(protected_memory_stats().blocks, before.blocks);  // destructor released them
}

}  // namespace
}  // namespace envelope
