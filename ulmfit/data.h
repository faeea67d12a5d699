// ulmfit/data.h — fastai 2.7.19's text data loaders, laid out exactly as fastai lays them out.
//
//  * LMLoader: the language-model stream (fastai LMDataLoader, spec §1.6). Documents (ids,
//    xxbos first) are concatenated into one stream, cut into `bs` contiguous rows of
//    bl = floor((T-1)/bs) tokens; batch k holds the k-th window of `seq_len` tokens of every
//    row (the last batch is shorter); y is x shifted by one token. With shuffle on, the
//    document order is re-drawn at the start of every epoch from our own seeded nn::Rng (we
//    cannot reproduce Python's `random`; given the order, the layout is fastai's).
//  * ClassifierLoader: classifier batches (fastai SortedDL + Pad_Chunk, spec §1.7). Training order:
//    random permutation, the longest document first, chunks of bs*50 sorted by length
//    descending, the middle batches permuted, the partial last batch dropped. Validation
//    order: length descending (stable). Padding with pad_idx (1) in front in blocks of seq_len
//    (72) and the remainder at the end, so every text starts on a multiple of seq_len.
//  * random_split / split_by_field: train/valid split helpers.
//
// Both loaders expose a small State (epoch, batch cursor, RNG state at the start of the
// epoch) that can be saved (to_json) and restored, so that a resumed run sees exactly the
// batches the interrupted run would have seen.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "nn/rng.h"

namespace ulmfit {

using Doc = std::vector<std::int32_t>;  // numericalised document, xxbos first

// Where a loader stands. `epoch` counts the epochs begun (0: none yet); `batch` is the index
// of the next batch of the current epoch; `rng` is the loader's RNG state *before* the
// current epoch's shuffle (so the epoch's order can be re-derived).
struct LoaderState {
  std::uint64_t epoch = 0;
  std::uint64_t batch = 0;
  nn::Rng::State rng{};
  nlohmann::json to_json() const;
  // Throws std::invalid_argument naming the missing/bad field.
  static LoaderState from_json(const nlohmann::json& j);
  bool operator==(const LoaderState&) const = default;
};

// ---------------------------------------------------------------------------------------------
// Language-model stream
// ---------------------------------------------------------------------------------------------
struct LMBatch {
  std::size_t bs = 0, seq_len = 0;  // seq_len of THIS batch (the last one may be shorter)
  std::vector<std::int32_t> x, y;   // row-major [bs][seq_len]
  std::int32_t x_at(std::size_t row, std::size_t t) const { return x[row * seq_len + t]; }
  std::int32_t y_at(std::size_t row, std::size_t t) const { return y[row * seq_len + t]; }
};

class LMLoader {
 public:
  // Throws std::invalid_argument if bs or seq_len is 0 or the corpus has fewer than bs+1
  // tokens (fastai would produce empty batches).
  LMLoader(std::vector<Doc> docs, std::size_t bs, std::size_t seq_len, bool shuffle,
           std::uint64_t seed = 42);

  std::size_t bs() const { return bs_; }
  std::size_t seq_len() const { return seq_len_; }
  std::size_t n_batches() const { return n_batches_; }   // per epoch
  std::size_t row_length() const { return bl_; }         // fastai's `bl`
  std::size_t last_len() const { return last_len_; }
  std::size_t n_tokens() const { return total_; }        // T = sum of document lengths
  const std::vector<std::size_t>& order() const { return order_; }  // current document order

  // Starts the next epoch (shuffles the documents if shuffling). next() calls it by itself
  // when no epoch has begun; after an epoch ends, next() returns false until begin_epoch().
  void begin_epoch();
  // Fills `out` with the next batch of the current epoch; false when the epoch is over.
  bool next(LMBatch& out);
  // Batch k of the current epoch (no cursor movement). k < n_batches().
  void batch(std::size_t k, LMBatch& out) const;

  LoaderState state() const;
  // Restores a state saved from a loader built on the same documents and settings.
  void restore(const LoaderState& s);

