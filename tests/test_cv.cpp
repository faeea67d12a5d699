// ctest-labels: data
// K-fold cross-validation (ulmfit/cv.h): the folds are those of tools/reference/cv_peers.py (so our
// recipe and the peers are scored on the same papers), grouped and stratified; a tiny run scores
// every fold, writes its files atomically, and a re-run reads the scored folds back; the LM step
// inside each fold reads only the training folds' texts and keeps the LM's vocabulary.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cli_helpers.h"
#include "io/bundle.h"
#include "nn/backend.h"
#include "ulmfit/classifier.h"
#include "ulmfit/cv.h"
#include "ulmfit/labels.h"
#include "ulmfit/splits.h"

namespace fs = std::filesystem;
using namespace ulmfit;

namespace {

io::Record rec(const std::string& id, const std::string& label, const std::string& group = "") {
  io::Record r;
  r.id = id;
  r.label = label;
  r.dup_group = group;
  r.line = 1;
  return r;
}

}  // namespace

TEST(CvFolds, Fnv1aMatchesTheReferenceValues) {
  // The FNV-1a 64 test vectors (offset basis; "a"; "foobar").
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(fnv1a64("foobar"), 0x85944171f73967e8ULL);
}

TEST(CvFolds, DuplicatesStayTogetherAndLabelsAreStratified) {
  std::vector<io::Record> rs;
  for (int i = 0; i < 40; ++i) rs.push_back(rec("c" + std::to_string(i), "core"));
  for (int i = 0; i < 13; ++i) rs.push_back(rec("n" + std::to_string(i), "non_core"));
  // three records of one paper, two of another
  rs.push_back(rec("d1", "core", "g1"));
  rs.push_back(rec("d2", "core", "g1"));
  rs.push_back(rec("d3", "core", "g1"));
  rs.push_back(rec("e1", "non_core", "g2"));
  rs.push_back(rec("e2", "non_core", "g2"));
  auto f = make_folds(rs, 5);
  ASSERT_EQ(f.size(), rs.size());
  const std::size_t n = rs.size();
  EXPECT_EQ(f[n - 5], f[n - 4]);
  EXPECT_EQ(f[n - 4], f[n - 3]);
  EXPECT_EQ(f[n - 2], f[n - 1]);
  // units per label per fold differ by at most one: 41 core units -> 9,8,8,8,8; 14 non_core -> 3,3,3,3,2
  std::map<std::string, std::map<int, std::set<std::string>>> units;
  for (std::size_t i = 0; i < n; ++i)
    units[rs[i].label][f[i]].insert(rs[i].dup_group.empty() ? rs[i].id : rs[i].dup_group);
  for (auto& [label, per_fold] : units) {
    std::size_t lo = 1000, hi = 0;
    for (int j = 0; j < 5; ++j) {
      lo = std::min(lo, per_fold[j].size());
      hi = std::max(hi, per_fold[j].size());
    }
    EXPECT_LE(hi - lo, 1u) << label;
  }
  // deterministic, and independent of the records' order
  EXPECT_EQ(make_folds(rs, 5), f);
  std::vector<io::Record> rev(rs.rbegin(), rs.rend());
  auto fr = make_folds(rev, 5);
  for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(fr[n - 1 - i], f[i]) << rs[i].id;
}

TEST(CvFolds, BadInputIsNamed) {
  std::vector<io::Record> rs = {rec("a", "core"), rec("b", "core"), rec("", "non_core")};
  rs[2].line = 7;
  try {
    make_folds(rs, 2);
    ADD_FAILURE() << "a record without id or dup_group was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("line 7"), std::string::npos) << e.what();
  }
  EXPECT_THROW(make_folds({rec("a", "core"), rec("b", "core")}, 1), std::invalid_argument);
  EXPECT_THROW(make_folds({rec("a", "core"), rec("b", "core")}, 3), std::invalid_argument);  // empty fold
}

