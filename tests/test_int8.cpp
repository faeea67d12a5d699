// ctest-labels: unit
// tests/test_int8.cpp — int8 recurrent weights for serving (nn::Int8Matrix, the --int8 /
// LoadOptions::int8_recurrent path): the quantization, the GEMV against its plain reference and
// a double-precision sum, the batch-1 and batched LSTM against float32 run on the dequantized
// weights, and thread-count independence. Registered twice: the second time (avx2.*) with
// INSPIRE_NO_AVX512=1, so the AVX2 kernel is checked too on an AVX-512 machine.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "nn/gemm_kernels.h"
#include "nn/int8.h"
#include "nn/lstm.h"
#include "nn/rng.h"

using namespace nn;

namespace {

Tensor<float> random_tensor(Shape shape, std::uint64_t seed, float s) {
  Rng rng(seed);
  Tensor<float> m(shape);
  for (Index i = 0; i < m.numel(); ++i) m[i] = (float)rng.uniform(-s, s);
  return m;
}
Tensor<float> random_matrix(Index R, Index C, std::uint64_t seed, float s) {
  return random_tensor({R, C}, seed, s);
}

}  // namespace

TEST(Int8, QuantizationErrorIsAtMostHalfAStep) {
  Tensor<float> m = random_matrix(9, 37, 3, 0.7f);
  for (Index c = 0; c < 37; ++c) m[2 * 37 + c] = 0.0f;  // an all-zero row
  m[5 * 37 + 4] = -3.0f;                                  // a row with one large weight
  Int8Matrix q = Int8Matrix::from(m.view());
  ASSERT_EQ(q.rows, 9);
  ASSERT_EQ(q.cols, 37);
  EXPECT_EQ(q.scale[2], 0.0f);
  EXPECT_FLOAT_EQ(q.scale[5], 3.0f / 127);
  EXPECT_EQ(q.q[5 * 37 + 4], -127);
  for (Index r = 0; r < 9; ++r) {
    float amax = 0;
    for (Index c = 0; c < 37; ++c) amax = std::max(amax, std::fabs(m[r * 37 + c]));
    EXPECT_FLOAT_EQ(q.scale[r], amax / 127);
    for (Index c = 0; c < 37; ++c) {
      ASSERT_LE(std::abs((int)q.q[r * 37 + c]), 127);
      ASSERT_LE(std::fabs(q.at(r, c) - m[r * 37 + c]), q.scale[r] * 0.5f * (1 + 1e-5f) + 1e-12f)
          << r << ", " << c;
    }
  }
}

TEST(Int8, BadMatricesAreRefused) {
  Tensor<float> v({6});
  EXPECT_THROW(Int8Matrix::from(v.view()), std::invalid_argument);
  Tensor<float> m = random_matrix(3, 4, 1, 1);
  m[7] = std::numeric_limits<float>::quiet_NaN();
  try {
    Int8Matrix::from(m.view());
    FAIL() << "a NaN weight should be refused";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("[1, 3]"), std::string::npos) << e.what();
  }
}

// The vector GEMV (AVX-512 or AVX2) equals the plain loop up to summation order, and a double
// sum of scale · q · h; it touches only rows [r0, r1) and accumulates into z.
TEST(Int8, GemvMatchesTheReference) {
  for (Index K : {Index(1), Index(7), Index(16), Index(45), Index(256), Index(1150)}) {
    const Index R = 23;
    Int8Matrix q = Int8Matrix::from(random_matrix(R, K, 10 + K, 0.5f).view());
    Rng rng(K);
    std::vector<float> h(K);
    for (auto& x : h) x = (float)rng.uniform(-1, 1);
    for (auto [r0, r1] : {std::pair<Index, Index>{0, R}, {3, 18}, {5, 6}, {20, 40}}) {
      std::vector<float> z(R, 0.25f), zr(R, 0.25f);
      kernels::int8_gemv_acc(q, r0, r1, h.data(), z.data());
      kernels::int8_gemv_acc_ref(q, r0, r1, h.data(), zr.data());
      for (Index r = 0; r < R; ++r) {
        if (r < r0 || r >= std::min(r1, R)) {
          ASSERT_EQ(z[r], 0.25f) << "row " << r << " outside [" << r0 << ", " << r1 << ")";
          continue;
        }
        double d = 0, mag = 0;
        for (Index k = 0; k < K; ++k) {
          d += (double)q.scale[r] * q.q[r * K + k] * h[k];
          mag += std::fabs((double)q.scale[r] * q.q[r * K + k] * h[k]);
        }
        const double tol = 1e-6 * (mag + 1);
        ASSERT_NEAR(z[r], 0.25 + d, tol) << "K " << K << " row " << r;
        ASSERT_NEAR(zr[r], 0.25 + d, tol) << "K " << K << " row " << r;
      }
    }
  }
}

