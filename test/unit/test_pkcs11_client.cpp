// Tests of Pkcs11Client and pg_envelope_provision against a throw-away SoftHSM2 token.
#include "hsm_link.hpp"
#include "pkcs11_client.hpp"
#include "secure_buffer.hpp"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace envelope {
namespace {

const char kModule[] = "/usr/lib/softhsm/libsofthsm2.so";
const char kToken[] = "pg_envelope_unit";
const char kKek[] = "pg_envelope-kek";
const char kUserPin[] = "user-pin-8264";
const char kSoPin[] = "so-pin-5519";

struct ToolRun {
    int exit_code = -1;
    std::string output;  // stdout and stderr together
};

void write_file(const std::string &path, const std::string &content, mode_t mode) {
    {
        std::ofstream f(path, std::ios::binary | std::ios::trunc);
        f << content;
    }
    ::chmod(path.c_str(), mode);
}

ByteView bytes(const std::string &s) {
    return ByteView(s.data(), s.size());
}

class Pkcs11ClientTest : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        char tmpl[] = "/tmp/pg_envelope_p11_XXXXXX";
        const char *d = ::mkdtemp(tmpl);
        if (d == nullptr) return;
        dir_ = d;
        const std::string tokens = dir_ + "/tokens";
        ::mkdir(tokens.c_str(), 0700);
        write_file(dir_ + "/softhsm2.conf",
                   "directories.tokendir = " + tokens +
                       "\nobjectstore.backend = file\nlog.level = ERROR\n",
                   0600);
        ::setenv("SOFTHSM2_CONF", (dir_ + "/softhsm2.conf").c_str(), 1);
        write_file(pin_path(), std::string(kUserPin) + "\n", 0600);
        write_file(dir_ + "/so.pin", std::string(kSoPin) + "\n", 0600);
        first_run_ = run_tool("--init-token --so-pin-file " + dir_ + "/so.pin");
    }

    static void TearDownTestSuite() {
        if (!dir_.empty()) {
            std::string cmd = "rm -rf '" + dir_ + "'";
            if (std::system(cmd.c_str()) != 0)
                std::fprintf(stderr, "could not remove %s\n", dir_.c_str());
        }
    }

    void SetUp() override {
        ASSERT_FALSE(dir_.empty()) << "mkdtemp failed";
        ASSERT_EQ(first_run_.exit_code, 0) << first_run_.output;
    }

    static std::string pin_path() { return dir_ + "/user.pin"; }

    // Runs the provisioning tool on the test token with extra arguments.
    static ToolRun run_tool(const std::string &extra) {
        std::string cmd = std::string(ENVELOPE_PROVISION_TOOL) + " --module " + kModule +
                          " --token-label " + kToken + " --pin-file " + pin_path() + " " + extra +
                          " 2>&1";
        ToolRun r;
        FILE *p = ::popen(cmd.c_str(), "r");
        if (p == nullptr) return r;
        char buf[512];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
        int status = ::pclose(p);
        r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        return r;
    }

    // A client with the token open, logged in, and the KEK (kek_label) handle in kek_.
    std::unique_ptr<Pkcs11Client> connect(const char *kek_label = kKek) {
        auto c = std::make_unique<Pkcs11Client>(kModule);
        c->open_token(kToken);
        SecureBuffer pin = read_pin_file(pin_path());
        c->login(pin.view());
        kek_ = c->find_secret_key(kek_label);
        return c;
    }

    static std::string dir_;
    static ToolRun first_run_;
    CK_OBJECT_HANDLE kek_ = CK_INVALID_HANDLE;
};

std::string Pkcs11ClientTest::dir_;
ToolRun Pkcs11ClientTest::first_run_;

Pkcs11Failure failure_of(const std::function<void()> &fn, std::string *message = nullptr) {
    try {
        fn();
    } catch (const Pkcs11Error &e) {
        if (message != nullptr) *message = e.what();
        return e.failure();
    }
    ADD_FAILURE() << "expected a Pkcs11Error";
    return Pkcs11Failure::other;
}

