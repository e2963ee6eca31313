// HKDF-SHA256 against RFC 5869 appendix A.1-A.3, and the key check value format.
#include "hkdf.hpp"

#include "vectors.hpp"

#include <gtest/gtest.h>

#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace envelope {
namespace {

using test::from_hex;

std::vector<uint8_t> range(uint8_t first, uint8_t last) {
    std::vector<uint8_t> v;
    for (unsigned b = first; b <= last; ++b) v.push_back(static_cast<uint8_t>(b));
    return v;
}

ByteView view(const std::vector<uint8_t> &v) {
    return ByteView(v.data(), v.size());
}

std::vector<uint8_t> derive(const std::vector<uint8_t> &ikm, const std::vector<uint8_t> &salt,
                            const std::vector<uint8_t> &info, size_t len) {
    std::vector<uint8_t> okm(len);
    EXPECT_TRUE(hkdf_sha256(view(ikm), view(salt), view(info), okm.data(), len));
    return okm;
}

// RFC 5869, Appendix A.1: basic test case with SHA-256.
TEST(Hkdf, Rfc5869Case1) {
    EXPECT_EQ(derive(std::vector<uint8_t>(22, 0x0b), range(0x00, 0x0c), range(0xf0, 0xf9), 42),
              from_hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                       "34007208d5b887185865"));
}

// RFC 5869, Appendix A.2: longer inputs/outputs.
TEST(Hkdf, Rfc5869Case2) {
    EXPECT_EQ(derive(range(0x00, 0x4f), range(0x60, 0xaf), range(0xb0, 0xff), 82),
              from_hex("b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
                       "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
                       "cc30c58179ec3e87c14c01d5c1f3434f1d87"));
}

// RFC 5869, Appendix A.3: zero-length salt and info.
TEST(Hkdf, Rfc5869Case3) {
    EXPECT_EQ(derive(std::vector<uint8_t>(22, 0x0b), {}, {}, 42),
              from_hex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
                       "9d201395faa4b61a96c8"));
}

TEST(Hkdf, RejectsBadLengths) {
    constexpr size_t kMaxOut = size_t{255} * 32;
    std::vector<uint8_t> ikm(32, 1), out(kMaxOut + 1);
    EXPECT_FALSE(hkdf_sha256(view(ikm), {}, {}, out.data(), 0));
    EXPECT_FALSE(hkdf_sha256(view(ikm), {}, {}, out.data(), kMaxOut + 1));
    EXPECT_TRUE(hkdf_sha256(view(ikm), {}, {}, out.data(), kMaxOut));
}

TEST(KeyCheckValue, IsHkdfPrefixAsLowercaseHex) {
    uint8_t key[32];
    for (int i = 0; i < 32; ++i) key[i] = static_cast<uint8_t>(i);
    char kcv[17];
    std::memset(kcv, 'x', sizeof(kcv));
    ASSERT_TRUE(key_check_value(key, kcv));
    EXPECT_EQ(kcv[16], '\0');
    EXPECT_EQ(std::strlen(kcv), 16u);
    for (int i = 0; i < 16; ++i) EXPECT_TRUE(std::isxdigit(kcv[i]) && !std::isupper(kcv[i]));

    const char info[] = "pg_envelope key check value v1";
    uint8_t okm[8];
    ASSERT_TRUE(hkdf_sha256(ByteView(key, 32), {}, ByteView(info, sizeof(info) - 1), okm, 8));
    char expect[17];
    for (size_t i = 0; i < 8; ++i) std::snprintf(expect + 2 * i, 3, "%02x", okm[i]);
    EXPECT_STREQ(kcv, expect);

    char again[17];
    ASSERT_TRUE(key_check_value(key, again));
    EXPECT_STREQ(kcv, again);
    key[31] ^= 1;
    ASSERT_TRUE(key_check_value(key, again));
    EXPECT_STRNE(kcv, again);
}

}  // namespace
}  // namespace envelope
