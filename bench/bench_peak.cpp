// bench/bench_peak.cpp — this core's arithmetic ceiling, with no memory traffic: 24 independent
// accumulators updated in registers (enough to hide the FMA latency on two ports).
//
//   peak/fp32_fma      AVX-512 FMA (vfmadd231ps): 16 lanes x 2 FLOP per instruction
//   peak/bf16_dot      AVX512-BF16 (vdpbf16ps): 16 lanes x 2 bf16 products x 2 FLOP, fp32 sums
//   peak/int8_dot      AVX512-VNNI (vpdpbusd): 16 lanes x 4 uint8·int8 products x 2 ops, int32
//                      sums (the --w8a8 serving kernels; the counter counts these integer ops)
//   peak/read/<MB>     one thread summing a buffer of that size, over and over (AVX-512 loads):
//                      the rate at which this core reads from L2 (1 MB), L3 (11 MB: one fp16
//                      W_hh; 21 MB: one float32 W_hh) or memory (45 MB: all of float32 W_hh).
//                      Batch-1 serving streams W_hh at every step, so this bounds it.
//
// The GFLOP/s counter is the ceiling a GEMM kernel of that kind could approach; issue #21 asks
// whether bf16 would lift the training and batched-serving targets above the fp32 ceiling. A case
// is skipped (state.SkipWithError) on a CPU without the instructions. Run with OMP_NUM_THREADS=1.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace {

#if defined(__x86_64__)
// GCC 12 warns of the _mm512_undefined_* inside _mm512_reduce_add_ps under a target attribute.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
constexpr int kAcc = 24;

// 64-byte aligned storage for the read case (aligned loads).
struct AlignedAlloc {
  using value_type = float;
  AlignedAlloc() = default;
  template <class U>
  AlignedAlloc(const U&) {}
  float* allocate(std::size_t n) {
    void* p = std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!p) throw std::bad_alloc();
    return static_cast<float*>(p);
  }
  void deallocate(float* p, std::size_t) { std::free(p); }
  template <class U>
  struct rebind {
    using other = AlignedAlloc;
  };
  bool operator==(const AlignedAlloc&) const { return true; }
  bool operator!=(const AlignedAlloc&) const { return false; }
};
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

// 12 accumulators (enough for 2 per cycle at a latency of 5; with 24, GCC 12 kept them on the
// stack, a store per vpdpbusd). The sums leave through memory and are added up in plain code.
constexpr int kAcc8 = 12;
__attribute__((target("avx512f,avx512vnni"), noinline)) void int8_dot_run(std::int32_t* out) {
  __m512i acc[kAcc8];
  for (int i = 0; i < kAcc8; ++i) acc[i] = _mm512_set1_epi32(i);
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  for (long it = 0; it < kIters; ++it) {
#pragma GCC unroll 32
    for (int i = 0; i < kAcc8; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
  }
#pragma GCC unroll 32
  for (int i = 0; i < kAcc8; ++i) _mm512_storeu_si512(out + 16 * i, acc[i]);
}

float int8_dot_loop() {
  std::int32_t out[kAcc8 * 16];
  int8_dot_run(out);
  std::int64_t s = 0;
  for (std::int32_t v : out) s += v;
  return (float)s;
}

// Sums n floats (n a multiple of 64) with four independent accumulators.
__attribute__((target("avx512f"))) float read_sum(const float* a, std::size_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (std::size_t i = 0; i < n; i += 64) {
    s0 = _mm512_add_ps(s0, _mm512_load_ps(a + i));
    s1 = _mm512_add_ps(s1, _mm512_load_ps(a + i + 16));
    s2 = _mm512_add_ps(s2, _mm512_load_ps(a + i + 32));
    s3 = _mm512_add_ps(s3, _mm512_load_ps(a + i + 48));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

void peak_read(benchmark::State& st) {
  if (!__builtin_cpu_supports("avx512f")) {
    st.SkipWithError("this CPU lacks AVX-512");
    return;
  }
  const std::size_t n = static_cast<std::size_t>(st.range(0)) * (1 << 20) / sizeof(float);
  std::vector<float, AlignedAlloc> buf(n, 1e-6f);
  benchmark::DoNotOptimize(read_sum(buf.data(), n));  // warm: in cache where it fits
  for (auto _ : st) benchmark::DoNotOptimize(read_sum(buf.data(), n));
  st.counters["GB/s"] = benchmark::Counter((double)n * sizeof(float) / 1e9,
                                           benchmark::Counter::kIsIterationInvariantRate);
}

void run(benchmark::State& st, bool have, float (*loop)(), double flop_per_lane_op,
         int acc = kAcc) {
  if (!have) {
    st.SkipWithError("this CPU lacks the instructions");
    return;
  }
  for (auto _ : st) {
    // The loops are pure functions of constants: without an opaque pointer GCC may hoist the
    // call out of this loop (it did once this file grew), timing nothing.
    float (*f)() = loop;
    benchmark::DoNotOptimize(f);
    benchmark::DoNotOptimize(f());
  }
  const double flop = (double)kIters * acc * 16 * flop_per_lane_op;
  st.counters["GFLOP/s"] = benchmark::Counter(flop / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

void peak_fp32(benchmark::State& st) {
  run(st, __builtin_cpu_supports("avx512f"), fp32_fma_loop, 2.0);
}
void peak_bf16(benchmark::State& st) {
  run(st, __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16"), bf16_dot_loop,
      4.0);
}
void peak_int8(benchmark::State& st) {
  run(st, __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni"), int8_dot_loop,
      8.0, kAcc8);
}
#endif

}  // namespace

#if defined(__x86_64__)
BENCHMARK(peak_fp32)->Name("peak/fp32_fma")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(peak_bf16)->Name("peak/bf16_dot")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(peak_int8)->Name("peak/int8_dot")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(peak_read)->Name("peak/read")->Arg(1)->Arg(11)->Arg(21)->Arg(45)->Unit(benchmark::kMillisecond)->UseRealTime();
#endif

BENCHMARK_MAIN();
