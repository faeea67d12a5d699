// ctest-labels: cuda
// tests/test_cuda_ops.cpp — every float op of the CUDA backend against the CPU backend (the
// reference, nn/cpu_backend.cpp) on random inputs, forward and backward:
//   |gpu − cpu| ≤ atol + rtol·|cpu| for every element of every output tensor.
// Also: dropout masks (bitwise equal to nn::ew::philox_dropout_mask_value computed on the host;
// statistics), the ops given the same mask, bad input errors, and bitwise determinism of two
// identical runs on the same GPU.
//
// Every test here needs a usable CUDA device: in a build without CUDA, or on a machine without a
// GPU, each test is SKIPPED (GTEST_SKIP; ctest reports it as skipped). They first ran on a GPU
// on 2026-12-04 (an H200: all passed, and clean under compute-sanitizer memcheck; cuda/README.md);
// tools/device-check.sh runs them where a GPU exists.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "gpu_test_helpers.h"
#include "nn/backend.h"
#include "nn/dropout.h"
#include "nn/elementwise.h"
#include "nn/lstm.h"
#include "nn/optim.h"
#include "nn/rng.h"
#ifdef INSPIRE_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

using namespace nn;

namespace {

#define NEED_GPU()  \
  NEED_GPU_BACKEND(); \
  Dev dev(be)

Ops<float>& cpu() { return cpu_backend().f32(); }

template <typename T>
Tensor<T> rnd(Shape s, Rng& r, double lo = -1, double hi = 1) {
  Tensor<T> t(s);
  for (Index i = 0; i < t.numel(); ++i) t[i] = (T)r.uniform(lo, hi);
  return t;
}
Tensor<std::int32_t> ids_of(Shape s, Rng& r, int V) {
  Tensor<std::int32_t> t(s);
  for (Index i = 0; i < t.numel(); ++i) t[i] = (std::int32_t)(r.next_u64() % V);
  return t;
}

// Device copies of host tensors; every buffer lives as long as the Dev.
struct Dev {
  explicit Dev(Backend& b) : be(b) {}
  Backend& be;
  std::map<const void*, Buffer> bufs;
  template <typename T>
  View<T> up(const Tensor<T>& t) {
    Buffer b = be.alloc(sizeof(T) * t.numel());
    be.copy_from_host(b, 0, t.data(), sizeof(T) * t.numel());
    View<T> v = b.view<T>(t.shape());
    bufs.emplace(v.data, std::move(b));
    return v;
  }
  template <typename T>
  View<T> zeros(Shape s) {
    Buffer b = be.alloc(sizeof(T) * s.numel());
    View<T> v = b.view<T>(s);
    bufs.emplace(v.data, std::move(b));
    return v;
  }
  template <typename T>
  Tensor<T> down(CView<T> v) {
    Tensor<T> t(v.shape);
    be.copy_to_host(t.data(), bufs.at(v.data), 0, sizeof(T) * v.numel());
    return t;
  }
};

// |a − ref| ≤ atol + rtol·|ref| everywhere; reports the first failure and the largest error.
void expect_close(CView<float> a, CView<float> ref, double atol, double rtol, const std::string& what) {
  ASSERT_EQ(a.numel(), ref.numel()) << what;
  Index bad = -1;
  double worst = 0;
  for (Index i = 0; i < a.numel(); ++i) {
    const double e = std::fabs((double)a[i] - (double)ref[i]);
    worst = std::max(worst, e);
    if (!(e <= atol + rtol * std::fabs((double)ref[i])) && bad < 0) bad = i;
  }
  EXPECT_LT(bad, 0) << what << ": element " << bad << " = " << (bad >= 0 ? a[bad] : 0.f)
                    << ", cpu " << (bad >= 0 ? ref[bad] : 0.f) << " (largest |error| " << worst
                    << ", atol " << atol << ", rtol " << rtol << ")";
}
constexpr double kAtol = 1e-5, kRtol = 1e-4;
// LSTM windows: up to 23 recurrent steps in float, summed in another order than the CPU's; an
// indexing bug gives O(1) errors, far above these.
constexpr double kLstmAtol = 1e-4, kLstmRtol = 1e-3;

}  // namespace

