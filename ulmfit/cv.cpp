// ulmfit/cv.cpp — k-fold cross-validation of the recipe; see ulmfit/cv.h.
#include "ulmfit/cv.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include "io/atomic_file.h"
#include "ulmfit/calibrate.h"
#include "ulmfit/classifier.h"
#include "ulmfit/labels.h"
#include "ulmfit/splits.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace ulmfit {

std::uint64_t fnv1a64(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::vector<int> make_folds(const std::vector<io::Record>& records, int k) {
  if (k < 2) throw std::invalid_argument("cross-validation needs at least 2 folds, got " + std::to_string(k));
  std::map<std::string, std::string> unit_label;           // key -> label of its first record
  std::map<std::string, std::vector<std::size_t>> unit_rows;
  for (std::size_t i = 0; i < records.size(); ++i) {
    const io::Record& r = records[i];
    if (r.label.empty())
      throw std::invalid_argument("record " + std::to_string(i + 1) + " (line " +
                                  std::to_string(r.line) + ") has no label");
    const std::string& key = r.dup_group.empty() ? r.id : r.dup_group;
    if (key.empty())
      throw std::invalid_argument("record at line " + std::to_string(r.line) +
                                  " has neither an id nor a dup_group: folds need one");
    unit_label.emplace(key, r.label);
    unit_rows[key].push_back(i);
  }
  std::map<std::string, std::vector<std::string>> by_label;  // label name order, as sorted()
  for (auto& [key, label] : unit_label) by_label[label].push_back(key);
  std::vector<int> fold(records.size(), -1);
  for (auto& [label, keys] : by_label) {
    std::vector<std::pair<std::uint64_t, std::string>> order;
    order.reserve(keys.size());
    for (auto& key : keys) order.emplace_back(fnv1a64(key), key);
    std::sort(order.begin(), order.end());
    for (std::size_t rank = 0; rank < order.size(); ++rank)
      for (std::size_t i : unit_rows[order[rank].second]) fold[i] = (int)(rank % (std::size_t)k);
  }
  std::vector<std::size_t> sizes(k, 0);
  for (int f : fold) ++sizes[f];
  for (int j = 0; j < k; ++j)
    if (sizes[j] == 0)
      throw std::invalid_argument("fold " + std::to_string(j) + " of " + std::to_string(k) +
                                  " is empty: too few papers for " + std::to_string(k) + " folds");
  return fold;
}

std::vector<double> prior_weights(const std::vector<int>& train_labels, std::size_t n_classes) {
  if (train_labels.empty()) throw std::invalid_argument("prior weights need at least one label");
  std::vector<std::size_t> count(n_classes, 0);
  for (int y : train_labels) {
    if (y < 0 || (std::size_t)y >= n_classes)
      throw std::invalid_argument("label index " + std::to_string(y) + " out of range (" +
                                  std::to_string(n_classes) + " classes)");
    ++count[(std::size_t)y];
  }
  const std::size_t most = *std::max_element(count.begin(), count.end());
  std::vector<double> w(n_classes, 1.0);
  for (std::size_t c = 0; c < n_classes; ++c)
    if (count[c]) w[c] = (double)most / (double)count[c];
  return w;
}

CvScore score_probs(const std::vector<ClassProbs>& p, const std::vector<int>& gold,
                    const std::vector<std::string>& labels, const std::vector<double>& w) {
  if (p.size() != gold.size())
    throw std::invalid_argument(std::to_string(p.size()) + " probability rows for " +
                                std::to_string(gold.size()) + " gold labels");
  if (!w.empty() && w.size() != 3)
    throw std::invalid_argument("class weights: 3 expected, got " + std::to_string(w.size()));
  std::vector<int> pred(p.size());
  for (std::size_t i = 0; i < p.size(); ++i)
    pred[i] = w.empty() ? (int)(std::max_element(p[i].begin(), p[i].end()) - p[i].begin())
                        : argmax_weighted(p[i], w);
  auto rep = classification_report(gold, pred, labels);
  CvScore s;
  s.accuracy = rep.accuracy;
  s.macro_f1 = rep.macro_f1;
  for (auto& c : rep.per_class)
    s.f1.push_back(c.f1 ? *c.f1 : std::numeric_limits<double>::quiet_NaN());
  return s;
}

namespace {

json score_json(const CvScore& s, const std::vector<std::string>& labels) {
  json f1 = json::object();
  for (std::size_t c = 0; c < labels.size() && c < s.f1.size(); ++c)
    if (!std::isnan(s.f1[c])) f1[labels[c]] = s.f1[c];
  return {{"accuracy", s.accuracy}, {"macro_f1", s.macro_f1}, {"f1", f1}};
}

CvScore score_from_json(const json& j, const std::vector<std::string>& labels) {
  CvScore s;
  s.accuracy = j.at("accuracy").get<double>();
  s.macro_f1 = j.at("macro_f1").get<double>();
  for (auto& l : labels)
    s.f1.push_back(j.at("f1").contains(l) ? j.at("f1").at(l).get<double>()
                                          : std::numeric_limits<double>::quiet_NaN());
  return s;
}

json fold_json(const CvFold& f, const std::vector<std::string>& labels) {
  json m = json::array(), mp = json::array();
  for (auto& s : f.members) m.push_back(score_json(s, labels));
  for (auto& s : f.members_prior) mp.push_back(score_json(s, labels));
  return {{"fold", f.fold},
          {"train_docs", f.train_docs},
          {"test_docs", f.test_docs},
          {"seconds", f.seconds},
          {"members", m},
          {"ensemble", score_json(f.ensemble, labels)},
          {"prior_weights", f.prior_weights},
          {"members_prior", mp},
          {"ensemble_prior", score_json(f.ensemble_prior, labels)}};
}

// Scores every member's probabilities `ps` and their mean, plain and prior-corrected, into f.
void score_fold(CvFold& f, const std::vector<std::vector<ClassProbs>>& ps, const std::vector<int>& gold,
                const std::vector<int>& train_gold, const std::vector<std::string>& labels) {
  f.prior_weights = prior_weights(train_gold, labels.size());
  f.members.clear();
  f.members_prior.clear();
  std::vector<ClassProbs> mean(gold.size(), ClassProbs{});
  for (auto& p : ps) {
    f.members.push_back(score_probs(p, gold, labels));
    f.members_prior.push_back(score_probs(p, gold, labels, f.prior_weights));
    for (std::size_t i = 0; i < p.size(); ++i)
      for (int c = 0; c < 3; ++c) mean[i][c] += p[i][c] / (float)ps.size();
  }
  f.ensemble = score_probs(mean, gold, labels);
  f.ensemble_prior = score_probs(mean, gold, labels, f.prior_weights);
}

// [mean, sample sd] of the finite values.
json mean_sd(const std::vector<double>& v_in) {
  std::vector<double> v;
  for (double x : v_in)
    if (std::isfinite(x)) v.push_back(x);
  if (v.empty()) return json::array({nullptr, nullptr});
  const double mean = std::accumulate(v.begin(), v.end(), 0.0) / (double)v.size();
  double ss = 0;
  for (double x : v) ss += (x - mean) * (x - mean);
  const double sd = v.size() > 1 ? std::sqrt(ss / (double)(v.size() - 1)) : 0.0;
  return json::array({mean, sd});
}

json summarize(const std::vector<const CvScore*>& scores, const std::vector<std::string>& labels) {
  std::vector<double> acc, f1m;
  for (auto* s : scores) acc.push_back(s->accuracy), f1m.push_back(s->macro_f1);
  json f1 = json::object();
  for (std::size_t c = 0; c < labels.size(); ++c) {
    std::vector<double> v;
    for (auto* s : scores) v.push_back(c < s->f1.size() ? s->f1[c] : NAN);
    auto ms = mean_sd(v);
    if (!ms[0].is_null()) f1[labels[c]] = ms;
  }
  return {{"accuracy", mean_sd(acc)}, {"macro_f1", mean_sd(f1m)}, {"f1", f1}};
}

void write_json(const std::string& path, const json& j) {
  const std::string s = j.dump(1) + "\n";
  io::write_file_atomically(path, s.data(), s.size());
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open");
  try {
    return json::parse(in);
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": not valid JSON (" + e.what() + "); delete it to re-run that part");
  }
}

std::vector<ClassProbs> read_probs(const std::string& path, std::size_t rows) {
  json pj = read_json(path);
  std::vector<ClassProbs> p;
  try {
    for (auto& row : pj) p.push_back({row.at(0).get<float>(), row.at(1).get<float>(), row.at(2).get<float>()});
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": not rows of 3 probabilities (" + e.what() + "); delete it to re-run that part");
  }
  if (p.size() != rows)
    throw std::runtime_error(path + ": " + std::to_string(p.size()) + " rows, the fold has " +
                             std::to_string(rows) + " papers");
  return p;
}

