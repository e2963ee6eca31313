// Zeroization: secure_zero, SecureBuffer lifecycle, and wiped outputs on failed opens.
#include "aes_gcm.hpp"
#include "envelope_format.hpp"
#include "secure_buffer.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace envelope {
namespace {

TEST(Zeroization, SecureZeroWipesStackArray) {
    volatile uint8_t canary_before = 0xab;
    uint8_t secret[64];
    std::memset(secret, 0x5c, sizeof(secret));
    volatile uint8_t canary_after = 0xcd;
    secure_zero(secret, sizeof(secret));
    for (uint8_t b : secret) EXPECT_EQ(b, 0);
    EXPECT_EQ(canary_before, 0xab);
    EXPECT_EQ(canary_after, 0xcd);
    secure_zero(nullptr, 10);  // tolerated
    secure_zero(secret, 0);
}

TEST(Zeroization, SecureBufferBasics) {
    const uint8_t src[5] = {1, 2, 3, 4, 5};
    SecureBuffer b(src, 5);
    ASSERT_EQ(b.size(), 5u);
    EXPECT_EQ(std::memcmp(b.data(), src, 5), 0);

    b.resize(8);  // old contents released, new ones zero
    ASSERT_EQ(b.size(), 8u);
    for (size_t i = 0; i < b.size(); ++i) EXPECT_EQ(b.data()[i], 0);

    SecureBuffer moved(std::move(b));
    EXPECT_EQ(moved.size(), 8u);
    EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move): moved-from state is specified
    EXPECT_EQ(b.data(), nullptr);

    moved.release();
    EXPECT_TRUE(moved.empty());
    EXPECT_EQ(moved.data(), nullptr);
    EXPECT_EQ(moved.view().size, 0u);
}

TEST(Zeroization, FailedEnvelopeOpenLeavesNoPlaintext) {
    uint8_t key[kAesKeySize] = {3};
    AesGcmKey k;
    ASSERT_TRUE(k.init(key));
    DekId dek{};
    std::vector<uint8_t> pt(200, 0x77);
    std::vector<uint8_t> sealed(sealed_size(pt.size(), 16));
    ASSERT_EQ(seal_envelope(k, dek, ByteView(pt.data(), pt.size()), {}, 16, sealed.data()),
              EnvelopeStatus::ok);
    sealed.back() ^= 0x01;  // tag
    std::vector<uint8_t> out(sealed.size() - kEnvelopeOverhead, 0xff);
    size_t len = 0;
    EXPECT_EQ(open_envelope(k, ByteView(sealed.data(), sealed.size()), {}, out.data(), &len),
              EnvelopeStatus::auth_failed);
    for (uint8_t b : out) ASSERT_EQ(b, 0);
    EXPECT_EQ(len, 0u);
}

}  // namespace
}  // namespace envelope