TEST(CudaOps, GemmEveryTranspose) {
  NEED_GPU();
  Rng r(1);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const Index M = 37, N = 45, K = 29;
      auto A = rnd<float>(ta ? Shape{K, M} : Shape{M, K}, r);
      auto B = rnd<float>(tb ? Shape{N, K} : Shape{K, N}, r);
      auto C = rnd<float>({M, N}, r);
      auto dA = dev.up(A), dB = dev.up(B), dC = dev.up(C);
      cpu().gemm(ta, tb, M, N, K, 0.5f, A.data(), ta ? M : K, B.data(), tb ? K : N, 2.f, C.data(), N);
      be.f32().gemm(ta, tb, M, N, K, 0.5f, dA.data, ta ? M : K, dB.data, tb ? K : N, 2.f, dC.data, N);
      expect_close(dev.down<float>(dC).view(), C.view(), kAtol, kRtol, "gemm");
    }
}

TEST(CudaOps, EmbeddingForwardAndScatterAddBackward) {
  NEED_GPU();
  Rng r(2);
  const Index V = 50, E = 24, bs = 7, sl = 33;  // 231 ids over 50 rows: many repeats
  auto table = rnd<float>({V, E}, r);
  auto ids = ids_of({bs, sl}, r, V);
  Tensor<float> mask({V});
  dropout_mask<float>(r, 0.3, mask.view());
  auto dids = dev.up(ids);
  auto dtab = dev.up(table), dmask = dev.up(mask);
  for (bool with_mask : {true, false}) {
    CView<float> m = with_mask ? CView<float>(mask.view()) : CView<float>();
    CView<float> dm = with_mask ? CView<float>(dmask) : CView<float>();
    Tensor<float> out({bs, sl, E});
    cpu().embedding_forward(ids.view(), table.view(), m, out.view());
    auto dout = dev.zeros<float>({bs, sl, E});
    be.f32().embedding_forward(dids, dtab, dm, dout);
    expect_close(dev.down<float>(dout).view(), out.view(), 0, 0, "embedding_forward");

    auto g = rnd<float>({bs, sl, E}, r);
    auto dt = rnd<float>({V, E}, r);  // accumulates into what is there
    auto ddt = dev.up(dt), dg = dev.up(g);
    cpu().embedding_backward(ids.view(), m, g.view(), 1, dt.view());
    be.f32().embedding_backward(dids, dm, dg, 1, ddt);
    expect_close(dev.down<float>(ddt).view(), dt.view(), kAtol, kRtol, "embedding_backward");
  }
  // a bad id is named, nothing is computed
  Tensor<std::int32_t> bad = ids;
  bad[17] = (std::int32_t)V;
  auto dbad = dev.up(bad);
  auto dout = dev.zeros<float>({bs, sl, E});
  try {
    be.f32().embedding_forward(dbad, dtab, {}, dout);
    FAIL() << "no throw";
  } catch (const std::out_of_range& e) {
    EXPECT_NE(std::string(e.what()).find("position 17"), std::string::npos) << e.what();
  }
}

TEST(CudaOps, EmbeddingBackwardIsBitwiseDeterministic) {
  NEED_GPU();
  Rng r(3);
  const Index V = 5, E = 64, n = 4000;  // heavy collisions
  auto ids = ids_of({n}, r, V);
  auto g = rnd<float>({n, E}, r);
  auto dids = dev.up(ids);
  auto dg = dev.up(g);
  auto a = dev.zeros<float>({V, E}), b = dev.zeros<float>({V, E});
  be.f32().embedding_backward(dids, {}, dg, -1, a);
  be.f32().embedding_backward(dids, {}, dg, -1, b);
  auto ha = dev.down<float>(a), hb = dev.down<float>(b);
  for (Index i = 0; i < ha.numel(); ++i) ASSERT_EQ(ha[i], hb[i]) << i;
}

TEST(CudaOps, DropoutMasksAreThePhiloxMasksWithTheRightStatistics) {
  NEED_GPU();
  const Index n = (1 << 20) + 3;
  const double p = 0.3;
  Rng r(11), rcopy(11);
  auto dm = dev.zeros<float>({n});
  be.f32().dropout_mask(r, p, dm);
  auto m = dev.down<float>(dm);
  const std::uint64_t seed = rcopy.next_u64();  // the one draw the op takes
  EXPECT_EQ(r.state(), rcopy.state()) << "dropout_mask must advance the Rng by exactly one draw";
  const float keep = (float)(1.0 / (1.0 - p));
  Index zeros = 0;
  for (Index k = 0; k < n; ++k) {
    ASSERT_EQ(m[k], ew::philox_dropout_mask_value<float>(seed, (std::uint64_t)k, 1 - p, keep)) << k;
    zeros += m[k] == 0.f;
  }
  EXPECT_NEAR((double)zeros / (double)n, p, 0.003);  // ~6.5 sd of a binomial at this n
  // the same seed gives the same mask; the next draw a different one
  Rng again(11);
  auto dm2 = dev.zeros<float>({n});
  be.f32().dropout_mask(again, p, dm2);
  auto m2 = dev.down<float>(dm2);
  for (Index k = 0; k < n; ++k) ASSERT_EQ(m[k], m2[k]) << k;
  be.f32().dropout_mask(again, p, dm2);
  auto m3 = dev.down<float>(dm2);
  Index same = 0;
  for (Index k = 0; k < n; ++k) same += m3[k] == m[k];
  EXPECT_LT(same, n * 0.7);
  // p = 0: all ones; p = 1: all zeros; p outside [0, 1]: refused
  be.f32().dropout_mask(r, 0.0, dm2);
  EXPECT_EQ(dev.down<float>(dm2)[12345], 1.f);
  be.f32().dropout_mask(r, 1.0, dm2);
  EXPECT_EQ(dev.down<float>(dm2)[12345], 0.f);
  EXPECT_THROW(be.f32().dropout_mask(r, 1.5, dm2), std::invalid_argument);
}

