// The single entry point for every micro-benchmark file in bench/micro.
#include <benchmark/benchmark.h>

BENCHMARK_MAIN();
