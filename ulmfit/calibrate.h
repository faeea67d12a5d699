// ulmfit/calibrate.h — class weights (a prior correction, p_c * w_c / sum_j p_j * w_j) that give
// the best macro-F1 on labeled held-out data, and a copy of a bundle that carries them (metadata
// `class_weights`). A classifier trained on one class balance and judged by macro-F1 usually
// predicts the minority class too rarely; this is threshold moving, done once on validation data.
// The weights are searched on a log grid per class (the most frequent class keeps weight 1) by
// coordinate ascent; ties go to the weight nearest 1. With folds >= 2 an honest estimate is made
// too: weights chosen on K-1 folds (record i is in fold i % K), scored on the fold left out,
// pooled.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ulmfit/classifier.h"

namespace ulmfit {

using ClassProbs = std::array<float, 3>;

struct CalibrationOptions {
  double max_weight = 4.0;  // weights are searched in [1/max_weight, max_weight]
  int folds = 2;            // 0: no cross-validated estimate; otherwise >= 2
};

struct CalibrationResult {
  std::vector<double> class_weights;  // one per class
  std::size_t records = 0;
  double macro_f1_before = 0, macro_f1_after = 0, accuracy_after = 0;
  int cv_folds = 0;                   // 0: not estimated
  double cv_macro_f1 = 0, cv_accuracy = 0;
};

// The class predicted from probabilities p with weights w.
int argmax_weighted(const ClassProbs& p, const std::vector<double>& w);

// Chooses the weights on (p, gold). Throws std::invalid_argument on empty input, mismatched
// sizes, a gold label out of range, folds == 1 or folds > records, max_weight < 1.
CalibrationResult calibrate_class_weights(const std::vector<ClassProbs>& p,
                                          const std::vector<int>& gold,
                                          const std::vector<std::string>& labels,
                                          const CalibrationOptions& o = {});

// The raw class probabilities (before any weights the model has) of every text, OpenMP over
// texts, with a progress bar unless quiet.
std::vector<ClassProbs> raw_probabilities(const Classifier& clf, const std::vector<std::string>& texts,
                                          bool quiet);

// Writes (atomically) a copy of bundle `model` with the `class_weights` metadata set to `w` and
// `calibration` set to `note`; checks that the result loads as a bundle.
void write_calibrated_bundle(const std::string& model, const std::string& out,
                             const std::vector<double>& w, const nlohmann::json& note);

}  // namespace ulmfit