TEST(CudaOps, DropoutOpsGivenTheSameMaskEqualTheCpu) {
  NEED_GPU();
  Rng r(4);
  const Index bs = 5, sl = 9, C = 13;
  auto x = rnd<float>({bs, sl, C}, r);
  Tensor<float> fm({bs, sl, C}), rm({bs, C}), wm({4 * C, C});
  dropout_mask<float>(r, 0.4, fm.view());
  dropout_mask<float>(r, 0.4, rm.view());
  dropout_mask<float>(r, 0.5, wm.view());
  auto dx = dev.up(x), dfm = dev.up(fm), drm = dev.up(rm), dwm = dev.up(wm);
  Tensor<float> y({bs, sl, C});
  auto dy = dev.zeros<float>({bs, sl, C});
  cpu().dropout_forward(x.view(), fm.view(), y.view());
  be.f32().dropout_forward(dx, dfm, dy);
  expect_close(dev.down<float>(dy).view(), y.view(), 0, 0, "dropout_forward");
  cpu().dropout_backward(x.view(), fm.view(), y.view());
  be.f32().dropout_backward(dx, dfm, dy);
  expect_close(dev.down<float>(dy).view(), y.view(), 0, 0, "dropout_backward");
  cpu().rnn_dropout_forward(x.view(), rm.view(), y.view());
  be.f32().rnn_dropout_forward(dx, drm, dy);
  expect_close(dev.down<float>(dy).view(), y.view(), 0, 0, "rnn_dropout_forward");
  cpu().rnn_dropout_backward(x.view(), rm.view(), y.view());
  be.f32().rnn_dropout_backward(dx, drm, dy);
  expect_close(dev.down<float>(dy).view(), y.view(), 0, 0, "rnn_dropout_backward");
  auto W = rnd<float>({4 * C, C}, r), acc = rnd<float>({4 * C, C}, r);
  auto dW = dev.up(W), dacc = dev.up(acc);
  Tensor<float> we({4 * C, C});
  auto dwe = dev.zeros<float>({4 * C, C});
  cpu().weight_dropout_forward(W.view(), wm.view(), we.view());
  be.f32().weight_dropout_forward(dW, dwm, dwe);
  expect_close(dev.down<float>(dwe).view(), we.view(), 0, 0, "weight_dropout_forward");
  cpu().weight_dropout_backward(W.view(), wm.view(), acc.view());
  be.f32().weight_dropout_backward(dW, dwm, dacc);
  expect_close(dev.down<float>(dacc).view(), acc.view(), kAtol, kRtol, "weight_dropout_backward");
}

namespace {
struct LstmCase {
  Index bs, sl, in, H;
  bool state;  // h0/c0 and dhn/dcn given (else empty = zeros)
};
}  // namespace

