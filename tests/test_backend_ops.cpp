// ctest-labels: unit
// tests/test_backend_ops.cpp — the op-level backend (nn/ops.h, nn/backend.h):
//  * every op of the CPU backend against the reference function it must run (bit-equal);
//  * the per-element math of nn/elementwise.h on scalars (what a CUDA kernel runs) against the
//    same math on Eigen rows (what the CPU runs);
//  * Adam and gradient-norm clipping against formulas written out here;
//  * memory: buffers, arenas, explicit copies, range errors; a missing op names itself;
//  * every other available backend (cuda, when a GPU is present) against the CPU on the ops it
//    implements;
//  * the explicit recurrent state of the AWD-LSTM encoder: two windows carried = one window;
//  * the LM, the classifier and Adam run every op through the backend they hold.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "backend_test_helpers.h"
#include "nn/activation.h"
#include "nn/backend.h"
#include "nn/batchnorm.h"
#include "nn/dropout.h"
#include "nn/elementwise.h"
#include "nn/embedding.h"
#include "nn/linear.h"
#include "nn/loss.h"
#include "nn/lstm.h"
#include "nn/optim.h"
#include "nn/pooling.h"
#include "nn/rng.h"
#include "ulmfit/awd_lstm.h"
#include "ulmfit/classifier_model.h"

using namespace nn;

namespace {

template <typename T>
Tensor<T> rnd(Shape s, Rng& r, double lo = -1, double hi = 1) {
  Tensor<T> t(s);
  for (Index i = 0; i < t.numel(); ++i) t[i] = (T)r.uniform(lo, hi);
  return t;
}
template <typename T>
void expect_same(CView<T> a, CView<T> b, const char* what) {
  ASSERT_EQ(a.shape, b.shape) << what;
  for (Index i = 0; i < a.numel(); ++i) ASSERT_EQ(a[i], b[i]) << what << " at " << i;
}
Tensor<std::int32_t> ids_of(Shape s, Rng& r, int V) {
  Tensor<std::int32_t> t(s);
  for (Index i = 0; i < t.numel(); ++i) t[i] = (std::int32_t)(r.next_u64() % V);
  return t;
}

Ops<float>& cpu32() { return cpu_backend().f32(); }

}  // namespace

// ---- every CPU op = its reference function -------------------------------------------------

TEST(BackendOps, CpuGemmIsTheReferenceGemm) {
  Rng r(1);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const Index M = 5, N = 7, K = 3;
      auto A = rnd<float>(ta ? Shape{K, M} : Shape{M, K}, r);
      auto B = rnd<float>(tb ? Shape{N, K} : Shape{K, N}, r);
      auto C0 = rnd<float>({M, N}, r);
      Tensor<float> C1 = C0, C2 = C0;
      cpu32().gemm(ta, tb, M, N, K, 0.5f, A.data(), ta ? M : K, B.data(), tb ? K : N, 2.f,
                   C1.data(), N);
      gemm(ta, tb, M, N, K, 0.5f, A.data(), ta ? M : K, B.data(), tb ? K : N, 2.f, C2.data(), N);
      expect_same<float>(C1.view(), C2.view(), "gemm");
      // and the math itself (so that the pair cannot agree on a wrong answer)
      for (Index m = 0; m < M; ++m)
        for (Index n = 0; n < N; ++n) {
          double s = 0;
          for (Index k = 0; k < K; ++k)
            s += (double)(ta ? A[k * M + m] : A[m * K + k]) * (tb ? B[n * K + k] : B[k * N + n]);
          EXPECT_NEAR(C1[m * N + n], 0.5 * s + 2.0 * C0[m * N + n], 1e-5);
        }
    }
}

TEST(BackendOps, CpuEmbeddingAndDropoutsAreTheReference) {
  Rng r(2);
  const Index V = 11, E = 4, bs = 3, sl = 5;
  auto table = rnd<float>({V, E}, r);
  auto ids = ids_of({bs, sl}, r, V);
  Tensor<float> rowmask({V});
  dropout_mask<float>(r, 0.3, rowmask.view());
  Tensor<float> a({bs, sl, E}), b({bs, sl, E});
  cpu32().embedding_forward(ids.view(), table.view(), rowmask.view(), a.view());
  embedding_forward<float>(ids.view(), table.view(), rowmask.view(), b.view());
  expect_same<float>(a.view(), b.view(), "embedding_forward");
  auto dout = rnd<float>({bs, sl, E}, r);
  Tensor<float> da({V, E}), db({V, E});
  cpu32().embedding_backward(ids.view(), rowmask.view(), dout.view(), 1, da.view());
  embedding_backward<float>(ids.view(), rowmask.view(), dout.view(), 1, db.view());
  expect_same<float>(da.view(), db.view(), "embedding_backward");

  Rng r1(9), r2(9);
  Tensor<float> m1({bs, E}), m2({bs, E});
  cpu32().dropout_mask(r1, 0.4, m1.view());
  dropout_mask<float>(r2, 0.4, m2.view());
  expect_same<float>(m1.view(), m2.view(), "dropout_mask");
  bool any_zero = false;
  for (Index i = 0; i < m1.numel(); ++i) {
    EXPECT_TRUE(m1[i] == 0.f || std::fabs(m1[i] - 1.f / 0.6f) < 1e-6f) << m1[i];
    any_zero |= m1[i] == 0.f;
  }
  EXPECT_TRUE(any_zero);
  auto x = rnd<float>({bs, sl, E}, r);
  Tensor<float> y1({bs, sl, E}), y2({bs, sl, E});
  cpu32().rnn_dropout_forward(x.view(), m1.view(), y1.view());
  rnn_dropout_forward<float>(x.view(), m1.view(), y2.view());
  expect_same<float>(y1.view(), y2.view(), "rnn_dropout_forward");
  cpu32().rnn_dropout_backward(x.view(), m1.view(), y1.view());
  rnn_dropout_backward<float>(x.view(), m1.view(), y2.view());
  expect_same<float>(y1.view(), y2.view(), "rnn_dropout_backward");
  Tensor<float> fm({bs, sl, E});
  dropout_mask<float>(r, 0.2, fm.view());
  cpu32().dropout_forward(x.view(), fm.view(), y1.view());
  dropout_forward<float>(x.view(), fm.view(), y2.view());
  expect_same<float>(y1.view(), y2.view(), "dropout_forward");
  cpu32().dropout_backward(x.view(), fm.view(), y1.view());
  dropout_backward<float>(x.view(), fm.view(), y2.view());
  expect_same<float>(y1.view(), y2.view(), "dropout_backward");
  auto W = rnd<float>({8, 2}, r);
  Tensor<float> wm({8, 2}), w1({8, 2}), w2({8, 2});
  dropout_mask<float>(r, 0.5, wm.view());
  cpu32().weight_dropout_forward(W.view(), wm.view(), w1.view());
  weight_dropout_forward<float>(W.view(), wm.view(), w2.view());
  expect_same<float>(w1.view(), w2.view(), "weight_dropout_forward");
  cpu32().weight_dropout_backward(W.view(), wm.view(), w1.view());
  weight_dropout_backward<float>(W.view(), wm.view(), w2.view());
  expect_same<float>(w1.view(), w2.view(), "weight_dropout_backward");
}

