// ulmfit/data.cpp — see data.h.
#include "ulmfit/data.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <numeric>
#include <stdexcept>

#include <nlohmann/json.hpp>

namespace ulmfit {

// ---------------------------------------------------------------------------------------------
// LoaderState
// ---------------------------------------------------------------------------------------------
nlohmann::json LoaderState::to_json() const {
  nlohmann::json rj = nlohmann::json::array();
  for (auto w : rng) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%016" PRIx64, w);
    rj.push_back(buf);  // hex strings: exact in any JSON reader
  }
  return {{"epoch", epoch}, {"batch", batch}, {"rng", rj}};
}

LoaderState LoaderState::from_json(const nlohmann::json& j) {
  auto fail = [](const std::string& m) { throw std::invalid_argument("loader state: " + m); };
  if (!j.is_object()) fail("expected a JSON object");
  LoaderState s;
  for (const char* k : {"epoch", "batch"}) {
    if (!j.contains(k)) fail(std::string("missing field '") + k + "'");
    if (!j[k].is_number_unsigned()) fail(std::string("field '") + k + "' must be an unsigned integer");
  }
  s.epoch = j["epoch"].get<std::uint64_t>();
  s.batch = j["batch"].get<std::uint64_t>();
  if (!j.contains("rng")) fail("missing field 'rng'");
  const auto& r = j["rng"];
  if (!r.is_array() || r.size() != 4) fail("field 'rng' must be an array of 4 hex strings");
  for (std::size_t i = 0; i < 4; ++i) {
    if (!r[i].is_string()) fail("rng[" + std::to_string(i) + "] must be a hex string");
    const std::string h = r[i].get<std::string>();
    if (h.empty() || h.size() > 16 ||
        h.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
      fail("rng[" + std::to_string(i) + "] = '" + h + "' is not a 64-bit hex number");
    s.rng[i] = std::stoull(h, nullptr, 16);
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// LMLoader
// ---------------------------------------------------------------------------------------------
LMLoader::LMLoader(std::vector<Doc> docs, std::size_t bs, std::size_t seq_len, bool shuffle,
                   std::uint64_t seed)
    : docs_(std::move(docs)), bs_(bs), seq_len_(seq_len), shuffle_(shuffle), rng_(seed) {
  if (bs_ == 0) throw std::invalid_argument("LMLoader: bs must be > 0");
  if (seq_len_ == 0) throw std::invalid_argument("LMLoader: seq_len must be > 0");
  for (const auto& d : docs_) total_ += d.size();
  if (total_ < bs_ + 1)
    throw std::invalid_argument("LMLoader: the corpus has " + std::to_string(total_) +
                                " tokens, too few for bs = " + std::to_string(bs_) +
                                " (need at least bs + 1)");
  // fastai: corpus = round_multiple(T - 1, bs, round_down=True); bl = corpus // bs
  bl_ = (total_ - 1) / bs_;
  n_batches_ = bl_ / seq_len_ + (bl_ % seq_len_ != 0 ? 1 : 0);
  last_len_ = bl_ - (n_batches_ - 1) * seq_len_;
  order_.resize(docs_.size());
  std::iota(order_.begin(), order_.end(), std::size_t{0});
}

void LMLoader::build_stream() {
  stream_.clear();
  stream_.reserve(total_);
  for (auto i : order_) stream_.insert(stream_.end(), docs_[i].begin(), docs_[i].end());
}

void LMLoader::begin_epoch() {
  epoch_rng_ = rng_.state();
  std::iota(order_.begin(), order_.end(), std::size_t{0});
  if (shuffle_) rng_.shuffle(order_.begin(), order_.end());
  build_stream();
  ++epoch_;
  cursor_ = 0;
}

void LMLoader::batch(std::size_t k, LMBatch& out) const {
  if (epoch_ == 0) throw std::logic_error("LMLoader::batch: no epoch has begun");
  if (k >= n_batches_)
    throw std::out_of_range("LMLoader::batch: batch " + std::to_string(k) + " of " +
                            std::to_string(n_batches_));
  const std::size_t sl = (k + 1 == n_batches_) ? last_len_ : seq_len_;
  out.bs = bs_;
  out.seq_len = sl;
  out.x.resize(bs_ * sl);
  out.y.resize(bs_ * sl);
  for (std::size_t r = 0; r < bs_; ++r) {
    const std::size_t st = r * bl_ + k * seq_len_;
    std::copy_n(stream_.begin() + st, sl, out.x.begin() + r * sl);
    std::copy_n(stream_.begin() + st + 1, sl, out.y.begin() + r * sl);
  }
}

bool LMLoader::next(LMBatch& out) {
  if (epoch_ == 0) begin_epoch();
  if (cursor_ >= n_batches_) return false;
  batch(cursor_++, out);
  return true;
}

LoaderState LMLoader::state() const {
  return LoaderState{epoch_, cursor_, epoch_ > 0 ? epoch_rng_ : rng_.state()};
}

void LMLoader::restore(const LoaderState& s) {
  if (s.batch > n_batches_)
    throw std::invalid_argument("LMLoader::restore: batch cursor " + std::to_string(s.batch) +
                                " > " + std::to_string(n_batches_) +
                                " batches per epoch (state from another corpus or settings?)");
  rng_.set_state(s.rng);
  if (s.epoch == 0) {
    if (s.batch != 0) throw std::invalid_argument("LMLoader::restore: batch > 0 before epoch 1");
    epoch_ = 0;
    cursor_ = 0;
    std::iota(order_.begin(), order_.end(), std::size_t{0});
    return;
  }
  epoch_ = s.epoch - 1;
  begin_epoch();
  cursor_ = s.batch;
}

// ---------------------------------------------------------------------------------------------
// Classifier batch order and padding
// ---------------------------------------------------------------------------------------------
std::vector<std::size_t> sorted_valid_order(const std::vector<std::size_t>& lengths) {
  std::vector<std::size_t> idx(lengths.size());
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  std::stable_sort(idx.begin(), idx.end(),
                   [&](std::size_t a, std::size_t b) { return lengths[a] > lengths[b]; });
  return idx;
}

std::vector<std::size_t> sorted_train_order(const std::vector<std::size_t>& lengths,
                                            std::size_t bs, const std::vector<std::size_t>& perm,
                                            const std::vector<std::size_t>& batch_perm) {
  const std::size_t n = lengths.size();
  if (bs == 0) throw std::invalid_argument("sorted_train_order: bs must be > 0");
  if (perm.size() != n)
    throw std::invalid_argument("sorted_train_order: permutation has " +
                                std::to_string(perm.size()) + " entries for " +
                                std::to_string(n) + " items");
  if (n == 0) return {};
  std::vector<std::size_t> idxs = perm;
  // The longest item (first one if several: np.argmax) goes to position 0.
  const std::size_t imax =
      (std::size_t)(std::max_element(lengths.begin(), lengths.end()) - lengths.begin());
  auto p = std::find(idxs.begin(), idxs.end(), imax);
  if (p == idxs.end()) throw std::invalid_argument("sorted_train_order: perm is not a permutation");
  std::swap(idxs[0], *p);
  // Chunks of bs*50, each sorted by length descending (stable, as Python's sorted).
  const std::size_t sz = bs * 50;
  for (std::size_t i = 0; i < n; i += sz) {
    auto e = idxs.begin() + std::min(n, i + sz);
    std::stable_sort(idxs.begin() + i, e,
                     [&](std::size_t a, std::size_t b) { return lengths[a] > lengths[b]; });
  }
  const std::size_t nb = (n + bs - 1) / bs;
  if (nb <= 2) return idxs;
  if (batch_perm.size() != nb - 2)
    throw std::invalid_argument("sorted_train_order: batch permutation has " +
                                std::to_string(batch_perm.size()) + " entries, expected " +
                                std::to_string(nb - 2));
  std::vector<std::size_t> out;
  out.reserve(n);
  out.insert(out.end(), idxs.begin(), idxs.begin() + bs);  // first batch stays first
  for (auto j : batch_perm) {
    if (j >= nb - 2) throw std::invalid_argument("sorted_train_order: bad batch permutation");
    const std::size_t b = 1 + j;
    out.insert(out.end(), idxs.begin() + b * bs, idxs.begin() + (b + 1) * bs);
  }
  out.insert(out.end(), idxs.begin() + (nb - 1) * bs, idxs.end());  // last batch stays last
  return out;
}

std::vector<std::size_t> sorted_train_order(const std::vector<std::size_t>& lengths,
                                            std::size_t bs, nn::Rng& rng) {
  if (bs == 0) throw std::invalid_argument("sorted_train_order: bs must be > 0");
  const std::size_t n = lengths.size();
  std::vector<std::size_t> perm(n);
  std::iota(perm.begin(), perm.end(), std::size_t{0});
  rng.shuffle(perm.begin(), perm.end());
  const std::size_t nb = (n + bs - 1) / bs;
  std::vector<std::size_t> bperm(nb > 2 ? nb - 2 : 0);
  std::iota(bperm.begin(), bperm.end(), std::size_t{0});
  rng.shuffle(bperm.begin(), bperm.end());
  return sorted_train_order(lengths, bs, perm, bperm);
}

void pad_chunk_batch(const std::vector<Doc>& docs, const std::vector<std::int32_t>& labels,
                     const std::vector<std::size_t>& idx, std::size_t seq_len,
                     std::int32_t pad_idx, ClassifierBatch& out) {
  if (seq_len == 0) throw std::invalid_argument("pad_chunk_batch: seq_len must be > 0");
  std::size_t m = 0;
  for (auto i : idx) m = std::max(m, docs.at(i).size());
  out.bs = idx.size();
  out.len = m;
  out.x.assign(out.bs * m, pad_idx);
  out.y.resize(out.bs);
  out.index = idx;
  out.lengths.resize(out.bs);
  out.front_pad.resize(out.bs);
  for (std::size_t r = 0; r < idx.size(); ++r) {
    const Doc& d = docs[idx[r]];
    const std::size_t l = m - d.size();
    const std::size_t front = (l / seq_len) * seq_len;  // the remainder l % seq_len goes last
    std::copy(d.begin(), d.end(), out.x.begin() + r * m + front);
    out.y[r] = labels.empty() ? 0 : labels.at(idx[r]);
    out.lengths[r] = d.size();
    out.front_pad[r] = front;
  }
}

// ---------------------------------------------------------------------------------------------
// ClassifierLoader
// ---------------------------------------------------------------------------------------------
ClassifierLoader::ClassifierLoader(std::vector<Doc> docs, std::vector<std::int32_t> labels, std::size_t bs,
                       bool train, std::uint64_t seed, std::size_t seq_len, std::int32_t pad_idx)
    : docs_(std::move(docs)),
      labels_(std::move(labels)),
      bs_(bs),
      seq_len_(seq_len),
      pad_idx_(pad_idx),
      train_(train),
      rng_(seed) {
  if (bs_ == 0) throw std::invalid_argument("ClassifierLoader: bs must be > 0");
  if (seq_len_ == 0) throw std::invalid_argument("ClassifierLoader: seq_len must be > 0");
  if (labels_.size() != docs_.size())
    throw std::invalid_argument("ClassifierLoader: " + std::to_string(docs_.size()) + " documents but " +
                                std::to_string(labels_.size()) + " labels");
  lengths_.resize(docs_.size());
  for (std::size_t i = 0; i < docs_.size(); ++i) {
    if (docs_[i].empty())
      throw std::invalid_argument("ClassifierLoader: document " + std::to_string(i) + " is empty");
    lengths_[i] = docs_[i].size();
  }
  if (!train_) order_ = sorted_valid_order(lengths_);
}

std::size_t ClassifierLoader::n_batches() const {
  return train_ ? docs_.size() / bs_ : (docs_.size() + bs_ - 1) / bs_;
}

void ClassifierLoader::make_order() {
  if (train_) order_ = sorted_train_order(lengths_, bs_, rng_);
  else order_ = sorted_valid_order(lengths_);
}

void ClassifierLoader::begin_epoch() {
  epoch_rng_ = rng_.state();
  make_order();
  ++epoch_;
  cursor_ = 0;
}

void ClassifierLoader::batch(std::size_t k, ClassifierBatch& out) const {
  if (epoch_ == 0 && train_) throw std::logic_error("ClassifierLoader::batch: no epoch has begun");
  if (k >= n_batches())
    throw std::out_of_range("ClassifierLoader::batch: batch " + std::to_string(k) + " of " +
                            std::to_string(n_batches()));
  const std::size_t b = k * bs_, e = std::min(docs_.size(), b + bs_);
  std::vector<std::size_t> idx(order_.begin() + b, order_.begin() + e);
  pad_chunk_batch(docs_, labels_, idx, seq_len_, pad_idx_, out);
}

bool ClassifierLoader::next(ClassifierBatch& out) {
  if (epoch_ == 0) begin_epoch();
  if (cursor_ >= n_batches()) return false;
  batch(cursor_++, out);
  return true;
}

LoaderState ClassifierLoader::state() const {
  return LoaderState{epoch_, cursor_, epoch_ > 0 ? epoch_rng_ : rng_.state()};
}

void ClassifierLoader::restore(const LoaderState& s) {
  if (s.batch > n_batches())
    throw std::invalid_argument("ClassifierLoader::restore: batch cursor " + std::to_string(s.batch) +
                                " > " + std::to_string(n_batches()) + " batches per epoch");
  rng_.set_state(s.rng);
  if (s.epoch == 0) {
    if (s.batch != 0) throw std::invalid_argument("ClassifierLoader::restore: batch > 0 before epoch 1");
    epoch_ = 0;
    cursor_ = 0;
    return;
  }
  epoch_ = s.epoch - 1;
  begin_epoch();
  cursor_ = s.batch;
}

// ---------------------------------------------------------------------------------------------
// Splits
// ---------------------------------------------------------------------------------------------
Split random_split(std::size_t n, double valid_pct, std::uint64_t seed) {
  if (!(valid_pct >= 0.0 && valid_pct <= 1.0))
    throw std::invalid_argument("random_split: valid_pct must be in [0, 1]");
  std::vector<std::size_t> perm(n);
  std::iota(perm.begin(), perm.end(), std::size_t{0});
  nn::Rng rng(seed);
  rng.shuffle(perm.begin(), perm.end());
  const std::size_t cut = (std::size_t)(valid_pct * (double)n);
  Split s;
  s.valid.assign(perm.begin(), perm.begin() + cut);
  s.train.assign(perm.begin() + cut, perm.end());
  std::sort(s.valid.begin(), s.valid.end());
  std::sort(s.train.begin(), s.train.end());
  return s;
}

Split split_by_field(const std::vector<std::string>& split_values) {
  Split s;
  for (std::size_t i = 0; i < split_values.size(); ++i) {
    const auto& v = split_values[i];
    if (v == "train") s.train.push_back(i);
    else if (v == "valid" || v == "validation" || v == "dev") s.valid.push_back(i);
    else s.other.push_back(i);
  }
  return s;
}

}  // namespace ulmfit