TEST(CudaOps, LstmForwardBackwardAndInferEqualTheCpu) {
  NEED_GPU();
  for (LstmCase lc : {LstmCase{3, 5, 7, 6, true}, LstmCase{16, 23, 40, 33, false},
                      LstmCase{1, 1, 4, 5, true}}) {
    SCOPED_TRACE("bs " + std::to_string(lc.bs) + " sl " + std::to_string(lc.sl) + " in " +
                 std::to_string(lc.in) + " H " + std::to_string(lc.H));
    Rng r(5 + lc.bs);
    const Index bs = lc.bs, sl = lc.sl, in = lc.in, H = lc.H;
    auto wih = rnd<float>({4 * H, in}, r, -0.5, 0.5), whh = rnd<float>({4 * H, H}, r, -0.5, 0.5);
    auto bih = rnd<float>({4 * H}, r), bhh = rnd<float>({4 * H}, r);
    auto x = rnd<float>({bs, sl, in}, r);
    auto h0 = rnd<float>({bs, H}, r), c0 = rnd<float>({bs, H}, r);
    LstmParams<float> p{wih.view(), whh.view(), bih.view(), bhh.view()};
    LstmParams<float> dp{dev.up(wih), dev.up(whh), dev.up(bih), dev.up(bhh)};
    auto dx = dev.up(x), dh0 = dev.up(h0), dc0 = dev.up(c0);
    CView<float> H0 = lc.state ? CView<float>(h0.view()) : CView<float>();
    CView<float> C0 = lc.state ? CView<float>(c0.view()) : CView<float>();
    CView<float> DH0 = lc.state ? CView<float>(dh0) : CView<float>();
    CView<float> DC0 = lc.state ? CView<float>(dc0) : CView<float>();

    Tensor<float> y({bs, sl, H}), hn({bs, H}), cn({bs, H});
    LstmCache<float> kc, kg;
    cpu().lstm_forward(p, x.view(), H0, C0, y.view(), hn.view(), cn.view(), kc);
    auto gy = dev.zeros<float>({bs, sl, H}), ghn = dev.zeros<float>({bs, H}),
         gcn = dev.zeros<float>({bs, H});
    be.f32().lstm_forward(dp, dx, DH0, DC0, gy, ghn, gcn, kg);
    expect_close(dev.down<float>(gy).view(), y.view(), kLstmAtol, kLstmRtol, "lstm y");
    expect_close(dev.down<float>(ghn).view(), hn.view(), kLstmAtol, kLstmRtol, "lstm hn");
    expect_close(dev.down<float>(gcn).view(), cn.view(), kLstmAtol, kLstmRtol, "lstm cn");

    auto dy = rnd<float>({bs, sl, H}, r), dhn = rnd<float>({bs, H}, r), dcn = rnd<float>({bs, H}, r);
    auto gwi = rnd<float>({4 * H, in}, r), gwh = rnd<float>({4 * H, H}, r);  // accumulate
    auto gbi = rnd<float>({4 * H}, r), gbh = rnd<float>({4 * H}, r);
    auto d_dy = dev.up(dy), d_dhn = dev.up(dhn), d_dcn = dev.up(dcn);
    auto d_gwi = dev.up(gwi), d_gwh = dev.up(gwh), d_gbi = dev.up(gbi), d_gbh = dev.up(gbh);
    Tensor<float> ddx({bs, sl, in}), ddh0({bs, H}), ddc0({bs, H});
    cpu().lstm_backward(p, kc, dy.view(), lc.state ? CView<float>(dhn.view()) : CView<float>(),
                        lc.state ? CView<float>(dcn.view()) : CView<float>(), ddx.view(),
                        ddh0.view(), ddc0.view(),
                        LstmGrads<float>{gwi.view(), gwh.view(), gbi.view(), gbh.view()});
    auto g_dx = dev.zeros<float>({bs, sl, in}), g_dh0 = dev.zeros<float>({bs, H}),
         g_dc0 = dev.zeros<float>({bs, H});
    be.f32().lstm_backward(dp, kg, d_dy, lc.state ? CView<float>(d_dhn) : CView<float>(),
                           lc.state ? CView<float>(d_dcn) : CView<float>(), g_dx, g_dh0, g_dc0,
                           LstmGrads<float>{d_gwi, d_gwh, d_gbi, d_gbh});
    expect_close(dev.down<float>(g_dx).view(), ddx.view(), kLstmAtol, kLstmRtol, "lstm dx");
    expect_close(dev.down<float>(g_dh0).view(), ddh0.view(), kLstmAtol, kLstmRtol, "lstm dh0");
    expect_close(dev.down<float>(g_dc0).view(), ddc0.view(), kLstmAtol, kLstmRtol, "lstm dc0");
    expect_close(dev.down<float>(d_gwi).view(), gwi.view(), kLstmAtol, kLstmRtol, "lstm dW_ih");
    expect_close(dev.down<float>(d_gwh).view(), gwh.view(), kLstmAtol, kLstmRtol, "lstm dW_hh");
    expect_close(dev.down<float>(d_gbi).view(), gbi.view(), kLstmAtol, kLstmRtol, "lstm db_ih");
    expect_close(dev.down<float>(d_gbh).view(), gbh.view(), kLstmAtol, kLstmRtol, "lstm db_hh");

    // the serving path: state updated in place
    Tensor<float> h = h0, c = c0, yi({bs, sl, H}), scratch;
    cpu().lstm_infer(p, x.view(), h.view(), c.view(), yi.view(), scratch);
    auto gh = dev.up(h0), gc = dev.up(c0), gyi = dev.zeros<float>({bs, sl, H});
    be.f32().lstm_infer(dp, dx, gh, gc, gyi, scratch);
    expect_close(dev.down<float>(gyi).view(), yi.view(), kLstmAtol, kLstmRtol, "lstm_infer y");
    expect_close(dev.down<float>(gh).view(), h.view(), kLstmAtol, kLstmRtol, "lstm_infer h");
    expect_close(dev.down<float>(gc).view(), c.view(), kLstmAtol, kLstmRtol, "lstm_infer c");
  }
}