TEST_F(Pkcs11ClientTest, FirstProvisioningCreatedTokenAndKek) {
    EXPECT_NE(first_run_.output.find("token 'pg_envelope_unit': created"), std::string::npos)
        << first_run_.output;
    EXPECT_NE(first_run_.output.find("KEK 'pg_envelope-kek': created"), std::string::npos);
    EXPECT_NE(first_run_.output.find("self-test: wrap/unwrap ok"), std::string::npos);
    EXPECT_NE(first_run_.output.find("result: changed"), std::string::npos);
}

TEST_F(Pkcs11ClientTest, WrapUnwrapRoundTrip) {
    auto c = connect();
    EXPECT_TRUE(c->session_alive());
    SecureBuffer dek = c->generate_random(kDekSize);
    const std::string id = "dek:00112233445566778899aabbccddeeff";
    std::vector<uint8_t> w1 = c->wrap_dek(kek_, dek.view(), bytes(id));
    std::vector<uint8_t> w2 = c->wrap_dek(kek_, dek.view(), bytes(id));
    ASSERT_EQ(w1.size(), kWrappedDekSize);
    EXPECT_EQ(w1[0], kWrapFormatVersion);
    EXPECT_NE(w1, w2) << "fresh nonce per wrap";
    SecureBuffer back = c->unwrap_dek(kek_, ByteView(w1.data(), w1.size()), bytes(id));
    ASSERT_EQ(back.size(), kDekSize);
    EXPECT_EQ(std::memcmp(back.data(), dek.data(), kDekSize), 0);
    SecureBuffer back2 = c->unwrap_dek(kek_, ByteView(w2.data(), w2.size()), bytes(id));
    EXPECT_EQ(std::memcmp(back2.data(), dek.data(), kDekSize), 0);
}

TEST_F(Pkcs11ClientTest, EmptyIdentityRoundTrips) {
    auto c = connect();
    SecureBuffer dek = c->generate_random(kDekSize);
    std::vector<uint8_t> w = c->wrap_dek(kek_, dek.view(), ByteView());
    SecureBuffer back = c->unwrap_dek(kek_, ByteView(w.data(), w.size()), ByteView());
    EXPECT_EQ(std::memcmp(back.data(), dek.data(), kDekSize), 0);
    EXPECT_EQ(failure_of([&] { c->unwrap_dek(kek_, ByteView(w.data(), w.size()), bytes("x")); }),
              Pkcs11Failure::unwrap_auth);
}

TEST_F(Pkcs11ClientTest, UnwrapWithOtherIdentityFails) {
    auto c = connect();
    SecureBuffer dek = c->generate_random(kDekSize);
    std::vector<uint8_t> w = c->wrap_dek(kek_, dek.view(), bytes("dek:aaaa"));
    std::string msg;
    EXPECT_EQ(
        failure_of([&] { c->unwrap_dek(kek_, ByteView(w.data(), w.size()), bytes("dek:aaab")); },
                   &msg),
        Pkcs11Failure::unwrap_auth);
    EXPECT_NE(msg.find("authentication"), std::string::npos) << msg;
}

TEST_F(Pkcs11ClientTest, EveryTamperedByteIsRejected) {
    auto c = connect();
    SecureBuffer dek = c->generate_random(kDekSize);
    const std::string id = "dek:tamper";
    std::vector<uint8_t> w = c->wrap_dek(kek_, dek.view(), bytes(id));
    for (size_t i = 0; i < w.size(); ++i) {
        for (uint8_t flip : {uint8_t{0x01}, uint8_t{0x80}}) {
            std::vector<uint8_t> t = w;
            t[i] ^= flip;
            Pkcs11Failure f =
                failure_of([&] { c->unwrap_dek(kek_, ByteView(t.data(), t.size()), bytes(id)); });
            EXPECT_TRUE(f == Pkcs11Failure::unwrap_auth || f == Pkcs11Failure::malformed)
                << "byte " << i << " flip " << int(flip) << ": " << pkcs11_failure_name(f);
            if (i == 0) {
                EXPECT_EQ(f, Pkcs11Failure::malformed);
            }
        }
    }
    // The session still works after all those failed decryptions.
    SecureBuffer back = c->unwrap_dek(kek_, ByteView(w.data(), w.size()), bytes(id));
    EXPECT_EQ(std::memcmp(back.data(), dek.data(), kDekSize), 0);
}