 private:
  void build_stream();
  std::vector<Doc> docs_;
  std::size_t bs_, seq_len_, total_ = 0, bl_ = 0, n_batches_ = 0, last_len_ = 0;
  bool shuffle_;
  nn::Rng rng_;
  nn::Rng::State epoch_rng_{};
  std::uint64_t epoch_ = 0, cursor_ = 0;
  std::vector<std::size_t> order_;
  std::vector<std::int32_t> stream_;
};

// ---------------------------------------------------------------------------------------------
// Classifier batches
// ---------------------------------------------------------------------------------------------
// fastai SortedDL (shuffle=False): indices sorted by length descending, ties in index order.
std::vector<std::size_t> sorted_valid_order(const std::vector<std::size_t>& lengths);
// fastai SortedDL.shuffle_fn with its two random draws given: `perm` (np.random.permutation(n))
// and `batch_perm` (the permutation of the ceil(n/bs)-2 middle batches; empty if <= 2 batches).
std::vector<std::size_t> sorted_train_order(const std::vector<std::size_t>& lengths,
                                            std::size_t bs, const std::vector<std::size_t>& perm,
                                            const std::vector<std::size_t>& batch_perm);
// The same, drawing both permutations from `rng`.
std::vector<std::size_t> sorted_train_order(const std::vector<std::size_t>& lengths,
                                            std::size_t bs, nn::Rng& rng);

struct ClassifierBatch {
  std::size_t bs = 0, len = 0;          // rows, padded length (= longest document)
  std::vector<std::int32_t> x;          // row-major [bs][len], padded with pad_idx
  std::vector<std::int32_t> y;          // [bs] labels
  std::vector<std::size_t> index;       // [bs] dataset indices of the rows
  std::vector<std::size_t> lengths;     // [bs] unpadded lengths
  // Number of pad tokens in front of row r (a multiple of seq_len).
  std::vector<std::size_t> front_pad;
  std::int32_t x_at(std::size_t row, std::size_t t) const { return x[row * len + t]; }
};

// fastai pad_chunk (pad_first=True) for the documents docs[idx[0..]], into `out`.
void pad_chunk_batch(const std::vector<Doc>& docs, const std::vector<std::int32_t>& labels,
                     const std::vector<std::size_t>& idx, std::size_t seq_len,
                     std::int32_t pad_idx, ClassifierBatch& out);

class ClassifierLoader {
 public:
  // train: SortedDL shuffle order + drop_last; otherwise validation order, last batch kept.
  // labels.size() must equal docs.size() (std::invalid_argument otherwise); empty documents
  // are rejected too.
  ClassifierLoader(std::vector<Doc> docs, std::vector<std::int32_t> labels, std::size_t bs,
             bool train, std::uint64_t seed = 42, std::size_t seq_len = 72,
             std::int32_t pad_idx = 1);

  std::size_t size() const { return docs_.size(); }
  std::size_t bs() const { return bs_; }
  std::size_t n_batches() const;
  const std::vector<std::size_t>& order() const { return order_; }
  const std::vector<Doc>& docs() const { return docs_; }
  const std::vector<std::int32_t>& labels() const { return labels_; }

  void begin_epoch();
  bool next(ClassifierBatch& out);
  void batch(std::size_t k, ClassifierBatch& out) const;

  LoaderState state() const;
  void restore(const LoaderState& s);

 private:
  void make_order();
  std::vector<Doc> docs_;
  std::vector<std::int32_t> labels_;
  std::vector<std::size_t> lengths_;
  std::size_t bs_, seq_len_;
  std::int32_t pad_idx_;
  bool train_;
  nn::Rng rng_;
  nn::Rng::State epoch_rng_{};
  std::uint64_t epoch_ = 0, cursor_ = 0;
  std::vector<std::size_t> order_;
};

// ---------------------------------------------------------------------------------------------
// Train / valid split
// ---------------------------------------------------------------------------------------------
struct Split {
  std::vector<std::size_t> train, valid;  // ascending indices
  std::vector<std::size_t> other;         // split_by_field: rows that are neither
};
// fastai RandomSplitter semantics: floor(valid_pct * n) random rows go to valid.
Split random_split(std::size_t n, double valid_pct = 0.2, std::uint64_t seed = 42);
// By a per-row split value: "train" -> train, "valid"/"validation"/"dev" -> valid, anything
// else (e.g. "test", "fixture", "") -> other.
Split split_by_field(const std::vector<std::string>& split_values);

}  // namespace ulmfit