// cv.fold_lm_epochs of fine-tuning of `lm` on the training folds' `texts` into `dir` (skipped
// when dir/lm.safetensors exists; resumed from its checkpoint with o.resume). Returns the LM's path.
std::string fold_lm(const Recipe& r, const CvOptions& cv, const std::string& lm,
                    const std::vector<std::string>& texts, const std::string& dir, const RunOptions& o) {
  const std::string path = (fs::path(dir) / "lm.safetensors").string();
  if (fs::exists(path)) return path;
  Sides s;  // every tenth text validates
  for (std::size_t i = 0; i < texts.size(); ++i) (i % 10 == 9 ? s.valid : s.train).push_back(texts[i]);
  Recipe lr = r;
  lr.lm_frozen_epochs = 0;
  lr.lm_epochs = cv.fold_lm_epochs;
  lr.lm_lr = cv.fold_lm_lr;
  RunOptions lo = o;
  lo.out_dir = dir;
  lo.resume = o.resume && fs::exists(fs::path(dir) / "checkpoint.json");
  if (o.log)
    o.log("LM step: " + lm + " fine-tuned on " + std::to_string(s.train.size()) +
          " training-fold texts (" + std::to_string(s.valid.size()) + " validate) for " +
          std::to_string(cv.fold_lm_epochs) + " epoch(s) into " + dir);
  auto res = finetune_language_model_keep_vocab(lr, s, lm, lo);
  return res.lm.model_path;
}

}  // namespace

