// ctest-labels: unit golden
// tests/test_lstm.cpp — nn/lstm: finite-difference gradients (double), PyTorch goldens (two
// consecutive windows with carried state), infer == forward, threading invariance, bad input.
#include <gtest/gtest.h>

#include "tests/golden_json.h"
#include <omp.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "nn/gemm_kernels.h"
#include "nn/lstm.h"
#include "nn/rng.h"
#include "nn/tensor.h"
#include "tests/gradcheck.h"

using namespace nn;
using testing_util::GradVar;

namespace {

template <typename T>
struct Layer {
  Tensor<T> w_ih, w_hh, b_ih, b_hh, dw_ih, dw_hh, db_ih, db_hh;
  Layer(Index in, Index h)
      : w_ih{4 * h, in}, w_hh{4 * h, h}, b_ih{4 * h}, b_hh{4 * h},
        dw_ih{4 * h, in}, dw_hh{4 * h, h}, db_ih{4 * h}, db_hh{4 * h} {}
  LstmParams<T> params() const { return {w_ih.view(), w_hh.view(), b_ih.view(), b_hh.view()}; }
  LstmGrads<T> grads() { return {dw_ih.view(), dw_hh.view(), db_ih.view(), db_hh.view()}; }
  void randomize(Rng& rng, double s) {
    for (auto* t : {&w_ih, &w_hh, &b_ih, &b_hh})
      for (Index i = 0; i < t->numel(); ++i) (*t)[i] = (T)rng.uniform(-s, s);
  }
};

template <typename T>
void fill(Tensor<T>& t, Rng& rng, double s = 1) {
  for (Index i = 0; i < t.numel(); ++i) t[i] = (T)rng.uniform(-s, s);
}

using golden_json::from_json;
using golden_json::rel_err;

}  // namespace

// Gradient check of every input and parameter, including the initial state (dh0, dc0) and a
// gradient arriving at the final state (dhn, dcn).
TEST(Lstm, GradcheckDouble) {
  const Index in = 3, H = 4, bs = 2, sl = 5;
  Rng rng(11);
  Layer<double> L(in, H);
  L.randomize(rng, 0.6);
  Tensor<double> x{bs, sl, in}, h0{bs, H}, c0{bs, H}, dy{bs, sl, H}, dhn{bs, H}, dcn{bs, H};
  fill(x, rng), fill(h0, rng, 0.5), fill(c0, rng, 0.5), fill(dy, rng), fill(dhn, rng), fill(dcn, rng);
  Tensor<double> y{bs, sl, H}, hn{bs, H}, cn{bs, H}, dx{bs, sl, in}, dh0{bs, H}, dc0{bs, H};
  LstmCache<double> cache;
  lstm_forward<double>(L.params(), x, h0, c0, y, hn, cn, cache);
  // pre-fill grads to check that they accumulate (+=)
  for (Index i = 0; i < L.dw_hh.numel(); ++i) L.dw_hh[i] = 1.0;
  lstm_backward<double>(L.params(), cache, dy, dhn, dcn, dx, dh0, dc0, L.grads());
  for (Index i = 0; i < L.dw_hh.numel(); ++i) L.dw_hh[i] -= 1.0;

  auto loss = [&]() {
    LstmCache<double> c2;
    Tensor<double> y2{bs, sl, H}, hn2{bs, H}, cn2{bs, H};
    lstm_forward<double>(L.params(), x, h0, c0, y2, hn2, cn2, c2);
    return testing_util::dot<double>(y2, dy) + testing_util::dot<double>(hn2, dhn) +
           testing_util::dot<double>(cn2, dcn);
  };
  auto r = testing_util::gradcheck(
      loss, {GradVar{"x", x, dx}, GradVar{"h0", h0, dh0}, GradVar{"c0", c0, dc0},
             GradVar{"w_ih", L.w_ih, L.dw_ih}, GradVar{"w_hh", L.w_hh, L.dw_hh},
             GradVar{"b_ih", L.b_ih, L.db_ih}, GradVar{"b_hh", L.b_hh, L.db_hh}},
      200);
  EXPECT_GRADCHECK(r, 1e-6);
}

