// ctest-labels: cli data
// tests/test_ensemble.cpp — backward models and ensembles (the ULMFiT paper's forward + backward
// classifier): the `backwards` config flag, a backwards classifier reading reversed ids, the
// ensemble bundle (format version 2: write, load, every validation error), the Classifier
// averaging its members' probabilities, the `ensemble` command, and `train --backwards`.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli_helpers.h"
#include "io/bundle.h"
#include "io/errors.h"
#include "io/safetensors.h"
#include "nn/lstm.h"
#include "ulmfit/curves.h"
#include "ulmfit/classifier.h"
#include "ulmfit/classifier_model.h"
#include "ulmfit/train.h"

namespace fs = std::filesystem;
using namespace ulmfit;
using clitest::fresh_dir;
using clitest::kBin;
using clitest::kData;

namespace {

std::string run(const std::string& cmd, int* rc) { return clitest::run(cmd, rc, true); }

Vocab test_vocab(std::int64_t n) {
  std::vector<std::string> v = {"xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj"};
  while ((std::int64_t)v.size() < n) v.push_back("tok" + std::to_string(v.size()));
  v.resize(n);
  return Vocab::from_itos(v);
}

// A small classifier with random weights (and non-trivial BatchNorm statistics).
ClassifierModel random_classifier(std::uint64_t seed, bool backwards, Index vocab = 40) {
  ModelConfig cc = ModelConfig::classifier(vocab, 0.5);
  cc.emb_sz = 6, cc.n_hid = 10, cc.n_layers = 2;
  cc.backwards = backwards;
  cc.bptt = 5, cc.max_len = 20;
  cc.lin_ftrs = {7};
  ClassifierModel m(cc);
  nn::Rng rng(seed);
  m.init(rng);
  for (auto& t : m.tensors())
    if (t.key.find("running_var") != std::string::npos)
      for (Index i = 0; i < t.value.numel(); ++i) t.value[i] = 0.5f + 0.05f * (float)((i + seed) % 7);
  return m;
}

std::vector<std::int32_t> test_ids(std::size_t n) {
  std::vector<std::int32_t> ids = {2};
  for (std::size_t i = 1; i < n; ++i) ids.push_back(9 + (std::int32_t)((i * 7 + i / 3) % 31));
  return ids;
}

// Appends `member` to `c` as ensemble member k (its config, and its tensors under the prefix).
void add_member(io::BundleContents& c, const io::BundleContents& member, std::size_t k) {
  c.extra_members.push_back({io::ensemble_prefix(k), member.config});
  for (auto t : member.tensors) {
    t.name = io::ensemble_prefix(k) + t.name;
    c.tensors.push_back(t);
  }
}

// The same number of values, each bit-equal (`what` names the tensor in a failure).
void expect_same_values(nn::CView<float> want, nn::CView<float> got, const std::string& what) {
  ASSERT_EQ(want.numel(), got.numel()) << what;
  for (Index i = 0; i < want.numel(); ++i) ASSERT_EQ(want[i], got[i]) << what << " " << i;
}

void write_classifier(ClassifierModel& m, const Vocab& v, const std::string& path) {
  io::write_bundle(path, classifier_bundle(m, v, "test_ensemble"));
}

}  // namespace

TEST(Backwards, ConfigFlagRoundTripsAndIsWrittenOnlyWhenSet) {
  auto c = io::ModelConfig::classifier(20);
  EXPECT_FALSE(c.to_json().contains("backwards"));  // forward bundles stay as they were
  c.backwards = true;
  auto j = c.to_json();
  EXPECT_EQ(j["backwards"], true);
  EXPECT_TRUE(io::ModelConfig::from_json(j).backwards);
  j["backwards"] = "yes";
  EXPECT_THROW(io::ModelConfig::from_json(j), std::invalid_argument);
}