TEST_F(Pkcs11ClientTest, WrongLengthIsMalformed) {
    auto c = connect();
    SecureBuffer dek = c->generate_random(kDekSize);
    std::vector<uint8_t> w = c->wrap_dek(kek_, dek.view(), bytes("id"));
    std::vector<uint8_t> shorter(w.begin(), w.end() - 1);
    std::vector<uint8_t> longer = w;
    longer.push_back(0);
    EXPECT_EQ(failure_of([&] {
                  c->unwrap_dek(kek_, ByteView(shorter.data(), shorter.size()), bytes("id"));
              }),
              Pkcs11Failure::malformed);
    EXPECT_EQ(failure_of([&] {
                  c->unwrap_dek(kek_, ByteView(longer.data(), longer.size()), bytes("id"));
              }),
              Pkcs11Failure::malformed);
    EXPECT_EQ(failure_of([&] { c->unwrap_dek(kek_, ByteView(), bytes("id")); }),
              Pkcs11Failure::malformed);
}

TEST_F(Pkcs11ClientTest, WrapRejectsWrongDekSize) {
    auto c = connect();
    SecureBuffer dek = c->generate_random(16);
    EXPECT_THROW(c->wrap_dek(kek_, dek.view(), bytes("id")), Pkcs11Error);
}

TEST_F(Pkcs11ClientTest, WrongPinFailsWithoutLeakingIt) {
    Pkcs11Client c(kModule);
    c.open_token(kToken);
    const std::string wrong = "wrong-pin-73519";
    std::string msg;
    EXPECT_EQ(failure_of([&] { c.login(bytes(wrong)); }, &msg), Pkcs11Failure::login);
    EXPECT_NE(msg.find("CKR_PIN_INCORRECT"), std::string::npos) << msg;
    EXPECT_EQ(msg.find(wrong), std::string::npos) << msg;
    EXPECT_EQ(msg.find(kUserPin), std::string::npos) << msg;
}

TEST_F(Pkcs11ClientTest, UnknownTokenLabel) {
    Pkcs11Client c(kModule);
    std::string msg;
    EXPECT_EQ(failure_of([&] { c.open_token("no-such-token"); }, &msg),
              Pkcs11Failure::token_not_found);
    EXPECT_NE(msg.find("no-such-token"), std::string::npos) << msg;
    EXPECT_EQ(failure_of([&] { c.open_token(std::string(33, 'x')); }),
              Pkcs11Failure::token_not_found);
    EXPECT_FALSE(c.session_alive());
}

TEST_F(Pkcs11ClientTest, UnknownKekLabel) {
    auto c = connect();
    EXPECT_EQ(failure_of([&] { c->find_secret_key("no-such-kek"); }), Pkcs11Failure::key_not_found);
}

TEST_F(Pkcs11ClientTest, MissingModule) {
    std::string msg;
    EXPECT_EQ(failure_of([&] { Pkcs11Client c("/nonexistent/libpkcs11.so"); }, &msg),
              Pkcs11Failure::module_load);
    EXPECT_NE(msg.find("/nonexistent/libpkcs11.so"), std::string::npos) << msg;
}

TEST_F(Pkcs11ClientTest, NotAPkcs11Module) {
    EXPECT_EQ(failure_of([&] { Pkcs11Client c("libc.so.6"); }), Pkcs11Failure::module_load);
}

TEST_F(Pkcs11ClientTest, PinFileWithGroupAccessIsRefused) {
    const std::string path = dir_ + "/loose.pin";
    write_file(path, std::string(kUserPin) + "\n", 0644);
    std::string msg;
    EXPECT_EQ(failure_of([&] { read_pin_file(path); }, &msg), Pkcs11Failure::pin_file);
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("0644"), std::string::npos) << msg;
    EXPECT_NE(msg.find("chmod 600"), std::string::npos) << msg;
    EXPECT_EQ(msg.find(kUserPin), std::string::npos) << msg;
    ::chmod(path.c_str(), 0640);
    EXPECT_EQ(failure_of([&] { read_pin_file(path); }), Pkcs11Failure::pin_file);
    ::chmod(path.c_str(), 0604);
    EXPECT_EQ(failure_of([&] { read_pin_file(path); }), Pkcs11Failure::pin_file);
}