// Frozen weights (empty grad views) skip their GEMMs but dx is still right; no dx requested.
TEST(Lstm, PartialGradients) {
  const Index in = 3, H = 4, bs = 2, sl = 3;
  Rng rng(5);
  Layer<double> L(in, H);
  L.randomize(rng, 0.5);
  Tensor<double> x{bs, sl, in}, dy{bs, sl, H}, y{bs, sl, H};
  fill(x, rng), fill(dy, rng);
  LstmCache<double> c;
  Tensor<double> dx_full{bs, sl, in}, dx_frozen{bs, sl, in};
  lstm_forward<double>(L.params(), x, {}, {}, y, {}, {}, c);
  lstm_backward<double>(L.params(), c, dy, {}, {}, dx_full, {}, {}, L.grads());
  Tensor<double> dwhh_full = L.dw_hh;
  L.dw_hh.view().zero();
  lstm_forward<double>(L.params(), x, {}, {}, y, {}, {}, c);
  lstm_backward<double>(L.params(), c, dy, {}, {}, dx_frozen, {}, {}, LstmGrads<double>{});
  for (Index i = 0; i < dx_full.numel(); ++i) EXPECT_DOUBLE_EQ(dx_full[i], dx_frozen[i]);
  for (Index i = 0; i < L.dw_hh.numel(); ++i) EXPECT_EQ(L.dw_hh[i], 0.0);
  double s = 0;
  for (Index i = 0; i < dwhh_full.numel(); ++i) s += std::fabs(dwhh_full[i]);
  EXPECT_GT(s, 0);
  // only weights, no dx
  lstm_forward<double>(L.params(), x, {}, {}, y, {}, {}, c);
  lstm_backward<double>(L.params(), c, dy, {}, {}, {}, {}, {}, L.grads());
  for (Index i = 0; i < L.dw_hh.numel(); ++i) EXPECT_NEAR(L.dw_hh[i], dwhh_full[i], 1e-12);
}

template <typename T>
void golden_check(double tol) {
  std::ifstream f(INSPIRE_SOURCE_DIR "/tests/fixtures/lstm/lstm_golden.json");
  ASSERT_TRUE(f) << "missing fixture tests/fixtures/lstm/lstm_golden.json";
  auto j = nlohmann::json::parse(f);
  auto g = [&](const char* k) { return from_json<T>(j.at(k)); };
  auto ref = [&](const char* k) { return from_json<double>(j.at(k)); };
  const Index in = j["config"]["in"], H = j["config"]["hidden"], bs = j["config"]["bs"],
              sl = j["config"]["sl"];
  Layer<T> L(in, H);
  L.w_ih = g("weight_ih"), L.w_hh = g("weight_hh"), L.b_ih = g("bias_ih"), L.b_hh = g("bias_hh");
  auto x1 = g("x1"), x2 = g("x2"), h0 = g("h0"), c0 = g("c0");
  auto dy1 = g("dy1"), dy2 = g("dy2"), dh2 = g("dh2"), dc2 = g("dc2");
  Tensor<T> y1{bs, sl, H}, y2{bs, sl, H}, h{bs, H}, c{bs, H};
  LstmCache<T> k1, k2;
  // the state is carried: window 2 starts from window 1's final state (in place)
  lstm_forward<T>(L.params(), x1, h0, c0, y1, h, c, k1);
  EXPECT_LT(rel_err<T>(y1, ref("y1")), tol);
  EXPECT_LT(rel_err<T>(h, ref("h1")), tol);
  EXPECT_LT(rel_err<T>(c, ref("c1")), tol);
  lstm_forward<T>(L.params(), x2, h, c, y2, h, c, k2);
  EXPECT_LT(rel_err<T>(y2, ref("y2")), tol);
  EXPECT_LT(rel_err<T>(h, ref("h2")), tol);
  EXPECT_LT(rel_err<T>(c, ref("c2")), tol);
  Tensor<T> dx1{bs, sl, in}, dx2{bs, sl, in}, dh0{bs, H}, dc0{bs, H}, dh1{bs, H}, dc1{bs, H};
  lstm_backward<T>(L.params(), k2, dy2, dh2, dc2, dx2, dh1, dc1, L.grads());
  lstm_backward<T>(L.params(), k1, dy1, {}, {}, dx1, dh0, dc0, L.grads());
  EXPECT_LT(rel_err<T>(dx1, ref("dx1")), tol);
  EXPECT_LT(rel_err<T>(dx2, ref("dx2")), tol);
  EXPECT_LT(rel_err<T>(dh0, ref("dh0")), tol);
  EXPECT_LT(rel_err<T>(dc0, ref("dc0")), tol);
  EXPECT_LT(rel_err<T>(dh1, ref("dh1")), tol);
  EXPECT_LT(rel_err<T>(dc1, ref("dc1")), tol);
  EXPECT_LT(rel_err<T>(L.dw_ih, ref("dweight_ih")), tol);
  EXPECT_LT(rel_err<T>(L.dw_hh, ref("dweight_hh")), tol);
  EXPECT_LT(rel_err<T>(L.db_ih, ref("dbias_ih")), tol);
  EXPECT_LT(rel_err<T>(L.db_hh, ref("dbias_hh")), tol);
}

