// The IKM-command KEK provider: the command runner, the HKDF info binding and IkmKekLink.
#include "hkdf.hpp"
#include "ikm_command.hpp"
#include "ikm_kek_link.hpp"

#include "vectors.hpp"

#include <gtest/gtest.h>

#include <openssl/evp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

namespace envelope {
namespace {

const std::string kIkmHex = "00112233445566778899aabbccddeeff0123456789abcdef0f1e2d3c4b5a6978";

class IkmTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/pge-ikm-unit.XXXXXX";
        const char *d = ::mkdtemp(tmpl);
        ASSERT_NE(d, nullptr);
        dir_ = d;
    }
    void TearDown() override {
        if (!dir_.empty()) std::system(("rm -rf '" + dir_ + "'").c_str());
    }
    // Writes an executable shell script with the given body (mode 0700 unless told).
    std::string script(const std::string &name, const std::string &body, mode_t mode = 0700) {
        std::string path = dir_ + "/" + name;
        std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
        ::chmod(path.c_str(), mode);
        return path;
    }
    bool run(const std::string &command, int timeout_ms = 5000) {
        ikm_.release();
        message_[0] = '\0';
        return run_ikm_command(command.c_str(), timeout_ms, ikm_, message_);
    }
    std::string message() const { return message_; }

    std::string dir_;
    SecureBuffer ikm_;
    char message_[kIkmMessageSize] = {};
};

TEST_F(IkmTest, SuccessDecodesTheHex) {
    ASSERT_TRUE(run(script("ok", "printf '%s\\n' " + kIkmHex))) << message();
    EXPECT_EQ(std::vector<uint8_t>(ikm_.data(), ikm_.data() + ikm_.size()),
              test::from_hex(kIkmHex));
    EXPECT_TRUE(is_protected(ikm_.data(), ikm_.size()));
}

TEST_F(IkmTest, ArgumentsAreSplitOnWhitespace) {
    ASSERT_TRUE(run(script("args", "printf '%s' \"$2\"") + "  first\t" + kIkmHex)) << message();
    EXPECT_EQ(ikm_.size(), 32u);
}

TEST_F(IkmTest, NoTrailingNewlineIsFine) {
    ASSERT_TRUE(run(script("ok", "printf '%s' " + kIkmHex))) << message();
    EXPECT_EQ(ikm_.size(), 32u);
}

TEST_F(IkmTest, ExitStatusFailsWithoutShowingStderr) {
    EXPECT_FALSE(
        run(script("exit1", "echo 'stderr-secret-text' >&2; printf '%s' " + kIkmHex + "; exit 1")));
    EXPECT_NE(message().find("exited with status 1"), std::string::npos) << message();
    EXPECT_NE(message().find("19 bytes on stderr, not logged"), std::string::npos) << message();
    EXPECT_EQ(message().find("stderr-secret-text"), std::string::npos);
    EXPECT_EQ(message().find(kIkmHex.substr(0, 16)), std::string::npos);
    EXPECT_TRUE(ikm_.empty());
}

TEST_F(IkmTest, KilledBySignal) {
    EXPECT_FALSE(run(script("sig", "kill -9 $$")));
    EXPECT_NE(message().find("killed by signal 9"), std::string::npos) << message();
}

TEST_F(IkmTest, HangIsKilledAtTheTimeout) {
    const std::string pidfile = dir_ + "/child.pid";
    auto start = std::chrono::steady_clock::now();
    // The command and a child it started both hang; both are killed (one process group).
    EXPECT_FALSE(run(script("hang", "sleep 60 & echo $! > " + pidfile + "; exec sleep 60"), 300));
    auto took = std::chrono::steady_clock::now() - start;
    EXPECT_NE(message().find("did not finish within 300 ms"), std::string::npos) << message();
    EXPECT_LT(took, std::chrono::seconds(5));
    std::ifstream in(pidfile);
    int child = 0;
    ASSERT_TRUE(in >> child);
    // The background child was SIGKILLed with the group (it is reaped by init).
    bool gone = false;
    for (int i = 0; i < 200 && !gone; ++i) {
        std::ifstream stat("/proc/" + std::to_string(child) + "/stat");
        std::string line;
        gone = !std::getline(stat, line) || line.find(") Z ") != std::string::npos;
        if (!gone) ::usleep(10000);
    }
    EXPECT_TRUE(gone) << "the command's child survived the timeout";
}