// to_panels keeps every weight and scale (qat/at read either layout), pads with zeros, is
// idempotent; a matrix in panels cannot be packed for w8a8 nor re-quantized.
TEST(Int8, PanelLayoutKeepsTheValues) {
  for (Index R : {Index(1), Index(16), Index(23), Index(48)}) {
    const Index K = 5;
    Int8Matrix a = Int8Matrix::from(random_matrix(R, K, 40 + R, 1.0f).view()), b = a;
    b.to_panels();
    ASSERT_TRUE(b.panels);
    ASSERT_EQ((Index)b.q.size(), (R + 15) / 16 * 16 * K);
    for (Index r = 0; r < R; ++r)
      for (Index k = 0; k < K; ++k) ASSERT_EQ(a.at(r, k), b.at(r, k)) << r << "," << k;
    for (Index r = R; r < (R + 15) / 16 * 16; ++r)
      for (Index k = 0; k < K; ++k) ASSERT_EQ(b.q[(r / 16) * 16 * K + k * 16 + r % 16], 0);
    const auto before = b.q;
    b.to_panels();
    EXPECT_EQ(b.q, before);
    EXPECT_THROW(Int8Packed::from(b, R), std::logic_error);
  }
}

// The GEMV on panels (AVX-512, or AVX2 under INSPIRE_NO_AVX512: avx2.*) gives the bits of its
// reference for any row range, touches only rows [r0, r1), and is within rounding of the sums.
TEST(Int8, PanelGemvMatchesTheReference) {
  for (Index K : {Index(1), Index(2), Index(7), Index(16), Index(45), Index(256), Index(1150)}) {
    const Index R = 150;
    Int8Matrix q = Int8Matrix::from(random_matrix(R, K, 60 + K, 0.5f).view());
    q.to_panels();
    Rng rng(K);
    std::vector<float> h(K);
    for (auto& x : h) x = (float)rng.uniform(-1, 1);
    for (auto [r0, r1] : {std::pair<Index, Index>{0, R}, {3, 18}, {16, 144}, {5, 6}, {130, 400}}) {
      std::vector<float> z(R, 0.25f), zr(R, 0.25f);
      kernels::int8_gemv_acc(q, r0, r1, h.data(), z.data());
      kernels::int8_gemv_acc_ref(q, r0, r1, h.data(), zr.data());
      for (Index r = 0; r < R; ++r) {
        if (r < r0 || r >= std::min(r1, R)) {
          ASSERT_EQ(z[r], 0.25f) << "row " << r << " outside [" << r0 << ", " << r1 << ")";
          continue;
        }
        ASSERT_EQ(z[r], zr[r]) << "K " << K << " row " << r << " range " << r0 << ".." << r1;
        double d = 0, mag = 0;
        for (Index k = 0; k < K; ++k) {
          d += (double)q.at(r, k) * h[k];
          mag += std::fabs((double)q.at(r, k) * h[k]);
        }
        ASSERT_NEAR(z[r], 0.25 + d, 1e-6 * (mag + 1)) << "K " << K << " row " << r;
      }
    }
  }
}

