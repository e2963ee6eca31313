// noexcept facade over Pkcs11Client for the keeper.
#include "hsm_link.hpp"
#include "hex.hpp"
#include "pkcs11_client.hpp"
#include "secure_buffer.hpp"

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>
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

struct HsmLink::Connection {
    std::unique_ptr<Pkcs11Client> client;
    CK_OBJECT_HANDLE kek = CK_INVALID_HANDLE;
    std::string kek_label;
    std::string wrap_mechanism;
    // Other KEKs, found by label when a wrapped DEK names them (during a KEK rotation).
    std::map<std::string, CK_OBJECT_HANDLE> other_keks;

    // Wraps dek bound to identity under the connected KEK into out (cap bytes).
    void wrap_into(ByteView dek, ByteView identity, uint8_t *out, size_t cap, size_t *len) {
        std::vector<uint8_t> wrapped = client->wrap_dek(kek, dek, identity);
        if (wrapped.size() > cap) {
            throw Pkcs11Error(Pkcs11Failure::other, 0, "wrapped key larger than expected");
        }
        std::memcpy(out, wrapped.data(), wrapped.size());
        *len = wrapped.size();
    }

    CK_OBJECT_HANDLE kek_for(const char *label) {
        if (label == nullptr || label[0] == '\0' || kek_label == label) return kek;
        auto it = other_keks.find(label);
        if (it != other_keks.end()) return it->second;
        CK_OBJECT_HANDLE h = client->find_secret_key(label);
        other_keks.emplace(label, h);
        return h;
    }
};

HsmLink::HsmLink() noexcept = default;
HsmLink::~HsmLink() {
    disconnect();
}

HsmResult HsmLink::connect(const HsmSettings &s) noexcept {
    disconnect();
    HsmResult r = capture([&] {
        auto c = std::make_unique<Connection>();
        c->client = std::make_unique<Pkcs11Client>(
            s.module_path, s.init_reserved != nullptr ? s.init_reserved : "");
        c->client->open_token(s.token_label);
        SecureBuffer pin = read_pin_file(s.pin_file);
        c->client->login(pin.view());
        c->kek = c->client->find_secret_key(s.kek_label);
        c->kek_label = s.kek_label;
        c->client->choose_wrapping(s.wrap_choice, c->kek);
        c->wrap_mechanism = c->client->wrap_description();
        connection_ = c.release();
    });
    if (!r.ok) disconnect();
    return r;
}

void HsmLink::disconnect() noexcept {
    // Destructors of the client do not throw (it closes the session and unloads the module).
    delete connection_;
    connection_ = nullptr;
}

bool HsmLink::connected() const noexcept {
    return connection_ != nullptr;
}

bool HsmLink::alive() noexcept {
    return connection_ != nullptr && connection_->client->session_alive();
}

const char *HsmLink::wrap_mechanism() const noexcept {
    return connection_ != nullptr ? connection_->wrap_mechanism.c_str() : "";
}

HsmResult HsmLink::create_dek(ByteView identity, uint8_t key_out[kDekSize], uint8_t *wrapped_out,
                              size_t wrapped_cap, size_t *wrapped_len) noexcept {
    if (!connection_) return not_connected();
    return capture([&] {
        SecureBuffer dek = connection_->client->generate_random(kDekSize);
        connection_->wrap_into(dek.view(), identity, wrapped_out, wrapped_cap, wrapped_len);
        std::memcpy(key_out, dek.data(), kDekSize);
    });
}

HsmResult HsmLink::unwrap_dek(ByteView identity, ByteView wrapped, uint8_t key_out[kDekSize],
                              const char *kek_label) noexcept {
    if (!connection_) return not_connected();
    return capture([&] {
        SecureBuffer dek =
            connection_->client->unwrap_dek(connection_->kek_for(kek_label), wrapped, identity);
        std::memcpy(key_out, dek.data(), kDekSize);
    });
}

HsmResult HsmLink::rewrap_dek(ByteView identity, ByteView wrapped, const char *old_label,
                              uint8_t *wrapped_out, size_t wrapped_cap,
                              size_t *wrapped_len) noexcept {
    if (!connection_) return not_connected();
    return capture([&] {
        SecureBuffer dek =
            connection_->client->unwrap_dek(connection_->kek_for(old_label), wrapped, identity);
        connection_->wrap_into(dek.view(), identity, wrapped_out, wrapped_cap, wrapped_len);
    });
}

HsmResult HsmLink::import_legacy_dek(const char *legacy_kek_label, ByteView legacy_wrapped,
                                     ByteView identity, uint8_t key_out[kDekSize],
                                     uint8_t *wrapped_out, size_t wrapped_cap,
                                     size_t *wrapped_len) noexcept {
    if (!connection_) return not_connected();
    return capture([&] {
        if (legacy_wrapped.size != kLegacyWrappedSize) {
            throw Pkcs11Error(Pkcs11Failure::malformed, 0,
                              "a Trustpoint wrapped DEK is " + std::to_string(kLegacyWrappedSize) +
                                  " bytes, not " + std::to_string(legacy_wrapped.size));
        }
        // An empty label would mean the connected KEK in kek_for(). The KEK that wraps
        // pg_envelope's DEKs is never used as a raw AES-ECB decryption oracle.
        if (legacy_kek_label == nullptr || legacy_kek_label[0] == '\0' ||
            connection_->kek_label == legacy_kek_label) {
            throw Pkcs11Error(Pkcs11Failure::other, 0,
                              "the legacy KEK label must name a key other than pg_envelope's "
                              "KEK (envelope.kek_label)");
        }
        CK_OBJECT_HANDLE legacy = connection_->kek_for(legacy_kek_label);
        SecureBuffer dek(kDekSize);
        connection_->client->aes_ecb(legacy, /*encrypt=*/false,
                                     legacy_wrapped.data + kLegacyWrapPrefix, kDekSize, dek.data());
        connection_->wrap_into(dek.view(), identity, wrapped_out, wrapped_cap, wrapped_len);
        std::memcpy(key_out, dek.data(), kDekSize);
    });
}

void dek_identity(const uint8_t id[16], char out[kDekIdentitySize]) noexcept {
    std::memcpy(out, "dek:", 4);
    hex_encode(ByteView(id, 16), out + 4);
}

}  // namespace envelope
