// How Pkcs11Client wraps DEKs on a given token: probing its mechanisms, identifying its key-wrap
// mechanisms by known-answer tests, and wrapping/unwrapping in each format (hsm_types.hpp).
#include "key_wrap.hpp"
#include "pkcs11_client.hpp"
#include "wipe.hpp"

#include <nettle/aes.h>
#include <nettle/sha2.h>

#include <cstring>
#include <map>
#include <string>

namespace envelope {

namespace {

constexpr char kBindingPrefix[] = "pg_envelope/dek-wrap/v2";  // sizeof includes the '\0'

// NSS's softoken numbers RFC 5649 as CKM_AES_KEY_WRAP_KWP (PKCS#11 3.0); 0x210A is
// CKM_AES_KEY_WRAP_PAD, which SoftHSM2 implements as RFC 5649 and NSS as something else.
constexpr CK_MECHANISM_TYPE kCkmAesKeyWrap = 0x2109;
constexpr CK_MECHANISM_TYPE kCkmAesKeyWrapPad = 0x210A;
constexpr CK_MECHANISM_TYPE kCkmAesKeyWrapKwp = 0x210B;

const char *mechanism_name(CK_MECHANISM_TYPE m) {
    switch (m) {
        case kCkmAesKeyWrap:
            return "CKM_AES_KEY_WRAP";
        case kCkmAesKeyWrapPad:
            return "CKM_AES_KEY_WRAP_PAD";
        case kCkmAesKeyWrapKwp:
            return "CKM_AES_KEY_WRAP_KWP";
        default:
            return "CKM_?";
    }
}

// Binding of a key-wrapped DEK to its identity (format v2/v3): the wrap authenticates the
// whole 48-byte input, so a blob moved to another identity fails this comparison.
void wrap_binding(ByteView identity, uint8_t out[kWrapBindingSize]) {
    struct sha256_ctx ctx;
    uint8_t digest[SHA256_DIGEST_SIZE];
    sha256_init(&ctx);
    sha256_update(&ctx, sizeof kBindingPrefix, reinterpret_cast<const uint8_t *>(kBindingPrefix));
    if (identity.size > 0) sha256_update(&ctx, identity.size, identity.data);
    sha256_digest(&ctx, sizeof digest, digest);
    std::memcpy(out, digest, kWrapBindingSize);
}

// The known-answer tests' key and data: fixed, public test values (not secrets).
const uint8_t kKatKey[32] = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
                             0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15,
                             0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f};

void kat_data(uint8_t out[kDekSize + kWrapBindingSize]) {
    for (size_t i = 0; i < kDekSize + kWrapBindingSize; ++i) {
        out[i] = static_cast<uint8_t>(0x11 * (i % 16) ^ (i / 16));
    }
}

// What the known-answer test expects: the RFC computed here with Nettle's AES.
std::vector<uint8_t> kat_expected(KeyWrapVariant v) {
    struct aes256_ctx enc, dec;
    aes256_set_encrypt_key(&enc, kKatKey);
    aes256_invert_key(&dec, &enc);
    AesBlockFn aes = [&](bool encrypt, const uint8_t *in, uint8_t *out) {
        if (encrypt) {
            aes256_encrypt(&enc, 16, out, in);
        } else {
            aes256_decrypt(&dec, 16, out, in);
        }
    };
    uint8_t data[kDekSize + kWrapBindingSize];
    kat_data(data);
    std::vector<uint8_t> out(key_wrap_size(v, sizeof data));
    key_wrap(v, ByteView(data, sizeof data), aes, out.data());
    return out;
}

}  // namespace

bool parse_wrap_choice(const std::string &name, WrapChoice *out) {
    static const std::map<std::string, WrapChoice> names = {
        {"auto", WrapChoice::automatic}, {"aes_gcm", WrapChoice::aes_gcm},
        {"aes_kw", WrapChoice::aes_kw},  {"aes_kwp", WrapChoice::aes_kwp},
        {"ecb_kw", WrapChoice::ecb_kw},
    };
    auto it = names.find(name);
    if (it == names.end()) return false;
    *out = it->second;
    return true;
}

const char *wrap_choice_name(WrapChoice c) {
    switch (c) {
        case WrapChoice::automatic:
            return "auto";
        case WrapChoice::aes_gcm:
            return "aes_gcm";
        case WrapChoice::aes_kw:
            return "aes_kw";
        case WrapChoice::aes_kwp:
            return "aes_kwp";
        case WrapChoice::ecb_kw:
            return "ecb_kw";
    }
    return "auto";
}

