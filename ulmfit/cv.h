// ulmfit/cv.h — k-fold cross-validation of our recipe: the honest protocol of docs/cross-validation.md.
//
// Folds (make_folds), the same for every contender (tools/reference/cv_peers.py builds the same
// ones for the peers):
//   * the records whose split is "train" or "valid" (fixture/test never);
//   * a paper that exists as several records (`dup_group`) is one unit; its key is the dup_group,
//     else the record's id; a unit's label is that of its first record;
//   * within each label (in label-name order), units are ordered by (FNV-1a 64 of the key, key)
//     and dealt round-robin: fold = rank % k. No RNG.
// Each fold: one classifier per language model (cross_validate's `lms`) is trained with the recipe
// on the other k-1 folds and scored on the fold. The score is that of the model after the LAST
// epoch (classifier-last.safetensors): the held-out fold never chooses anything. The per-epoch
// metrics on it, printed while training, are for watching only. With several LMs (forward +
// backward) their mean probabilities are scored too: the ensemble `ensemble` builds.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/dataset.h"
#include "ulmfit/metrics.h"
#include "ulmfit/pipeline.h"
#include "ulmfit/recipe.h"

namespace ulmfit {

// FNV-1a 64 of the bytes of s.
std::uint64_t fnv1a64(const std::string& s);

// The fold (0..k-1) of each record, by the rule above. Records must have a label; k >= 2.
// Throws std::invalid_argument otherwise, or when a fold would be empty.
std::vector<int> make_folds(const std::vector<io::Record>& records, int k);

struct CvOptions {
  std::vector<std::string> lms;  // LM / encoder / classifier bundles: one classifier each per fold
  int k = 5;
  std::vector<int> only_folds;   // run these folds only (empty: all)
  int threads = 0;               // OpenMP threads for scoring (0: as set)
};

// One contender's figures on one fold.
struct CvScore {
  double accuracy = 0, macro_f1 = 0;
  std::vector<double> f1;  // per label (NaN: the label has no gold record in the fold)
};

struct CvFold {
  int fold = 0;
  std::size_t train_docs = 0, test_docs = 0;
  std::vector<CvScore> members;  // one per LM
  CvScore ensemble;              // mean probabilities of the members (== members[0] for one LM)
  double seconds = 0;
};

struct CvResult {
  std::vector<std::string> labels;
  std::vector<CvFold> folds;
  // {"members": [...], "ensemble": {...}}, each {"accuracy": [mean, sd], "macro_f1": [mean, sd],
  // "f1": {"core": [mean, sd], ...}} with the sample standard deviation over the folds run.
  nlohmann::json summary() const;
  nlohmann::json to_json() const;
};

// Runs the folds into <o.out_dir>/fold-<j>/member-<m>/ (each a train_classifier_from_lm run).
// A fold whose <o.out_dir>/fold-<j>/scores.json exists is read back, not re-run, so a killed
// cross-validation continues where it stopped (with o.resume, an interrupted member resumes from
// its checkpoint). `data`: labeled JSON Lines with `split` (train + valid are used).
CvResult cross_validate(const Recipe& r, const std::string& data, const CvOptions& cv,
                        const RunOptions& o);

}  // namespace ulmfit
