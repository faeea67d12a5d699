// bench/bench_peak.cpp — this core's arithmetic ceiling, with no memory traffic: 24 independent
// accumulators updated in registers (enough to hide the FMA latency on two ports).
//
//   peak/fp32_fma      AVX-512 FMA (vfmadd231ps): 16 lanes x 2 FLOP per instruction
//   peak/bf16_dot      AVX512-BF16 (vdpbf16ps): 16 lanes x 2 bf16 products x 2 FLOP, fp32 sums
//
// The GFLOP/s counter is the ceiling a GEMM kernel of that kind could approach; issue #21 asks
// whether bf16 would lift the training and batched-serving targets above the fp32 ceiling. A case
// is skipped (state.SkipWithError) on a CPU without the instructions. Run with OMP_NUM_THREADS=1.
#include <benchmark/benchmark.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace {

#if defined(__x86_64__)
// GCC 12 warns of the _mm512_undefined_* inside _mm512_reduce_add_ps under a target attribute.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
constexpr int kAcc = 24;
constexpr long kIters = 1 << 20;

__attribute__((target("avx512f"))) float fp32_fma_loop() {
  __m512 acc[kAcc];
  for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.0001f);
  for (long it = 0; it < kIters; ++it) {
#pragma GCC unroll 32
    for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  __m512 s = acc[0];
  for (int i = 1; i < kAcc; ++i) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx512f,avx512bf16"))) float bf16_dot_loop() {
  __m512 acc[kAcc];
  for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80);  // bf16 1.0
  const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3800);  // bf16 2^-15
  for (long it = 0; it < kIters; ++it) {
#pragma GCC unroll 32
    for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  }
  __m512 s = acc[0];
  for (int i = 1; i < kAcc; ++i) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

void run(benchmark::State& st, bool have, float (*loop)(), double flop_per_lane_op) {
  if (!have) {
    st.SkipWithError("this CPU lacks the instructions");
    return;
  }
  for (auto _ : st) benchmark::DoNotOptimize(loop());
  const double flop = (double)kIters * kAcc * 16 * flop_per_lane_op;
  st.counters["GFLOP/s"] = benchmark::Counter(flop / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

void peak_fp32(benchmark::State& st) {
  run(st, __builtin_cpu_supports("avx512f"), fp32_fma_loop, 2.0);
}
void peak_bf16(benchmark::State& st) {
  run(st, __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16"), bf16_dot_loop,
      4.0);
}
#endif

}  // namespace

#if defined(__x86_64__)
BENCHMARK(peak_fp32)->Name("peak/fp32_fma")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(peak_bf16)->Name("peak/bf16_dot")->Unit(benchmark::kMillisecond)->UseRealTime();
#endif

BENCHMARK_MAIN();