const char *wrap_format_name(uint8_t format) {
    switch (format) {
        case kWrapFormatVersion:
            return "aes-gcm";
        case kWrapFormatKw:
            return "rfc3394";
        case kWrapFormatKwp:
            return "rfc5649";
        default:
            return "unknown";
    }
}

bool Pkcs11Client::key_allows(CK_OBJECT_HANDLE key, CK_ATTRIBUTE_TYPE attr) {
    CK_BBOOL value = CK_FALSE;
    CK_ATTRIBUTE a{attr, &value, sizeof value};
    return fn_->C_GetAttributeValue(session_, key, &a, 1) == CKR_OK && value == CK_TRUE;
}

CK_OBJECT_HANDLE Pkcs11Client::create_session_secret(ByteView value, bool aes_wrapping_key) {
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = aes_wrapping_key ? CKK_AES : CKK_GENERIC_SECRET;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    std::vector<CK_ATTRIBUTE> tmpl = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_KEY_TYPE, &type, sizeof type},
        {CKA_TOKEN, &no, sizeof no},
        {CKA_VALUE, const_cast<uint8_t *>(value.data), static_cast<CK_ULONG>(value.size)},
    };
    if (aes_wrapping_key) {
        tmpl.push_back({CKA_WRAP, &yes, sizeof yes});
        tmpl.push_back({CKA_UNWRAP, &yes, sizeof yes});
    } else {
        tmpl.push_back({CKA_EXTRACTABLE, &yes, sizeof yes});
        tmpl.push_back({CKA_SENSITIVE, &no, sizeof no});
    }
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    check(fn_->C_CreateObject(session_, tmpl.data(), static_cast<CK_ULONG>(tmpl.size()), &h),
          Pkcs11Failure::other, "C_CreateObject (session key)");
    return h;
}

void Pkcs11Client::destroy_object(CK_OBJECT_HANDLE h) noexcept {
    if (h != CK_INVALID_HANDLE) fn_->C_DestroyObject(session_, h);
}

std::vector<uint8_t> Pkcs11Client::token_key_wrap(CK_MECHANISM_TYPE mech, CK_OBJECT_HANDLE kek,
                                                  ByteView data) {
    CK_OBJECT_HANDLE obj = create_session_secret(data, false);
    CK_MECHANISM m{mech, nullptr, 0};
    std::vector<uint8_t> out(data.size + 16);  // room for either RFC's output
    CK_ULONG out_len = static_cast<CK_ULONG>(out.size());
    CK_RV rv = fn_->C_WrapKey(session_, &m, kek, obj, out.data(), &out_len);
    destroy_object(obj);
    check(rv, Pkcs11Failure::other, "C_WrapKey");
    out.resize(out_len);
    return out;
}

SecureBuffer Pkcs11Client::token_key_unwrap(CK_MECHANISM_TYPE mech, CK_OBJECT_HANDLE kek,
                                            ByteView blob, size_t expected_len) {
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_GENERIC_SECRET;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ULONG len = static_cast<CK_ULONG>(expected_len);
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},   {CKA_KEY_TYPE, &type, sizeof type},
        {CKA_TOKEN, &no, sizeof no},     {CKA_EXTRACTABLE, &yes, sizeof yes},
        {CKA_SENSITIVE, &no, sizeof no}, {CKA_VALUE_LEN, &len, sizeof len},
    };
    CK_MECHANISM m{mech, nullptr, 0};
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    std::vector<uint8_t> copy(blob.data, blob.data + blob.size);  // the API wants non-const
    // The length comes from the wrapped data; SoftHSM2 refuses CKA_VALUE_LEN in the template
    // (read-only), other modules may need it.
    CK_ULONG tmpl_len = sizeof tmpl / sizeof tmpl[0] - 1;
    CK_RV rv = fn_->C_UnwrapKey(session_, &m, kek, copy.data(), static_cast<CK_ULONG>(copy.size()),
                                tmpl, tmpl_len, &obj);
    if (rv == CKR_TEMPLATE_INCOMPLETE) {
        rv = fn_->C_UnwrapKey(session_, &m, kek, copy.data(), static_cast<CK_ULONG>(copy.size()),
                              tmpl, tmpl_len + 1, &obj);
    }
    if (rv == CKR_WRAPPED_KEY_INVALID || rv == CKR_ENCRYPTED_DATA_INVALID ||
        rv == CKR_GENERAL_ERROR || rv == CKR_WRAPPED_KEY_LEN_RANGE || rv == CKR_FUNCTION_FAILED) {
        throw Pkcs11Error(Pkcs11Failure::unwrap_auth, rv,
                          "wrapped DEK failed authentication (key-wrap integrity check, " +
                              ck_rv_name(rv) + "): it is corrupted or wrapped under another KEK");
    }
    check(rv, Pkcs11Failure::other, "C_UnwrapKey");
    SecureBuffer value(expected_len);
    CK_ATTRIBUTE v{CKA_VALUE, value.data(), static_cast<CK_ULONG>(value.size())};
    rv = fn_->C_GetAttributeValue(session_, obj, &v, 1);
    destroy_object(obj);
    check(rv, Pkcs11Failure::other, "C_GetAttributeValue (unwrapped DEK)");
    if (v.ulValueLen != expected_len) {
        throw Pkcs11Error(Pkcs11Failure::unwrap_auth, CKR_OK,
                          "key unwrap returned " + std::to_string(v.ulValueLen) + " bytes");
    }
    return value;
}

