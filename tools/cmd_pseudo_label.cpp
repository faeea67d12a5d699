// tools/cmd_pseudo_label.cpp — `pseudo-label`: a model's most confident decisions on unlabeled
// papers, written as labeled training records (self-training; ulmfit/pseudo_label.h does it).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "tools/cli.h"
#include "ulmfit/classifier.h"
#include "ulmfit/pseudo_label.h"

namespace {

int run_pseudo_label(int argc, char** argv) {
  CLI::App app(
      "Self-training data: classify unlabeled papers and keep, for each --top LABEL=N, the N "
      "papers with the highest score for LABEL (ties in input order; a paper already taken by an "
      "earlier --top is skipped). Writes them as JSON Lines training records ({\"id\", \"title\", "
      "\"abstract\", \"label\", \"split\": \"train\", \"pseudo_score\"}), grouped by --top in the "
      "order given, best first. Records with a `split` (labeled data) or a "
      "`title_matches_labeled_split` (the same paper as a labeled one) are left out. The input is "
      "held in memory.",
      "inspire-classifier pseudo-label");
  std::string input, output, model;
  std::vector<std::string> tops;
  int threads = 0;
  bool quiet = false;
  app.add_option("-i,--input", input, "unlabeled JSON Lines / CSV (title + abstract, or text)")
      ->required();
  app.add_option("-o,--output", output, "JSON Lines output (written atomically)")->required();
  app.add_option("--top", tops, "LABEL=N: keep the N papers the model scores highest for LABEL "
                                "(repeat for each label)")
      ->required();
  app.add_option("-m,--model", model,
                 "model bundle (.safetensors); default: the model embedded in this build");
  app.add_option("-t,--threads", threads, "worker threads (0 = all cores)")
      ->capture_default_str();  // range: cli::parse
  app.add_flag("-q,--quiet", quiet, "no progress or summary on stderr");
  if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;

  auto clf = ulmfit::Classifier::load_or_default(model, {});
  std::vector<ulmfit::PseudoLabelQuota> quotas;
  try {
    for (auto& t : tops) quotas.push_back(ulmfit::parse_pseudo_label_quota(t, clf.labels()));
  } catch (const std::invalid_argument& e) {
    cli::error(e.what());
    return 2;
  }
  ulmfit::LogFn log;
  if (!quiet) log = [](const std::string& l) { std::fprintf(stderr, "%s\n", l.c_str()); };
  auto p = ulmfit::pseudo_label(clf, input, quotas, threads, log);
  nlohmann::json summary = {{"input", input},       {"output", output},
                            {"records", p.records.size()}, {"left_out_with_split", p.with_split},
                            {"left_out_matching_labeled", p.matching}, {"bad", p.bad}};
  std::size_t written = 0;
  for (std::size_t q = 0; q < quotas.size(); ++q) {
    const std::size_t c = quotas[q].label;
    const auto& chosen = p.chosen[q];
    summary["selected"][clf.labels()[c]] = {
        {"papers", chosen.size()},
        {"lowest_score", chosen.empty() ? 0.0 : double(p.scores[chosen.back()][c])}};
    written += chosen.size();
  }
  ulmfit::write_pseudo_labels(output, p, clf.labels());
  if (!quiet)
    std::fprintf(stderr, "pseudo-label: %zu papers written to %s (%zu with a split and %zu "
                         "matching a labeled paper left out, %zu bad)\n",
                 written, output.c_str(), p.with_split, p.matching, p.bad);
  std::cout << summary.dump() << std::endl;
  return 0;
}

}  // namespace

INSPIRE_COMMAND_NAMED(pseudo_label, "pseudo-label",
                      "Self-training data: a model's most confident labels on unlabeled papers",
                      run_pseudo_label, 36);