TEST(CudaOps, LstmWindowIsBitwiseDeterministic) {
  NEED_GPU();
  Rng r(6);
  const Index bs = 8, sl = 12, in = 20, H = 24;
  LstmParams<float> dp{dev.up(rnd<float>({4 * H, in}, r)), dev.up(rnd<float>({4 * H, H}, r)),
                       dev.up(rnd<float>({4 * H}, r)), dev.up(rnd<float>({4 * H}, r))};
  auto x = dev.up(rnd<float>({bs, sl, in}, r)), dy = dev.up(rnd<float>({bs, sl, H}, r));
  std::vector<Tensor<float>> runs;
  for (int k = 0; k < 2; ++k) {
    LstmCache<float> cache;
    auto y = dev.zeros<float>({bs, sl, H}), dx = dev.zeros<float>({bs, sl, in});
    auto gw = dev.zeros<float>({4 * H, H});
    be.f32().lstm_forward(dp, x, {}, {}, y, {}, {}, cache);
    be.f32().lstm_backward(dp, cache, dy, {}, {}, dx, {}, {}, LstmGrads<float>{{}, gw, {}, {}});
    runs.push_back(dev.down<float>(gw));
    runs.push_back(dev.down<float>(dx));
  }
  for (int t = 0; t < 2; ++t)
    for (Index i = 0; i < runs[t].numel(); ++i) ASSERT_EQ(runs[t][i], runs[t + 2][i]) << t << " " << i;
}

TEST(CudaOps, LinearReluEqualTheCpu) {
  NEED_GPU();
  Rng r(7);
  const Index N = 19, in = 31, out = 17;
  auto x = rnd<float>({N, in}, r), w = rnd<float>({out, in}, r), b = rnd<float>({out}, r);
  auto dxv = dev.up(x), dw = dev.up(w), db = dev.up(b);
  for (bool bias : {true, false}) {
    Tensor<float> y({N, out});
    auto gy = dev.zeros<float>({N, out});
    cpu().linear_forward(x.view(), w.view(), bias ? CView<float>(b.view()) : CView<float>(), y.view());
    be.f32().linear_forward(dxv, dw, bias ? CView<float>(db) : CView<float>(), gy);
    expect_close(dev.down<float>(gy).view(), y.view(), kAtol, kRtol, "linear_forward");
  }
  auto dy = rnd<float>({N, out}, r), gw = rnd<float>({out, in}, r), gb = rnd<float>({out}, r);
  auto d_dy = dev.up(dy), d_gw = dev.up(gw), d_gb = dev.up(gb);
  Tensor<float> dx({N, in});
  auto d_dx = dev.zeros<float>({N, in});
  cpu().linear_backward(x.view(), w.view(), dy.view(), dx.view(), gw.view(), gb.view());
  be.f32().linear_backward(dxv, dw, d_dy, d_dx, d_gw, d_gb);
  expect_close(dev.down<float>(d_dx).view(), dx.view(), kAtol, kRtol, "linear dx");
  expect_close(dev.down<float>(d_gw).view(), gw.view(), kAtol, kRtol, "linear dW");
  expect_close(dev.down<float>(d_gb).view(), gb.view(), kAtol, kRtol, "linear db");
  Tensor<float> ry({N, in}), rdx({N, in});
  auto gry = dev.zeros<float>({N, in}), grdx = dev.zeros<float>({N, in});
  cpu().relu_forward(x.view(), ry.view());
  be.f32().relu_forward(dxv, gry);
  expect_close(dev.down<float>(gry).view(), ry.view(), 0, 0, "relu_forward");
  auto g = rnd<float>({N, in}, r);
  auto dg = dev.up(g);
  cpu().relu_backward(ry.view(), g.view(), rdx.view());
  be.f32().relu_backward(gry, dg, grdx);
  expect_close(dev.down<float>(grdx).view(), rdx.view(), 0, 0, "relu_backward");
}

