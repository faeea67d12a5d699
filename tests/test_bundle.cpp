// ctest-labels: unit
// tests/test_bundle.cpp — io/bundle.h: config, expected tensors, write/load, validation errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "io/bundle.h"
#include "io/errors.h"

namespace {

using io::Bundle;
using io::BundleContents;
using io::ModelConfig;
using io::TensorOut;

std::string tmp_path(const std::string& name) {
  return ::testing::TempDir() + "bundle_" + std::to_string(::getpid()) + "_" + name;
}

ModelConfig small(const std::string& kind) {
  ModelConfig c = kind == "classifier" ? ModelConfig::classifier(10)
                                       : ModelConfig::lm(10);
  c.kind = kind;
  c.emb_sz = 4;
  c.n_hid = 6;
  c.n_layers = 3;
  c.lin_ftrs = {5};
  return c;
}

std::vector<std::string> vocab(std::int64_t n) {
  std::vector<std::string> v = {"xxunk", "xxpad", "xxbos", "xxeos"};
  while ((std::int64_t)v.size() < n) v.push_back("tok" + std::to_string(v.size()));
  v.resize(n);
  return v;
}

// Holds the data of a model's tensors (random values) and builds BundleContents.
struct Model {
  ModelConfig cfg;
  std::map<std::string, std::vector<float>> data;
  std::int64_t nbt = 7;
  BundleContents contents;