TEST(BackendOps, CpuLstmOpsAreTheReference) {
  Rng r(3);
  const Index bs = 3, sl = 6, in = 5, H = 4;
  auto wih = rnd<float>({4 * H, in}, r, -0.5, 0.5), whh = rnd<float>({4 * H, H}, r, -0.5, 0.5);
  auto bih = rnd<float>({4 * H}, r), bhh = rnd<float>({4 * H}, r);
  LstmParams<float> p{wih.view(), whh.view(), bih.view(), bhh.view()};
  auto x = rnd<float>({bs, sl, in}, r);
  auto h0 = rnd<float>({bs, H}, r), c0 = rnd<float>({bs, H}, r);
  Tensor<float> y1({bs, sl, H}), y2({bs, sl, H}), hn1({bs, H}), hn2({bs, H}), cn1({bs, H}),
      cn2({bs, H});
  LstmCache<float> k1, k2;
  cpu32().lstm_forward(p, x.view(), h0.view(), c0.view(), y1.view(), hn1.view(), cn1.view(), k1);
  lstm_forward<float>(p, x.view(), h0.view(), c0.view(), y2.view(), hn2.view(), cn2.view(), k2);
  expect_same<float>(y1.view(), y2.view(), "lstm_forward y");
  expect_same<float>(hn1.view(), hn2.view(), "lstm_forward hn");
  expect_same<float>(cn1.view(), cn2.view(), "lstm_forward cn");
  Tensor<float> yf = y1;

  auto dy = rnd<float>({bs, sl, H}, r);
  Tensor<float> dx1({bs, sl, in}), dx2({bs, sl, in}), dh1({bs, H}), dh2({bs, H});
  Tensor<float> gw1({4 * H, in}), gw2({4 * H, in}), gh1({4 * H, H}), gh2({4 * H, H});
  Tensor<float> gb1({4 * H}), gb2({4 * H});
  cpu32().lstm_backward(p, k1, dy.view(), {}, {}, dx1.view(), dh1.view(), {},
                        LstmGrads<float>{gw1.view(), gh1.view(), gb1.view(), {}});
  lstm_backward<float>(p, k2, dy.view(), {}, {}, dx2.view(), dh2.view(), {},
                       LstmGrads<float>{gw2.view(), gh2.view(), gb2.view(), {}});
  expect_same<float>(dx1.view(), dx2.view(), "lstm_backward dx");
  expect_same<float>(dh1.view(), dh2.view(), "lstm_backward dh0");
  expect_same<float>(gw1.view(), gw2.view(), "lstm_backward dW_ih");
  expect_same<float>(gh1.view(), gh2.view(), "lstm_backward dW_hh");
  expect_same<float>(gb1.view(), gb2.view(), "lstm_backward db_ih");

  Tensor<float> h1 = h0, c1 = c0, h2 = h0, c2 = c0, s1, s2;
  cpu32().lstm_infer(p, x.view(), h1.view(), c1.view(), y1.view(), s1);
  lstm_infer<float>(p, x.view(), h2.view(), c2.view(), y2.view(), s2);
  expect_same<float>(y1.view(), y2.view(), "lstm_infer y");
  expect_same<float>(h1.view(), h2.view(), "lstm_infer h");
  // the serving path and the training forward agree
  for (Index i = 0; i < y1.numel(); ++i) EXPECT_NEAR(y1[i], yf[i], 1e-5);
  for (Index i = 0; i < hn1.numel(); ++i) EXPECT_NEAR(h1[i], hn1[i], 1e-5);
}