// The folds of the real train + valid records equal those cv_peers.py wrote. Fixture:
//   python3 -c "import sys,json; sys.path.insert(0,'tools/reference'); from cv_peers import make_folds;
//   rows=[json.loads(l) for l in open('../shared/data/labeled/inspire_labeled.jsonl')];
//   rows=[r for r in rows if r.get('split') in ('train','valid')];
//   open('tests/fixtures/cv_folds_k5.txt','w').write(''.join(map(str,make_folds(rows,5)))+'\n')"
TEST(CvFolds, EqualThePeersFoldsOnTheRealData) {
  ASSERT_TRUE(fs::exists(clitest::kData)) << clitest::kData;
  const std::vector<std::string> labels(kLabels.begin(), kLabels.end());
  std::vector<io::Record> rs;
  for (auto& r : read_labeled(clitest::kData, "", labels))
    if (r.split == "train" || r.split == "valid") rs.push_back(std::move(r));
  std::ifstream in(std::string(INSPIRE_SOURCE_DIR) + "/tests/fixtures/cv_folds_k5.txt");
  ASSERT_TRUE(in);
  std::string want;
  std::getline(in, want);
  auto f = make_folds(rs, 5);
  ASSERT_EQ(f.size(), want.size());
  std::size_t differ = 0;
  for (std::size_t i = 0; i < f.size(); ++i) differ += f[i] != want[i] - '0';
  EXPECT_EQ(differ, 0u);
}

TEST(CvPrior, WeightsUndoTheClassBalance) {
  // 3 core, 1 non_core, no rejected: non_core weighs 3, the absent class keeps 1.
  auto w = prior_weights({2, 2, 1, 2}, 3);
  ASSERT_EQ(w.size(), 3u);
  EXPECT_DOUBLE_EQ(w[0], 1.0);
  EXPECT_DOUBLE_EQ(w[1], 3.0);
  EXPECT_DOUBLE_EQ(w[2], 1.0);
  EXPECT_THROW(prior_weights({}, 3), std::invalid_argument);
  EXPECT_THROW(prior_weights({0, 3}, 3), std::invalid_argument);
  EXPECT_THROW(prior_weights({-1}, 3), std::invalid_argument);
}

TEST(CvPrior, WeightsMoveTheDecision) {
  const std::vector<std::string> labels{"rejected", "non_core", "core"};
  // Two non_core papers the model leans core on (0.6 / 0.4), one clear core paper.
  std::vector<std::array<float, 3>> p{{0.f, 0.4f, 0.6f}, {0.f, 0.45f, 0.55f}, {0.f, 0.1f, 0.9f}};
  std::vector<int> gold{1, 1, 2};
  auto plain = score_probs(p, gold, labels);
  EXPECT_NEAR(plain.accuracy, 1.0 / 3, 1e-12);
  auto fixed = score_probs(p, gold, labels, {1.0, 3.0, 1.0});  // 1.2 > 0.6, 1.35 > 0.55, 0.3 < 0.9
  EXPECT_DOUBLE_EQ(fixed.accuracy, 1.0);
  EXPECT_DOUBLE_EQ(fixed.macro_f1, 1.0);
  EXPECT_THROW(score_probs(p, {1, 2}, labels), std::invalid_argument);
  EXPECT_THROW(score_probs(p, gold, labels, {1.0, 2.0}), std::invalid_argument);
}

// 36 labeled papers of the real data (train / valid splits, ids, one paper as two records)
// plus one `test` paper, in <dir>/data.jsonl, and a tiny LM fine-tuned on them for 2 steps.
struct TinyCvSetup {
  std::string data, lm;
  Recipe r = Recipe::from_preset("tiny");
  explicit TinyCvSetup(const fs::path& dir) {
    {
      std::ifstream in(clitest::kData);
      std::ofstream out(dir / "data.jsonl");
      std::string line;
      int n = 0;
      while (n < 36 && std::getline(in, line)) {
        auto j = nlohmann::json::parse(line);
        if (j["split"] != "train" && j["split"] != "valid") continue;
        nlohmann::json o{{"id", j["id"]}, {"title", j["title"]}, {"abstract", j["abstract"]},
                         {"label", j["label"]}, {"split", j["split"]}};
        if (n < 2) o["dup_group"] = "same-paper";
        out << o.dump() << "\n";
        ++n;
      }
      out << nlohmann::json{{"id", "t1"}, {"title", "held back"}, {"abstract", "never used"},
                            {"label", "core"}, {"split", "test"}}.dump()
          << "\n";
    }
    r.max_vocab = 200;
    r.clas_epochs = 1;
    RunOptions o;
    o.quiet = true;
    o.out_dir = (dir / "lm").string();
    data = (dir / "data.jsonl").string();
    o.max_steps = 2;
    lm = finetune_language_model(r, {data}, "", o).lm.model_path;
  }
};

// cv of one fold of three, one classifier on the setup's LM.
CvOptions one_fold_of_three(const TinyCvSetup& setup, int fold) {
  CvOptions cv;
  cv.lms = {setup.lm};
  cv.k = 3;
  cv.only_folds = {fold};
  return cv;
}

