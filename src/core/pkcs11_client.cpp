// PKCS#11 client: module loading, token/key lookup and identity-bound AES-GCM DEK wrapping.
#include "pkcs11_client.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstdio>
#include <cstring>

namespace envelope {

namespace {

constexpr size_t kMaxPinFileSize = 256;
constexpr char kWrapAadPrefix[] = "pg_envelope/dek-wrap/v1";  // sizeof includes the '\0'

struct RvEntry {
    CK_RV rv;
    const char *name;
};

#define ENVELOPE_RV(x) \
    { x, #x }
const RvEntry kRvNames[] = {
    ENVELOPE_RV(CKR_OK),
    ENVELOPE_RV(CKR_CANCEL),
    ENVELOPE_RV(CKR_HOST_MEMORY),
    ENVELOPE_RV(CKR_SLOT_ID_INVALID),
    ENVELOPE_RV(CKR_GENERAL_ERROR),
    ENVELOPE_RV(CKR_FUNCTION_FAILED),
    ENVELOPE_RV(CKR_ARGUMENTS_BAD),
    ENVELOPE_RV(CKR_NO_EVENT),
    ENVELOPE_RV(CKR_NEED_TO_CREATE_THREADS),
    ENVELOPE_RV(CKR_CANT_LOCK),
    ENVELOPE_RV(CKR_ATTRIBUTE_READ_ONLY),
    ENVELOPE_RV(CKR_ATTRIBUTE_SENSITIVE),
    ENVELOPE_RV(CKR_ATTRIBUTE_TYPE_INVALID),
    ENVELOPE_RV(CKR_ATTRIBUTE_VALUE_INVALID),
    ENVELOPE_RV(CKR_ACTION_PROHIBITED),
    ENVELOPE_RV(CKR_DATA_INVALID),
    ENVELOPE_RV(CKR_DATA_LEN_RANGE),
    ENVELOPE_RV(CKR_DEVICE_ERROR),
    ENVELOPE_RV(CKR_DEVICE_MEMORY),
    ENVELOPE_RV(CKR_DEVICE_REMOVED),
    ENVELOPE_RV(CKR_ENCRYPTED_DATA_INVALID),
    ENVELOPE_RV(CKR_ENCRYPTED_DATA_LEN_RANGE),
    ENVELOPE_RV(CKR_FUNCTION_CANCELED),
    ENVELOPE_RV(CKR_FUNCTION_NOT_PARALLEL),
    ENVELOPE_RV(CKR_FUNCTION_NOT_SUPPORTED),
    ENVELOPE_RV(CKR_KEY_HANDLE_INVALID),
    ENVELOPE_RV(CKR_KEY_SIZE_RANGE),
    ENVELOPE_RV(CKR_KEY_TYPE_INCONSISTENT),
    ENVELOPE_RV(CKR_KEY_NOT_NEEDED),
    ENVELOPE_RV(CKR_KEY_CHANGED),
    ENVELOPE_RV(CKR_KEY_NEEDED),
    ENVELOPE_RV(CKR_KEY_INDIGESTIBLE),
    ENVELOPE_RV(CKR_KEY_FUNCTION_NOT_PERMITTED),
    ENVELOPE_RV(CKR_KEY_NOT_WRAPPABLE),
    ENVELOPE_RV(CKR_KEY_UNEXTRACTABLE),
    ENVELOPE_RV(CKR_MECHANISM_INVALID),
    ENVELOPE_RV(CKR_MECHANISM_PARAM_INVALID),
    ENVELOPE_RV(CKR_OBJECT_HANDLE_INVALID),
    ENVELOPE_RV(CKR_OPERATION_ACTIVE),
    ENVELOPE_RV(CKR_OPERATION_NOT_INITIALIZED),
    ENVELOPE_RV(CKR_PIN_INCORRECT),
    ENVELOPE_RV(CKR_PIN_INVALID),
    ENVELOPE_RV(CKR_PIN_LEN_RANGE),
    ENVELOPE_RV(CKR_PIN_EXPIRED),
    ENVELOPE_RV(CKR_PIN_LOCKED),
    ENVELOPE_RV(CKR_SESSION_CLOSED),
    ENVELOPE_RV(CKR_SESSION_COUNT),
    ENVELOPE_RV(CKR_SESSION_HANDLE_INVALID),
    ENVELOPE_RV(CKR_SESSION_PARALLEL_NOT_SUPPORTED),
    ENVELOPE_RV(CKR_SESSION_READ_ONLY),
    ENVELOPE_RV(CKR_SESSION_EXISTS),
    ENVELOPE_RV(CKR_SESSION_READ_ONLY_EXISTS),
    ENVELOPE_RV(CKR_SESSION_READ_WRITE_SO_EXISTS),
    ENVELOPE_RV(CKR_SIGNATURE_INVALID),
    ENVELOPE_RV(CKR_SIGNATURE_LEN_RANGE),
    ENVELOPE_RV(CKR_TEMPLATE_INCOMPLETE),
    ENVELOPE_RV(CKR_TEMPLATE_INCONSISTENT),
    ENVELOPE_RV(CKR_TOKEN_NOT_PRESENT),
    ENVELOPE_RV(CKR_TOKEN_NOT_RECOGNIZED),
    ENVELOPE_RV(CKR_TOKEN_WRITE_PROTECTED),
    ENVELOPE_RV(CKR_UNWRAPPING_KEY_HANDLE_INVALID),
    ENVELOPE_RV(CKR_UNWRAPPING_KEY_SIZE_RANGE),
    ENVELOPE_RV(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT),
    ENVELOPE_RV(CKR_USER_ALREADY_LOGGED_IN),
    ENVELOPE_RV(CKR_USER_NOT_LOGGED_IN),
    ENVELOPE_RV(CKR_USER_PIN_NOT_INITIALIZED),
    ENVELOPE_RV(CKR_USER_TYPE_INVALID),
    ENVELOPE_RV(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
    ENVELOPE_RV(CKR_USER_TOO_MANY_TYPES),
    ENVELOPE_RV(CKR_WRAPPED_KEY_INVALID),
    ENVELOPE_RV(CKR_WRAPPED_KEY_LEN_RANGE),
    ENVELOPE_RV(CKR_WRAPPING_KEY_HANDLE_INVALID),
    ENVELOPE_RV(CKR_WRAPPING_KEY_SIZE_RANGE),
    ENVELOPE_RV(CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
    ENVELOPE_RV(CKR_RANDOM_SEED_NOT_SUPPORTED),
    ENVELOPE_RV(CKR_RANDOM_NO_RNG),
    ENVELOPE_RV(CKR_DOMAIN_PARAMS_INVALID),
    ENVELOPE_RV(CKR_CURVE_NOT_SUPPORTED),
    ENVELOPE_RV(CKR_BUFFER_TOO_SMALL),
    ENVELOPE_RV(CKR_SAVED_STATE_INVALID),
    ENVELOPE_RV(CKR_INFORMATION_SENSITIVE),
    ENVELOPE_RV(CKR_STATE_UNSAVEABLE),
    ENVELOPE_RV(CKR_CRYPTOKI_NOT_INITIALIZED),
    ENVELOPE_RV(CKR_CRYPTOKI_ALREADY_INITIALIZED),
    ENVELOPE_RV(CKR_MUTEX_BAD),
    ENVELOPE_RV(CKR_MUTEX_NOT_LOCKED),
    ENVELOPE_RV(CKR_NEW_PIN_MODE),
    ENVELOPE_RV(CKR_NEXT_OTP),
    ENVELOPE_RV(CKR_EXCEEDED_MAX_ITERATIONS),
    ENVELOPE_RV(CKR_FIPS_SELF_TEST_FAILED),
    ENVELOPE_RV(CKR_LIBRARY_LOAD_FAILED),
    ENVELOPE_RV(CKR_PIN_TOO_WEAK),
    ENVELOPE_RV(CKR_PUBLIC_KEY_INVALID),
    ENVELOPE_RV(CKR_FUNCTION_REJECTED),
    ENVELOPE_RV(CKR_VENDOR_DEFINED),
};
#undef ENVELOPE_RV

const RvEntry kRvExplanations[] = {
    {CKR_OK, "success"},
    {CKR_HOST_MEMORY, "the module ran out of host memory"},
    {CKR_SLOT_ID_INVALID, "the slot does not exist"},
    {CKR_GENERAL_ERROR, "the module reported an unrecoverable error"},
    {CKR_FUNCTION_FAILED, "the module could not perform the function"},
    {CKR_ARGUMENTS_BAD, "the module rejected the arguments"},
    {CKR_CANT_LOCK, "the module cannot provide the requested thread locking"},
    {CKR_ATTRIBUTE_SENSITIVE, "the attribute is sensitive and cannot be read"},
    {CKR_ATTRIBUTE_TYPE_INVALID, "the object has no such attribute"},
    {CKR_ATTRIBUTE_VALUE_INVALID, "an attribute value is invalid"},
    {CKR_DEVICE_ERROR, "the token or its device reported an error"},
    {CKR_DEVICE_MEMORY, "the token is out of memory"},
    {CKR_DEVICE_REMOVED, "the token was removed"},
    {CKR_ENCRYPTED_DATA_INVALID, "the ciphertext is invalid (authentication failed)"},
    {CKR_ENCRYPTED_DATA_LEN_RANGE, "the ciphertext has an invalid length"},
    {CKR_FUNCTION_NOT_SUPPORTED, "the module does not support this function"},
    {CKR_KEY_HANDLE_INVALID, "the key handle is not valid (key deleted or session changed)"},
    {CKR_KEY_SIZE_RANGE, "the key size is not supported"},
    {CKR_KEY_TYPE_INCONSISTENT, "the key type does not fit the mechanism"},
    {CKR_KEY_FUNCTION_NOT_PERMITTED, "the key's attributes do not allow this operation"},
    {CKR_MECHANISM_INVALID, "the token does not support this mechanism"},
    {CKR_MECHANISM_PARAM_INVALID, "the mechanism parameters are invalid"},
    {CKR_OBJECT_HANDLE_INVALID, "the object handle is not valid"},
    {CKR_OPERATION_ACTIVE, "another operation is already active in this session"},
    {CKR_OPERATION_NOT_INITIALIZED, "no operation of this kind was started"},
    {CKR_PIN_INCORRECT, "the PIN is wrong"},
    {CKR_PIN_INVALID, "the PIN contains invalid characters"},
    {CKR_PIN_LEN_RANGE, "the PIN is too short or too long for this token"},
    {CKR_PIN_EXPIRED, "the PIN has expired and must be changed"},
    {CKR_PIN_LOCKED, "the PIN is locked after too many wrong attempts"},
    {CKR_SESSION_CLOSED, "the session was closed"},
    {CKR_SESSION_COUNT, "the token cannot open more sessions"},
    {CKR_SESSION_HANDLE_INVALID, "the session is no longer valid"},
    {CKR_SESSION_READ_ONLY, "the session is read-only"},
    {CKR_SESSION_EXISTS, "a session is open, so the token cannot be initialised"},
    {CKR_SESSION_READ_WRITE_SO_EXISTS, "a security officer session is already open"},
    {CKR_TEMPLATE_INCOMPLETE, "the object template lacks required attributes"},
    {CKR_TEMPLATE_INCONSISTENT, "the object template has conflicting attributes"},
    {CKR_TOKEN_NOT_PRESENT, "no token is present in the slot"},
    {CKR_TOKEN_NOT_RECOGNIZED, "the token is not recognized"},
    {CKR_TOKEN_WRITE_PROTECTED, "the token is write-protected"},
    {CKR_USER_ALREADY_LOGGED_IN, "the user is already logged in"},
    {CKR_USER_NOT_LOGGED_IN, "the user is not logged in"},
    {CKR_USER_PIN_NOT_INITIALIZED, "the user PIN was never set on this token"},
    {CKR_USER_TYPE_INVALID, "the user type is invalid"},
    {CKR_USER_ANOTHER_ALREADY_LOGGED_IN, "another user is already logged in"},
    {CKR_RANDOM_NO_RNG, "the token has no random number generator"},
    {CKR_BUFFER_TOO_SMALL, "the output buffer is too small"},
    {CKR_CRYPTOKI_NOT_INITIALIZED, "the module is not initialised"},
    {CKR_CRYPTOKI_ALREADY_INITIALIZED, "the module is already initialised in this process"},
    {CKR_PIN_TOO_WEAK, "the PIN is too weak"},
    {CKR_FUNCTION_REJECTED, "the token rejected the function"},
};

// Failures after which the session or object handles may be stale (the token was removed,
// reloaded or restarted): the keeper reconnects and retries once.
bool is_device_failure(CK_RV rv) {
    switch (rv) {
        case CKR_OBJECT_HANDLE_INVALID:
        case CKR_KEY_HANDLE_INVALID:
        case CKR_USER_NOT_LOGGED_IN:
        case CKR_DEVICE_ERROR:
        case CKR_DEVICE_MEMORY:
        case CKR_DEVICE_REMOVED:
        case CKR_TOKEN_NOT_PRESENT:
        case CKR_TOKEN_NOT_RECOGNIZED:
        case CKR_SESSION_CLOSED:
        case CKR_SESSION_HANDLE_INVALID:
        case CKR_CRYPTOKI_NOT_INITIALIZED:
            return true;
        default:
            return false;
    }
}

// Label as stored in CK_TOKEN_INFO: 32 bytes, padded with spaces. False if it cannot fit.
bool pad_label(const std::string &label, unsigned char out[32]) {
    if (label.empty() || label.size() > 32) return false;
    std::memset(out, ' ', 32);
    std::copy(label.begin(), label.end(), out);  // space padded, no NUL
    return true;
}

std::string quoted(const std::string &s) {
    return "'" + s + "'";
}

std::vector<CK_SLOT_ID> present_slots(CK_FUNCTION_LIST_PTR fn) {
    for (int attempt = 0; attempt < 4; ++attempt) {
        CK_ULONG count = 0;
        CK_RV rv = fn->C_GetSlotList(CK_TRUE, nullptr, &count);
        if (rv != CKR_OK) {
            throw Pkcs11Error(is_device_failure(rv) ? Pkcs11Failure::device : Pkcs11Failure::other,
                              rv, "C_GetSlotList failed: " + ck_rv_describe(rv));
        }
        std::vector<CK_SLOT_ID> slots(count);
        if (count == 0) return slots;
        rv = fn->C_GetSlotList(CK_TRUE, slots.data(), &count);
        if (rv == CKR_BUFFER_TOO_SMALL) continue;  // a token appeared between the two calls
        if (rv != CKR_OK) {
            throw Pkcs11Error(Pkcs11Failure::other, rv,
                              "C_GetSlotList failed: " + ck_rv_describe(rv));
        }
        slots.resize(count);
        return slots;
    }
    throw Pkcs11Error(Pkcs11Failure::other, CKR_BUFFER_TOO_SMALL,
                      "C_GetSlotList kept changing size");
}

// Closes a find operation however the search ends.
class FindOperation {
  public:
    FindOperation(CK_FUNCTION_LIST_PTR fn, CK_SESSION_HANDLE s) : fn_(fn), session_(s) {}
    ~FindOperation() {
        if (active_) fn_->C_FindObjectsFinal(session_);
    }
    FindOperation(const FindOperation &) = delete;
    FindOperation &operator=(const FindOperation &) = delete;
    CK_RV init(CK_ATTRIBUTE *tmpl, CK_ULONG n) {
        CK_RV rv = fn_->C_FindObjectsInit(session_, tmpl, n);
        active_ = rv == CKR_OK;
        return rv;
    }

  private:
    CK_FUNCTION_LIST_PTR fn_;
    CK_SESSION_HANDLE session_;
    bool active_ = false;
};

}  // namespace

const char *pkcs11_failure_name(Pkcs11Failure f) noexcept {
    switch (f) {
        case Pkcs11Failure::module_load:
            return "module_load";
        case Pkcs11Failure::initialize:
            return "initialize";
        case Pkcs11Failure::token_not_found:
            return "token_not_found";
        case Pkcs11Failure::pin_file:
            return "pin_file";
        case Pkcs11Failure::login:
            return "login";
        case Pkcs11Failure::key_not_found:
            return "key_not_found";
        case Pkcs11Failure::unwrap_auth:
            return "unwrap_auth";
        case Pkcs11Failure::malformed:
            return "malformed";
        case Pkcs11Failure::device:
            return "device";
        case Pkcs11Failure::ikm_command:
            return "ikm_command";
        case Pkcs11Failure::ikm_salt:
            return "ikm_salt";
        case Pkcs11Failure::mechanism:
            return "mechanism";
        case Pkcs11Failure::other:
            return "other";
    }
    return "other";
}

std::string ck_rv_name(CK_RV rv) {
    for (const RvEntry &e : kRvNames) {
        if (e.rv == rv) return e.name;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, "CKR_0x%08lx", static_cast<unsigned long>(rv));
    return buf;
}

std::string ck_rv_describe(CK_RV rv) {
    std::string out = ck_rv_name(rv);
    for (const RvEntry &e : kRvExplanations) {
        if (e.rv == rv) return out + ": " + e.name;
    }
    if (rv >= CKR_VENDOR_DEFINED) return out + ": a vendor-specific error";
    return out;
}

SecureBuffer read_pin_file(const std::string &path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int err = errno;
        throw Pkcs11Error(Pkcs11Failure::pin_file, CKR_OK,
                          "cannot open PIN file " + path + ": " + std::strerror(err));
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        int err = errno;
        ::close(fd);
        throw Pkcs11Error(Pkcs11Failure::pin_file, CKR_OK,
                          "cannot stat PIN file " + path + ": " + std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw Pkcs11Error(Pkcs11Failure::pin_file, CKR_OK,
                          "PIN file " + path + " is not a regular file");
    }
    if ((st.st_mode & 077) != 0) {
        ::close(fd);
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        throw Pkcs11Error(Pkcs11Failure::pin_file, CKR_OK,
                          "PIN file " + path + " has mode " + mode +
                              "; it must not be accessible by group or others (chmod 600)");
    }

    // One byte more than allowed, so an oversized file is noticed.
    SecureBuffer raw(kMaxPinFileSize + 1);
    size_t used = 0;
    while (used < raw.size()) {
        ssize_t n = ::read(fd, raw.data() + used, raw.size() - used);
        if (n < 0) {
            if (errno == EINTR) continue;
            int err = errno;
            ::close(fd);
            throw Pkcs11Error(Pkcs11Failure::pin_file, CKR_OK,
                              "cannot read PIN file " + path + ": " + std::strerror(err));
        }
        if (n == 0) break;
        used += static_cast<size_t>(n);
    }
    ::close(fd);
    if (used > kMaxPinFileSize) {
        throw Pkcs11Error(Pkcs11Failure::pin_file, CKR_OK,
                          "PIN file " + path + " is longer than 256 bytes");
    }
    size_t len = 0;
    while (len < used && raw.data()[len] != '\n') ++len;
    if (len > 0 && raw.data()[len - 1] == '\r') --len;
    if (len == 0) {
        throw Pkcs11Error(Pkcs11Failure::pin_file, CKR_OK,
                          "PIN file " + path + " is empty (the PIN is its first line)");
    }
    return SecureBuffer(raw.data(), len);
}

Pkcs11Client::Pkcs11Client(const std::string &module_path, const std::string &init_reserved)
    : module_path_(module_path) {
    // RTLD_NODELETE: modules may leave threads or exit handlers behind after C_Finalize
    // (openCryptoki's event thread does), so a module is never unmapped once loaded; a later
    // connection reuses it.
    handle_ = ::dlopen(module_path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (handle_ == nullptr) {
        const char *err = ::dlerror();
        throw Pkcs11Error(Pkcs11Failure::module_load, CKR_OK,
                          "cannot load PKCS#11 module " + module_path + ": " +
                              (err != nullptr ? err : "unknown dlopen error"));
    }
    auto get_list = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(handle_, "C_GetFunctionList"));
    if (get_list == nullptr) {
        ::dlclose(handle_);
        handle_ = nullptr;
        throw Pkcs11Error(Pkcs11Failure::module_load, CKR_OK,
                          module_path + " is not a PKCS#11 module (no C_GetFunctionList)");
    }
    CK_RV rv = get_list(&fn_);
    if (rv != CKR_OK || fn_ == nullptr) {
        ::dlclose(handle_);
        handle_ = nullptr;
        fn_ = nullptr;
        throw Pkcs11Error(Pkcs11Failure::module_load, rv,
                          "C_GetFunctionList of " + module_path + " failed: " + ck_rv_describe(rv));
    }
    CK_C_INITIALIZE_ARGS args{};
    args.flags = CKF_OS_LOCKING_OK;
    std::string reserved = init_reserved;  // the module may keep the pointer until it returns
    if (!reserved.empty()) args.pReserved = reserved.data();
    rv = fn_->C_Initialize(&args);
    if (rv == CKR_OK) {
        finalize_ = true;
    } else if (rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        ::dlclose(handle_);
        handle_ = nullptr;
        fn_ = nullptr;
        throw Pkcs11Error(Pkcs11Failure::initialize, rv,
                          "C_Initialize of " + module_path + " failed: " + ck_rv_describe(rv));
    }
}

Pkcs11Client::~Pkcs11Client() {
    if (fn_ != nullptr) {
        if (session_ != CK_INVALID_HANDLE) fn_->C_CloseSession(session_);
        if (finalize_) fn_->C_Finalize(nullptr);
    }
    if (handle_ != nullptr) ::dlclose(handle_);
}

void Pkcs11Client::check(CK_RV rv, Pkcs11Failure failure, const char *what) {
    if (rv == CKR_OK) return;
    if (is_device_failure(rv)) failure = Pkcs11Failure::device;
    std::string msg = std::string(what) + " failed: " + ck_rv_describe(rv);
    if (!token_label_.empty()) msg += " (token " + quoted(token_label_) + ")";
    throw Pkcs11Error(failure, rv, msg);
}

CK_SLOT_ID Pkcs11Client::find_slot_by_label(const std::string &token_label) {
    unsigned char wanted[32];
    if (!pad_label(token_label, wanted)) {
        throw Pkcs11Error(
            Pkcs11Failure::token_not_found, CKR_OK,
            "token label " + quoted(token_label) + " is invalid: it must have 1 to 32 bytes");
    }
    std::vector<CK_SLOT_ID> slots = present_slots(fn_);
    for (CK_SLOT_ID slot : slots) {
        CK_TOKEN_INFO info{};
        if (fn_->C_GetTokenInfo(slot, &info) != CKR_OK) continue;
        if ((info.flags & CKF_TOKEN_INITIALIZED) == 0) continue;
        if (std::memcmp(info.label, wanted, 32) == 0) return slot;
    }
    throw Pkcs11Error(Pkcs11Failure::token_not_found, CKR_OK,
                      "no token labelled " + quoted(token_label) + " among " +
                          std::to_string(slots.size()) + " slot(s) with a token in " +
                          module_path_ +
                          " (for SoftHSM: check SOFTHSM2_CONF and that this user can read the "
                          "token directory)");
}

CK_SLOT_ID Pkcs11Client::find_uninitialized_slot() {
    for (CK_SLOT_ID slot : present_slots(fn_)) {
        CK_TOKEN_INFO info{};
        if (fn_->C_GetTokenInfo(slot, &info) != CKR_OK) continue;
        if ((info.flags & CKF_TOKEN_INITIALIZED) == 0) return slot;
    }
    throw Pkcs11Error(Pkcs11Failure::token_not_found, CKR_OK,
                      "no slot of " + module_path_ + " holds an uninitialised token");
}

void Pkcs11Client::open_token(const std::string &token_label) {
    CK_SLOT_ID slot = find_slot_by_label(token_label);
    if (session_ != CK_INVALID_HANDLE) {
        fn_->C_CloseSession(session_);
        session_ = CK_INVALID_HANDLE;
    }
    token_label_ = token_label;
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    check(fn_->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &s),
          Pkcs11Failure::token_not_found, "C_OpenSession");
    session_ = s;
}

void Pkcs11Client::login(ByteView pin) {
    if (session_ == CK_INVALID_HANDLE) {
        throw Pkcs11Error(Pkcs11Failure::other, CKR_SESSION_HANDLE_INVALID,
                          "login before open_token");
    }
    CK_RV rv = fn_->C_Login(session_, CKU_USER, const_cast<CK_UTF8CHAR_PTR>(pin.data),
                            static_cast<CK_ULONG>(pin.size));
    if (rv == CKR_USER_ALREADY_LOGGED_IN) return;
    check(rv, Pkcs11Failure::login, "C_Login as user");
}

CK_OBJECT_HANDLE Pkcs11Client::find_secret_key(const std::string &label) {
    if (session_ == CK_INVALID_HANDLE) {
        throw Pkcs11Error(Pkcs11Failure::other, CKR_SESSION_HANDLE_INVALID,
                          "find_secret_key before open_token");
    }
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_LABEL, const_cast<char *>(label.data()), static_cast<CK_ULONG>(label.size())},
    };
    CK_OBJECT_HANDLE found[2] = {CK_INVALID_HANDLE, CK_INVALID_HANDLE};
    CK_ULONG count = 0;
    {
        FindOperation op(fn_, session_);
        check(op.init(tmpl, 2), Pkcs11Failure::other, "C_FindObjectsInit");
        check(fn_->C_FindObjects(session_, found, 2, &count), Pkcs11Failure::other,
              "C_FindObjects");
    }
    if (count == 0) {
        throw Pkcs11Error(
            Pkcs11Failure::key_not_found, CKR_OK,
            "no secret key labelled " + quoted(label) + " on token " + quoted(token_label_));
    }
    if (count > 1) {
        throw Pkcs11Error(Pkcs11Failure::key_not_found, CKR_OK,
                          "more than one secret key labelled " + quoted(label) + " on token " +
                              quoted(token_label_) + "; KEK labels must be unique");
    }
    return found[0];
}

SecureBuffer Pkcs11Client::generate_random(size_t n) {
    SecureBuffer out(n);
    if (n == 0) return out;
    check(fn_->C_GenerateRandom(session_, out.data(), static_cast<CK_ULONG>(n)),
          Pkcs11Failure::other, "C_GenerateRandom");
    return out;
}

namespace {

// AAD of the wrap: the domain string (with its NUL) followed by the identity.
std::vector<uint8_t> wrap_aad(ByteView identity) {
    std::vector<uint8_t> aad(sizeof kWrapAadPrefix + identity.size);
    std::memcpy(aad.data(), kWrapAadPrefix, sizeof kWrapAadPrefix);
    if (identity.size > 0) {
        std::memcpy(aad.data() + sizeof kWrapAadPrefix, identity.data, identity.size);
    }
    return aad;
}

// Full CK_GCM_PARAMS (ulIvBits included) with a 128-bit tag, which SoftHSM does not enforce.
CK_GCM_PARAMS gcm_params(uint8_t *iv, std::vector<uint8_t> &aad) {
    CK_GCM_PARAMS params{};
    params.pIv = iv;
    params.ulIvLen = kGcmNonceSize;
    params.ulIvBits = kGcmNonceSize * 8;
    params.pAAD = aad.data();
    params.ulAADLen = static_cast<CK_ULONG>(aad.size());
    params.ulTagBits = kGcmTagSize * 8;
    return params;
}

}  // namespace

std::vector<uint8_t> Pkcs11Client::wrap_gcm(CK_OBJECT_HANDLE kek, ByteView dek, ByteView identity) {
    if (dek.size != kDekSize) {
        throw Pkcs11Error(Pkcs11Failure::other, CKR_OK,
                          "a DEK must have " + std::to_string(kDekSize) + " bytes");
    }
    std::vector<uint8_t> aad = wrap_aad(identity);
    SecureBuffer nonce = generate_random(kGcmNonceSize);
    CK_GCM_PARAMS params = gcm_params(nonce.data(), aad);
    CK_MECHANISM mech{CKM_AES_GCM, &params, sizeof params};

    check(fn_->C_EncryptInit(session_, &mech, kek), Pkcs11Failure::other, "C_EncryptInit");
    // Room for more than expected, so an odd module cannot overflow; the length is checked.
    std::vector<uint8_t> out(kWrappedDekSize);
    CK_ULONG out_len = static_cast<CK_ULONG>(out.size() - 1 - kGcmNonceSize);
    check(fn_->C_Encrypt(session_, const_cast<CK_BYTE_PTR>(dek.data), kDekSize,
                         out.data() + 1 + kGcmNonceSize, &out_len),
          Pkcs11Failure::other, "C_Encrypt (AES-GCM wrap)");
    if (out_len != kDekSize + kGcmTagSize) {
        throw Pkcs11Error(Pkcs11Failure::other, CKR_OK,
                          "AES-GCM wrap returned " + std::to_string(out_len) +
                              " bytes instead of " + std::to_string(kDekSize + kGcmTagSize));
    }
    out[0] = kWrapFormatVersion;
    std::memcpy(out.data() + 1, nonce.data(), kGcmNonceSize);
    return out;
}

SecureBuffer Pkcs11Client::unwrap_gcm(CK_OBJECT_HANDLE kek, ByteView wrapped, ByteView identity) {
    if (wrapped.size != kWrappedDekSize) {
        throw Pkcs11Error(Pkcs11Failure::malformed, CKR_OK,
                          "wrapped DEK has " + std::to_string(wrapped.size) + " bytes, expected " +
                              std::to_string(kWrappedDekSize));
    }
    if (wrapped.data[0] != kWrapFormatVersion) {
        throw Pkcs11Error(Pkcs11Failure::malformed, CKR_OK,
                          "wrapped DEK has format version " + std::to_string(wrapped.data[0]) +
                              ", expected " + std::to_string(kWrapFormatVersion));
    }
    std::vector<uint8_t> aad = wrap_aad(identity);
    // The module takes non-const pointers; give it a private copy.
    uint8_t blob[kWrappedDekSize];
    std::memcpy(blob, wrapped.data, kWrappedDekSize);
    CK_GCM_PARAMS params = gcm_params(blob + 1, aad);
    CK_MECHANISM mech{CKM_AES_GCM, &params, sizeof params};

    SecureBuffer plain(kDekSize + kGcmTagSize);  // modules may want room for the whole input
    CK_ULONG plain_len = static_cast<CK_ULONG>(plain.size());
    CK_RV rv = fn_->C_DecryptInit(session_, &mech, kek);
    if (rv == CKR_OK) {
        rv = fn_->C_Decrypt(session_, blob + 1 + kGcmNonceSize, kDekSize + kGcmTagSize,
                            plain.data(), &plain_len);
    }
    secure_zero(blob, sizeof blob);
    if (rv == CKR_GENERAL_ERROR || rv == CKR_ENCRYPTED_DATA_INVALID ||
        rv == CKR_ENCRYPTED_DATA_LEN_RANGE) {
        throw Pkcs11Error(Pkcs11Failure::unwrap_auth, rv,
                          "wrapped DEK failed authentication (" + ck_rv_name(rv) +
                              "): it is corrupted, bound to another identity, or wrapped under "
                              "another KEK");
    }
    check(rv, Pkcs11Failure::other, "AES-GCM unwrap");
    if (plain_len != kDekSize) {
        throw Pkcs11Error(Pkcs11Failure::unwrap_auth, CKR_OK,
                          "AES-GCM unwrap returned " + std::to_string(plain_len) +
                              " bytes instead of " + std::to_string(kDekSize));
    }
    return SecureBuffer(plain.data(), kDekSize);
}

void Pkcs11Client::aes_ecb(CK_OBJECT_HANDLE key, bool encrypt, const uint8_t *in, size_t len,
                           uint8_t *out, Pkcs11Failure failure) {
    if (len == 0 || len % 16 != 0) {
        throw Pkcs11Error(Pkcs11Failure::other, CKR_OK, "AES-ECB input must be whole blocks");
    }
    CK_MECHANISM mech{CKM_AES_ECB, nullptr, 0};
    // PKCS#11 declares the input non-const but only reads it; in and out may be the same.
    CK_BYTE_PTR input = const_cast<CK_BYTE_PTR>(in);
    uint8_t block[16];
    const bool same = in == out && len == 16;  // modules may not allow overlapping buffers
    uint8_t *dest = same ? block : out;
    CK_ULONG out_len = static_cast<CK_ULONG>(len);
    CK_RV rv;
    if (encrypt) {
        check(fn_->C_EncryptInit(session_, &mech, key), failure, "C_EncryptInit (AES-ECB)");
        rv = fn_->C_Encrypt(session_, input, static_cast<CK_ULONG>(len), dest, &out_len);
    } else {
        check(fn_->C_DecryptInit(session_, &mech, key), failure, "C_DecryptInit (AES-ECB)");
        rv = fn_->C_Decrypt(session_, input, static_cast<CK_ULONG>(len), dest, &out_len);
    }
    if (same && rv == CKR_OK) std::memcpy(out, block, 16);
    secure_zero(block, sizeof block);
    check(rv, failure, encrypt ? "C_Encrypt (AES-ECB)" : "C_Decrypt (AES-ECB)");
    if (out_len != len) {
        throw Pkcs11Error(failure, CKR_OK,
                          "AES-ECB returned " + std::to_string(out_len) + " bytes instead of " +
                              std::to_string(len));
    }
}

bool Pkcs11Client::session_alive() noexcept {
    if (fn_ == nullptr || session_ == CK_INVALID_HANDLE) return false;
    CK_SESSION_INFO info{};
    return fn_->C_GetSessionInfo(session_, &info) == CKR_OK;
}

}  // namespace envelope
