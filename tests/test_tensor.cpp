// ctest-labels: unit
#include <gtest/gtest.h>

#include "nn/backend.h"
#include "nn/rng.h"
#include "nn/tensor.h"

using namespace nn;

TEST(Tensor, ShapeAndViews) {
  Tensor<float> t{2, 3, 4};
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.data()) % kAlign, 0u);
  for (Index i = 0; i < 24; ++i) EXPECT_EQ(t[i], 0.f);
  View<float> v = t;
  v[5] = 1.5f;
  EXPECT_EQ(v.row(0).shape, (Shape{3, 4}));
  EXPECT_EQ(v.row(0)[5], 1.5f);
  EXPECT_EQ(v.row(1).data, t.data() + 12);
  EXPECT_THROW(v.reshape({5, 5}), std::invalid_argument);
  EXPECT_EQ(v.reshape({6, 4}).dim(0), 6);
  EXPECT_EQ(v.slice(1, 2).numel(), 12);
  Tensor<float> copy = t;
  EXPECT_EQ(copy[5], 1.5f);
  EXPECT_NE(copy.data(), t.data());
}

TEST(Tensor, ArenaAlignmentAndBounds) {
  Arena<float> a(100);
  auto x = a.take({3});
  auto y = a.take({5});
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(x.data) % kAlign, 0u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(y.data) % kAlign, 0u);
  EXPECT_THROW(a.take({100}), std::length_error);
  a.reset();
  EXPECT_EQ(a.used(), 0);
}

TEST(Tensor, ArenaViewsAreZeroEvenWhenReusedAfterReset) {
  Arena<float> a(300);
  auto x = a.take({50});
  for (auto& v : x) EXPECT_EQ(v, 0.f);  // fresh calloc'd memory
  for (auto& v : x) v = 7.f;
  auto y = a.take({40});
  for (auto& v : y) v = 3.f;
  a.reset();
  auto z = a.take({120});  // covers both written views and fresh memory
  for (Index i = 0; i < z.numel(); ++i) ASSERT_EQ(z[i], 0.f) << "element " << i;
  for (auto& v : z) v = 1.f;
  a.reset();
  auto w = a.take({20});
  for (auto& v : w) EXPECT_EQ(v, 0.f);
}

TEST(Backend, GemmMatchesNaiveAllTransposes) {
  Rng rng(7);
  const Index M = 5, N = 7, K = 3;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      Tensor<float> A(ta ? Shape{K, M} : Shape{M, K}), B(tb ? Shape{N, K} : Shape{K, N});
      Tensor<float> C{M, N};
      for (Index i = 0; i < A.numel(); ++i) A[i] = (float)rng.uniform(-1, 1);
      for (Index i = 0; i < B.numel(); ++i) B[i] = (float)rng.uniform(-1, 1);
      for (Index i = 0; i < C.numel(); ++i) C[i] = (float)rng.uniform(-1, 1);
      Tensor<float> C0 = C;
      matmul<float>(A, ta, B, tb, C, 0.5f, 2.0f);
      for (Index m = 0; m < M; ++m)
        for (Index n = 0; n < N; ++n) {
          double s = 0;
          for (Index k = 0; k < K; ++k)
            s += (double)(ta ? A[k * M + m] : A[m * K + k]) * (tb ? B[n * K + k] : B[k * N + n]);
          EXPECT_NEAR(C[m * N + n], 0.5 * s + 2.0 * C0[m * N + n], 1e-5) << ta << tb;
        }
    }
  Tensor<float> bad{4, 4};
  Tensor<float> A{M, K};
  EXPECT_THROW(matmul<float>(A, false, A, false, bad), std::invalid_argument);
}

TEST(Backend, SelectionIsCheckedAndNamed) {
  EXPECT_STREQ(cpu_backend().name(), "cpu");
  EXPECT_THROW(get_backend("tpu"), std::runtime_error);
  EXPECT_EQ(&get_backend("cpu"), &cpu_backend());
  EXPECT_STREQ(get_backend("cpu").name(), "cpu");
}

TEST(Rng, DeterministicAndResumable) {
  Rng a(1), b(1);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a.next_u64(), b.next_u64());
  auto st = a.state();
  double u1 = a.uniform();
  a.set_state(st);
  EXPECT_EQ(a.uniform(), u1);
  for (int i = 0; i < 1000; ++i) {
    EXPECT_LT(a.below(7), 7u);
    double u = a.uniform();
    EXPECT_GE(u, 0.0);
    EXPECT_LT(u, 1.0);
  }
}