TEST_F(IkmTest, NonHexIsRefusedWithoutEchoingIt) {
    EXPECT_FALSE(run(script("nonhex", "printf 'not-hex-but-secret-%s' " + kIkmHex)));
    EXPECT_NE(message().find("other than lowercase hex"), std::string::npos) << message();
    EXPECT_EQ(message().find("secret"), std::string::npos);
}

TEST_F(IkmTest, UppercaseIsRefused) {
    std::string upper = kIkmHex;
    for (char &c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_FALSE(run(script("upper", "printf '%s' " + upper)));
    EXPECT_NE(message().find("other than lowercase hex"), std::string::npos) << message();
}

TEST_F(IkmTest, TooShortIsRefused) {
    EXPECT_FALSE(run(script("short", "printf '%s\\n' " + kIkmHex.substr(0, 32))));
    EXPECT_NE(message().find("printed 16 bytes of IKM; at least 32"), std::string::npos)
        << message();
}

TEST_F(IkmTest, TooLongIsRefused) {
    EXPECT_FALSE(run(script(
        "long", "i=0; while [ $i -lt 80 ]; do printf '%s' " + kIkmHex + "; i=$((i+1)); done")));
    EXPECT_NE(message().find("printed more than 4096 bytes"), std::string::npos) << message();
}

TEST_F(IkmTest, NoOutputIsRefused) {
    EXPECT_FALSE(run(script("empty", "exit 0")));
    EXPECT_NE(message().find("printed no IKM"), std::string::npos) << message();
}

TEST_F(IkmTest, TwoTrailingNewlinesAreRefused) {
    EXPECT_FALSE(run(script("nl2", "printf '%s\\n\\n' " + kIkmHex)));
    EXPECT_NE(message().find("other than lowercase hex"), std::string::npos) << message();
}

TEST_F(IkmTest, OddDigitsAreRefused) {
    EXPECT_FALSE(run(script("odd", "printf '%s0' " + kIkmHex)));
    EXPECT_NE(message().find("odd number"), std::string::npos) << message();
}

TEST_F(IkmTest, RelativePathIsRefused) {
    script("rel", "printf '%s' " + kIkmHex);
    EXPECT_FALSE(run("rel"));
    EXPECT_NE(message().find("absolute path"), std::string::npos) << message();
    EXPECT_FALSE(run(""));
    EXPECT_NE(message().find("not set"), std::string::npos) << message();
}

TEST_F(IkmTest, MissingFileIsRefused) {
    EXPECT_FALSE(run(dir_ + "/nothing-here"));
    EXPECT_NE(message().find("No such file"), std::string::npos) << message();
}

TEST_F(IkmTest, WritableByOthersOrGroupIsRefused) {
    EXPECT_FALSE(run(script("w-other", "printf '%s' " + kIkmHex, 0702)));
    EXPECT_NE(message().find("writable by group or others"), std::string::npos) << message();
    EXPECT_FALSE(run(script("w-group", "printf '%s' " + kIkmHex, 0720)));
    EXPECT_NE(message().find("writable by group or others"), std::string::npos) << message();
}

TEST_F(IkmTest, WritableDirectoryIsRefused) {
    const std::string path = script("ok", "printf '%s' " + kIkmHex);
    ::chmod(dir_.c_str(), 0777);
    EXPECT_FALSE(run(path));
    EXPECT_NE(message().find("directory that is writable"), std::string::npos) << message();
    ::chmod(dir_.c_str(), 0700);
    EXPECT_TRUE(run(path)) << message();
}

TEST(IkmParse, OutputRules) {
    SecureBuffer ikm;
    char message[kIkmMessageSize];
    const std::string ok = kIkmHex + "\n";
    EXPECT_TRUE(
        parse_ikm_output(reinterpret_cast<const uint8_t *>(ok.data()), ok.size(), ikm, message));
    EXPECT_EQ(ikm.size(), 32u);
    const std::string crlf = kIkmHex + "\r\n";
    EXPECT_FALSE(parse_ikm_output(reinterpret_cast<const uint8_t *>(crlf.data()), crlf.size(), ikm,
                                  message));
    const std::string spaced = " " + kIkmHex;
    EXPECT_FALSE(parse_ikm_output(reinterpret_cast<const uint8_t *>(spaced.data()), spaced.size(),
                                  ikm, message));
}

// The KEK is HKDF-SHA-256(IKM, salt, "pg_envelope/kek/v1\0" || label): each input matters.
TEST(IkmDerivation, InfoBindsPurposeAndLabel) {
    const std::vector<uint8_t> ikm = test::from_hex(kIkmHex);
    const std::vector<uint8_t> salt(kIkmSaltSize, 0x5a);
    uint8_t info[kIkmKekInfoMax];
    const size_t len = ikm_kek_info("kek-a", info, sizeof info);
    const char want[] = "pg_envelope/kek/v1\0kek-a";
    ASSERT_EQ(len, sizeof want - 1);
    EXPECT_EQ(std::memcmp(info, want, len), 0);

    uint8_t a[32], a2[32], b[32], other_salt[32], manual[32];
    ASSERT_TRUE(derive_ikm_kek({ikm.data(), ikm.size()}, {salt.data(), salt.size()}, "kek-a", a));
    ASSERT_TRUE(derive_ikm_kek({ikm.data(), ikm.size()}, {salt.data(), salt.size()}, "kek-a", a2));
    ASSERT_TRUE(derive_ikm_kek({ikm.data(), ikm.size()}, {salt.data(), salt.size()}, "kek-b", b));
    std::vector<uint8_t> salt2 = salt;
    salt2[0] ^= 1;
    ASSERT_TRUE(derive_ikm_kek({ikm.data(), ikm.size()}, {salt2.data(), salt2.size()}, "kek-a",
                               other_salt));
    ASSERT_TRUE(hkdf_sha256({ikm.data(), ikm.size()}, {salt.data(), salt.size()},
                            ByteView(want, sizeof want - 1), manual, 32));
    EXPECT_EQ(std::memcmp(a, a2, 32), 0);
    EXPECT_EQ(std::memcmp(a, manual, 32), 0);
    EXPECT_NE(std::memcmp(a, b, 32), 0);
    EXPECT_NE(std::memcmp(a, other_salt, 32), 0);
    // Too little IKM is refused even when called directly.
    EXPECT_FALSE(derive_ikm_kek({ikm.data(), 16}, {salt.data(), salt.size()}, "kek-a", a));
}

class IkmLinkTest : public IkmTest {
  protected:
    HsmResult connect(IkmKekLink &link, const char *label) {
        if (command_.empty()) command_ = script("ikm", "printf '%s\\n' " + kIkmHex);
        salt_path_ = dir_ + "/ikm_salt";
        IkmSettings s{command_.c_str(), 5000, salt_path_.c_str(), label};
        return link.connect(s);
    }
    std::vector<uint8_t> salt() const {
        std::ifstream in(salt_path_, std::ios::binary);
        return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
    }
    std::string command_;
    std::string salt_path_;
};

const char kIdentity[] = "dek:000102030405060708090a0b0c0d0e0f";

ByteView id_view(const char *s) {
    return ByteView(s, std::strlen(s));
}

TEST_F(IkmLinkTest, WrapRoundTripAndFormat) {
    IkmKekLink link;
    HsmResult r = connect(link, "kek-a");
    ASSERT_TRUE(r.ok) << r.message;
    EXPECT_TRUE(link.connected());
    EXPECT_TRUE(link.alive());
    EXPECT_TRUE(link.created_salt());
    struct stat st {};
    ASSERT_EQ(::stat(salt_path_.c_str(), &st), 0);
    EXPECT_EQ(st.st_size, 32);
    EXPECT_EQ(st.st_mode & 0777, 0600u);

    uint8_t key[kDekSize], wrapped[128], back[kDekSize];
    size_t wrapped_len = 0;
    r = link.create_dek(id_view(kIdentity), key, wrapped, sizeof wrapped, &wrapped_len);
    ASSERT_TRUE(r.ok) << r.message;
    ASSERT_EQ(wrapped_len, kWrappedDekSize);
    EXPECT_EQ(wrapped[0], kWrapFormatVersion);
    r = link.unwrap_dek(id_view(kIdentity), {wrapped, wrapped_len}, back);
    ASSERT_TRUE(r.ok) << r.message;
    EXPECT_EQ(std::memcmp(key, back, kDekSize), 0);

    // The wrap is plain v1: AES-256-GCM under HKDF(IKM, salt, info), AAD = prefix || identity.
    const std::vector<uint8_t> ikm = test::from_hex(kIkmHex);
    const std::vector<uint8_t> s = salt();
    uint8_t kek[32];
    ASSERT_TRUE(derive_ikm_kek({ikm.data(), ikm.size()}, {s.data(), s.size()}, "kek-a", kek));
    std::string aad("pg_envelope/dek-wrap/v1", sizeof "pg_envelope/dek-wrap/v1");
    aad += kIdentity;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    uint8_t plain[kDekSize];
    int n = 0, n2 = 0;
    ASSERT_EQ(EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, kek, wrapped + 1), 1);
    ASSERT_EQ(EVP_DecryptUpdate(ctx, nullptr, &n, reinterpret_cast<const uint8_t *>(aad.data()),
                                static_cast<int>(aad.size())),
              1);
    ASSERT_EQ(EVP_DecryptUpdate(ctx, plain, &n, wrapped + 13, 32), 1);
    ASSERT_EQ(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, wrapped + 45), 1);
    EXPECT_EQ(EVP_DecryptFinal_ex(ctx, plain + n, &n2), 1);
    EVP_CIPHER_CTX_free(ctx);
    EXPECT_EQ(std::memcmp(plain, key, kDekSize), 0);

    // Two wraps of DEKs never share a nonce.
    uint8_t wrapped2[128];
    ASSERT_TRUE(
        link.create_dek(id_view(kIdentity), key, wrapped2, sizeof wrapped2, &wrapped_len).ok);
    EXPECT_NE(std::memcmp(wrapped + 1, wrapped2 + 1, kGcmNonceSize), 0);
}

