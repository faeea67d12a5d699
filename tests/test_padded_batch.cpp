// ctest-labels: unit
// tests/test_padded_batch.cpp — batched serving of documents of different lengths: nn::lstm_infer
// with `lengths` against each row run alone, and ClassifierModel::infer_batch_padded against
// infer() one document at a time (double: to rounding; float: to 1e-5), forward and backwards
// models, documents longer than max_len (the pooling window), groups of any size; and
// ClassifierModel::pooled_batch (document embeddings) against the pooled features of the
// training path's eval-mode forward (concat_pool over a batch of one).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "nn/lstm.h"
#include "nn/rng.h"
#include "ulmfit/classifier_model.h"

using namespace nn;
using ulmfit::ClassifierModelT;
using ulmfit::ClassifierWorkspace;
using ulmfit::TokenId;

namespace {

template <typename T>
Tensor<T> random_tensor(Shape shape, std::uint64_t seed, double s) {
  Rng rng(seed);
  Tensor<T> m(shape);
  for (Index i = 0; i < m.numel(); ++i) m[i] = (T)rng.uniform(-s, s);
  return m;
}

template <typename T>
void check_lstm_lengths(double tol) {
  const Index H = 11, in = 6, sl = 9, G = 4 * H;
  const std::vector<Index> lengths = {9, 9, 6, 3, 1, 0};
  const Index bs = (Index)lengths.size();
  auto w_ih = random_tensor<T>({G, in}, 1, 0.4), w_hh = random_tensor<T>({G, H}, 2, 0.4);
  auto b_ih = random_tensor<T>({G}, 3, 0.4), b_hh = random_tensor<T>({G}, 4, 0.4);
  auto x = random_tensor<T>({bs, sl, in}, 5, 1.0);
  auto h0 = random_tensor<T>({bs, H}, 6, 0.5), c0 = random_tensor<T>({bs, H}, 7, 0.5);
  LstmParams<T> p{w_ih.view(), w_hh.view(), b_ih.view(), b_hh.view()};
  Tensor<T> h({bs, H}), c({bs, H}), y({bs, sl, H}), s;
  h.view().copy_from(h0.view());
  c.view().copy_from(c0.view());
  for (Index i = 0; i < y.numel(); ++i) y[i] = T(7);  // padded outputs must be overwritten
  lstm_infer<T>(p, x.view(), h.view(), c.view(), y.view(), s, lengths.data());
  for (Index b = 0; b < bs; ++b) {
    const Index n = lengths[b];
    Tensor<T> hb({1, H}), cb({1, H}), yb({1, std::max<Index>(n, 1), H}), sb;
    std::copy_n(h0.data() + b * H, H, hb.data());
    std::copy_n(c0.data() + b * H, H, cb.data());
    if (n > 0)
      lstm_infer<T>(p, CView<T>(x.data() + b * sl * in, Shape{1, n, in}), hb.view(), cb.view(),
                    View<T>(yb.data(), Shape{1, n, H}), sb);
    for (Index t = 0; t < sl; ++t)
      for (Index k = 0; k < H; ++k) {
        const T got = y[(b * sl + t) * H + k];
        if (t < n)
          ASSERT_NEAR(got, yb[t * H + k], tol) << "row " << b << " t " << t;
        else
          ASSERT_EQ(got, T(0)) << "row " << b << " t " << t << " is padding";
      }
    for (Index k = 0; k < H; ++k) {
      ASSERT_NEAR(h[b * H + k], hb[k], tol) << "final h of row " << b;
      ASSERT_NEAR(c[b * H + k], cb[k], tol) << "final c of row " << b;
    }
  }
  const std::vector<Index> increasing = {3, 5, 1, 1, 1, 1};
  EXPECT_THROW(lstm_infer<T>(p, x.view(), h.view(), c.view(), y.view(), s, increasing.data()),
               std::invalid_argument);
  const std::vector<Index> too_long = {10, 1, 1, 1, 1, 1};
  EXPECT_THROW(lstm_infer<T>(p, x.view(), h.view(), c.view(), y.view(), s, too_long.data()),
               std::invalid_argument);
}

ulmfit::ModelConfig small_config(bool backwards) {
  auto cfg = ulmfit::ModelConfig::classifier(60);
  cfg.emb_sz = 8;
  cfg.n_hid = 14;
  cfg.n_layers = 3;
  cfg.bptt = 5;     // blocks of 40 tokens
  cfg.max_len = 12;  // pooled: the chunks within the last 12 positions
  cfg.lin_ftrs = {10};
  cfg.backwards = backwards;
  return cfg;
}

std::vector<std::vector<TokenId>> random_docs(int n, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<std::vector<TokenId>> docs;
  for (int i = 0; i < n; ++i) {
    std::vector<TokenId> d{2};
    const int len = 1 + (int)rng.below(95);  // up to 3 blocks
    for (int t = 1; t < len; ++t) d.push_back(9 + (TokenId)rng.below(50));
    docs.push_back(d);
  }
  docs.push_back({2});  // one token
  docs.push_back(docs[3]);  // two equal documents
  return docs;
}

template <typename T>
void check_padded_batch(bool backwards, double tol) {
  ClassifierModelT<T> m(small_config(backwards));
  Rng rng(backwards ? 11 : 10);
  m.init(rng);
  auto docs = random_docs(21, backwards ? 31 : 30);
  const Index n = (Index)docs.size();
  ClassifierWorkspace<T> ws;
  std::vector<T> single(n * 3);
  for (Index i = 0; i < n; ++i)
    m.infer(CView<TokenId>(docs[i].data(), Shape{(Index)docs[i].size()}),
            View<T>(single.data() + i * 3, Shape{3}), ws);
  for (Index group : {Index(1), Index(4), Index(7), Index(64)}) {
    Tensor<T> got({n, 3});
    m.infer_batch_padded(docs, got.view(), group);
    for (Index i = 0; i < n * 3; ++i)
      ASSERT_NEAR(got[i], single[i], tol * (1 + std::fabs((double)single[i])))
          << "group " << group << " doc " << i / 3 << " (" << docs[i / 3].size() << " tokens)";
  }
}

}  // namespace