// lstm_infer with p.w_hh_i8 equals float32 lstm_infer on the dequantized weights, at batch 1
// (the per-step int8 GEMV) and batch 3 (widened once per call; p.w_hh left zero, so unread).
TEST(Int8, LstmInferMatchesFloatOnDequantizedWeights) {
  for (Index H : {Index(13), Index(40), Index(200)}) {
    for (Index bs : {Index(1), Index(3)}) {
      const Index in = 7, sl = 25, G = 4 * H;
      const float s = 1.0f / std::sqrt((float)H);
      Tensor<float> w_ih = random_matrix(G, in, 1 + H, s), w_hh = random_matrix(G, H, 2 + H, s);
      Tensor<float> b_ih = random_tensor({G}, 3 + H, s), b_hh = random_tensor({G}, 4 + H, s);
      Tensor<float> x = random_tensor({bs, sl, in}, 5 + H, 1.0f);
      Int8Matrix q = Int8Matrix::from(w_hh.view());
      Tensor<float> w_deq({G, H}), zero_hh({G, H});
      for (Index r = 0; r < G; ++r)
        for (Index c = 0; c < H; ++c) w_deq[r * H + c] = q.at(r, c);
      Int8Matrix qp = q;  // the serving layout (what --int8 loads)
      qp.to_panels();
      LstmParams<float> ref{w_ih.view(), w_deq.view(), b_ih.view(), b_hh.view()};
      Tensor<float> h1({bs, H}), c1({bs, H}), y1({bs, sl, H}), s1;
      lstm_infer<float>(ref, x.view(), h1.view(), c1.view(), y1.view(), s1);
      Tensor<float> h2({bs, H}), c2({bs, H}), y2({bs, sl, H});
      for (const Int8Matrix* m : {&q, &qp}) {
        LstmParams<float> fast{w_ih.view(), zero_hh.view(), b_ih.view(), b_hh.view()};
        fast.w_hh_i8 = m;
        Tensor<float> s2;
        h2.view().zero();
        c2.view().zero();
        lstm_infer<float>(fast, x.view(), h2.view(), c2.view(), y2.view(), s2);
        for (Index i = 0; i < y1.numel(); ++i)
          ASSERT_NEAR(y1[i], y2[i], 5e-6) << "H " << H << " bs " << bs << " panels " << m->panels << " i " << i;
        for (Index i = 0; i < bs * H; ++i) ASSERT_NEAR(c1[i], c2[i], 5e-6);
      }

      // ...and differs from the unquantized run by about the quantization (so it is used).
      LstmParams<float> exact{w_ih.view(), w_hh.view(), b_ih.view(), b_hh.view()};
      Tensor<float> h3({bs, H}), c3({bs, H}), y3({bs, sl, H}), s3;
      lstm_infer<float>(exact, x.view(), h3.view(), c3.view(), y3.view(), s3);
      double maxdiff = 0;
      for (Index i = 0; i < y3.numel(); ++i)
        maxdiff = std::max(maxdiff, (double)std::fabs(y3[i] - y2[i]));
      EXPECT_GT(maxdiff, 0.0);
      EXPECT_LT(maxdiff, 2e-2);
    }
  }
}

// The batch-1 path shares fixed slices of the hidden units among the threads: 1, 2 and 3
// threads give the same bits.
TEST(Int8, AnyThreadCountGivesTheBitsOfOneThread) {
  const Index H = 320, in = 16, sl = 12, G = 4 * H;
  const float s = 1.0f / std::sqrt((float)H);
  Tensor<float> w_ih = random_matrix(G, in, 7, s), w_hh = random_matrix(G, H, 8, s);
  Tensor<float> b({G}), x = random_tensor({1, sl, in}, 9, 1.0f);
  Int8Matrix q = Int8Matrix::from(w_hh.view());
  LstmParams<float> p{w_ih.view(), w_hh.view(), b.view(), b.view()};
  p.w_hh_i8 = &q;
  const int saved = omp_get_max_threads();
  std::vector<float> first;
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    Tensor<float> h({1, H}), c({1, H}), y({1, sl, H}), scratch;
    lstm_infer<float>(p, x.view(), h.view(), c.view(), y.view(), scratch);
    std::vector<float> got(y.data(), y.data() + y.numel());
    if (first.empty())
      first = got;
    else
      for (std::size_t i = 0; i < got.size(); ++i)
        ASSERT_EQ(got[i], first[i]) << threads << " threads, element " << i;
  }
  omp_set_num_threads(saved);
}

TEST(Int8, MismatchedInt8MatrixIsRefused) {
  Tensor<float> w_ih({16, 3}), w_hh({16, 4}), b({16}), x({1, 2, 3}), h({1, 4}), c({1, 4}),
      y({1, 2, 4}), s;
  Int8Matrix wrong = Int8Matrix::from(random_matrix(8, 4, 1, 1).view());
  LstmParams<float> p{w_ih.view(), w_hh.view(), b.view(), b.view()};
  p.w_hh_i8 = &wrong;
  EXPECT_THROW(lstm_infer<float>(p, x.view(), h.view(), c.view(), y.view(), s),
               std::invalid_argument);
}

