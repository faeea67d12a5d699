// ctest-labels: unit
// The thread count never changes a result's bits: the GEMM that the LSTM splits over threads
// (kernels::gemm_parallel) and a whole prediction of the embedded model (that GEMM and the
// batch-1 recurrent step, split over the hidden units), on the AVX-512 kernels where the CPU has
// them; CMakeLists.txt registers this program a second time with INSPIRE_NO_AVX512=1 (tests
// "avx2.*"), the AVX2 kernels. With a GEMM split that depended on the thread count, Eigen's
// AVX-512 kernel summed some elements in another order and a paper's scores differed in the last
// bits between --threads 1 and 2 (both tests failed on that split).
#include <gtest/gtest.h>
#include <omp.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "nn/gemm_kernels.h"
#include "ulmfit/classifier.h"

namespace {

struct Shape {
  bool ta, tb;
  nn::Index M, N, K;
};

TEST(GemmThreads, AnyThreadCountGivesTheBitsOfOneThread) {
  const int saved = omp_get_max_threads();
  // The LSTM's products at the small (256 hidden) and original (1152 hidden) sizes: the window's
  // input projection (batch-1 serving and batch 8 × 70 training), the weight gradients and dX.
  const Shape shapes[] = {{false, true, 70, 1024, 64},    {false, true, 250, 4608, 400},
                          {false, true, 560, 4608, 1152}, {false, true, 35, 1600, 256},
                          {true, false, 1024, 256, 560},  {true, false, 4608, 400, 250},
                          {false, false, 250, 400, 4608}, {false, false, 1100, 400, 2000},
                          {true, true, 300, 200, 100}};
  std::mt19937 gen(7);
  std::normal_distribution<float> dist;
  for (const Shape& s : shapes) {
    const nn::Index lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
    std::vector<float> A((std::size_t)s.M * s.K), B((std::size_t)s.K * s.N), C0((std::size_t)s.M * s.N);
    for (float& x : A) x = dist(gen);
    for (float& x : B) x = dist(gen);
    for (float& x : C0) x = dist(gen);
    for (float beta : {0.f, 1.f}) {
      std::vector<float> want;
      for (int threads : {1, 2, 3, 4}) {
        omp_set_num_threads(threads);
        std::vector<float> C = C0;
        nn::kernels::gemm_parallel<float>(s.ta, s.tb, s.M, s.N, s.K, 1.f, A.data(), lda, B.data(),
                                          ldb, beta, C.data(), s.N);
        if (threads == 1) {
          want = C;
          continue;
        }
        std::size_t differ = 0, first = 0;
        for (std::size_t i = 0; i < C.size(); ++i)
          if (std::memcmp(&C[i], &want[i], sizeof(float)) != 0 && differ++ == 0) first = i;
        EXPECT_EQ(differ, 0u) << "ta " << s.ta << " tb " << s.tb << " M " << s.M << " N " << s.N
                              << " K " << s.K << " beta " << beta << ", " << threads
                              << " threads: first difference at row " << first / s.N << " col "
                              << first % s.N;
      }
    }
  }
  omp_set_num_threads(saved);
}

// The embedded default model's probabilities for 40 token sequences of 20 to 600 tokens: the
// same bits with 1, 2 and 3 threads. (Before the fix, about one real abstract in twelve moved.)
TEST(GemmThreads, PredictionsAreBitwiseTheSameWithAnyThreadCount) {
  const int saved = omp_get_max_threads();
  const auto clf = ulmfit::Classifier::load_or_default("");
  std::mt19937 gen(11);
  std::uniform_int_distribution<std::int32_t> id(2, (std::int32_t)clf.vocab_size() - 1);
  std::uniform_int_distribution<int> len(20, 600);
  for (int doc = 0; doc < 40; ++doc) {
    std::vector<std::int32_t> ids(len(gen));
    for (auto& t : ids) t = id(gen);
    std::array<float, 3> want{};
    for (int threads : {1, 2, 3}) {
      omp_set_num_threads(threads);
      const std::array<float, 3> p = clf.probabilities(ids);
      if (threads == 1) {
        want = p;
        continue;
      }
      EXPECT_EQ(std::memcmp(p.data(), want.data(), sizeof p), 0)
          << "document " << doc << " (" << ids.size() << " tokens), " << threads
          << " threads: " << p[0] << " " << p[1] << " " << p[2] << " against " << want[0] << " "
          << want[1] << " " << want[2];
    }
  }
  omp_set_num_threads(saved);
}

}  // namespace

// The float32 batch-1 recurrent GEMV (kernels::f32_gemv_acc, AVX-512 with prefetching, or the
// plain fused loop): each row within rounding of a double sum, only rows [r0, r1) touched, and a
// row's bits the same whatever range (so whatever slice of the hidden units) it is computed in.
TEST(GemmThreads, FloatGemvIsExactEnoughAndIndependentOfTheRowRange) {
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  for (nn::Index K : {nn::Index(1), nn::Index(15), nn::Index(16), nn::Index(33), nn::Index(400),
                      nn::Index(1150)}) {
    const nn::Index R = 37;
    std::vector<float> W(R * K), h(K);
    for (auto& x : W) x = u(gen);
    for (auto& x : h) x = u(gen);
    std::vector<float> whole(R, 0.5f);
    nn::kernels::f32_gemv_acc(W.data(), K, 0, R, h.data(), whole.data());
    for (nn::Index r = 0; r < R; ++r) {
      double d = 0.5, mag = 0.5;
      for (nn::Index k = 0; k < K; ++k) {
        d += (double)W[r * K + k] * h[k];
        mag += std::fabs((double)W[r * K + k] * h[k]);
      }
      ASSERT_NEAR(whole[r], d, 1e-6 * mag) << "K " << K << " row " << r;
    }
    for (auto [r0, r1] : {std::pair<nn::Index, nn::Index>{3, 18}, {5, 6}, {9, 37}, {0, 8}}) {
      std::vector<float> part(R, 0.5f);
      nn::kernels::f32_gemv_acc(W.data(), K, r0, r1, h.data(), part.data());
      for (nn::Index r = 0; r < R; ++r) {
        if (r < r0 || r >= r1)
          ASSERT_EQ(part[r], 0.5f) << "row " << r << " outside [" << r0 << ", " << r1 << ")";
        else
          ASSERT_EQ(part[r], whole[r]) << "K " << K << " row " << r << " in [" << r0 << ", " << r1 << ")";
      }
    }
  }
}