TEST_F(Pkcs11ClientTest, EmptyMissingAndOversizedPinFiles) {
    const std::string empty = dir_ + "/empty.pin";
    write_file(empty, "", 0600);
    EXPECT_EQ(failure_of([&] { read_pin_file(empty); }), Pkcs11Failure::pin_file);
    const std::string blank = dir_ + "/blank.pin";
    write_file(blank, "\nsecond-line\n", 0600);
    EXPECT_EQ(failure_of([&] { read_pin_file(blank); }), Pkcs11Failure::pin_file);
    std::string msg;
    EXPECT_EQ(failure_of([&] { read_pin_file(dir_ + "/missing.pin"); }, &msg),
              Pkcs11Failure::pin_file);
    EXPECT_NE(msg.find("missing.pin"), std::string::npos);
    const std::string big = dir_ + "/big.pin";
    write_file(big, std::string(257, '1'), 0600);
    EXPECT_EQ(failure_of([&] { read_pin_file(big); }), Pkcs11Failure::pin_file);
    EXPECT_EQ(failure_of([&] { read_pin_file(dir_); }), Pkcs11Failure::pin_file);
}

TEST_F(Pkcs11ClientTest, PinFileFirstLineWithoutLineEnding) {
    const std::string path = dir_ + "/crlf.pin";
    write_file(path, "abc123\r\nignored\n", 0600);
    SecureBuffer pin = read_pin_file(path);
    EXPECT_EQ(std::string(reinterpret_cast<const char *>(pin.data()), pin.size()), "abc123");
    write_file(path, "nonewline", 0400);
    SecureBuffer pin2 = read_pin_file(path);
    EXPECT_EQ(std::string(reinterpret_cast<const char *>(pin2.data()), pin2.size()), "nonewline");
    write_file(path, std::string(256, '7'), 0600);
    EXPECT_EQ(read_pin_file(path).size(), 256u);
}

TEST_F(Pkcs11ClientTest, KekAttributesAreStrict) {
    auto c = connect();
    CK_BBOOL extractable = CK_TRUE, sensitive = CK_FALSE, wrap = CK_TRUE, unwrap = CK_TRUE,
             token = CK_FALSE, priv = CK_FALSE, never_extractable = CK_FALSE;
    CK_KEY_TYPE type = 0;
    CK_ULONG len = 0;
    CK_ATTRIBUTE attrs[] = {
        {CKA_EXTRACTABLE, &extractable, sizeof extractable},
        {CKA_SENSITIVE, &sensitive, sizeof sensitive},
        {CKA_WRAP, &wrap, sizeof wrap},
        {CKA_UNWRAP, &unwrap, sizeof unwrap},
        {CKA_TOKEN, &token, sizeof token},
        {CKA_PRIVATE, &priv, sizeof priv},
        {CKA_NEVER_EXTRACTABLE, &never_extractable, sizeof never_extractable},
        {CKA_KEY_TYPE, &type, sizeof type},
        {CKA_VALUE_LEN, &len, sizeof len},
    };
    ASSERT_EQ(c->functions()->C_GetAttributeValue(c->session(), kek_, attrs,
                                                  sizeof attrs / sizeof attrs[0]),
              CKR_OK);
    EXPECT_EQ(extractable, CK_FALSE);
    EXPECT_EQ(sensitive, CK_TRUE);
    EXPECT_EQ(wrap, CK_FALSE);
    EXPECT_EQ(unwrap, CK_FALSE);
    EXPECT_EQ(token, CK_TRUE);
    EXPECT_EQ(priv, CK_TRUE);
    EXPECT_EQ(never_extractable, CK_TRUE);
    EXPECT_EQ(type, CKK_AES);
    EXPECT_EQ(len, 32u);
    // The key value itself must not be readable.
    uint8_t value[32];
    CK_ATTRIBUTE v = {CKA_VALUE, value, sizeof value};
    EXPECT_EQ(c->functions()->C_GetAttributeValue(c->session(), kek_, &v, 1),
              CKR_ATTRIBUTE_SENSITIVE);
}