TEST(Lstm, PyTorchGoldenDouble) { golden_check<double>(1e-10); }
TEST(Lstm, PyTorchGoldenFloat) { golden_check<float>(1e-5); }

// The serving path gives the training forward's outputs and final state (batch 1 and batch > 1).
TEST(Lstm, InferMatchesForward) {
  for (Index bs : {1, 5}) {
    const Index in = 6, H = 9, sl = 7;
    Rng rng(3);
    Layer<float> L(in, H);
    L.randomize(rng, 0.4);
    Tensor<float> x{bs, sl, in}, h0{bs, H}, c0{bs, H};
    fill(x, rng), fill(h0, rng, 0.5), fill(c0, rng, 0.5);
    Tensor<float> y{bs, sl, H}, hn{bs, H}, cn{bs, H};
    LstmCache<float> k;
    lstm_forward<float>(L.params(), x, h0, c0, y, hn, cn, k);
    Tensor<float> yi{bs, sl, H}, h = h0, c = c0, scratch;
    lstm_infer<float>(L.params(), x, h, c, yi, scratch);
    for (Index i = 0; i < y.numel(); ++i) EXPECT_NEAR(y[i], yi[i], 1e-6) << "bs=" << bs;
    for (Index i = 0; i < hn.numel(); ++i) EXPECT_NEAR(hn[i], h[i], 1e-6);
    for (Index i = 0; i < cn.numel(); ++i) EXPECT_NEAR(cn[i], c[i], 1e-6);
  }
}

// Splitting the batch rows over threads gives the same numbers as one thread.
TEST(Lstm, ThreadCountInvariant) {
  const Index in = 32, H = 48, bs = 7, sl = 6;
  Rng rng(9);
  Layer<float> L(in, H);
  L.randomize(rng, 0.2);
  Tensor<float> x{bs, sl, in}, dy{bs, sl, H};
  fill(x, rng), fill(dy, rng);
  auto run = [&](int threads, Tensor<float>& y, Tensor<float>& dx, Tensor<float>& dw) {
    int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    Layer<float> L2 = L;
    LstmCache<float> k;
    lstm_forward<float>(L2.params(), x, {}, {}, y, {}, {}, k);
    lstm_backward<float>(L2.params(), k, dy, {}, {}, dx, {}, {}, L2.grads());
    dw = L2.dw_hh;
    omp_set_num_threads(saved);
  };
  Tensor<float> y1{bs, sl, H}, y3{bs, sl, H}, dx1{bs, sl, in}, dx3{bs, sl, in}, dw1, dw3;
  run(1, y1, dx1, dw1);
  run(3, y3, dx3, dw3);
  for (Index i = 0; i < y1.numel(); ++i) EXPECT_NEAR(y1[i], y3[i], 1e-6);
  for (Index i = 0; i < dx1.numel(); ++i) EXPECT_NEAR(dx1[i], dx3[i], 1e-5);
  for (Index i = 0; i < dw1.numel(); ++i) EXPECT_NEAR(dw1[i], dw3[i], 1e-4);
}