TEST(BackendOps, CpuHeadOpsAreTheReference) {
  Rng r(4);
  const Index N = 4, C = 6, O = 3;
  auto x = rnd<float>({N, C}, r), W = rnd<float>({O, C}, r), b = rnd<float>({O}, r);
  Tensor<float> y1({N, O}), y2({N, O});
  cpu32().linear_forward(x.view(), W.view(), b.view(), y1.view());
  linear_forward<float>(x.view(), W.view(), b.view(), y2.view());
  expect_same<float>(y1.view(), y2.view(), "linear_forward");
  auto dy = rnd<float>({N, O}, r);
  Tensor<float> dx1({N, C}), dx2({N, C}), dW1({O, C}), dW2({O, C}), db1({O}), db2({O});
  cpu32().linear_backward(x.view(), W.view(), dy.view(), dx1.view(), dW1.view(), db1.view());
  linear_backward<float>(x.view(), W.view(), dy.view(), dx2.view(), dW2.view(), db2.view());
  expect_same<float>(dx1.view(), dx2.view(), "linear_backward dx");
  expect_same<float>(dW1.view(), dW2.view(), "linear_backward dW");
  expect_same<float>(db1.view(), db2.view(), "linear_backward db");
  cpu32().relu_forward(y1.view(), y1.view());
  relu_forward<float>(y2.view(), y2.view());
  expect_same<float>(y1.view(), y2.view(), "relu_forward");
  Tensor<float> g1({N, O}), g2({N, O});
  cpu32().relu_backward(y1.view(), dy.view(), g1.view());
  relu_backward<float>(y2.view(), dy.view(), g2.view());
  expect_same<float>(g1.view(), g2.view(), "relu_backward");

  // batch-norm: train (running stats updated), eval, backward
  auto w = rnd<float>({C}, r, 0.5, 1.5), bb = rnd<float>({C}, r);
  Tensor<float> rm1({C}), rv1({C}), rm2({C}), rv2({C});
  rv1.view().fill(1), rv2.view().fill(1);
  Tensor<float> o1({N, C}), o2({N, C}), xh1({N, C}), xh2({N, C}), rs1({C}), rs2({C});
  cpu32().batchnorm_forward_train(x.view(), w.view(), bb.view(), rm1.view(), rv1.view(), o1.view(),
                                  {xh1.view(), rs1.view()});
  batchnorm_forward_train<float>(x.view(), w.view(), bb.view(), rm2.view(), rv2.view(), o2.view(),
                                 {xh2.view(), rs2.view()});
  expect_same<float>(o1.view(), o2.view(), "batchnorm_forward_train");
  expect_same<float>(rv1.view(), rv2.view(), "batchnorm running_var");
  cpu32().batchnorm_forward_eval(x.view(), w.view(), bb.view(), rm1.view(), rv1.view(), o1.view());
  batchnorm_forward_eval<float>(x.view(), w.view(), bb.view(), rm2.view(), rv2.view(), o2.view());
  expect_same<float>(o1.view(), o2.view(), "batchnorm_forward_eval");
  auto dbn = rnd<float>({N, C}, r);
  Tensor<float> bx1({N, C}), bx2({N, C}), bw1({C}), bw2({C}), bbi1({C}), bbi2({C});
  cpu32().batchnorm_backward(dbn.view(), w.view(), {xh1.view(), rs1.view()}, bx1.view(), bw1.view(),
                             bbi1.view());
  batchnorm_backward<float>(dbn.view(), w.view(), {xh2.view(), rs2.view()}, bx2.view(), bw2.view(),
                            bbi2.view());
  expect_same<float>(bx1.view(), bx2.view(), "batchnorm_backward dx");
  expect_same<float>(bw1.view(), bw2.view(), "batchnorm_backward dweight");

  // concat pooling over [bs, T, E] with padding at the front of row 1
  const Index bs = 2, T = 5, E = 3;
  auto out = rnd<float>({bs, T, E}, r);
  Tensor<std::uint8_t> pad({bs, T});
  pad[T + 0] = pad[T + 1] = 1;
  Tensor<float> p1({bs, 3 * E}), p2({bs, 3 * E});
  Tensor<std::int32_t> a1({bs, E}), a2({bs, E});
  cpu32().concat_pool_forward(out.view(), pad.view(), p1.view(), a1.view(), 72);
  masked_concat_pool_forward<float>(out.view(), pad.view(), p2.view(), a2.view(), 72);
  expect_same<float>(p1.view(), p2.view(), "concat_pool_forward");
  auto dp = rnd<float>({bs, 3 * E}, r);
  Tensor<float> do1({bs, T, E}), do2({bs, T, E});
  cpu32().concat_pool_backward(dp.view(), pad.view(), a1.view(), do1.view(), 72);
  masked_concat_pool_backward<float>(dp.view(), pad.view(), a2.view(), do2.view(), 72);
  expect_same<float>(do1.view(), do2.view(), "concat_pool_backward");

  // fused softmax-cross-entropy: classifier and LM head
  Tensor<std::int32_t> tg({N});
  for (Index i = 0; i < N; ++i) tg[i] = (std::int32_t)(i % O);
  Tensor<float> dl1({N, O}), dl2({N, O});
  auto l1 = cpu32().softmax_ce_forward_backward(y1.view(), tg.view(), dl1.view());
  auto l2 = softmax_ce_forward_backward<float>(y1.view(), tg.view(), dl2.view());
  EXPECT_EQ(l1.loss, l2.loss);
  EXPECT_EQ(l1.correct, l2.correct);
  expect_same<float>(dl1.view(), dl2.view(), "softmax_ce dlogits");
  const Index V = 9;
  auto Wv = rnd<float>({V, C}, r), bv = rnd<float>({V}, r);
  auto tv = ids_of({N}, r, (int)V);
  Tensor<float> dh1({N, C}), dh2({N, C}), dW1v({V, C}), dW2v({V, C}), db1v({V}), db2v({V}),
      ws1({V * 2}), ws2({V * 2});
  auto m1 = cpu32().lm_softmax_ce_forward_backward(x.view(), Wv.view(), bv.view(), tv.view(),
                                                   dh1.view(), dW1v.view(), db1v.view(), ws1.view(), 2);
  auto m2 = lm_softmax_ce_forward_backward<float>(x.view(), Wv.view(), bv.view(), tv.view(),
                                                  dh2.view(), dW2v.view(), db2v.view(), ws2.view(), 2);
  EXPECT_EQ(m1.loss, m2.loss);
  expect_same<float>(dh1.view(), dh2.view(), "lm_softmax_ce dhidden");
  expect_same<float>(dW1v.view(), dW2v.view(), "lm_softmax_ce dW");
  expect_same<float>(db1v.view(), db2v.view(), "lm_softmax_ce db");
  auto e1 = cpu32().lm_softmax_ce_forward(x.view(), Wv.view(), bv.view(), tv.view(), ws1.view(), 2);
  EXPECT_EQ(e1.loss, m1.loss);
}

