// ctest-labels: cli data
// tests/test_calibrate.cpp — the prior correction: a bundle's `class_weights` (write, load,
// validation), the Classifier applying p_c * w_c / sum_j p_j * w_j before scores and argmax, and
// the `calibrate` command choosing the weights on labeled data (real valid records, the tiny
// fastai-golden classifier) so that `validate` then reports the macro-F1 it promised.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <fstream>
#include <string>
#include <vector>

#include "cli_helpers.h"
#include "io/bundle.h"
#include "io/errors.h"
#include "io/safetensors.h"
#include "tiny_bundle.h"
#include "ulmfit/classifier.h"

namespace fs = std::filesystem;
using clitest::kBin;
using clitest::kData;
using clitest::run;

namespace {

class Calibrate : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("inspire_calibrate_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = (dir_ / "tiny.safetensors").string();
    tiny::write(path_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
  std::string path_;
};

// The same tensors and metadata as `src`, with one metadata key set (or erased if value empty).
std::string with_meta(const std::string& src, const std::string& key, const std::string& value) {
  auto f = io::SafetensorsFile::open(src);
  std::vector<io::TensorOut> ts;
  for (auto& t : f.tensors()) ts.push_back(io::TensorOut{t.name, t.dtype, t.shape, f.data(t)});
  auto meta = f.metadata();
  if (value.empty()) meta.erase(key); else meta[key] = value;
  return io::serialize_safetensors(ts, meta);
}

}  // namespace

TEST(CorrectedProbabilities, AreTheWeightedRenormalisedOnes) {
  std::array<float, 3> p = {0.1f, 0.3f, 0.6f};
  auto same = ulmfit::corrected(p, {});
  EXPECT_EQ(same, p);
  auto q = ulmfit::corrected(p, {1.0, 2.0, 1.0});  // 0.1, 0.6, 0.6 -> / 1.3
  EXPECT_NEAR(q[0], 0.1 / 1.3, 1e-7);
  EXPECT_NEAR(q[1], 0.6 / 1.3, 1e-7);
  EXPECT_NEAR(q[2], 0.6 / 1.3, 1e-7);
}

TEST_F(Calibrate, BundleClassWeightsAreValidatedAndApplied) {
  auto plain = ulmfit::Classifier::load(path_);
  EXPECT_TRUE(plain.class_weights().empty());
  std::string ok = with_meta(path_, "class_weights", "[1, 3.5, 0.5]");
  auto b = io::Bundle::from_memory(ok.data(), ok.size(), "weighted", true);
  EXPECT_EQ(b.class_weights(), (std::vector<double>{1, 3.5, 0.5}));
  {
    std::ofstream o(dir_ / "w.safetensors", std::ios::binary);
    o << ok;
  }
  auto weighted = ulmfit::Classifier::load((dir_ / "w.safetensors").string());
  const char* title = "Measurement of the top quark mass";
  const char* abstract = "We measure the mass of the top quark in proton-proton collisions.";
  auto a = plain.predict_coreness(title, abstract), c = weighted.predict_coreness(title, abstract);
  auto expect = ulmfit::corrected(a.probabilities, {1, 3.5, 0.5});
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(c.probabilities[i], expect[i], 1e-7);
  EXPECT_EQ(c.index, (std::size_t)(std::max_element(expect.begin(), expect.end()) - expect.begin()));

  for (auto [value, needle] : {std::pair{"[1, 2]", "one weight per class"},
                               std::pair{"[1, 0, 1]", "not a positive number"},
                               std::pair{"[1, \"x\", 1]", "not a positive number"},
                               std::pair{"{\"core\": 1}", "one weight per class"},
                               std::pair{"[1, 1, -2]", "not a positive number"}}) {
    std::string bad = with_meta(path_, "class_weights", value);
    try {
      io::Bundle::from_memory(bad.data(), bad.size(), "bad", true);
      ADD_FAILURE() << "accepted " << value;
    } catch (const io::FormatError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
  io::BundleContents bc;  // the writer refuses a wrong count
  auto loaded = io::Bundle::load(path_);
  bc.config = loaded.config();
  bc.vocab = loaded.vocab();
  bc.labels = loaded.labels();
  bc.class_weights = {1.0, 2.0};
  EXPECT_THROW(io::serialize_bundle(bc), std::invalid_argument);
}

TEST_F(Calibrate, CommandChoosesWeightsThatValidateConfirms) {
  ASSERT_TRUE(fs::exists(kData)) << kData;
  std::string out_model = (dir_ / "cal.safetensors").string();
  int rc = -1;
  std::string out = run(kBin + " calibrate -q --threads 1 --folds 2 -m " + path_ + " -d " + kData +
                            " --split valid -o " + out_model,
                        &rc);
  ASSERT_EQ(rc, 0) << out;
  auto r = nlohmann::json::parse(out);
  ASSERT_EQ(r["records"].get<int>(), 508);
  auto w = r["class_weights"].get<std::vector<double>>();
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[2], 1.0) << "the most frequent class (core) keeps weight 1";
  EXPECT_EQ(w[0], 1.0) << "rejected is absent from valid: left alone";
  EXPECT_GE(r["macro_f1_after"].get<double>(), r["macro_f1_before"].get<double>());
  ASSERT_TRUE(r.contains("cv_macro_f1"));
  EXPECT_GT(r["cv_macro_f1"].get<double>(), 0.0);

  auto b = io::Bundle::load(out_model);
  EXPECT_EQ(b.class_weights(), w);
  // validate with the calibrated model reports exactly the promised macro-F1, and the
  // uncalibrated one the "before" figure.
  std::string rj = (dir_ / "r.json").string();
  out = run(kBin + " validate -q --threads 1 -m " + out_model + " -d " + kData +
                " --split valid --report-json " + rj,
            &rc);
  ASSERT_EQ(rc, 0) << out;
  std::ifstream in(rj);
  auto rep = nlohmann::json::parse(in);
  EXPECT_NEAR(rep["macro_f1"].get<double>(), r["macro_f1_after"].get<double>(), 1e-9);
  EXPECT_NEAR(rep["accuracy"].get<double>(), r["accuracy_after"].get<double>(), 1e-9);
  out = run(kBin + " validate -q --threads 1 -m " + path_ + " -d " + kData +
                " --split valid --report-json " + rj,
            &rc);
  ASSERT_EQ(rc, 0) << out;
  std::ifstream in2(rj);
  EXPECT_NEAR(nlohmann::json::parse(in2)["macro_f1"].get<double>(), r["macro_f1_before"].get<double>(), 1e-9);

  // Calibrating a calibrated model starts from its raw probabilities: the same weights.
  out = run(kBin + " calibrate -q --threads 1 --folds 0 -m " + out_model + " -d " + kData +
                " --split valid -o " + (dir_ / "again.safetensors").string(),
            &rc);
  ASSERT_EQ(rc, 0) << out;
  auto again = nlohmann::json::parse(out)["class_weights"].get<std::vector<double>>();
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(again[i], w[i], 1e-9 * w[i]);

  // Bad input: a split with no records, --folds 1.
  out = run(kBin + " calibrate -q -m " + path_ + " -d " + kData + " --split nosuch -o " +
                (dir_ / "x.safetensors").string(),
            &rc);
  EXPECT_NE(rc, 0);
  EXPECT_FALSE(fs::exists(dir_ / "x.safetensors"));
  out = run(kBin + " calibrate -q --folds 1 -m " + path_ + " -d " + kData + " -o " +
                (dir_ / "x.safetensors").string(),
            &rc);
  EXPECT_NE(rc, 0);
}

// --prior: no search, no predictions: the weights undo the class balance of the labels of the
// chosen splits (the rule `cv` scores as +prior), counted here from the file itself.
TEST_F(Calibrate, PriorRuleUndoesTheClassBalanceOfTheChosenSplits) {
  ASSERT_TRUE(fs::exists(kData)) << kData;
  std::map<std::string, double> count;
  std::size_t n = 0;
  {
    std::ifstream in(kData);
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line);
      if (j["split"] != "train" && j["split"] != "valid") continue;
      count[j["label"].get<std::string>()] += 1;
      ++n;
    }
  }
  ASSERT_GT(count["core"], count["non_core"]);
  std::string out_model = (dir_ / "prior.safetensors").string();
  int rc = -1;
  std::string out = run(kBin + " calibrate -q --prior -m " + path_ + " -d " + kData +
                            " --split train,valid -o " + out_model,
                        &rc);
  ASSERT_EQ(rc, 0) << out;
  auto r = nlohmann::json::parse(out);
  EXPECT_EQ(r["records"].get<std::size_t>(), n);
  const std::vector<double> want{1.0, count["core"] / count["non_core"], 1.0};
  auto w = r["class_weights"].get<std::vector<double>>();
  ASSERT_EQ(w.size(), 3u);
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(w[c], want[c], 1e-12) << c;
  auto b = io::Bundle::load(out_model);
  EXPECT_EQ(b.class_weights(), w);

  // An empty name in the list is refused, and nothing is written.
  out = run(kBin + " calibrate -q --prior -m " + path_ + " -d " + kData + " --split train,,valid -o " +
                (dir_ / "y.safetensors").string(),
            &rc, /*keep_stderr=*/true);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("empty name"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir_ / "y.safetensors"));
}
