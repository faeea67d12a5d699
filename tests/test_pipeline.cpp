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
#include "train_test_helpers.h"
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
  const ModelConfig cfg = TinyData::sized(ModelConfig::lm(40, 0.7));
  const TinyData data(3, 30, 6);
  const auto& [train, valid, vocab] = data;
  auto stages = lm_finetune_stages(1, 1e-2, 2, 1e-3);  // 3 epochs over 2 stages
  auto train_run = [&](const fs::path& dir, bool resume, int kill_after_epochs) {
    AwdLstmLM lm(cfg);
    nn::Rng rng(7);
    lm.init(rng);
    TrainOptions o = kill_options(dir, resume, 0, 0, -1);
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

// The classifier's batches carry no state from one to the next: its checkpoints inside an
// epoch hold the loader's place, RNG, optimizer and epoch loss, and resume exactly too.
TEST(Pipeline, ClassifierResumeInsideAnEpochContinuesExactly) {
  ModelConfig cfg = TinyData::sized(ModelConfig::classifier(40, 0.5));
  cfg.bptt = 6, cfg.max_len = 18;
  const TinyData data(9, 40, 8);
  const auto& [train, valid, vocab] = data;
  nn::Rng label_rng(10);
  std::vector<std::int32_t> train_y(train.size()), valid_y(valid.size());
  for (auto& y : train_y) y = (std::int32_t)label_rng.below(3);
  for (auto& y : valid_y) y = (std::int32_t)label_rng.below(3);
  const auto stages = classifier_stages(2);  // 5 epochs over 4 stages, 10 batches each
  auto train_run = [&](const fs::path& dir, bool resume, std::int64_t every, std::int64_t kill_at) {
    ClassifierModel m(cfg);
    nn::Rng rng(7);
    m.init(rng);
    const TrainOptions o = kill_options(dir, resume, every, 0, kill_at);
    train_classifier(m, vocab, train, train_y, valid, valid_y, 4, stages, o);
    auto v = m.tensors();
    std::vector<float> w;
    for (const auto& t : v) w.insert(w.end(), t.value.begin(), t.value.end());
    return w;
  };
  fs::path a = fresh_dir("clas_inside_a"), b = fresh_dir("clas_inside_b");
  const auto straight = train_run(a, false, 0, -1);
  for (const std::int64_t kill : {7, 24, 46}) {  // inside epochs 1, 3 (stage 3's first) and 5
    fs::remove_all(b);
    EXPECT_THROW(train_run(b, false, 3, kill), std::runtime_error);
    const nlohmann::json ck = nlohmann::json::parse(std::ifstream(b / "checkpoint.json"));
    ASSERT_GT(ck.value("in_epoch", 0), 0) << ck.dump();
    EXPECT_EQ(ck.at("carry"), "") << ck.dump();
    const auto resumed = train_run(b, true, 3, -1);
    ASSERT_EQ(straight.size(), resumed.size());
    size_t diff = 0;
    for (size_t i = 0; i < straight.size(); ++i) diff += straight[i] != resumed[i];
    EXPECT_EQ(diff, 0u) << "killed at step " << kill << ": " << diff << " weights differ";
  }
  fs::remove_all(a);
  fs::remove_all(b);
}

// Checkpoints inside an epoch (TrainOptions::checkpoint_every_*): a run killed between two of
// them and resumed ends bit-identical to an uninterrupted run without them (the LM's hidden
// state, carried from window to window, is restored with the loader's place and the epoch's
// loss so far). By steps and by time; a damaged carried state is refused with a message.
TEST(Pipeline, ResumeInsideAnEpochContinuesExactly) {
  const ModelConfig cfg = TinyData::sized(ModelConfig::lm(40, 0.7));
  const TinyData data(5, 30, 6);
  const auto& [train, valid, vocab] = data;
  auto stages = lm_finetune_stages(1, 1e-2, 2, 1e-3);  // 3 epochs over 2 stages
  struct Run {
    std::vector<float> w;
    std::vector<double> train_loss;  // per epoch, as the curves record it
  };
  auto train_run = [&](const fs::path& dir, bool resume, std::int64_t every_steps, double every_s,
                       std::int64_t kill_at_step) {
    AwdLstmLM lm(cfg);
    nn::Rng rng(7);
    lm.init(rng);
    TrainOptions o = kill_options(dir, resume, every_steps, every_s, kill_at_step);
    Run r;
    o.on_epoch = [&](const std::string&, int, const std::map<std::string, double>& m) {
      r.train_loss.push_back(m.at("train_loss"));
    };
    train_language_model(lm, vocab, train, valid, 4, 6, stages, o);
    r.w.assign(lm.values().begin(), lm.values().end());
    return r;
  };
  fs::path a = fresh_dir("inside_a"), b = fresh_dir("inside_b");
  const Run straight = train_run(a, false, 0, 0, -1);
  ASSERT_EQ(straight.train_loss.size(), 3u);
  // 3 epochs of ~18 batches: kills inside the frozen stage's epoch, inside the first unfrozen
  // epoch (its first batches: the stage's optimizer state is the checkpoint's), and late.
  struct Kill {
    std::int64_t every_steps;
    double every_s;
    std::int64_t at;
  };
  for (const Kill k : {Kill{4, 0, 7}, Kill{5, 0, 22}, Kill{3, 0, 40}, Kill{0, 1e-9, 9}}) {
    SCOPED_TRACE("checkpoint every " + std::to_string(k.every_steps) + " steps / " +
                 std::to_string(k.every_s) + " s, killed at step " + std::to_string(k.at));
    fs::remove_all(b);
    EXPECT_THROW(train_run(b, false, k.every_steps, k.every_s, k.at), std::runtime_error);
    nlohmann::json ck = nlohmann::json::parse(std::ifstream(b / "checkpoint.json"));
    ASSERT_GT(ck.value("in_epoch", 0), 0) << ck.dump();
    ASSERT_TRUE(fs::exists(b / ck.at("carry").get<std::string>())) << ck.dump();
    const Run resumed = train_run(b, true, k.every_steps, k.every_s, -1);
    ASSERT_EQ(straight.w.size(), resumed.w.size());
    size_t diff = 0;
    for (size_t i = 0; i < straight.w.size(); ++i) diff += straight.w[i] != resumed.w[i];
    EXPECT_EQ(diff, 0u) << diff << " weights differ";
    // The epoch killed inside reports the loss of all its batches, as the straight run does.
    ASSERT_FALSE(resumed.train_loss.empty());
    EXPECT_EQ(resumed.train_loss, std::vector<double>(straight.train_loss.end() - resumed.train_loss.size(),
                                                      straight.train_loss.end()));
    // Finished: the pointer is at the last epoch's end and no carried state is left behind.
    ck = nlohmann::json::parse(std::ifstream(b / "checkpoint.json"));
    EXPECT_EQ(ck.value("in_epoch", 0), 0);
    for (const auto& f : fs::directory_iterator(b))
      EXPECT_NE(f.path().extension(), ".carry") << f.path();
  }
  // A damaged carried state is refused, naming the file's problem.
  fs::remove_all(b);
  EXPECT_THROW(train_run(b, false, 4, 0, 6), std::runtime_error);
  nlohmann::json ck = nlohmann::json::parse(std::ifstream(b / "checkpoint.json"));
  const fs::path carry = b / ck.at("carry").get<std::string>();
  fs::resize_file(carry, fs::file_size(carry) - 4);
  try {
    train_run(b, true, 4, 0, -1);
    ADD_FAILURE() << "resumed from a truncated carry file";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("carried LM state"), std::string::npos) << e.what();
  }
  fs::remove_all(a);
  fs::remove_all(b);
}