// ---- per-element math: scalars (device kernels) = Eigen rows (CPU) ---------------------------

TEST(BackendOps, CellMathOnScalarsEqualsCellMathOnRows) {
  Rng r(5);
  const Index H = 37;  // not a multiple of the SIMD width: tails too
  using Arr = Eigen::Array<double, Eigen::Dynamic, 1>;
  Arr z(4 * H), cp(H), c(H), h(H);
  for (Index k = 0; k < 4 * H; ++k) z[k] = r.uniform(-3, 3);
  for (Index k = 0; k < H; ++k) cp[k] = r.uniform(-2, 2);
  Arr zs = z;
  // rows
  {
    Eigen::Map<Arr> i(z.data(), H), f(z.data() + H, H), g(z.data() + 2 * H, H),
        o(z.data() + 3 * H, H);
    ew::lstm_cell_forward(i, f, g, o, cp, c, h);
  }
  for (Index k = 0; k < H; ++k) {
    double i = zs[k], f = zs[H + k], g = zs[2 * H + k], o = zs[3 * H + k], cc, hh;
    ew::lstm_cell_forward(i, f, g, o, cp[k], cc, hh);
    EXPECT_NEAR(cc, c[k], 1e-15);
    EXPECT_NEAR(hh, h[k], 1e-15);
    EXPECT_NEAR(i, z[k], 1e-15);
    EXPECT_NEAR(o, z[3 * H + k], 1e-15);
    // and the textbook formulas
    const double si = 1 / (1 + std::exp(-zs[k])), sf = 1 / (1 + std::exp(-zs[H + k]));
    const double tg = std::tanh(zs[2 * H + k]), so = 1 / (1 + std::exp(-zs[3 * H + k]));
    EXPECT_NEAR(cc, sf * cp[k] + si * tg, 1e-12);
    EXPECT_NEAR(hh, so * std::tanh(sf * cp[k] + si * tg), 1e-12);
  }
  // backward: rows vs scalars
  Arr dh(H), dc(H), tmp(H);
  for (Index k = 0; k < H; ++k) dh[k] = r.uniform(-1, 1), dc[k] = r.uniform(-1, 1);
  Arr act = z, dc0 = dc;
  {
    Eigen::Map<Arr> i(z.data(), H), f(z.data() + H, H), g(z.data() + 2 * H, H),
        o(z.data() + 3 * H, H);
    ew::lstm_cell_backward(i, f, g, o, c, cp, dh, dc, tmp);
  }
  for (Index k = 0; k < H; ++k) {
    double i = act[k], f = act[H + k], g = act[2 * H + k], o = act[3 * H + k];
    double dck = dc0[k], t;
    ew::lstm_cell_backward(i, f, g, o, c[k], cp[k], dh[k], dck, t);
    EXPECT_NEAR(i, z[k], 1e-15);
    EXPECT_NEAR(f, z[H + k], 1e-15);
    EXPECT_NEAR(g, z[2 * H + k], 1e-15);
    EXPECT_NEAR(o, z[3 * H + k], 1e-15);
    EXPECT_NEAR(dck, dc[k], 1e-15);
    // dL/dc_{t-1} = f (dc + dh o (1 - tanh²c)) written out
    const double tc = std::tanh(c[k]);
    EXPECT_NEAR(dck, act[H + k] * (dc0[k] + dh[k] * act[3 * H + k] * (1 - tc * tc)), 1e-12);
  }
}

// ---- optimizer ops ------------------------------------------------------------------------------

// Philox4x32-10 (the CUDA backend's dropout-mask generator, nn/elementwise.h) on the CPU:
// the Random123 known-answer vectors, then the statistics of the masks it gives.
TEST(BackendOps, PhiloxMatchesTheKnownAnswersAndGivesFairMasks) {
  struct Kat {
    std::uint32_t ctr[4], key[2], out[4];
  } kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const Kat& k : kats) {
    std::uint32_t out[4];
    ew::philox4x32_10(k.ctr, k.key, out);
    for (int j = 0; j < 4; ++j) EXPECT_EQ(out[j], k.out[j]) << "word " << j;
  }
  // masks: the fraction of zeros is p, kept entries are 1/(1-p), the mean is 1; another seed
  // gives another mask
  const double p = 0.25;
  const float keep = (float)(1.0 / (1.0 - p));
  const std::uint64_t n = 400000;
  std::uint64_t zeros = 0, same = 0;
  double sum = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    const float m = ew::philox_dropout_mask_value<float>(0x1234567890abcdefULL, i, 1 - p, keep);
    ASSERT_TRUE(m == 0.f || m == keep) << m;
    zeros += m == 0.f;
    sum += m;
    same += m == ew::philox_dropout_mask_value<float>(0x1234567890abcdeeULL, i, 1 - p, keep);
  }
  EXPECT_NEAR((double)zeros / n, p, 0.004);  // ~6 sd
  EXPECT_NEAR(sum / n, 1.0, 0.01);
  EXPECT_NEAR((double)same / n, p * p + (1 - p) * (1 - p), 0.01);  // independent streams
}

