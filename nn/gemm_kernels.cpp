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
                                                     bool zero, const float* row0,
                                                     __mmask16 last) {
  // The sums start from 0 (zero), from C, or from the row vector row0 (the same for every row).
  __m512 acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) {
      const __mmask16 m = v == NV - 1 ? last : (__mmask16)0xFFFF;
      acc[i][v] = row0   ? _mm512_maskz_loadu_ps(m, row0 + 16 * v)
                  : zero ? _mm512_setzero_ps()
                         : _mm512_maskz_loadu_ps(m, C + i * ldc + 16 * v);
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
                                                    bool zero, const float* row0,
                                                    __mmask16 last) {
  switch (mr) {
    case 8: rec_micro512<8, NV>(K, A, lda, Bp, C, ldc, zero, row0, last); break;
    case 7: rec_micro512<7, NV>(K, A, lda, Bp, C, ldc, zero, row0, last); break;
    case 6: rec_micro512<6, NV>(K, A, lda, Bp, C, ldc, zero, row0, last); break;
    case 5: rec_micro512<5, NV>(K, A, lda, Bp, C, ldc, zero, row0, last); break;
    case 4: rec_micro512<4, NV>(K, A, lda, Bp, C, ldc, zero, row0, last); break;
    case 3: rec_micro512<3, NV>(K, A, lda, Bp, C, ldc, zero, row0, last); break;
    case 2: rec_micro512<2, NV>(K, A, lda, Bp, C, ldc, zero, row0, last); break;
    default: rec_micro512<1, NV>(K, A, lda, Bp, C, ldc, zero, row0, last); break;
  }
}

