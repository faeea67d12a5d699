// ulmfit/pseudo_label.h — self-training data: a classifier's most confident decisions on
// unlabeled papers, as labeled training records. For each quota LABEL=N in order, the N papers
// with the highest score for LABEL are kept (ties in input order; a paper already taken by an
// earlier quota is skipped). Records with a `split` (labeled data) or a
// `title_matches_labeled_split` (the same paper as a labeled one) are left out. Each paper is
// classified on its own, as `predict` does, so the scores are predict's.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include "io/dataset.h"
#include "ulmfit/classifier.h"
#include "ulmfit/splits.h"

namespace ulmfit {

struct PseudoLabelQuota {
  std::size_t label = 0;  // class index
  std::size_t n = 0;
};
// "core=3500" -> {index of core, 3500}. Throws std::invalid_argument naming the text.
PseudoLabelQuota parse_pseudo_label_quota(const std::string& s, const std::vector<std::string>& labels);

struct PseudoLabels {
  std::vector<io::Record> records;               // the candidates, in input order
  std::vector<std::array<float, 3>> scores;      // per candidate
  std::vector<std::vector<std::size_t>> chosen;  // per quota: candidate indices, best first
  std::vector<PseudoLabelQuota> quotas;
  std::size_t with_split = 0, matching = 0, bad = 0;
};

// Reads `input`, classifies every candidate (threads: 0 = all cores) and selects by `quotas`.
// Progress and warnings go to `log`. Throws std::runtime_error when no record is a candidate.
PseudoLabels pseudo_label(const Classifier& clf, const std::string& input,
                          const std::vector<PseudoLabelQuota>& quotas, int threads,
                          const LogFn& log = {});

// Writes the chosen papers (grouped by quota in order, best first) as JSON Lines training records
// {"id", "title", "abstract" (or "text"), "label", "split": "train", "pseudo_score"}, atomically.
void write_pseudo_labels(const std::string& path, const PseudoLabels& p,
                         const std::vector<std::string>& labels);

}  // namespace ulmfit
