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
// Each contender is also scored PRIOR-CORRECTED: its probabilities weighted by
// prior_weights(training folds' labels) (the most frequent class 1, each other class
// max prior / its prior) before the argmax, i.e. the decision a balanced class mix would call for.
// The rule is fixed and its weights come from the training folds only, so the scored fold still
// chooses nothing; which of the two a model ships with is a choice made on the CV table.
#pragma once

#include <array>
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
  // ULMFiT's LM step inside each fold (0: none): before its classifier, each --lm is fine-tuned,
  // label-free, on the TRAINING folds' texts for this many one-cycle epochs at fold_lm_lr
  // (no frozen stage; the LM's vocabulary is kept), into fold-<j>/member-<m>/lm/. One text in
  // ten is held out as its validation (for watching; the last epoch's LM is used). The scored
  // fold's texts are never read, as a new paper is not by the shipped model's LM.
  int fold_lm_epochs = 0;
  double fold_lm_lr = 2e-3;
  // Whether the fold is also scored after every epoch while its classifier trains (the
  // classifier's validation: for watching only, it chooses nothing). Off, the fold is scored
  // once, after the last epoch, as it always is, and training is unchanged (the same
  // probabilities): what is saved is the per-epoch scoring, on a CPU copy of the model, which on
  // --device cuda can take longer than the training itself.
  bool watch = true;
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
  std::vector<double> prior_weights;     // from the training folds' labels
  std::vector<CvScore> members_prior;    // members, prior-corrected
  CvScore ensemble_prior;                // the ensemble, prior-corrected
  double seconds = 0;
};

// Class weights that undo the class balance of `train_labels` (indices into n_classes labels):
// w_c = max_j prior_j / prior_c; a class absent from the labels keeps weight 1. Throws
// std::invalid_argument on empty labels or an index out of range.
std::vector<double> prior_weights(const std::vector<int>& train_labels, std::size_t n_classes);

// Accuracy, macro-F1 and per-class F1 of argmax_c p_c * w_c (w empty: plain argmax) against gold.
CvScore score_probs(const std::vector<std::array<float, 3>>& p, const std::vector<int>& gold,
                    const std::vector<std::string>& labels, const std::vector<double>& w = {});

struct CvResult {
  std::vector<std::string> labels;
  std::vector<CvFold> folds;
  // {"members": [...], "ensemble": {...}, "members_prior": [...], "ensemble_prior": {...}}, each
  // {"accuracy": [mean, sd], "macro_f1": [mean, sd], "f1": {"core": [mean, sd], ...}} with the
  // sample standard deviation over the folds run.
  nlohmann::json summary() const;
  nlohmann::json to_json() const;
};

// Runs the folds into <o.out_dir>/fold-<j>/member-<m>/ (each a train_classifier_from_lm run).
// A fold whose <o.out_dir>/fold-<j>/scores.json exists is read back, not re-run (its
// prior-corrected scores, if it has none, are computed from the members' probs.json and added),
// so a killed cross-validation continues where it stopped (with o.resume, an interrupted member resumes from
// its checkpoint). `data`: labeled JSON Lines with `split` (train + valid are used).
CvResult cross_validate(const Recipe& r, const std::string& data, const CvOptions& cv,
                        const RunOptions& o);

}  // namespace ulmfit
