// The IKM-command KEK provider: salt file, HKDF derivation and the v1 wrap in software.
#include "ikm_kek_link.hpp"
#include "aes_gcm.hpp"
#include "hkdf.hpp"
#include "ikm_command.hpp"
#include "nonce_source.hpp"
#include "secure_buffer.hpp"
#include "wipe.hpp"

#include <openssl/rand.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace envelope {

namespace {

constexpr char kWrapAadPrefix[] = "pg_envelope/dek-wrap/v1";  // sizeof includes the '\0'

HsmResult failure(Pkcs11Failure kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
HsmResult failure(Pkcs11Failure kind, const char *fmt, ...) {
    HsmResult r;
    r.ok = false;
    r.failure = kind;
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(r.message, sizeof r.message, fmt, ap);
    va_end(ap);
    return r;
}

bool read_all(int fd, uint8_t *out, size_t n) noexcept {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, out + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        got += static_cast<size_t>(r);
    }
    return true;
}

bool fsync_directory_of(const std::string &path) noexcept {
    std::string dir = path.substr(0, path.rfind('/'));
    if (dir.empty()) dir = "/";
    int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = fsync(fd) == 0;
    close(fd);
    return ok;
}

// Creates the salt file atomically: a complete, fsynced temporary file is hard-linked to the
// final name (link fails if the name exists, so a salt is never replaced) and the directory is
// fsynced. A crash leaves either no salt file or a complete one.
HsmResult create_salt(const std::string &path) {
    const std::string tmp = path + ".tmp";
    unlink(tmp.c_str());
    uint8_t salt[kIkmSaltSize];
    if (RAND_bytes(salt, sizeof salt) != 1)
        return failure(Pkcs11Failure::ikm_salt, "the CSPRNG failed creating the IKM salt");
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return failure(Pkcs11Failure::ikm_salt, "could not create the IKM salt file \"%s\": %s",
                       tmp.c_str(), std::strerror(errno));
    bool ok = write(fd, salt, sizeof salt) == static_cast<ssize_t>(sizeof salt) && fsync(fd) == 0;
    const int saved = errno;
    ok = close(fd) == 0 && ok;
    if (!ok) {
        unlink(tmp.c_str());
        return failure(Pkcs11Failure::ikm_salt, "could not write the IKM salt file \"%s\": %s",
                       tmp.c_str(), std::strerror(saved));
    }
    if (link(tmp.c_str(), path.c_str()) != 0) {
        const int e = errno;
        unlink(tmp.c_str());
        if (e == EEXIST) return HsmResult{};  // created concurrently: read that one
        return failure(Pkcs11Failure::ikm_salt, "could not create the IKM salt file \"%s\": %s",
                       path.c_str(), std::strerror(e));
    }
    unlink(tmp.c_str());
    if (!fsync_directory_of(path))
        return failure(Pkcs11Failure::ikm_salt, "could not fsync the directory of \"%s\": %s",
                       path.c_str(), std::strerror(errno));
    return HsmResult{};
}

// Reads the salt file; creates it when missing. A file of the wrong size, type, owner or mode
// is an error, never replaced: keys wrapped under the old salt would be lost.
HsmResult load_salt(const std::string &path, uint8_t salt[kIkmSaltSize], bool *created) {
    for (int attempt = 0; attempt < 2; ++attempt) {
        int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT && attempt == 0) {
            HsmResult r = create_salt(path);
            if (!r.ok) return r;
            *created = true;
            continue;
        }
        if (fd < 0)
            return failure(Pkcs11Failure::ikm_salt, "could not open the IKM salt file \"%s\": %s",
                           path.c_str(), std::strerror(errno));
        struct stat st {};
        HsmResult r;
        if (fstat(fd, &st) != 0) {
            r = failure(Pkcs11Failure::ikm_salt, "could not stat the IKM salt file \"%s\": %s",
                        path.c_str(), std::strerror(errno));
        } else if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
            r = failure(Pkcs11Failure::ikm_salt,
                        "the IKM salt file \"%s\" must be a regular file of the server user with "
                        "mode 0600 (it has mode %04o); it is not replaced",
                        path.c_str(), static_cast<unsigned>(st.st_mode & 07777));
        } else if (st.st_size != static_cast<off_t>(kIkmSaltSize)) {
            r = failure(Pkcs11Failure::ikm_salt,
                        "the IKM salt file \"%s\" has %lld bytes, expected %zu; it is not "
                        "replaced: restore this cluster's copy",
                        path.c_str(), static_cast<long long>(st.st_size), kIkmSaltSize);
        } else if (!read_all(fd, salt, kIkmSaltSize)) {
            r = failure(Pkcs11Failure::ikm_salt, "could not read the IKM salt file \"%s\"",
                        path.c_str());
        }
        close(fd);
        return r;
    }
    return failure(Pkcs11Failure::ikm_salt, "the IKM salt file \"%s\" vanished after creation",
                   path.c_str());
}