// ---- w8a8: int8 weights × uint8 activations (AVX512-VNNI where present; the plain loops
// elsewhere and under INSPIRE_NO_AVX512) ----

// Activation rows to uint8: the vector path gives the plain path's bytes, scales and zero
// points; each element comes back within half a step; zero stays exact.
TEST(Int8W8a8, ActivationQuantizationMatchesTheReference) {
  for (Index K : {Index(1), Index(7), Index(16), Index(33), Index(400), Index(1152)}) {
    const Index M = 5, ldu = (K + 3) / 4 * 4 + 4;
    Tensor<float> a = random_matrix(M, K, 40 + K, 0.9f);
    for (Index k = 0; k < K; ++k) {
      a[1 * K + k] = 0.0f;                          // all zero
      a[2 * K + k] = std::fabs(a[2 * K + k]) + 0.1f;  // all positive
      a[3 * K + k] = -std::fabs(a[3 * K + k]);        // all negative
    }
    std::vector<std::uint8_t> u(M * ldu, 7), ur(M * ldu, 9);
    std::vector<float> s(M), sr(M);
    std::vector<std::int32_t> zp(M), zr(M);
    kernels::quantize_u8_rows(M, K, a.data(), K, u.data(), ldu, s.data(), zp.data());
    kernels::quantize_u8_rows_ref(M, K, a.data(), K, ur.data(), ldu, sr.data(), zr.data());
    ASSERT_EQ(u, ur) << "K " << K;
    ASSERT_EQ(zp, zr);
    for (Index m = 0; m < M; ++m) ASSERT_EQ(s[m], sr[m]);
    EXPECT_EQ(s[1], 0.0f);
    EXPECT_EQ(zp[2], 0);    // lo = 0
    EXPECT_EQ(zp[3], 255);  // hi = 0
    for (Index m = 0; m < M; ++m) {
      for (Index k = 0; k < K; ++k) {
        const float back = s[m] * (float)((int)u[m * ldu + k] - zp[m]);
        ASSERT_LE(std::fabs(back - a[m * K + k]), 0.5f * s[m] * (1 + 1e-4f) + 1e-7f)
            << "K " << K << " row " << m << " col " << k;
      }
      for (Index k = K; k < ldu; ++k) ASSERT_EQ(u[m * ldu + k], 0);
    }
  }
}

// The product: the kernel equals the plain loop bit for bit, both equal a double sum of the
// dequantized terms, and only the asked packed rows' columns of C change.
TEST(Int8W8a8, ProductMatchesTheReference) {
  for (Index H : {Index(13), Index(40), Index(100)}) {
    for (Index K : {Index(5), Index(64), Index(403)}) {
      const Index G = 4 * H;
      Int8Matrix q = Int8Matrix::from(random_matrix(G, K, 50 + H + K, 0.3f).view());
      Int8Packed P = Int8Packed::from(q, H);
      ASSERT_EQ(P.group_padded % 16, 0);
      ASSERT_EQ(P.kp % 4, 0);
      for (Index M : {Index(1), Index(6), Index(7), Index(20)}) {
        Tensor<float> a = random_matrix(M, K, 60 + M, 1.0f);
        std::vector<std::uint8_t> u(M * P.kp);
        std::vector<float> sa(M);
        std::vector<std::int32_t> zp(M);
        kernels::quantize_u8_rows(M, K, a.data(), K, u.data(), P.kp, sa.data(), zp.data());
        for (Index g : {Index(0), Index(3)}) {
          for (auto [j0, j1] : {std::pair<Index, Index>{0, H}, {0, std::min<Index>(H, 16)},
                                {H > 16 ? 16 : 0, H}}) {
            const Index ldc = G + 3;
            std::vector<float> C(M * ldc, 0.5f), Cr(M * ldc, 0.5f);
            const Index n0 = g * P.group_padded + j0, n1 = g * P.group_padded + j1;
            kernels::int8_gemm_u8_acc(M, u.data(), P.kp, sa.data(), zp.data(), P, n0, n1,
                                      C.data() + g * H + j0, ldc);
            kernels::int8_gemm_u8_acc_ref(M, u.data(), P.kp, sa.data(), zp.data(), P, n0, n1,
                                          Cr.data() + g * H + j0, ldc);
            for (Index m = 0; m < M; ++m)
              for (Index col = 0; col < ldc; ++col) {
                const float got = C[m * ldc + col];
                ASSERT_EQ(got, Cr[m * ldc + col]) << "H " << H << " K " << K << " M " << M;
                const Index r = col - g * H;  // row of W (within gate block g)
                if (col >= G || r < j0 || r >= j1) {
                  ASSERT_EQ(got, 0.5f) << "column " << col << " outside the range changed";
                  continue;
                }
                double d = 0;
                for (Index k = 0; k < K; ++k)
                  d += (double)sa[m] * ((int)u[m * P.kp + k] - zp[m]) * q.scale[g * H + r] *
                       q.q[(g * H + r) * K + k];
                ASSERT_NEAR(got, 0.5 + d, 1e-5 * (1 + std::fabs(d))) << "row " << m << " col " << col;
              }
          }
        }
      }
    }
  }
  Int8Matrix q = Int8Matrix::from(random_matrix(8, 4, 1, 1).view());
  EXPECT_THROW(Int8Packed::from(q, 3), std::invalid_argument);
  Int8Packed P = Int8Packed::from(q, 2);
  std::vector<std::uint8_t> u(P.kp);
  float sa = 1, C[8];
  std::int32_t zp = 0;
  EXPECT_THROW(kernels::int8_gemm_u8_acc(1, u.data(), P.kp, &sa, &zp, P, 8, 9, C, 8),
               std::invalid_argument);  // n0 not a multiple of 16
}

