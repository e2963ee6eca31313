// AesGcmKey against published AES-256-GCM vectors on every engine, the engines against each
// other on random inputs, plus reuse and failure behaviour.
#include "aes_gcm.hpp"
#include "gcrypt_setup.hpp"

#include "vectors.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

namespace envelope {
namespace {

using test::from_hex;

struct GcmVector {
    const char *name;
    const char *key;
    const char *iv;
    const char *aad;
    const char *pt;
    const char *ct;
    const char *tag;
};

// Sources:
//  - "Test Case 13..16": McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)",
//    revised submission to NIST, appendix B (AES-256, 96-bit IV).
//  - "CAVP ...": NIST CAVP gcmtestvectors.zip, gcmEncryptExtIV256.rsp,
//    [Keylen = 256] [IVlen = 96] [PTlen = 0] [AADlen = 128] [Taglen = 128], Count = 0 and 1
//    (empty plaintext, AAD only).
const GcmVector kVectors[] = {
    {"Test Case 13 (empty)", "0000000000000000000000000000000000000000000000000000000000000000",
     "000000000000000000000000", "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
    {"Test Case 14 (one zero block)",
     "0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000",
     "", "00000000000000000000000000000000", "cea7403d4d606b6e074ec5d3baf39d18",
     "d0d1c8a799996bf0265b98b5d48ab919"},
    {"Test Case 15 (64 bytes, no AAD)",
     "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
     "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
     "b094dac5d93471bdec1a502270e3cc6c"},
    {"Test Case 16 (60 bytes, 20-byte AAD)",
     "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
     "feedfacedeadbeeffeedfacedeadbeefabaddad2",
     "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
     "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
    {"CAVP gcmEncryptExtIV256 PTlen=0 AADlen=128 Count=0",
     "78dc4e0aaf52d935c3c01eea57428f00ca1fd475f5da86a49c8dd73d68c8e223", "d79cf22d504cc793c3fb6c8a",
     "b96baa8c1c75a671bfb2d08d06be5f36", "", "", "3e5d486aa2e30b22e040b85723a06e76"},
    {"CAVP gcmEncryptExtIV256 PTlen=0 AADlen=128 Count=1",
     "4457ff33683cca6ca493878bdc00373893a9763412eef8cddb54f91318e0da88", "699d1f29d7b8c55300bb1fd2",
     "6749daeea367d0e9809e2dc2f309e6e3", "", "", "d60c74d2517fde4a74e0cd4709ed43a9"},
};

const char *engine_name(GcmEngine e) {
    switch (e) {
        case GcmEngine::automatic:
            return "automatic";
        case GcmEngine::nettle:
            return "nettle";
        case GcmEngine::libgcrypt:
            return "libgcrypt";
    }
    return "?";
}

class GcmVectorTest : public ::testing::TestWithParam<std::tuple<GcmVector, GcmEngine>> {};

TEST_P(GcmVectorTest, SealMatchesAndOpenRoundTrips) {
    const GcmVector &v = std::get<0>(GetParam());
    const GcmEngine engine = std::get<1>(GetParam());
    auto key = from_hex(v.key), iv = from_hex(v.iv), aad = from_hex(v.aad), pt = from_hex(v.pt),
         ct = from_hex(v.ct), tag = from_hex(v.tag);
    ASSERT_EQ(key.size(), kAesKeySize);
    ASSERT_EQ(iv.size(), kGcmNonceSize);

    AesGcmKey k;
    ASSERT_TRUE(k.init(key.data()));
    std::vector<uint8_t> out(pt.size() + 1, 0xee);
    uint8_t got_tag[kGcmTagSize];
    ASSERT_TRUE(k.seal(iv.data(), {ByteView(aad.data(), aad.size())},
                       {ByteView(pt.data(), pt.size())}, out.data(), got_tag, engine));
    EXPECT_EQ(std::vector<uint8_t>(out.begin(), out.begin() + pt.size()), ct) << v.name;
    EXPECT_EQ(out.back(), 0xee) << "wrote past the ciphertext";
    EXPECT_EQ(std::vector<uint8_t>(got_tag, got_tag + kGcmTagSize), tag) << v.name;

    std::vector<uint8_t> back(ct.size() + 1, 0xee);
    ASSERT_TRUE(k.open(iv.data(), {ByteView(aad.data(), aad.size())},
                       ByteView(ct.data(), ct.size()), tag.data(), back.data(), engine));
    EXPECT_EQ(std::vector<uint8_t>(back.begin(), back.begin() + ct.size()), pt);

    // A flipped tag bit is refused by every engine.
    std::vector<uint8_t> bad_tag = tag;
    bad_tag[kGcmTagSize - 1] ^= 0x80;
    EXPECT_FALSE(k.open(iv.data(), {ByteView(aad.data(), aad.size())},
                        ByteView(ct.data(), ct.size()), bad_tag.data(), back.data(), engine));

    // Splitting AAD and plaintext into parts must not change the result.
    if (pt.size() >= 2 && aad.size() >= 2) {
        size_t ph = pt.size() / 2, ah = aad.size() / 3;
        ASSERT_TRUE(k.seal(
            iv.data(),
            {ByteView(aad.data(), ah), ByteView(), ByteView(aad.data() + ah, aad.size() - ah)},
            {ByteView(pt.data(), ph), ByteView(pt.data() + ph, pt.size() - ph)}, out.data(),
            got_tag, engine));
        EXPECT_EQ(std::vector<uint8_t>(out.begin(), out.begin() + pt.size()), ct);
        EXPECT_EQ(std::vector<uint8_t>(got_tag, got_tag + kGcmTagSize), tag);
    }
}

INSTANTIATE_TEST_SUITE_P(Nist, GcmVectorTest,
                         ::testing::Combine(::testing::ValuesIn(kVectors),
                                            ::testing::Values(GcmEngine::nettle,
                                                              GcmEngine::libgcrypt,
                                                              GcmEngine::automatic)),
                         [](const ::testing::TestParamInfo<GcmVectorTest::ParamType> &info) {
                             std::string name = std::to_string(info.index / 3) + "_" +
                                                engine_name(std::get<1>(info.param));
                             return name;
                         });

// The engines agree byte for byte on random keys, nonces, sizes (around the crossover too),
// AAD and part splits; each opens what the other sealed. ENVELOPE_CROSS_CHECKS overrides
// the count (default 100,000).
TEST(AesGcmEngines, LibgcryptIsOursInThisProcess) {
    // Nobody else initialised libgcrypt here, so its secure memory is protected_alloc's.
    EXPECT_TRUE(libgcrypt_engine_available());
}

// With ENVELOPE_EXPECT_PORTABLE_AES=1 (set by run_portable_aes.sh together with the masks),
// libgcrypt must report that it uses neither AES-NI nor PCLMUL.
TEST(AesGcmEngines, PortablePathWhenFeaturesAreMasked) {
    const char *expect = std::getenv("ENVELOPE_EXPECT_PORTABLE_AES");
    const std::string features = gcrypt_hw_features();
    if (expect == nullptr) {
        SUCCEED() << "libgcrypt uses: " << features;
        return;
    }
    EXPECT_EQ(features.find("intel-aesni"), std::string::npos) << features;
    EXPECT_EQ(features.find("intel-pclmul"), std::string::npos) << features;
    EXPECT_EQ(features.find("intel-vaes-vpclmul"), std::string::npos) << features;
}

TEST(AesGcmEngines, CrossCheckOnRandomInputs) {
    long checks = 100000;
    if (const char *env = std::getenv("ENVELOPE_CROSS_CHECKS")) checks = std::atol(env);
    std::mt19937_64 rng(20261202);
    auto byte = [&] { return static_cast<uint8_t>(rng()); };
    AesGcmKey k;
    uint8_t key[kAesKeySize];
    std::vector<uint8_t> pt, aad, c1, c2, back;
    for (long i = 0; i < checks; ++i) {
        if (i % 1000 == 0) {
            for (auto &b : key) b = byte();
            ASSERT_TRUE(k.init(key));
        }
        uint8_t nonce[kGcmNonceSize];
        for (auto &b : nonce) b = byte();
        // Mostly small values, some near the crossover, a few large ones.
        const unsigned pick = static_cast<unsigned>(rng() % 100);
        size_t n = pick < 60 ? rng() % 200 : pick < 95 ? rng() % 2048 : rng() % 20000;
        pt.resize(n);
        for (auto &b : pt) b = byte();
        aad.resize(rng() % 80);
        for (auto &b : aad) b = byte();
        const size_t ps = n ? rng() % (n + 1) : 0, as = aad.empty() ? 0 : rng() % aad.size();
        c1.assign(n, 0);
        c2.assign(n, 0);
        back.assign(n, 0);
        uint8_t t1[kGcmTagSize], t2[kGcmTagSize];
        const ByteView a0(aad.data(), as), a1(aad.data() + as, aad.size() - as);
        const ByteView p0(pt.data(), ps), p1(pt.data() + ps, n - ps);
        ASSERT_TRUE(k.seal(nonce, {a0, a1}, {p0, p1}, c1.data(), t1, GcmEngine::nettle));
        ASSERT_TRUE(k.seal(nonce, {a0, a1}, {p0, p1}, c2.data(), t2, GcmEngine::libgcrypt));
        ASSERT_EQ(c1, c2) << "case " << i << " size " << n;
        ASSERT_EQ(std::memcmp(t1, t2, kGcmTagSize), 0) << "case " << i << " size " << n;
        ASSERT_TRUE(k.open(nonce, {ByteView(aad.data(), aad.size())}, ByteView(c1.data(), n), t1,
                           back.data(), GcmEngine::libgcrypt));
        ASSERT_EQ(back, pt);
        ASSERT_TRUE(
            k.open(nonce, {a0, a1}, ByteView(c2.data(), n), t2, back.data(), GcmEngine::nettle));
        ASSERT_EQ(back, pt);
    }
}

TEST(AesGcmKey, NotReadyBeforeInitAndRefusesWork) {
    AesGcmKey k;
    EXPECT_FALSE(k.ready());
    uint8_t nonce[kGcmNonceSize] = {};
    uint8_t tag[kGcmTagSize] = {};
    uint8_t out[4] = {9, 9, 9, 9};
    const uint8_t pt[4] = {1, 2, 3, 4};
    EXPECT_FALSE(k.seal(nonce, {}, {ByteView(pt, 4)}, out, tag));
    EXPECT_FALSE(k.open(nonce, {}, ByteView(pt, 4), tag, out));
    for (uint8_t b : out) EXPECT_EQ(b, 0);

    uint8_t key[kAesKeySize] = {};
    ASSERT_TRUE(k.init(key));
    EXPECT_TRUE(k.ready());
    k.reset();
    EXPECT_FALSE(k.ready());
}

TEST(AesGcmKey, ReusedForThousandSealOpenPairs) {
    uint8_t key[kAesKeySize];
    for (size_t i = 0; i < kAesKeySize; ++i) key[i] = static_cast<uint8_t>(i * 7 + 1);
    AesGcmKey k;
    ASSERT_TRUE(k.init(key));
    for (int i = 0; i < 1000; ++i) {
        uint8_t nonce[kGcmNonceSize] = {};
        nonce[0] = static_cast<uint8_t>(i);
        nonce[1] = static_cast<uint8_t>(i >> 8);
        std::vector<uint8_t> pt(static_cast<size_t>(i % 97));
        for (size_t j = 0; j < pt.size(); ++j) pt[j] = static_cast<uint8_t>(i + j);
        std::string aad = "row " + std::to_string(i);
        std::vector<uint8_t> ct(pt.size()), back(pt.size());
        uint8_t tag[kGcmTagSize];
        ASSERT_TRUE(
            k.seal(nonce, {ByteView(aad)}, {ByteView(pt.data(), pt.size())}, ct.data(), tag));
        ASSERT_TRUE(
            k.open(nonce, {ByteView(aad)}, ByteView(ct.data(), ct.size()), tag, back.data()));
        ASSERT_EQ(back, pt) << i;
    }
}

TEST(AesGcmKey, OpenFailureWipesOutput) {
    uint8_t key[kAesKeySize] = {42};
    AesGcmKey k;
    ASSERT_TRUE(k.init(key));
    uint8_t nonce[kGcmNonceSize] = {1};
    std::vector<uint8_t> pt(100, 0x5a), ct(100);
    uint8_t tag[kGcmTagSize];
    ASSERT_TRUE(k.seal(nonce, {}, {ByteView(pt.data(), pt.size())}, ct.data(), tag));

    tag[5] ^= 1;
    std::vector<uint8_t> out(100, 0xff);
    EXPECT_FALSE(k.open(nonce, {}, ByteView(ct.data(), ct.size()), tag, out.data()));
    for (uint8_t b : out) ASSERT_EQ(b, 0);
    tag[5] ^= 1;

    // Wrong AAD also fails and wipes; the key object still works afterwards.
    std::fill(out.begin(), out.end(), 0xff);
    EXPECT_FALSE(
        k.open(nonce, {ByteView("x", 1)}, ByteView(ct.data(), ct.size()), tag, out.data()));
    for (uint8_t b : out) ASSERT_EQ(b, 0);
    EXPECT_TRUE(k.open(nonce, {}, ByteView(ct.data(), ct.size()), tag, out.data()));
    EXPECT_EQ(out, pt);
}

TEST(AesGcmKey, ReinitWithAnotherKeyChangesOutput) {
    uint8_t k1[kAesKeySize] = {1}, k2[kAesKeySize] = {2};
    uint8_t nonce[kGcmNonceSize] = {};
    uint8_t pt[16] = {}, c1[16], c2[16], t1[16], t2[16];
    AesGcmKey k;
    ASSERT_TRUE(k.init(k1));
    ASSERT_TRUE(k.seal(nonce, {}, {ByteView(pt, 16)}, c1, t1));
    ASSERT_TRUE(k.init(k2));
    ASSERT_TRUE(k.seal(nonce, {}, {ByteView(pt, 16)}, c2, t2));
    EXPECT_NE(std::memcmp(c1, c2, 16), 0);
    EXPECT_FALSE(k.open(nonce, {}, ByteView(c1, 16), t1, pt));
}

}  // namespace
}  // namespace envelope
