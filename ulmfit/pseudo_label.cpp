#include "ulmfit/pseudo_label.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "ulmfit/labels.h"

namespace ulmfit {

PseudoLabelQuota parse_pseudo_label_quota(const std::string& s, const std::vector<std::string>& labels) {
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

PseudoLabels pseudo_label(const Classifier& clf, const std::string& input,
                          const std::vector<PseudoLabelQuota>& quotas, int threads,
                          const LogFn& log) {
  PseudoLabels p;
  p.quotas = quotas;
  auto& recs = p.records;
  // Read: keep the records that may be pseudo-labeled.
  io::DatasetOptions o;
  o.read_labels = false;
  io::read_dataset(
      input,
      [&](io::Record& r) {
        if (!r.split.empty()) ++p.with_split;
        else if (!r.title_match_split.empty()) ++p.matching;
        else recs.push_back(std::move(r));
      },
      [&](const io::RecordError& e) {
        ++p.bad;
        if (log) log("warning: skipping " + e.what());
      },
      o);
  if (recs.empty()) throw std::runtime_error(input + ": no records to pseudo-label");

  // Classify (each paper on its own, as `predict` does, so the scores are predict's).
  p.scores.assign(recs.size(), {});
  std::vector<char> failed(recs.size(), 0);
  const long n = static_cast<long>(recs.size()), step = 256;
  auto t0 = std::chrono::steady_clock::now();
  for (long lo = 0; lo < n; lo += step) {
    const long hi = std::min(n, lo + step);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads > 0 ? threads : omp_get_max_threads())
    for (long i = lo; i < hi; ++i) {
      try {
        p.scores[i] = clf.predict_text(recs[i].text).scores;
      } catch (const std::exception&) {
        failed[i] = 1;
      }
    }
    if (log) {
      double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      char buf[128];
      std::snprintf(buf, sizeof buf, "pseudo-label: %ld/%ld papers classified, %.0f s", hi, n, el);
      log(buf);
    }
  }
  for (long i = 0; i < n; ++i)
    if (failed[i]) {
      ++p.bad;
      if (log)
        log("warning: skipping " + input + ":" + std::to_string(recs[i].line) +
            ": the model cannot read its text");
    }

  // Select.
  std::vector<char> taken(recs.size(), 0);
  p.chosen.assign(quotas.size(), {});
  for (std::size_t q = 0; q < quotas.size(); ++q) {
    const std::size_t c = quotas[q].label;
    std::vector<std::size_t> order(recs.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return p.scores[a][c] > p.scores[b][c]; });
    for (auto i : order) {
      if (p.chosen[q].size() == quotas[q].n) break;
      if (taken[i] || failed[i]) continue;
      taken[i] = 1;
      p.chosen[q].push_back(i);
    }
    if (p.chosen[q].size() < quotas[q].n && log)
      log("warning: --top " + clf.labels()[c] + "=" + std::to_string(quotas[q].n) + ": only " +
          std::to_string(p.chosen[q].size()) + " papers left");
  }
  return p;
}

void write_pseudo_labels(const std::string& path, const PseudoLabels& p,
                         const std::vector<std::string>& labels) {
  io::write_file_atomically(path, [&](std::ostream& out) {
    for (std::size_t q = 0; q < p.quotas.size(); ++q)
      for (auto i : p.chosen[q]) {
        const auto& r = p.records[i];
        nlohmann::json j;
        if (r.id_is_number) j["id"] = nlohmann::json::parse(r.id);
        else if (!r.id.empty()) j["id"] = r.id;
        if (join_title_abstract(r.title, r.abstract) == r.text) {
          j["title"] = r.title;
          j["abstract"] = r.abstract;
        } else {
          j["text"] = r.text;
        }
        j["label"] = labels[p.quotas[q].label];
        j["split"] = "train";
        j["pseudo_score"] = double(p.scores[i][p.quotas[q].label]);
        out << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      }
  });
}

}  // namespace ulmfit
