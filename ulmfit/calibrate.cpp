#include "ulmfit/calibrate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "io/bundle.h"
#include "io/safetensors.h"
#include "ulmfit/metrics.h"
#include "ulmfit/progress.h"

namespace ulmfit {

int argmax_weighted(const ClassProbs& p, const std::vector<double>& w) {
  int best = 0;
  for (int c = 1; c < 3; ++c)
    if ((double)p[c] * w[c] > (double)p[best] * w[best]) best = c;
  return best;
}

namespace {

double macro_f1(const std::vector<ClassProbs>& p, const std::vector<int>& gold,
                const std::vector<std::size_t>& idx, const std::vector<double>& w,
                const std::vector<std::string>& labels) {
  std::vector<int> g, q;
  for (auto i : idx) g.push_back(gold[i]), q.push_back(argmax_weighted(p[i], w));
  return classification_report(g, q, labels).macro_f1;
}

// Coordinate ascent over a log grid in [1/max_w, max_w]; the most frequent present class keeps 1.
std::vector<double> fit(const std::vector<ClassProbs>& p, const std::vector<int>& gold,
                        const std::vector<std::size_t>& idx, const std::vector<std::string>& labels,
                        double max_w) {
  std::vector<long> count(3, 0);
  for (auto i : idx) count[gold[i]]++;
  const int ref = (int)(std::max_element(count.begin(), count.end()) - count.begin());
  std::vector<double> w(3, 1.0);
  constexpr int kSteps = 60;  // each side of 1
  for (int round = 0; round < 3; ++round)
    for (int c = 0; c < 3; ++c) {
      if (c == ref || count[c] == 0) continue;
      double best_w = w[c], best = macro_f1(p, gold, idx, w, labels);
      for (int s = -kSteps; s <= kSteps; ++s) {
        std::vector<double> t = w;
        t[c] = std::exp(std::log(max_w) * s / kSteps);
        double f = macro_f1(p, gold, idx, t, labels);
        if (f > best + 1e-12 || (std::abs(f - best) <= 1e-12 &&
                                 std::abs(std::log(t[c])) < std::abs(std::log(best_w)))) {
          best = f;
          best_w = t[c];
        }
      }
      w[c] = best_w;
    }
  return w;
}

}  // namespace

CalibrationResult calibrate_class_weights(const std::vector<ClassProbs>& p,
                                          const std::vector<int>& gold,
                                          const std::vector<std::string>& labels,
                                          const CalibrationOptions& o) {
  if (p.empty()) throw std::invalid_argument("calibrate: no records");
  if (p.size() != gold.size())
    throw std::invalid_argument("calibrate: " + std::to_string(p.size()) + " predictions but " +
                                std::to_string(gold.size()) + " labels");
  if (labels.size() != 3) throw std::invalid_argument("calibrate: needs the 3 class labels");
  for (std::size_t i = 0; i < gold.size(); ++i)
    if (gold[i] < 0 || gold[i] >= 3)
      throw std::invalid_argument("calibrate: record " + std::to_string(i) + " has label index " +
                                  std::to_string(gold[i]));
  if (!(o.max_weight >= 1) || !std::isfinite(o.max_weight))
    throw std::invalid_argument("calibrate: max_weight must be at least 1");
  if (o.folds == 1 || o.folds < 0) throw std::invalid_argument("--folds must be 0 or at least 2");
  if (o.folds > (long)p.size()) throw std::invalid_argument("--folds is larger than the number of records");

  std::vector<std::size_t> all(p.size());
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
  CalibrationResult r;
  r.records = p.size();
  const std::vector<double> ones(3, 1.0);
  r.macro_f1_before = macro_f1(p, gold, all, ones, labels);
  r.class_weights = fit(p, gold, all, labels, o.max_weight);
  r.macro_f1_after = macro_f1(p, gold, all, r.class_weights, labels);
  std::vector<int> qa;
  for (auto i : all) qa.push_back(argmax_weighted(p[i], r.class_weights));
  r.accuracy_after = classification_report(gold, qa, labels).accuracy;
  if (o.folds >= 2) {
    std::vector<int> pooled(p.size());
    for (int f = 0; f < o.folds; ++f) {
      std::vector<std::size_t> train, test;
      for (std::size_t i = 0; i < p.size(); ++i)
        (i % o.folds == (std::size_t)f ? test : train).push_back(i);
      auto wf = fit(p, gold, train, labels, o.max_weight);
      for (auto i : test) pooled[i] = argmax_weighted(p[i], wf);
    }
    auto rep = classification_report(gold, pooled, labels);
    r.cv_folds = o.folds;
    r.cv_macro_f1 = rep.macro_f1;
    r.cv_accuracy = rep.accuracy;
  }
  return r;
}

std::vector<ClassProbs> raw_probabilities(const Classifier& clf, const std::vector<std::string>& texts,
                                          bool quiet) {
  std::vector<ClassProbs> p(texts.size());
  Progress prog("predicting", (long)texts.size(), stderr, quiet);
  const long n = (long)texts.size();
#pragma omp parallel for schedule(dynamic, 1)
  for (long i = 0; i < n; ++i) {
    p[i] = clf.probabilities(clf.encode(texts[i]));
#pragma omp critical(inspire_calibrate_progress)
    prog.update(1);
  }
  prog.finish();
  return p;
}

void write_calibrated_bundle(const std::string& model, const std::string& out,
                             const std::vector<double>& w, const nlohmann::json& note) {
  io::SafetensorsFile f = io::SafetensorsFile::open(model);
  std::vector<io::TensorOut> ts;
  for (auto& t : f.tensors()) ts.push_back(io::TensorOut{t.name, t.dtype, t.shape, f.data(t)});
  auto meta = f.metadata();
  meta["class_weights"] = nlohmann::json(w).dump();
  meta["calibration"] = note.dump();
  io::write_safetensors(out, ts, meta);
  io::Bundle::load(out);  // the written file is a valid bundle
}

}  // namespace ulmfit
