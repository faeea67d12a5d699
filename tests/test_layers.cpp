// ctest-labels: unit
// tests/test_layers.cpp — finite-difference gradient checks (double) for every nn/ building
// block, dropout-mask statistics, and bad-shape errors. Golden agreement with PyTorch is in
// tests/test_layers_golden.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <cstdint>
#include <string>
#include <vector>

#include "nn/activation.h"
#include "nn/backend.h"
#include "nn/batchnorm.h"
#include "nn/dropout.h"
#include "nn/embedding.h"
#include "nn/linear.h"
#include "nn/loss.h"
#include "nn/pooling.h"
#include "tests/gradcheck.h"

using namespace nn;
using testing_util::dot;
using testing_util::fill_uniform;
using testing_util::gradcheck;
using testing_util::GradVar;

namespace {

constexpr double kTol = 1e-6;  // max relative error of the finite differences (double)

template <typename F>
void expect_invalid(F&& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    std::string msg = e.what();
    for (auto& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

Tensor<double> rand_t(Shape s, Rng& rng, double lo = -1, double hi = 1) {
  Tensor<double> t(s);
  fill_uniform(t.view(), rng, lo, hi);
  return t;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
TEST(Linear, GradcheckWithAndWithoutBias) {
  for (bool bias : {true, false}) {
    Rng rng(1);
    auto x = rand_t({2, 3, 5}, rng), W = rand_t({4, 5}, rng), b = rand_t({4}, rng);
    auto dy = rand_t({2, 3, 4}, rng);
    Tensor<double> y({2, 3, 4}), dx({2, 3, 5}), dW({4, 5}), db({4});
    CView<double> bv = bias ? CView<double>(b.view()) : CView<double>();
    linear_forward<double>(x, W, bv, y);
    linear_backward<double>(x, W, dy, dx, dW, bias ? db.view() : View<double>());
    auto loss = [&] {
      linear_forward<double>(x, W, bv, y);
      return dot<double>(dy, y);
    };
    std::vector<GradVar> vars{{"x", x, dx}, {"W", W, dW}};
    if (bias) vars.push_back({"b", b, db});
    EXPECT_GRADCHECK(gradcheck(loss, vars), kTol);
  }
}

TEST(Linear, ParamGradsAccumulate) {
  Rng rng(2);
  auto x = rand_t({3, 5}, rng), W = rand_t({4, 5}, rng), b = rand_t({4}, rng), dy = rand_t({3, 4}, rng);
  Tensor<double> dx({3, 5}), dW1({4, 5}), db1({4}), dW2({4, 5}), db2({4});
  linear_backward<double>(x, W, dy, dx, dW1, db1);
  linear_backward<double>(x, W, dy, dx, dW2, db2);
  linear_backward<double>(x, W, dy, dx, dW2, db2);
  for (Index i = 0; i < dW1.numel(); ++i) EXPECT_NEAR(dW2[i], 2 * dW1[i], 1e-12);
  for (Index i = 0; i < db1.numel(); ++i) EXPECT_NEAR(db2[i], 2 * db1[i], 1e-12);
}

TEST(Linear, BadShapesThrow) {
  Tensor<float> x({3, 5}), W({4, 6}), b({4}), y({3, 4});
  expect_invalid([&] { linear_forward<float>(x, W, b, y); }, {"linear_forward", "[3, 5]", "[4, 6]"});
  Tensor<float> W2({4, 5}), y2({3, 5}), b2({3});
  expect_invalid([&] { linear_forward<float>(x, W2, b, y2); }, {"linear_forward", "[3, 5]"});
  expect_invalid([&] { linear_forward<float>(x, W2, b2, y); }, {"linear_forward", "[3]"});
  Tensor<float> dx({3, 4}), dW({4, 5});
  expect_invalid([&] { linear_backward<float>(x, W2, y, dx, dW, b); }, {"linear_backward", "dx"});
}

// ---------------------------------------------------------------------------------------------
TEST(Embedding, GradcheckThroughRowMask) {
  Rng rng(3);
  const Index V = 7, E = 3;
  auto table = rand_t({V, E}, rng, -0.1, 0.1);
  Tensor<double> mask({V});
  dropout_mask<double>(rng, 0.3, mask);
  mask[2] = 0;          // a used row is dropped
  mask[4] = 1 / 0.7;    // and another kept
  Tensor<std::int32_t> ids({2, 4});
  std::int32_t idv[] = {4, 2, 1, 4, 0, 6, 1, 3};
  for (int i = 0; i < 8; ++i) ids[i] = idv[i];
  auto dy = rand_t({2, 4, E}, rng);
  Tensor<double> y({2, 4, E}), dtable({V, E});
  embedding_forward<double>(ids, table, mask, y);
  embedding_backward<double>(ids, mask, dy, /*pad_idx=*/-1, dtable);
  auto loss = [&] {
    embedding_forward<double>(ids, table, mask, y);
    return dot<double>(dy, y);
  };
  EXPECT_GRADCHECK(gradcheck(loss, {{"table", table, dtable}}), kTol);
  // dropped row: no gradient, zero output
  for (Index e = 0; e < E; ++e) EXPECT_EQ(dtable[2 * E + e], 0.0);
  for (Index e = 0; e < E; ++e) EXPECT_EQ(y[1 * E + e], 0.0);
}

TEST(Embedding, PadRowGetsNoGradientAndGradsAccumulate) {
  Rng rng(4);
  const Index V = 5, E = 2;
  auto table = rand_t({V, E}, rng);
  Tensor<std::int32_t> ids({4});
  std::int32_t idv[] = {1, 3, 1, 3};
  for (int i = 0; i < 4; ++i) ids[i] = idv[i];
  auto dy = rand_t({4, E}, rng);
  Tensor<double> dtable({V, E});
  dtable.view().fill(0.5);
  embedding_backward<double>(ids, CView<double>(), dy, /*pad_idx=*/1, dtable);
  for (Index e = 0; e < E; ++e) {
    EXPECT_EQ(dtable[1 * E + e], 0.5);  // pad row untouched
    EXPECT_NEAR(dtable[3 * E + e], 0.5 + dy[1 * E + e] + dy[3 * E + e], 1e-15);
    EXPECT_EQ(dtable[0 * E + e], 0.5);
  }
  // without dropout (empty mask) the forward is a plain lookup
  Tensor<double> y({4, E});
  embedding_forward<double>(ids, table, CView<double>(), y);
  for (Index e = 0; e < E; ++e) EXPECT_EQ(y[1 * E + e], table[3 * E + e]);
}

TEST(Embedding, BadInputThrows) {
  Tensor<float> table({5, 3}), out({4, 3}), mask({4});
  Tensor<std::int32_t> ids({4});
  ids[2] = 5;
  try {
    embedding_forward<float>(ids, table, CView<float>(), out);
    ADD_FAILURE() << "expected out_of_range";
  } catch (const std::out_of_range& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("position 2"), std::string::npos) << m;
    EXPECT_NE(m.find("5"), std::string::npos) << m;
  }
  ids[2] = -1;
  EXPECT_THROW(embedding_backward<float>(ids, CView<float>(), out, 1, table), std::out_of_range);
  ids[2] = 0;
  expect_invalid([&] { embedding_forward<float>(ids, table, mask, out); }, {"embedding_forward", "row_mask", "[4]"});
  Tensor<float> out2({4, 2});
  expect_invalid([&] { embedding_forward<float>(ids, table, CView<float>(), out2); }, {"embedding_forward", "[4, 2]"});
}

// ---------------------------------------------------------------------------------------------
TEST(Dropout, MaskStatisticsAndDeterminism) {
  Rng a(5), b(5);
  Tensor<float> m1({20000}), m2({20000});
  dropout_mask<float>(a, 0.25, m1);
  dropout_mask<float>(b, 0.25, m2);
  Index zeros = 0;
  for (Index i = 0; i < m1.numel(); ++i) {
    EXPECT_EQ(m1[i], m2[i]);
    if (m1[i] == 0.f) ++zeros;
    else EXPECT_FLOAT_EQ(m1[i], 1.f / 0.75f);
  }
  EXPECT_NEAR(zeros / 20000.0, 0.25, 0.015);
  dropout_mask<float>(a, 0.25, m2);  // a fresh draw differs
  Index diff = 0;
  for (Index i = 0; i < m1.numel(); ++i) diff += (m1[i] != m2[i]);
  EXPECT_GT(diff, 1000);
  dropout_mask<float>(a, 0.0, m1);
  for (Index i = 0; i < m1.numel(); ++i) ASSERT_EQ(m1[i], 1.f);
  dropout_mask<float>(a, 1.0, m1);
  for (Index i = 0; i < m1.numel(); ++i) ASSERT_EQ(m1[i], 0.f);
  expect_invalid([&] { dropout_mask<float>(a, 1.5, m1); }, {"dropout_mask", "1.5"});
  expect_invalid([&] { dropout_mask<float>(a, -0.1, m1); }, {"dropout_mask"});
  expect_invalid([&] { dropout_mask<float>(a, std::nan(""), m1); }, {"dropout_mask"});
}

TEST(Dropout, PlainGradcheck) {
  Rng rng(6);
  auto x = rand_t({4, 6}, rng), dy = rand_t({4, 6}, rng);
  Tensor<double> mask({4, 6}), y({4, 6}), dx({4, 6});
  dropout_mask<double>(rng, 0.3, mask);
  dropout_forward<double>(x, mask, y);
  dropout_backward<double>(dy, mask, dx);
  auto loss = [&] {
    dropout_forward<double>(x, mask, y);
    return dot<double>(dy, y);
  };
  EXPECT_GRADCHECK(gradcheck(loss, {{"x", x, dx}}), kTol);
  Tensor<double> bad({4, 5});
  expect_invalid([&] { dropout_forward<double>(x, bad, y); }, {"dropout_forward", "[4, 5]", "[4, 6]"});
}

TEST(Dropout, RnnGradcheckAndMaskSharedOverTime) {
  Rng rng(7);
  const Index bs = 3, sl = 4, C = 5;
  auto x = rand_t({bs, sl, C}, rng), dy = rand_t({bs, sl, C}, rng);
  Tensor<double> mask({bs, C}), y({bs, sl, C}), dx({bs, sl, C});
  dropout_mask<double>(rng, 0.4, mask);
  rnn_dropout_forward<double>(x, mask, y);
  for (Index b = 0; b < bs; ++b)
    for (Index t = 0; t < sl; ++t)
      for (Index c = 0; c < C; ++c)
        ASSERT_EQ(y[(b * sl + t) * C + c], x[(b * sl + t) * C + c] * mask[b * C + c]);
  rnn_dropout_backward<double>(dy, mask, dx);
  auto loss = [&] {
    rnn_dropout_forward<double>(x, mask, y);
    return dot<double>(dy, y);
  };
  EXPECT_GRADCHECK(gradcheck(loss, {{"x", x, dx}}), kTol);
  // [bs, 1, C] mask is accepted too
  rnn_dropout_forward<double>(x, mask.view().reshape({bs, 1, C}), y);
  Tensor<double> bad({bs, sl, C});
  expect_invalid([&] { rnn_dropout_forward<double>(x, bad, y); }, {"rnn_dropout_forward", "[3, 4, 5]"});
  Tensor<double> x2({bs, C});
  expect_invalid([&] { rnn_dropout_backward<double>(x2, mask, x2); }, {"rnn_dropout_backward", "[3, 5]"});
}

TEST(Dropout, WeightDropoutGradcheck) {
  // W_eff = W_raw ⊙ mask, then a linear layer: check dW_raw end to end.
  Rng rng(8);
  auto Wr = rand_t({6, 4}, rng), x = rand_t({3, 4}, rng), dy = rand_t({3, 6}, rng);
  Tensor<double> mask({6, 4}), We({6, 4}), y({3, 6}), dWe({6, 4}), dWr({6, 4}), dx({3, 4});
  dropout_mask<double>(rng, 0.5, mask);
  weight_dropout_forward<double>(Wr, mask, We);
  linear_forward<double>(x, We, CView<double>(), y);
  linear_backward<double>(x, We, dy, dx, dWe, View<double>());
  weight_dropout_backward<double>(dWe, mask, dWr);
  auto loss = [&] {
    weight_dropout_forward<double>(Wr, mask, We);
    linear_forward<double>(x, We, CView<double>(), y);
    return dot<double>(dy, y);
  };
  EXPECT_GRADCHECK(gradcheck(loss, {{"W_raw", Wr, dWr}, {"x", x, dx}}), kTol);
  // accumulates
  Tensor<double> acc({6, 4});
  acc.view().fill(1.0);
  weight_dropout_backward<double>(dWe, mask, acc);
  for (Index i = 0; i < acc.numel(); ++i) EXPECT_NEAR(acc[i], 1.0 + dWr[i], 1e-15);
  Tensor<double> bad({4, 6});
  expect_invalid([&] { weight_dropout_forward<double>(Wr, bad, We); }, {"weight_dropout_forward", "[4, 6]", "[6, 4]"});
}

TEST(Activation, ReluGradcheckAndInPlace) {
  Rng rng(9);
  auto x = rand_t({5, 7}, rng), dy = rand_t({5, 7}, rng);
  for (Index i = 0; i < x.numel(); ++i)  // keep away from the kink for finite differences
    if (std::fabs(x[i]) < 1e-3) x[i] = 0.5;
  Tensor<double> y({5, 7}), dx({5, 7});
  relu_forward<double>(x, y);
  relu_backward<double>(y, dy, dx);
  auto loss = [&] {
    relu_forward<double>(x, y);
    return dot<double>(dy, y);
  };
  EXPECT_GRADCHECK(gradcheck(loss, {{"x", x, dx}}), kTol);
  Tensor<double> z = x;
  relu_forward<double>(z, z);
  for (Index i = 0; i < z.numel(); ++i) EXPECT_EQ(z[i], std::max(0.0, x[i]));
  Tensor<double> bad({3});
  expect_invalid([&] { relu_forward<double>(x, bad); }, {"relu_forward", "[3]"});
}

// ---------------------------------------------------------------------------------------------
TEST(BatchNorm, TrainGradcheck) {
  Rng rng(10);
  const Index N = 6, C = 4;
  auto x = rand_t({N, C}, rng, -2, 3), w = rand_t({C}, rng, 0.5, 1.5), b = rand_t({C}, rng),
       dy = rand_t({N, C}, rng);
  Tensor<double> rm({C}), rv({C}), y({N, C}), xhat({N, C}), rstd({C}), dx({N, C}), dw({C}), db({C});
  batchnorm_init<double>({}, {}, rm, rv);
  BatchNormCache<double> cache{xhat, rstd};
  batchnorm_forward_train<double>(x, w, b, rm, rv, y, cache);
  batchnorm_backward<double>(dy, w, cache, dx, dw, db);
  auto loss = [&] {
    batchnorm_forward_train<double>(x, w, b, rm, rv, y, cache);
    return dot<double>(dy, y);
  };
  EXPECT_GRADCHECK(gradcheck(loss, {{"x", x, dx}, {"weight", w, dw}, {"bias", b, db}}), kTol);
}

TEST(BatchNorm, RunningStatsEvalAndInit) {
  const Index N = 4, C = 2;
  Tensor<double> x({N, C});
  double xv[] = {1, 10, 2, 20, 3, 30, 6, 40};  // col 0: mean 3, biased var 3.5, unbiased 14/3
  for (int i = 0; i < 8; ++i) x[i] = xv[i];
  Tensor<double> w({C}), b({C}), rm({C}), rv({C}), y({N, C}), xhat({N, C}), rstd({C});
  batchnorm_init<double>(w, b, rm, rv);
  EXPECT_EQ(w[0], 1.0);
  EXPECT_EQ(b[1], 1e-3);
  EXPECT_EQ(rm[0], 0.0);
  EXPECT_EQ(rv[0], 1.0);
  batchnorm_forward_train<double>(x, w, b, rm, rv, y, {xhat, rstd});
  EXPECT_NEAR(rm[0], 0.1 * 3.0, 1e-12);
  EXPECT_NEAR(rv[0], 0.9 + 0.1 * 14.0 / 3.0, 1e-12);
  EXPECT_NEAR(y[0], (1 - 3) / std::sqrt(3.5 + 1e-5) + 1e-3, 1e-12);
  Tensor<double> ye({N, C});
  batchnorm_forward_eval<double>(x, w, b, rm, rv, ye);
  EXPECT_NEAR(ye[2], (2 - rm[0]) / std::sqrt(rv[0] + 1e-5) + 1e-3, 1e-12);
  Tensor<double> one({1, C}), xh1({1, C});
  expect_invalid([&] { batchnorm_forward_train<double>(one, w, b, rm, rv, one, {xh1, rstd}); },
                 {"batchnorm_forward_train", "[1, 2]"});
  Tensor<double> w3({3});
  expect_invalid([&] { batchnorm_forward_eval<double>(x, w3, b, rm, rv, ye); }, {"batchnorm_forward_eval", "[3]", "[4, 2]"});
}

// ---------------------------------------------------------------------------------------------
namespace {
Tensor<std::uint8_t> pool_mask(Index bs, Index Tn) {
  Tensor<std::uint8_t> m({bs, Tn});
  // row 0: no pads; row 1: 2 end pads; row 2: front chunk (4) + 1 end pad; row 3: front 5.
  for (Index t = Tn - 2; t < Tn; ++t) m[1 * Tn + t] = 1;
  for (Index t = 0; t < 4; ++t) m[2 * Tn + t] = 1;
  m[2 * Tn + Tn - 1] = 1;
  for (Index t = 0; t < 5; ++t) m[3 * Tn + t] = 1;
  return m;
}
}  // namespace

TEST(Pooling, MaskedConcatGradcheck) {
  Rng rng(11);
  const Index bs = 4, Tn = 9, C = 3, bptt = 4;
  auto out = rand_t({bs, Tn, C}, rng), dy = rand_t({bs, 3 * C}, rng);
  auto mask = pool_mask(bs, Tn);
  Tensor<double> y({bs, 3 * C}), dout({bs, Tn, C});
  Tensor<std::int32_t> am({bs, C});
  masked_concat_pool_forward<double>(out, mask, y, am, bptt);
  masked_concat_pool_backward<double>(dy, mask, am, dout, bptt);
  auto loss = [&] {
    masked_concat_pool_forward<double>(out, mask, y, am, bptt);
    return dot<double>(dy, y);
  };
  EXPECT_GRADCHECK(gradcheck(loss, {{"out", out, dout}}, 200), kTol);
  // `last` of row 1 is T-1-2 (two pads in the last chunk)
  masked_concat_pool_forward<double>(out, mask, y, am, bptt);
  for (Index c = 0; c < C; ++c) EXPECT_EQ(y[1 * 3 * C + c], out[(1 * Tn + Tn - 3) * C + c]);
  // pads get no gradient
  for (Index c = 0; c < C; ++c) EXPECT_EQ(dout[(3 * Tn + 0) * C + c], 0.0);
}

TEST(Pooling, BadInputThrows) {
  Tensor<float> out({2, 5, 3}), y({2, 9});
  Tensor<std::int32_t> am({2, 3});
  Tensor<std::uint8_t> mask({2, 5});
  for (Index t = 0; t < 5; ++t) mask[5 + t] = 1;  // row 1 all pad
  expect_invalid([&] { masked_concat_pool_forward<float>(out, mask, y, am, 72); }, {"masked_concat_pool_forward", "row 1"});
  Tensor<std::uint8_t> m2({2, 4});
  expect_invalid([&] { masked_concat_pool_forward<float>(out, m2, y, am, 72); }, {"masked_concat_pool_forward", "[2, 4]", "[2, 5]"});
  Tensor<float> y2({2, 8});
  mask[5] = 0;
  expect_invalid([&] { masked_concat_pool_forward<float>(out, mask, y2, am, 72); }, {"pooled", "[2, 9]", "[2, 8]"});
}

// ---------------------------------------------------------------------------------------------
TEST(Loss, LmFusedGradcheckAcrossChunks) {
  Rng rng(12);
  const Index N = 7, E = 4, V = 11;
  auto h = rand_t({N, E}, rng, -2, 2), W = rand_t({V, E}, rng), b = rand_t({V}, rng);
  Tensor<std::int32_t> tg({N});
  for (Index i = 0; i < N; ++i) tg[i] = (std::int32_t)rng.below(V);
  for (Index chunk : {1, 3, 7, 64}) {
    Tensor<double> dh({N, E}), dW({V, E}), db({V});
    auto r = lm_softmax_ce_forward_backward<double>(h, W, b, tg, dh, dW, db, {}, chunk);
    auto loss = [&] { return lm_softmax_ce_forward<double>(h, W, b, tg, {}, chunk).loss; };
    EXPECT_NEAR(r.loss, loss(), 1e-13);
    EXPECT_GRADCHECK(gradcheck(loss, {{"hidden", h, dh}, {"W", W, dW}, {"b", b, db}}), kTol);
  }
}

TEST(Loss, LmFusedScaleAccumulateWorkspaceAndNoBias) {
  Rng rng(13);
  const Index N = 5, E = 3, V = 9;
  auto h = rand_t({N, E}, rng), W = rand_t({V, E}, rng);
  Tensor<std::int32_t> tg({N});
  for (Index i = 0; i < N; ++i) tg[i] = (std::int32_t)rng.below(V);
  Tensor<double> dh1({N, E}), dW1({V, E}), dh2({N, E}), dW2({V, E}), ws({2 * V});
  auto r1 = lm_softmax_ce_forward_backward<double>(h, W, {}, tg, dh1, dW1, {}, {}, 64);
  dW2.view().fill(1.0);
  auto r2 = lm_softmax_ce_forward_backward<double>(h, W, {}, tg, dh2, dW2, {}, ws, 2, 0.5);
  EXPECT_NEAR(r1.loss, r2.loss, 1e-13);
  EXPECT_EQ(r1.correct, r2.correct);
  for (Index i = 0; i < dh1.numel(); ++i) EXPECT_NEAR(dh2[i], 0.5 * dh1[i], 1e-14);
  for (Index i = 0; i < dW1.numel(); ++i) EXPECT_NEAR(dW2[i], 1.0 + 0.5 * dW1[i], 1e-14);
  auto loss = [&] { return lm_softmax_ce_forward<double>(h, W, {}, tg).loss; };
  EXPECT_GRADCHECK(gradcheck(loss, {{"hidden", h, dh1}, {"W", W, dW1}}), kTol);
  Tensor<double> small_ws({V});
  expect_invalid([&] { lm_softmax_ce_forward<double>(h, W, {}, tg, small_ws, 2); }, {"workspace", "18"});
}

TEST(Loss, LmFusedFloatMatchesDoubleAtLargerSize) {
  Rng rng(14);
  const Index N = 50, E = 16, V = 3000;
  Tensor<double> h({N, E}), W({V, E}), b({V});
  fill_uniform(h.view(), rng, -3, 3);
  fill_uniform(W.view(), rng, -0.5, 0.5);
  fill_uniform(b.view(), rng, -1, 1);
  Tensor<float> hf({N, E}), Wf({V, E}), bf({V});
  for (Index i = 0; i < h.numel(); ++i) hf[i] = (float)h[i];
  for (Index i = 0; i < W.numel(); ++i) Wf[i] = (float)W[i];
  for (Index i = 0; i < b.numel(); ++i) bf[i] = (float)b[i];
  for (Index i = 0; i < h.numel(); ++i) h[i] = hf[i];
  for (Index i = 0; i < W.numel(); ++i) W[i] = Wf[i];
  for (Index i = 0; i < b.numel(); ++i) b[i] = bf[i];
  Tensor<std::int32_t> tg({N});
  for (Index i = 0; i < N; ++i) tg[i] = (std::int32_t)rng.below(V);
  Tensor<double> dh({N, E}), dW({V, E}), db({V});
  Tensor<float> dhf({N, E}), dWf({V, E}), dbf({V});
  auto rd = lm_softmax_ce_forward_backward<double>(h, W, b, tg, dh, dW, db, {}, 16);
  auto rf = lm_softmax_ce_forward_backward<float>(hf, Wf, bf, tg, dhf, dWf, dbf, {}, 16);
  EXPECT_NEAR(rf.loss, rd.loss, 1e-5 * std::fabs(rd.loss));
  EXPECT_EQ(rf.correct, rd.correct);
  auto maxdiff = [](auto& a, auto& b) {
    double m = 0, s = 0;
    for (Index i = 0; i < a.numel(); ++i) {
      m = std::max(m, std::fabs((double)a[i] - (double)b[i]));
      s = std::max(s, std::fabs((double)b[i]));
    }
    return m / s;
  };
  EXPECT_LT(maxdiff(dhf, dh), 1e-5);
  EXPECT_LT(maxdiff(dWf, dW), 1e-5);
  EXPECT_LT(maxdiff(dbf, db), 1e-5);
}

TEST(Loss, LmFusedThreadedMatchesSerial) {
  Rng rng(16);
  const Index N = 37, E = 24, V = 2000;
  auto h = rand_t({N, E}, rng, -2, 2), W = rand_t({V, E}, rng), b = rand_t({V}, rng);
  Tensor<std::int32_t> tg({N});
  for (Index i = 0; i < N; ++i) tg[i] = (std::int32_t)rng.below(V);
  const int saved = num_threads();
  Tensor<double> dh1({N, E}), dW1({V, E}), db1({V}), dh3({N, E}), dW3({V, E}), db3({V});
  set_num_threads(1);
  auto r1 = lm_softmax_ce_forward_backward<double>(h, W, b, tg, dh1, dW1, db1, {}, 8);
  auto f1 = lm_softmax_ce_forward<double>(h, W, b, tg, {}, 8);
  set_num_threads(3);
  auto r3 = lm_softmax_ce_forward_backward<double>(h, W, b, tg, dh3, dW3, db3, {}, 8);
  auto f3 = lm_softmax_ce_forward<double>(h, W, b, tg, {}, 8);
  set_num_threads(saved);
  EXPECT_NEAR(r1.loss, r3.loss, 1e-12);
  EXPECT_NEAR(f1.loss, f3.loss, 1e-12);
  EXPECT_EQ(r1.correct, r3.correct);
  EXPECT_EQ(f1.correct, f3.correct);
  for (Index i = 0; i < dh1.numel(); ++i) ASSERT_NEAR(dh1[i], dh3[i], 1e-14);
  for (Index i = 0; i < dW1.numel(); ++i) ASSERT_NEAR(dW1[i], dW3[i], 1e-14);
  for (Index i = 0; i < db1.numel(); ++i) ASSERT_NEAR(db1[i], db3[i], 1e-14);
}

TEST(Loss, LmFusedBadInput) {
  Tensor<float> h({3, 4}), W({10, 4}), b({10}), W2({10, 5}), b2({9});
  Tensor<std::int32_t> tg({3}), tg2({4});
  expect_invalid([&] { lm_softmax_ce_forward<float>(h, W2, b, tg); }, {"lm_softmax_ce_forward", "[3, 4]", "[10, 5]"});
  expect_invalid([&] { lm_softmax_ce_forward<float>(h, W, b2, tg); }, {"lm_softmax_ce_forward", "[9]"});
  expect_invalid([&] { lm_softmax_ce_forward<float>(h, W, b, tg2); }, {"targets", "[4]"});
  tg[1] = 10;
  EXPECT_THROW(lm_softmax_ce_forward<float>(h, W, b, tg), std::out_of_range);
  Tensor<float> dW({10, 4}), dh({3, 4});
  dW.view().fill(2.f);
  EXPECT_THROW(lm_softmax_ce_forward_backward<float>(h, W, b, tg, dh, dW, {}), std::out_of_range);
  for (Index i = 0; i < dW.numel(); ++i) ASSERT_EQ(dW[i], 2.f);  // nothing accumulated on error
}

TEST(Loss, SoftmaxCeGradcheckAndExtremes) {
  Rng rng(15);
  const Index N = 6, C = 3;
  auto x = rand_t({N, C}, rng, -4, 4);
  Tensor<std::int32_t> tg({N});
  for (Index i = 0; i < N; ++i) tg[i] = (std::int32_t)rng.below(C);
  Tensor<double> dx({N, C});
  auto r = softmax_ce_forward_backward<double>(x, tg, dx);
  auto loss = [&] { return softmax_ce_forward_backward<double>(x, tg, {}).loss; };
  EXPECT_NEAR(r.loss, loss(), 1e-15);
  EXPECT_GRADCHECK(gradcheck(loss, {{"logits", x, dx}}), kTol);
  // large logits stay finite (log-sum-exp)
  Tensor<float> big({1, 3}), dbig({1, 3}), p({1, 3});
  big[0] = 1000.f; big[1] = -1000.f; big[2] = 999.f;
  Tensor<std::int32_t> t1({1});
  t1[0] = 2;
  auto rb = softmax_ce_forward_backward<float>(big, t1, dbig);
  EXPECT_NEAR(rb.loss, std::log1p(std::exp(-1.0)) + 1.0, 1e-5);
  EXPECT_EQ(rb.correct, 0);
  softmax_forward<float>(big, p);
  EXPECT_NEAR(p[0] + p[1] + p[2], 1.0, 1e-6);
  Tensor<double> bad({N, C + 1});
  expect_invalid([&] { softmax_ce_forward_backward<double>(x, tg, bad); }, {"softmax_ce_forward_backward", "[6, 4]"});
}

#ifdef INSPIRE_TIMING_TESTS  // a timing loop, not a test: only with -DINSPIRE_TIMING_TESTS=ON

// ---------------------------------------------------------------------------------------------
// Timing of the fused LM loss at the INSPIRE shape (V=60000, E=400). Disabled by default (it takes
// seconds); run with:
//   OMP_NUM_THREADS=1 ./build/test_layers --gtest_filter='*Timing*'  (build configured with -DINSPIRE_TIMING_TESTS=ON)
// INSPIRE_CE_ROWS sets N (default 256). Prints the median of 5 runs per chunk size.
TEST(Loss, LmFusedTiming) {
  const Index V = 60000, E = 400;
  const char* env = std::getenv("INSPIRE_CE_ROWS");
  const Index N = env ? std::atol(env) : 256;
  Rng rng(17);
  Tensor<float> h({N, E}), W({V, E}), b({V}), dh({N, E}), dW({V, E}), db({V});
  fill_uniform(h.view(), rng, -1, 1);
  fill_uniform(W.view(), rng, -0.1, 0.1);
  Tensor<std::int32_t> tg({N});
  for (Index i = 0; i < N; ++i) tg[i] = (std::int32_t)rng.below(V);
  for (Index chunk : {64, 128, 256}) {
    Tensor<float> ws({lm_softmax_ce_workspace_size(V, chunk)});
    std::vector<double> ts, cs;
    auto cpu = [] { return (double)std::clock() / CLOCKS_PER_SEC; };
    for (int r = 0; r < 5; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      double c0 = cpu();
      auto res = lm_softmax_ce_forward_backward<float>(h, W, b, tg, dh, dW, db, ws, chunk);
      cs.push_back(cpu() - c0);
      ts.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      EXPECT_TRUE(std::isfinite(res.loss));
    }
    std::sort(ts.begin(), ts.end());
    std::sort(cs.begin(), cs.end());
    std::printf("lm_softmax_ce_forward_backward<float> N=%ld V=%ld E=%ld chunk=%ld threads=%d: "
                "wall median %.3f s (min %.3f, max %.3f), cpu median %.3f s = %.1f GFLOP/s "
                "(by cpu time)\n",
                (long)N, (long)V, (long)E, (long)chunk, num_threads(), ts[2], ts[0], ts[4], cs[2],
                6.0 * N * V * E / cs[2] / 1e9);
  }
}
#endif