TEST(CrossValidate, TinyRunScoresEveryFoldAndReadsThemBack) {
  ASSERT_TRUE(fs::exists(clitest::kData)) << clitest::kData;
  nn::set_num_threads(1);
  fs::path dir = clitest::fresh_dir("cv_tiny");
  const TinyCvSetup setup(dir);
  const Recipe& r = setup.r;
  const std::string& data = setup.data;
  RunOptions o;
  o.quiet = true;
  CvOptions cv;
  cv.lms = {setup.lm, setup.lm};
  cv.k = 3;
  o.out_dir = (dir / "cv").string();
  std::vector<std::string> log;
  o.log = [&](const std::string& l) { log.push_back(l); };
  auto res = cross_validate(r, data, cv, o);
  ASSERT_EQ(res.folds.size(), 3u);
  std::size_t scored = 0;
  for (auto& f : res.folds) {
    EXPECT_EQ(f.train_docs + f.test_docs, 36u);  // the test-split paper is never used
    scored += f.test_docs;
    ASSERT_EQ(f.members.size(), 2u);
    EXPECT_TRUE(fs::exists(dir / "cv" / ("fold-" + std::to_string(f.fold)) / "scores.json"));
    EXPECT_TRUE(fs::exists(dir / "cv" / ("fold-" + std::to_string(f.fold)) / "member-1" / "probs.json"));
    for (auto& s : f.members) {
      EXPECT_GE(s.accuracy, 0.0);
      EXPECT_LE(s.accuracy, 1.0);
    }
    // the same LM and seed twice: the same classifier, so the ensemble scores as each member
    EXPECT_DOUBLE_EQ(f.members[0].accuracy, f.members[1].accuracy);
    EXPECT_DOUBLE_EQ(f.ensemble.macro_f1, f.members[0].macro_f1);
  }
  EXPECT_EQ(scored, 36u);  // every paper scored exactly once
  auto s = res.summary();
  ASSERT_EQ(s["members"].size(), 2u);
  double mean = 0;
  for (auto& f : res.folds) mean += f.ensemble.accuracy / 3;
  EXPECT_NEAR(s["ensemble"]["accuracy"][0].get<double>(), mean, 1e-12);

  // Re-run: every fold is read back, nothing is trained.
  log.clear();
  auto again = cross_validate(r, data, cv, o);
  ASSERT_EQ(again.folds.size(), 3u);
  for (int j = 0; j < 3; ++j) EXPECT_DOUBLE_EQ(again.folds[j].ensemble.accuracy, res.folds[j].ensemble.accuracy);
  int read_back = 0;
  for (auto& l : log) read_back += l.find("done before") != std::string::npos;
  EXPECT_EQ(read_back, 3);

  // Prior-corrected scores: weights from the training folds' labels, read back as written, and
  // computed from probs.json for a fold scored before they existed.
  ASSERT_TRUE(s.contains("ensemble_prior"));
  ASSERT_EQ(s["members_prior"].size(), 2u);
  for (auto& f : res.folds) {
    ASSERT_EQ(f.prior_weights.size(), 3u);
    ASSERT_EQ(f.members_prior.size(), 2u);
    EXPECT_DOUBLE_EQ(*std::min_element(f.prior_weights.begin(), f.prior_weights.end()), 1.0);
    EXPECT_DOUBLE_EQ(f.ensemble_prior.macro_f1, f.members_prior[0].macro_f1);
  }
  for (int j = 0; j < 3; ++j) {
    EXPECT_EQ(again.folds[j].prior_weights, res.folds[j].prior_weights);
    EXPECT_DOUBLE_EQ(again.folds[j].ensemble_prior.macro_f1, res.folds[j].ensemble_prior.macro_f1);
  }
  const fs::path sc = dir / "cv" / "fold-1" / "scores.json";
  nlohmann::json old;
  std::ifstream(sc) >> old;
  for (const char* key : {"prior_weights", "members_prior", "ensemble_prior"}) old.erase(key);
  std::ofstream(sc) << old.dump();
  auto upgraded = cross_validate(r, data, cv, o);
  EXPECT_EQ(upgraded.folds[1].prior_weights, res.folds[1].prior_weights);
  EXPECT_DOUBLE_EQ(upgraded.folds[1].ensemble_prior.accuracy, res.folds[1].ensemble_prior.accuracy);
  EXPECT_DOUBLE_EQ(upgraded.folds[1].members_prior[1].macro_f1, res.folds[1].members_prior[1].macro_f1);
  nlohmann::json rewritten;
  std::ifstream(sc) >> rewritten;
  EXPECT_TRUE(rewritten.contains("ensemble_prior"));

  // A different number of LMs in the same directory is refused, naming the file.
  cv.lms = {setup.lm};
  try {
    cross_validate(r, data, cv, o);
    ADD_FAILURE() << "a directory of another run was reused";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("scores.json"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

// The final model of a recipe measured by cv (train-classifier --fit-all): trained on every train
// and valid paper (the test paper never), no validation, the last epoch's model.
TEST(CrossValidate, FitAllTrainsOnTrainAndValidWithoutValidation) {
  ASSERT_TRUE(fs::exists(clitest::kData)) << clitest::kData;
  nn::set_num_threads(1);
  fs::path dir = clitest::fresh_dir("cv_fit_all");
  const TinyCvSetup setup(dir);
  RunOptions o;
  o.quiet = true;
  o.out_dir = (dir / "final").string();
  o.fit_all = true;
  auto res = train_classifier_from_lm(setup.r, setup.lm, std::vector<std::string>{setup.data}, o);
  EXPECT_EQ(res.train_docs, 36u);
  EXPECT_EQ(res.valid_docs, 0u);
  EXPECT_EQ(res.clas.best_epoch, -1);
  EXPECT_FALSE(fs::exists(dir / "final" / "best.safetensors"));
  auto bytes = [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  ASSERT_TRUE(fs::exists(res.clas.model_path));
  EXPECT_EQ(bytes(res.clas.model_path), bytes(res.clas.last_model_path));
  EXPECT_NO_THROW(Classifier::load(res.clas.model_path));

  // Without --fit-all, no validation data is an error, not a model chosen on nothing.
  Sides only_train;
  only_train.train = {"a paper about quarks", "another about gluons"};
  only_train.train_labels = {1, 2};
  o.fit_all = false;
  o.out_dir = (dir / "no_valid").string();
  try {
    train_classifier_from_lm(setup.r, setup.lm, only_train, o);
    ADD_FAILURE() << "trained without validation data";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("no validation"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

// cv --no-watch: the fold is not scored after every epoch, and nothing else changes: the same
// probabilities (training never reads the fold), no per-epoch scores in the curves.
TEST(CrossValidate, UnwatchedFoldScoresTheSameWithoutPerEpochScores) {
  ASSERT_TRUE(fs::exists(clitest::kData)) << clitest::kData;
  nn::set_num_threads(1);
  fs::path dir = clitest::fresh_dir("cv_no_watch");
  TinyCvSetup setup(dir);
  setup.r.clas_epochs = 2;  // more than one epoch, so that the watched run scores in between
  RunOptions o;
  o.quiet = true;
  CvOptions cv = one_fold_of_three(setup, 2);
  o.out_dir = (dir / "watched").string();
  auto watched = cross_validate(setup.r, setup.data, cv, o);
  cv.watch = false;
  o.out_dir = (dir / "unwatched").string();
  auto unwatched = cross_validate(setup.r, setup.data, cv, o);
  auto text = [](const fs::path& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const fs::path member = fs::path("fold-2") / "member-0";
  const std::string probs = text(dir / "watched" / member / "probs.json");
  ASSERT_FALSE(probs.empty());
  EXPECT_EQ(text(dir / "unwatched" / member / "probs.json"), probs);
  EXPECT_DOUBLE_EQ(unwatched.folds[0].members[0].macro_f1, watched.folds[0].members[0].macro_f1);
  EXPECT_EQ(unwatched.folds[0].test_docs, watched.folds[0].test_docs);
  EXPECT_NE(text(dir / "watched" / member / "curves.csv").find("valid_macro_f1"), std::string::npos);
  EXPECT_EQ(text(dir / "unwatched" / member / "curves.csv").find("valid_macro_f1"), std::string::npos);
  fs::remove_all(dir);
}

// ULMFiT's LM step inside each fold (--fold-lm-epochs): the LM is fine-tuned, label-free, on the
// training folds' texts only, keeps its vocabulary, and the fold's classifier is trained on it.
TEST(CrossValidate, FoldLmStepFineTunesOnTheTrainingFoldsOnly) {
  ASSERT_TRUE(fs::exists(clitest::kData)) << clitest::kData;
  nn::set_num_threads(1);
  fs::path dir = clitest::fresh_dir("cv_fold_lm");
  const TinyCvSetup setup(dir);
  RunOptions o;
  o.quiet = true;
  CvOptions cv = one_fold_of_three(setup, 1);
  o.out_dir = (dir / "plain").string();
  auto plain = cross_validate(setup.r, setup.data, cv, o);

  cv.fold_lm_epochs = 1;
  o.out_dir = (dir / "fold_lm").string();
  std::vector<std::string> log;
  o.log = [&](const std::string& l) { log.push_back(l); };
  auto stepped = cross_validate(setup.r, setup.data, cv, o);
  ASSERT_EQ(stepped.folds.size(), 1u);
  const std::size_t train_docs = stepped.folds[0].train_docs;
  EXPECT_EQ(train_docs + stepped.folds[0].test_docs, 36u);
  // The LM read the training folds' texts, 1 in 10 held out for its validation.
  const std::string want = "fine-tuned on " + std::to_string(train_docs - train_docs / 10) +
                           " training-fold texts (" + std::to_string(train_docs / 10) + " validate)";
  EXPECT_TRUE(std::any_of(log.begin(), log.end(),
                          [&](const std::string& l) { return l.find(want) != std::string::npos; }))
      << "no log line with: " << want;
  const fs::path lm = dir / "fold_lm" / "fold-1" / "member-0" / "lm" / "lm.safetensors";
  ASSERT_TRUE(fs::exists(lm));
  auto before = io::Bundle::load(setup.lm), after = io::Bundle::load(lm.string());
  EXPECT_EQ(after.vocab(), before.vocab());  // kept, not rebuilt from the fold's texts
  auto a = after.tensor("0.encoder.weight"), b = before.tensor("0.encoder.weight");
  ASSERT_EQ(a.numel(), b.numel());
  EXPECT_FALSE(std::equal(a.data, a.data + a.numel(), b.data)) << "the LM step did not train";
  // ... and the classifier trained on it: other probabilities than without the step.
  auto probs = [](const fs::path& p) {
    nlohmann::json j;
    std::ifstream(p) >> j;
    return j;
  };
  EXPECT_NE(probs(dir / "fold_lm" / "fold-1" / "member-0" / "probs.json"),
            probs(dir / "plain" / "fold-1" / "member-0" / "probs.json"));

  // A fold whose member is re-run uses the LM already fine-tuned.
  fs::remove(dir / "fold_lm" / "fold-1" / "scores.json");
  fs::remove(dir / "fold_lm" / "fold-1" / "member-0" / "probs.json");
  const auto stamp = fs::last_write_time(lm);
  auto again = cross_validate(setup.r, setup.data, cv, o);
  EXPECT_EQ(fs::last_write_time(lm), stamp);
  EXPECT_DOUBLE_EQ(again.folds[0].members[0].macro_f1, stepped.folds[0].members[0].macro_f1);

  cv.fold_lm_epochs = -1;
  EXPECT_THROW(cross_validate(setup.r, setup.data, cv, o), std::invalid_argument);
  fs::remove_all(dir);
}

// finetune-lm --keep-vocab: the pretrained LM's vocabulary as it is, whatever the data's counts.
TEST(FinetuneKeepVocab, KeepsThePretrainedVocabulary) {
  ASSERT_TRUE(fs::exists(clitest::kData)) << clitest::kData;
  nn::set_num_threads(1);
  fs::path dir = clitest::fresh_dir("cv_keep_vocab");
  const TinyCvSetup setup(dir);
  Recipe r = setup.r;
  r.max_vocab = 30;  // a vocabulary built from the data would be this small
  r.lm_frozen_epochs = 0;
  RunOptions o;
  o.quiet = true;
  o.max_steps = 2;
  o.out_dir = (dir / "kept").string();
  auto kept = finetune_language_model(r, {setup.data}, setup.lm, o, /*keep_vocab=*/true);
  o.out_dir = (dir / "built").string();
  auto built = finetune_language_model(r, {setup.data}, setup.lm, o);
  const auto pre = io::Bundle::load(setup.lm).vocab();
  EXPECT_EQ(io::Bundle::load(kept.lm.model_path).vocab(), pre);
  EXPECT_EQ(kept.vocab_size, pre.size());
  EXPECT_LT(built.vocab_size, pre.size());
  o.out_dir = (dir / "none").string();
  try {
    finetune_language_model(r, {setup.data}, "", o, true);
    ADD_FAILURE() << "kept the vocabulary of no LM";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--pretrained"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}
