// Envelope v1: layout, padding, tamper detection and the printable form.
#include "envelope_format.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace envelope {
namespace {

class EnvelopeTest : public ::testing::Test {
  protected:
    void SetUp() override {
        uint8_t key[kAesKeySize];
        for (size_t i = 0; i < kAesKeySize; ++i) key[i] = static_cast<uint8_t>(0xa0 + i);
        ASSERT_TRUE(key_.init(key));
        for (size_t i = 0; i < kDekIdSize; ++i) dek_[i] = static_cast<uint8_t>(i + 1);
    }

    std::vector<uint8_t> seal(const std::vector<uint8_t> &pt, const std::string &ctx,
                              unsigned pad_block) {
        std::vector<uint8_t> out(sealed_size(pt.size(), pad_block));
        EXPECT_EQ(seal_envelope(key_, dek_, ByteView(pt.data(), pt.size()), ByteView(ctx),
                                pad_block, out.data()),
                  EnvelopeStatus::ok);
        return out;
    }

    // Opens and checks the failure contract: never ok on failure and out wiped.
    EnvelopeStatus open(const std::vector<uint8_t> &sealed, const std::string &ctx,
                        std::vector<uint8_t> *pt = nullptr) {
        size_t cap = sealed.size() > kEnvelopeOverhead ? sealed.size() - kEnvelopeOverhead : 0;
        std::vector<uint8_t> out(cap + 1, 0xcc);
        size_t len = 12345;
        EnvelopeStatus st = open_envelope(key_, ByteView(sealed.data(), sealed.size()),
                                          ByteView(ctx), out.data(), &len);
        if (st == EnvelopeStatus::ok) {
            EXPECT_LE(len, cap);
            if (pt != nullptr) pt->assign(out.data(), out.data() + len);
        } else {
            EXPECT_EQ(len, 0u);
            if (st == EnvelopeStatus::auth_failed) {
                for (size_t i = 0; i < cap; ++i) {
                    EXPECT_EQ(out[i], 0) << "not wiped at " << i;
                }
            }
        }
        EXPECT_EQ(out[cap], 0xcc) << "wrote past the documented capacity";
        return st;
    }

    AesGcmKey key_;
    DekId dek_{};
};

std::vector<uint8_t> pattern(size_t n) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 31 + 7);
    return v;
}

bool is_failure(EnvelopeStatus st) {
    return st == EnvelopeStatus::auth_failed || st == EnvelopeStatus::malformed ||
           st == EnvelopeStatus::unsupported_version;
}

TEST(EnvelopeLayout, Constants) {
    EXPECT_EQ(kHeaderSize, 17u);
    EXPECT_EQ(kNonceOffset, 17u);
    EXPECT_EQ(kCiphertextOffset, 29u);
    EXPECT_EQ(kEnvelopeOverhead, 45u);
    EXPECT_EQ(kMinEnvelopeSize, 46u);
}

TEST(EnvelopeLayout, PaddedLength) {
    EXPECT_EQ(padded_length(0, 0), 1u);
    EXPECT_EQ(padded_length(0, 1), 1u);
    EXPECT_EQ(padded_length(10, 0), 11u);
    EXPECT_EQ(padded_length(10, 1), 11u);
    EXPECT_EQ(padded_length(0, 16), 16u);
    EXPECT_EQ(padded_length(14, 16), 16u);
    EXPECT_EQ(padded_length(15, 16), 16u);  // marker exactly fills the block
    EXPECT_EQ(padded_length(16, 16), 32u);  // marker needs a new block
    EXPECT_EQ(padded_length(17, 16), 32u);
    EXPECT_EQ(padded_length(1000, 64), 1024u);
    EXPECT_EQ(padded_length(1023, 1024), 1024u);
    EXPECT_EQ(padded_length(0, 4096), 4096u);
    EXPECT_EQ(padded_length(4096, 4096), 8192u);
    EXPECT_EQ(padded_length(10, 3), 12u);               // any block size, not only powers of two
    EXPECT_EQ(padded_length(1, kMaxPadBlock + 1), 0u);  // invalid pad_block
    EXPECT_EQ(padded_length(SIZE_MAX - 1, 16), 0u);     // overflow
    EXPECT_EQ(sealed_size(15, 16), 16u + 45u);
    EXPECT_EQ(sealed_size(1, kMaxPadBlock + 1), 0u);
}