TEST(BackendOps, AdamStepMatchesTheFormulaAndTheOptimizer) {
  Rng r(6);
  const Index n = 1000;
  auto w = rnd<float>({n}, r), g = rnd<float>({n}, r);
  Tensor<float> m({n}), v({n});
  AdamHyper h;
  h.lr = 0.01, h.wd = 0.1;
  Tensor<float> w0 = w;
  auto s = adam_scalars(h, 1, true);
  cpu32().adam_step(w.view(), g.view(), m.view(), v.view(), s);
  for (Index k = 0; k < n; ++k) {  // step 1: m = (1-β1) g, v = (1-β2) g², debiased
    const double mk = 0.1 * g[k], vk = 0.01 * (double)g[k] * g[k];
    const double want = w0[k] * (1 - 0.01 * 0.1) - 0.01 / 0.1 * mk / (std::sqrt(vk / 0.01) + 1e-5);
    ASSERT_NEAR(w[k], want, 1e-5) << k;
    ASSERT_NEAR(m[k], mk, 1e-7);
  }
  // nn::Adam runs the same op
  Tensor<float> w2 = w0, g2 = g;
  std::vector<Param> ps{{"p", w2.view(), g2.view(), 0, true}};
  Adam adam(ps, 1, h);
  EXPECT_EQ(&adam.backend(), &cpu_backend());
  adam.step();
  expect_same<float>(w2.view(), CView<float>(w.view()), "Adam::step vs adam_step");
  EXPECT_THROW(cpu32().adam_step(w.view(), g.view().slice(0, 10), m.view(), v.view(), s),
               std::invalid_argument);
}

TEST(BackendOps, ClipGradNormScalesOnlyAboveTheLimit) {
  Tensor<float> g({4});
  g[0] = 3, g[1] = 4, g[2] = 0, g[3] = 0;  // norm 5
  EXPECT_NEAR(cpu32().clip_grad_norm(g.view(), 10.0), 5.0, 1e-12);
  EXPECT_EQ(g[0], 3.f);  // below the limit: untouched
  EXPECT_NEAR(cpu32().clip_grad_norm(g.view(), 1.0), 5.0, 1e-12);
  EXPECT_NEAR(g[0], 3.0 / (5 + 1e-6), 1e-6);
  EXPECT_NEAR(g[1], 4.0 / (5 + 1e-6), 1e-6);
  double nn2 = 0;
  for (Index i = 0; i < 4; ++i) nn2 += (double)g[i] * g[i];
  EXPECT_NEAR(std::sqrt(nn2), 1.0, 1e-6);
  EXPECT_THROW(cpu32().clip_grad_norm(g.view(), 0.0), std::invalid_argument);
  Tensor<double> gd({2});
  gd[0] = 6, gd[1] = 8;
  EXPECT_NEAR(cpu_backend().f64().clip_grad_norm(gd.view(), 5.0), 10.0, 1e-12);
  EXPECT_NEAR(gd[1], 8 * 5 / (10 + 1e-6), 1e-9);
}

// ---- memory ----------------------------------------------------------------------------------

TEST(BackendOps, BuffersKnowTheirMemoryAndCopiesAreChecked) {
  Backend& be = cpu_backend();
  EXPECT_EQ(be.memory(), Memory::host);
  Buffer b = be.alloc(64 * sizeof(float));
  EXPECT_EQ(b.memory(), Memory::host);
  EXPECT_EQ(b.size(), 64 * sizeof(float));
  auto v = b.view<float>({8, 8});
  for (float x : v) EXPECT_EQ(x, 0.f);  // zero-filled
  std::vector<float> src(16);
  for (int i = 0; i < 16; ++i) src[i] = (float)i + 0.5f;
  be.copy_from_host(b, 8 * sizeof(float), src.data(), 16 * sizeof(float));
  std::vector<float> back(16, -1);
  be.copy_to_host(back.data(), b, 8 * sizeof(float), 16 * sizeof(float));
  EXPECT_EQ(back, src);
  EXPECT_EQ(v[8], 0.5f);
  Buffer c = be.alloc(64 * sizeof(float));
  be.copy(c, 0, b, 8 * sizeof(float), 16 * sizeof(float));
  EXPECT_EQ(c.view<float>({16})[15], 15.5f);
  EXPECT_THROW(be.copy_from_host(b, 60 * sizeof(float), src.data(), 16 * sizeof(float)),
               std::out_of_range);
  EXPECT_THROW(be.copy_to_host(back.data(), b, 0, 65 * sizeof(float)), std::out_of_range);
  EXPECT_THROW(b.view<float>({65}), std::out_of_range);
  try {
    be.copy_to_host(back.data(), b, 0, 1000);
    FAIL();
  } catch (const std::out_of_range& e) {
    EXPECT_NE(std::string(e.what()).find("host"), std::string::npos) << e.what();
  }
  EXPECT_EQ(Arena<float>().memory(), Memory::host);
  EXPECT_EQ(Tensor<float>().memory(), Memory::host);
  BufferArena<float> arena(be.alloc(1024 * sizeof(float)));
  EXPECT_EQ(arena.memory(), Memory::host);
  auto p = arena.take({3});
  auto q = arena.take({5});
  EXPECT_EQ((q.data - p.data) % (Index)(kAlign / sizeof(float)), 0);
  EXPECT_GE(q.data - p.data, 3);
  EXPECT_THROW(arena.take({2000}), std::out_of_range);
  Buffer moved = std::move(c);
  EXPECT_TRUE(c.empty());
  EXPECT_FALSE(moved.empty());
}

TEST(BackendOps, AMissingOpNamesTheBackendAndTheOp) {
  struct Bare : Ops<float> {
    Bare() : Ops<float>("test") {}
  } bare;
  try {
    LstmCache<float> k;
    bare.lstm_forward({}, {}, {}, {}, {}, {}, {}, k);
    FAIL() << "no throw";
  } catch (const NotImplemented& e) {
    EXPECT_STREQ(e.what(), "not implemented on test yet: lstm_forward");
  }
  EXPECT_THROW(bare.adam_step({}, {}, {}, {}, {}), NotImplemented);
  EXPECT_THROW(bare.clip_grad_norm({}, 1.0), NotImplemented);
}