template <typename Fn>
HsmResult capture(Fn &&fn) noexcept {
    try {
        return fn();
    } catch (const std::bad_alloc &) {
        return failure(Pkcs11Failure::other, "out of memory");
    } catch (...) {
        return failure(Pkcs11Failure::other, "unknown error");
    }
}

}  // namespace

size_t ikm_kek_info(const char *kek_label, uint8_t *out, size_t cap) noexcept {
    const size_t label_len = kek_label ? std::strlen(kek_label) : 0;
    const size_t len = sizeof kIkmKekInfoPrefix + label_len;
    if (out == nullptr || len > cap) return 0;
    std::memcpy(out, kIkmKekInfoPrefix, sizeof kIkmKekInfoPrefix);
    if (label_len > 0) std::memcpy(out + sizeof kIkmKekInfoPrefix, kek_label, label_len);
    return len;
}

bool derive_ikm_kek(ByteView ikm, ByteView salt, const char *kek_label,
                    uint8_t out[kAesKeySize]) noexcept {
    uint8_t info[kIkmKekInfoMax];
    const size_t info_len = ikm_kek_info(kek_label, info, sizeof info);
    if (info_len == 0 || ikm.size < kIkmMinBytes) return false;
    return hkdf_sha256(ikm, salt, ByteView(info, info_len), out, kAesKeySize);
}

struct IkmKekLink::State {
    SecureBuffer ikm;
    uint8_t salt[kIkmSaltSize] = {};
    std::string kek_label;
    AesGcmKey kek;
    // KEKs of other labels, derived when a wrapped DEK names them (during a KEK rotation).
    std::map<std::string, std::unique_ptr<AesGcmKey>> other_keks;

    bool derive(const char *label, AesGcmKey &key) {
        SecureBuffer okm(kAesKeySize);
        const bool ok =
            derive_ikm_kek(ikm.view(), ByteView(salt, sizeof salt), label, okm.data()) &&
            key.init(okm.data());
        wipe_vector_registers();
        return ok;
    }

    AesGcmKey *kek_for(const char *label) {
        if (label == nullptr || label[0] == '\0' || kek_label == label) return &kek;
        auto it = other_keks.find(label);
        if (it != other_keks.end()) return it->second.get();
        auto key = std::make_unique<AesGcmKey>();
        if (!derive(label, *key)) return nullptr;
        return other_keks.emplace(label, std::move(key)).first->second.get();
    }
};

IkmKekLink::IkmKekLink() noexcept = default;
IkmKekLink::~IkmKekLink() {
    disconnect();
}

HsmResult IkmKekLink::connect(const IkmSettings &s) noexcept {
    disconnect();
    return capture([&]() -> HsmResult {
        if (s.kek_label == nullptr || s.kek_label[0] == '\0' ||
            std::strlen(s.kek_label) > kIkmKekInfoMax - sizeof kIkmKekInfoPrefix)
            return failure(Pkcs11Failure::key_not_found, "envelope.kek_label is empty or too long");
        auto st = std::make_unique<State>();
        bool created = false;
        HsmResult r = load_salt(s.salt_path ? s.salt_path : "", st->salt, &created);
        if (!r.ok) return r;
        if (created) created_salt_ = true;
        char message[kIkmMessageSize];
        if (!run_ikm_command(s.command, s.timeout_ms, st->ikm, message))
            return failure(Pkcs11Failure::ikm_command, "%s", message);
        st->kek_label = s.kek_label;
        if (!st->derive(s.kek_label, st->kek))
            return failure(Pkcs11Failure::other, "deriving the KEK from the IKM failed");
        state_ = st.release();
        return HsmResult{};
    });
}

void IkmKekLink::disconnect() noexcept {
    delete state_;  // SecureBuffer and AesGcmKey wipe themselves
    state_ = nullptr;
    wipe_vector_registers();
}

bool IkmKekLink::connected() const noexcept {
    return state_ != nullptr;
}

bool IkmKekLink::alive() noexcept {
    return state_ != nullptr;
}

