// ulmfit/metrics.h — classification metrics for `validate`.
//
// Conventions:
//  * confusion_matrix[g][p] counts records with gold label g predicted as p;
//  * a class with no gold record is ABSENT: its per-class entry says so (support 0, no
//    precision/recall/F1) and it is left out of the macro average instead of counting as 0;
//  * micro-F1 over single-label multi-class data equals accuracy (every error is one FP + one FN).
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace ulmfit {

struct ClassMetrics {
  std::string label;
  long support = 0;    // gold records of this class
  long predicted = 0;  // records predicted as this class
  bool absent = true;  // support == 0
  std::optional<double> precision, recall, f1;  // empty when absent (precision also when never predicted)
};

struct ClassificationReport {
  std::vector<std::string> labels;
  long n = 0;
  double accuracy = 0, micro_f1 = 0, macro_f1 = 0;
  std::vector<ClassMetrics> per_class;
  std::vector<std::vector<long>> confusion_matrix;

  nlohmann::json to_json() const;
  // Human-readable table: accuracy, F1s, per-class P/R/F1/support, confusion matrix.
  std::string to_text() const;
};

// gold/pred are class indices into `labels`. Throws std::invalid_argument on size mismatch,
// empty input or an index out of range.
ClassificationReport classification_report(const std::vector<int>& gold,
                                           const std::vector<int>& pred,
                                           const std::vector<std::string>& labels);

}  // namespace ulmfit