// One known-answer test: wrap known data under a known session key with the token's mechanism
// and compare with the RFC computed here; then unwrap it back.
bool Pkcs11Client::key_wrap_kat(CK_MECHANISM_TYPE mech, bool rfc5649) {
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
    try {
        key = create_session_secret(ByteView(kKatKey, sizeof kKatKey), true);
        uint8_t data[kDekSize + kWrapBindingSize];
        kat_data(data);
        std::vector<uint8_t> got = token_key_wrap(mech, key, ByteView(data, sizeof data));
        const std::vector<uint8_t> want =
            kat_expected(rfc5649 ? KeyWrapVariant::rfc5649 : KeyWrapVariant::rfc3394);
        bool ok = got == want;
        if (ok) {
            SecureBuffer back =
                token_key_unwrap(mech, key, ByteView(got.data(), got.size()), sizeof data);
            ok = std::memcmp(back.data(), data, sizeof data) == 0;
        }
        destroy_object(key);
        return ok;
    } catch (const Pkcs11Error &) {
        destroy_object(key);  // the token cannot do it this way: not this mechanism
        return false;
    }
}

const WrapSupport &Pkcs11Client::probe_wrap_support() {
    WrapSupport s;
    CK_ULONG count = 0;
    CK_SESSION_INFO info{};
    check(fn_->C_GetSessionInfo(session_, &info), Pkcs11Failure::other, "C_GetSessionInfo");
    check(fn_->C_GetMechanismList(info.slotID, nullptr, &count), Pkcs11Failure::other,
          "C_GetMechanismList");
    std::vector<CK_MECHANISM_TYPE> mechs(count);
    if (count > 0) {
        check(fn_->C_GetMechanismList(info.slotID, mechs.data(), &count), Pkcs11Failure::other,
              "C_GetMechanismList");
        mechs.resize(count);
    }
    auto flags_of = [&](CK_MECHANISM_TYPE m) -> CK_FLAGS {
        for (CK_MECHANISM_TYPE x : mechs) {
            if (x != m) continue;
            CK_MECHANISM_INFO mi{};
            if (fn_->C_GetMechanismInfo(info.slotID, m, &mi) != CKR_OK) return 0;
            return mi.flags;
        }
        return 0;
    };
    const CK_FLAGS both = CKF_ENCRYPT | CKF_DECRYPT;
    s.gcm = (flags_of(CKM_AES_GCM) & both) == both;
    s.ecb = (flags_of(CKM_AES_ECB) & both) == both;
    const CK_FLAGS wrap = CKF_WRAP | CKF_UNWRAP;
    // Identify each key-wrap mechanism by what it computes, not by its number.
    for (CK_MECHANISM_TYPE m : {kCkmAesKeyWrap, kCkmAesKeyWrapKwp, kCkmAesKeyWrapPad}) {
        if ((flags_of(m) & wrap) != wrap) continue;
        if (s.kw == CK_UNAVAILABLE_INFORMATION && key_wrap_kat(m, false)) {
            s.kw = m;
        } else if (s.kwp == CK_UNAVAILABLE_INFORMATION && key_wrap_kat(m, true)) {
            s.kwp = m;
        }
    }
    s.probed = true;
    support_ = s;
    return support_;
}