TEST_F(Pkcs11ClientTest, ProvisioningRerunIsUnchanged) {
    ToolRun r = run_tool("--init-token --so-pin-file " + dir_ + "/so.pin");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("token 'pg_envelope_unit': exists"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("KEK 'pg_envelope-kek': exists, attributes verified"),
              std::string::npos);
    EXPECT_NE(r.output.find("result: unchanged"), std::string::npos) << r.output;
    // Without --init-token (the real-HSM path) it is unchanged too.
    ToolRun r2 = run_tool("");
    EXPECT_EQ(r2.exit_code, 0) << r2.output;
    EXPECT_NE(r2.output.find("result: unchanged"), std::string::npos) << r2.output;
}

TEST_F(Pkcs11ClientTest, ProvisioningCheck) {
    ToolRun ok = run_tool("--check");
    EXPECT_EQ(ok.exit_code, 0) << ok.output;
    ToolRun missing_kek = run_tool("--check --kek-label no-such-kek");
    EXPECT_EQ(missing_kek.exit_code, 1) << missing_kek.output;
    EXPECT_NE(missing_kek.output.find("KEK 'no-such-kek': missing"), std::string::npos)
        << missing_kek.output;
    ToolRun missing_token = run_tool("--check --token-label no-such-token");
    EXPECT_EQ(missing_token.exit_code, 1) << missing_token.output;
}

TEST_F(Pkcs11ClientTest, ProvisioningWithoutInitTokenNeedsExistingToken) {
    ToolRun r = run_tool("--token-label other-token");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("--init-token"), std::string::npos) << r.output;
}

TEST_F(Pkcs11ClientTest, ProvisioningUsageErrors) {
    ToolRun pin = run_tool(std::string("--pin ") + kUserPin);
    EXPECT_EQ(pin.exit_code, 2) << pin.output;
    EXPECT_EQ(pin.output.find(kUserPin), std::string::npos) << pin.output;
    ToolRun unknown = run_tool("--frobnicate");
    EXPECT_EQ(unknown.exit_code, 2) << unknown.output;
}

TEST_F(Pkcs11ClientTest, ProvisioningWrongPinDoesNotLeakIt) {
    const std::string bad = dir_ + "/bad.pin";
    write_file(bad, "bad-pin-40417\n", 0600);
    ToolRun r = run_tool("--pin-file " + bad);  // the later flag wins
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find("CKR_PIN_INCORRECT"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("bad-pin-40417"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("pg_envelope_provision: "), std::string::npos) << r.output;
}

TEST_F(Pkcs11ClientTest, ExactlyOneSecretKeyAfterRepeatedProvisioning) {
    for (int i = 0; i < 2; ++i) {
        ToolRun r = run_tool("--init-token --so-pin-file " + dir_ + "/so.pin");
        ASSERT_EQ(r.exit_code, 0) << r.output;
    }
    auto c = connect();
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls}};
    CK_FUNCTION_LIST_PTR fn = c->functions();
    ASSERT_EQ(fn->C_FindObjectsInit(c->session(), tmpl, 1), CKR_OK);
    CK_OBJECT_HANDLE found[8];
    CK_ULONG n = 0;
    EXPECT_EQ(fn->C_FindObjects(c->session(), found, 8, &n), CKR_OK);
    fn->C_FindObjectsFinal(c->session());
    EXPECT_EQ(n, 1u);
}

