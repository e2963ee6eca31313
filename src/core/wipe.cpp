// Wiping through OPENSSL_cleanse, which the compiler cannot elide; vector registers with
// explicit instructions (AES-NI code keeps round keys in them).
#include "wipe.hpp"

#include <openssl/crypto.h>

namespace envelope {

void secure_zero(void *p, size_t n) noexcept {
    if (p != nullptr && n > 0) OPENSSL_cleanse(p, n);
}

#if defined(__x86_64__)

namespace {

#define ENVELOPE_XMM_CLOBBERS                                                                \
    "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"

__attribute__((noinline)) void clear_sse() noexcept {
    asm volatile(
        "pxor %%xmm0, %%xmm0\n\tpxor %%xmm1, %%xmm1\n\tpxor %%xmm2, %%xmm2\n\t"
        "pxor %%xmm3, %%xmm3\n\tpxor %%xmm4, %%xmm4\n\tpxor %%xmm5, %%xmm5\n\t"
        "pxor %%xmm6, %%xmm6\n\tpxor %%xmm7, %%xmm7\n\tpxor %%xmm8, %%xmm8\n\t"
        "pxor %%xmm9, %%xmm9\n\tpxor %%xmm10, %%xmm10\n\tpxor %%xmm11, %%xmm11\n\t"
        "pxor %%xmm12, %%xmm12\n\tpxor %%xmm13, %%xmm13\n\tpxor %%xmm14, %%xmm14\n\t"
        "pxor %%xmm15, %%xmm15" ::
            : ENVELOPE_XMM_CLOBBERS);
}

__attribute__((noinline, target("avx"))) void clear_avx() noexcept {
    asm volatile("vzeroall" ::: ENVELOPE_XMM_CLOBBERS);  // ymm0-15 (zmm0-15 whole)
}

__attribute__((noinline, target("avx512f"))) void clear_avx512() noexcept {
    asm volatile(
        "vzeroall\n\t"
        "vpxord %%zmm16, %%zmm16, %%zmm16\n\tvpxord %%zmm17, %%zmm17, %%zmm17\n\t"
        "vpxord %%zmm18, %%zmm18, %%zmm18\n\tvpxord %%zmm19, %%zmm19, %%zmm19\n\t"
        "vpxord %%zmm20, %%zmm20, %%zmm20\n\tvpxord %%zmm21, %%zmm21, %%zmm21\n\t"
        "vpxord %%zmm22, %%zmm22, %%zmm22\n\tvpxord %%zmm23, %%zmm23, %%zmm23\n\t"
        "vpxord %%zmm24, %%zmm24, %%zmm24\n\tvpxord %%zmm25, %%zmm25, %%zmm25\n\t"
        "vpxord %%zmm26, %%zmm26, %%zmm26\n\tvpxord %%zmm27, %%zmm27, %%zmm27\n\t"
        "vpxord %%zmm28, %%zmm28, %%zmm28\n\tvpxord %%zmm29, %%zmm29, %%zmm29\n\t"
        "vpxord %%zmm30, %%zmm30, %%zmm30\n\tvpxord %%zmm31, %%zmm31, %%zmm31" ::
            : ENVELOPE_XMM_CLOBBERS, "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22",
              "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31");
}

enum class VectorIsa { unknown, sse, avx, avx512 };

VectorIsa detect() noexcept {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return VectorIsa::avx512;
    if (__builtin_cpu_supports("avx")) return VectorIsa::avx;
    return VectorIsa::sse;
}

}  // namespace

void wipe_vector_registers() noexcept {
    static const VectorIsa isa = detect();
    switch (isa) {
        case VectorIsa::avx512:
            clear_avx512();
            break;
        case VectorIsa::avx:
            clear_avx();
            break;
        default:
            clear_sse();
            break;
    }
}

#else

void wipe_vector_registers() noexcept {}

#endif

}  // namespace envelope