void Pkcs11Client::choose_wrapping(WrapChoice choice, CK_OBJECT_HANDLE kek) {
    probe_wrap_support();
    const bool can_wrap = key_allows(kek, CKA_WRAP) && key_allows(kek, CKA_UNWRAP);
    const bool has_kw = support_.kw != CK_UNAVAILABLE_INFORMATION && can_wrap;
    const bool has_kwp = support_.kwp != CK_UNAVAILABLE_INFORMATION && can_wrap;
    WrapChoice pick = choice;
    if (choice == WrapChoice::automatic) {
        if (support_.gcm) {
            pick = WrapChoice::aes_gcm;
        } else if (has_kw) {
            pick = WrapChoice::aes_kw;
        } else if (has_kwp) {
            pick = WrapChoice::aes_kwp;
        } else if (support_.ecb) {
            pick = WrapChoice::ecb_kw;
        } else {
            throw Pkcs11Error(Pkcs11Failure::mechanism, CKR_MECHANISM_INVALID,
                              "token " + token_label_ +
                                  " offers no way to wrap keys: pg_envelope needs CKM_AES_GCM, an "
                                  "RFC 3394/5649 key wrap, or CKM_AES_ECB");
        }
    }
    const char *missing = nullptr;
    if (pick == WrapChoice::aes_gcm && !support_.gcm) missing = "CKM_AES_GCM";
    if (pick == WrapChoice::aes_kw && !has_kw)
        missing = can_wrap ? "an RFC 3394 key wrap (CKM_AES_KEY_WRAP)"
                           : "a KEK with CKA_WRAP and CKA_UNWRAP for key wrap";
    if (pick == WrapChoice::aes_kwp && !has_kwp)
        missing = can_wrap ? "an RFC 5649 key wrap (CKM_AES_KEY_WRAP_KWP/_PAD)"
                           : "a KEK with CKA_WRAP and CKA_UNWRAP for key wrap";
    if (pick == WrapChoice::ecb_kw && !support_.ecb) missing = "CKM_AES_ECB";
    if (missing != nullptr) {
        throw Pkcs11Error(Pkcs11Failure::mechanism, CKR_MECHANISM_INVALID,
                          std::string("envelope.wrap_mechanism = ") + wrap_choice_name(choice) +
                              " needs " + missing + ", which token '" + token_label_ +
                              "' does not offer");
    }
    chosen_ = pick;
    chosen_set_ = true;
}

std::string Pkcs11Client::wrap_description() const {
    if (!chosen_set_) return "";
    switch (chosen_) {
        case WrapChoice::aes_gcm:
            return "CKM_AES_GCM";
        case WrapChoice::aes_kw:
            return std::string(mechanism_name(support_.kw)) + " (RFC 3394)";
        case WrapChoice::aes_kwp:
            return std::string(mechanism_name(support_.kwp)) + " (RFC 5649)";
        case WrapChoice::ecb_kw:
            return "RFC 3394 from CKM_AES_ECB";
        case WrapChoice::automatic:
            break;
    }
    return "";
}

uint8_t Pkcs11Client::wrap_format() const {
    if (chosen_ == WrapChoice::aes_kwp) return kWrapFormatKwp;
    if (chosen_ == WrapChoice::aes_kw || chosen_ == WrapChoice::ecb_kw) return kWrapFormatKw;
    return kWrapFormatVersion;
}

std::vector<uint8_t> Pkcs11Client::wrap_kw(CK_OBJECT_HANDLE kek, ByteView dek, ByteView identity,
                                           uint8_t format) {
    if (dek.size != kDekSize) {
        throw Pkcs11Error(Pkcs11Failure::other, CKR_OK,
                          "a DEK must have " + std::to_string(kDekSize) + " bytes");
    }
    SecureBuffer data(kDekSize + kWrapBindingSize);
    std::memcpy(data.data(), dek.data, kDekSize);
    wrap_binding(identity, data.data() + kDekSize);
    const KeyWrapVariant variant =
        format == kWrapFormatKwp ? KeyWrapVariant::rfc5649 : KeyWrapVariant::rfc3394;
    std::vector<uint8_t> out(1 + key_wrap_size(variant, data.size()));
    out[0] = format;
    if (chosen_ == WrapChoice::aes_kw || chosen_ == WrapChoice::aes_kwp) {
        const CK_MECHANISM_TYPE mech = chosen_ == WrapChoice::aes_kw ? support_.kw : support_.kwp;
        std::vector<uint8_t> w = token_key_wrap(mech, kek, data.view());
        if (w.size() != out.size() - 1) {
            throw Pkcs11Error(Pkcs11Failure::other, CKR_OK,
                              "key wrap returned " + std::to_string(w.size()) + " bytes");
        }
        std::memcpy(out.data() + 1, w.data(), w.size());
        return out;
    }
    AesBlockFn aes = [&](bool encrypt, const uint8_t *in, uint8_t *blk) {
        aes_ecb(kek, encrypt, in, 16, blk);
    };
    key_wrap(variant, data.view(), aes, out.data() + 1);
    return out;
}