TEST(PaddedBatch, LstmRowsRunAsIfAloneDouble) { check_lstm_lengths<double>(1e-12); }
TEST(PaddedBatch, LstmRowsRunAsIfAloneFloat) { check_lstm_lengths<float>(2e-6); }

TEST(PaddedBatch, ClassifierEqualsOneDocumentAtATimeDouble) {
  check_padded_batch<double>(false, 1e-12);
  check_padded_batch<double>(true, 1e-12);
}
TEST(PaddedBatch, ClassifierEqualsOneDocumentAtATimeFloat) {
  check_padded_batch<float>(false, 1e-5);
  check_padded_batch<float>(true, 1e-5);
}

// With int8 recurrent weights the batch widens them (the same values), so it still agrees.
TEST(PaddedBatch, Int8ModelAgreesToo) {
  ClassifierModelT<float> m(small_config(false));
  Rng rng(3);
  m.init(rng);
  m.set_recurrent_precision(ulmfit::RecurrentPrecision::i8);
  auto docs = random_docs(9, 5);
  const Index n = (Index)docs.size();
  Tensor<float> got({n, 3});
  m.infer_batch_padded(docs, got.view(), 8);
  for (Index i = 0; i < n; ++i) {
    auto z = m.infer(docs[i]);
    for (int k = 0; k < 3; ++k) ASSERT_NEAR(got[i * 3 + k], z[k], 1e-5 * (1 + std::fabs(z[k]))) << i;
  }
}

TEST(PaddedBatch, BadDocumentsAreNamed) {
  ClassifierModelT<float> m(small_config(false));
  Rng rng(3);
  m.init(rng);
  std::vector<std::vector<TokenId>> docs = {{2, 9, 10}, {}, {2}};
  Tensor<float> out({3, 3});
  try {
    m.infer_batch_padded(docs, out.view());
    FAIL() << "an empty document should be refused";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("document 1"), std::string::npos) << e.what();
  }
  docs[1] = {2, 60};  // outside the vocabulary
  EXPECT_THROW(m.infer_batch_padded(docs, out.view()), std::invalid_argument);
  EXPECT_THROW(m.infer_batch_padded(docs, out.view(), 0), std::invalid_argument);
}

// pooled_batch is the head's input that infer_batch_padded computes: checked against another
// path, the training forward in eval mode (SentenceEncoder chunks + concat_pool_forward) on each
// document alone, which fills cache.pooled. A backwards model's forward reads the ids as given,
// so it gets the document reversed, as its data loader does.
template <typename T>
void check_pooled(bool backwards, double tol) {
  ClassifierModelT<T> m(small_config(backwards));
  Rng rng(backwards ? 13 : 12);
  m.init(rng);
  auto docs = random_docs(17, backwards ? 41 : 40);
  const Index n = (Index)docs.size(), F = 3 * m.config().emb_sz;
  ulmfit::ClassifierCache<T> cache;
  ulmfit::ForwardOptions eval;
  eval.training = false;
  std::vector<T> want(n * F);
  for (Index i = 0; i < n; ++i) {
    std::vector<TokenId> d = docs[i];
    if (backwards) std::reverse(d.begin(), d.end());
    Tensor<T> logits({1, 3});
    m.forward(CView<TokenId>(d.data(), Shape{1, (Index)d.size()}), logits.view(), cache, eval);
    ASSERT_EQ(cache.pooled.numel(), F);
    std::copy_n(cache.pooled.data(), F, want.data() + i * F);
  }
  for (Index group : {Index(1), Index(5), Index(64)}) {
    Tensor<T> got({n, F});
    m.pooled_batch(docs, got.view(), group);
    for (Index i = 0; i < n * F; ++i)
      ASSERT_NEAR(got[i], want[i], tol * (1 + std::fabs((double)want[i])))
          << "group " << group << " doc " << i / F << " (" << docs[i / F].size()
          << " tokens) feature " << i % F;
  }
  Tensor<T> wrong({n, F + 1});
  EXPECT_THROW(m.pooled_batch(docs, wrong.view()), std::invalid_argument);
  docs[2].clear();
  Tensor<T> got({n, F});
  EXPECT_THROW(m.pooled_batch(docs, got.view()), std::invalid_argument);
}

TEST(PaddedBatch, PooledFeaturesEqualTheTrainingPathsDouble) {
  check_pooled<double>(false, 1e-12);
  check_pooled<double>(true, 1e-12);
}
TEST(PaddedBatch, PooledFeaturesEqualTheTrainingPathsFloat) {
  check_pooled<float>(false, 1e-5);
  check_pooled<float>(true, 1e-5);
}