TEST_F(IkmLinkTest, WrongIdentityLabelOrBlobIsRejected) {
    IkmKekLink link;
    ASSERT_TRUE(connect(link, "kek-a").ok);
    uint8_t key[kDekSize], wrapped[128], back[kDekSize];
    size_t len = 0;
    ASSERT_TRUE(link.create_dek(id_view(kIdentity), key, wrapped, sizeof wrapped, &len).ok);

    HsmResult r =
        link.unwrap_dek(id_view("dek:ffffffffffffffffffffffffffffffff"), {wrapped, len}, back);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.failure, Pkcs11Failure::unwrap_auth);
    // The salt was created by this link: the message says what a restored keyring needs.
    EXPECT_NE(std::string(r.message).find("ikm_salt copied"), std::string::npos) << r.message;
    r = link.unwrap_dek(id_view(kIdentity), {wrapped, len}, back, "kek-b");
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.failure, Pkcs11Failure::unwrap_auth);
    wrapped[20] ^= 1;
    r = link.unwrap_dek(id_view(kIdentity), {wrapped, len}, back);
    EXPECT_EQ(r.failure, Pkcs11Failure::unwrap_auth);
    wrapped[20] ^= 1;
    wrapped[0] = 2;
    r = link.unwrap_dek(id_view(kIdentity), {wrapped, len}, back);
    EXPECT_EQ(r.failure, Pkcs11Failure::malformed);
    r = link.unwrap_dek(id_view(kIdentity), {wrapped, len - 1}, back);
    EXPECT_EQ(r.failure, Pkcs11Failure::malformed);

    link.disconnect();
    EXPECT_FALSE(link.connected());
    EXPECT_FALSE(link.create_dek(id_view(kIdentity), key, wrapped, sizeof wrapped, &len).ok);
}