namespace {

struct W8a8Lstm {
  Index H, in, G;
  Tensor<float> w_ih, w_hh, b_ih, b_hh;
  Int8Matrix qih, qhh;
  Int8Packed pih, phh;
  W8a8Lstm(Index H_, Index in_, std::uint64_t seed)
      : H(H_), in(in_), G(4 * H_), w_ih(random_matrix(G, in, seed, 1.0f / std::sqrt((float)H))),
        w_hh(random_matrix(G, H, seed + 1, 1.0f / std::sqrt((float)H))),
        b_ih(random_tensor({G}, seed + 2, 0.3f)), b_hh(random_tensor({G}, seed + 3, 0.3f)),
        qih(Int8Matrix::from(w_ih.view())), qhh(Int8Matrix::from(w_hh.view())),
        pih(Int8Packed::from(qih, H)), phh(Int8Packed::from(qhh, H)) {}
  LstmParams<float> params(bool ih, bool hh) const {
    LstmParams<float> p{w_ih.view(), w_hh.view(), b_ih.view(), b_hh.view()};
    if (ih) p.w_ih_w8a8 = &pih;
    if (hh) p.w_hh_w8a8 = &phh;
    return p;
  }
  // The plain spec of one row: quantize, exact integer product, float cell (std:: functions).
  std::vector<float> reference(const float* x, Index sl) const {
    std::vector<float> h(H, 0.0f), c(H, 0.0f), y;
    std::vector<std::uint8_t> u(std::max(pih.kp, phh.kp));
    float s;
    std::int32_t zp;
    auto sig = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
    for (Index t = 0; t < sl; ++t) {
      std::vector<float> z(G);
      for (Index r = 0; r < G; ++r) z[r] = b_ih[r] + b_hh[r];
      kernels::quantize_u8_rows_ref(1, in, x + t * in, in, u.data(), pih.kp, &s, &zp);
      for (Index g = 0; g < 4; ++g)
        kernels::int8_gemm_u8_acc_ref(1, u.data(), pih.kp, &s, &zp, pih, g * pih.group_padded,
                                      g * pih.group_padded + H, z.data() + g * H, G);
      kernels::quantize_u8_rows_ref(1, H, h.data(), H, u.data(), phh.kp, &s, &zp);
      for (Index g = 0; g < 4; ++g)
        kernels::int8_gemm_u8_acc_ref(1, u.data(), phh.kp, &s, &zp, phh, g * phh.group_padded,
                                      g * phh.group_padded + H, z.data() + g * H, G);
      for (Index j = 0; j < H; ++j) {
        const double i = sig(z[j]), f = sig(z[H + j]), gg = std::tanh((double)z[2 * H + j]),
                     o = sig(z[3 * H + j]);
        c[j] = (float)(f * c[j] + i * gg);
        h[j] = (float)(o * std::tanh((double)c[j]));
      }
      y.insert(y.end(), h.begin(), h.end());
    }
    return y;
  }
};

}  // namespace

