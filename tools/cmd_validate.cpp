// tools/cmd_validate.cpp — `validate`: score a model on labeled data (accuracy, micro/macro-F1,
// per-class precision/recall/F1, confusion matrix), as JSON and as a predictions CSV.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "io/atomic_file.h"
#include "io/dataset.h"
#include "nn/backend.h"
#include "tools/cli.h"
#include "ulmfit/splits.h"
#include "ulmfit/classifier.h"
#include "ulmfit/metrics.h"
#include "ulmfit/progress.h"

namespace {

using io::csv_field;

int run_validate(int argc, char** argv) {
  CLI::App app(
      "Score a classifier on labeled data: accuracy, micro- and macro-F1, per-class "
      "precision/recall/F1 and the confusion matrix. Each record is predicted alone, exactly as "
      "predict-coreness does. A class absent from the data is reported as absent and left out of "
      "the macro average.",
      "inspire-classifier validate");
  std::string data, model, report_json, predictions_csv, split;
  int threads = 0;
  bool quiet = false;
  app.add_option("-d,--data", data, "labeled JSON Lines / CSV (title, abstract or text, label)")
      ->required();
  app.add_option("-m,--model", model, "model bundle (default: the embedded model)");
  app.add_option("--split", split,
                 "only records whose `split` field has this value (e.g. valid, fixture)");
  app.add_option("--report-json", report_json, "write the metrics as JSON to this file");
  app.add_option("--predictions", predictions_csv,
                 "write one CSV row per record: line,id,gold,prediction,score per label");
  app.add_option("--threads", threads, "threads (default: all cores)");
  app.add_flag("-q,--quiet", quiet, "no progress output");
  ulmfit::LoadOptions load_opt;
  cli::add_load_options(app, load_opt);
  if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
  if (!report_json.empty()) io::check_output_path(report_json);
  if (!predictions_csv.empty()) io::check_output_path(predictions_csv);
  if (threads > 0) nn::set_num_threads(threads);
  auto clf = ulmfit::Classifier::load_or_default(model, load_opt);
  const auto& labels = clf.labels();

  std::size_t bad = 0;
  std::vector<io::Record> recs = ulmfit::read_labeled(data, split, labels, &bad, [](const std::string& l) {
    std::fprintf(stderr, "%s\n", l.c_str());
  });
  if (recs.empty()) {
    cli::error(data + ": no labeled records" + (split.empty() ? "" : " with split '" + split + "'"));
    return 1;
  }

  std::vector<ulmfit::Prediction> preds(recs.size());
  ulmfit::Progress prog("validating", (long)recs.size(), stderr, quiet);
  const long n = (long)recs.size();
#pragma omp parallel for schedule(dynamic, 1)
  for (long i = 0; i < n; ++i) {
    preds[i] = clf.predict_text(recs[i].text);
#pragma omp critical(inspire_validate_progress)
    prog.update(1);
  }
  prog.finish();

  std::vector<int> gold(recs.size()), pred(recs.size());
  for (size_t i = 0; i < recs.size(); ++i) {
    gold[i] = recs[i].label_index;
    pred[i] = (int)preds[i].index;
  }
  auto rep = ulmfit::classification_report(gold, pred, labels);
  std::printf("model: %s\ndata:  %s%s (%zu records, %zu bad lines skipped)\n\n%s", clf.source().c_str(),
              data.c_str(), split.empty() ? "" : (" [split=" + split + "]").c_str(), recs.size(),
              bad, rep.to_text().c_str());

  if (!report_json.empty()) {
    auto j = rep.to_json();
    j["model"] = clf.source();
    j["data"] = data;
    if (!split.empty()) j["split"] = split;
    std::string s = j.dump(1) + "\n";
    io::write_file_atomically(report_json, s.data(), s.size());
  }
  if (!predictions_csv.empty()) {
    std::ostringstream o;
    o << "line,id,gold,prediction";
    for (auto& l : labels) o << "," << csv_field("score_" + l);
    o << "\n";
    for (size_t i = 0; i < recs.size(); ++i) {
      o << recs[i].line << "," << csv_field(recs[i].id) << "," << csv_field(labels[gold[i]]) << ","
        << csv_field(preds[i].label);
      for (size_t k = 0; k < labels.size(); ++k) o << "," << preds[i].scores[k];
      o << "\n";
    }
    std::string s = o.str();
    io::write_file_atomically(predictions_csv, s.data(), s.size());
  }
  return 0;
}

}  // namespace

INSPIRE_COMMAND_ORDERED(validate, "Score a model on labeled data (accuracy, F1, confusion matrix)",
                        run_validate, 20);
