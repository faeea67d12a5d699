// bench/bench_lstm.cpp — one LSTM layer at the AWD-LSTM sizes (Google Benchmark).
//
//   lstm_fwd/<in>x<h>/b<bs>x<sl>      training forward (fills the backward cache)
//   lstm_fwdbwd/<in>x<h>/b<bs>x<sl>   forward + backward (dX and all dW); b8x70: the LM step's three layers
//   lstm_infer/<in>x<h>/b<bs>x<sl>    serving path (no cache)
//   sgemm_peak/<n>                    C[n, n] += A[n, n]·B[n, n] through nn's threaded GEMM
//                                     (kernels::gemm_parallel): the measured GEMM peak of this
//                                     machine and thread count; counter "GFLOP/s"
// Run with OMP_NUM_THREADS=1 for per-core numbers; bench/compare.py runs the PyTorch peer too.
// Counter "tok/s" = bs·sl / time.
#include <benchmark/benchmark.h>

#include <string>

#include "nn/gemm_kernels.h"
#include "nn/lstm.h"
#include "nn/rng.h"

using namespace nn;

namespace {

struct Setup {
  Index in, h, bs, sl;
  Tensor<float> w_ih, w_hh, b_ih, b_hh, dw_ih, dw_hh, db_ih, db_hh, x, y, dy, dx, h0, c0;
  LstmCache<float> cache;
  Tensor<float> scratch;
  Setup(Index in_, Index h_, Index bs_, Index sl_)
      : in(in_), h(h_), bs(bs_), sl(sl_), w_ih{4 * h, in}, w_hh{4 * h, h}, b_ih{4 * h},
        b_hh{4 * h}, dw_ih{4 * h, in}, dw_hh{4 * h, h}, db_ih{4 * h}, db_hh{4 * h},
        x{bs, sl, in}, y{bs, sl, h}, dy{bs, sl, h}, dx{bs, sl, in}, h0{bs, h}, c0{bs, h} {
    Rng rng(1);
    float s = 1.0f / std::sqrt((float)h);
    for (auto* t : {&w_ih, &w_hh, &b_ih, &b_hh})
      for (auto& v : t->view()) v = (float)rng.uniform(-s, s);
    for (auto* t : {&x, &dy})
      for (auto& v : t->view()) v = (float)rng.uniform(-1, 1);
  }
  LstmParams<float> p() const { return {w_ih.view(), w_hh.view(), b_ih.view(), b_hh.view()}; }
  LstmGrads<float> g() { return {dw_ih.view(), dw_hh.view(), db_ih.view(), db_hh.view()}; }
};

void run(benchmark::State& st, int mode, Index in, Index h, Index bs, Index sl) {
  Setup s(in, h, bs, sl);
  auto once = [&] {
    if (mode == 2) {
      s.h0.view().zero(), s.c0.view().zero();
      lstm_infer<float>(s.p(), s.x, s.h0, s.c0, s.y, s.scratch);
    } else {
      lstm_forward<float>(s.p(), s.x, {}, {}, s.y, {}, {}, s.cache);
      if (mode == 1) lstm_backward<float>(s.p(), s.cache, s.dy, {}, {}, s.dx, {}, {}, s.g());
    }
  };
  // One untimed call first, as the PyTorch peer (tools/reference/bench_torch.py) and bench_lm do:
  // it sizes the cache and scratch, which a training run does once. At ~0.5 s per call the timed
  // loop runs once per repetition, and without this it timed the first touch of the cache's
  // pages (~10 % of a batch-64 forward on one thread).
  once();
  for (auto _ : st) {
    once();
    benchmark::DoNotOptimize(s.y.data());
    benchmark::ClobberMemory();
  }
  st.counters["tok/s"] = benchmark::Counter((double)bs * sl, benchmark::Counter::kIsIterationInvariantRate);
}

void sgemm_peak(benchmark::State& st, Index n) {
  Tensor<float> A{n, n}, B{n, n}, C{n, n};
  Rng rng(2);
  for (auto* t : {&A, &B})
    for (auto& v : t->view()) v = (float)rng.uniform(-1, 1);
  kernels::gemm_parallel<float>(false, false, n, n, n, 1.f, A.data(), n, B.data(), n, 0.f, C.data(), n);
  for (auto _ : st) {
    kernels::gemm_parallel<float>(false, false, n, n, n, 1.f, A.data(), n, B.data(), n, 0.f, C.data(), n);
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * n * n * n * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

int reg = [] {
  benchmark::RegisterBenchmark("sgemm_peak/2048", [](benchmark::State& st) { sgemm_peak(st, 2048); })
      ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.5);
  const char* modes[] = {"lstm_fwd", "lstm_fwdbwd", "lstm_infer"};
  struct Case { Index in, h, bs, sl; };
  const Case cases[] = {{400, 1152, 64, 70}, {1152, 1152, 64, 70}, {400, 1152, 8, 70},
                        {1152, 1152, 8, 70}, {1152, 400, 8, 70}, {400, 1152, 1, 250},
                        {1152, 1152, 1, 250}};
  for (int m = 0; m < 3; ++m)
    for (auto c : cases) {
      if (m == 2 && c.bs != 1) continue;  // serving is batch 1
      if (m == 0 && c.bs == 8) continue;  // b8: the LM step's shape, forward + backward only
      std::string name = std::string(modes[m]) + "/" + std::to_string(c.in) + "x" +
                         std::to_string(c.h) + "/b" + std::to_string(c.bs) + "x" +
                         std::to_string(c.sl);
      benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) {
        run(st, m, c.in, c.h, c.bs, c.sl);
      })->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.5);
    }
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
