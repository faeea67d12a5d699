// bench/bench_tokenizer.cpp — ulmfit::tokenize throughput on HEP abstracts (one thread).
//
// Documents: the first 2,000 records of shared/data/unlabeled/hep_abstracts_unlabeled.jsonl,
// as title + " <ENDTITLE> " + abstract (what the classifier sees). items_per_second = docs/s.
// The fastai peer on the same documents: tools/reference/bench_tokenizer_fastai.py.
#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "ulmfit/tokenizer.h"

namespace {

const std::vector<std::string>& hep_docs() {
  static const std::vector<std::string> docs = [] {
    const std::string path = INSPIRE_SOURCE_DIR "/../shared/data/unlabeled/hep_abstracts_unlabeled.jsonl";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    std::vector<std::string> out;
    std::string line;
    while (out.size() < 2000 && std::getline(in, line)) {
      auto j = nlohmann::json::parse(line);
      out.push_back(j.at("title").get<std::string>() + " <ENDTITLE> " + j.at("abstract").get<std::string>());
    }
    return out;
  }();
  return docs;
}

void BM_TokenizeHep(benchmark::State& state) {
  const auto& docs = hep_docs();
  const auto mode = state.range(0) ? ulmfit::TokenizeMode::Train : ulmfit::TokenizeMode::Predict;
  std::size_t bytes = 0, tokens = 0;
  for (auto _ : state) {
    for (const auto& d : docs) {
      auto t = ulmfit::tokenize(d, mode);
      tokens += t.size();
      bytes += d.size();
      benchmark::DoNotOptimize(t.data());
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * docs.size()));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.counters["tokens_per_doc"] = double(tokens) / double(state.iterations() * docs.size());
}
BENCHMARK(BM_TokenizeHep)->Arg(0)->Arg(1)->ArgName("train")->Unit(benchmark::kMillisecond);

void BM_RulesOnly(benchmark::State& state) {
  const auto& docs = hep_docs();
  for (auto _ : state)
    for (const auto& d : docs) benchmark::DoNotOptimize(ulmfit::apply_fastai_rules(d));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * docs.size()));
}
BENCHMARK(BM_RulesOnly)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
