// tools/cmd_calibrate.cpp — `calibrate`: choose the class weights that give the best macro-F1 on
// labeled held-out data and write a copy of the bundle that carries them (ulmfit/calibrate.h has
// the method).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "nn/backend.h"
#include "tools/cli.h"
#include "ulmfit/calibrate.h"
#include "ulmfit/classifier.h"
#include "ulmfit/cv.h"
#include "ulmfit/splits.h"

namespace {

int run_calibrate(int argc, char** argv) {
  CLI::App app(
      "Choose class weights (a prior correction of the predicted probabilities) that maximise\n"
      "macro-F1 on labeled held-out data, and write a copy of the model that applies them.\n"
      "Use validation data, never the data you report final results on.\n"
      "With --prior, no search and no predictions: the weights undo the class balance of the\n"
      "labeled records (max prior / class prior), the rule `cv` scores as +prior; use it with\n"
      "--split train,valid on a model trained by `train-classifier --fit-all`.",
      "inspire-classifier calibrate");
  std::string data, model, out, split = "valid";
  int threads = 0, folds = 2;
  double max_w = 4.0;
  bool quiet = false, prior = false;
  app.add_option("-d,--data", data, "labeled JSON Lines / CSV")->required();
  app.add_option("-m,--model", model, "the classifier bundle to calibrate")->required()->check(CLI::ExistingFile);
  app.add_option("-o,--out", out, "the calibrated bundle to write (atomically)")->required();
  app.add_option("--split", split, "records whose `split` is this, or one of these (comma-separated, "
                                   "e.g. train,valid; empty: all)")
      ->capture_default_str();
  app.add_flag("--prior", prior, "set the weights to max prior / class prior of the records' labels "
                                 "(no search, no predictions)");
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
  std::vector<io::Record> recs;
  {
    const std::vector<std::string> splits = cli::split_commas(split);
    if (splits.size() > 1)
      for (auto& sp : splits)
        if (sp.empty()) throw std::runtime_error("--split '" + split + "': an empty name in the list");
    std::size_t bad = 0;
    for (auto& sp : splits) {
      auto part = ulmfit::read_labeled(data, sp, labels, &bad, [](const std::string& l) {
        std::fprintf(stderr, "%s\n", l.c_str());
      });
      recs.insert(recs.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
    }
    if (prior && bad)
      throw std::runtime_error(data + ": " + std::to_string(bad) + " bad record(s) (see the warnings above)");
  }
  if (recs.empty())
    throw std::runtime_error(data + ": no labeled records" + (split.empty() ? "" : " with split '" + split + "'"));
  if (prior) {
    std::vector<int> gold;
    for (auto& r : recs) gold.push_back(r.label_index);
    const auto w = ulmfit::prior_weights(gold, labels.size());
    nlohmann::json note = {{"rule", "prior"}, {"data", data}, {"split", split}, {"records", recs.size()}};
    ulmfit::write_calibrated_bundle(model, out, w, note);
    std::cout << nlohmann::json{{"model", out}, {"class_weights", w}, {"rule", "prior"},
                                {"records", recs.size()}}.dump()
              << std::endl;
    return 0;
  }
  if (folds > (long)recs.size()) throw std::runtime_error("--folds is larger than the number of records");

  // Raw probabilities: probabilities() is before any weights the model already has.
  std::vector<std::string> texts;
  std::vector<int> gold;
  for (auto& r : recs) texts.push_back(r.text), gold.push_back(r.label_index);
  auto p = ulmfit::raw_probabilities(clf, texts, quiet);
  ulmfit::CalibrationOptions co;
  co.max_weight = max_w;
  co.folds = folds;
  auto c = ulmfit::calibrate_class_weights(p, gold, labels, co);
  nlohmann::json result = {{"model", out},
                           {"class_weights", c.class_weights},
                           {"records", c.records},
                           {"macro_f1_before", c.macro_f1_before},
                           {"macro_f1_after", c.macro_f1_after},
                           {"accuracy_after", c.accuracy_after}};
  if (c.cv_folds >= 2) {
    result["cv_folds"] = c.cv_folds;
    result["cv_macro_f1"] = c.cv_macro_f1;
    result["cv_accuracy"] = c.cv_accuracy;
  }
  // The same file with the class_weights metadata set (and a note of how they were chosen).
  ulmfit::write_calibrated_bundle(
      model, out, c.class_weights,
      {{"data", data}, {"split", split}, {"records", c.records},
       {"macro_f1_before", c.macro_f1_before}, {"macro_f1_after", c.macro_f1_after}});
  std::cout << result.dump() << std::endl;
  return 0;
}

}  // namespace

INSPIRE_COMMAND_ORDERED(calibrate, "Set class weights that maximise macro-F1 on validation data", run_calibrate, 35);