// The keeper destroys and recreates its client after a configuration reload.
TEST_F(Pkcs11ClientTest, ClientCanBeRecreatedInOneProcess) {
    SecureBuffer dek(kDekSize);
    std::vector<uint8_t> wrapped;
    {
        auto c = connect();
        dek = c->generate_random(kDekSize);
        wrapped = c->wrap_dek(kek_, dek.view(), bytes("dek:recreate"));
    }
    for (int round = 0; round < 3; ++round) {
        auto c = connect();
        SecureBuffer back =
            c->unwrap_dek(kek_, ByteView(wrapped.data(), wrapped.size()), bytes("dek:recreate"));
        EXPECT_EQ(std::memcmp(back.data(), dek.data(), kDekSize), 0) << "round " << round;
    }
}

// KEK rotation in the token: a second KEK beside the first, the link unwrapping by the label
// stored with a wrapped DEK and re-wrapping under the KEK it connected to, then the tool
// deleting the old KEK (and refusing to delete the configured one).
TEST_F(Pkcs11ClientTest, KekRotationRewrapsAndDeletesTheOldKek) {
    ToolRun add = run_tool("--kek-label kek-two");
    ASSERT_EQ(add.exit_code, 0) << add.output;
    EXPECT_NE(add.output.find("KEK 'kek-two': created"), std::string::npos) << add.output;
    EXPECT_NE(add.output.find("secret key on the token: 'pg_envelope-kek'"), std::string::npos);
    EXPECT_NE(add.output.find("secret key on the token: 'kek-two'"), std::string::npos);

    const std::string identity = "dek:00112233445566778899aabbccddeeff";
    std::vector<uint8_t> old_wrapped;
    SecureBuffer dek;
    {
        auto c = connect();  // kek_ = the first KEK
        dek = c->generate_random(kDekSize);
        old_wrapped = c->wrap_dek(kek_, dek.view(), bytes(identity));
    }
    HsmLink link;
    const std::string pin = pin_path();
    HsmResult r = link.connect({kModule, kToken, pin.c_str(), "kek-two"});
    ASSERT_TRUE(r.ok) << r.message;
    uint8_t out[kDekSize];
    r = link.unwrap_dek(bytes(identity), ByteView(old_wrapped.data(), old_wrapped.size()), out,
                        kKek);
    ASSERT_TRUE(r.ok) << r.message;
    EXPECT_EQ(std::memcmp(out, dek.data(), kDekSize), 0);
    // Without the label the connected KEK (kek-two) is used: it does not open the old wrap.
    r = link.unwrap_dek(bytes(identity), ByteView(old_wrapped.data(), old_wrapped.size()), out);
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.failure, Pkcs11Failure::unwrap_auth);

    uint8_t again[96];
    size_t again_len = 0;
    r = link.rewrap_dek(bytes(identity), ByteView(old_wrapped.data(), old_wrapped.size()), kKek,
                        again, sizeof again, &again_len);
    ASSERT_TRUE(r.ok) << r.message;
    ASSERT_EQ(again_len, old_wrapped.size());
    EXPECT_NE(std::memcmp(again, old_wrapped.data(), again_len), 0);
    r = link.unwrap_dek(bytes(identity), ByteView(again, again_len), out);
    ASSERT_TRUE(r.ok) << r.message;
    EXPECT_EQ(std::memcmp(out, dek.data(), kDekSize), 0) << "the same DEK under the new KEK";
    // An unknown KEK label is a clear failure, not a crash.
    r = link.unwrap_dek(bytes(identity), ByteView(again, again_len), out, "no-such-kek");
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.failure, Pkcs11Failure::key_not_found) << r.message;
    link.disconnect();

    ToolRun refuse = run_tool("--kek-label kek-two --delete-kek kek-two");
    EXPECT_EQ(refuse.exit_code, 1) << refuse.output;
    EXPECT_NE(refuse.output.find("refusing to delete KEK"), std::string::npos) << refuse.output;
    ToolRun missing = run_tool("--kek-label no-such-kek --delete-kek pg_envelope-kek");
    EXPECT_EQ(missing.exit_code, 1) << missing.output;
    EXPECT_NE(missing.output.find("does not exist on the token"), std::string::npos);
    ToolRun del = run_tool("--kek-label kek-two --delete-kek pg_envelope-kek");
    ASSERT_EQ(del.exit_code, 0) << del.output;
    EXPECT_NE(del.output.find("KEK 'pg_envelope-kek': deleted"), std::string::npos) << del.output;
    EXPECT_EQ(del.output.find("secret key on the token: 'pg_envelope-kek'"), std::string::npos);
}