TEST_F(IkmLinkTest, SaltIsKeptAndLabelRotationRewraps) {
    uint8_t key[kDekSize], wrapped[128], rewrapped[128], back[kDekSize];
    size_t len = 0, relen = 0;
    {
        IkmKekLink old_link;
        ASSERT_TRUE(connect(old_link, "kek-old").ok);
        ASSERT_TRUE(old_link.create_dek(id_view(kIdentity), key, wrapped, sizeof wrapped, &len).ok);
    }
    const std::vector<uint8_t> salt_before = salt();
    IkmKekLink link;
    HsmResult r = connect(link, "kek-new");
    ASSERT_TRUE(r.ok) << r.message;
    EXPECT_FALSE(link.created_salt());
    EXPECT_EQ(salt(), salt_before);
    // An old label's KEK is derived from the same IKM and salt.
    r = link.unwrap_dek(id_view(kIdentity), {wrapped, len}, back, "kek-old");
    ASSERT_TRUE(r.ok) << r.message;
    EXPECT_EQ(std::memcmp(key, back, kDekSize), 0);
    r = link.rewrap_dek(id_view(kIdentity), {wrapped, len}, "kek-old", rewrapped, sizeof rewrapped,
                        &relen);
    ASSERT_TRUE(r.ok) << r.message;
    EXPECT_EQ(relen, kWrappedDekSize);
    EXPECT_EQ(link.unwrap_dek(id_view(kIdentity), {rewrapped, relen}, back, "kek-old").failure,
              Pkcs11Failure::unwrap_auth);
    r = link.unwrap_dek(id_view(kIdentity), {rewrapped, relen}, back, "kek-new");
    ASSERT_TRUE(r.ok) << r.message;
    EXPECT_EQ(std::memcmp(key, back, kDekSize), 0);
    // The message no longer blames a new salt.
    r = link.unwrap_dek(id_view(kIdentity), {wrapped, len}, back, "kek-new");
    EXPECT_EQ(std::string(r.message).find("created new"), std::string::npos) << r.message;
}

