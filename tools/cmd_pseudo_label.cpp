// tools/cmd_pseudo_label.cpp — `pseudo-label`: a model's most confident decisions on unlabeled
// papers, written as labeled training records (self-training).
#include <omp.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "io/atomic_file.h"
#include "io/dataset.h"
#include "tools/cli.h"
#include "ulmfit/classifier.h"
#include "ulmfit/labels.h"

namespace {

struct Quota {
  std::size_t label = 0;  // class index
  std::size_t n = 0;
};

// "core=3500" -> {index of core, 3500}.
Quota parse_quota(const std::string& s, const std::vector<std::string>& labels) {
  auto eq = s.find('=');
  if (eq == std::string::npos)
    throw std::invalid_argument("--top '" + s + "': expected LABEL=N, e.g. core=3500");
  std::string name = s.substr(0, eq), num = s.substr(eq + 1);
  auto it = std::find(labels.begin(), labels.end(), name);
  if (it == labels.end()) {
    std::string known;
    for (auto& l : labels) known += (known.empty() ? "" : ", ") + l;
    throw std::invalid_argument("--top '" + s + "': unknown label '" + name + "' (the model's: " +
                                known + ")");
  }
  std::size_t pos = 0;
  long long n = -1;
  try {
    n = std::stoll(num, &pos);
  } catch (const std::exception&) {
    pos = 0;
  }
  if (pos != num.size() || num.empty() || n <= 0)
    throw std::invalid_argument("--top '" + s + "': N must be a positive integer");
  return {static_cast<std::size_t>(it - labels.begin()), static_cast<std::size_t>(n)};
}

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
  std::vector<Quota> quotas;
  try {
    for (auto& t : tops) quotas.push_back(parse_quota(t, clf.labels()));
  } catch (const std::invalid_argument& e) {
    cli::error(e.what());
    return 2;
  }

  // Read: keep the records that may be pseudo-labeled.
  std::vector<io::Record> recs;
  std::size_t with_split = 0, matching = 0, bad = 0;
  io::DatasetOptions o;
  o.read_labels = false;
  io::read_dataset(
      input,
      [&](io::Record& r) {
        if (!r.split.empty()) ++with_split;
        else if (!r.title_match_split.empty()) ++matching;
        else recs.push_back(std::move(r));
      },
      [&](const io::RecordError& e) {
        ++bad;
        if (!quiet) std::fprintf(stderr, "warning: skipping %s\n", e.what().c_str());
      },
      o);
  if (recs.empty()) {
    cli::error(input + ": no records to pseudo-label");
    return 1;
  }

  // Classify (each paper on its own, as `predict` does, so the scores are predict's).
  std::vector<std::array<float, 3>> scores(recs.size());
  std::vector<char> failed(recs.size(), 0);
  const long n = static_cast<long>(recs.size()), step = 256;
  auto t0 = std::chrono::steady_clock::now();
  for (long lo = 0; lo < n; lo += step) {
    const long hi = std::min(n, lo + step);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads > 0 ? threads : omp_get_max_threads())
    for (long i = lo; i < hi; ++i) {
      try {
        scores[i] = clf.predict_text(recs[i].text).scores;
      } catch (const std::exception&) {
        failed[i] = 1;
      }
    }
    if (!quiet) {
      double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "pseudo-label: %ld/%ld papers classified, %.0f s\n", hi, n, el);
    }
  }
  for (long i = 0; i < n; ++i)
    if (failed[i]) {
      ++bad;
      if (!quiet)
        std::fprintf(stderr, "warning: skipping %s:%zu: the model cannot read its text\n",
                     input.c_str(), recs[i].line);
    }

  // Select.
  std::vector<char> taken(recs.size(), 0);
  std::vector<std::vector<std::size_t>> chosen(quotas.size());
  nlohmann::json summary = {{"input", input},       {"output", output},
                            {"records", recs.size()}, {"left_out_with_split", with_split},
                            {"left_out_matching_labeled", matching}, {"bad", bad}};
  for (std::size_t q = 0; q < quotas.size(); ++q) {
    const std::size_t c = quotas[q].label;
    std::vector<std::size_t> order(recs.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return scores[a][c] > scores[b][c]; });
    for (auto i : order) {
      if (chosen[q].size() == quotas[q].n) break;
      if (taken[i] || failed[i]) continue;
      taken[i] = 1;
      chosen[q].push_back(i);
    }
    const auto& label = clf.labels()[c];
    if (chosen[q].size() < quotas[q].n && !quiet)
      std::fprintf(stderr, "warning: --top %s=%zu: only %zu papers left\n", label.c_str(),
                   quotas[q].n, chosen[q].size());
    summary["selected"][label] = {
        {"papers", chosen[q].size()},
        {"lowest_score", chosen[q].empty() ? 0.0 : double(scores[chosen[q].back()][c])}};
  }

  io::write_file_atomically(output, [&](std::ostream& out) {
    for (std::size_t q = 0; q < quotas.size(); ++q)
      for (auto i : chosen[q]) {
        const auto& r = recs[i];
        nlohmann::json j;
        if (r.id_is_number) j["id"] = nlohmann::json::parse(r.id);
        else if (!r.id.empty()) j["id"] = r.id;
        if (ulmfit::join_title_abstract(r.title, r.abstract) == r.text) {
          j["title"] = r.title;
          j["abstract"] = r.abstract;
        } else {
          j["text"] = r.text;
        }
        j["label"] = clf.labels()[quotas[q].label];
        j["split"] = "train";
        j["pseudo_score"] = double(scores[i][quotas[q].label]);
        out << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      }
  });
  if (!quiet)
    std::fprintf(stderr, "pseudo-label: %zu papers written to %s (%zu with a split and %zu "
                         "matching a labeled paper left out, %zu bad)\n",
                 std::accumulate(chosen.begin(), chosen.end(), std::size_t{0},
                                 [](std::size_t s, const auto& v) { return s + v.size(); }),
                 output.c_str(), with_split, matching, bad);
  std::cout << summary.dump() << std::endl;
  return 0;
}

}  // namespace

INSPIRE_COMMAND_NAMED(pseudo_label, "pseudo-label",
                      "Self-training data: a model's most confident labels on unlabeled papers",
                      run_pseudo_label, 36);
