// ctest-labels: unit
// tests/test_half.cpp — half-precision recurrent weights for serving (nn::HalfMatrix, the
// --fp16 / LoadOptions::half_recurrent path): the conversions, and the batch-1 LSTM GEMV that
// reads them, against the float32 LSTM run on the same (rounded) weights.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "nn/gemm_kernels.h"
#include "nn/lstm.h"
#include "nn/rng.h"

using namespace nn;

TEST(Half, KnownValues) {
  EXPECT_EQ(float_to_half(0.0f), 0x0000);
  EXPECT_EQ(float_to_half(-0.0f), 0x8000);
  EXPECT_EQ(float_to_half(1.0f), 0x3c00);
  EXPECT_EQ(float_to_half(-2.0f), 0xc000);
  EXPECT_EQ(float_to_half(65504.0f), 0x7bff);                    // largest finite
  EXPECT_EQ(float_to_half(65519.0f), 0x7bff);                    // rounds down to it
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);                    // rounds up to inf
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -24)), 0x0001);      // smallest subnormal
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -26)), 0x0000);      // below half of it
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -14)), 0x0400);      // smallest normal
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie -> even (down)
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie -> even (up)
  EXPECT_EQ(float_to_half(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_TRUE(std::isnan(half_to_float(float_to_half(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(half_to_float(0x3555), 0.333251953125f);
}

TEST(Half, EveryHalfRoundTrips) {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float f = half_to_float(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_half(f), h) << "half 0x" << std::hex << h;
  }
}

#if defined(__F16C__)
TEST(Half, MatchesTheHardwareConversion) {
  Rng rng(3);
  for (int i = 0; i < 200000; ++i) {
    // magnitudes from 2^-30 to 2^17: subnormals, normals and overflow
    float f = static_cast<float>(rng.uniform(-1, 1) * std::ldexp(1.0, (int)rng.below(48) - 30));
    const auto hw = static_cast<std::uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
    ASSERT_EQ(float_to_half(f), hw) << "f = " << f;
    ASSERT_EQ(half_to_float(hw), _cvtsh_ss(hw));
  }
}
#endif

// The half-precision batch-1 path equals the float32 path run on the rounded weights (only the
// summation order differs), for sizes with and without a multiple-of-8 tail.
TEST(Half, LstmInferMatchesFloatOnRoundedWeights) {
  for (Index H : {Index(16), Index(13), Index(40)}) {
    const Index in = 7, sl = 30, G = 4 * H;
    Rng rng(11 + H);
    Tensor<float> w_ih({G, in}), w_hh({G, H}), b_ih({G}), b_hh({G}), x({1, sl, in});
    const float s = 1.0f / std::sqrt((float)H);
    for (auto* t : {&w_ih, &w_hh, &b_ih, &b_hh})
      for (Index i = 0; i < t->numel(); ++i) (*t)[i] = (float)rng.uniform(-s, s);
    for (Index i = 0; i < x.numel(); ++i) x[i] = (float)rng.uniform(-1, 1);
    HalfMatrix half = HalfMatrix::from(w_hh.view());
    Tensor<float> w_round({G, H});
    for (Index r = 0; r < G; ++r)
      for (Index c = 0; c < H; ++c) w_round[r * H + c] = half.at(r, c);
    HalfMatrix panels = half;  // the serving layout (what --fp16 loads)
    panels.to_panels();

    LstmParams<float> ref{w_ih.view(), w_round.view(), b_ih.view(), b_hh.view()};
    Tensor<float> h1({1, H}), c1({1, H}), y1({1, sl, H}), s1;
    lstm_infer<float>(ref, x.view(), h1.view(), c1.view(), y1.view(), s1);
    Tensor<float> h2({1, H}), c2({1, H}), y2({1, sl, H});
    for (const HalfMatrix* m : {&half, &panels}) {
      LstmParams<float> fast{w_ih.view(), w_hh.view(), b_ih.view(), b_hh.view()};
      fast.w_hh_half = m;
      Tensor<float> s2;
      h2.view().zero();
      c2.view().zero();
      lstm_infer<float>(fast, x.view(), h2.view(), c2.view(), y2.view(), s2);
      for (Index i = 0; i < y1.numel(); ++i)
        ASSERT_NEAR(y1[i], y2[i], 2e-6) << "H " << H << " panels " << m->panels << " i " << i;
      for (Index i = 0; i < H; ++i) ASSERT_NEAR(c1[i], c2[i], 2e-6);
    }

    // ...and differs from the unrounded float32 run by about the rounding (so it is used).
    Tensor<float> h3({1, H}), c3({1, H}), y3({1, sl, H}), s3;
    LstmParams<float> exact{w_ih.view(), w_hh.view(), b_ih.view(), b_hh.view()};
    lstm_infer<float>(exact, x.view(), h3.view(), c3.view(), y3.view(), s3);
    double maxdiff = 0;
    for (Index i = 0; i < y3.numel(); ++i) maxdiff = std::max(maxdiff, (double)std::fabs(y3[i] - y2[i]));
    EXPECT_GT(maxdiff, 0.0);
    EXPECT_LT(maxdiff, 2e-3);
  }
}

// With a batch of several rows the half-precision W_hh is widened once per call; p.w_hh is not
// read at all (here it is left zero).
TEST(Half, BatchedLstmInferReadsOnlyTheHalfWeights) {
  const Index H = 12, in = 5, sl = 9, bs = 3, G = 4 * H;
  Rng rng(5);
  Tensor<float> w_ih({G, in}), w_hh({G, H}), zero_hh({G, H}), b_ih({G}), b_hh({G}), x({bs, sl, in});
  for (auto* t : {&w_ih, &w_hh, &b_ih, &b_hh})
    for (Index i = 0; i < t->numel(); ++i) (*t)[i] = (float)rng.uniform(-0.3, 0.3);
  for (Index i = 0; i < x.numel(); ++i) x[i] = (float)rng.uniform(-1, 1);
  HalfMatrix half = HalfMatrix::from(w_hh.view());
  Tensor<float> w_round({G, H});
  for (Index i = 0; i < w_round.numel(); ++i) w_round[i] = half_to_float(half.data[i]);
  HalfMatrix panels = half;  // the serving layout: the batch path reads it through at()
  panels.to_panels();
  LstmParams<float> ref{w_ih.view(), w_round.view(), b_ih.view(), b_hh.view()};
  Tensor<float> h1({bs, H}), c1({bs, H}), y1({bs, sl, H}), s1;
  lstm_infer<float>(ref, x.view(), h1.view(), c1.view(), y1.view(), s1);
  for (const HalfMatrix* m : {&half, &panels}) {
    LstmParams<float> fast{w_ih.view(), zero_hh.view(), b_ih.view(), b_hh.view()};
    fast.w_hh_half = m;
    Tensor<float> h2({bs, H}), c2({bs, H}), y2({bs, sl, H}), s2;
    lstm_infer<float>(fast, x.view(), h2.view(), c2.view(), y2.view(), s2);
    for (Index i = 0; i < y1.numel(); ++i) ASSERT_NEAR(y1[i], y2[i], 2e-6) << "panels " << m->panels << " " << i;
  }
}

TEST(Half, MismatchedHalfMatrixIsRefused) {
  Tensor<float> w_ih({16, 3}), w_hh({16, 4}), b({16}), x({1, 2, 3}), h({1, 4}), c({1, 4}), y({1, 2, 4}), s;
  Tensor<float> other({8, 4});
  HalfMatrix wrong = HalfMatrix::from(other.view());
  LstmParams<float> p{w_ih.view(), w_hh.view(), b.view(), b.view()};
  p.w_hh_half = &wrong;
  EXPECT_THROW(lstm_infer<float>(p, x.view(), h.view(), c.view(), y.view(), s), std::invalid_argument);
}

// to_panels keeps every value (at() reads either layout), pads the last panel with zeros, and
// is idempotent.
TEST(Half, PanelLayoutKeepsTheValues) {
  for (Index R : {Index(1), Index(16), Index(23), Index(48)}) {
    const Index K = 5;
    Tensor<float> m({R, K});
    Rng rng(R);
    for (Index i = 0; i < m.numel(); ++i) m[i] = (float)rng.uniform(-2, 2);
    HalfMatrix a = HalfMatrix::from(m.view()), b = a;
    b.to_panels();
    ASSERT_TRUE(b.panels);
    ASSERT_EQ((Index)b.data.size(), (R + 15) / 16 * 16 * K);
    for (Index r = 0; r < R; ++r)
      for (Index k = 0; k < K; ++k) ASSERT_EQ(a.at(r, k), b.at(r, k)) << r << "," << k;
    for (Index r = R; r < (R + 15) / 16 * 16; ++r)
      for (Index k = 0; k < K; ++k)
        ASSERT_EQ(b.data[(r / 16) * 16 * K + k * 16 + r % 16], 0) << "padding row " << r;
    const auto before = b.data;
    b.to_panels();
    EXPECT_EQ(b.data, before);
  }
}

// The GEMV on panels (AVX-512, or AVX2/F16C under INSPIRE_NO_AVX512: the avx2.* run) gives the
// bits of its reference (even and odd k summed apart, fused, then added) for any row range, so
// a row's value never depends on how the rows are shared among threads; it touches only rows
// [r0, r1) and accumulates. The row-major GEMV is within rounding of the same sums.
TEST(Half, GemvMatchesTheReference) {
  for (Index K : {Index(1), Index(2), Index(7), Index(16), Index(45), Index(256), Index(1150)}) {
    const Index R = 150;
    Tensor<float> m({R, K});
    Rng rng(3 + K);
    for (Index i = 0; i < m.numel(); ++i) m[i] = (float)rng.uniform(-0.5, 0.5);
    HalfMatrix rows = HalfMatrix::from(m.view()), panels = rows;
    panels.to_panels();
    std::vector<float> h(K);
    for (auto& x : h) x = (float)rng.uniform(-1, 1);
    for (auto [r0, r1] : {std::pair<Index, Index>{0, R}, {3, 18}, {16, 144}, {5, 6}, {130, 400}}) {
      std::vector<float> zp(R, 0.25f), zpr(R, 0.25f), zr(R, 0.25f), zrr(R, 0.25f);
      kernels::half_gemv_acc(panels, r0, r1, h.data(), zp.data());
      kernels::half_gemv_acc_ref(panels, r0, r1, h.data(), zpr.data());
      kernels::half_gemv_acc(rows, r0, r1, h.data(), zr.data());
      kernels::half_gemv_acc_ref(rows, r0, r1, h.data(), zrr.data());
      for (Index r = 0; r < R; ++r) {
        if (r < r0 || r >= std::min(r1, R)) {
          ASSERT_EQ(zp[r], 0.25f) << "row " << r << " outside [" << r0 << ", " << r1 << ")";
          ASSERT_EQ(zr[r], 0.25f) << "row " << r << " outside [" << r0 << ", " << r1 << ")";
          continue;
        }
        ASSERT_EQ(zp[r], zpr[r]) << "K " << K << " row " << r << " range " << r0 << ".." << r1;
        double d = 0, mag = 0;
        for (Index k = 0; k < K; ++k) {
          d += (double)rows.at(r, k) * h[k];
          mag += std::fabs((double)rows.at(r, k) * h[k]);
        }
        const double tol = 1e-6 * (mag + 1);
        ASSERT_NEAR(zp[r], 0.25 + d, tol) << "K " << K << " row " << r;
        ASSERT_NEAR(zr[r], 0.25 + d, tol) << "K " << K << " row " << r;
        ASSERT_NEAR(zrr[r], 0.25 + d, tol) << "K " << K << " row " << r;
      }
    }
  }
}
