// The one hex codec: encoding, strict decoding and UUID formatting.
#include "hex.hpp"

#include <gtest/gtest.h>

#include <cstring>

using envelope::ByteView;

TEST(Hex, EncodesLowercaseWithNul) {
    const uint8_t bytes[] = {0x00, 0x0f, 0xa5, 0xff};
    char out[9];
    std::memset(out, 'x', sizeof out);
    envelope::hex_encode(ByteView(bytes, sizeof bytes), out);
    EXPECT_STREQ(out, "000fa5ff");
}

TEST(Hex, DecodesEitherCaseAndRejectsEverythingElse) {
    uint8_t out[2] = {};
    EXPECT_TRUE(envelope::hex_decode("aBcD", 4, out, 2));
    EXPECT_EQ(out[0], 0xab);
    EXPECT_EQ(out[1], 0xcd);
    EXPECT_FALSE(envelope::hex_decode("abc", 3, out, 2)) << "odd length";
    EXPECT_FALSE(envelope::hex_decode("abcdef", 6, out, 2)) << "too long for out";
    EXPECT_FALSE(envelope::hex_decode("zz00", 4, out, 2)) << "not hex";
    EXPECT_FALSE(envelope::hex_decode(" 0ab", 4, out, 2)) << "whitespace";
    EXPECT_FALSE(envelope::hex_decode(nullptr, 0, out, 0)) << "no input";
}

TEST(Hex, RoundTripsEveryByte) {
    uint8_t all[256];
    for (int i = 0; i < 256; ++i) all[i] = static_cast<uint8_t>(i);
    char text[513];
    envelope::hex_encode(ByteView(all, sizeof all), text);
    uint8_t back[256];
    ASSERT_TRUE(envelope::hex_decode(text, 512, back, sizeof back));
    EXPECT_EQ(std::memcmp(all, back, sizeof all), 0);
}

TEST(Hex, FormatsUuids) {
    const uint8_t id[16] = {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
                            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
    char out[37];
    envelope::format_uuid(id, out);
    EXPECT_STREQ(out, "12345678-9abc-def0-0123-456789abcdef");
}
