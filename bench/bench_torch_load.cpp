// bench/bench_torch_load.cpp — time io::torch::load_state_dict (+ float32 copies) on a big file.
//   INSPIRE_TORCH_BENCH_FILE=/tmp/wt103_like_legacy.pth OMP_NUM_THREADS=1 ./bench_torch_load
// (make the file as described in docs/torch-reader.md). Without the variable it times the small
// committed fixture tests/fixtures/torch/lm_legacy.pt.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <string>

#include "io/torch_file.h"

namespace {

std::string bench_file() {
  const char* p = std::getenv("INSPIRE_TORCH_BENCH_FILE");
  return p ? p : INSPIRE_SOURCE_DIR "/tests/fixtures/torch/lm_legacy.pt";
}

void BM_LoadStateDict(benchmark::State& state) {
  std::string path = bench_file();
  for (auto _ : state) {
    auto sd = io::torch::load_state_dict(path);
    benchmark::DoNotOptimize(sd.entries.data());
  }
  state.SetLabel(path);
}
BENCHMARK(BM_LoadStateDict)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_LoadAndCopyToFloat32(benchmark::State& state) {
  std::string path = bench_file();
  std::int64_t n = 0;
  for (auto _ : state) {
    auto sd = io::torch::load_state_dict(path);
    for (const auto& [k, t] : sd) {
      auto v = t.to_float32();
      n += static_cast<std::int64_t>(v.size());
      benchmark::DoNotOptimize(v.data());
    }
  }
  state.SetItemsProcessed(n);
  state.SetLabel(path);
}
BENCHMARK(BM_LoadAndCopyToFloat32)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
