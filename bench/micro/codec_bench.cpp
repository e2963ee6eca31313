// Cost of the codec hot path: envelope seal/open, nonce draws and the key check value.
#include "envelope_format.hpp"
#include "hkdf.hpp"
#include "nonce_source.hpp"
#include "wipe.hpp"

#include <benchmark/benchmark.h>
#include <openssl/rand.h>

#include <cstdint>
#include <cstdlib>
#include <vector>

namespace {

using namespace envelope;

constexpr unsigned kPadBlock = 16;

struct Fixture {
    AesGcmKey key;
    DekId dek{};
    Fixture() {
        uint8_t k[kAesKeySize];
        for (size_t i = 0; i < kAesKeySize; ++i) k[i] = static_cast<uint8_t>(i);
        if (!key.init(k)) std::abort();
        for (size_t i = 0; i < kDekIdSize; ++i) dek[i] = static_cast<uint8_t>(0x10 + i);
    }
};

void BM_SealEnvelope(benchmark::State &state) {
    Fixture f;
    std::vector<uint8_t> pt(static_cast<size_t>(state.range(0)), 0x61);
    std::vector<uint8_t> out(sealed_size(pt.size(), kPadBlock));
    const ByteView ctx("public.t.c", 10);
    for (auto _ : state) {
        EnvelopeStatus st =
            seal_envelope(f.key, f.dek, ByteView(pt.data(), pt.size()), ctx, kPadBlock, out.data());
        if (st != EnvelopeStatus::ok) state.SkipWithError("seal failed");
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_SealEnvelope)->Arg(32)->Arg(1024)->Arg(int64_t{64} * 1024);

void BM_OpenEnvelope(benchmark::State &state) {
    Fixture f;
    std::vector<uint8_t> pt(static_cast<size_t>(state.range(0)), 0x61);
    std::vector<uint8_t> sealed(sealed_size(pt.size(), kPadBlock));
    const ByteView ctx("public.t.c", 10);
    if (seal_envelope(f.key, f.dek, ByteView(pt.data(), pt.size()), ctx, kPadBlock,
                      sealed.data()) != EnvelopeStatus::ok) {
        state.SkipWithError("seal failed");
        return;
    }
    std::vector<uint8_t> out(sealed.size() - kEnvelopeOverhead);
    for (auto _ : state) {
        size_t len = 0;
        EnvelopeStatus st =
            open_envelope(f.key, ByteView(sealed.data(), sealed.size()), ctx, out.data(), &len);
        if (st != EnvelopeStatus::ok) state.SkipWithError("open failed");
        benchmark::DoNotOptimize(len);
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_OpenEnvelope)->Arg(32)->Arg(1024)->Arg(int64_t{64} * 1024);

// One AES-256-GCM open per engine and size (the crossover that sets kNettleLimit).
// Args: size, engine (1 = nettle, 2 = libgcrypt).
void BM_GcmOpenEngine(benchmark::State &state) {
    Fixture f;
    const size_t n = static_cast<size_t>(state.range(0));
    const auto engine = static_cast<GcmEngine>(state.range(1));
    std::vector<uint8_t> pt(n, 0x61), ct(n), out(n);
    uint8_t nonce[kGcmNonceSize] = {1}, tag[kGcmTagSize];
    const uint8_t aad[27] = {2};
    if (!f.key.seal(nonce, {ByteView(aad, sizeof aad)}, {ByteView(pt.data(), n)}, ct.data(), tag,
                    engine)) {
        state.SkipWithError("seal failed");
        return;
    }
    for (auto _ : state) {
        if (!f.key.open(nonce, {ByteView(aad, sizeof aad)}, ByteView(ct.data(), n), tag, out.data(),
                        engine))
            state.SkipWithError("open failed");
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    state.SetLabel(engine == GcmEngine::nettle ? "nettle" : "libgcrypt");
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_GcmOpenEngine)
    ->ArgsProduct({{32, 48, 64, 96, 128, 256, 1040, 4096, 65536},
                   {static_cast<int64_t>(GcmEngine::nettle),
                    static_cast<int64_t>(GcmEngine::libgcrypt)}});

// The register wipe that follows every seal and open.
void BM_WipeVectorRegisters(benchmark::State &state) {
    for (auto _ : state) wipe_vector_registers();
}
BENCHMARK(BM_WipeVectorRegisters);

void BM_NonceSourceFill12(benchmark::State &state) {
    NonceSource &src = NonceSource::instance();
    uint8_t nonce[kGcmNonceSize];
    for (auto _ : state) {
        if (!src.fill(nonce, sizeof(nonce))) state.SkipWithError("fill failed");
        benchmark::DoNotOptimize(nonce);
    }
}
BENCHMARK(BM_NonceSourceFill12);

void BM_RandBytes12(benchmark::State &state) {
    uint8_t nonce[kGcmNonceSize];
    for (auto _ : state) {
        if (RAND_bytes(nonce, sizeof(nonce)) != 1) state.SkipWithError("RAND_bytes failed");
        benchmark::DoNotOptimize(nonce);
    }
}
BENCHMARK(BM_RandBytes12);

void BM_KeyCheckValue(benchmark::State &state) {
    uint8_t key[32] = {1, 2, 3};
    char kcv[17];
    for (auto _ : state) {
        if (!key_check_value(key, kcv)) state.SkipWithError("kcv failed");
        benchmark::DoNotOptimize(kcv);
    }
}
BENCHMARK(BM_KeyCheckValue);

}  // namespace
