// Trustpoint fields: decoding, opening and unpadding against vectors made with Python's
// `cryptography` (AESGCM), plus fields built here with every padding length and malformed ones.
#include "envelope_format.hpp"
#include "legacy_field.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace envelope {
namespace {

// key = 00 01 .. 1f, nonce = 64 65 .. 6f; made with
//   AESGCM(key).encrypt(nonce, pt + b"\0" * n + bytes([n]), None), n = 15 - len(pt) % 16,
//   base64(nonce + tag + ciphertext).
struct KnownField {
    const char *plaintext;
    const char *base64;
};
const KnownField kKnown[] = {
    {"hello", "ZGVmZ2hpamtsbW5vaYnYAIswRmSprLhEQk9pwiB+sgoW6VaePmJf6Nplavc="},
    {"", "ZGVmZ2hpamtsbW5v8uewflPc6n1Er4R8PxiMQ0gb3mZ56VaePmJf6NplavI="},
    {"0123456789abcde", "ZGVmZ2hpamtsbW5v23ULYLwo7svqDhwH4EHBY3gq7FVN3GCpBls+irkBD/0="},
};

class LegacyField : public ::testing::Test {
  protected:
    void SetUp() override {
        uint8_t key[kAesKeySize];
        for (size_t i = 0; i < sizeof key; ++i) key[i] = static_cast<uint8_t>(i);
        ASSERT_TRUE(key_.init(key));
    }

    LegacyStatus open_text(const std::string &text, std::string *plain) {
        std::vector<uint8_t> field(legacy_decoded_max(text.size()) + 1);
        size_t field_len = 0;
        LegacyStatus st = decode_legacy_field(text.data(), text.size(), field.data(), &field_len);
        if (st != LegacyStatus::ok) return st;
        std::vector<uint8_t> out(field_len - kLegacyHeaderSize);
        size_t n = 0;
        st = open_legacy_field(key_, {field.data(), field_len}, out.data(), &n);
        if (st == LegacyStatus::ok) {
            plain->assign(reinterpret_cast<const char *>(out.data()), n);
            // The padding tail is wiped.
            for (size_t i = n; i < out.size(); ++i) EXPECT_EQ(out[i], 0);
        } else {
            for (uint8_t b : out) EXPECT_EQ(b, 0);
        }
        return st;
    }

    // nonce || tag || GCM(padded) with the padding given explicitly, as base64.
    std::string make(const std::vector<uint8_t> &padded) {
        uint8_t nonce[kGcmNonceSize];
        for (size_t i = 0; i < sizeof nonce; ++i) nonce[i] = static_cast<uint8_t>(7 * i);
        std::vector<uint8_t> field(kLegacyHeaderSize + padded.size());
        std::memcpy(field.data(), nonce, sizeof nonce);
        EXPECT_TRUE(key_.seal(nonce, {}, {ByteView(padded.data(), padded.size())},
                              field.data() + kLegacyHeaderSize, field.data() + kGcmNonceSize));
        return base64(field);
    }

    static std::vector<uint8_t> pad(const std::string &plain) {
        const size_t n = 15 - plain.size() % 16;
        std::vector<uint8_t> v(plain.begin(), plain.end());
        v.insert(v.end(), n, 0);
        v.push_back(static_cast<uint8_t>(n));
        return v;
    }

    // Standard base64 through the printable envelope encoder (minus its prefix).
    static std::string base64(const std::vector<uint8_t> &bytes) {
        std::string out(printable_length(bytes.size()) + 1, '\0');
        encode_printable({bytes.data(), bytes.size()}, out.data());
        out.resize(out.size() - 1);
        return out.substr(kPrintablePrefixLen);
    }

