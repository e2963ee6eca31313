// RFC 3394 / RFC 5649 computed from a block function, checked against the RFCs' vectors and
// against OpenSSL's own key-wrap ciphers (an independent implementation).
#include "key_wrap.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstring>
#include <string>
#include <vector>

namespace envelope {
namespace {

std::vector<uint8_t> unhex(const std::string &h) {
    std::vector<uint8_t> out;
    for (size_t i = 0; i + 1 < h.size(); i += 2) {
        out.push_back(static_cast<uint8_t>(std::stoi(h.substr(i, 2), nullptr, 16)));
    }
    return out;
}

// AES single-block function from OpenSSL's ECB for a 128/192/256-bit key.
AesBlockFn openssl_block(const std::vector<uint8_t> &key) {
    return [key](bool encrypt, const uint8_t *in, uint8_t *out) {
        const EVP_CIPHER *c = key.size() == 16   ? EVP_aes_128_ecb()
                              : key.size() == 24 ? EVP_aes_192_ecb()
                                                 : EVP_aes_256_ecb();
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        int n = 0;
        uint8_t tmp[32];
        EVP_CipherInit_ex(ctx, c, nullptr, key.data(), nullptr, encrypt ? 1 : 0);
        EVP_CIPHER_CTX_set_padding(ctx, 0);
        EVP_CipherUpdate(ctx, tmp, &n, in, 16);
        EVP_CIPHER_CTX_free(ctx);
        std::memcpy(out, tmp, 16);
    };
}

// OpenSSL's own RFC 3394 / 5649 wrap for a 256-bit key.
std::vector<uint8_t> openssl_wrap(bool pad, const std::vector<uint8_t> &key,
                                  const std::vector<uint8_t> &in) {
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    EVP_EncryptInit_ex(ctx, pad ? EVP_aes_256_wrap_pad() : EVP_aes_256_wrap(), nullptr, key.data(),
                       nullptr);
    std::vector<uint8_t> out(in.size() + 16);
    int n = 0, m = 0;
    EVP_EncryptUpdate(ctx, out.data(), &n, in.data(), static_cast<int>(in.size()));
    EVP_EncryptFinal_ex(ctx, out.data() + n, &m);
    EVP_CIPHER_CTX_free(ctx);
    out.resize(n + m);
    return out;
}

TEST(KeyWrap, Rfc3394Section4_6Vector) {
    // RFC 3394 4.6: 256 bits of key data with a 256-bit KEK.
    auto kek = unhex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
    auto data = unhex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F");
    auto want =
        unhex("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21");
    std::vector<uint8_t> out(key_wrap_size(KeyWrapVariant::rfc3394, data.size()));
    key_wrap(KeyWrapVariant::rfc3394, ByteView(data.data(), data.size()), openssl_block(kek),
             out.data());
    EXPECT_EQ(out, want);
    SecureBuffer back;
    ASSERT_TRUE(key_unwrap(KeyWrapVariant::rfc3394, ByteView(out.data(), out.size()),
                           openssl_block(kek), back));
    EXPECT_EQ(std::vector<uint8_t>(back.data(), back.data() + back.size()), data);
}

TEST(KeyWrap, Rfc5649Section6Vectors) {
    // RFC 5649 section 6: a 192-bit KEK, 20 bytes and 7 bytes of key data.
    auto kek = unhex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8");
    auto d20 = unhex("c37b7e6492584340bed12207808941155068f738");
    auto w20 = unhex("138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a");
    auto d7 = unhex("466f7250617369");
    auto w7 = unhex("afbeb0f07dfbf5419200f2ccb50bb24f");
    for (auto [data, want] : {std::pair{d20, w20}, std::pair{d7, w7}}) {
        std::vector<uint8_t> out(key_wrap_size(KeyWrapVariant::rfc5649, data.size()));
        key_wrap(KeyWrapVariant::rfc5649, ByteView(data.data(), data.size()), openssl_block(kek),
                 out.data());
        EXPECT_EQ(out, want);
        SecureBuffer back;
        ASSERT_TRUE(key_unwrap(KeyWrapVariant::rfc5649, ByteView(out.data(), out.size()),
                               openssl_block(kek), back));
        EXPECT_EQ(std::vector<uint8_t>(back.data(), back.data() + back.size()), data);
    }
}

TEST(KeyWrap, AgreesWithOpenSslForRandomKeysAndLengths) {
    for (int round = 0; round < 200; ++round) {
        std::vector<uint8_t> kek(32);
        RAND_bytes(kek.data(), 32);
        const size_t len5649 = 1 + static_cast<size_t>(round % 80);
        const size_t len3394 = 16 + 8 * static_cast<size_t>(round % 8);
        for (bool pad : {false, true}) {
            const size_t len = pad ? len5649 : len3394;
            std::vector<uint8_t> data(len);
            RAND_bytes(data.data(), static_cast<int>(len));
            const KeyWrapVariant v = pad ? KeyWrapVariant::rfc5649 : KeyWrapVariant::rfc3394;
            std::vector<uint8_t> out(key_wrap_size(v, len));
            key_wrap(v, ByteView(data.data(), len), openssl_block(kek), out.data());
            ASSERT_EQ(out, openssl_wrap(pad, kek, data)) << "round " << round << " pad " << pad;
            SecureBuffer back;
            ASSERT_TRUE(key_unwrap(v, ByteView(out.data(), out.size()), openssl_block(kek), back));
            ASSERT_EQ(std::vector<uint8_t>(back.data(), back.data() + back.size()), data);
        }
    }
}

TEST(KeyWrap, TamperWrongKeyAndWrongVariantAreRejected) {
    std::vector<uint8_t> kek(32, 0x42), other(32, 0x43), data(48, 0x5a);
    for (KeyWrapVariant v : {KeyWrapVariant::rfc3394, KeyWrapVariant::rfc5649}) {
        std::vector<uint8_t> out(key_wrap_size(v, data.size()));
        key_wrap(v, ByteView(data.data(), data.size()), openssl_block(kek), out.data());
        SecureBuffer back;
        for (size_t i = 0; i < out.size(); ++i) {
            auto t = out;
            t[i] ^= 0x01;
            EXPECT_FALSE(key_unwrap(v, ByteView(t.data(), t.size()), openssl_block(kek), back))
                << "byte " << i;
        }
        EXPECT_FALSE(key_unwrap(v, ByteView(out.data(), out.size()), openssl_block(other), back));
        const KeyWrapVariant w =
            v == KeyWrapVariant::rfc3394 ? KeyWrapVariant::rfc5649 : KeyWrapVariant::rfc3394;
        EXPECT_FALSE(key_unwrap(w, ByteView(out.data(), out.size()), openssl_block(kek), back));
        EXPECT_FALSE(key_unwrap(v, ByteView(out.data(), out.size() - 8), openssl_block(kek), back));
        EXPECT_FALSE(key_unwrap(v, ByteView(out.data(), 7), openssl_block(kek), back));
    }
}

TEST(KeyWrap, Rfc3394RefusesLengthsItCannotWrap) {
    std::vector<uint8_t> kek(32, 1), data(20, 2), out(64);
    EXPECT_THROW(key_wrap(KeyWrapVariant::rfc3394, ByteView(data.data(), 20), openssl_block(kek),
                          out.data()),
                 std::invalid_argument);
    EXPECT_THROW(
        key_wrap(KeyWrapVariant::rfc3394, ByteView(data.data(), 8), openssl_block(kek), out.data()),
        std::invalid_argument);
    EXPECT_THROW(
        key_wrap(KeyWrapVariant::rfc5649, ByteView(data.data(), 0), openssl_block(kek), out.data()),
        std::invalid_argument);
}

}  // namespace
}  // namespace envelope