TEST_F(EnvelopeTest, RoundTripSizesAndPadBlocks) {
    const std::string ctx = "public.users.email";
    for (size_t n : {0, 1, 15, 16, 17, 1000, 65536}) {
        for (unsigned pb : {0u, 1u, 16u, 64u, 4096u}) {
            auto pt = pattern(n);
            auto sealed = seal(pt, ctx, pb);
            ASSERT_EQ(sealed.size(), sealed_size(n, pb));
            ASSERT_EQ(sealed.size(), padded_length(n, pb) + kEnvelopeOverhead);
            if (pb > 1) {
                EXPECT_EQ((sealed.size() - kEnvelopeOverhead) % pb, 0u);
            }
            EXPECT_EQ(sealed[0], kEnvelopeVersion);
            EXPECT_EQ(std::memcmp(sealed.data() + 1, dek_.data(), kDekIdSize), 0);
            ParsedEnvelope parsed{};
            EXPECT_EQ(parse_envelope(ByteView(sealed.data(), sealed.size()), parsed),
                      EnvelopeStatus::ok);
            EXPECT_EQ(parsed.dek, dek_);
            EXPECT_EQ(parsed.ciphertext.size, padded_length(n, pb));
            EXPECT_EQ(parsed.tag, sealed.data() + sealed.size() - kGcmTagSize);
            std::vector<uint8_t> back;
            ASSERT_EQ(open(sealed, ctx, &back), EnvelopeStatus::ok) << n << "/" << pb;
            EXPECT_EQ(back, pt) << n << "/" << pb;
        }
    }
}

TEST_F(EnvelopeTest, PlaintextWithTrailingZerosAndMarkerBytesSurvives) {
    for (const auto &pt : {std::vector<uint8_t>{0x80}, std::vector<uint8_t>{0x00},
                           std::vector<uint8_t>{0x80, 0x00, 0x00}, std::vector<uint8_t>(40, 0)}) {
        for (unsigned pb : {0u, 16u}) {
            std::vector<uint8_t> back;
            ASSERT_EQ(open(seal(pt, "", pb), "", &back), EnvelopeStatus::ok);
            EXPECT_EQ(back, pt);
        }
    }
}

TEST_F(EnvelopeTest, EveryBitFlipFails) {
    for (unsigned pb : {0u, 16u}) {
        auto sealed = seal(pattern(5), "ctx", pb);
        for (size_t byte = 0; byte < sealed.size(); ++byte) {
            for (int bit = 0; bit < 8; ++bit) {
                auto bad = sealed;
                bad[byte] ^= static_cast<uint8_t>(1u << bit);
                EnvelopeStatus st = open(bad, "ctx");
                ASSERT_TRUE(is_failure(st))
                    << "byte " << byte << " bit " << bit << ": " << envelope_status_text(st);
                EXPECT_EQ(st, byte == 0 ? EnvelopeStatus::unsupported_version
                                        : EnvelopeStatus::auth_failed);
            }
        }
    }
}

TEST_F(EnvelopeTest, WrongContextFails) {
    auto sealed = seal(pattern(20), "tenant-1", 16);
    EXPECT_EQ(open(sealed, "tenant-2"), EnvelopeStatus::auth_failed);
    EXPECT_EQ(open(sealed, ""), EnvelopeStatus::auth_failed);
    EXPECT_EQ(open(sealed, "tenant-1 "), EnvelopeStatus::auth_failed);
    EXPECT_EQ(open(sealed, "tenant-1"), EnvelopeStatus::ok);
}

TEST_F(EnvelopeTest, WrongKeyFails) {
    auto sealed = seal(pattern(20), "c", 16);
    uint8_t other[kAesKeySize] = {};
    ASSERT_TRUE(key_.init(other));
    EXPECT_EQ(open(sealed, "c"), EnvelopeStatus::auth_failed);
}

TEST_F(EnvelopeTest, TruncationAtEveryLengthFails) {
    for (unsigned pb : {0u, 16u}) {
        auto sealed = seal(pattern(33), "c", pb);
        for (size_t len = 0; len < sealed.size(); ++len) {
            std::vector<uint8_t> cut(sealed.data(), sealed.data() + len);
            EnvelopeStatus st = open(cut, "c");
            ASSERT_TRUE(is_failure(st)) << len;
            if (len < kMinEnvelopeSize) {
                EXPECT_EQ(st, EnvelopeStatus::malformed) << len;
            }
        }
        // Appending bytes fails as well.
        auto longer = sealed;
        longer.push_back(0);
        EXPECT_EQ(open(longer, "c"), EnvelopeStatus::auth_failed);
    }
}

TEST_F(EnvelopeTest, RelabelledDekIdFails) {
    auto sealed = seal(pattern(10), "c", 16);
    auto relabelled = sealed;
    for (size_t i = 0; i < kDekIdSize; ++i) relabelled[1 + i] = static_cast<uint8_t>(0xf0 + i);
    ParsedEnvelope parsed{};
    EXPECT_EQ(parse_envelope(ByteView(relabelled.data(), relabelled.size()), parsed),
              EnvelopeStatus::ok);
    EXPECT_NE(parsed.dek, dek_);
    EXPECT_EQ(open(relabelled, "c"), EnvelopeStatus::auth_failed);
}

