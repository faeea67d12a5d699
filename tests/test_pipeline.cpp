// ctest-labels: cli data
// The original's integration test, ported: the whole pipeline (LM fine-tuning → classifier →
// predict-coreness) on a tiny config and a tiny sample of the real INSPIRE data, through the
// real command-line tool; plus exact --resume of a killed training run.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "cli_helpers.h"
#include "io/bundle.h"
#include "ulmfit/curves.h"
#include "ulmfit/train.h"

namespace fs = std::filesystem;
using namespace ulmfit;
using clitest::fresh_dir;
using clitest::kBin;
using clitest::kData;
using clitest::run;

TEST(Pipeline, TinyEndToEndLikeTheOriginalIntegrationTest) {
  ASSERT_TRUE(fs::exists(kData)) << kData;
  fs::path dir = fresh_dir("pipeline");
  // A tiny sample: the first 100 labeled train-split papers, without their split field.
  clitest::write_sample(dir / "sample.jsonl", 100);
  {
    // Unlabeled-corpus records whose title is a valid or test paper's are left out (they would
    // leak into training); the 80/20 counts below fail if they are not.
    std::ofstream more(dir / "sample.jsonl", std::ios::app);
    for (auto held : {"valid", "test", "valid"})
      more << nlohmann::json{{"title", std::string("A held-out ") + held + " paper"},
                             {"abstract", "We measure the cross section of a process at the LHC."},
                             {"label", "core"},
                             {"title_matches_labeled_split", held}}
                  .dump()
           << "\n";
  }
  int rc = -1;
  std::string out = run(kBin + " train --preset tiny --threads 1 --max-vocab 500 --lm-epochs 2 -q -d " +
                            (dir / "sample.jsonl").string() + " -o " + (dir / "out").string(),
                        &rc);
  ASSERT_EQ(rc, 0) << out;
  auto res = nlohmann::json::parse(out);

  // max_vocab 500 -> 504 tokens (a multiple of 8, fastai's xxfake padding)
  EXPECT_EQ(res["lm"]["vocab_size"].get<int>(), 504);
  auto lm = io::Bundle::load((dir / "out" / "lm" / "lm.safetensors").string());
  EXPECT_EQ(lm.vocab().size(), 504u);
  EXPECT_EQ(lm.vocab()[0], "xxunk");
  EXPECT_EQ(lm.vocab()[8], "xxmaj");

  // train/valid split 80/20
  EXPECT_EQ(res["classifier"]["train_docs"].get<int>(), 80);
  EXPECT_EQ(res["classifier"]["valid_docs"].get<int>(), 20);
  EXPECT_EQ(res["lm"]["train_docs"].get<int>(), 80);
  EXPECT_EQ(res["lm"]["valid_docs"].get<int>(), 20);

  // the LM loss falls from epoch to epoch
  auto curves = Curves::read_csv((dir / "out" / "lm" / "curves.csv").string());
  ASSERT_EQ(curves.points().size(), 2u);
  EXPECT_LT(curves.points()[1].values.at("train_loss"), curves.points()[0].values.at("train_loss"));
  EXPECT_LT(curves.points()[1].values.at("valid_loss"), curves.points()[0].values.at("valid_loss"));
  EXPECT_TRUE(fs::exists(dir / "out" / "lm" / "curves.svg"));
  EXPECT_TRUE(fs::exists(dir / "out" / "classifier" / "checkpoint.json"));

  // predict-coreness returns the three label keys with scores summing to 1
  std::string model = (dir / "out" / "classifier" / "classifier.safetensors").string();
  out = run(kBin + " predict-coreness --model " + model +
                " 'Search for supersymmetry at the LHC' 'We search for squarks and gluinos.'",
            &rc);
  ASSERT_EQ(rc, 0) << out;
  auto p = nlohmann::json::parse(out);
  ASSERT_TRUE(p.contains("prediction"));
  double sum = 0;
  for (auto key : {"rejected", "non_core", "core"}) {
    ASSERT_TRUE(p["scores"].contains(key)) << out;
    double s = p["scores"][key].get<double>();
    EXPECT_GT(s, 0.0);
    sum += s;
  }
  EXPECT_NEAR(sum, 1.0, 1e-5);
  EXPECT_EQ(p["scores"].size(), 3u);

  // validate writes the report keys
  out = run(kBin + " validate -q --threads 1 --model " + model + " -d " +
                (dir / "sample.jsonl").string() + " --report-json " + (dir / "r.json").string(),
            &rc);
  ASSERT_EQ(rc, 0) << out;
  std::ifstream rj(dir / "r.json");
  auto r = nlohmann::json::parse(rj);
  for (auto key : {"accuracy", "macro_f1", "micro_f1", "per_class", "confusion_matrix", "labels"})
    EXPECT_TRUE(r.contains(key)) << key;
  EXPECT_TRUE(r["per_class"]["rejected"]["absent"].get<bool>());
  fs::remove_all(dir);
}

