// noexcept facade over Pkcs11Client for the keeper.
#include "hsm_link.hpp"
#include "secure_buffer.hpp"

#include <cstdio>
#include <cstring>
#include <new>

namespace envelope {

namespace {

template <typename Fn>
HsmResult capture(Fn &&fn) noexcept {
    HsmResult r;
    try {
        fn();
    } catch (const Pkcs11Error &e) {
        r.ok = false;
        r.failure = e.failure();
        std::snprintf(r.message, sizeof r.message, "%s", e.what());
    } catch (const std::bad_alloc &) {
        r.ok = false;
        std::snprintf(r.message, sizeof r.message, "out of memory");
    } catch (const std::exception &e) {
        r.ok = false;
        std::snprintf(r.message, sizeof r.message, "%s", e.what());
    } catch (...) {
        r.ok = false;
        std::snprintf(r.message, sizeof r.message, "unknown error");
    }
    return r;
}

HsmResult not_connected() noexcept {
    HsmResult r;
    r.ok = false;
    r.failure = Pkcs11Failure::device;
    std::snprintf(r.message, sizeof r.message, "the keeper is not connected to the HSM");
    return r;
}

}  // namespace

HsmLink::HsmLink() = default;
HsmLink::~HsmLink() {
    disconnect();
}

HsmResult HsmLink::connect(const HsmSettings &s) noexcept {
    disconnect();
    HsmResult r = capture([&] {
        auto client = std::make_unique<Pkcs11Client>(s.module_path);
        client->open_token(s.token_label);
        SecureBuffer pin = read_pin_file(s.pin_file);
        client->login(pin.view());
        kek_ = client->find_secret_key(s.kek_label);
        client_ = std::move(client);
    });
    if (!r.ok) disconnect();
    return r;
}

void HsmLink::disconnect() noexcept {
    try {
        client_.reset();
    } catch (...) {
        // Destructors of the client do not throw; nothing to recover here.
    }
    kek_ = CK_INVALID_HANDLE;
}

bool HsmLink::connected() const noexcept {
    return client_ != nullptr;
}

bool HsmLink::alive() noexcept {
    return client_ != nullptr && client_->session_alive();
}

HsmResult HsmLink::create_dek(ByteView identity, uint8_t key_out[32], uint8_t *wrapped_out,
                              size_t wrapped_cap, size_t *wrapped_len) noexcept {
    if (!client_) return not_connected();
    return capture([&] {
        SecureBuffer dek = client_->generate_random(kDekSize);
        std::vector<uint8_t> wrapped = client_->wrap_dek(kek_, dek.view(), identity);
        if (wrapped.size() > wrapped_cap) {
            throw Pkcs11Error(Pkcs11Failure::other, 0, "wrapped key larger than expected");
        }
        std::memcpy(wrapped_out, wrapped.data(), wrapped.size());
        *wrapped_len = wrapped.size();
        std::memcpy(key_out, dek.data(), kDekSize);
    });
}

HsmResult HsmLink::unwrap_dek(ByteView identity, ByteView wrapped, uint8_t key_out[32]) noexcept {
    if (!client_) return not_connected();
    return capture([&] {
        SecureBuffer dek = client_->unwrap_dek(kek_, wrapped, identity);
        std::memcpy(key_out, dek.data(), kDekSize);
    });
}

void dek_identity(const uint8_t id[16], char out[37]) noexcept {
    static const char hex[] = "0123456789abcdef";
    std::memcpy(out, "dek:", 4);
    for (int i = 0; i < 16; ++i) {
        out[4 + 2 * i] = hex[id[i] >> 4];
        out[5 + 2 * i] = hex[id[i] & 15];
    }
    out[36] = '\0';
}

}  // namespace envelope