// ---- other backends against the CPU (runs where such a backend exists) ------------------------

TEST(BackendOps, EveryAvailableBackendMatchesTheCpuOnItsOps) {
  int compared = 0;
  for (const std::string& name : available_backends()) {
    Backend* be = nullptr;
    try {
      be = &get_backend(name);
    } catch (const std::runtime_error&) {
      continue;  // compiled in, but no device on this machine
    }
    ++compared;
    Rng r(7);
    const Index M = 33, N = 17, K = 29, n = 4097;
    auto A = rnd<float>({M, K}, r), B = rnd<float>({N, K}, r);
    Tensor<float> Cref({M, N});
    cpu32().gemm(false, true, M, N, K, 1.f, A.data(), K, B.data(), K, 0.f, Cref.data(), N);
    auto up = [&](const Tensor<float>& t) {
      Buffer b = be->alloc(sizeof(float) * t.numel());
      be->copy_from_host(b, 0, t.data(), sizeof(float) * t.numel());
      return b;
    };
    Buffer dA = up(A), dB = up(B), dC = be->alloc(sizeof(float) * M * N);
    be->f32().gemm(false, true, M, N, K, 1.f, (const float*)dA.data(), K,
                   (const float*)dB.data(), K, 0.f, (float*)dC.data(), N);
    Tensor<float> C({M, N});
    be->copy_to_host(C.data(), dC, 0, sizeof(float) * M * N);
    for (Index i = 0; i < M * N; ++i) ASSERT_NEAR(C[i], Cref[i], 1e-4) << name << " gemm " << i;
    // Adam over a flat range
    auto w = rnd<float>({n}, r), g = rnd<float>({n}, r);
    Tensor<float> m({n}), v({n}), wref = w, mref({n}), vref({n});
    AdamHyper h;
    auto s = adam_scalars(h, 3, true);
    cpu32().adam_step(wref.view(), g.view(), mref.view(), vref.view(), s);
    Buffer dw = up(w), dg = up(g), dm = up(m), dv = up(v);
    try {
      be->f32().adam_step(dw.view<float>({n}), dg.view<float>({n}), dm.view<float>({n}),
                          dv.view<float>({n}), s);
      be->copy_to_host(w.data(), dw, 0, sizeof(float) * n);
      for (Index i = 0; i < n; ++i) ASSERT_NEAR(w[i], wref[i], 1e-6) << name << " adam " << i;
    } catch (const NotImplemented&) {
    }
    // an op it lacks says so instead of computing (cuda: no double kernels)
    if (name != "cpu") EXPECT_THROW(be->f64().clip_grad_norm({}, 1.0), NotImplemented);
  }
  EXPECT_GE(compared, 1);  // the CPU at least
}

// ---- explicit recurrent state of the encoder ---------------------------------------------------

namespace {
ulmfit::ModelConfig tiny_cfg() {
  ulmfit::ModelConfig c;
  c.vocab_size = 23, c.emb_sz = 6, c.n_hid = 9, c.n_layers = 3, c.pad_idx = 1;
  return c.no_dropout();
}
}  // namespace

TEST(EncoderState, TwoWindowsCarriedEqualOneWindowOfBoth) {
  using namespace ulmfit;
  AwdLstmEncoder enc(tiny_cfg());
  Rng r(8);
  enc.init(r);
  const Index bs = 2, s1 = 5, s2 = 7, E = 6;
  auto ids = ids_of({bs, s1 + s2}, r, 23);
  Tensor<TokenId> a({bs, s1}), b({bs, s2});
  for (Index i = 0; i < bs; ++i) {
    std::copy_n(ids.data() + i * (s1 + s2), s1, a.data() + i * s1);
    std::copy_n(ids.data() + i * (s1 + s2) + s1, s2, b.data() + i * s2);
  }
  for (bool training_path : {false, true}) {
    // whole window
    AwdLstmState<float> whole = enc.make_state(bs), split = enc.make_state(bs);
    Tensor<float> yw({bs, s1 + s2, E}), ya({bs, s1, E}), yb({bs, s2, E});
    AwdLstmCache<float> k;
    AwdLstmWorkspace<float> ws;
    ForwardOptions fo;  // training mode, but every p is 0: no dropout, lstm_forward path
    fo.training = true;
    Rng rr(1);
    fo.rng = &rr;
    if (training_path) {
      enc.forward(ids.view(), whole, yw.view(), k, fo);
      enc.forward(a.view(), split, ya.view(), k, fo);
      enc.forward(b.view(), split, yb.view(), k, fo);
    } else {
      enc.infer(ids.view(), whole, yw.view(), ws);
      enc.infer(a.view(), split, ya.view(), ws);
      enc.infer(b.view(), split, yb.view(), ws);
    }
    for (int l = 0; l < 3; ++l)
      for (Index i = 0; i < whole.h[l].numel(); ++i) {
        ASSERT_NEAR(split.h[l][i], whole.h[l][i], 1e-6) << training_path << " h layer " << l;
        ASSERT_NEAR(split.c[l][i], whole.c[l][i], 1e-6) << training_path << " c layer " << l;
      }
    for (Index i = 0; i < bs; ++i)
      for (Index t = 0; t < s2; ++t)
        for (Index e = 0; e < E; ++e)
          ASSERT_NEAR(yb[(i * s2 + t) * E + e], yw[(i * (s1 + s2) + s1 + t) * E + e], 1e-6);
    // the state is really used: from a zero state the second window differs
    AwdLstmState<float> fresh = enc.make_state(bs);
    Tensor<float> y0({bs, s2, E});
    enc.infer(b.view(), fresh, y0.view(), ws);
    double diff = 0;
    for (Index i = 0; i < y0.numel(); ++i) diff += std::fabs(y0[i] - yb[i]);
    EXPECT_GT(diff, 1e-4);
  }
  // the caller's state is independent of the encoder's default state
  EXPECT_EQ(enc.state_batch(), 0);
}