// A run killed after its first epoch and resumed ends bit-identical to an uninterrupted run.
TEST(Pipeline, ResumeContinuesExactly) {
  ModelConfig cfg = ModelConfig::lm(40, 0.7);
  cfg.emb_sz = 8, cfg.n_hid = 12, cfg.n_layers = 2;
  nn::Rng data_rng(3);
  std::vector<Doc> train(30), valid(6);
  for (auto* set : {&train, &valid})
    for (auto& d : *set) {
      d.push_back(2);
      int len = 5 + (int)data_rng.below(20);
      for (int i = 0; i < len; ++i) d.push_back(9 + (int)data_rng.below(31));
    }
  Vocab vocab;
  {
    std::vector<std::string> itos;
    for (int i = 0; i < 40; ++i) itos.push_back("t" + std::to_string(i));
    vocab = Vocab::from_itos(itos);
  }
  auto stages = lm_finetune_stages(1, 1e-2, 2, 1e-3);  // 3 epochs over 2 stages
  auto train_run = [&](const fs::path& dir, bool resume, int kill_after_epochs) {
    AwdLstmLM lm(cfg);
    nn::Rng rng(7);
    lm.init(rng);
    TrainOptions o;
    o.out_dir = dir.string();
    o.quiet = true;
    o.resume = resume;
    o.seed = 11;
    int epochs = 0;
    o.on_epoch = [&](const std::string&, int, const std::map<std::string, double>&) {
      if (++epochs == kill_after_epochs) throw std::runtime_error("killed");
    };
    train_language_model(lm, vocab, train, valid, 4, 6, stages, o);
    std::vector<float> w(lm.values().begin(), lm.values().end());
    return w;
  };
  fs::path a = fresh_dir("resume_a"), b = fresh_dir("resume_b");
  auto straight = train_run(a, false, -1);
  for (int kill = 1; kill <= 2; ++kill) {  // mid-stage and at a stage boundary
    fs::remove_all(b);
    EXPECT_THROW(train_run(b, false, kill), std::runtime_error);
    ASSERT_TRUE(fs::exists(b / "checkpoint.json"));
    auto resumed = train_run(b, true, -1);
    ASSERT_EQ(straight.size(), resumed.size());
    size_t diff = 0;
    for (size_t i = 0; i < straight.size(); ++i) diff += straight[i] != resumed[i];
    EXPECT_EQ(diff, 0u) << "killed after epoch " << kill << ": " << diff << " weights differ";
    auto c = Curves::read_csv((b / "curves.csv").string());
    EXPECT_EQ(c.points().size(), 3u);
  }
  // resuming without a checkpoint is a clear error
  fs::path empty = fresh_dir("resume_none");
  try {
    train_run(empty, true, -1);
    ADD_FAILURE() << "resumed from nothing";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no checkpoint"), std::string::npos) << e.what();
  }
  fs::remove_all(a);
  fs::remove_all(b);
  fs::remove_all(empty);
}
