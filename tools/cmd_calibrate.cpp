// tools/cmd_calibrate.cpp — `calibrate`: choose the class weights (a prior correction,
// p_c * w_c / sum_j p_j * w_j) that give the best macro-F1 on labeled held-out data, and write a
// copy of the bundle that carries them (metadata `class_weights`). A classifier trained on one
// class balance and judged by macro-F1 usually predicts the minority class too rarely; this is
// threshold moving, done once on validation data. The weights are searched on a log grid per
// class (the most frequent class keeps weight 1) by coordinate ascent; ties go to the weight
// nearest 1. `--folds K` also reports an honest estimate: weights chosen on K-1 folds, scored on
// the fold left out, pooled.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "io/bundle.h"
#include "io/safetensors.h"
#include "nn/backend.h"
#include "tools/cli.h"
#include "tools/labeled.h"
#include "ulmfit/classifier.h"
#include "ulmfit/metrics.h"
#include "ulmfit/progress.h"

namespace {

using P3 = std::array<float, 3>;

int argmax_weighted(const P3& p, const std::vector<double>& w) {
  int best = 0;
  for (int c = 1; c < 3; ++c)
    if ((double)p[c] * w[c] > (double)p[best] * w[best]) best = c;
  return best;
}

double macro_f1(const std::vector<P3>& p, const std::vector<int>& gold, const std::vector<std::size_t>& idx,
                const std::vector<double>& w, const std::vector<std::string>& labels) {
  std::vector<int> g, q;
  for (auto i : idx) g.push_back(gold[i]), q.push_back(argmax_weighted(p[i], w));
  return ulmfit::classification_report(g, q, labels).macro_f1;
}

// Coordinate ascent over a log grid in [1/max_w, max_w]; the most frequent present class keeps 1.
std::vector<double> fit(const std::vector<P3>& p, const std::vector<int>& gold,
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

int run_calibrate(int argc, char** argv) {
  CLI::App app(
      "Choose class weights (a prior correction of the predicted probabilities) that maximise\n"
      "macro-F1 on labeled held-out data, and write a copy of the model that applies them.\n"
      "Use validation data, never the data you report final results on.",
      "inspire-classifier calibrate");
  std::string data, model, out, split = "valid";
  int threads = 0, folds = 2;
  double max_w = 4.0;
  bool quiet = false;
  app.add_option("-d,--data", data, "labeled JSON Lines / CSV")->required();
  app.add_option("-m,--model", model, "the classifier bundle to calibrate")->required()->check(CLI::ExistingFile);
  app.add_option("-o,--out", out, "the calibrated bundle to write (atomically)")->required();
  app.add_option("--split", split, "records whose `split` is this (empty: all)")->capture_default_str();
  app.add_option("--max-weight", max_w, "weights are searched in [1/W, W]")
      ->check(CLI::Range(1.0, 1000.0))
      ->capture_default_str();
  app.add_option("--folds", folds, "also estimate the calibrated macro-F1 by K-fold cross-validation (0: no)")
      ->check(CLI::Range(0, 100))
      ->capture_default_str();
  app.add_option("--threads", threads, "threads (default: all cores)");
  app.add_flag("-q,--quiet", quiet, "no progress output");
  if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
  if (threads > 0) nn::set_num_threads(threads);
  if (folds == 1) throw std::runtime_error("--folds must be 0 or at least 2");

  auto clf = ulmfit::Classifier::load(model);
  const auto& labels = clf.labels();
  std::vector<io::Record> recs = cli::read_labeled(data, split, labels);
  if (recs.empty())
    throw std::runtime_error(data + ": no labeled records" + (split.empty() ? "" : " with split '" + split + "'"));
  if (folds > (long)recs.size()) throw std::runtime_error("--folds is larger than the number of records");

  // Raw probabilities: probabilities() is before any weights the model already has.
  std::vector<P3> p(recs.size());
  std::vector<int> gold(recs.size());
  ulmfit::Progress prog("predicting", (long)recs.size(), stderr, quiet);
  const long n = (long)recs.size();
#pragma omp parallel for schedule(dynamic, 1)
  for (long i = 0; i < n; ++i) {
    p[i] = clf.probabilities(clf.encode(recs[i].text));
#pragma omp critical(inspire_calibrate_progress)
    prog.update(1);
  }
  prog.finish();
  for (std::size_t i = 0; i < recs.size(); ++i) gold[i] = recs[i].label_index;

  std::vector<std::size_t> all(recs.size());
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
  const std::vector<double> ones(3, 1.0);
  const double before = macro_f1(p, gold, all, ones, labels);
  const auto w = fit(p, gold, all, labels, max_w);
  const double after = macro_f1(p, gold, all, w, labels);
  std::vector<int> qa;
  for (auto i : all) qa.push_back(argmax_weighted(p[i], w));
  const double acc_after = ulmfit::classification_report(gold, qa, labels).accuracy;

  nlohmann::json result = {{"model", out},       {"class_weights", w},
                           {"records", recs.size()}, {"macro_f1_before", before},
                           {"macro_f1_after", after}, {"accuracy_after", acc_after}};
  if (folds >= 2) {
    // Fold f = records i with i % folds == f; weights fit on the others, predictions pooled.
    std::vector<int> pooled(recs.size());
    for (int f = 0; f < folds; ++f) {
      std::vector<std::size_t> train, test;
      for (std::size_t i = 0; i < recs.size(); ++i) (i % folds == (std::size_t)f ? test : train).push_back(i);
      auto wf = fit(p, gold, train, labels, max_w);
      for (auto i : test) pooled[i] = argmax_weighted(p[i], wf);
    }
    auto rep = ulmfit::classification_report(gold, pooled, labels);
    result["cv_folds"] = folds;
    result["cv_macro_f1"] = rep.macro_f1;
    result["cv_accuracy"] = rep.accuracy;
  }

  // The same file with the class_weights metadata set (and a note of how they were chosen).
  io::SafetensorsFile f = io::SafetensorsFile::open(model);
  std::vector<io::TensorOut> ts;
  for (auto& t : f.tensors()) ts.push_back(io::TensorOut{t.name, t.dtype, t.shape, f.data(t)});
  auto meta = f.metadata();
  meta["class_weights"] = nlohmann::json(w).dump();
  meta["calibration"] = nlohmann::json{{"data", data}, {"split", split}, {"records", recs.size()},
                                       {"macro_f1_before", before}, {"macro_f1_after", after}}
                            .dump();
  io::write_safetensors(out, ts, meta);
  io::Bundle::load(out);  // the written file is a valid bundle
  std::cout << result.dump() << std::endl;
  return 0;
}

}  // namespace

INSPIRE_COMMAND_ORDERED(calibrate, "Set class weights that maximise macro-F1 on validation data", run_calibrate, 35);