TEST(Lstm, BadShapesAreNamed) {
  Layer<float> L(3, 4);
  Tensor<float> x{2, 5, 2}, y{2, 5, 4};
  LstmCache<float> k;
  try {
    lstm_forward<float>(L.params(), x, {}, {}, y, {}, {}, k);
    FAIL() << "expected an exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("weight_ih expects 3"), std::string::npos) << e.what();
  }
  Tensor<float> x3{2, 5, 3}, ybad{2, 4, 4};
  EXPECT_THROW(lstm_forward<float>(L.params(), x3, {}, {}, ybad, {}, {}, k), std::invalid_argument);
  Tensor<float> wbad{16, 5};
  LstmParams<float> p = L.params();
  p.w_hh = wbad.view();
  EXPECT_THROW(lstm_forward<float>(p, x3, {}, {}, y, {}, {}, k), std::invalid_argument);
}

// The float path (with its AVX2 recurrent kernel where available) agrees with the double path
// (Eigen) at a size that exercises every register-block remainder (rows 9 = 4+4+1, 4h = 200 =
// 3·24 + 2·24 + ... + 8, h = 50 = 48 + 2 tail columns).
TEST(Lstm, FloatMatchesDoubleAtOddSizes) {
  for (Index bs : {9, 1}) {  // 1: the single-row (GEMV) path
  const Index in = 13, H = 50, sl = 6;
  Rng rng(21);
  Layer<double> Ld(in, H);
  Ld.randomize(rng, 0.3);
  Layer<float> Lf(in, H);
  Tensor<double> xd{bs, sl, in}, dyd{bs, sl, H}, h0d{bs, H}, c0d{bs, H};
  fill(xd, rng), fill(dyd, rng), fill(h0d, rng, 0.5), fill(c0d, rng, 0.5);
  auto cvt = [](const Tensor<double>& a, Tensor<float>& b) {
    b.resize(a.shape());
    for (Index i = 0; i < a.numel(); ++i) b[i] = (float)a[i];
  };
  cvt(Ld.w_ih, Lf.w_ih), cvt(Ld.w_hh, Lf.w_hh), cvt(Ld.b_ih, Lf.b_ih), cvt(Ld.b_hh, Lf.b_hh);
  Tensor<float> xf, dyf, h0f, c0f;
  cvt(xd, xf), cvt(dyd, dyf), cvt(h0d, h0f), cvt(c0d, c0f);
  Tensor<double> yd{bs, sl, H}, dxd{bs, sl, in}, dh0d{bs, H};
  Tensor<float> yf{bs, sl, H}, dxf{bs, sl, in}, dh0f{bs, H};
  LstmCache<double> kd;
  LstmCache<float> kf;
  lstm_forward<double>(Ld.params(), xd, h0d, c0d, yd, {}, {}, kd);
  lstm_forward<float>(Lf.params(), xf, h0f, c0f, yf, {}, {}, kf);
  lstm_backward<double>(Ld.params(), kd, dyd, {}, {}, dxd, dh0d, {}, Ld.grads());
  lstm_backward<float>(Lf.params(), kf, dyf, {}, {}, dxf, dh0f, {}, Lf.grads());
  auto cmp = [](const Tensor<float>& f, const Tensor<double>& d, const char* what) {
    double m = 0, s = 1e-30;
    for (Index i = 0; i < d.numel(); ++i)
      m = std::max(m, std::fabs(f[i] - d[i])), s = std::max(s, std::fabs(d[i]));
    EXPECT_LT(m / s, 2e-5) << what;
  };
  cmp(yf, yd, "y"), cmp(dxf, dxd, "dx"), cmp(dh0f, dh0d, "dh0");
  cmp(Lf.dw_hh, Ld.dw_hh, "dw_hh"), cmp(Lf.dw_ih, Ld.dw_ih, "dw_ih"), cmp(Lf.db_ih, Ld.db_ih, "db");
  }
}

