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
      LstmParams<float> ref{w_ih.view(), w_deq.view(), b_ih.view(), b_hh.view()};
      LstmParams<float> fast{w_ih.view(), zero_hh.view(), b_ih.view(), b_hh.view()};
      fast.w_hh_i8 = &q;
      Tensor<float> h1({bs, H}), c1({bs, H}), h2({bs, H}), c2({bs, H}), y1({bs, sl, H}),
          y2({bs, sl, H}), s1, s2;
      lstm_infer<float>(ref, x.view(), h1.view(), c1.view(), y1.view(), s1);
      lstm_infer<float>(fast, x.view(), h2.view(), c2.view(), y2.view(), s2);
      for (Index i = 0; i < y1.numel(); ++i)
        ASSERT_NEAR(y1[i], y2[i], 5e-6) << "H " << H << " bs " << bs << " i " << i;
      for (Index i = 0; i < bs * H; ++i) ASSERT_NEAR(c1[i], c2[i], 5e-6);

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
