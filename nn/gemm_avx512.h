// nn/gemm_avx512.h — the float GEMM kernel built for AVX-512 (nn/gemm_avx512.cpp). Plain types
// only: that file is compiled with AVX-512 flags and must not share inline code with the rest.
#pragma once

#include <cstddef>

namespace nn::kernels {

// This thread's packing buffer of Eigen's GEMM (`which`: 0 for A, 1 for B), at least `bytes`
// long and 64-byte aligned, grown to the largest product seen and then reused (Eigen itself
// allocates it at every large product). Defined once, in nn/backend.cpp (baseline ISA), and
// used by both GEMM paths: nn/backend.cpp and the AVX-512 one in nn/gemm_avx512.cpp.
void* gemm_pack_buffer(int which, std::size_t bytes);

// Whether this build contains the AVX-512 kernel (x86-64 builds do).
bool sgemm_acc_avx512_built();
// Row-major C[M, N] += alpha · op(A) · op(B) by Eigen's blocked GEMM compiled for AVX-512.
// Call only when kernels::avx512_usable() (nn/gemm_kernels.h) and M, N > 1, K >= 1.
void sgemm_acc_avx512(bool trans_a, bool trans_b, long M, long N, long K, float alpha,
                      const float* A, long lda, const float* B, long ldb, float* C, long ldc);

}  // namespace nn::kernels
