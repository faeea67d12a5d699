// bench/bench_lm.cpp — the LM pieces at V = 60000 (Google Benchmark).
//
//   lm_softmax_ce/V60000xE400/n<rows>   fused tied decoder + softmax-CE, forward + backward
//                                      (nn/loss.h)
//   lm_train_step/V60000/b<bs>x<bptt>   one AWD-LSTM (400/1152/3) LM training step: forward,
//                                      backward (everything unfrozen), Adam step (nn/optim.h)
//   lm_train_step_stage1/V60000/b<bs>x<bptt> the same with only the embedding/decoder group
//                                      trainable (LM stage 1: LSTM dW GEMMs skipped)
//   lm_train_step/V60000/b8x70/rows    the step with the LSTM's small-batch unit-sliced path off
//                                      (set_lstm_unit_slice_max_rows(0): threads split the rows)
// Batch 8 × bptt 70 keeps one iteration to a few seconds on one core; per-token cost is flat in
// the batch size to first order. Counters: "tok/s" = positions per second; for the training
// steps (after one untimed warm-up step) "minflt/step" = minor page faults and "sys_ms/step" =
// system CPU time per step (getrusage; a step that allocates and frees big buffers faults them
// in again every time).
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <memory>
#include <string>

#include "nn/lstm.h"
#include "nn/loss.h"
#include "nn/optim.h"
#include "nn/rng.h"
#include "ulmfit/awd_lstm.h"

using namespace nn;
using namespace ulmfit;

namespace {

constexpr Index kV = 60000, kE = 400;

// Minor page faults and system CPU time of the process so far (getrusage).
struct Usage {
  long minflt;
  double sys_s;
};
Usage usage() {
  rusage r{};
  getrusage(RUSAGE_SELF, &r);
  return {r.ru_minflt, (double)r.ru_stime.tv_sec + 1e-6 * (double)r.ru_stime.tv_usec};
}

void softmax_ce(benchmark::State& st, Index rows) {
  Rng rng(1);
  Tensor<float> hid{rows, kE}, W{kV, kE}, b{kV}, dh{rows, kE}, dW{kV, kE}, db{kV};
  Tensor<std::int32_t> tgt{rows};
  for (auto& v : hid.view()) v = (float)rng.uniform(-1, 1);
  for (auto& v : W.view()) v = (float)rng.uniform(-0.1, 0.1);
  for (auto& v : tgt.view()) v = (std::int32_t)rng.below(kV);
  const Index chunk = 256;
  Tensor<float> ws{chunk * kV};
  for (auto _ : st) {
    auto r = lm_softmax_ce_forward_backward<float>(hid, W, b, tgt, dh, dW, db, ws, chunk);
    benchmark::DoNotOptimize(r.loss);
  }
  st.counters["tok/s"] = benchmark::Counter((double)rows, benchmark::Counter::kIsIterationInvariantRate);
}

void train_step(benchmark::State& st, Index bs, Index bptt, bool stage1, bool rows = false) {
  const Index saved_rows = lstm_unit_slice_max_rows();
  if (rows) set_lstm_unit_slice_max_rows(0);
  auto lm = std::make_unique<AwdLstmLM>(ModelConfig::lm(kV));
  Rng rng(1);
  lm->init(rng);
  if (stage1) lm->encoder().set_trainable(true, {false, false, false});
  auto params = lm_params(*lm);
  AdamHyper hp;
  hp.lr = 1e-3, hp.wd = 1e-7, hp.mom = 0.8;
  Adam opt(params, 4, hp);
  if (stage1) opt.freeze_to(3);
  Tensor<TokenId> ids{bs, bptt}, tgt{bs, bptt};
  AwdLstmCache<float> cache;
  ForwardOptions fo{true, &rng, false};
  auto step = [&] {
    double loss = lm->train_step(ids, tgt, cache, fo);
    opt.step();
    opt.zero_grad();
    benchmark::DoNotOptimize(loss);
  };
  // One untimed step first: it sizes every cache and touches every page (as the first step of a
  // training run does); the timed steps are the steady state.
  for (auto& v : ids.view()) v = (TokenId)rng.below(kV);
  for (auto& v : tgt.view()) v = (TokenId)rng.below(kV);
  step();
  const Usage u0 = usage();
  for (auto _ : st) {
    st.PauseTiming();
    for (auto& v : ids.view()) v = (TokenId)rng.below(kV);
    for (auto& v : tgt.view()) v = (TokenId)rng.below(kV);
    st.ResumeTiming();
    step();
  }
  const Usage u1 = usage();
  const double n = (double)st.iterations();
  st.counters["tok/s"] = benchmark::Counter((double)bs * bptt, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["minflt/step"] = (double)(u1.minflt - u0.minflt) / n;
  st.counters["sys_ms/step"] = (u1.sys_s - u0.sys_s) * 1e3 / n;
  set_lstm_unit_slice_max_rows(saved_rows);
}

int reg = [] {
  benchmark::RegisterBenchmark("lm_softmax_ce/V60000xE400/n560",
                               [](benchmark::State& s) { softmax_ce(s, 560); })
      ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.5);
  benchmark::RegisterBenchmark("lm_train_step/V60000/b8x70",
                               [](benchmark::State& s) { train_step(s, 8, 70, false); })
      ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.5);
  benchmark::RegisterBenchmark("lm_train_step/V60000/b8x70/rows",
                               [](benchmark::State& s) { train_step(s, 8, 70, false, true); })
      ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.5);
  benchmark::RegisterBenchmark("lm_train_step_stage1/V60000/b8x70",
                               [](benchmark::State& s) { train_step(s, 8, 70, true); })
      ->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(0.5);
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