// The packed AVX-512 recurrent product (used when the CPU has AVX-512) against the AVX2 /
// Eigen reference product on the same data: bitwise where every column runs through the
// reference's vector kernel (N a multiple of 8: both sum k in order with one FMA per term),
// else within float rounding; both transposition modes of rec_pack, beta 0 and 1, row counts
// around the 8-row register block.
TEST(Lstm, PackedRecurrentProductMatchesReference) {
  Rng rng(31);
  for (Index N : {48, 96, 160, 100, 7})
    for (Index K : {1, 37, 300})
      for (Index M : {1, 3, 8, 9, 17})
        for (bool trans : {false, true})
          for (float beta : {0.f, 1.f}) {
            Tensor<float> A{M, K}, B{K, N}, Bt{N, K}, C0{M, N};
            fill(A, rng), fill(B, rng), fill(C0, rng);
            for (Index k = 0; k < K; ++k)
              for (Index n = 0; n < N; ++n) Bt[n * K + k] = B[k * N + n];
            Tensor<float> packed{kernels::rec_pack_floats(K, N)};
            if (trans) kernels::rec_pack(Bt.data(), K, true, K, N, packed.data());
            else kernels::rec_pack(B.data(), N, false, K, N, packed.data());
            Tensor<float> want = C0, got = C0;
            kernels::rec_gemm_f32(M, N, K, A.data(), K, B.data(), N, beta, want.data(), N);
            kernels::rec_gemm_packed(M, N, K, A.data(), K, packed.data(), beta, got.data(), N);
            for (Index i = 0; i < M * N; ++i) {
              if (N % 8 == 0 && kernels::rec_packed_supported())
                ASSERT_EQ(got[i], want[i]) << "M " << M << " N " << N << " K " << K << " at " << i;
              else
                ASSERT_NEAR(got[i], want[i], 1e-5 * (1 + K)) << "M " << M << " N " << N << " K " << K;
            }
            if (beta == 0.f) continue;
            // Sums started from a bias row (the input projection's): the bits of bias rows
            // then beta 1; and C's old contents are not read.
            Tensor<float> bias{N}, rows{M, N}, from_bias{M, N};
            fill(bias, rng);
            for (Index i = 0; i < M; ++i)
              for (Index n = 0; n < N; ++n) rows[i * N + n] = bias[n], from_bias[i * N + n] = NAN;
            kernels::rec_gemm_packed(M, N, K, A.data(), K, packed.data(), 1.f, rows.data(), N);
            kernels::rec_gemm_packed_bias(M, N, K, A.data(), K, packed.data(), bias.data(),
                                          from_bias.data(), N);
            for (Index i = 0; i < M * N; ++i)
              ASSERT_EQ(from_bias[i], rows[i]) << "M " << M << " N " << N << " K " << K << " at " << i;
          }
}

// Batches of 2..32 rows (float, AVX-512, several threads) share each step among the threads by
// hidden units (nn/lstm.cpp, forward_unit_sliced / backward_unit_sliced) instead of splitting
// their rows. With 2 and 3 threads they must give the bits of the one-thread row loop for
// everything (outputs, states, all gradients). H = 200 gives uneven slices (80, 64, 56: a
// masked panel tail); bs 2, 6, 16 and 32 (a row block of 8 and its remainders); sl 9, so that
// bs 32 is 288 rows, more than one 256-row block of the packed input projection. Without
// AVX-512 (the avx2.* registration) only the row path runs, and with one row per thread it is
// not bitwise thread-invariant (ThreadCountInvariant), so only the one-thread runs compare.
TEST(Lstm, UnitSlicedSmallBatchIsTheRowPathBitwise) {
  const Index in = 24, H = 200, sl = 9;
  for (Index bs : {2, 6, 16, 32}) {
    Rng rng(41 + bs);
    Layer<float> L(in, H);
    L.randomize(rng, 0.15);
    Tensor<float> x{bs, sl, in}, dy{bs, sl, H}, h0{bs, H}, c0{bs, H}, dhn{bs, H}, dcn{bs, H};
    fill(x, rng), fill(dy, rng), fill(h0, rng, 0.5), fill(c0, rng, 0.5), fill(dhn, rng),
        fill(dcn, rng);
    struct Out {
      Tensor<float> y, hn, cn, dx, dh0, dc0, dw_hh, dw_ih, db;
    };
    auto run = [&](Index max_rows, int threads) {
      const Index saved_rows = lstm_unit_slice_max_rows();
      const int saved = omp_get_max_threads();
      set_lstm_unit_slice_max_rows(max_rows);
      omp_set_num_threads(threads);
      Layer<float> L2 = L;
      Out o{Tensor<float>{bs, sl, H}, Tensor<float>{bs, H}, Tensor<float>{bs, H},
            Tensor<float>{bs, sl, in}, Tensor<float>{bs, H}, Tensor<float>{bs, H}, {}, {}, {}};
      LstmCache<float> k;
      lstm_forward<float>(L2.params(), x, h0, c0, o.y, o.hn, o.cn, k);
      lstm_backward<float>(L2.params(), k, dy, dhn, dcn, o.dx, o.dh0, o.dc0, L2.grads());
      o.dw_hh = L2.dw_hh, o.dw_ih = L2.dw_ih, o.db = L2.db_ih;
      omp_set_num_threads(saved);
      set_lstm_unit_slice_max_rows(saved_rows);
      return o;
    };
    const bool sliced_here = kernels::rec_packed_supported();
    const Out rows1 = run(0, 1), sliced1 = run(32, 1), sliced2 = run(32, 2), sliced3 = run(32, 3);
    for (Tensor<float> Out::*f : {&Out::y, &Out::hn, &Out::cn, &Out::dx, &Out::dh0, &Out::dc0,
                                   &Out::dw_hh, &Out::dw_ih, &Out::db})
      for (Index i = 0; i < (rows1.*f).numel(); ++i) {
        ASSERT_EQ((sliced1.*f)[i], (rows1.*f)[i]) << "bs " << bs << " 1 thread at " << i;
        if (!sliced_here) continue;
        ASSERT_EQ((sliced2.*f)[i], (rows1.*f)[i]) << "bs " << bs << " 2 threads at " << i;
        ASSERT_EQ((sliced3.*f)[i], (rows1.*f)[i]) << "bs " << bs << " 3 threads at " << i;
      }
  }
}