TEST(EncoderState, ResizeKeepsFirstRowsAndChecksShapes) {
  using namespace ulmfit;
  ModelConfig cfg = tiny_cfg();
  AwdLstmState<float> s;
  s.reset(cfg, 3);
  EXPECT_EQ(s.batch(), 3);
  for (Index i = 0; i < s.h[1].numel(); ++i) s.h[1][i] = (float)i + 1;
  s.resize(cfg, 5);
  EXPECT_EQ(s.batch(), 5);
  for (Index i = 0; i < 3 * 9; ++i) EXPECT_EQ(s.h[1][i], (float)i + 1);
  for (Index i = 3 * 9; i < 5 * 9; ++i) EXPECT_EQ(s.h[1][i], 0.f);
  s.resize(cfg, 2);
  EXPECT_EQ(s.h[2].shape(), (Shape{2, 6}));
  EXPECT_EQ(s.h[1][17], 18.f);
  s.c[0].resize({7, 9});  // corrupted by a caller
  EXPECT_THROW(s.resize(cfg, 4), std::invalid_argument);
}

// ---- models run every op through the backend they hold ---------------------------------------

namespace {

// Forwards each op to the CPU and counts it. An op a model calls but this class does not
// forward throws NotImplemented (the Ops default), so the models below must not use any other.
class CountingOps final : public Ops<float> {
 public:
  CountingOps() : Ops<float>("counting") {}
  std::map<std::string, int> n;
  Ops<float>& c = cpu_backend().f32();
  void gemm(bool ta, bool tb, Index M, Index N, Index K, float al, const float* A, Index lda,
            const float* B, Index ldb, float be, float* C, Index ldc) override {
    ++n["gemm"], c.gemm(ta, tb, M, N, K, al, A, lda, B, ldb, be, C, ldc);
  }
  void embedding_forward(CView<std::int32_t> i, CView<float> t, CView<float> m, View<float> o) override {
    ++n["embedding_forward"], c.embedding_forward(i, t, m, o);
  }
  void embedding_backward(CView<std::int32_t> i, CView<float> m, CView<float> d, std::int32_t p,
                          View<float> dt) override {
    ++n["embedding_backward"], c.embedding_backward(i, m, d, p, dt);
  }
  void dropout_mask(Rng& r, double p, View<float> m) override { ++n["dropout_mask"], c.dropout_mask(r, p, m); }
  void dropout_forward(CView<float> x, CView<float> m, View<float> y) override {
    ++n["dropout_forward"], c.dropout_forward(x, m, y);
  }
  void dropout_backward(CView<float> x, CView<float> m, View<float> y) override {
    ++n["dropout_backward"], c.dropout_backward(x, m, y);
  }
  void rnn_dropout_forward(CView<float> x, CView<float> m, View<float> y) override {
    ++n["rnn_dropout_forward"], c.rnn_dropout_forward(x, m, y);
  }
  void rnn_dropout_backward(CView<float> x, CView<float> m, View<float> y) override {
    ++n["rnn_dropout_backward"], c.rnn_dropout_backward(x, m, y);
  }
  void weight_dropout_forward(CView<float> w, CView<float> m, View<float> e) override {
    ++n["weight_dropout_forward"], c.weight_dropout_forward(w, m, e);
  }
  void weight_dropout_backward(CView<float> w, CView<float> m, View<float> e) override {
    ++n["weight_dropout_backward"], c.weight_dropout_backward(w, m, e);
  }
  void lstm_forward(const LstmParams<float>& p, CView<float> x, CView<float> h0, CView<float> c0,
                    View<float> y, View<float> hn, View<float> cn, LstmCache<float>& k) override {
    ++n["lstm_forward"], c.lstm_forward(p, x, h0, c0, y, hn, cn, k);
  }
  void lstm_backward(const LstmParams<float>& p, LstmCache<float>& k, CView<float> dy,
                     CView<float> dhn, CView<float> dcn, View<float> dx, View<float> dh0,
                     View<float> dc0, const LstmGrads<float>& g) override {
    ++n["lstm_backward"], c.lstm_backward(p, k, dy, dhn, dcn, dx, dh0, dc0, g);
  }
  void lstm_infer(const LstmParams<float>& p, CView<float> x, View<float> h, View<float> cc,
                  View<float> y, Tensor<float>& s, const Index* lengths = nullptr) override {
    ++n["lstm_infer"], c.lstm_infer(p, x, h, cc, y, s, lengths);
  }
  bool lstm_infer_takes_lengths() const override { return c.lstm_infer_takes_lengths(); }
  void linear_forward(CView<float> x, CView<float> w, CView<float> b, View<float> y) override {
    ++n["linear_forward"], c.linear_forward(x, w, b, y);
  }
  void linear_backward(CView<float> x, CView<float> w, CView<float> dy, View<float> dx,
                       View<float> dw, View<float> db) override {
    ++n["linear_backward"], c.linear_backward(x, w, dy, dx, dw, db);
  }
  void relu_forward(CView<float> x, View<float> y) override { ++n["relu_forward"], c.relu_forward(x, y); }
  void relu_backward(CView<float> y, CView<float> dy, View<float> dx) override {
    ++n["relu_backward"], c.relu_backward(y, dy, dx);
  }
  void batchnorm_forward_train(CView<float> x, CView<float> w, CView<float> b, View<float> rm,
                               View<float> rv, View<float> y, BatchNormCache<float> k, double mo,
                               double eps) override {
    ++n["batchnorm_forward_train"], c.batchnorm_forward_train(x, w, b, rm, rv, y, k, mo, eps);
  }
  void batchnorm_forward_eval(CView<float> x, CView<float> w, CView<float> b, CView<float> rm,
                              CView<float> rv, View<float> y, double eps) override {
    ++n["batchnorm_forward_eval"], c.batchnorm_forward_eval(x, w, b, rm, rv, y, eps);
  }
  void batchnorm_backward(CView<float> dy, CView<float> w, BatchNormCache<float> k, View<float> dx,
                          View<float> dw, View<float> db) override {
    ++n["batchnorm_backward"], c.batchnorm_backward(dy, w, k, dx, dw, db);
  }
  void concat_pool_forward(CView<float> o, CView<std::uint8_t> p, View<float> po,
                           View<std::int32_t> a, Index bptt) override {
    ++n["concat_pool_forward"], c.concat_pool_forward(o, p, po, a, bptt);
  }
  void concat_pool_backward(CView<float> d, CView<std::uint8_t> p, CView<std::int32_t> a,
                            View<float> o, Index bptt) override {
    ++n["concat_pool_backward"], c.concat_pool_backward(d, p, a, o, bptt);
  }
  LossResult lm_softmax_ce_forward_backward(CView<float> h, CView<float> w, CView<float> b,
                                            CView<std::int32_t> t, View<float> dh, View<float> dw,
                                            View<float> db, View<float> ws, Index ch,
                                            float gs) override {
    ++n["lm_softmax_ce_forward_backward"];
    return c.lm_softmax_ce_forward_backward(h, w, b, t, dh, dw, db, ws, ch, gs);
  }
  LossResult softmax_ce_forward_backward(CView<float> l, CView<std::int32_t> t, View<float> d,
                                         float gs) override {
    ++n["softmax_ce_forward_backward"];
    return c.softmax_ce_forward_backward(l, t, d, gs);
  }
  void adam_step(View<float> w, CView<float> g, View<float> m, View<float> v,
                 const ew::AdamScalars& s) override {
    ++n["adam_step"], c.adam_step(w, g, m, v, s);
  }
};

class CountingBackend final : public CpuForwardingBackend {
 public:
  const char* name() const override { return "counting"; }
  Ops<float>& f32() override { return ops32; }
  CountingOps ops32;
};

}  // namespace