namespace {

HsmResult not_connected() {
    return failure(Pkcs11Failure::device, "the keeper has no KEK from the IKM command");
}

HsmResult seal_dek(AesGcmKey &kek, ByteView identity, const uint8_t dek[kDekSize],
                   uint8_t *wrapped_out, size_t wrapped_cap, size_t *wrapped_len) {
    if (wrapped_cap < kWrappedDekSize)
        return failure(Pkcs11Failure::other, "wrapped key larger than expected");
    uint8_t *nonce = wrapped_out + 1;
    if (!NonceSource::instance().fill(nonce, kGcmNonceSize))
        return failure(Pkcs11Failure::other, "the CSPRNG failed to produce a nonce");
    const bool ok = kek.seal(nonce, {ByteView(kWrapAadPrefix, sizeof kWrapAadPrefix), identity},
                             {ByteView(dek, kDekSize)}, wrapped_out + 1 + kGcmNonceSize,
                             wrapped_out + 1 + kGcmNonceSize + kDekSize);
    wipe_vector_registers();
    if (!ok) return failure(Pkcs11Failure::other, "wrapping the DEK failed");
    wrapped_out[0] = kWrapFormatVersion;
    *wrapped_len = kWrappedDekSize;
    return HsmResult{};
}

HsmResult open_dek(AesGcmKey *kek, const char *label, bool created_salt, ByteView identity,
                   ByteView wrapped, uint8_t key_out[kDekSize]) {
    if (kek == nullptr)
        return failure(Pkcs11Failure::other, "deriving the KEK \"%s\" from the IKM failed",
                       label ? label : "");
    if (wrapped.size != kWrappedDekSize)
        return failure(Pkcs11Failure::malformed, "wrapped DEK has %zu bytes, expected %zu",
                       wrapped.size, kWrappedDekSize);
    if (wrapped.data[0] != kWrapFormatVersion)
        return failure(Pkcs11Failure::malformed, "wrapped DEK has format version %u, expected %u",
                       wrapped.data[0], unsigned{kWrapFormatVersion});
    const uint8_t *nonce = wrapped.data + 1;
    const uint8_t *ct = nonce + kGcmNonceSize;
    const bool ok = kek->open(nonce, {ByteView(kWrapAadPrefix, sizeof kWrapAadPrefix), identity},
                              ByteView(ct, kDekSize), ct + kDekSize, key_out);
    wipe_vector_registers();
    if (ok) return HsmResult{};
    if (created_salt)
        return failure(Pkcs11Failure::unwrap_auth,
                       "wrapped DEK failed authentication under the KEK derived from the IKM; "
                       "this cluster's IKM salt file was created new at start-up: keys from "
                       "another cluster need its pg_envelope/ikm_salt copied here (and its IKM)");
    return failure(Pkcs11Failure::unwrap_auth,
                   "wrapped DEK failed authentication under the KEK derived from the IKM: it is "
                   "corrupted, bound to another identity, or wrapped under another IKM, salt or "
                   "KEK");
}

}  // namespace

HsmResult IkmKekLink::create_dek(ByteView identity, uint8_t key_out[kDekSize], uint8_t *wrapped_out,
                                 size_t wrapped_cap, size_t *wrapped_len) noexcept {
    if (!state_) return not_connected();
    return capture([&] {
        SecureBuffer dek(kDekSize);
        if (RAND_priv_bytes(dek.data(), static_cast<int>(kDekSize)) != 1)
            return failure(Pkcs11Failure::other, "the CSPRNG failed to produce a DEK");
        HsmResult r =
            seal_dek(state_->kek, identity, dek.data(), wrapped_out, wrapped_cap, wrapped_len);
        if (r.ok) std::memcpy(key_out, dek.data(), kDekSize);
        return r;
    });
}

HsmResult IkmKekLink::unwrap_dek(ByteView identity, ByteView wrapped, uint8_t key_out[kDekSize],
                                 const char *kek_label) noexcept {
    if (!state_) return not_connected();
    return capture([&] {
        return open_dek(state_->kek_for(kek_label), kek_label, created_salt_, identity, wrapped,
                        key_out);
    });
}

HsmResult IkmKekLink::rewrap_dek(ByteView identity, ByteView wrapped, const char *old_label,
                                 uint8_t *wrapped_out, size_t wrapped_cap,
                                 size_t *wrapped_len) noexcept {
    if (!state_) return not_connected();
    return capture([&] {
        SecureBuffer dek(kDekSize);
        HsmResult r = open_dek(state_->kek_for(old_label), old_label, created_salt_, identity,
                               wrapped, dek.data());
        if (!r.ok) return r;
        return seal_dek(state_->kek, identity, dek.data(), wrapped_out, wrapped_cap, wrapped_len);
    });
}

}  // namespace envelope