TEST_F(IkmLinkTest, BadSaltFileIsAnErrorAndNeverReplaced) {
    salt_path_ = dir_ + "/ikm_salt";
    std::ofstream(salt_path_) << "short";
    ::chmod(salt_path_.c_str(), 0600);
    IkmKekLink link;
    HsmResult r = connect(link, "kek-a");
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.failure, Pkcs11Failure::ikm_salt);
    EXPECT_NE(std::string(r.message).find("has 5 bytes, expected 32"), std::string::npos)
        << r.message;
    EXPECT_EQ(salt().size(), 5u);

    std::ofstream(salt_path_, std::ios::trunc) << std::string(32, 'x');
    ::chmod(salt_path_.c_str(), 0644);
    r = connect(link, "kek-a");
    EXPECT_EQ(r.failure, Pkcs11Failure::ikm_salt);
    EXPECT_NE(std::string(r.message).find("mode 0600 (it has mode 0644)"), std::string::npos)
        << r.message;
    ::chmod(salt_path_.c_str(), 0600);
    r = connect(link, "kek-a");
    EXPECT_TRUE(r.ok) << r.message;
    EXPECT_FALSE(link.created_salt());
}

TEST_F(IkmLinkTest, CommandFailureIsReported) {
    command_ = script("bad", "exit 3");
    IkmKekLink link;
    HsmResult r = connect(link, "kek-a");
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.failure, Pkcs11Failure::ikm_command);
    EXPECT_NE(std::string(r.message).find("exited with status 3"), std::string::npos) << r.message;
    EXPECT_FALSE(link.connected());
}

}  // namespace
}  // namespace envelope