TEST_F(EnvelopeTest, VersionByteChecked) {
    auto sealed = seal(pattern(10), "c", 16);
    sealed[0] = 2;
    ParsedEnvelope parsed{};
    EXPECT_EQ(parse_envelope(ByteView(sealed.data(), sealed.size()), parsed),
              EnvelopeStatus::unsupported_version);
    EXPECT_EQ(open(sealed, "c"), EnvelopeStatus::unsupported_version);
}

TEST_F(EnvelopeTest, BadPaddingUnderValidTagIsAuthFailure) {
    // Only a key holder can make this: a valid tag over a body without the 0x80 marker.
    uint8_t nonce[kGcmNonceSize] = {7};
    std::vector<uint8_t> sealed(kEnvelopeOverhead + 16);
    sealed[0] = kEnvelopeVersion;
    std::memcpy(sealed.data() + 1, dek_.data(), kDekIdSize);
    std::memcpy(sealed.data() + kNonceOffset, nonce, kGcmNonceSize);
    for (auto body : {std::vector<uint8_t>(16, 0), std::vector<uint8_t>(16, 0x41)}) {
        ASSERT_TRUE(key_.seal(nonce, {ByteView(sealed.data(), kHeaderSize), ByteView("c", 1)},
                              {ByteView(body.data(), body.size())},
                              sealed.data() + kCiphertextOffset,
                              sealed.data() + kCiphertextOffset + 16));
        EXPECT_EQ(open(sealed, "c"), EnvelopeStatus::auth_failed);
    }
}

TEST_F(EnvelopeTest, SealsOfSamePlaintextDiffer) {
    auto pt = pattern(32);
    auto a = seal(pt, "c", 16), b = seal(pt, "c", 16);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_NE(a, b);
    EXPECT_NE(std::memcmp(a.data() + kNonceOffset, b.data() + kNonceOffset, kGcmNonceSize), 0);
}

TEST_F(EnvelopeTest, SealRejectsBadArguments) {
    auto pt = pattern(4);
    std::vector<uint8_t> out(sealed_size(4, 4096));
    EXPECT_EQ(
        seal_envelope(key_, dek_, ByteView(pt.data(), pt.size()), {}, kMaxPadBlock + 1, out.data()),
        EnvelopeStatus::malformed);
    AesGcmKey unready;
    EXPECT_EQ(seal_envelope(unready, dek_, ByteView(pt.data(), pt.size()), {}, 16, out.data()),
              EnvelopeStatus::crypto_failure);
    auto sealed = seal(pt, "", 16);
    size_t len = 0;
    std::vector<uint8_t> o(sealed.size());
    EXPECT_EQ(open_envelope(unready, ByteView(sealed.data(), sealed.size()), {}, o.data(), &len),
              EnvelopeStatus::crypto_failure);
}

// ---- printable form ----

std::string encode(const std::vector<uint8_t> &bytes) {
    std::string s(printable_length(bytes.size()) + 1, '\x7f');
    encode_printable(ByteView(bytes.data(), bytes.size()), s.data());
    EXPECT_EQ(s[printable_length(bytes.size())], '\0');
    s.resize(printable_length(bytes.size()));
    return s;
}

EnvelopeStatus decode(const std::string &text, std::vector<uint8_t> *out = nullptr) {
    std::vector<uint8_t> buf(printable_decoded_max(text.size()) + 1, 0xcc);
    size_t len = 999;
    EnvelopeStatus st = decode_printable(text.data(), text.size(), buf.data(), &len);
    EXPECT_EQ(buf.back(), 0xcc) << "wrote past printable_decoded_max";
    if (st == EnvelopeStatus::ok) {
        EXPECT_LE(len, printable_decoded_max(text.size()));
        if (out != nullptr) out->assign(buf.data(), buf.data() + len);
    } else {
        EXPECT_EQ(len, 0u);
    }
    return st;
}

TEST(Printable, KnownBase64) {
    // RFC 4648 section 10 vectors, checked through the encoder (prefix stripped).
    const std::pair<const char *, const char *> cases[] = {{"", ""},
                                                           {"f", "Zg=="},
                                                           {"fo", "Zm8="},
                                                           {"foo", "Zm9v"},
                                                           {"foob", "Zm9vYg=="},
                                                           {"fooba", "Zm9vYmE="},
                                                           {"foobar", "Zm9vYmFy"}};
    for (auto &c : cases) {
        std::vector<uint8_t> in(c.first, c.first + std::strlen(c.first));
        EXPECT_EQ(encode(in), std::string("pgenv1:") + c.second);
    }
    EXPECT_EQ(printable_length(0), 7u);
    EXPECT_EQ(printable_length(46), 7u + 64u);
}