json CvResult::summary() const {
  json members = json::array();
  const std::size_t n_members = folds.empty() ? 0 : folds[0].members.size();
  for (std::size_t m = 0; m < n_members; ++m) {
    std::vector<const CvScore*> s;
    for (auto& f : folds) s.push_back(&f.members[m]);
    members.push_back(summarize(s, labels));
  }
  json members_prior = json::array();
  for (std::size_t m = 0; m < n_members; ++m) {
    std::vector<const CvScore*> s;
    for (auto& f : folds) s.push_back(&f.members_prior[m]);
    members_prior.push_back(summarize(s, labels));
  }
  std::vector<const CvScore*> e, ep;
  for (auto& f : folds) e.push_back(&f.ensemble), ep.push_back(&f.ensemble_prior);
  return {{"folds_run", folds.size()},   {"members", members},
          {"ensemble", summarize(e, labels)}, {"members_prior", members_prior},
          {"ensemble_prior", summarize(ep, labels)}};
}

json CvResult::to_json() const {
  json per_fold = json::array();
  for (auto& f : folds) per_fold.push_back(fold_json(f, labels));
  return {{"labels", labels}, {"summary", summary()}, {"per_fold", per_fold}};
}

CvResult cross_validate(const Recipe& r, const std::string& data, const CvOptions& cv,
                        const RunOptions& o) {
  r.validate();
  if (cv.lms.empty()) throw std::invalid_argument("cross-validation needs at least one --lm");
  if (o.out_dir.empty()) throw std::invalid_argument("cross-validation needs an output directory");
  for (int j : cv.only_folds)
    if (j < 0 || j >= cv.k)
      throw std::invalid_argument("fold " + std::to_string(j) + " does not exist (folds 0.." +
                                  std::to_string(cv.k - 1) + ")");
  for (auto& lm : cv.lms)
    if (!fs::exists(lm)) throw std::runtime_error(lm + ": no such file");
  if (cv.fold_lm_epochs < 0)
    throw std::invalid_argument("--fold-lm-epochs must be >= 0, got " + std::to_string(cv.fold_lm_epochs));
  if (cv.fold_lm_epochs > 0 && !(cv.fold_lm_lr > 0))
    throw std::invalid_argument("--fold-lm-lr must be > 0, got " + std::to_string(cv.fold_lm_lr));

  const std::vector<std::string> labels(kLabels.begin(), kLabels.end());
  std::vector<io::Record> recs;
  {
    std::size_t bad = 0;
    auto all = read_labeled(data, "", labels, &bad, o.log);
    if (bad) throw std::runtime_error(data + ": " + std::to_string(bad) + " bad record(s) (see the warnings above)");
    for (auto& rec : all)
      if (rec.split == "train" || rec.split == "valid") recs.push_back(std::move(rec));
  }
  if (recs.empty())
    throw std::runtime_error(data + ": no record with split \"train\" or \"valid\"");
  const std::vector<int> fold = make_folds(recs, cv.k);

  fs::create_directories(o.out_dir);
  CvResult res;
  res.labels = labels;
  for (int j = 0; j < cv.k; ++j) {
    if (!cv.only_folds.empty() &&
        std::find(cv.only_folds.begin(), cv.only_folds.end(), j) == cv.only_folds.end())
      continue;
    const fs::path dir = fs::path(o.out_dir) / ("fold-" + std::to_string(j));
    const std::string done = (dir / "scores.json").string();
    Sides sides;
    std::vector<int> gold;
    for (std::size_t i = 0; i < recs.size(); ++i) {
      if (fold[i] == j) {
        sides.valid.push_back(recs[i].text);
        sides.valid_labels.push_back(recs[i].label_index);
        gold.push_back(recs[i].label_index);
      } else {
        sides.train.push_back(recs[i].text);
        sides.train_labels.push_back(recs[i].label_index);
      }
    }
    auto member_dir = [&](std::size_t m) { return dir / ("member-" + std::to_string(m)); };
    CvFold f;
    f.fold = j;
    if (fs::exists(done)) {
      json fj = read_json(done);
      f.train_docs = fj.at("train_docs").get<std::size_t>();
      f.test_docs = fj.at("test_docs").get<std::size_t>();
      f.seconds = fj.at("seconds").get<double>();
      for (auto& m : fj.at("members")) f.members.push_back(score_from_json(m, labels));
      f.ensemble = score_from_json(fj.at("ensemble"), labels);
      if (f.members.size() != cv.lms.size())
        throw std::runtime_error(done + ": has " + std::to_string(f.members.size()) +
                                 " member(s), this run " + std::to_string(cv.lms.size()) +
                                 "; use another output directory");
      if (f.test_docs != gold.size())
        throw std::runtime_error(done + ": scored " + std::to_string(f.test_docs) + " papers, fold " +
                                 std::to_string(j) + " of this data has " + std::to_string(gold.size()) +
                                 "; use another output directory");
      if (fj.contains("ensemble_prior")) {
        f.prior_weights = fj.at("prior_weights").get<std::vector<double>>();
        for (auto& m : fj.at("members_prior")) f.members_prior.push_back(score_from_json(m, labels));
        f.ensemble_prior = score_from_json(fj.at("ensemble_prior"), labels);
      } else {
        // Scored before prior-corrected scores existed: computed from the members' probabilities.
        std::vector<std::vector<ClassProbs>> ps;
        for (std::size_t m = 0; m < cv.lms.size(); ++m)
          ps.push_back(read_probs((member_dir(m) / "probs.json").string(), gold.size()));
        score_fold(f, ps, gold, sides.train_labels, labels);
        write_json(done, fold_json(f, labels));
      }
      if (o.log) o.log("fold " + std::to_string(j) + ": done before (" + done + ")");
      res.folds.push_back(std::move(f));
      continue;
    }
    const auto t0 = std::chrono::steady_clock::now();
    f.train_docs = sides.train.size();
    f.test_docs = sides.valid.size();
    if (o.log)
      o.log("fold " + std::to_string(j) + "/" + std::to_string(cv.k) + ": training on " +
            std::to_string(f.train_docs) + " papers, scoring " + std::to_string(f.test_docs));
    std::vector<std::vector<ClassProbs>> ps;
    for (std::size_t m = 0; m < cv.lms.size(); ++m) {
      const fs::path mdir = member_dir(m);
      const std::string probs_path = (mdir / "probs.json").string();
      std::vector<ClassProbs> p;
      if (fs::exists(probs_path)) {
        p = read_probs(probs_path, gold.size());
      } else {
        std::string lm = cv.lms[m];
        if (cv.fold_lm_epochs > 0) lm = fold_lm(r, cv, lm, sides.train, (mdir / "lm").string(), o);
        RunOptions mo = o;
        mo.out_dir = mdir.string();
        mo.resume = o.resume && fs::exists(mdir / "checkpoint.json");
        Sides unwatched;  // the training side alone: no per-epoch scores of the fold
        if (!cv.watch) {
          unwatched.train = sides.train;
          unwatched.train_labels = sides.train_labels;
          mo.fit_all = true;  // here: no validation (the training side is given, not merged)
        }
        auto tr = train_classifier_from_lm(r, lm, cv.watch ? sides : unwatched, mo);
        // The model after the last epoch: the scored fold chose nothing.
        Classifier clf = Classifier::load(tr.clas.last_model_path);
        p = raw_probabilities(clf, sides.valid, o.quiet);
        json pj = json::array();
        for (auto& row : p) pj.push_back({row[0], row[1], row[2]});
        write_json(probs_path, pj);
      }
      const CvScore sm = score_probs(p, gold, labels);
      if (o.log)
        o.log("fold " + std::to_string(j) + " member " + std::to_string(m) + " (" + cv.lms[m] +
              "): accuracy " + std::to_string(sm.accuracy) + ", macro-F1 " + std::to_string(sm.macro_f1));
      ps.push_back(std::move(p));
    }
    score_fold(f, ps, gold, sides.train_labels, labels);
    f.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    write_json(done, fold_json(f, labels));
    if (o.log)
      o.log("fold " + std::to_string(j) + ": accuracy " + std::to_string(f.ensemble.accuracy) +
            ", macro-F1 " + std::to_string(f.ensemble.macro_f1) + "; prior-corrected " +
            std::to_string(f.ensemble_prior.accuracy) + ", " + std::to_string(f.ensemble_prior.macro_f1));
    res.folds.push_back(std::move(f));
  }
  return res;
}

}  // namespace ulmfit