TEST(Backwards, ClassifierReadsTheDocumentReversed) {
  auto fwd = random_classifier(5, false);
  auto bwd = random_classifier(5, true);  // the same weights
  auto ids = test_ids(23);                // spans several 5-token chunks and the 20-token pool
  auto rev = ids;
  std::reverse(rev.begin(), rev.end());
  auto a = bwd.infer(ids), b = fwd.infer(rev), c = fwd.infer(ids);
  for (int i = 0; i < 3; ++i) EXPECT_FLOAT_EQ(a[i], b[i]) << i;
  EXPECT_GT(std::abs(a[0] - c[0]) + std::abs(a[1] - c[1]) + std::abs(a[2] - c[2]), 1e-4f)
      << "the direction must matter for this test to mean anything";

  // ... and keeps the flag through a bundle.
  fs::path dir = fresh_dir("bwd");
  Vocab v = test_vocab(40);
  write_classifier(bwd, v, (dir / "b.safetensors").string());
  auto bundle = io::Bundle::load((dir / "b.safetensors").string());
  EXPECT_TRUE(bundle.config().backwards);
  auto loaded = ClassifierModel::from_bundle(bundle);
  EXPECT_TRUE(loaded.config().backwards);
  auto d = loaded.infer(ids);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(a[i], d[i]);
  fs::remove_all(dir);
}

// Member tensors are the member's fastai keys under "ensemble.<k>."; the writer and the loader
// agree, and a version-1 single model is unchanged.
TEST(Ensemble, BundleRoundTrip) {
  Vocab v = test_vocab(40);
  auto m0 = random_classifier(1, false), m1 = random_classifier(2, true);
  auto c = classifier_bundle(m0, v, "two");
  EXPECT_EQ(io::Bundle::from_memory(io::serialize_bundle(c).data(), io::serialize_bundle(c).size(),
                                    "single", true)
                .metadata()
                .at("format"),
            "inspire-classifier-bundle/1");
  auto c1 = classifier_bundle(m1, v, "");
  add_member(c, c1, 1);
  std::string bytes = io::serialize_bundle(c);
  auto b = io::Bundle::from_memory(bytes.data(), bytes.size(), "ens", true);
  EXPECT_EQ(b.metadata().at("format"), "inspire-classifier-bundle/2");
  ASSERT_EQ(b.members().size(), 2u);
  EXPECT_EQ(b.members()[0].prefix, "");
  EXPECT_FALSE(b.members()[0].config.backwards);
  EXPECT_EQ(b.members()[1].prefix, "ensemble.1.");
  EXPECT_TRUE(b.members()[1].config.backwards);
  EXPECT_TRUE(b.has("ensemble.1.0.module.encoder_dp.emb.weight"));  // its tied alias
  auto names = b.names();
  EXPECT_NE(std::find(names.begin(), names.end(), "ensemble.1.1.layers.1.2.weight"), names.end());
  auto back = ClassifierModel::from_bundle(b, false, 1);
  auto ids = test_ids(17);
  auto p = back.infer(ids), q = m1.infer(ids);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(p[i], q[i]);
  EXPECT_THROW(ClassifierModel::from_bundle(b, false, 2), std::invalid_argument);
}

