// tests/tiny_bundle.h — the tiny random-weight classifier of
// tests/fixtures/classifier_api/tiny_classifier_golden.json (written by
// tools/reference/gen_classifier_api_goldens.py from a real fastai 2.7 model) turned into a
// model bundle with io::write_bundle. Used by the Classifier API and CLI tests.
#pragma once

#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/bundle.h"

namespace tiny {

inline const char* kGolden =
    INSPIRE_SOURCE_DIR "/tests/fixtures/classifier_api/tiny_classifier_golden.json";

inline const nlohmann::json& golden() {
  static const nlohmann::json g = [] {
    std::ifstream f(kGolden);
    if (!f) throw std::runtime_error(std::string("cannot open ") + kGolden);
    return nlohmann::json::parse(f);
  }();
  return g;
}

inline io::ModelConfig config() {
  const auto& c = golden()["config"];
  auto cfg = io::ModelConfig::classifier(c["vocab_size"].get<std::int64_t>());
  cfg.emb_sz = c["emb_sz"];
  cfg.n_hid = c["n_hid"];
  cfg.n_layers = c["n_layers"];
  cfg.lin_ftrs = c["lin_ftrs"].get<std::vector<std::int64_t>>();
  cfg.n_classes = c["n_classes"];
  return cfg;
}

// Writes the bundle to `path` (kind "classifier" unless `kind` says otherwise).
inline void write(const std::string& path) {
  const auto& g = golden();
  io::BundleContents b;
  b.config = config();
  b.vocab = g["vocab"].get<std::vector<std::string>>();
  b.labels = g["labels"].get<std::vector<std::string>>();
  b.temperature = g["temperature"].get<double>();
  b.provenance = "tests/tiny_bundle.h from tiny_classifier_golden.json";
  std::vector<std::vector<float>> f32;
  std::vector<std::vector<std::int64_t>> i64;
  f32.reserve(64);
  i64.reserve(64);
  for (const auto& e : io::expected_tensors(b.config)) {
    if (!e.alias_of.empty()) continue;
    auto it = g["tensors"].find(e.name);
    if (it == g["tensors"].end()) {
      if (e.required) throw std::runtime_error("golden fixture lacks tensor " + e.name);
      continue;
    }
    io::TensorOut t;
    t.name = e.name;
    t.shape = (*it)["shape"].get<std::vector<std::int64_t>>();
    if (e.is_i64) {
      i64.push_back((*it)["data"].get<std::vector<std::int64_t>>());
      t.dtype = io::DType::I64;
      t.data = i64.back().data();
    } else {
      f32.push_back((*it)["data"].get<std::vector<float>>());
      t.dtype = io::DType::F32;
      t.data = f32.back().data();
    }
    b.tensors.push_back(t);
  }
  io::write_bundle(path, b);
}

}  // namespace tiny
