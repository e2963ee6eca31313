// libgcrypt set-up (see gcrypt_setup.hpp).
#include "gcrypt_setup.hpp"

#include "protected_memory.hpp"

#include <gcrypt.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace envelope {

namespace {

void *alloc_plain(size_t n) {
    return std::malloc(n);
}

void *alloc_secure(size_t n) {
    return protected_alloc(n);
}

int is_secure(const void *p) {
    return p != nullptr && is_protected(p, 1) ? 1 : 0;
}

void *realloc_any(void *p, size_t n) {
    if (p == nullptr || !is_protected(p, 1)) return std::realloc(p, n);
    void *q = protected_alloc(n);
    if (q == nullptr) return nullptr;
    const size_t old = protected_usable_size(p);
    std::memcpy(q, p, old < n ? old : n);
    protected_free(p);  // wipes
    return q;
}

void free_any(void *p) {
    if (p == nullptr) return;
    if (is_protected(p, 1)) {
        protected_free(p);
    } else {
        std::free(p);
    }
}

void disable_features_from_env() {
    const char *list = std::getenv("ENVELOPE_GCRYPT_DISABLE_HWF");
    if (list == nullptr) return;
    std::string names(list);
    size_t at = 0;
    while (at <= names.size()) {
        size_t comma = names.find(',', at);
        if (comma == std::string::npos) comma = names.size();
        const std::string name = names.substr(at, comma - at);
        if (!name.empty()) gcry_control(GCRYCTL_DISABLE_HWF, name.c_str(), nullptr);
        at = comma + 1;
    }
}

bool initialise() noexcept {
    // Someone else initialised libgcrypt: its secure memory is not ours.
    if (gcry_control(GCRYCTL_INITIALIZATION_FINISHED_P)) return false;
    try {
        disable_features_from_env();  // before libgcrypt detects the CPU
    } catch (...) {
        return false;
    }
    gcry_set_allocation_handler(alloc_plain, alloc_secure, is_secure, realloc_any, free_any);
    if (gcry_check_version(GCRYPT_VERSION) == nullptr) return false;
    gcry_control(GCRYCTL_DISABLE_SECMEM_WARN);
    gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
    return true;
}

}  // namespace

bool gcrypt_ready() noexcept {
    static const bool ready = initialise();
    return ready;
}

std::string gcrypt_hw_features() {
    if (!gcrypt_ready()) return "";
    char *buf = nullptr;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == nullptr) return "";
    gcry_control(GCRYCTL_PRINT_CONFIG, f);
    std::fclose(f);
    std::string config(buf, len);
    std::free(buf);
    const size_t at = config.find("hwflist:");
    if (at == std::string::npos) return "";
    const size_t end = config.find('\n', at);
    return config.substr(at + 8, end == std::string::npos ? std::string::npos : end - at - 8);
}

}  // namespace envelope