SecureBuffer Pkcs11Client::unwrap_kw(CK_OBJECT_HANDLE kek, ByteView wrapped, ByteView identity) {
    const uint8_t format = wrapped.data[0];
    const KeyWrapVariant variant =
        format == kWrapFormatKwp ? KeyWrapVariant::rfc5649 : KeyWrapVariant::rfc3394;
    const CK_MECHANISM_TYPE token_mech = format == kWrapFormatKwp ? support_.kwp : support_.kw;
    ByteView blob(wrapped.data + 1, wrapped.size - 1);
    SecureBuffer data;
    if (token_mech != CK_UNAVAILABLE_INFORMATION && key_allows(kek, CKA_UNWRAP)) {
        data = token_key_unwrap(token_mech, kek, blob, kDekSize + kWrapBindingSize);
    } else if (support_.ecb) {
        AesBlockFn aes = [&](bool encrypt, const uint8_t *in, uint8_t *blk) {
            aes_ecb(kek, encrypt, in, 16, blk);
        };
        if (!key_unwrap(variant, blob, aes, data) || data.size() != kDekSize + kWrapBindingSize) {
            throw Pkcs11Error(Pkcs11Failure::unwrap_auth, CKR_OK,
                              "wrapped DEK failed authentication (key-wrap integrity check): it "
                              "is corrupted or wrapped under another KEK");
        }
    } else {
        throw Pkcs11Error(Pkcs11Failure::mechanism, CKR_MECHANISM_INVALID,
                          std::string("this DEK is wrapped with ") + wrap_format_name(format) +
                              ", and token '" + token_label_ +
                              "' offers neither that key wrap nor CKM_AES_ECB to open it");
    }
    uint8_t binding[kWrapBindingSize];
    wrap_binding(identity, binding);
    uint8_t diff = 0;
    for (size_t i = 0; i < kWrapBindingSize; ++i) diff |= binding[i] ^ data.data()[kDekSize + i];
    if (diff != 0) {
        throw Pkcs11Error(Pkcs11Failure::unwrap_auth, CKR_OK,
                          "wrapped DEK failed authentication: it is bound to another identity");
    }
    return SecureBuffer(data.data(), kDekSize);
}

std::vector<uint8_t> Pkcs11Client::wrap_dek(CK_OBJECT_HANDLE kek, ByteView dek, ByteView identity) {
    if (!chosen_set_) choose_wrapping(WrapChoice::automatic, kek);
    const uint8_t format = wrap_format();
    if (format == kWrapFormatVersion) return wrap_gcm(kek, dek, identity);
    return wrap_kw(kek, dek, identity, format);
}

SecureBuffer Pkcs11Client::unwrap_dek(CK_OBJECT_HANDLE kek, ByteView wrapped, ByteView identity) {
    if (wrapped.size == 0) {
        throw Pkcs11Error(Pkcs11Failure::malformed, CKR_OK, "wrapped DEK is empty");
    }
    const uint8_t format = wrapped.data[0];
    if (format == kWrapFormatKw || format == kWrapFormatKwp) {
        if (wrapped.size != kWrappedDekKwSize) {
            throw Pkcs11Error(Pkcs11Failure::malformed, CKR_OK,
                              "wrapped DEK has " + std::to_string(wrapped.size) +
                                  " bytes, expected " + std::to_string(kWrappedDekKwSize));
        }
        if (!support_.probed) probe_wrap_support();
        return unwrap_kw(kek, wrapped, identity);
    }
    if (format == kWrapFormatVersion && support_.probed && !support_.gcm) {
        throw Pkcs11Error(
            Pkcs11Failure::mechanism, CKR_MECHANISM_INVALID,
            "this DEK is wrapped with AES-GCM, which token '" + token_label_ + "' does not offer");
    }
    return unwrap_gcm(kek, wrapped, identity);
}

}  // namespace envelope