TEST(CudaOps, BatchNormEqualsTheCpu) {
  NEED_GPU();
  Rng r(8);
  const Index N = 24, C = 50;
  auto x = rnd<float>({N, C}, r, -2, 3), w = rnd<float>({C}, r), b = rnd<float>({C}, r);
  auto rm = rnd<float>({C}, r), rv = rnd<float>({C}, r, 0.5, 2);
  auto dx_ = dev.up(x), dw = dev.up(w), db = dev.up(b), drm = dev.up(rm), drv = dev.up(rv);
  Tensor<float> y({N, C}), xhat({N, C}), rstd({C});
  auto gy = dev.zeros<float>({N, C}), gxhat = dev.zeros<float>({N, C}), grstd = dev.zeros<float>({C});
  cpu().batchnorm_forward_train(x.view(), w.view(), b.view(), rm.view(), rv.view(), y.view(),
                                {xhat.view(), rstd.view()}, 0.1, 1e-5);
  be.f32().batchnorm_forward_train(dx_, dw, db, drm, drv, gy, {gxhat, grstd}, 0.1, 1e-5);
  expect_close(dev.down<float>(gy).view(), y.view(), kAtol, kRtol, "batchnorm train y");
  expect_close(dev.down<float>(drm).view(), rm.view(), kAtol, kRtol, "batchnorm running_mean");
  expect_close(dev.down<float>(drv).view(), rv.view(), kAtol, kRtol, "batchnorm running_var");
  auto dy = rnd<float>({N, C}, r), gw = rnd<float>({C}, r), gb = rnd<float>({C}, r);
  auto d_dy = dev.up(dy), d_gw = dev.up(gw), d_gb = dev.up(gb);
  Tensor<float> dxo({N, C});
  auto g_dx = dev.zeros<float>({N, C});
  cpu().batchnorm_backward(dy.view(), w.view(), {xhat.view(), rstd.view()}, dxo.view(), gw.view(), gb.view());
  be.f32().batchnorm_backward(d_dy, dw, {gxhat, grstd}, g_dx, d_gw, d_gb);
  expect_close(dev.down<float>(g_dx).view(), dxo.view(), kAtol, kRtol, "batchnorm dx");
  expect_close(dev.down<float>(d_gw).view(), gw.view(), kAtol, kRtol, "batchnorm dweight");
  expect_close(dev.down<float>(d_gb).view(), gb.view(), kAtol, kRtol, "batchnorm dbias");
  Tensor<float> ye({N, C});
  auto gye = dev.zeros<float>({N, C});
  cpu().batchnorm_forward_eval(x.view(), w.view(), b.view(), rm.view(), rv.view(), ye.view(), 1e-5);
  be.f32().batchnorm_forward_eval(dx_, dw, db, drm, drv, gye, 1e-5);
  expect_close(dev.down<float>(gye).view(), ye.view(), kAtol, kRtol, "batchnorm eval");
}

TEST(CudaOps, ConcatPoolEqualsTheCpu) {
  NEED_GPU();
  Rng r(9);
  const Index bs = 6, T = 15, C = 11, bptt = 5;
  auto out = rnd<float>({bs, T, C}, r);
  Tensor<std::uint8_t> pad({bs, T});
  for (Index b = 0; b < bs; ++b)
    for (Index t = 0; t < T; ++t)  // leading pads (fastai pads first) + some inside the window
      pad[b * T + t] = (std::uint8_t)(t < b || (b == 4 && t == T - 2));
  auto dout_ = dev.up(out);
  auto dpad = dev.up(pad);
  Tensor<float> pooled({bs, 3 * C});
  Tensor<std::int32_t> am({bs, C});
  auto gp = dev.zeros<float>({bs, 3 * C});
  auto gam = dev.zeros<std::int32_t>({bs, C});
  cpu().concat_pool_forward(out.view(), pad.view(), pooled.view(), am.view(), bptt);
  be.f32().concat_pool_forward(dout_, dpad, gp, gam, bptt);
  expect_close(dev.down<float>(gp).view(), pooled.view(), kAtol, kRtol, "concat_pool pooled");
  auto gamh = dev.down<std::int32_t>(gam);
  for (Index i = 0; i < am.numel(); ++i) ASSERT_EQ(gamh[i], am[i]) << "argmax " << i;
  auto dp = rnd<float>({bs, 3 * C}, r);
  auto ddp = dev.up(dp);
  Tensor<float> dout({bs, T, C});
  auto gdout = dev.zeros<float>({bs, T, C});
  cpu().concat_pool_backward(dp.view(), pad.view(), am.view(), dout.view(), bptt);
  be.f32().concat_pool_backward(ddp, dpad, gam, gdout, bptt);
  expect_close(dev.down<float>(gdout).view(), dout.view(), kAtol, kRtol, "concat_pool dout");
  // a row of pads only is named
  Tensor<std::uint8_t> allpad = pad;
  for (Index t = 0; t < T; ++t) allpad[3 * T + t] = 1;
  auto dall = dev.up(allpad);
  try {
    be.f32().concat_pool_forward(dout_, dall, gp, gam, bptt);
    FAIL() << "no throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("row 3"), std::string::npos) << e.what();
  }
}