TEST_F(EnvelopeTest, PrintableRoundTrip) {
    for (size_t n : {0, 1, 2, 3, 100, 1000}) {
        auto sealed = seal(pattern(n), "c", 0);
        std::string text = encode(sealed);
        EXPECT_TRUE(has_printable_prefix(text.data(), text.size()));
        std::vector<uint8_t> back;
        ASSERT_EQ(decode(text, &back), EnvelopeStatus::ok);
        EXPECT_EQ(back, sealed);
        EXPECT_EQ(open(back, "c"), EnvelopeStatus::ok);
    }
}

TEST_F(EnvelopeTest, PrintableRejectsGarbage) {
    // 46-byte envelope: 46 % 3 == 1, so its text ends in "==".
    auto sealed = seal({}, "c", 0);
    ASSERT_EQ(sealed.size(), 46u);
    std::string good = encode(sealed);
    ASSERT_EQ(good.substr(good.size() - 2), "==");
    ASSERT_EQ(decode(good), EnvelopeStatus::ok);

    EXPECT_FALSE(has_printable_prefix("pgenv1", 6));
    EXPECT_FALSE(has_printable_prefix(nullptr, 0));
    EXPECT_EQ(decode(""), EnvelopeStatus::malformed);
    EXPECT_EQ(decode("pgenv1:"), EnvelopeStatus::malformed);
    EXPECT_EQ(decode("pgenv2:" + good.substr(7)), EnvelopeStatus::malformed);
    EXPECT_EQ(decode("PGENV1:" + good.substr(7)), EnvelopeStatus::malformed);
    EXPECT_EQ(decode(good.substr(7)), EnvelopeStatus::malformed);
    EXPECT_EQ(decode(" " + good), EnvelopeStatus::malformed);

    // Bad characters anywhere in the body.
    for (char c : {'!', ' ', '\n', '-', '_', '.', '\0', '\x80'}) {
        std::string bad = good;
        bad[7 + 5] = c;
        EXPECT_EQ(decode(bad), EnvelopeStatus::malformed) << int(c);
    }
    // Wrong length (not a multiple of 4), trailing junk, missing padding.
    EXPECT_EQ(decode(good.substr(0, good.size() - 1)), EnvelopeStatus::malformed);
    EXPECT_EQ(decode(good.substr(0, good.size() - 2)), EnvelopeStatus::malformed);
    EXPECT_EQ(decode(good + "A"), EnvelopeStatus::malformed);
    EXPECT_EQ(decode(good + "\n"), EnvelopeStatus::malformed);
    EXPECT_EQ(decode(good + "===="), EnvelopeStatus::malformed);
    EXPECT_EQ(decode(good + "AAAA"), EnvelopeStatus::malformed);  // a quantum after padding
    // Padding in the wrong places.
    {
        std::string bad = good;
        bad[7 + 1] = '=';  // padding in the middle of the text
        EXPECT_EQ(decode(bad), EnvelopeStatus::malformed);
    }
    {
        std::string bad = good;
        bad[good.size() - 3] = '=';  // "===" in the last quantum
        EXPECT_EQ(decode(bad), EnvelopeStatus::malformed);
    }
    {
        std::string bad = good;
        bad[good.size() - 1] = 'A';  // "=A": data after padding
        EXPECT_EQ(decode(bad), EnvelopeStatus::malformed);
    }
    // Non-canonical: the unused low bits of the last character must be zero.
    {
        std::string bad = good;
        char &last = bad[good.size() - 3];  // the char before "=="; carries 4 unused bits
        const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        int v = static_cast<int>(std::strchr(alphabet, last) - alphabet);
        ASSERT_EQ(v & 15, 0);
        last = alphabet[v | 1];
        EXPECT_EQ(decode(bad), EnvelopeStatus::malformed);
    }
    // Too short once decoded: 45 bytes (one short of the minimum), valid base64.
    std::vector<uint8_t> short_env(sealed.begin(), sealed.end() - 1);
    EXPECT_EQ(decode(encode(short_env)), EnvelopeStatus::malformed);
    EXPECT_EQ(decode(encode({1, 2, 3})), EnvelopeStatus::malformed);
    // Version != 1.
    auto v2 = sealed;
    v2[0] = 2;
    EXPECT_EQ(decode(encode(v2)), EnvelopeStatus::unsupported_version);
    v2[0] = 0;
    EXPECT_EQ(decode(encode(v2)), EnvelopeStatus::unsupported_version);
}

TEST(Printable, StatusTextIsNeverNull) {
    for (auto st :
         {EnvelopeStatus::ok, EnvelopeStatus::malformed, EnvelopeStatus::unsupported_version,
          EnvelopeStatus::auth_failed, EnvelopeStatus::crypto_failure}) {
        ASSERT_NE(envelope_status_text(st), nullptr);
        EXPECT_GT(std::strlen(envelope_status_text(st)), 0u);
    }
}

}  // namespace
}  // namespace envelope
