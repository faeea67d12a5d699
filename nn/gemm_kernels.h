// nn/gemm_kernels.h — the CPU matrix kernels under the CPU backend's LSTM (and other ops):
// GEMM split over an OpenMP team, the recurrent product that reads W_hhᵀ in place (AVX2/FMA
// register-blocked), the half-precision GEMV of batch-1 serving, a blocked transpose.
// Host code only; the CUDA backend has its own (cuBLAS).
#pragma once

#include <omp.h>

#include <algorithm>
#include <type_traits>

#include "nn/backend.h"
#include "nn/half.h"
#include "nn/int8.h"
#include "nn/parallel.h"
#include "nn/tensor.h"

namespace nn::kernels {

// Threads worth using for `rows` independent rows of `work` multiply-adds each.
inline int team_size(Index rows, double work) {
  int nt = omp_get_max_threads();
  if (omp_in_parallel()) return 1;
  if (work < 2e5) return 1;
  return (int)std::max<Index>(1, std::min<Index>(nt, rows));
}

// C[M,N] (+)= op(A) op(B) in slices shared among the threads of one parallel region: FixedSlices
// of the larger of M and N (edges at multiples of 64), one per 512 rows or columns, at most 8. The
// slices depend on the shape alone, never on the thread count, and each is one GEMM call, so the
// result is bitwise the same with any number of threads (tests/test_gemm_threads.cpp): Eigen's
// kernels sum an element in an order that depends on where it sits in the call (AVX-512 rows
// near a row split, the last columns of a call), and a split by thread changed the last bits.
// Each slice packs the whole other operand again; slicing the larger dimension, in slices of
// at least 512, keeps that repeated packing to a few per cent of the slice's multiply-adds.
//
// A product big enough to matter (≥ 2e7 multiply-adds) gets an even number of slices (where the
// dimension has the 64-edges for it): with one slice it would run on one thread, and with an
// odd number two threads would share them unevenly (the LM's first LSTM layer's dX, 560 rows,
// was one slice; its last layer's 1600 columns three).
inline FixedSlices gemm_slices(Index n, double work) {
  FixedSlices s(n, 64, 512, work < 2e5 ? 1 : 8);
  if (work >= 2e7 && s.parts % 2 == 1 && s.parts < s.blocks) s.parts += 1;
  return s;
}

template <typename T>
void gemm_parallel(bool ta, bool tb, Index M, Index N, Index K, T alpha, const T* A, Index lda,
                   const T* B, Index ldb, T beta, T* C, Index ldc) {
  const double work = (double)M * N * K;
  const bool by_rows = M > N;
  const FixedSlices slices = gemm_slices(by_rows ? M : N, work);
  parallel_team(team_size(slices.parts, work), [&](int tid, int nth) {
    Index p0, p1;
    split_range(slices.parts, tid, nth, p0, p1);
    for (Index p = p0; p < p1; ++p) {
      Index i0, i1;
      slices.bounds(p, i0, i1);
      if (i1 <= i0) continue;
      if (by_rows)
        gemm(ta, tb, i1 - i0, N, K, alpha, ta ? A + i0 : A + i0 * lda, lda, B, ldb, beta,
             C + i0 * ldc, ldc);
      else
        gemm(ta, tb, M, i1 - i0, K, alpha, A, lda, tb ? B + i0 * ldb : B + i0, ldb, beta, C + i0,
             ldc);
    }
  });
}

// C[M,N] (+)= A[M,K] · B[K,N], all row-major, B NOT transposed. Used for the per-step products
// h_{t-1}·W_hhᵀ (B = W_hhᵀ, transposed once per window) and dZ_t·W_hh (B = W_hh as stored).
// Eigen's GEMM re-packs its big operand at every call, i.e. the whole W_hh at every time step;
// rec_gemm_f32 reads B in place instead (register-blocked 4 rows × 24 columns, K in L1-sized
// chunks; AVX2/FMA, else the plain GEMM). Checked against the Eigen path (the double path).
void rec_gemm_f32(Index M, Index N, Index K, const float* A, Index lda, const float* B, Index ldb,
                  float beta, float* C, Index ldc);

template <typename T>
inline void recurrent_gemm(Index M, Index N, Index K, const T* A, Index lda, const T* B, Index ldb,
                           T beta, T* C, Index ldc) {
  if constexpr (std::is_same_v<T, float>)
    rec_gemm_f32(M, N, K, A, lda, B, ldb, beta, C, ldc);
  else
    gemm(false, false, M, N, K, T(1), A, lda, B, ldb, beta, C, ldc);
}

// The same product with B packed once into column panels (rec_pack) and read contiguously by an
// AVX-512 kernel (8 rows × 48 columns of C in registers, k in order, one FMA per term: the same
// sums as rec_gemm_f32, bitwise). The kernel is compiled for AVX-512F whatever the build's
// -march and chosen at run time: rec_packed_supported() says whether this CPU has it (and
// INSPIRE_NO_AVX512 is not set); callers use rec_gemm_f32 on an unpacked B otherwise.
// Packed layout: panels of kRecPanel columns (the last one padded to a multiple of 16 with
// zeros); panel p holds rows k = 0..K-1 of its columns contiguously and starts at p·kRecPanel·K.
constexpr Index kRecPanel = 48;
// This CPU has AVX-512 F/VL/DQ/BW and INSPIRE_NO_AVX512 is not set (checked once): the AVX-512
// kernels (this one, nn/gemm_avx512.cpp) may run.
bool avx512_usable();
bool rec_packed_supported();
inline Index rec_pack_floats(Index K, Index N) { return K * ((N + 15) / 16 * 16); }
// out[rec_pack_floats(K, N)] <- B [K, N] (row stride ldb), or Bᵀ when `trans` (B given as its
// transpose, stored [N, K] with row stride ldb).
void rec_pack(const float* B, Index ldb, bool trans, Index K, Index N, float* out);
// C[M, N] = A[M, K] · B (+ C when beta == 1; other betas scale C first), B packed by rec_pack.
void rec_gemm_packed(Index M, Index N, Index K, const float* A, Index lda, const float* Bp,
                     float beta, float* C, Index ldc);
// C[M, N] = bias + A[M, K] · B (bias [N] added to every row, the sums starting from it; the
// bits of filling C's rows with bias and calling rec_gemm_packed with beta 1).
void rec_gemm_packed_bias(Index M, Index N, Index K, const float* A, Index lda, const float* Bp,
                          const float* bias, float* C, Index ldc);

// z[r] += Σ_k W[r, k] · h[k] for the rows r in [r0, r1) of W, in half precision: the batch-1
// recurrent step of the serving path. W in 16-row panels (HalfMatrix::to_panels, what serving
// loads): the panel kernel (AVX-512, else AVX2/F16C with the same bits). Row-major W: four rows
// at a time (AVX2/F16C), else plain. A row's result never depends on how rows are shared among
// threads. half_gemv_acc_ref is the spec the vector paths are tested against (for panels: even and
// odd k summed apart, fused, then added).
void half_gemv_acc(const HalfMatrix& W, Index r0, Index r1, const float* h, float* z);
void half_gemv_acc_ref(const HalfMatrix& W, Index r0, Index r1, const float* h, float* z);

// z[r] += Σ_k W[r, k] · h[k] for the rows r in [r0, r1) of the float row-major W [·, K]: the
// batch-1 recurrent step in float32. AVX-512 where usable (four rows at a time,
// prefetching the next rows: it may prefetch, never read, past row r1), else AVX2 (the same
// shape, 8 lanes), else the plain fused loop f32_gemv_acc_ref (k in order); on each, a row's
// arithmetic does not depend on the range it is asked with.
void f32_gemv_acc(const float* W, Index K, Index r0, Index r1, const float* h, float* z);
void f32_gemv_acc_ref(const float* W, Index K, Index r0, Index r1, const float* h, float* z);

// z[r] += scale[r] · Σ_k q[r, k] · h[k] for the rows r in [r0, r1) of the int8 W (nn/int8.h):
// the batch-1 recurrent step with int8 weights. Each row is summed by one call in a fixed order
// (AVX-512 where usable, else AVX2, else plain), so the result never depends on how rows are
// shared among threads. int8_gemv_acc_ref is the plain loop (k in order), the spec the vector
// paths are tested against.
void int8_gemv_acc(const Int8Matrix& W, Index r0, Index r1, const float* h, float* z);
void int8_gemv_acc_ref(const Int8Matrix& W, Index r0, Index r1, const float* h, float* z);

// ---- w8a8 (nn/int8_gemm.cpp): int8 weights × uint8 activations, for serving ----
// This CPU has AVX512-VNNI (and avx512_usable()) and INSPIRE_NO_VNNI is not set (checked once):
// the w8a8 serving path may run (ulmfit: RecurrentPrecision::w8a8, `--w8a8`).
bool vnni_usable();
// Rows of float activations a [M, K] (row stride lda) to uint8, each row with its own scale and
// zero point, asymmetric over [lo, hi] = [min(0, min a), max(0, max a)]: s = (hi − lo) / 255,
// zp = round(−lo / s), u = clamp(round(a / s) + zp, 0, 255), so a ≈ s · (u − zp) within s / 2.
// An all-zero row gets s = 0, zp = 0, u = 0. u is [M, ldu]; columns K..ldu−1 are set to 0.
// Rounding is to nearest even in both (the vector path equals the plain one bit for bit).
// a must be finite (serving activations are: tanh, sigmoid and embedding rows).
void quantize_u8_rows(Index M, Index K, const float* a, Index lda, std::uint8_t* u, Index ldu,
                      float* scale, std::int32_t* zp);
void quantize_u8_rows_ref(Index M, Index K, const float* a, Index lda, std::uint8_t* u, Index ldu,
                          float* scale, std::int32_t* zp);
// C[m, j] += (sa[m] · sw[n]) · (float)(Σ_k u[m, k] · q[n, k] − zp[m] · wsum[n]) for m < M and
// the packed rows n = n0 + j in [n0, n1) of W (n0 a multiple of 16; std::invalid_argument
// otherwise). u [M, ldu] with ldu ≥ W.kp (from quantize_u8_rows). The integer sum is exact, so the
// AVX512-VNNI kernel (register blocks of up to 8 rows × 48 columns) equals the plain loop
// (int8_gemm_u8_acc_ref) bit for bit; without VNNI int8_gemm_u8_acc runs the plain loop.
void int8_gemm_u8_acc(Index M, const std::uint8_t* u, Index ldu, const float* sa,
                      const std::int32_t* zp, const Int8Packed& W, Index n0, Index n1, float* C,
                      Index ldc);
void int8_gemm_u8_acc_ref(Index M, const std::uint8_t* u, Index ldu, const float* sa,
                          const std::int32_t* zp, const Int8Packed& W, Index n0, Index n1,
                          float* C, Index ldc);

// Wt[H, 4H] = W_hhᵀ (row-major), blocked for cache friendliness.
template <typename T>
void transpose_into(CView<T> W, T* Wt) {
  const Index R = W.dim(0), Cc = W.dim(1);
  constexpr Index bsz = 32;
  for (Index r0 = 0; r0 < R; r0 += bsz)
    for (Index c0 = 0; c0 < Cc; c0 += bsz)
      for (Index r = r0; r < std::min(R, r0 + bsz); ++r)
        for (Index c = c0; c < std::min(Cc, c0 + bsz); ++c) Wt[c * R + r] = W.data[r * Cc + c];
}

}  // namespace nn::kernels
