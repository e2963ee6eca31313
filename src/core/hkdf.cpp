// HKDF-SHA256 via OpenSSL 3's EVP_KDF, and the public key check value built on it.
#include "hkdf.hpp"
#include "wipe.hpp"
#include "hex.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

namespace envelope {

namespace {

// Fetched once per process; the algorithm object is immutable and shareable.
EVP_KDF *hkdf_algorithm() noexcept {
    static EVP_KDF *kdf = EVP_KDF_fetch(nullptr, OSSL_KDF_NAME_HKDF, nullptr);
    return kdf;
}

}  // namespace

bool hkdf_sha256(ByteView ikm, ByteView salt, ByteView info, uint8_t *out,
                 size_t out_len) noexcept {
    if (out == nullptr || out_len == 0 || out_len > size_t{255} * 32) return false;
    if (ikm.size > 0 && ikm.data == nullptr) return false;
    EVP_KDF *kdf = hkdf_algorithm();
    if (kdf == nullptr) return false;
    EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(kdf);
    if (ctx == nullptr) return false;

    // OpenSSL wants non-const pointers in params; it only reads them.
    static uint8_t empty_byte = 0;
    char digest[] = "SHA256";
    OSSL_PARAM params[5];
    size_t i = 0;
    params[i++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
    params[i++] = OSSL_PARAM_construct_octet_string(
        OSSL_KDF_PARAM_KEY, ikm.size > 0 ? const_cast<uint8_t *>(ikm.data) : &empty_byte, ikm.size);
    // An absent salt is HashLen zero bytes (RFC 5869 2.2), which equals an empty HMAC key.
    if (salt.size > 0)
        params[i++] = OSSL_PARAM_construct_octet_string(
            OSSL_KDF_PARAM_SALT, const_cast<uint8_t *>(salt.data), salt.size);
    if (info.size > 0)
        params[i++] = OSSL_PARAM_construct_octet_string(
            OSSL_KDF_PARAM_INFO, const_cast<uint8_t *>(info.data), info.size);
    params[i] = OSSL_PARAM_construct_end();

    bool ok = EVP_KDF_derive(ctx, out, out_len, params) == 1;
    EVP_KDF_CTX_free(ctx);  // also wipes the copied key material
    if (!ok) OPENSSL_cleanse(out, out_len);
    wipe_vector_registers();  // SHA-NI/AVX code held key-derived state in them
    return ok;
}

bool key_check_value(const uint8_t key[kDekSize], char out[17]) noexcept {
    if (key == nullptr || out == nullptr) return false;
    static constexpr char kInfo[] = "pg_envelope key check value v1";
    uint8_t kcv[8];
    if (!hkdf_sha256(ByteView(key, kDekSize), ByteView(), ByteView(kInfo, sizeof(kInfo) - 1), kcv,
                     sizeof(kcv))) {
        out[0] = '\0';
        return false;
    }
    hex_encode(ByteView(kcv, sizeof kcv), out);
    return true;
}

}  // namespace envelope
