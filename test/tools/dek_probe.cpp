// Test-only tool: unwraps one keyring row's DEK through the token and prints it as hex, so
// integration tests can prove the DEK itself appears nowhere on disk or in logs.
// Never installed; built only with the tests.
#include "hex.hpp"
#include "hsm_link.hpp"
#include "wipe.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

bool parse_hex(const std::string &hex, std::vector<uint8_t> &out) {
    out.assign(hex.size() / 2, 0);
    return envelope::hex_decode(hex.data(), hex.size(), out.data(), out.size());
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
    envelope::HsmSettings settings{argv[1], argv[2], argv[3], argv[4]};
    // The module's C_Initialize string, for tokens that need one (NSS's softoken).
    settings.init_reserved = std::getenv("ENVELOPE_PROBE_INIT_ARGS");
    envelope::HsmResult r = link.connect(settings);
    if (!r.ok) {
        std::fprintf(stderr, "connect: %s\n", r.message);
        return 1;
    }
    char identity[envelope::kDekIdentitySize];
    envelope::dek_identity(id.data(), identity);
    uint8_t key[envelope::kDekSize];
    r = link.unwrap_dek(envelope::ByteView(identity, std::strlen(identity)),
                        envelope::ByteView(wrapped.data(), wrapped.size()), key);
    if (!r.ok) {
        std::fprintf(stderr, "unwrap: %s\n", r.message);
        return 1;
    }
    char hex[2 * envelope::kDekSize + 1];
    envelope::hex_encode(envelope::ByteView(key, sizeof key), hex);
    std::printf("%s\n", hex);
    envelope::secure_zero(hex, sizeof hex);
    envelope::secure_zero(key, sizeof key);
    return 0;
}