// lstm_infer on the unit slices (2..32 rows, 2 or 3 threads) against its one-thread row loop:
// the same bits for y, h and c, with and without per-row lengths (padded batches: rows stop at
// their length, a row of length 0 keeps its state).
TEST(Lstm, UnitSlicedInferIsTheRowPathBitwise) {
  const Index in = 24, H = 200, sl = 7;
  for (Index bs : {2, 5, 16, 32})
    for (bool padded : {false, true}) {
      Rng rng(7 + bs);
      Layer<float> L(in, H);
      L.randomize(rng, 0.15);
      Tensor<float> x{bs, sl, in}, h0{bs, H}, c0{bs, H};
      fill(x, rng), fill(h0, rng, 0.5), fill(c0, rng, 0.5);
      std::vector<Index> len(bs);
      for (Index b = 0; b < bs; ++b) len[b] = std::max<Index>(0, sl - b);  // non-increasing, ends at 0 for bs > 7
      auto run = [&](Index max_rows, int threads, Tensor<float>& y, Tensor<float>& h, Tensor<float>& c) {
        const Index saved_rows = lstm_unit_slice_max_rows();
        const int saved = omp_get_max_threads();
        set_lstm_unit_slice_max_rows(max_rows);
        omp_set_num_threads(threads);
        y = Tensor<float>{bs, sl, H}, h = h0, c = c0;
        Tensor<float> scratch;
        lstm_infer<float>(L.params(), x, h, c, y, scratch, padded ? len.data() : nullptr);
        omp_set_num_threads(saved);
        set_lstm_unit_slice_max_rows(saved_rows);
      };
      if (!kernels::rec_packed_supported()) GTEST_SKIP() << "no AVX-512: only the row loop runs";
      Tensor<float> yr, hr, cr, y2, h2, c2, y3, h3, c3;
      run(0, 1, yr, hr, cr);
      run(32, 2, y2, h2, c2);
      run(32, 3, y3, h3, c3);
      for (auto [a, b, what] : {std::tuple{&y2, &yr, "y"}, {&h2, &hr, "h"}, {&c2, &cr, "c"},
                                {&y3, &yr, "y"}, {&h3, &hr, "h"}, {&c3, &cr, "c"}})
        for (Index i = 0; i < a->numel(); ++i)
          ASSERT_EQ((*a)[i], (*b)[i]) << what << " bs " << bs << " padded " << padded << " at " << i;
    }
}
