// nn/gemm_kernels.cpp — see nn/gemm_kernels.h.
#include "nn/gemm_kernels.h"

#include <cmath>

#include <cstdlib>

#if defined(__x86_64__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace nn::kernels {
namespace {
#if defined(__AVX2__) && defined(__FMA__)
template <int MR, int NV>
inline void rec_micro(Index K, const float* A, Index lda, const float* B, Index ldb, float* C,
                      Index ldc, bool zero) {
  __m256 acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v)
      acc[i][v] = zero ? _mm256_setzero_ps() : _mm256_loadu_ps(C + i * ldc + 8 * v);
  for (Index k = 0; k < K; ++k) {
    const float* b = B + k * ldb;
    __m256 bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = _mm256_loadu_ps(b + 8 * v);
    for (int i = 0; i < MR; ++i) {
      __m256 a = _mm256_broadcast_ss(A + i * lda + k);
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(a, bv[v], acc[i][v]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(C + i * ldc + 8 * v, acc[i][v]);
}

template <int NV>
inline void rec_micro_rows(Index mr, Index K, const float* A, Index lda, const float* B, Index ldb,
                           float* C, Index ldc, bool zero) {
  switch (mr) {
    case 4: rec_micro<4, NV>(K, A, lda, B, ldb, C, ldc, zero); break;
    case 3: rec_micro<3, NV>(K, A, lda, B, ldb, C, ldc, zero); break;
    case 2: rec_micro<2, NV>(K, A, lda, B, ldb, C, ldc, zero); break;
    default: rec_micro<1, NV>(K, A, lda, B, ldb, C, ldc, zero); break;
  }
}

inline void rec_gemm_avx2(Index M, Index N, Index K, const float* A, Index lda, const float* B,
                     Index ldb, float beta, float* C, Index ldc) {
  constexpr Index kc = 256;
  const Index N8 = N / 8 * 8;
  for (Index k0 = 0; k0 < K; k0 += kc) {
    const Index kk = std::min(kc, K - k0);
    const bool zero = (k0 == 0 && beta == 0.f);
    for (Index j = 0; j < N8;) {
      const Index nv = std::min<Index>(3, (N8 - j) / 8);
      for (Index i = 0; i < M; i += 4) {
        const Index mr = std::min<Index>(4, M - i);
        const float* a = A + i * lda + k0;
        const float* b = B + k0 * ldb + j;
        float* c = C + i * ldc + j;
        if (nv == 3) rec_micro_rows<3>(mr, kk, a, lda, b, ldb, c, ldc, zero);
        else if (nv == 2) rec_micro_rows<2>(mr, kk, a, lda, b, ldb, c, ldc, zero);
        else rec_micro_rows<1>(mr, kk, a, lda, b, ldb, c, ldc, zero);
      }
      j += 8 * nv;
    }
    // tail columns (N not a multiple of 8)
    for (Index i = 0; i < M; ++i)
      for (Index j = N8; j < N; ++j) {
        float s = zero ? 0.f : C[i * ldc + j];
        for (Index k = k0; k < k0 + kk; ++k) s += A[i * lda + k] * B[k * ldb + j];
        C[i * ldc + j] = s;
      }
  }
}
#endif

#if defined(__x86_64__)
// ---- AVX-512 packed-panel recurrent product (compiled for AVX-512F whatever the build's -march;
// only called after the run-time CPU check in rec_packed_supported) ----
template <int MR, int NV>
__attribute__((target("avx512f"))) void rec_micro512(Index K, const float* A, Index lda,
                                                     const float* Bp, float* C, Index ldc,
                                                     bool zero, __mmask16 last) {
  __m512 acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) {
      const __mmask16 m = v == NV - 1 ? last : (__mmask16)0xFFFF;
      acc[i][v] = zero ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, C + i * ldc + 16 * v);
    }
  for (Index k = 0; k < K; ++k) {
    const float* b = Bp + k * (16 * NV);
    __m512 bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(b + 16 * v);
    for (int i = 0; i < MR; ++i) {
      const __m512 a = _mm512_set1_ps(A[i * lda + k]);
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(a, bv[v], acc[i][v]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) {
      const __mmask16 m = v == NV - 1 ? last : (__mmask16)0xFFFF;
      _mm512_mask_storeu_ps(C + i * ldc + 16 * v, m, acc[i][v]);
    }
}

template <int NV>
__attribute__((target("avx512f"))) void rec_rows512(Index mr, Index K, const float* A, Index lda,
                                                    const float* Bp, float* C, Index ldc,
                                                    bool zero, __mmask16 last) {
  switch (mr) {
    case 8: rec_micro512<8, NV>(K, A, lda, Bp, C, ldc, zero, last); break;
    case 7: rec_micro512<7, NV>(K, A, lda, Bp, C, ldc, zero, last); break;
    case 6: rec_micro512<6, NV>(K, A, lda, Bp, C, ldc, zero, last); break;
    case 5: rec_micro512<5, NV>(K, A, lda, Bp, C, ldc, zero, last); break;
    case 4: rec_micro512<4, NV>(K, A, lda, Bp, C, ldc, zero, last); break;
    case 3: rec_micro512<3, NV>(K, A, lda, Bp, C, ldc, zero, last); break;
    case 2: rec_micro512<2, NV>(K, A, lda, Bp, C, ldc, zero, last); break;
    default: rec_micro512<1, NV>(K, A, lda, Bp, C, ldc, zero, last); break;
  }
}

__attribute__((target("avx512f"))) void rec_gemm_packed512(Index M, Index N, Index K,
                                                           const float* A, Index lda,
                                                           const float* Bp, bool zero, float* C,
                                                           Index ldc) {
  for (Index j = 0; j < N; j += kRecPanel) {
    const Index cols = N - j < kRecPanel ? N - j : kRecPanel;  // real columns of this panel
    const int nv = (int)((cols + 15) / 16);
    const int tail = (int)(cols - 16 * (nv - 1));  // 1..16 columns in the last vector
    const __mmask16 last = (__mmask16)(tail == 16 ? 0xFFFF : (1u << tail) - 1u);
    const float* panel = Bp + j * K;  // earlier panels are full: kRecPanel columns each
    for (Index i = 0; i < M; i += 8) {
      const Index mr = M - i < 8 ? M - i : 8;
      const float* a = A + i * lda;
      float* c = C + i * ldc + j;
      if (nv == 3) rec_rows512<3>(mr, K, a, lda, panel, c, ldc, zero, last);
      else if (nv == 2) rec_rows512<2>(mr, K, a, lda, panel, c, ldc, zero, last);
      else rec_rows512<1>(mr, K, a, lda, panel, c, ldc, zero, last);
    }
  }
}
#endif

}  // namespace

bool avx512_usable() {
#if defined(__x86_64__)
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
                         // INSPIRE_NO_AVX512=1 keeps the AVX2 paths (tests "avx2.*").
                         !std::getenv("INSPIRE_NO_AVX512");
  return ok;
#else
  return false;
#endif
}

bool rec_packed_supported() { return avx512_usable(); }

void rec_pack(const float* B, Index ldb, bool trans, Index K, Index N, float* out) {
  for (Index j = 0; j < N; j += kRecPanel) {
    const Index cols = std::min(kRecPanel, N - j);
    const Index w = (cols + 15) / 16 * 16;
    float* panel = out + j * K;
    if (!trans) {
      for (Index k = 0; k < K; ++k) {
        float* dst = panel + k * w;
        const float* src = B + k * ldb + j;
        for (Index c = 0; c < cols; ++c) dst[c] = src[c];
        for (Index c = cols; c < w; ++c) dst[c] = 0.f;
      }
    } else {  // B[k, n] = Bt[n, k] with Bt stored [N, K]: read Bt row by row
      for (Index k = 0; k < K; ++k)
        for (Index c = cols; c < w; ++c) panel[k * w + c] = 0.f;
      for (Index c = 0; c < cols; ++c) {
        const float* src = B + (j + c) * ldb;
        for (Index k = 0; k < K; ++k) panel[k * w + c] = src[k];
      }
    }
  }
}

void rec_gemm_packed(Index M, Index N, Index K, const float* A, Index lda, const float* Bp,
                     float beta, float* C, Index ldc) {
  if (M <= 0 || N <= 0) return;
  if (beta != 0.f && beta != 1.f)
    for (Index i = 0; i < M; ++i)
      for (Index j = 0; j < N; ++j) C[i * ldc + j] *= beta;
#if defined(__x86_64__)
  if (rec_packed_supported()) {
    rec_gemm_packed512(M, N, K, A, lda, Bp, beta == 0.f, C, ldc);
    return;
  }
#endif
  // Portable path (the same sums, k in order): never taken where rec_packed_supported() holds.
  for (Index i = 0; i < M; ++i)
    for (Index j = 0; j < N; ++j) {
      const Index p = j / kRecPanel * kRecPanel;
      const Index w = (std::min(kRecPanel, N - p) + 15) / 16 * 16;
      const float* panel = Bp + p * K;
      float s = beta == 0.f ? 0.f : C[i * ldc + j];
      for (Index k = 0; k < K; ++k) s = std::fma(A[i * lda + k], panel[k * w + (j - p)], s);
      C[i * ldc + j] = s;
    }
}

void rec_gemm_f32(Index M, Index N, Index K, const float* A, Index lda, const float* B, Index ldb,
                  float beta, float* C, Index ldc) {
#if defined(__AVX2__) && defined(__FMA__)
  rec_gemm_avx2(M, N, K, A, lda, B, ldb, beta, C, ldc);
#else
  gemm(false, false, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
#endif
}

void half_gemv_acc(const HalfMatrix& W, Index r0, Index r1, const float* h, float* z) {
  const Index R = std::min(r1, W.rows), K = W.cols;
  const std::uint16_t* w = W.data.data();
  Index r = std::max<Index>(r0, 0);
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
  const Index K8 = K / 8 * 8;
  auto hsum = [](__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  };
  auto load8 = [](const std::uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  };
  for (; r + 4 <= R; r += 4) {
    const std::uint16_t* w0 = w + r * K;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (Index k = 0; k < K8; k += 8) {
      __m256 hv = _mm256_loadu_ps(h + k);
      a0 = _mm256_fmadd_ps(load8(w0 + k), hv, a0);
      a1 = _mm256_fmadd_ps(load8(w0 + K + k), hv, a1);
      a2 = _mm256_fmadd_ps(load8(w0 + 2 * K + k), hv, a2);
      a3 = _mm256_fmadd_ps(load8(w0 + 3 * K + k), hv, a3);
    }
    float s[4] = {hsum(a0), hsum(a1), hsum(a2), hsum(a3)};
    for (int i = 0; i < 4; ++i) {
      for (Index k = K8; k < K; ++k) s[i] += half_to_float(w0[i * K + k]) * h[k];
      z[r + i] += s[i];
    }
  }
#endif
  for (; r < R; ++r) {  // rows left over (all rows without F16C)
    float s = 0;
    for (Index k = 0; k < K; ++k) s += half_to_float(w[r * K + k]) * h[k];
    z[r] += s;
  }
}


void int8_gemv_acc_ref(const Int8Matrix& W, Index r0, Index r1, const float* h, float* z) {
  const Index R = std::min(r1, W.rows), K = W.cols;
  for (Index r = std::max<Index>(r0, 0); r < R; ++r) {
    const std::int8_t* w = W.q.data() + r * K;
    float s = 0;
    for (Index k = 0; k < K; ++k) s += static_cast<float>(w[k]) * h[k];
    z[r] += W.scale[r] * s;
  }
}

namespace {

// Rows r..r+3 of the int8 GEMV: the columns from k0 on (the vector loop's tail) added to the
// partial sums s, then z += scale · s.
inline void int8_finish4(const Int8Matrix& W, Index r, Index k0, const float* h, float* s,
                         float* z) {
  const Index K = W.cols;
  const std::int8_t* w0 = W.q.data() + r * K;
  for (int i = 0; i < 4; ++i) {
    for (Index k = k0; k < K; ++k) s[i] += static_cast<float>(w0[i * K + k]) * h[k];
    z[r + i] += W.scale[r + i] * s[i];
  }
}

#if defined(__x86_64__)
// GCC 12 warns of the _mm512_undefined_* inside these intrinsics under a target attribute.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// 16 int8 weights widened to float.
__attribute__((target("avx512f"))) inline __m512 int8_load16(const std::int8_t* p) {
  return _mm512_cvtepi32_ps(
      _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

// Four rows at a time share each load of h; 16 columns per step (int8 -> int32 -> float, FMA).
__attribute__((target("avx512f"))) void int8_gemv512(const Int8Matrix& W, Index r0, Index R,
                                                     const float* h, float* z) {
  const Index K = W.cols, K16 = K / 16 * 16;
  auto load16 = int8_load16;
  Index r = r0;
  for (; r + 4 <= R; r += 4) {
    const std::int8_t* w0 = W.q.data() + r * K;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (Index k = 0; k < K16; k += 16) {
      const __m512 hv = _mm512_loadu_ps(h + k);
      a0 = _mm512_fmadd_ps(load16(w0 + k), hv, a0);
      a1 = _mm512_fmadd_ps(load16(w0 + K + k), hv, a1);
      a2 = _mm512_fmadd_ps(load16(w0 + 2 * K + k), hv, a2);
      a3 = _mm512_fmadd_ps(load16(w0 + 3 * K + k), hv, a3);
    }
    float s[4] = {_mm512_reduce_add_ps(a0), _mm512_reduce_add_ps(a1), _mm512_reduce_add_ps(a2),
                  _mm512_reduce_add_ps(a3)};
    int8_finish4(W, r, K16, h, s, z);
  }
  int8_gemv_acc_ref(W, r, R, h, z);
}
#pragma GCC diagnostic pop
#endif

}  // namespace

void int8_gemv_acc(const Int8Matrix& W, Index r0, Index r1, const float* h, float* z) {
  const Index R = std::min(r1, W.rows), K = W.cols;
  Index r = std::max<Index>(r0, 0);
  if (r >= R) return;
#if defined(__x86_64__)
  if (avx512_usable()) {
    int8_gemv512(W, r, R, h, z);
    return;
  }
#endif
#if defined(__AVX2__) && defined(__FMA__)
  const Index K8 = K / 8 * 8;
  auto hsum = [](__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  };
  auto load8 = [](const std::int8_t* p) {
    return _mm256_cvtepi32_ps(
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  };
  for (; r + 4 <= R; r += 4) {
    const std::int8_t* w0 = W.q.data() + r * K;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (Index k = 0; k < K8; k += 8) {
      const __m256 hv = _mm256_loadu_ps(h + k);
      a0 = _mm256_fmadd_ps(load8(w0 + k), hv, a0);
      a1 = _mm256_fmadd_ps(load8(w0 + K + k), hv, a1);
      a2 = _mm256_fmadd_ps(load8(w0 + 2 * K + k), hv, a2);
      a3 = _mm256_fmadd_ps(load8(w0 + 3 * K + k), hv, a3);
    }
    float s[4] = {hsum(a0), hsum(a1), hsum(a2), hsum(a3)};
    int8_finish4(W, r, K8, h, s, z);
  }
#endif
  int8_gemv_acc_ref(W, r, R, h, z);  // rows left over (all rows on other CPUs)
}

}  // namespace nn::kernels
