// ctest-labels: data
// The pipeline as a library call (ulmfit/pipeline.h), without the command-line tool: splits, a
// tiny whole run whose bundles store the recipe, logging only through the callback, resume.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli_helpers.h"
#include "io/bundle.h"
#include "nn/backend.h"
#include "ulmfit/calibrate.h"
#include "ulmfit/pipeline.h"
#include "ulmfit/recipe.h"

namespace fs = std::filesystem;
using namespace ulmfit;

namespace {

void write_jsonl(const fs::path& p, const std::vector<nlohmann::json>& recs) {
  std::ofstream out(p);
  for (auto& r : recs) out << r.dump() << "\n";
}

nlohmann::json rec(const std::string& title, const std::string& label, const std::string& split = "") {
  nlohmann::json j{{"title", title}, {"abstract", "We study the " + title + " at the LHC."}, {"label", label}};
  if (!split.empty()) j["split"] = split;
  return j;
}

bool has_line(const std::vector<std::string>& log, const std::string& prefix) {
  for (auto& l : log)
    if (l.rfind(prefix, 0) == 0) return true;
  return false;
}

}  // namespace

TEST(PipelineApi, SplitsFollowTheSplitFieldAndLeaveHeldOutTitlesOut) {
  fs::path dir = clitest::fresh_dir("pipeline_api_splits");
  std::vector<nlohmann::json> recs = {rec("a", "core", "train"), rec("b", "rejected", "valid"),
                                      rec("c", "core", "test"),  rec("d", "core", "fixture")};
  for (int i = 0; i < 10; ++i) recs.push_back(rec("free " + std::to_string(i), "non_core"));
  auto held = rec("held", "core");
  held["title_matches_labeled_split"] = "test";
  recs.push_back(held);
  write_jsonl(dir / "d.jsonl", recs);
  std::vector<std::string> log;
  auto s = read_sides({(dir / "d.jsonl").string()}, 0.2, 42, true,
                      [&](const std::string& l) { log.push_back(l); });
  EXPECT_EQ(s.train.size(), 1u + 8u);
  EXPECT_EQ(s.valid.size(), 1u + 2u);
  EXPECT_EQ(s.skipped, 2u);
  EXPECT_EQ(s.held_out_matches, 1u);
  EXPECT_EQ(s.train_labels.size(), s.train.size());
  EXPECT_TRUE(has_line(log, "data: 9 train / 3 valid documents")) << (log.empty() ? "" : log[0]);
  // Same seed, same split; a plain-text corpus has no labels.
  auto again = read_sides({(dir / "d.jsonl").string()}, 0.2, 42, true);
  EXPECT_EQ(again.valid, s.valid);
  { std::ofstream(dir / "c.txt") << "some text\n\nmore text\n"; }
  EXPECT_THROW(read_sides({(dir / "c.txt").string()}, 0.2, 42, true), std::runtime_error);
  EXPECT_EQ(read_sides({(dir / "c.txt").string()}, 0.5, 42, false).train.size() +
                read_sides({(dir / "c.txt").string()}, 0.5, 42, false).valid.size(),
            2u);
  // An LM reads text only: labels that are not ours (IMDb's) are no error. A general corpus
  // (pretraining) shares records of other splits ("unsup") by valid_pct; "test" is never read.
  std::vector<nlohmann::json> imdb = {rec("r1", "pos", "train"), rec("r2", "neg", "test"),
                                      rec("r3", "unsup", "unsup"), rec("r4", "unsup", "unsup")};
  write_jsonl(dir / "imdb.jsonl", imdb);
  const std::string f = (dir / "imdb.jsonl").string();
  auto lab = read_sides({(dir / "d.jsonl").string(), f}, 0.2, 42, true);
  EXPECT_EQ(lab.bad, 4u);  // pos, neg, unsup: not INSPIRE's labels
  auto lm = read_sides({f}, 0.0, 42, false);
  EXPECT_EQ(lm.bad, 0u);
  EXPECT_EQ(lm.train.size(), 1u);  // r1; the unsup records are another dataset's split
  EXPECT_EQ(lm.skipped, 3u);
  EXPECT_EQ(lm.train_labels, std::vector<std::int32_t>{-1});
  auto general = read_sides({f}, 0.0, 42, false, {}, /*general_corpus=*/true);
  EXPECT_EQ(general.bad, 0u);
  EXPECT_EQ(general.train.size(), 3u);  // r1, r3, r4
  EXPECT_EQ(general.skipped, 1u);       // r2: test
  for (const auto& t : general.train) EXPECT_EQ(t.find("r2"), std::string::npos) << t;
}

