// TagKey: HMAC-SHA-256 against RFC 4231, the HKDF-derived MAC key, and key reuse across tags.
#include "hkdf.hpp"
#include "tag_key.hpp"

#include "vectors.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace envelope {
namespace {

using test::from_hex;

std::vector<uint8_t> tag_of(TagKey &k, std::initializer_list<ByteView> parts) {
    std::vector<uint8_t> out(kTagSize);
    EXPECT_TRUE(k.tag(parts, out.data()));
    return out;
}

// RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
TEST(TagKey, Rfc4231Case2) {
    TagKey k;
    ASSERT_TRUE(k.init_mac_key(ByteView(std::string_view("Jefe"))));
    EXPECT_EQ(tag_of(k, {ByteView(std::string_view("what do ya want for nothing?"))}),
              from_hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
}

// RFC 4231 test case 1, fed in parts, twice: re-initialising keeps the key.
TEST(TagKey, PartsAndReuse) {
    TagKey k;
    std::vector<uint8_t> key(20, 0x0b);
    ASSERT_TRUE(k.init_mac_key(ByteView(key.data(), key.size())));
    const auto want = from_hex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(tag_of(k, {ByteView(std::string_view("Hi ")), ByteView(std::string_view("")),
                             ByteView(std::string_view("There"))}),
                  want);
    }
}

// init() keys HMAC with HKDF(index key, info "pg_envelope index tag v1"), never the key itself.
TEST(TagKey, DerivedMacKey) {
    uint8_t index_key[kDekSize];
    for (size_t i = 0; i < kDekSize; ++i) index_key[i] = static_cast<uint8_t>(i * 7 + 1);
    uint8_t mac_key[kTagSize];
    ASSERT_TRUE(hkdf_sha256(ByteView(index_key, kDekSize), ByteView(),
                            ByteView(std::string_view("pg_envelope index tag v1")), mac_key,
                            sizeof mac_key));
    TagKey derived, manual, raw;
    ASSERT_TRUE(derived.init(index_key));
    ASSERT_TRUE(manual.init_mac_key(ByteView(mac_key, sizeof mac_key)));
    ASSERT_TRUE(raw.init_mac_key(ByteView(index_key, kDekSize)));
    const ByteView msg(std::string_view("078-05-1120"));
    EXPECT_EQ(tag_of(derived, {msg}), tag_of(manual, {msg}));
    EXPECT_NE(tag_of(derived, {msg}), tag_of(raw, {msg}));
}

TEST(TagKey, UnkeyedFails) {
    TagKey k;
    uint8_t out[kTagSize];
    EXPECT_FALSE(k.ready());
    EXPECT_FALSE(k.tag({ByteView(std::string_view("x"))}, out));
    EXPECT_FALSE(k.init_mac_key(ByteView()));
    EXPECT_FALSE(k.ready());
    ASSERT_TRUE(k.init_mac_key(ByteView(std::string_view("k"))));
    k.reset();
    EXPECT_FALSE(k.tag({ByteView(std::string_view("x"))}, out));
}

}  // namespace
}  // namespace envelope