TEST(Ensemble, WriterRefusesBadMembers) {
  Vocab v = test_vocab(40);
  auto m0 = random_classifier(1, false), m1 = random_classifier(2, true);
  auto base = classifier_bundle(m0, v, "");
  auto c1 = classifier_bundle(m1, v, "");
  auto with = [&](const std::string& prefix, io::ModelConfig cfg, bool tensors) {
    auto c = base;
    c.extra_members.push_back({prefix, cfg});
    if (tensors)
      for (auto t : c1.tensors) {
        t.name = prefix + t.name;
        c.tensors.push_back(t);
      }
    return c;
  };
  auto expect_error = [](const io::BundleContents& c, const std::string& needle) {
    try {
      io::serialize_bundle(c);
      ADD_FAILURE() << "accepted; expected: " << needle;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error(with("ensemble.2.", c1.config, true), "must have prefix 'ensemble.1.'");
  expect_error(with("ensemble.1.", c1.config, false), "missing tensor 'ensemble.1.0.module.encoder.weight'");
  auto other = c1.config;
  other.vocab_size = 41;
  expect_error(with("ensemble.1.", other, true), "another vocabulary size");
  auto lm = c1.config;
  lm.kind = "lm";
  expect_error(with("ensemble.1.", lm, true), "only classifiers");
  auto c = base;
  for (int k = 1; k <= 16; ++k) c.extra_members.push_back({io::ensemble_prefix(k), c1.config});
  expect_error(c, "at most 16 members");
}

TEST(Ensemble, LoaderRefusesBadMetadata) {
  Vocab v = test_vocab(40);
  auto m0 = random_classifier(1, false), m1 = random_classifier(2, false);
  auto c = classifier_bundle(m0, v, "");
  auto c1 = classifier_bundle(m1, v, "");
  add_member(c, c1, 1);
  // Re-serialise the same tensors with tampered metadata through the plain safetensors writer.
  std::string good = io::serialize_bundle(c);
  auto ok = io::SafetensorsFile::from_memory(good.data(), good.size(), "good", true);
  auto retry = [&](std::map<std::string, std::string> meta, const std::string& needle) {
    std::vector<io::TensorOut> ts;
    for (auto& t : ok.tensors()) ts.push_back(io::TensorOut{t.name, t.dtype, t.shape, ok.data(t)});
    std::string bytes = io::serialize_safetensors(ts, meta);
    try {
      io::Bundle::from_memory(bytes.data(), bytes.size(), "tampered", true);
      ADD_FAILURE() << "accepted; expected: " << needle;
    } catch (const io::FormatError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto meta = ok.metadata();
  auto m = meta;
  m["format"] = "inspire-classifier-bundle/1";
  retry(m, "needs format version 2");
  m = meta;
  m["ensemble"] = "{}";
  retry(m, "is not a JSON array");
  m = meta;
  m["ensemble"] = "[{\"prefix\": \"x.\", \"config\": " + c1.config.to_json().dump() + "}]";
  retry(m, "prefix 'x.', expected 'ensemble.1.'");
  m = meta;
  m["ensemble"] = "[{\"prefix\": \"ensemble.1.\"}]";
  retry(m, "an entry must be");
  m = meta;
  auto bad = c1.config.to_json();
  bad["vocab_size"] = 41;
  m["ensemble"] = "[{\"prefix\": \"ensemble.1.\", \"config\": " + bad.dump() + "}]";
  retry(m, "vocab_size/n_classes differ");
  m = meta;
  m.erase("ensemble");
  retry(m, "unexpected alias");  // member tensors without their declaration
}

// The Classifier's probabilities are the mean of its members'; `ensemble` builds the bundle from
// two single ones (one of them backwards) and refuses members with another vocabulary.
TEST(Ensemble, ClassifierAveragesItsMembersAndTheCommandBuildsIt) {
  fs::path dir = fresh_dir("cmd");
  Vocab v = test_vocab(40);
  auto m0 = random_classifier(11, false), m1 = random_classifier(12, true);
  std::string a = (dir / "a.safetensors").string(), b = (dir / "b.safetensors").string(),
              e = (dir / "e.safetensors").string();
  write_classifier(m0, v, a);
  write_classifier(m1, v, b);
  int rc = -1;
  std::string out = run(kBin + " ensemble " + a + " " + b + " -o " + e, &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("\"members\":2"), std::string::npos) << out;

  auto ca = Classifier::load(a), cb = Classifier::load(b), ce = Classifier::load(e);
  EXPECT_EQ(ce.n_members(), 2u);
  EXPECT_EQ(ca.n_members(), 1u);
  for (std::size_t n : {1, 9, 33}) {
    auto ids = test_ids(n);
    auto pa = ca.probabilities(ids), pb = cb.probabilities(ids), pe = ce.probabilities(ids);
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(pe[i], (pa[i] + pb[i]) / 2, 1e-7) << n << " " << i;
  }
  // --member K writes member K back out as a single classifier: the same predictions, the same
  // direction; an index out of range or more than one input is refused and nothing is written.
  std::string x1 = (dir / "x1.safetensors").string(), x0 = (dir / "x0.safetensors").string();
  out = run(kBin + " ensemble --member 1 " + e + " -o " + x1, &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("\"backwards\":true"), std::string::npos) << out;
  out = run(kBin + " ensemble --member 0 " + e + " -o " + x0, &rc);
  ASSERT_EQ(rc, 0) << out;
  {
    auto cx1 = Classifier::load(x1), cx0 = Classifier::load(x0);
    EXPECT_EQ(cx1.n_members(), 1u);
    EXPECT_TRUE(io::Bundle::load(x1).config().backwards);
    EXPECT_FALSE(io::Bundle::load(x0).config().backwards);
    for (std::size_t n : {1, 9, 33}) {
      auto ids = test_ids(n);
      EXPECT_EQ(cx1.probabilities(ids), cb.probabilities(ids)) << n;
      EXPECT_EQ(cx0.probabilities(ids), ca.probabilities(ids)) << n;
    }
  }
  std::string x2 = (dir / "x2.safetensors").string();
  out = run(kBin + " ensemble --member 2 " + e + " -o " + x2, &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("--member 2 is out of range; it has 2 member(s)"), std::string::npos) << out;
  out = run(kBin + " ensemble --member 0 " + e + " " + a + " -o " + x2, &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("exactly one bundle"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(x2));

  // An ensemble of an ensemble and a single model flattens to three members.
  std::string e3 = (dir / "e3.safetensors").string();
  out = run(kBin + " ensemble " + e + " " + a + " -o " + e3, &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(Classifier::load(e3).n_members(), 3u);
  out = run(kBin + " inspect " + e3, &rc);
  EXPECT_EQ(rc, 0);
  EXPECT_NE(out.find("ensemble of 3 classifiers"), std::string::npos) << out;
  EXPECT_NE(out.find("backwards"), std::string::npos) << out;

  // Another vocabulary is refused, naming the file; nothing is written.
  auto m2 = random_classifier(13, false, 48);
  std::string c = (dir / "c.safetensors").string(), bad = (dir / "bad.safetensors").string();
  write_classifier(m2, test_vocab(48), c);
  out = run(kBin + " ensemble " + a + " " + c + " -o " + bad, &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("vocabulary differs"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(bad));
  out = run(kBin + " ensemble " + a + " -o " + bad, &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("two or more members"), std::string::npos) << out;
  fs::remove_all(dir);
}

// `train --backwards` on a tiny sample: the LM and the classifier are backwards, the LM loss
// falls, and the classifier predicts.
TEST(Backwards, TinyPipelineTrainsBackwardModels) {
  ASSERT_TRUE(fs::exists(kData)) << kData;
  fs::path dir = fresh_dir("bwd_pipeline");
  clitest::write_sample(dir / "sample.jsonl", 60);
  int rc = -1;
  std::string out = run(kBin + " train --backwards --preset tiny --threads 1 --max-vocab 300 "
                               "--lm-epochs 2 --clas-epochs 1 -q -d " +
                            (dir / "sample.jsonl").string() + " -o " + (dir / "out").string(),
                        &rc);
  ASSERT_EQ(rc, 0) << out;
  auto lm = io::Bundle::load((dir / "out" / "lm" / "lm.safetensors").string());
  EXPECT_TRUE(lm.config().backwards);
  std::string model = (dir / "out" / "classifier" / "classifier.safetensors").string();
  EXPECT_TRUE(io::Bundle::load(model).config().backwards);
  auto curves = Curves::read_csv((dir / "out" / "lm" / "curves.csv").string());
  ASSERT_EQ(curves.points().size(), 2u);
  EXPECT_LT(curves.points()[1].values.at("train_loss"), curves.points()[0].values.at("train_loss"));
  // finetune-lm on a backwards LM inherits its direction without the flag.
  out = run(kBin + " finetune-lm --preset tiny --threads 1 --max-vocab 300 -q --epochs 1 "
                   "--frozen-epochs 0 --max-steps 2 --pretrained " +
                (dir / "out" / "lm" / "lm.safetensors").string() + " -d " +
                (dir / "sample.jsonl").string() + " -o " + (dir / "lm2").string(),
            &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(io::Bundle::load((dir / "lm2" / "lm.safetensors").string()).config().backwards);
  out = run(kBin + " predict-coreness --model " + model + " 'A title' 'An abstract about quarks.'", &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(nlohmann::json::parse(out).contains("scores")) << out;
  fs::remove_all(dir);
}

// train-classifier --lm takes a single classifier's encoder (its head is not copied); an ensemble
// is refused with a pointer to `ensemble --member K`.
TEST(Ensemble, ClassifierEncoderSeedsANewClassifier) {
  fs::path dir = fresh_dir("encoder");
  Vocab v = test_vocab(40);
  auto src = random_classifier(21, true), other = random_classifier(22, true);
  std::string a = (dir / "a.safetensors").string(), b = (dir / "b.safetensors").string(),
              e = (dir / "e.safetensors").string();
  write_classifier(src, v, a);
  write_classifier(other, v, b);
  auto fresh = random_classifier(23, true);
  load_encoder_into_classifier(fresh, io::Bundle::load(a));
  auto want = src.encoder().tensors(), got = fresh.encoder().tensors();
  ASSERT_EQ(want.size(), got.size());
  for (std::size_t i = 0; i < want.size(); ++i) expect_same_values(want[i].value, got[i].value, want[i].key);
  // the head stays the new model's own
  auto init = random_classifier(23, true);
  auto src_all = src.tensors(), fresh_all = fresh.tensors(), init_all = init.tensors();
  bool head_differs = false;
  for (std::size_t i = 0; i < fresh_all.size(); ++i)
    if (fresh_all[i].key.rfind("1.", 0) == 0) {
      for (Index k = 0; k < fresh_all[i].value.numel(); ++k) {
        ASSERT_EQ(fresh_all[i].value[k], init_all[i].value[k]) << fresh_all[i].key;
        head_differs |= fresh_all[i].value[k] != src_all[i].value[k];
      }
    }
  EXPECT_TRUE(head_differs);
  int rc = -1;
  std::string out = run(kBin + " ensemble " + a + " " + b + " -o " + e, &rc);
  ASSERT_EQ(rc, 0) << out;
  try {
    load_encoder_into_classifier(fresh, io::Bundle::load(e));
    ADD_FAILURE() << "an ensemble was accepted as an encoder";
  } catch (const std::invalid_argument& ex) {
    EXPECT_NE(std::string(ex.what()).find("ensemble --member K"), std::string::npos) << ex.what();
  }
  fs::remove_all(dir);
}

// `ensemble --f16` stores the weights as IEEE half: about half the bytes, every float tensor F16
// and equal to the float32 value rounded to half, predictions within 1e-3; `--member` and
// loading keep it; a bundle with another float dtype (BF16) is refused, naming the tensor.
TEST(Ensemble, HalfPrecisionStorage) {
  fs::path dir = fresh_dir("f16");
  Vocab v = test_vocab(40);
  auto m0 = random_classifier(31, false), m1 = random_classifier(32, true);
  std::string a = (dir / "a.safetensors").string(), b = (dir / "b.safetensors").string(),
              e = (dir / "e.safetensors").string(), h = (dir / "h.safetensors").string(),
              h1 = (dir / "h1.safetensors").string();
  write_classifier(m0, v, a);
  write_classifier(m1, v, b);
  int rc = -1;
  std::string out = run(kBin + " ensemble " + a + " " + b + " -o " + e, &rc);
  ASSERT_EQ(rc, 0) << out;
  out = run(kBin + " ensemble --f16 " + a + " " + b + " -o " + h, &rc);
  ASSERT_EQ(rc, 0) << out;
  auto be = io::Bundle::load(e), bh = io::Bundle::load(h);
  EXPECT_LT(bh.file().data_bytes() * 10, be.file().data_bytes() * 6);  // I64 counters stay 8 bytes
  std::size_t n_half = 0;
  for (const auto& t : bh.file().tensors()) {
    if (t.dtype == io::DType::I64) continue;
    ASSERT_EQ(t.dtype, io::DType::F16) << t.name;
    ++n_half;
    auto x = be.tensor(t.name), y = bh.tensor(t.name);
    ASSERT_EQ(x.numel(), y.numel()) << t.name;
    for (Index i = 0; i < x.numel(); ++i)
      ASSERT_EQ(y[i], nn::half_to_float(nn::float_to_half(x[i]))) << t.name << " " << i;
  }
  EXPECT_GT(n_half, 20u);
  auto ce = Classifier::load(e), ch = Classifier::load(h);
  EXPECT_EQ(ch.n_members(), 2u);
  for (std::size_t n : {1, 9, 33}) {
    auto ids = test_ids(n);
    auto pe = ce.probabilities(ids), ph = ch.probabilities(ids);
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(ph[i], pe[i], 1e-3) << n << " " << i;
  }
  out = run(kBin + " ensemble --member 1 " + h + " -o " + h1, &rc);
  ASSERT_EQ(rc, 0) << out;
  auto b1 = io::Bundle::load(h1);
  EXPECT_TRUE(b1.config().backwards);
  EXPECT_EQ(b1.file().info("1.layers.0.2.weight").dtype, io::DType::F16);
  for (const auto& t : b1.file().tensors()) {
    if (t.dtype == io::DType::I64) continue;
    EXPECT_EQ(t.dtype, io::DType::F16) << t.name;
    expect_same_values(bh.tensor(io::ensemble_prefix(1) + t.name), b1.tensor(t.name), t.name);
  }

  // BF16 is not a bundle dtype
  {
    io::SafetensorsFile f = io::SafetensorsFile::open(a);
    std::vector<io::TensorOut> ts;
    std::vector<std::vector<std::uint16_t>> keep;
    for (auto& t : f.tensors()) {
      io::TensorOut o{t.name, t.dtype, t.shape, f.data(t)};
      if (t.name == "1.layers.0.2.weight") {
        auto x = f.f32(t.name);
        keep.emplace_back(x.numel(), std::uint16_t{0x3f80});
        o.dtype = io::DType::BF16;
        o.data = keep.back().data();
      }
      ts.push_back(o);
    }
    std::string bad = (dir / "bf16.safetensors").string();
    io::write_safetensors(bad, ts, f.metadata());
    try {
      io::Bundle::load(bad);
      ADD_FAILURE() << "a BF16 tensor was accepted";
    } catch (const io::FormatError& ex) {
      EXPECT_NE(std::string(ex.what()).find("expected F32 or F16"), std::string::npos) << ex.what();
      EXPECT_NE(std::string(ex.what()).find("1.layers.0.2.weight"), std::string::npos) << ex.what();
    }
  }
  fs::remove_all(dir);
}

// --card: a JSON object (how the model was made and measured) stored as the `card` metadata,
// by both forms of the command, kept by calibrate --prior and shown by inspect; a card that is
// not a JSON object is refused and nothing is written.
TEST(Ensemble, CardIsStoredKeptAndShown) {
  fs::path dir = fresh_dir("card");
  Vocab v = test_vocab(40);
  auto m0 = random_classifier(41, false), m1 = random_classifier(42, true);
  std::string a = (dir / "a.safetensors").string(), b = (dir / "b.safetensors").string(),
              e = (dir / "e.safetensors").string(), one = (dir / "one.safetensors").string(),
              cal = (dir / "cal.safetensors").string(), card = (dir / "card.json").string();
  write_classifier(m0, v, a);
  write_classifier(m1, v, b);
  const nlohmann::json want = {{"recipe", "medium, forward LM"}, {"cv", {{"macro_f1", {0.7, 0.01}}}}};
  std::ofstream(card) << want.dump(1);
  int rc = -1;
  std::string out = run(kBin + " ensemble --f16 --card " + card + " " + a + " " + b + " -o " + e, &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(nlohmann::json::parse(io::Bundle::load(e).file().metadata().at("card")), want);
  out = run(kBin + " ensemble --member 0 --card " + card + " " + a + " -o " + one, &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(nlohmann::json::parse(io::Bundle::load(one).file().metadata().at("card")), want);
  std::string data = (dir / "d.jsonl").string();
  std::ofstream(data) << R"({"title":"t","abstract":"a","label":"core","split":"train"})" "\n"
                      << R"({"title":"u","abstract":"b","label":"non_core","split":"valid"})" "\n";
  out = run(kBin + " calibrate -q --prior -m " + e + " -d " + data + " --split train,valid -o " + cal, &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(nlohmann::json::parse(io::Bundle::load(cal).file().metadata().at("card")), want);
  out = run(kBin + " inspect " + cal, &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("card:"), std::string::npos) << out;
  EXPECT_NE(out.find("medium, forward LM"), std::string::npos) << out;

  for (const std::string bad : {"[1, 2]", "{not json"}) {
    std::ofstream(card) << bad;
    fs::remove(dir / "x.safetensors");
    out = run(kBin + " ensemble --card " + card + " " + a + " " + b + " -o " + (dir / "x.safetensors").string(),
              &rc);
    EXPECT_NE(rc, 0) << bad;
    EXPECT_NE(out.find("card.json"), std::string::npos) << out;
    EXPECT_FALSE(fs::exists(dir / "x.safetensors")) << bad;
  }
  fs::remove_all(dir);
}