__attribute__((target("avx512f"))) void rec_gemm_packed512(Index M, Index N, Index K,
                                                           const float* A, Index lda,
                                                           const float* Bp, bool zero,
                                                           const float* row0, float* C,
                                                           Index ldc) {
  for (Index j = 0; j < N; j += kRecPanel) {
    const Index cols = N - j < kRecPanel ? N - j : kRecPanel;  // real columns of this panel
    const int nv = (int)((cols + 15) / 16);
    const int tail = (int)(cols - 16 * (nv - 1));  // 1..16 columns in the last vector
    const __mmask16 last = (__mmask16)(tail == 16 ? 0xFFFF : (1u << tail) - 1u);
    const float* panel = Bp + j * K;  // earlier panels are full: kRecPanel columns each
    const float* r0j = row0 ? row0 + j : nullptr;
    for (Index i = 0; i < M; i += 8) {
      const Index mr = M - i < 8 ? M - i : 8;
      const float* a = A + i * lda;
      float* c = C + i * ldc + j;
      if (nv == 3) rec_rows512<3>(mr, K, a, lda, panel, c, ldc, zero, r0j, last);
      else if (nv == 2) rec_rows512<2>(mr, K, a, lda, panel, c, ldc, zero, r0j, last);
      else rec_rows512<1>(mr, K, a, lda, panel, c, ldc, zero, r0j, last);
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

namespace {
// C = start + A·B, the sums starting from row0 (every row) when given, else from 0 (zero) or C.
void rec_gemm_packed_from(Index M, Index N, Index K, const float* A, Index lda, const float* Bp,
                          bool zero, const float* row0, float* C, Index ldc) {
  if (M <= 0 || N <= 0) return;
#if defined(__x86_64__)
  if (rec_packed_supported()) {
    rec_gemm_packed512(M, N, K, A, lda, Bp, zero, row0, C, ldc);
    return;
  }
#endif
  // Portable path (the same sums, k in order): never taken where rec_packed_supported() holds.
  for (Index i = 0; i < M; ++i)
    for (Index j = 0; j < N; ++j) {
      const Index p = j / kRecPanel * kRecPanel;
      const Index w = (std::min(kRecPanel, N - p) + 15) / 16 * 16;
      const float* panel = Bp + p * K;
      float s = row0 ? row0[j] : zero ? 0.f : C[i * ldc + j];
      for (Index k = 0; k < K; ++k) s = std::fma(A[i * lda + k], panel[k * w + (j - p)], s);
      C[i * ldc + j] = s;
    }
}
}  // namespace

void rec_gemm_packed(Index M, Index N, Index K, const float* A, Index lda, const float* Bp,
                     float beta, float* C, Index ldc) {
  if (M <= 0 || N <= 0) return;
  if (beta != 0.f && beta != 1.f)
    for (Index i = 0; i < M; ++i)
      for (Index j = 0; j < N; ++j) C[i * ldc + j] *= beta;
  rec_gemm_packed_from(M, N, K, A, lda, Bp, beta == 0.f, nullptr, C, ldc);
}

void rec_gemm_packed_bias(Index M, Index N, Index K, const float* A, Index lda, const float* Bp,
                          const float* bias, float* C, Index ldc) {
  rec_gemm_packed_from(M, N, K, A, lda, Bp, false, bias, C, ldc);
}

void rec_gemm_f32(Index M, Index N, Index K, const float* A, Index lda, const float* B, Index ldb,
                  float beta, float* C, Index ldc) {
#if defined(__AVX2__) && defined(__FMA__)
  rec_gemm_avx2(M, N, K, A, lda, B, ldb, beta, C, ldc);
#else
  gemm(false, false, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
#endif
}

void half_gemv_acc_ref(const HalfMatrix& W, Index r0, Index r1, const float* h, float* z) {
  const Index R = std::min(r1, W.rows), K = W.cols;
  for (Index r = std::max<Index>(r0, 0); r < R; ++r) {
    if (W.panels) {  // the panel kernels' order: even and odd k apart (fused), then added
      float se = 0, so = 0;
      for (Index k = 0; k < K; ++k) {
        if (k % 2 == 0)
          se = std::fma(W.at(r, k), h[k], se);
        else
          so = std::fma(W.at(r, k), h[k], so);
      }
      z[r] += se + so;
      continue;
    }
    const std::uint16_t* w = W.data.data() + r * K;
    float s = 0;
    for (Index k = 0; k < K; ++k) s += half_to_float(w[k]) * h[k];
    z[r] += s;
  }
}

// ---- The 16-row panel layout (HalfMatrix::to_panels, Int8Matrix::to_panels): the serving GEMV ----
// Panel p holds rows 16p..16p+15 column by column ([K][16]). Up to 8 panels per pass, each a
// contiguous stream: at each k, h[k] broadcast times the panel's 16 weights widened to float;
// even and odd k in two accumulators per panel (up to 16 FMA chains), added at the end. No
// horizontal sums: a panel's 16 sums are one register. Whole panels are computed and only the
// rows asked for are added (masked), so a row's bits never depend on the range it was asked with.
// With `scale` (int8) each row's sum is scaled and added in one FMA. The AVX2 twin computes one
// panel at a time with the same per-lane arithmetic, so the same bits; the *_ref functions are
// the spec.
namespace {

#if defined(__x86_64__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"  // _mm512_undefined_* inside the intrinsics
__attribute__((target("avx512f"))) inline __m512 widen16(const std::uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
__attribute__((target("avx512f"))) inline __m512 widen16(const std::int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

template <int NP, typename W>
__attribute__((target("avx512f"))) inline void panels512(const W* p, Index K, const float* h,
                                                          __m512* out) {
  const Index stride = 16 * K;
  __m512 a[NP], b[NP];
#pragma GCC unroll 8
  for (int i = 0; i < NP; ++i) a[i] = b[i] = _mm512_setzero_ps();
  Index k = 0;
  for (; k + 2 <= K; k += 2) {
    const __m512 h0 = _mm512_set1_ps(h[k]), h1 = _mm512_set1_ps(h[k + 1]);
    const W* q = p + k * 16;
#pragma GCC unroll 8
    for (int i = 0; i < NP; ++i) {
      a[i] = _mm512_fmadd_ps(widen16(q + i * stride), h0, a[i]);
      b[i] = _mm512_fmadd_ps(widen16(q + i * stride + 16), h1, b[i]);
    }
  }
  if (k < K) {
    const __m512 h0 = _mm512_set1_ps(h[k]);
#pragma GCC unroll 8
    for (int i = 0; i < NP; ++i) a[i] = _mm512_fmadd_ps(widen16(p + i * stride + k * 16), h0, a[i]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < NP; ++i) out[i] = _mm512_add_ps(a[i], b[i]);
}

template <typename W>
__attribute__((target("avx512f"))) void gemv_panels512(const W* data, Index K, Index r0, Index R,
                                                       const float* scale, const float* h,
                                                       float* z) {
  const Index pend = (R + 15) / 16;
  for (Index p = r0 / 16; p < pend;) {
    // up to 8 panels per pass, the passes of a range as even as possible (9 panels: 5 + 4)
    const Index rem = pend - p, passes = (rem + 7) / 8;
    const int np = (int)((rem + passes - 1) / passes);
    const W* base = data + p * 16 * K;
    __m512 s[8];
    switch (np) {
      case 8: panels512<8>(base, K, h, s); break;
      case 7: panels512<7>(base, K, h, s); break;
      case 6: panels512<6>(base, K, h, s); break;
      case 5: panels512<5>(base, K, h, s); break;
      case 4: panels512<4>(base, K, h, s); break;
      case 3: panels512<3>(base, K, h, s); break;
      case 2: panels512<2>(base, K, h, s); break;
      default: panels512<1>(base, K, h, s); break;
    }
    for (int i = 0; i < np; ++i) {
      const Index row0 = (p + i) * 16;
      const Index lo = std::max(r0, row0) - row0, hi = std::min(R, row0 + 16) - row0;
      const __mmask16 m = (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
      const __m512 zz = _mm512_maskz_loadu_ps(m, z + row0);
      const __m512 r = scale ? _mm512_fmadd_ps(s[i], _mm512_maskz_loadu_ps(m, scale + row0), zz)
                             : _mm512_add_ps(zz, s[i]);
      _mm512_mask_storeu_ps(z + row0, m, r);
    }
    p += np;
  }
}
#pragma GCC diagnostic pop
#endif

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
inline __m256 widen8(const std::uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 widen8(const std::int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

template <typename W>
void gemv_panels_avx2(const W* data, Index K, Index r0, Index R, const float* scale,
                      const float* h, float* z) {
  for (Index p = r0 / 16; p * 16 < R; ++p) {
    const W* base = data + p * 16 * K;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
    Index k = 0;
    for (; k + 2 <= K; k += 2) {
      const __m256 h0 = _mm256_set1_ps(h[k]), h1 = _mm256_set1_ps(h[k + 1]);
      const W* q = base + k * 16;
      a0 = _mm256_fmadd_ps(widen8(q), h0, a0);
      a1 = _mm256_fmadd_ps(widen8(q + 8), h0, a1);
      b0 = _mm256_fmadd_ps(widen8(q + 16), h1, b0);
      b1 = _mm256_fmadd_ps(widen8(q + 24), h1, b1);
    }
    if (k < K) {
      const __m256 h0 = _mm256_set1_ps(h[k]);
      a0 = _mm256_fmadd_ps(widen8(base + k * 16), h0, a0);
      a1 = _mm256_fmadd_ps(widen8(base + k * 16 + 8), h0, a1);
    }
    alignas(32) float s[16];
    _mm256_store_ps(s, _mm256_add_ps(a0, b0));
    _mm256_store_ps(s + 8, _mm256_add_ps(a1, b1));
    const Index row0 = p * 16;
    for (Index i = std::max(r0, row0); i < std::min(R, row0 + 16); ++i)
      z[i] = scale ? std::fma(s[i - row0], scale[i], z[i]) : z[i] + s[i - row0];
  }
}
#endif

// Rows [r0, R) of a panel-layout matrix on the best vector path this CPU has; false when there
// is none (the caller runs the reference).
template <typename W>
bool gemv_panels(const W* data, Index K, Index r0, Index R, const float* scale, const float* h,
                 float* z) {
#if defined(__x86_64__)
  if (avx512_usable()) {
    gemv_panels512(data, K, r0, R, scale, h, z);
    return true;
  }
#endif
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
  gemv_panels_avx2(data, K, r0, R, scale, h, z);
  return true;
#else
  (void)data, (void)K, (void)r0, (void)R, (void)scale, (void)h, (void)z;
  return false;
#endif
}

}  // namespace

void half_gemv_acc(const HalfMatrix& W, Index r0, Index r1, const float* h, float* z) {
  const Index R = std::min(r1, W.rows), K = W.cols;
  const std::uint16_t* w = W.data.data();
  Index r = std::max<Index>(r0, 0);
  if (r >= R) return;
  if (W.panels) {
    if (!gemv_panels(W.data.data(), K, r, R, nullptr, h, z)) half_gemv_acc_ref(W, r, R, h, z);
    return;
  }
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
  (void)w;
  (void)K;
  half_gemv_acc_ref(W, r, R, h, z);  // rows left over (all rows without F16C)
}

namespace {
#if defined(__x86_64__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"  // _mm256_undefined_pd inside _mm512_reduce_add_ps
// Rows of a float row-major W: each row's sum is two 16-lane FMA chains over k (alternate 16-column
// chunks), then a 16-column remainder chunk (masked) into the first, then one horizontal sum. The
// arithmetic of a row never depends on which rows it is computed with.
template <int NR>
__attribute__((target("avx512f"))) inline void f32_rows512(const float* w0, Index K, const float* h,
                                                           const char* next, float* s) {
  const Index K32 = K / 32 * 32, K16 = K / 16 * 16;
  __m512 a[NR], b[NR];
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) a[i] = b[i] = _mm512_setzero_ps();
  for (Index k = 0; k < K32; k += 32) {
    // Prefetch the next block of rows (contiguous after these) at the pace this block is read:
    // NR·128 bytes per 32 columns, into L1 (four rows: 18 KB at h = 1152). Row-major rows cross
    // a page every few KB and the hardware prefetchers restart at each: in a stand-alone loop
    // over two 21 MB matrices this read them 1.35x faster (one thread); in the whole paper the
    // difference was within the noise of the shared machine (docs/performance.md).
    const char* q = next + k * 4 * NR;
#pragma GCC unroll 16
    for (int i = 0; i < 2 * NR; ++i) _mm_prefetch(q + 64 * i, _MM_HINT_T0);
    const __m512 h0 = _mm512_loadu_ps(h + k), h1 = _mm512_loadu_ps(h + k + 16);
#pragma GCC unroll 8
    for (int i = 0; i < NR; ++i) {
      a[i] = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + i * K + k), h0, a[i]);
      b[i] = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + i * K + k + 16), h1, b[i]);
    }
  }
  if (K16 > K32) {
    const __m512 h0 = _mm512_loadu_ps(h + K32);
#pragma GCC unroll 8
    for (int i = 0; i < NR; ++i) a[i] = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + i * K + K32), h0, a[i]);
  }
  if (K > K16) {
    const __mmask16 m = (__mmask16)((1u << (K - K16)) - 1u);
    const __m512 h0 = _mm512_maskz_loadu_ps(m, h + K16);
#pragma GCC unroll 8
    for (int i = 0; i < NR; ++i)
      b[i] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w0 + i * K + K16), h0, b[i]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) s[i] = _mm512_reduce_add_ps(_mm512_add_ps(a[i], b[i]));
}

__attribute__((target("avx512f"))) void f32_gemv512(const float* W, Index K, Index r0, Index R,
                                                    const float* h, float* z) {
  Index r = r0;
  float s[4];
  for (; r + 4 <= R; r += 4) {
    f32_rows512<4>(W + r * K, K, h, reinterpret_cast<const char*>(W + (r + 4) * K), s);
    for (int i = 0; i < 4; ++i) z[r + i] += s[i];
  }
  for (; r < R; ++r) {
    f32_rows512<1>(W + r * K, K, h, reinterpret_cast<const char*>(W + (r + 1) * K), s);
    z[r] += s[0];
  }
}
#pragma GCC diagnostic pop
#endif
}  // namespace

#if defined(__AVX2__) && defined(__FMA__)
namespace {
// The AVX2 twin (8 lanes): two chains over alternate 8-column chunks, the remainder in scalar
// fused steps after the horizontal sum; a row's arithmetic never depends on its block.
template <int NR>
inline void f32_rows_avx2(const float* w0, Index K, const float* h, float* s) {
  const Index K16 = K / 16 * 16, K8 = K / 8 * 8;
  __m256 a[NR], b[NR];
  for (int i = 0; i < NR; ++i) a[i] = b[i] = _mm256_setzero_ps();
  for (Index k = 0; k < K16; k += 16) {
    const __m256 h0 = _mm256_loadu_ps(h + k), h1 = _mm256_loadu_ps(h + k + 8);
    for (int i = 0; i < NR; ++i) {
      a[i] = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i * K + k), h0, a[i]);
      b[i] = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i * K + k + 8), h1, b[i]);
    }
  }
  if (K8 > K16) {
    const __m256 h0 = _mm256_loadu_ps(h + K16);
    for (int i = 0; i < NR; ++i) a[i] = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i * K + K16), h0, a[i]);
  }
  for (int i = 0; i < NR; ++i) {
    const __m256 v = _mm256_add_ps(a[i], b[i]);
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    float t = _mm_cvtss_f32(q);
    for (Index k = K8; k < K; ++k) t = std::fma(w0[i * K + k], h[k], t);
    s[i] = t;
  }
}
}  // namespace
#endif

