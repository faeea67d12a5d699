#include "ulmfit/splits.h"

#include <cstring>
#include <stdexcept>

#include "ulmfit/corpus.h"
#include "ulmfit/data.h"

namespace ulmfit {

bool is_plain_text(const std::string& path) {
  for (const char* ext : {".txt", ".txt.gz", ".tokens"})
    if (path.size() >= std::strlen(ext) &&
        path.compare(path.size() - std::strlen(ext), std::strlen(ext), ext) == 0)
      return true;
  return false;
}

namespace {
bool matches_held_out_paper(const io::Record& r) {
  return r.split.empty() && (r.title_match_split == "valid" || r.title_match_split == "test");
}
}  // namespace

Sides read_sides(const std::vector<std::string>& files, double valid_pct, std::uint64_t seed,
                 bool need_labels, const LogFn& log, bool general_corpus) {
  Sides s;
  std::vector<std::string> free_texts;
  std::vector<std::int32_t> free_labels;
  for (auto& f : files) {
    if (is_plain_text(f)) {
      if (need_labels) throw std::runtime_error(f + ": a plain-text corpus has no labels");
      std::size_t skipped = 0;
      auto docs = read_text_documents(f, 0, &skipped);
      s.bad += skipped;
      for (auto& d : docs) free_texts.push_back(std::move(d));
      free_labels.resize(free_texts.size(), -1);
      continue;
    }
    io::DatasetOptions o;
    o.require_label = need_labels;
    o.read_labels = need_labels;  // an LM reads text only: IMDb's "pos"/"unsup" are no error
    io::read_dataset(
        f,
        [&](io::Record& r) {
          if (r.split == "train") {
            s.train.push_back(std::move(r.text));
            s.train_labels.push_back(r.label_index);
          } else if (r.split == "valid") {
            s.valid.push_back(std::move(r.text));
            s.valid_labels.push_back(r.label_index);
          } else if (matches_held_out_paper(r)) {
            s.held_out_matches++;
          } else if (r.split.empty() || (general_corpus && r.split != "test")) {
            free_texts.push_back(std::move(r.text));
            free_labels.push_back(r.label_index);
          } else {
            s.skipped++;
          }
        },
        [&](const io::RecordError& e) {
          s.bad++;
          if (log) log("warning: skipping " + e.what());
        },
        o);
  }
  if (!free_texts.empty()) {
    auto sp = random_split(free_texts.size(), valid_pct, seed);
    for (auto i : sp.train) s.train.push_back(free_texts[i]), s.train_labels.push_back(free_labels[i]);
    for (auto i : sp.valid) s.valid.push_back(free_texts[i]), s.valid_labels.push_back(free_labels[i]);
  }
  if (log)
    log("data: " + std::to_string(s.train.size()) + " train / " + std::to_string(s.valid.size()) +
        " valid documents (" + std::to_string(s.skipped) + " in other splits and " +
        std::to_string(s.held_out_matches) + " matching a valid or test paper's title left out, " +
        std::to_string(s.bad) + " bad)");
  if (s.train.empty()) throw std::runtime_error("no training documents in the given data");
  return s;
}

std::vector<io::Record> read_labeled(const std::string& data, const std::string& split,
                                     const std::vector<std::string>& labels, std::size_t* bad,
                                     const LogFn& log) {
  io::DatasetOptions opt;
  opt.labels = labels;
  opt.require_label = true;
  std::vector<io::Record> recs;
  io::read_dataset(
      data,
      [&](io::Record& r) {
        if (split.empty() || r.split == split) recs.push_back(std::move(r));
      },
      [&](const io::RecordError& e) {
        if (bad) ++*bad;
        if (log) log("warning: skipping " + e.what());
      },
      opt);
  return recs;
}

}  // namespace ulmfit