TEST(CudaOps, FusedLmSoftmaxCrossEntropyEqualsTheCpu) {
  NEED_GPU();
  Rng r(10);
  const Index N = 37, E = 16, V = 1000, chunk = 8;  // 5 balanced chunks of <= 8 rows
  auto hidden = rnd<float>({N, E}, r), W = rnd<float>({V, E}, r), b = rnd<float>({V}, r, -0.1, 0.1);
  auto targets = ids_of({N}, r, (int)V);
  // make every third row's target its argmax, so that `correct` is not trivially 0
  Tensor<float> logits({N, V});
  gemm(false, true, N, V, E, 1.f, hidden.data(), E, W.data(), E, 0.f, logits.data(), V);
  for (Index i = 0; i < N; i += 3) {
    Index am = 0;
    for (Index v = 1; v < V; ++v)
      if (logits[i * V + v] + b[v] > logits[i * V + am] + b[am]) am = v;
    targets[i] = (std::int32_t)am;
  }
  auto dh_ = dev.up(hidden), dW_ = dev.up(W), db_ = dev.up(b);
  auto dt = dev.up(targets);
  // small initial gradients: accumulation is checked without swamping the gradient itself
  auto gW = rnd<float>({V, E}, r, -1e-4, 1e-4), gb = rnd<float>({V}, r, -1e-4, 1e-4);
  auto d_gW = dev.up(gW), d_gb = dev.up(gb);
  Tensor<float> dh({N, E}), ws({chunk * V});
  auto g_dh = dev.zeros<float>({N, E}), gws = dev.zeros<float>({chunk * V});
  LossResult rc = cpu().lm_softmax_ce_forward_backward(hidden.view(), W.view(), b.view(),
                                                       targets.view(), dh.view(), gW.view(),
                                                       gb.view(), ws.view(), chunk, 0.5f);
  LossResult rg = be.f32().lm_softmax_ce_forward_backward(dh_, dW_, db_, dt, g_dh, d_gW, d_gb,
                                                          gws, chunk, 0.5f);
  EXPECT_NEAR(rg.loss, rc.loss, 1e-5 * std::fabs(rc.loss));
  EXPECT_EQ(rg.correct, rc.correct);
  EXPECT_GE(rc.correct, N / 3);
  expect_close(dev.down<float>(g_dh).view(), dh.view(), 1e-6, kRtol, "lm ce dhidden");
  expect_close(dev.down<float>(d_gW).view(), gW.view(), 1e-7, 1e-3, "lm ce dW");
  expect_close(dev.down<float>(d_gb).view(), gb.view(), 1e-7, 1e-3, "lm ce db");
  // forward only, own workspace
  LossResult fc = cpu().lm_softmax_ce_forward(hidden.view(), W.view(), b.view(), targets.view(), {}, 16);
  LossResult fg = be.f32().lm_softmax_ce_forward(dh_, dW_, db_, dt, {}, 16);
  EXPECT_NEAR(fg.loss, fc.loss, 1e-5 * std::fabs(fc.loss));
  EXPECT_EQ(fg.correct, fc.correct);
  // a target outside the vocabulary is named, nothing is accumulated
  Tensor<std::int32_t> bad = targets;
  bad[5] = -1;
  auto dbad = dev.up(bad);
  auto before = dev.down<float>(d_gW);
  EXPECT_THROW(be.f32().lm_softmax_ce_forward_backward(dh_, dW_, db_, dbad, g_dh, d_gW, d_gb, gws,
                                                       chunk, 1.f),
               std::out_of_range);
  auto after = dev.down<float>(d_gW);
  for (Index i = 0; i < after.numel(); ++i) ASSERT_EQ(after[i], before[i]) << i;
}

