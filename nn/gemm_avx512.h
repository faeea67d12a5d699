// nn/gemm_avx512.h — the float GEMM kernel built for AVX-512 (nn/gemm_avx512.cpp). Plain types
// only: that file is compiled with AVX-512 flags and must not share inline code with the rest.
#pragma once

namespace nn::kernels {

// Whether this build contains the AVX-512 kernel (x86-64 builds do).
bool sgemm_acc_avx512_built();
// Row-major C[M, N] += alpha · op(A) · op(B) by Eigen's blocked GEMM compiled for AVX-512.
// Call only when kernels::avx512_usable() (nn/gemm_kernels.h) and M, N > 1, K >= 1.
void sgemm_acc_avx512(bool trans_a, bool trans_b, long M, long N, long K, float alpha,
                      const float* A, long lda, const float* B, long ldb, float* C, long ldc);

}  // namespace nn::kernels