TEST(BackendOps, ModelsRunEveryOpThroughTheBackendTheyHold) {
  using namespace ulmfit;
  CountingBackend be;
  auto& n = be.ops32.n;
  // LM: a training step with every dropout, then Adam
  ModelConfig cfg = tiny_cfg();
  cfg.embed_p = cfg.input_p = cfg.weight_p = cfg.hidden_p = cfg.output_p = 0.3;
  AwdLstmLM lm(cfg);
  Rng r(11);
  lm.init(r);
  lm.encoder().set_backend(be);
  auto ids = ids_of({2, 5}, r, 23), tg = ids_of({2, 5}, r, 23);
  AwdLstmCache<float> cache;
  ForwardOptions fo;
  fo.rng = &r;
  const double loss = lm.train_step(ids.view(), tg.view(), cache, fo);
  EXPECT_TRUE(std::isfinite(loss));
  EXPECT_EQ(n["lstm_forward"], 3);
  EXPECT_EQ(n["lstm_backward"], 3);
  EXPECT_EQ(n["weight_dropout_forward"], 6);  // forward, and recomputed in backward
  EXPECT_EQ(n["weight_dropout_backward"], 3);
  EXPECT_EQ(n["embedding_forward"], 1);
  EXPECT_EQ(n["embedding_backward"], 1);
  EXPECT_EQ(n["lm_softmax_ce_forward_backward"], 1);
  EXPECT_GE(n["dropout_mask"], 1 + 1 + 3 + 2 + 1);  // embed, input, weight x3, hidden x2, output
  std::vector<Param> ps = lm_params(lm);
  Adam adam(ps, cfg.n_layers + 1);
  adam.set_backend(be);
  adam.step();
  EXPECT_EQ(n["adam_step"], (int)ps.size());
  EXPECT_EQ(n["lstm_infer"], 0);

  // classifier: a training step and a served document
  n.clear();
  ModelConfig cc = tiny_cfg();
  cc.kind = "classifier";
  cc.bptt = 4, cc.max_len = 8;
  cc.lin_ftrs = {5};
  cc.head_ps = {0.2, 0.1};
  ClassifierModel m(cc);
  m.init(r);
  m.set_backend(be);
  EXPECT_EQ(&m.backend(), &be);
  auto cid = ids_of({3, 8}, r, 23);
  for (Index i = 0; i < cid.numel(); ++i) cid[i] = 2 + cid[i] % 20;  // no pad
  Tensor<std::int32_t> y({3});
  y[0] = 0, y[1] = 1, y[2] = 2;
  ClassifierCache<float> k;
  m.freeze_to(0);
  EXPECT_TRUE(std::isfinite(m.train_step(cid.view(), y.view(), k, fo)));
  EXPECT_EQ(n["lstm_forward"], 3 * 2);  // 3 layers x 2 chunks
  EXPECT_EQ(n["lstm_backward"], 3 * 2);
  EXPECT_EQ(n["softmax_ce_forward_backward"], 1);
  EXPECT_EQ(n["concat_pool_forward"], 1);
  EXPECT_EQ(n["concat_pool_backward"], 1);
  EXPECT_EQ(n["batchnorm_backward"], 2);
  n.clear();
  std::vector<TokenId> doc{2, 5, 7, 9, 11, 3};
  auto logits = m.infer(doc);
  EXPECT_TRUE(std::isfinite(logits[0]));
  EXPECT_EQ(n["lstm_infer"], 3);
  EXPECT_EQ(n["batchnorm_forward_eval"], 2);
  EXPECT_EQ(n["lstm_forward"], 0);
}
