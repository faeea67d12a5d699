// ctest-labels: unit
// The one name map (ulmfit/name_map.h) in both directions: model key <-> bundle / fastai name for
// every kind, agreement with the bundle format's table (io::expected_tensors), and save -> load
// round trips of an LM, an encoder into a classifier, and a classifier.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "cli_helpers.h"
#include "io/bundle.h"
#include "ulmfit/classifier_model.h"
#include "ulmfit/name_map.h"
#include "ulmfit/train.h"
#include "ulmfit/vocab.h"

namespace fs = std::filesystem;
using namespace ulmfit;

namespace {

constexpr Index kV = 40;

ModelConfig tiny_cfg() {
  ModelConfig c = ModelConfig::lm(kV);
  c.emb_sz = 8;
  c.n_hid = 12;
  c.n_layers = 3;
  return c;
}

Vocab tiny_vocab() {
  std::vector<std::string> itos = {"xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj"};
  while ((Index)itos.size() < kV) {
    itos.push_back(std::to_string(itos.size()));
    itos.back().insert(0, 1, 'w');
  }
  return Vocab::from_itos(itos);
}

std::vector<float> values_of(const NamedTensor<float>& t) {
  return std::vector<float>(t.value.data, t.value.data + t.value.numel());
}

}  // namespace

TEST(NameMap, MapsEveryKindBothWays) {
  // encoder part: between any two kinds
  EXPECT_EQ(*bundle_name("lm", "0.rnns.1.weight_hh_l0_raw", "encoder"), "rnns.1.weight_hh_l0_raw");
  EXPECT_EQ(*bundle_name("lm", "0.encoder.weight", "classifier"), "0.module.encoder.weight");
  EXPECT_EQ(*bundle_name("encoder", "encoder.weight", "lm"), "0.encoder.weight");
  EXPECT_EQ(*bundle_name("classifier", "0.module.rnns.0.module.weight_ih_l0", "lm"),
            "0.rnns.0.module.weight_ih_l0");
  // heads: only in a bundle of their own kind
  EXPECT_EQ(*bundle_name("lm", "1.decoder.bias", "lm"), "1.decoder.bias");
  EXPECT_FALSE(bundle_name("lm", "1.decoder.bias", "encoder").has_value());
  EXPECT_FALSE(bundle_name("lm", "1.decoder.bias", "classifier").has_value());
  EXPECT_FALSE(bundle_name("classifier", "1.layers.0.0.weight", "lm").has_value());
  EXPECT_EQ(*bundle_name("classifier", "1.layers.0.0.weight", "classifier"), "1.layers.0.0.weight");
  // and back
  EXPECT_EQ(*model_key("classifier", "0.module.encoder.weight", "encoder"), "encoder.weight");
  EXPECT_EQ(*model_key("encoder", "rnns.2.weight_hh_l0_raw", "lm"), "0.rnns.2.weight_hh_l0_raw");
  EXPECT_FALSE(model_key("lm", "1.decoder.bias", "encoder").has_value());
  EXPECT_THROW(encoder_prefix_of("decoder"), std::invalid_argument);
}

TEST(NameMap, AgreesWithTheBundleFormatsTable) {
  AwdLstmLM lm(tiny_cfg());
  ModelConfig cc = ModelConfig::classifier(kV);
  cc.emb_sz = 8, cc.n_hid = 12;
  ClassifierModel clf(cc);
  struct Case {
    std::string model_kind, bundle_kind;
    std::vector<io::TensorOut> out;
    io::ModelConfig cfg;
  };
  io::ModelConfig lm_cfg = lm.config();
  io::ModelConfig enc_cfg = lm.config();
  enc_cfg.kind = "encoder";
  io::ModelConfig clf_cfg = cc;
  std::vector<Case> cases = {
      {"lm", "lm", bundle_tensors(lm.tensors(), "lm", "lm"), lm_cfg},
      {"lm", "encoder", bundle_tensors(lm.tensors(), "lm", "encoder"), enc_cfg},
      {"classifier", "classifier", bundle_tensors(clf.tensors(), "classifier", "classifier"), clf_cfg},
  };
  for (auto& c : cases) {
    std::set<std::string> stored, got;
    for (auto& e : io::expected_tensors(c.cfg))
      if (e.alias_of.empty() && e.required) stored.insert(e.name);
    for (auto& t : c.out) got.insert(t.name);
    for (auto& n : stored) EXPECT_TRUE(got.count(n)) << c.model_kind << " -> " << c.bundle_kind << ": " << n;
    for (auto& n : got) {
      bool known = false;
      for (auto& e : io::expected_tensors(c.cfg)) known |= e.name == n;
      EXPECT_TRUE(known) << c.model_kind << " -> " << c.bundle_kind << ": unexpected " << n;
    }
  }
}

TEST(NameMap, SaveAndLoadRoundTrips) {
  fs::path dir = clitest::fresh_dir("name_map");
  nn::Rng rng(7);
  AwdLstmLM lm(tiny_cfg());
  lm.init(rng);
  for (Index i = 0; i < kV; ++i) lm.decoder_bias().data[i] = 0.01f * (float)i;  // not all zero
  Vocab vocab = tiny_vocab();
  const std::string lm_path = (dir / "lm.safetensors").string();
  io::write_bundle(lm_path, lm_bundle(lm, vocab, "test"));
  auto b = io::Bundle::load(lm_path);

  // bundle -> a fresh LM: every tensor equal
  AwdLstmLM back(tiny_cfg());
  load_lm_weights(back, b);
  auto want = lm.tensors(), got = back.tensors();
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(values_of(want[i]), values_of(got[i])) << want[i].key;

  // the LM bundle's encoder -> a classifier's encoder
  ModelConfig cc = ModelConfig::classifier(kV);
  cc.emb_sz = 8, cc.n_hid = 12;
  ClassifierModel clf(cc);
  clf.init(rng);
  load_encoder_into_classifier(clf, b);
  auto enc_want = lm.encoder().tensors(), enc_got = clf.encoder().tensors();
  ASSERT_EQ(enc_want.size(), enc_got.size());
  for (size_t i = 0; i < enc_want.size(); ++i)
    EXPECT_EQ(values_of(enc_want[i]), values_of(enc_got[i])) << enc_want[i].key;

  // classifier -> bundle -> the classifier's encoder into an LM (decoder bias kept)
  const std::string clf_path = (dir / "clf.safetensors").string();
  io::write_bundle(clf_path, classifier_bundle(clf, vocab, "test"));
  AwdLstmLM from_clf(tiny_cfg());
  for (Index i = 0; i < kV; ++i) from_clf.decoder_bias().data[i] = 5;
  load_lm_weights(from_clf, io::Bundle::load(clf_path));
  EXPECT_EQ(values_of(from_clf.encoder().tensors()[0]), values_of(enc_want[0]));
  EXPECT_EQ(from_clf.decoder_bias().data[3], 5.0f);

  // a tensor of the wrong shape is named
  ModelConfig wide = tiny_cfg();
  wide.n_hid = 13;
  ModelConfig wc = wide;
  wc.kind = "classifier";
  ClassifierModel wm(wc);
  try {
    load_tensors(wm.encoder().tensors(), "encoder", b);
    ADD_FAILURE() << "a shape mismatch was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("0.rnns.0"), std::string::npos) << e.what();
  }
}
