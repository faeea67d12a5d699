// bench/bench_predict.cpp — serving: the INSPIRE classifier (AWD-LSTM 400/1152/3, V=60008,
// head 1200→50→3) in eval mode, random weights (the time does not depend on their values).
//
//   predict_doc/V60008/t250      one document of 250 tokens: latency (batch of one, no padding,
//                                as the original's learn.predict and our predict-coreness)
//   predict_doc/V60008/t250/fp16 the same with half-precision recurrent weights (--fp16,
//                                LoadOptions::half_recurrent); compare.py sets it against the
//                                peer's float32 predict_doc
//   predict_doc/V60008/t250/int8 the same with int8 recurrent weights (--int8)
//   predict_doc/V60008/t250/w8a8 the same with int8 LSTM weights and activations (--w8a8,
//                                AVX512-VNNI; skipped with an error elsewhere)
//   predict_batch/V60008/16xt250 16 such documents: throughput (infer_batch, one by one)
//   predict_batch/V60008/32xt250/padded  32 documents of 200-300 tokens padded into one batch
//                                (infer_batch_padded, predict --batch 32): bulk throughput
//   predict_batch/V60008/32xt250/padded/w8a8  the same in w8a8 (predict --batch 32 --w8a8)
// Run with OMP_NUM_THREADS=1; bench/compare.py times the fastai peer with the same names.
// Tokenization is not included (bench_tokenizer measures it; it is ~0.1 ms per abstract).
#include <benchmark/benchmark.h>

#include "nn/gemm_kernels.h"
#include "nn/lstm.h"

#include <vector>

#include "nn/rng.h"
#include "ulmfit/classifier_model.h"

using namespace ulmfit;

namespace {

const ClassifierModel& model() {
  static ClassifierModel m = [] {
    ClassifierModel mm(ModelConfig::classifier(60008));
    nn::Rng rng(1);
    mm.init(rng);
    return mm;
  }();
  return m;
}

template <RecurrentPrecision P>
const ClassifierModel& model_lowp() {
  static ClassifierModel m = [] {
    ClassifierModel mm(ModelConfig::classifier(60008));
    nn::Rng rng(1);
    mm.init(rng);
    mm.set_recurrent_precision(P);
    return mm;
  }();
  return m;
}

std::vector<TokenId> doc(int len, std::uint64_t seed) {
  nn::Rng rng(seed);
  std::vector<TokenId> d{2};
  for (int i = 1; i < len; ++i) d.push_back(9 + (TokenId)rng.below(60000 - 9));
  return d;
}

void predict_doc(benchmark::State& st) {
  const auto& m = model();
  auto d = doc(250, 7);
  for (auto _ : st) benchmark::DoNotOptimize(m.infer(d));
  st.counters["docs/s"] = benchmark::Counter(1, benchmark::Counter::kIsIterationInvariantRate);
}

template <RecurrentPrecision P>
void predict_doc_lowp(benchmark::State& st) {
  if (P == RecurrentPrecision::w8a8 && !nn::kernels::vnni_usable()) {
    st.SkipWithError("no AVX512-VNNI on this CPU");
    return;
  }
  const auto& m = model_lowp<P>();
  auto d = doc(250, 7);
  for (auto _ : st) benchmark::DoNotOptimize(m.infer(d));
  st.counters["docs/s"] = benchmark::Counter(1, benchmark::Counter::kIsIterationInvariantRate);
}

void predict_batch(benchmark::State& st) {
  const auto& m = model();
  std::vector<std::vector<TokenId>> docs;
  for (int i = 0; i < 16; ++i) docs.push_back(doc(250, 100 + i));
  nn::Tensor<float> logits({16, 3});
  for (auto _ : st) {
    m.infer_batch(docs, logits.view());
    benchmark::DoNotOptimize(logits.data());
  }
  st.counters["docs/s"] = benchmark::Counter(16, benchmark::Counter::kIsIterationInvariantRate);
}

// group: papers per padded batch; slice_rows: nn::set_lstm_unit_slice_max_rows for the run
// (batches up to that many rows share each LSTM step by hidden units).
void predict_batch_padded(benchmark::State& st, int group, nn::Index slice_rows, bool w8a8 = false) {
  if (w8a8 && !nn::kernels::vnni_usable()) {
    st.SkipWithError("no AVX512-VNNI on this CPU");
    return;
  }
  const nn::Index saved_rows = nn::lstm_unit_slice_max_rows();
  nn::set_lstm_unit_slice_max_rows(slice_rows);
  const auto& m = w8a8 ? model_lowp<RecurrentPrecision::w8a8>() : model();
  std::vector<std::vector<TokenId>> docs;
  nn::Rng rng(5);
  for (int i = 0; i < 32; ++i) docs.push_back(doc(200 + (int)rng.below(101), 200 + i));
  nn::Tensor<float> logits({32, 3});
  for (auto _ : st) {
    m.infer_batch_padded(docs, logits.view(), group);
    benchmark::DoNotOptimize(logits.data());
  }
  st.counters["docs/s"] = benchmark::Counter(32, benchmark::Counter::kIsIterationInvariantRate);
  nn::set_lstm_unit_slice_max_rows(saved_rows);
}

}  // namespace

BENCHMARK(predict_doc)->Name("predict_doc/V60008/t250")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(predict_doc_lowp<RecurrentPrecision::f16>)->Name("predict_doc/V60008/t250/fp16")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(predict_doc_lowp<RecurrentPrecision::i8>)->Name("predict_doc/V60008/t250/int8")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(predict_doc_lowp<RecurrentPrecision::w8a8>)->Name("predict_doc/V60008/t250/w8a8")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(predict_batch)->Name("predict_batch/V60008/16xt250")->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_CAPTURE(predict_batch_padded, rows, 32, 0)->Name("predict_batch/V60008/32xt250/padded")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(predict_batch_padded, sliced, 32, 32)->Name("predict_batch/V60008/32xt250/padded/sliced")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(predict_batch_padded, w8a8, 32, 32, true)->Name("predict_batch/V60008/32xt250/padded/w8a8")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(predict_batch_padded, g16, 16, 16)->Name("predict_batch/V60008/32xt250/padded16/sliced")->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