    AesGcmKey key_;
};

TEST_F(LegacyField, KnownVectorsFromPython) {
    for (const auto &k : kKnown) {
        std::string plain;
        ASSERT_EQ(open_text(k.base64, &plain), LegacyStatus::ok) << k.plaintext;
        EXPECT_EQ(plain, k.plaintext);
    }
}

TEST_F(LegacyField, EveryPaddingLength) {
    for (size_t len = 0; len <= 48; ++len) {
        std::string text(len, 'x');
        for (size_t i = 0; i < len; ++i) text[i] = static_cast<char>('a' + i % 26);
        std::string plain;
        ASSERT_EQ(open_text(make(pad(text)), &plain), LegacyStatus::ok) << len;
        EXPECT_EQ(plain, text);
    }
}

TEST_F(LegacyField, BadPaddingIsRejected) {
    std::string plain;
    // Count above 15.
    std::vector<uint8_t> v(16, 0);
    v[15] = 16;
    EXPECT_EQ(open_text(make(v), &plain), LegacyStatus::bad_padding);
    v[15] = 0xff;
    EXPECT_EQ(open_text(make(v), &plain), LegacyStatus::bad_padding);
    // A non-zero byte among the n pad bytes, at either end of the run.
    for (size_t pos : {7u, 14u}) {
        std::vector<uint8_t> p = pad("abcdefg");  // n = 8: bytes 7..14 are zero
        p[pos] = 1;
        EXPECT_EQ(open_text(make(p), &plain), LegacyStatus::bad_padding) << pos;
    }
    // The byte just before the run is plaintext and may be anything.
    std::vector<uint8_t> p = pad("abcdefg");
    p[6] = 0;
    EXPECT_EQ(open_text(make(p), &plain), LegacyStatus::ok);
    EXPECT_EQ(plain, std::string("abcdef\0", 7));
}

TEST_F(LegacyField, TamperingAndWrongKeyFailAuthentication) {
    std::string good = kKnown[0].base64;
    std::string plain;
    for (size_t pos : {0u, 20u, 40u, 50u}) {  // nonce, tag, ciphertext
        std::string t = good;
        t[pos] = t[pos] == 'A' ? 'B' : 'A';
        EXPECT_EQ(open_text(t, &plain), LegacyStatus::auth_failed) << pos;
    }
    uint8_t other[kAesKeySize] = {1};
    ASSERT_TRUE(key_.init(other));
    EXPECT_EQ(open_text(good, &plain), LegacyStatus::auth_failed);
}

TEST_F(LegacyField, MalformedText) {
    std::string plain;
    EXPECT_EQ(open_text("", &plain), LegacyStatus::bad_base64);
    EXPECT_EQ(open_text("    ", &plain), LegacyStatus::bad_base64);
    std::string good = kKnown[0].base64;
    EXPECT_EQ(open_text(good + "\n", &plain), LegacyStatus::bad_base64);
    EXPECT_EQ(open_text(" " + good.substr(1), &plain), LegacyStatus::bad_base64);
    EXPECT_EQ(open_text(good.substr(0, good.size() - 1) + "*", &plain), LegacyStatus::bad_base64);
    EXPECT_EQ(open_text(good.substr(0, good.size() - 4), &plain), LegacyStatus::bad_length);
    EXPECT_EQ(open_text("QUJD", &plain), LegacyStatus::bad_length);
    // 28 + 17 bytes: not whole blocks.
    EXPECT_EQ(open_text(base64(std::vector<uint8_t>(45, 1)), &plain), LegacyStatus::bad_length);
    EXPECT_EQ(open_text(base64(std::vector<uint8_t>(28, 1)), &plain), LegacyStatus::bad_length);
}

TEST_F(LegacyField, StatusTextIsNeverNull) {
    for (auto s :
         {LegacyStatus::ok, LegacyStatus::bad_base64, LegacyStatus::bad_length,
          LegacyStatus::auth_failed, LegacyStatus::bad_padding, LegacyStatus::crypto_failure}) {
        EXPECT_NE(legacy_status_text(s), nullptr);
    }
}

}  // namespace
}  // namespace envelope