TEST(CudaOps, ClassifierSoftmaxCrossEntropyEqualsTheCpu) {
  NEED_GPU();
  Rng r(12);
  const Index N = 9, C = 5;
  auto logits = rnd<float>({N, C}, r, -3, 3);
  auto t = ids_of({N}, r, (int)C);
  auto dl = dev.up(logits);
  auto dt = dev.up(t);
  Tensor<float> g({N, C});
  auto gg = dev.zeros<float>({N, C});
  LossResult rc = cpu().softmax_ce_forward_backward(logits.view(), t.view(), g.view(), 2.f);
  LossResult rg = be.f32().softmax_ce_forward_backward(dl, dt, gg, 2.f);
  EXPECT_NEAR(rg.loss, rc.loss, 1e-6 * std::fabs(rc.loss) + 1e-7);
  EXPECT_EQ(rg.correct, rc.correct);
  expect_close(dev.down<float>(gg).view(), g.view(), 1e-6, kRtol, "softmax_ce dlogits");
  // in place (dlogits aliases logits), and forward only
  be.f32().softmax_ce_forward_backward(dl, dt, dl, 2.f);
  expect_close(dev.down<float>(dl).view(), g.view(), 1e-6, kRtol, "softmax_ce in place");
  auto dl2 = dev.up(logits);
  LossResult fo = be.f32().softmax_ce_forward_backward(dl2, dt, {}, 1.f);
  EXPECT_NEAR(fo.loss, rc.loss, 1e-6 * std::fabs(rc.loss) + 1e-7);
}

TEST(CudaOps, AdamAndGradNormClippingEqualTheCpu) {
  NEED_GPU();
  Rng r(13);
  const Index n = 100003;
  auto w = rnd<float>({n}, r), g = rnd<float>({n}, r), m = rnd<float>({n}, r, 0, 0.1),
       v = rnd<float>({n}, r, 0, 0.1);
  auto dw = dev.up(w), dg = dev.up(g), dm = dev.up(m), dv = dev.up(v);
  AdamHyper h;
  h.wd = 0.01;
  auto s = adam_scalars(h, 7, true);
  cpu().adam_step(w.view(), g.view(), m.view(), v.view(), s);
  be.f32().adam_step(dw, dg, dm, dv, s);
  expect_close(dev.down<float>(dw).view(), w.view(), 1e-6, 1e-5, "adam w");
  expect_close(dev.down<float>(dm).view(), m.view(), 1e-7, 1e-5, "adam m");
  expect_close(dev.down<float>(dv).view(), v.view(), 1e-7, 1e-5, "adam v");
  for (double max_norm : {1e9, 3.0}) {  // below the limit: untouched; above: scaled
    auto gc = g;
    auto dgc = dev.up(gc);
    const double nc = cpu().clip_grad_norm(gc.view(), max_norm);
    const double ng = be.f32().clip_grad_norm(dgc, max_norm);
    EXPECT_NEAR(ng, nc, 1e-9 * nc);
    expect_close(dev.down<float>(dgc).view(), gc.view(), 1e-7, 1e-6, "clip_grad_norm");
  }
  EXPECT_THROW(be.f32().clip_grad_norm(dg, 0.0), std::invalid_argument);
}

TEST(CudaOps, HostMemoryIsRefusedWithAMessage) {
  NEED_GPU();
  Tensor<float> x({4, 3}), y({4, 3});
  try {
    be.f32().relu_forward(x.view(), y.view());
    FAIL() << "no throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("not device memory"), std::string::npos) << e.what();
  }
}

#ifdef INSPIRE_HAVE_CUDA
// TF32 GEMMs (nn::set_cuda_tf32): close to fp32 at TF32's precision (10-bit mantissa inputs),
// and switching back gives fp32 again.
TEST(CudaOps, Tf32GemmIsCloseAndSwitchesBack) {
  NEED_GPU();
  Rng r(14);
  const Index M = 64, N = 96, K = 128;
  auto A = rnd<float>({M, K}, r), B = rnd<float>({N, K}, r);
  Tensor<float> C({M, N});
  cpu().gemm(false, true, M, N, K, 1.f, A.data(), K, B.data(), K, 0.f, C.data(), N);
  auto dA = dev.up(A), dB = dev.up(B);
  auto dC = dev.zeros<float>({M, N});
  set_cuda_tf32(true);
  be.f32().gemm(false, true, M, N, K, 1.f, dA.data, K, dB.data, K, 0.f, dC.data, N);
  set_cuda_tf32(false);
  EXPECT_FALSE(cuda_tf32());
  // |error| of a K-term dot product of TF32-rounded inputs: about sqrt(K)·2^-11·|a||b|
  expect_close(dev.down<float>(dC).view(), C.view(), 0.05, 1e-2, "tf32 gemm");
  be.f32().gemm(false, true, M, N, K, 1.f, dA.data, K, dB.data, K, 0.f, dC.data, N);
  expect_close(dev.down<float>(dC).view(), C.view(), kAtol, kRtol, "fp32 gemm after tf32");
}
#endif