// lstm_infer in w8a8 (W_ih and W_hh) follows the plain spec above; batch rows with lengths give
// each row's own run (per-row quantization); 1, 2 or 3 threads give the same bits; and the
// result is near the float32 run (the quantization is small) but not equal to it.
TEST(Int8W8a8, LstmInferFollowsTheSpecAndIsPerRow) {
  for (Index H : {Index(13), Index(48), Index(200)}) {
    const Index in = 21, sl = 17, bs = 4;
    W8a8Lstm L(H, in, 70 + H);
    const Index lengths[bs] = {17, 17, 9, 4};
    Tensor<float> x = random_tensor({bs, sl, in}, 80 + H, 1.0f);
    const int saved = omp_get_max_threads();
    std::vector<float> first;
    for (int threads : {1, 2, 3}) {
      omp_set_num_threads(threads);
      Tensor<float> h({bs, H}), c({bs, H}), y({bs, sl, H}), s;
      lstm_infer<float>(L.params(true, true), x.view(), h.view(), c.view(), y.view(), s, lengths);
      std::vector<float> got(y.data(), y.data() + y.numel());
      got.insert(got.end(), h.data(), h.data() + h.numel());
      if (first.empty()) {
        first = got;
        for (Index b = 0; b < bs; ++b) {
          // alone, batch of one
          Tensor<float> h1({1, H}), c1({1, H}), y1({1, lengths[b], H}), s1;
          lstm_infer<float>(L.params(true, true),
                            CView<float>(x.data() + b * sl * in, Shape{1, lengths[b], in}),
                            h1.view(), c1.view(), y1.view(), s1);
          // (the products are per row, bit for bit; the cell's Eigen math may take scalar or
          // vector paths by the row's alignment, and a last-bit difference can move a rounding
          // of the next step's quantization by one step)
          for (Index i = 0; i < lengths[b] * H; ++i)
            ASSERT_NEAR(y1[i], y[b * sl * H + i], 2e-3) << "H " << H << " row " << b << " i " << i;
          for (Index i = 0; i < H; ++i) ASSERT_NEAR(h1[i], h[b * H + i], 2e-3);
          for (Index i = lengths[b] * H; i < sl * H; ++i) ASSERT_EQ(y[b * sl * H + i], 0.0f);
          const std::vector<float> ref = L.reference(x.data() + b * sl * in, lengths[b]);
          for (Index i = 0; i < lengths[b] * H; ++i)
            ASSERT_NEAR(y[b * sl * H + i], ref[i], 2e-3) << "H " << H << " row " << b << " i " << i;
        }
        // the float32 run: close, not equal
        Tensor<float> h3({bs, H}), c3({bs, H}), y3({bs, sl, H}), s3;
        lstm_infer<float>(L.params(false, false), x.view(), h3.view(), c3.view(), y3.view(), s3,
                          lengths);
        double maxdiff = 0;
        for (Index i = 0; i < y3.numel(); ++i)
          maxdiff = std::max(maxdiff, (double)std::fabs(y3[i] - y[i]));
        EXPECT_GT(maxdiff, 0.0);
        EXPECT_LT(maxdiff, 5e-2) << "H " << H;
      } else {
        for (std::size_t i = 0; i < got.size(); ++i)
          ASSERT_EQ(got[i], first[i]) << threads << " threads, element " << i;
      }
    }
    omp_set_num_threads(saved);
    // W_hh alone in w8a8 (the projection in float) runs too, and differs from both-w8a8
    Tensor<float> h({bs, H}), c({bs, H}), y({bs, sl, H}), s;
    lstm_infer<float>(L.params(false, true), x.view(), h.view(), c.view(), y.view(), s, lengths);
    EXPECT_NE(std::vector<float>(y.data(), y.data() + y.numel()),
              std::vector<float>(first.begin(), first.begin() + y.numel()));
  }
}

TEST(Int8W8a8, MismatchedPackingIsRefused) {
  W8a8Lstm L(16, 8, 3);
  Int8Packed wrong = Int8Packed::from(L.qhh, 32);  // groups of 2H
  LstmParams<float> p = L.params(false, false);
  p.w_hh_w8a8 = &wrong;
  Tensor<float> x({1, 2, 8}), h({1, 16}), c({1, 16}), y({1, 2, 16}), s;
  EXPECT_THROW(lstm_infer<float>(p, x.view(), h.view(), c.view(), y.view(), s),
               std::invalid_argument);
}