void f32_gemv_acc(const float* W, Index K, Index r0, Index r1, const float* h, float* z) {
  if (r1 <= r0) return;
#if defined(__x86_64__)
  if (avx512_usable()) {
    f32_gemv512(W, K, r0, r1, h, z);
    return;
  }
#endif
#if defined(__AVX2__) && defined(__FMA__)
  Index r = r0;
  float s[4];
  for (; r + 4 <= r1; r += 4) {
    f32_rows_avx2<4>(W + r * K, K, h, s);
    for (int i = 0; i < 4; ++i) z[r + i] += s[i];
  }
  for (; r < r1; ++r) {
    f32_rows_avx2<1>(W + r * K, K, h, s);
    z[r] += s[0];
  }
#else
  f32_gemv_acc_ref(W, K, r0, r1, h, z);
#endif
}

void f32_gemv_acc_ref(const float* W, Index K, Index r0, Index r1, const float* h, float* z) {
  for (Index r = r0; r < r1; ++r) {
    float s = 0;
    for (Index k = 0; k < K; ++k) s = std::fma(W[r * K + k], h[k], s);
    z[r] += s;
  }
}

void int8_gemv_acc_ref(const Int8Matrix& W, Index r0, Index r1, const float* h, float* z) {
  const Index R = std::min(r1, W.rows), K = W.cols;
  for (Index r = std::max<Index>(r0, 0); r < R; ++r) {
    if (W.panels) {  // the panel kernels' order: even and odd k apart (fused), then scaled (fused)
      float se = 0, so = 0;
      for (Index k = 0; k < K; ++k) {
        const float w = static_cast<float>(W.qat(r, k));
        if (k % 2 == 0)
          se = std::fma(w, h[k], se);
        else
          so = std::fma(w, h[k], so);
      }
      z[r] = std::fma(se + so, W.scale[r], z[r]);
      continue;
    }
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
// Four rows at a time share each load of h; 16 columns per step (int8 -> int32 -> float, FMA).
__attribute__((target("avx512f"))) void int8_gemv512(const Int8Matrix& W, Index r0, Index R,
                                                     const float* h, float* z) {
  const Index K = W.cols, K16 = K / 16 * 16;
  Index r = r0;
  for (; r + 4 <= R; r += 4) {
    const std::int8_t* w0 = W.q.data() + r * K;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (Index k = 0; k < K16; k += 16) {
      const __m512 hv = _mm512_loadu_ps(h + k);
      a0 = _mm512_fmadd_ps(widen16(w0 + k), hv, a0);
      a1 = _mm512_fmadd_ps(widen16(w0 + K + k), hv, a1);
      a2 = _mm512_fmadd_ps(widen16(w0 + 2 * K + k), hv, a2);
      a3 = _mm512_fmadd_ps(widen16(w0 + 3 * K + k), hv, a3);
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
  if (W.panels) {
    if (!gemv_panels(W.q.data(), K, r, R, W.scale.data(), h, z)) int8_gemv_acc_ref(W, r, R, h, z);
    return;
  }
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