TEST(Pkcs11RvNames, KnownAndUnknownCodes) {
    EXPECT_EQ(ck_rv_name(CKR_OK), "CKR_OK");
    EXPECT_EQ(ck_rv_name(CKR_PIN_INCORRECT), "CKR_PIN_INCORRECT");
    EXPECT_EQ(ck_rv_name(CKR_GENERAL_ERROR), "CKR_GENERAL_ERROR");
    EXPECT_EQ(ck_rv_name(CKR_FUNCTION_REJECTED), "CKR_FUNCTION_REJECTED");
    EXPECT_EQ(ck_rv_name(0x1234), "CKR_0x00001234");
    EXPECT_EQ(ck_rv_describe(CKR_PIN_INCORRECT), "CKR_PIN_INCORRECT: the PIN is wrong");
    EXPECT_EQ(ck_rv_describe(CKR_PIN_LOCKED).rfind("CKR_PIN_LOCKED: ", 0), 0u);
    EXPECT_EQ(ck_rv_describe(CKR_NEXT_OTP), "CKR_NEXT_OTP");
    EXPECT_STREQ(pkcs11_failure_name(Pkcs11Failure::unwrap_auth), "unwrap_auth");
}

}  // namespace
}  // namespace envelope

namespace envelope {
namespace {

// Every way of wrapping on SoftHSM2: AES-GCM (v1), its RFC 3394 CKM_AES_KEY_WRAP (v2), its
// CKM_AES_KEY_WRAP_PAD, which the known-answer test identifies as RFC 5649 (v3), and RFC 3394
// computed from CKM_AES_ECB (v2, the same bytes as the token's key wrap).
TEST_F(Pkcs11ClientTest, EveryWrapChoiceRoundTripsAndRejectsTampering) {
    ToolRun add = run_tool("--kek-label kek-kw --wrap-mechanism aes_kw");
    ASSERT_EQ(add.exit_code, 0) << add.output;
    EXPECT_NE(add.output.find("wrapping: CKM_AES_KEY_WRAP (RFC 3394)"), std::string::npos)
        << add.output;
    auto c = connect("kek-kw");
    CK_OBJECT_HANDLE kek = kek_;
    const WrapSupport &s = c->probe_wrap_support();
    EXPECT_TRUE(s.gcm);
    EXPECT_TRUE(s.ecb);
    EXPECT_EQ(s.kw, CK_MECHANISM_TYPE{0x2109}) << "CKM_AES_KEY_WRAP is RFC 3394";
    EXPECT_EQ(s.kwp, CK_MECHANISM_TYPE{0x210A}) << "SoftHSM2's CKM_AES_KEY_WRAP_PAD is RFC 5649";

    SecureBuffer dek = c->generate_random(kDekSize);
    const std::string id = "dek:0123456789abcdef0123456789abcdef";
    struct Case {
        WrapChoice choice;
        uint8_t format;
        size_t size;
        const char *description;
    };
    const Case cases[] = {
        {WrapChoice::aes_gcm, kWrapFormatVersion, kWrappedDekSize, "CKM_AES_GCM"},
        {WrapChoice::aes_kw, kWrapFormatKw, kWrappedDekKwSize, "CKM_AES_KEY_WRAP (RFC 3394)"},
        {WrapChoice::aes_kwp, kWrapFormatKwp, kWrappedDekKwSize, "CKM_AES_KEY_WRAP_PAD (RFC 5649)"},
        {WrapChoice::ecb_kw, kWrapFormatKw, kWrappedDekKwSize, "RFC 3394 from CKM_AES_ECB"},
    };
    std::vector<std::vector<uint8_t>> wrapped;
    for (const Case &k : cases) {
        SCOPED_TRACE(wrap_choice_name(k.choice));
        c->choose_wrapping(k.choice, kek);
        EXPECT_EQ(c->wrap_description(), k.description);
        std::vector<uint8_t> w = c->wrap_dek(kek, dek.view(), bytes(id));
        ASSERT_EQ(w.size(), k.size);
        EXPECT_EQ(w[0], k.format);
        SecureBuffer back = c->unwrap_dek(kek, ByteView(w.data(), w.size()), bytes(id));
        ASSERT_EQ(back.size(), kDekSize);
        EXPECT_EQ(std::memcmp(back.data(), dek.data(), kDekSize), 0);
        EXPECT_EQ(failure_of([&] {
                      c->unwrap_dek(kek, ByteView(w.data(), w.size()), bytes("dek:other"));
                  }),
                  Pkcs11Failure::unwrap_auth);
        for (size_t i = 1; i < w.size(); ++i) {
            std::vector<uint8_t> t = w;
            t[i] ^= 0x20;
            EXPECT_EQ(
                failure_of([&] { c->unwrap_dek(kek, ByteView(t.data(), t.size()), bytes(id)); }),
                Pkcs11Failure::unwrap_auth)
                << "byte " << i;
        }
        wrapped.push_back(w);
    }
    EXPECT_EQ(wrapped[1], wrapped[3]) << "the token's RFC 3394 and the one computed from ECB agree";
    // Whatever wraps now, a keyring's older formats still open.
    c->choose_wrapping(WrapChoice::ecb_kw, kek);
    for (const auto &w : wrapped) {
        SecureBuffer back = c->unwrap_dek(kek, ByteView(w.data(), w.size()), bytes(id));
        EXPECT_EQ(std::memcmp(back.data(), dek.data(), kDekSize), 0);
    }
    // A format byte nobody wrote is malformed; a key-wrap blob of the wrong size too.
    std::vector<uint8_t> odd = wrapped[1];
    odd[0] = 9;
    EXPECT_EQ(failure_of([&] { c->unwrap_dek(kek, ByteView(odd.data(), odd.size()), bytes(id)); }),
              Pkcs11Failure::malformed);
    EXPECT_EQ(failure_of([&] {
                  c->unwrap_dek(kek, ByteView(wrapped[1].data(), wrapped[1].size() - 8), bytes(id));
              }),
              Pkcs11Failure::malformed);
}

TEST_F(Pkcs11ClientTest, KeyWrapNeedsAKekThatMayWrap) {
    ToolRun add = run_tool("--kek-label kek-plain");
    ASSERT_EQ(add.exit_code, 0) << add.output;
    auto c = connect("kek-plain");  // made for GCM: encrypt/decrypt only
    std::string msg;
    EXPECT_EQ(failure_of([&] { c->choose_wrapping(WrapChoice::aes_kw, kek_); }, &msg),
              Pkcs11Failure::mechanism);
    EXPECT_NE(msg.find("CKA_WRAP"), std::string::npos) << msg;
    // Automatic: GCM on SoftHSM2; ECB-computed key wrap needs nothing more of the KEK.
    c->choose_wrapping(WrapChoice::automatic, kek_);
    EXPECT_EQ(c->wrap_description(), "CKM_AES_GCM");
    c->choose_wrapping(WrapChoice::ecb_kw, kek_);
    EXPECT_EQ(c->wrap_description(), "RFC 3394 from CKM_AES_ECB");
    ToolRun bad = run_tool("--wrap-mechanism nonsense");
    EXPECT_EQ(bad.exit_code, 2) << bad.output;
}

TEST(WrapNames, ChoicesAndFormats) {
    WrapChoice c;
    for (const char *n : {"auto", "aes_gcm", "aes_kw", "aes_kwp", "ecb_kw"}) {
        ASSERT_TRUE(parse_wrap_choice(n, &c)) << n;
        EXPECT_STREQ(wrap_choice_name(c), n);
    }
    EXPECT_FALSE(parse_wrap_choice("AES_GCM", &c));
    EXPECT_STREQ(wrap_format_name(1), "aes-gcm");
    EXPECT_STREQ(wrap_format_name(2), "rfc3394");
    EXPECT_STREQ(wrap_format_name(3), "rfc5649");
    EXPECT_STREQ(wrap_format_name(0), "unknown");
}

}  // namespace
}  // namespace envelope