TEST(PipelineApi, TinyRunStoresTheRecipeInEveryBundleAndPrintsNothing) {
  ASSERT_TRUE(fs::exists(clitest::kData)) << clitest::kData;
  nn::set_num_threads(1);  // as the CLI pipeline test: tiny models gain nothing from threads
  fs::path dir = clitest::fresh_dir("pipeline_api_run");
  clitest::write_sample(dir / "sample.jsonl", 30);
  Recipe r = Recipe::from_preset("tiny");
  r.max_vocab = 300;
  r.lm_epochs = 1;
  r.clas_epochs = 1;
  r.clas_lr = 1e-2;
  PipelineInputs in;
  in.data = {(dir / "sample.jsonl").string()};
  RunOptions o;
  o.out_dir = (dir / "out").string();
  o.quiet = true;
  o.provenance = make_provenance("test", in.data, "test_pipeline_api");
  std::vector<std::string> log;
  o.log = [&](const std::string& l) { log.push_back(l); };
  int epochs_seen = 0;
  o.on_epoch = [&](const std::string&, int, const std::map<std::string, double>&) { ++epochs_seen; };

  testing::internal::CaptureStderr();
  testing::internal::CaptureStdout();
  auto res = run_pipeline(r, in, o);
  std::string out = testing::internal::GetCapturedStdout();
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(out, "");
  EXPECT_EQ(err, "");  // quiet: everything went through the callback

  ASSERT_TRUE(res.lm.has_value());
  EXPECT_FALSE(res.pretrain.has_value());
  EXPECT_EQ(res.lm->train_docs, 24u);
  EXPECT_EQ(res.lm->valid_docs, 6u);
  EXPECT_EQ(res.classifier.train_docs, 24u);
  EXPECT_EQ(res.classifier.valid_docs, 6u);
  EXPECT_TRUE(std::isfinite(res.lm->lm.valid_loss));
  EXPECT_EQ(res.model_path, (dir / "out" / "classifier" / "classifier.safetensors").string());
  EXPECT_TRUE(has_line(log, "data: 24 train / 6 valid"));
  EXPECT_TRUE(has_line(log, "vocab: "));
  EXPECT_EQ(epochs_seen, 1 + 4);  // LM from scratch: the unfrozen stage only; classifier: 4 stages

  // Every bundle written stores the recipe it was trained with.
  for (auto p : {dir / "out" / "lm" / "lm.safetensors", fs::path(res.model_path),
                 fs::path(res.classifier.clas.last_model_path)}) {
    auto b = io::Bundle::load(p.string());
    auto stored = recipe_of(b);
    ASSERT_TRUE(stored.has_value()) << p;
    EXPECT_EQ(*stored, r) << p << ": " << b.metadata().at(kRecipeMetadataKey);
    EXPECT_EQ(nlohmann::json::parse(b.provenance())["command"], "test");
  }
  auto lm = io::Bundle::load((dir / "out" / "lm" / "lm.safetensors").string());
  EXPECT_EQ(lm.config().emb_sz, r.emb_sz);

  // Run again with resume: the finished LM is not trained again.
  log.clear();
  RunOptions o2 = o;
  o2.resume = true;
  o2.on_epoch = nullptr;
  auto again = run_pipeline(r, in, o2);
  EXPECT_FALSE(again.lm.has_value());
  EXPECT_TRUE(has_line(log, "finetune-lm: ")) << log.size();
}

TEST(PipelineApi, ClassifierStoresTheSizesOfItsLmAndBadRecipesAreRefused) {
  ASSERT_TRUE(fs::exists(clitest::kData)) << clitest::kData;
  nn::set_num_threads(1);
  fs::path dir = clitest::fresh_dir("pipeline_api_clas");
  clitest::write_sample(dir / "sample.jsonl", 40);
  Recipe r = Recipe::from_preset("tiny");
  r.max_vocab = 200;
  r.lm_epochs = 1;
  RunOptions o;
  o.quiet = true;
  o.max_steps = 2;
  o.out_dir = (dir / "lm").string();
  std::vector<std::string> data = {(dir / "sample.jsonl").string()};
  auto lm = finetune_language_model(r, data, "", o);
  EXPECT_EQ(lm.lm.steps, 2);
  // The classifier recipe claims other sizes: the LM's win, and the stored recipe says so.
  Recipe rc = r;
  rc.emb_sz = 999;
  rc.clas_epochs = 0;
  o.out_dir = (dir / "clas").string();
  auto c = train_classifier_from_lm(rc, lm.lm.model_path, data, o);
  auto stored = recipe_of(io::Bundle::load(c.clas.model_path));
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->emb_sz, r.emb_sz);
  EXPECT_EQ(stored->clas_epochs, 0);

  Recipe bad = r;
  bad.lm_bs = 0;
  o.out_dir = (dir / "bad").string();
  try {
    finetune_language_model(bad, data, "", o);
    ADD_FAILURE() << "a zero batch size was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("lm_bs"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "bad"));
}

TEST(PipelineApi, CalibrationRaisesAnUnderPredictedClass) {
  // Class 2 is always second best by a small margin: without weights it is never predicted.
  std::vector<ClassProbs> p;
  std::vector<int> gold;
  for (int i = 0; i < 30; ++i) {
    int g = i % 3;
    ClassProbs q{0.1f, 0.1f, 0.1f};
    if (g == 2) q = {0.45f, 0.1f, 0.45f - 0.02f};
    else q[g] = 0.8f;
    p.push_back(q);
    gold.push_back(g);
  }
  std::vector<std::string> labels = {"core", "non_core", "rejected"};
  CalibrationOptions o;
  o.folds = 3;
  auto r = calibrate_class_weights(p, gold, labels, o);
  EXPECT_LT(r.macro_f1_before, 0.7);
  EXPECT_DOUBLE_EQ(r.macro_f1_after, 1.0);
  EXPECT_GT(r.class_weights[2], 1.0);
  EXPECT_EQ(r.cv_folds, 3);
  EXPECT_EQ(r.records, 30u);
  EXPECT_EQ(argmax_weighted(p[2], r.class_weights), 2);
  o.folds = 1;
  EXPECT_THROW(calibrate_class_weights(p, gold, labels, o), std::invalid_argument);
  EXPECT_THROW(calibrate_class_weights({}, {}, labels, {}), std::invalid_argument);
  gold[0] = 7;
  EXPECT_THROW(calibrate_class_weights(p, gold, labels, {}), std::invalid_argument);
}
