// nn/gemm_avx512.cpp — Eigen's blocked float GEMM compiled for AVX-512 (run-time dispatch).
//
// This file alone is compiled with -mavx512f/vl/dq/bw (CMakeLists.txt), whatever the build's
// -march, and nn/backend.cpp calls it only on a CPU that has those extensions
// (kernels::avx512_usable()); the one binary keeps running on AVX2-only CPUs.
// Eigen is included here under another namespace name (inspire_eigen_avx512) so that none of
// its templates, instantiated with AVX-512 code, can be merged with the AVX2 instantiations
// of the rest of the program. Nothing else from the project is included (nn/tensor.h pulls in
// Eigen under its own name).
#include "nn/gemm_avx512.h"

#include <cstdlib>
#include <new>

#if defined(__AVX512F__)
#define Eigen inspire_eigen_avx512
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 on Eigen's AVX-512 shuffles
#include <Eigen/Core>
#pragma GCC diagnostic pop

namespace nn::kernels {
namespace {

using Index = Eigen::Index;

struct Blocking512
    : Eigen::internal::gemm_blocking_space<Eigen::RowMajor, float, float, Eigen::Dynamic,
                                           Eigen::Dynamic, Eigen::Dynamic, 1, false> {
  using Base = Eigen::internal::gemm_blocking_space<Eigen::RowMajor, float, float, Eigen::Dynamic,
                                                    Eigen::Dynamic, Eigen::Dynamic, 1, false>;
  Blocking512(Index rows, Index cols, Index depth) : Base(rows, cols, depth, 1, true) {
    const std::size_t sa = sizeof(float) * (std::size_t)this->m_mc * (std::size_t)this->m_kc;
    const std::size_t sb = sizeof(float) * (std::size_t)this->m_kc * (std::size_t)this->m_nc;
    this->m_blockA = static_cast<float*>(gemm_pack_buffer(0, sa));  // nn/backend.cpp
    this->m_blockB = static_cast<float*>(gemm_pack_buffer(1, sb));
  }
  ~Blocking512() { this->m_blockA = nullptr, this->m_blockB = nullptr; }
};

template <int LhsOrder, int RhsOrder>
void run(Index M, Index N, Index K, float alpha, const float* A, Index lda, const float* B,
         Index ldb, float* C, Index ldc) {
  Blocking512 blocking(M, N, K);
  Eigen::internal::general_matrix_matrix_product<Index, float, LhsOrder, false, float, RhsOrder,
                                                 false, Eigen::RowMajor, 1>::run(M, N, K, A, lda,
                                                                                 B, ldb, C, 1,
                                                                                 ldc, alpha,
                                                                                 blocking,
                                                                                 nullptr);
}

}  // namespace

bool sgemm_acc_avx512_built() { return true; }

void sgemm_acc_avx512(bool ta, bool tb, long M, long N, long K, float alpha, const float* A,
                      long lda, const float* B, long ldb, float* C, long ldc) {
  constexpr int R = Eigen::RowMajor, Cm = Eigen::ColMajor;
  if (!ta && !tb) run<R, R>(M, N, K, alpha, A, lda, B, ldb, C, ldc);
  else if (ta && !tb) run<Cm, R>(M, N, K, alpha, A, lda, B, ldb, C, ldc);
  else if (!ta && tb) run<R, Cm>(M, N, K, alpha, A, lda, B, ldb, C, ldc);
  else run<Cm, Cm>(M, N, K, alpha, A, lda, B, ldb, C, ldc);
}

}  // namespace nn::kernels

#else  // not built for AVX-512 (another architecture): never called

namespace nn::kernels {
bool sgemm_acc_avx512_built() { return false; }
void sgemm_acc_avx512(bool, bool, long, long, long, float, const float*, long, const float*, long,
                      float*, long) {
  std::abort();
}
}  // namespace nn::kernels

#endif
