// Test-only tool: unwraps one keyring row's DEK through the token and prints it as hex, so
// integration tests can prove the DEK itself appears nowhere on disk or in logs.
// Never installed; built only with the tests.
#include "hsm_link.hpp"
#include "pkcs11_client.hpp"
#include "secure_buffer.hpp"

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

bool parse_hex(const std::string &hex, std::vector<uint8_t> &out) {
    if (hex.size() % 2 != 0) return false;
    out.clear();
    for (size_t i = 0; i < hex.size(); i += 2) {
        unsigned v;
        if (std::sscanf(hex.c_str() + i, "%2x", &v) != 1) return false;
        out.push_back(static_cast<uint8_t>(v));
    }
    return true;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 7) {
        std::fprintf(stderr,
                     "usage: %s MODULE TOKEN_LABEL PIN_FILE KEK_LABEL ID_HEX32 WRAPPED_HEX\n",
                     argv[0]);
        return 2;
    }
    std::vector<uint8_t> id, wrapped;
    if (!parse_hex(argv[5], id) || id.size() != 16 || !parse_hex(argv[6], wrapped)) {
        std::fprintf(stderr, "bad hex argument\n");
        return 2;
    }
    envelope::HsmLink link;
    envelope::HsmResult r = link.connect({argv[1], argv[2], argv[3], argv[4]});
    if (!r.ok) {
        std::fprintf(stderr, "connect: %s\n", r.message);
        return 1;
    }
    char identity[37];
    envelope::dek_identity(id.data(), identity);
    uint8_t key[32];
    r = link.unwrap_dek(envelope::ByteView(identity, std::strlen(identity)),
                        envelope::ByteView(wrapped.data(), wrapped.size()), key);
    if (!r.ok) {
        std::fprintf(stderr, "unwrap: %s\n", r.message);
        return 1;
    }
    for (uint8_t b : key) std::printf("%02x", b);
    std::printf("\n");
    envelope::secure_zero(key, sizeof key);
    return 0;
}