  explicit Model(ModelConfig c, bool include_aliases = false) : cfg(c) {
    std::mt19937 rng(42);
    std::uniform_real_distribution<float> u(-1, 1);
    contents.config = cfg;
    contents.vocab = vocab(cfg.vocab_size);
    if (cfg.kind == "classifier") contents.labels = {"rejected", "non_core", "core"};
    contents.temperature = 0.25;
    contents.provenance = "unit test";
    for (auto& e : io::expected_tensors(cfg)) {
      if (e.is_i64) {
        contents.tensors.push_back(TensorOut{e.name, io::DType::I64, {}, &nbt});
        continue;
      }
      if (!e.alias_of.empty()) {
        if (!include_aliases) continue;
        auto& src = data.at(e.alias_of);
        contents.tensors.push_back(TensorOut::f32(e.name, nn::CView<float>(src.data(), e.shape)));
        continue;
      }
      auto& v = data[e.name];
      v.resize(e.shape.numel());
      for (auto& x : v) x = u(rng);
      contents.tensors.push_back(TensorOut::f32(e.name, nn::CView<float>(v.data(), e.shape)));
    }
  }
};

void expect_bundle_error(const BundleContents& c, const char* needle) {
  try {
    io::serialize_bundle(c);
    FAIL() << "accepted; expected error with: " << needle;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

void expect_load_error(const std::string& bytes, std::initializer_list<const char*> needles) {
  try {
    Bundle::from_memory(bytes.data(), bytes.size(), "m.safetensors", true);
    FAIL() << "accepted; expected error with: " << *needles.begin();
  } catch (const io::FormatError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("m.safetensors"), std::string::npos) << m;
    for (auto n : needles) EXPECT_NE(m.find(n), std::string::npos) << "'" << n << "' not in: " << m;
  }
}

TEST(Bundle, ExpectedTensorsLm) {
  auto c = ModelConfig::lm(60000);
  auto ex = io::expected_tensors(c);
  std::vector<std::string> names;
  for (auto& e : ex) names.push_back(e.name);
  std::vector<std::string> want = {
      "0.encoder.weight", "0.encoder_dp.emb.weight",
      "0.rnns.0.weight_hh_l0_raw", "0.rnns.0.module.weight_ih_l0", "0.rnns.0.module.bias_ih_l0",
      "0.rnns.0.module.bias_hh_l0", "0.rnns.1.weight_hh_l0_raw", "0.rnns.1.module.weight_ih_l0",
      "0.rnns.1.module.bias_ih_l0", "0.rnns.1.module.bias_hh_l0", "0.rnns.2.weight_hh_l0_raw",
      "0.rnns.2.module.weight_ih_l0", "0.rnns.2.module.bias_ih_l0", "0.rnns.2.module.bias_hh_l0",
      "1.decoder.weight", "1.decoder.bias"};
  EXPECT_EQ(names, want);  // spec §7.3 order
  EXPECT_EQ(ex[2].shape, (nn::Shape{4608, 1152}));
  EXPECT_EQ(ex[11].shape, (nn::Shape{1600, 1152}));
  EXPECT_EQ(ex[10].shape, (nn::Shape{1600, 400}));
  // spec §8.1
  EXPECT_EQ(io::parameter_count(c), 44'333'280);
  EXPECT_EQ(io::parameter_count(ModelConfig::lm(60008)), 44'336'488);
  EXPECT_EQ(io::parameter_count(ModelConfig::classifier(60008)), 44'339'130);
}

TEST(Bundle, ExpectedTensorsClassifierAndEncoder) {
  auto c = ModelConfig::classifier(100);
  auto ex = io::expected_tensors(c);
  std::vector<std::string> tail;
  for (std::size_t i = 14; i < ex.size(); ++i) tail.push_back(ex[i].name);
  std::vector<std::string> want = {
      "1.layers.0.0.weight", "1.layers.0.0.bias", "1.layers.0.0.running_mean",
      "1.layers.0.0.running_var", "1.layers.0.0.num_batches_tracked", "1.layers.0.2.weight",
      "1.layers.1.0.weight", "1.layers.1.0.bias", "1.layers.1.0.running_mean",
      "1.layers.1.0.running_var", "1.layers.1.0.num_batches_tracked", "1.layers.1.2.weight"};
  EXPECT_EQ(tail, want);
  EXPECT_EQ(ex[0].name, "0.module.encoder.weight");
  EXPECT_EQ(ex[19].shape, (nn::Shape{50, 1200}));
  EXPECT_EQ(ex[25].shape, (nn::Shape{3, 50}));
  c.head_ps = {0.2, 0.0};  // no dropout in block 1: Linear moves to index 1
  EXPECT_EQ(io::expected_tensors(c).back().name, "1.layers.1.1.weight");

  auto e = ModelConfig::lm(100);
  e.kind = "encoder";
  auto ee = io::expected_tensors(e);
  ASSERT_EQ(ee.size(), 14u);
  EXPECT_EQ(ee[0].name, "encoder.weight");
  EXPECT_EQ(ee[13].name, "rnns.2.module.bias_hh_l0");
}

TEST(Bundle, ConfigJsonRoundTripAndValidation) {
  for (auto kind : {"lm", "classifier", "encoder"}) {
    ModelConfig c = small(kind);
    ModelConfig d = ModelConfig::from_json(c.to_json());
    EXPECT_EQ(d.to_json(), c.to_json()) << kind;
  }
  auto j = small("lm").to_json();
  j["kind"] = "gpt";
  EXPECT_THROW(ModelConfig::from_json(j), std::invalid_argument);
  j = small("lm").to_json();
  j.erase("emb_sz");
  EXPECT_THROW(ModelConfig::from_json(j), std::invalid_argument);
  j = small("lm").to_json();
  j["n_layers"] = "3";
  EXPECT_THROW(ModelConfig::from_json(j), std::invalid_argument);
  j = small("lm").to_json();
  j["input_p"] = 1.5;
  EXPECT_THROW(ModelConfig::from_json(j), std::invalid_argument);
  j = small("lm").to_json();
  j["pad_idx"] = 10;
  EXPECT_THROW(ModelConfig::from_json(j), std::invalid_argument);
  j = small("classifier").to_json();
  j["head_ps"] = {0.1};
  EXPECT_THROW(ModelConfig::from_json(j), std::invalid_argument);
}

TEST(Bundle, LmRoundTripThroughFileStoresTiedWeightOnce) {
  Model m(small("lm"), /*include_aliases=*/true);
  std::string path = tmp_path("lm.safetensors");
  io::write_bundle(path, m.contents);
  Bundle b = Bundle::load(path);
  EXPECT_EQ(b.config().to_json(), m.cfg.to_json());
  EXPECT_EQ(b.vocab(), m.contents.vocab);
  EXPECT_TRUE(b.labels().empty());
  ASSERT_TRUE(b.temperature().has_value());
  EXPECT_EQ(*b.temperature(), 0.25);
  EXPECT_EQ(b.provenance(), "unit test");
  EXPECT_EQ(b.format_version(), 1);
  EXPECT_EQ(b.metadata().at("format"), "inspire-classifier-bundle/1");
  // Stored once, three names.
  EXPECT_EQ(b.file().tensors().size(), 14u);
  EXPECT_FALSE(b.file().contains("1.decoder.weight"));
  EXPECT_EQ(b.tensor("1.decoder.weight").data, b.tensor("0.encoder.weight").data);
  EXPECT_EQ(b.tensor("0.encoder_dp.emb.weight").data, b.tensor("0.encoder.weight").data);
  EXPECT_EQ(b.names().size(), 16u);
  for (auto& [name, v] : m.data) {
    auto t = b.tensor(name);
    ASSERT_EQ(t.numel(), (nn::Index)v.size()) << name;
    for (std::size_t i = 0; i < v.size(); ++i) ASSERT_EQ(t[i], v[i]) << name << " " << i;
  }
  std::remove(path.c_str());
}

TEST(Bundle, ClassifierAndEncoderRoundTripInMemory) {
  for (auto kind : {"classifier", "encoder"}) {
    Model m(small(kind));
    std::string bytes = io::serialize_bundle(m.contents);
    Bundle b = Bundle::from_memory(bytes.data(), bytes.size(), "mem", true);
    EXPECT_EQ(b.config().kind, kind);
    for (auto& [name, v] : m.data) {
      auto t = b.tensor(name);
      ASSERT_EQ(t.numel(), (nn::Index)v.size());
      EXPECT_EQ(std::vector<float>(t.begin(), t.end()), v) << name;
    }
    if (std::string(kind) == "classifier") {
      EXPECT_EQ(b.labels(), (std::vector<std::string>{"rejected", "non_core", "core"}));
      const auto& nbt = b.file().info("1.layers.0.0.num_batches_tracked");
      EXPECT_EQ(nbt.dtype, io::DType::I64);
      EXPECT_EQ(*static_cast<const std::int64_t*>(b.file().data(nbt)), 7);
    }
  }
}

TEST(Bundle, UntiedDecoderIsStored) {
  ModelConfig c = small("lm");
  c.tie_weights = false;
  Model m(c);
  std::string bytes = io::serialize_bundle(m.contents);
  Bundle b = Bundle::from_memory(bytes.data(), bytes.size(), "mem", true);
  EXPECT_TRUE(b.file().contains("1.decoder.weight"));
  EXPECT_NE(b.tensor("1.decoder.weight").data, b.tensor("0.encoder.weight").data);
}

TEST(Bundle, WriterErrors) {
  {
    Model m(small("lm"));
    m.contents.vocab.pop_back();
    expect_bundle_error(m.contents, "vocab has 9 tokens");
  }
  {
    Model m(small("classifier"));
    m.contents.labels.pop_back();
    expect_bundle_error(m.contents, "labels");
  }
  {
    Model m(small("lm"));
    m.contents.tensors.erase(m.contents.tensors.begin() + 3);
    expect_bundle_error(m.contents, "missing tensor");
  }
  {
    Model m(small("lm"));
    m.contents.tensors[1].shape = {6 * 4 + 1, 4};  // not a valid shape
    expect_bundle_error(m.contents, "has shape");
  }
  {
    Model m(small("lm"));
    float x = 0;
    m.contents.tensors.push_back(TensorOut{"extra.weight", io::DType::F32, {1}, &x});
    expect_bundle_error(m.contents, "unexpected tensor 'extra.weight'");
  }
  {
    Model m(small("lm"), true);
    std::vector<float> other(m.data.at("0.encoder.weight"));
    other[3] += 1;
    for (auto& t : m.contents.tensors)
      if (t.name == "1.decoder.weight") t.data = other.data();
    expect_bundle_error(m.contents, "tied alias");
  }
  {
    Model m(small("lm"));
    m.contents.config.n_layers = 0;
    expect_bundle_error(m.contents, "n_layers");
  }
}

// Re-serialises a valid bundle with one metadata value changed (or removed when value is empty).
std::string with_meta(const Model& m, const std::string& key, const std::string& value,
                      bool remove = false) {
  std::string good = io::serialize_bundle(m.contents);
  auto f = io::SafetensorsFile::from_memory(good.data(), good.size(), "x", true);
  auto meta = f.metadata();
  if (remove)
    meta.erase(key);
  else
    meta[key] = value;
  std::vector<TensorOut> ts;
  for (auto& t : f.tensors()) ts.push_back(TensorOut{t.name, t.dtype, t.shape, f.data(t)});
  return io::serialize_safetensors(ts, meta);
}

TEST(Bundle, LoadErrors) {
  Model m(small("lm"));
  expect_load_error(with_meta(m, "format", "", true), {"not an inspire-classifier model bundle"});
  expect_load_error(with_meta(m, "format", "inspire-classifier-bundle/3"),
                    {"version 3 is newer", "upgrade"});
  expect_load_error(with_meta(m, "format", "inspire-classifier-bundle/x"), {"bad format version"});
  expect_load_error(with_meta(m, "format", "gguf/1"), {"unknown model format"});
  expect_load_error(with_meta(m, "config", "{bad"), {"'config'", "not valid JSON"});
  expect_load_error(with_meta(m, "config", "", true), {"missing metadata 'config'"});
  expect_load_error(with_meta(m, "vocab", "[\"a\"]"), {"vocab has 1 tokens"});
  expect_load_error(with_meta(m, "vocab", "{}"), {"'vocab'", "array"});
  expect_load_error(with_meta(m, "vocab", "[1,2,3,4,5,6,7,8,9,10]"), {"'vocab'", "entry 0"});
  expect_load_error(with_meta(m, "temperature", "hot"), {"temperature"});
  expect_load_error(with_meta(m, "temperature", "-1"), {"temperature"});
  expect_load_error(with_meta(m, "aliases", "", true), {"alias", "not declared"});
  expect_load_error(with_meta(m, "aliases", "[]"), {"'aliases'"});
  {
    auto c = m.cfg;
    c.n_hid = 7;  // config disagrees with the stored shapes
    expect_load_error(with_meta(m, "config", c.to_json().dump()),
                      {"'0.rnns.0.weight_hh_l0_raw'", "expected [28, 7]"});
    c = m.cfg;
    c.kind = "classifier";
    expect_load_error(with_meta(m, "config", c.to_json().dump()), {"labels"});
  }
  {
    Model k(small("classifier"));
    auto c = k.cfg;
    c.kind = "lm";
    auto bytes = with_meta(k, "config", c.to_json().dump());
    expect_load_error(bytes, {"missing tensor '0.encoder.weight'"});
  }
  // A plain safetensors file (no metadata at all).
  float x = 1;
  std::string plain = io::serialize_safetensors({TensorOut{"w", io::DType::F32, {1}, &x}}, {});
  expect_load_error(plain, {"not an inspire-classifier model bundle", "import-fastai"});
}

TEST(Bundle, LoadRejectsStoredTwiceAndUnexpectedTensors) {
  Model m(small("lm"));
  std::string good = io::serialize_bundle(m.contents);
  auto f = io::SafetensorsFile::from_memory(good.data(), good.size(), "x", true);
  std::vector<TensorOut> ts;
  for (auto& t : f.tensors()) ts.push_back(TensorOut{t.name, t.dtype, t.shape, f.data(t)});
  auto twice = ts;
  twice.push_back(TensorOut{"1.decoder.weight", io::DType::F32, f.info("0.encoder.weight").shape,
                            f.data("0.encoder.weight")});
  expect_load_error(io::serialize_safetensors(twice, f.metadata()), {"stored twice"});
  auto extra = ts;
  float x = 0;
  extra.push_back(TensorOut{"zzz", io::DType::F32, {1}, &x});
  expect_load_error(io::serialize_safetensors(extra, f.metadata()), {"'zzz'", "unexpected"});
  auto f64 = ts;
  std::vector<double> bias(40);
  for (auto& t : f64)
    if (t.name == "0.rnns.1.module.bias_ih_l0") {
      t.dtype = io::DType::F64;
      t.data = bias.data();
    }
  expect_load_error(io::serialize_safetensors(f64, f.metadata()), {"F64", "bias_ih_l0"});
  try {
    Bundle b = Bundle::from_memory(good.data(), good.size(), "g", true);
    b.tensor("1.layers.0.0.weight");
    FAIL();
  } catch (const io::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("1.layers.0.0.weight"), std::string::npos);
  }
}

}  // namespace
