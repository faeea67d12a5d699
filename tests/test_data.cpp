// ctest-labels: golden
// tests/test_data.cpp — ulmfit/data.h loaders against fastai 2.7.19 (LMDataLoader, SortedDL,
// Pad_Chunk) on golden fixtures written by tools/reference/gen_vocab_data_goldens.py, plus
// the properties fastai cannot give us (our own shuffles, resumable state, splits).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ulmfit/data.h"

using namespace ulmfit;

namespace {

const std::string kFix = INSPIRE_SOURCE_DIR "/tests/fixtures/data/";

nlohmann::json load_json(const std::string& name) {
  std::ifstream f(kFix + name);
  EXPECT_TRUE(f) << "missing fixture " << name;
  return nlohmann::json::parse(f);
}

// The numericalised documents the goldens used (vocab of the first 200 docs, min_freq 2).
const std::vector<Doc>& golden_docs() {
  static const std::vector<Doc> docs = [] {
    auto g = load_json("vocab_goldens.json");
    std::vector<Doc> d;
    for (auto& x : g["cases"][1]["ids"]) d.push_back(x.get<Doc>());
    return d;
  }();
  return docs;
}

std::vector<int32_t> flat(const nlohmann::json& rows) {
  std::vector<int32_t> out;
  for (auto& r : rows)
    for (auto& v : r) out.push_back(v.get<int32_t>());
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// LM stream
// ---------------------------------------------------------------------------------------------
TEST(LMLoader, MatchesFastaiLMDataLoaderWithoutShuffle) {
  const auto& docs = golden_docs();
  ASSERT_EQ(docs.size(), 240u);
  auto g = load_json("lm_goldens.json");
  ASSERT_EQ(g["cases"].size(), 4u);
  for (auto& c : g["cases"]) {
    const std::size_t n_docs = c["n_docs"], bs = c["bs"], seq_len = c["seq_len"];
    SCOPED_TRACE("n_docs=" + std::to_string(n_docs) + " bs=" + std::to_string(bs) +
                 " seq_len=" + std::to_string(seq_len));
    LMLoader dl(std::vector<Doc>(docs.begin(), docs.begin() + n_docs), bs, seq_len,
                /*shuffle=*/false);
    ASSERT_EQ(dl.n_batches(), c["batches"].size());
    LMBatch b;
    std::size_t k = 0;
    while (dl.next(b)) {
      const auto& want = c["batches"][k];
      ASSERT_EQ(b.bs, want["x"].size());
      ASSERT_EQ(b.seq_len, want["x"][0].size()) << "batch " << k;
      EXPECT_EQ(b.x, flat(want["x"])) << "batch " << k;
      EXPECT_EQ(b.y, flat(want["y"])) << "batch " << k;
      ++k;
    }
    EXPECT_EQ(k, dl.n_batches());
    EXPECT_FALSE(dl.next(b));  // epoch over until begin_epoch()
  }
}

TEST(LMLoader, LayoutArithmetic) {
  // 3 docs of lengths 5, 4, 3 -> T = 12; bs 2 -> bl = floor(11/2) = 5; seq_len 2 -> 3 batches,
  // last_len 1.
  std::vector<Doc> docs = {{2, 10, 11, 12, 13}, {2, 20, 21, 22}, {2, 30, 31}};
  LMLoader dl(docs, 2, 2, false);
  EXPECT_EQ(dl.n_tokens(), 12u);
  EXPECT_EQ(dl.row_length(), 5u);
  EXPECT_EQ(dl.n_batches(), 3u);
  EXPECT_EQ(dl.last_len(), 1u);
  LMBatch b;
  ASSERT_TRUE(dl.next(b));
  // stream: 2 10 11 12 13 2 20 21 22 2 30 31; row 0 starts at 0, row 1 at 5
  EXPECT_EQ(b.x, (std::vector<int32_t>{2, 10, 2, 20}));
  EXPECT_EQ(b.y, (std::vector<int32_t>{10, 11, 20, 21}));
  ASSERT_TRUE(dl.next(b));
  ASSERT_TRUE(dl.next(b));
  EXPECT_EQ(b.seq_len, 1u);
  EXPECT_EQ(b.x, (std::vector<int32_t>{13, 2}));
  EXPECT_EQ(b.y, (std::vector<int32_t>{2, 30}));
  EXPECT_FALSE(dl.next(b));
  EXPECT_THROW(LMLoader(std::vector<Doc>{{2, 5}}, 2, 10, false), std::invalid_argument);
  EXPECT_THROW(LMLoader(docs, 0, 10, false), std::invalid_argument);
  EXPECT_THROW(LMLoader(docs, 2, 0, false), std::invalid_argument);
}

TEST(LMLoader, ShuffleGivesFastaiLayoutOfTheShuffledOrder) {
  const auto& docs = golden_docs();
  std::vector<Doc> sub(docs.begin(), docs.begin() + 40);
  LMLoader dl(sub, 8, 30, /*shuffle=*/true, /*seed=*/7);
  dl.begin_epoch();
  const auto order1 = dl.order();
  std::vector<std::size_t> ident(40);
  std::iota(ident.begin(), ident.end(), std::size_t{0});
  EXPECT_NE(order1, ident);
  EXPECT_TRUE(std::is_permutation(order1.begin(), order1.end(), ident.begin()));
  // Same layout as an unshuffled loader over the documents in that order.
  std::vector<Doc> reordered;
  for (auto i : order1) reordered.push_back(sub[i]);
  LMLoader ref(reordered, 8, 30, false);
  ref.begin_epoch();
  LMBatch a, b;
  for (std::size_t k = 0; k < dl.n_batches(); ++k) {
    ASSERT_TRUE(dl.next(a));
    ASSERT_TRUE(ref.next(b));
    EXPECT_EQ(a.x, b.x);
    EXPECT_EQ(a.y, b.y);
  }
  // A new epoch draws a new order; the same seed draws the same orders.
  dl.begin_epoch();
  EXPECT_NE(dl.order(), order1);
  LMLoader again(sub, 8, 30, true, 7);
  again.begin_epoch();
  EXPECT_EQ(again.order(), order1);
}

TEST(LMLoader, StateSaveRestoreResumesExactly) {
  const auto& docs = golden_docs();
  std::vector<Doc> sub(docs.begin(), docs.begin() + 30);
  LMLoader a(sub, 4, 25, true, 123);
  LMBatch b;
  // Run 1.5 epochs, save, then continue both the original and a restored copy.
  a.begin_epoch();
  while (a.next(b)) {
  }
  a.begin_epoch();
  for (std::size_t k = 0; k < a.n_batches() / 2; ++k) ASSERT_TRUE(a.next(b));
  const auto saved = LoaderState::from_json(nlohmann::json::parse(a.state().to_json().dump()));
  EXPECT_EQ(saved, a.state());
  EXPECT_EQ(saved.epoch, 2u);

  LMLoader r(sub, 4, 25, true, /*seed=*/999);  // a different seed: the state must override it
  r.restore(saved);
  EXPECT_EQ(r.order(), a.order());
  LMBatch x, y;
  for (int epoch = 0; epoch < 2; ++epoch) {
    while (true) {
      bool ga = a.next(x), gr = r.next(y);
      ASSERT_EQ(ga, gr);
      if (!ga) break;
      ASSERT_EQ(x.x, y.x);
      ASSERT_EQ(x.y, y.y);
    }
    a.begin_epoch();
    r.begin_epoch();
    EXPECT_EQ(a.order(), r.order());
  }
  // Bad states are rejected with a message.
  auto bad = saved;
  bad.batch = 1000000;
  EXPECT_THROW(r.restore(bad), std::invalid_argument);
  EXPECT_THROW(LoaderState::from_json(nlohmann::json::parse(R"({"epoch":1})")),
               std::invalid_argument);
  EXPECT_THROW(LoaderState::from_json(
                   nlohmann::json::parse(R"({"epoch":1,"batch":0,"rng":["x","0","0","0"]})")),
               std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Classifier batches
// ---------------------------------------------------------------------------------------------
TEST(ClassifierLoader, ValidationBatchesMatchFastaiSortedDLAndPadChunk) {
  const auto& docs = golden_docs();
  auto g = load_json("clas_goldens.json");
  ASSERT_EQ(g["valid"].size(), 3u);
  for (auto& c : g["valid"]) {
    const std::size_t n_docs = c["n_docs"], bs = c["bs"], seq_len = c["seq_len"];
    SCOPED_TRACE("n_docs=" + std::to_string(n_docs) + " bs=" + std::to_string(bs) +
                 " seq_len=" + std::to_string(seq_len));
    std::vector<int32_t> labels(n_docs);
    for (std::size_t i = 0; i < n_docs; ++i) labels[i] = (int32_t)(i % 3);
    ClassifierLoader dl(std::vector<Doc>(docs.begin(), docs.begin() + n_docs), labels, bs,
                  /*train=*/false, 0, seq_len);
    EXPECT_EQ(dl.order(), c["order"].get<std::vector<std::size_t>>());
    ASSERT_EQ(dl.n_batches(), c["batches"].size());
    ClassifierBatch b;
    std::size_t k = 0;
    std::size_t n_front_padded = 0;
    while (dl.next(b)) {
      const auto& want = c["batches"][k];
      ASSERT_EQ(b.bs, want["x"].size());
      ASSERT_EQ(b.len, want["x"][0].size());
      EXPECT_EQ(b.x, flat(want["x"])) << "batch " << k;
      EXPECT_EQ(b.y, want["y"].get<std::vector<int32_t>>()) << "batch " << k;
      for (auto f : b.front_pad) {
        n_front_padded += (f > 0);
        EXPECT_EQ(f % seq_len, 0u);
      }
      ++k;
    }
    EXPECT_EQ(k, c["batches"].size());
    EXPECT_GT(n_front_padded, 0u);  // the fixtures exercise front padding
  }
}

TEST(ClassifierLoader, TrainOrderMatchesFastaiShuffleFnGivenItsDraws) {
  auto g = load_json("clas_goldens.json");
  ASSERT_EQ(g["train"].size(), 5u);
  for (auto& c : g["train"]) {
    const std::size_t bs = c["bs"];
    SCOPED_TRACE("n_docs=" + std::to_string((std::size_t)c["n_docs"]) + " bs=" + std::to_string(bs));
    auto got = sorted_train_order(c["lengths"].get<std::vector<std::size_t>>(), bs,
                                  c["perm"].get<std::vector<std::size_t>>(),
                                  c["batch_perm"].get<std::vector<std::size_t>>());
    EXPECT_EQ(got, c["order"].get<std::vector<std::size_t>>());
  }
}

TEST(ClassifierLoader, TrainEpochProperties) {
  const auto& docs = golden_docs();
  const std::size_t n = 203, bs = 8;
  std::vector<Doc> sub(docs.begin(), docs.begin() + n);
  std::vector<int32_t> labels(n, 2);
  ClassifierLoader dl(sub, labels, bs, /*train=*/true, 5);
  EXPECT_EQ(dl.n_batches(), n / bs);  // drop_last
  std::size_t longest = 0;
  for (auto& d : sub) longest = std::max(longest, d.size());
  ClassifierBatch b;
  std::set<std::size_t> seen;
  std::size_t k = 0;
  while (dl.next(b)) {
    ASSERT_EQ(b.bs, bs);
    if (k == 0) {
      EXPECT_EQ(b.len, longest);  // the longest document comes first
    }
    for (std::size_t r = 0; r < bs; ++r) {
      EXPECT_TRUE(seen.insert(b.index[r]).second);
      EXPECT_EQ(b.lengths[r], sub[b.index[r]].size());
      // row = front pad (multiple of 72) + document + end pad
      for (std::size_t t = 0; t < b.front_pad[r]; ++t) ASSERT_EQ(b.x_at(r, t), 1);
      for (std::size_t t = 0; t < b.lengths[r]; ++t)
        ASSERT_EQ(b.x_at(r, b.front_pad[r] + t), sub[b.index[r]][t]);
      EXPECT_EQ(b.front_pad[r] % 72, 0u);
      EXPECT_LT(b.len - b.front_pad[r] - b.lengths[r], 72u);
    }
    ++k;
  }
  EXPECT_EQ(k, n / bs);
  EXPECT_EQ(seen.size(), (n / bs) * bs);
  // Resume mid-epoch.
  dl.begin_epoch();
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(dl.next(b));
  auto st = dl.state();
  ClassifierLoader r(sub, labels, bs, true, 77);
  r.restore(st);
  EXPECT_EQ(r.order(), dl.order());
  ClassifierBatch b2;
  while (dl.next(b)) {
    ASSERT_TRUE(r.next(b2));
    EXPECT_EQ(b.x, b2.x);
    EXPECT_EQ(b.index, b2.index);
  }
  EXPECT_FALSE(r.next(b2));
  EXPECT_THROW(ClassifierLoader(sub, std::vector<int32_t>(3), bs, true), std::invalid_argument);
  EXPECT_THROW(ClassifierLoader(std::vector<Doc>{{}}, std::vector<int32_t>{0}, bs, true),
               std::invalid_argument);
}

TEST(ClassifierLoader, PadChunkArithmetic) {
  std::vector<Doc> docs = {{2, 5, 6}, {2, 7, 7, 7, 7, 7, 7, 7, 7, 7}};
  ClassifierBatch b;
  pad_chunk_batch(docs, {0, 1}, {1, 0}, /*seq_len=*/4, /*pad=*/1, b);
  // longest 10; doc 0 needs 7 pads: 4 in front, 3 at the end
  EXPECT_EQ(b.len, 10u);
  std::vector<int32_t> row1(b.x.begin() + 10, b.x.end());
  EXPECT_EQ(row1, (std::vector<int32_t>{1, 1, 1, 1, 2, 5, 6, 1, 1, 1}));
  EXPECT_EQ(b.y, (std::vector<int32_t>{1, 0}));
}

// ---------------------------------------------------------------------------------------------
// Splits
// ---------------------------------------------------------------------------------------------
TEST(Split, RandomSplitIsSeededAndDisjoint) {
  auto s = random_split(1000, 0.2, 42);
  EXPECT_EQ(s.valid.size(), 200u);
  EXPECT_EQ(s.train.size(), 800u);
  std::vector<std::size_t> all = s.train;
  all.insert(all.end(), s.valid.begin(), s.valid.end());
  std::sort(all.begin(), all.end());
  for (std::size_t i = 0; i < 1000; ++i) ASSERT_EQ(all[i], i);
  EXPECT_EQ(random_split(1000, 0.2, 42).valid, s.valid);
  EXPECT_NE(random_split(1000, 0.2, 43).valid, s.valid);
  EXPECT_TRUE(std::is_sorted(s.valid.begin(), s.valid.end()));
  // Not just a prefix.
  EXPECT_GT(s.valid.back(), 900u);
  EXPECT_LT(s.valid.front(), 100u);
  EXPECT_THROW(random_split(10, 1.5), std::invalid_argument);
}

TEST(Split, ByField) {
  auto s = split_by_field({"train", "valid", "test", "train", "fixture", "", "validation"});
  EXPECT_EQ(s.train, (std::vector<std::size_t>{0, 3}));
  EXPECT_EQ(s.valid, (std::vector<std::size_t>{1, 6}));
  EXPECT_EQ(s.other, (std::vector<std::size_t>{2, 4, 5}));
}
