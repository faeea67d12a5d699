// nn/int8_gemm.cpp — the w8a8 serving kernels (nn/gemm_kernels.h): activations quantized to
// uint8 per row, and the int8 × uint8 product with AVX512-VNNI `vpdpbusd` (64 multiply-adds per
// instruction; on this project's AVX-512 Xeon it issues twice per cycle: 627 G int8 ops/s per
// core against 171 GFLOP/s of float FMA, bench_peak's peak/int8_dot and peak/fp32_fma). Each
// kernel sits beside its plain reference, which is the spec: the integer sums are exact, so the
// vector paths equal the plain ones bit for bit.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "nn/gemm_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace nn::kernels {

bool vnni_usable() {
#if defined(__x86_64__)
  static const bool ok = avx512_usable() && __builtin_cpu_supports("avx512vnni") &&
                         !std::getenv("INSPIRE_NO_VNNI");
  return ok;
#else
  return false;
#endif
}

// ---- activations to uint8 ----

namespace {

// The scale and zero point of one row from its range (shared by both paths).
inline void u8_params(float lo, float hi, float& s, std::int32_t& zp, float& inv) {
  lo = std::min(lo, 0.0f);
  hi = std::max(hi, 0.0f);
  s = (hi - lo) / 255.0f;
  if (!(s > 0.0f)) {
    s = 0.0f;
    zp = 0;
    inv = 0.0f;
    return;
  }
  inv = 1.0f / s;
  zp = static_cast<std::int32_t>(std::clamp(std::nearbyint(-lo * inv), 0.0f, 255.0f));
}

}  // namespace

void quantize_u8_rows_ref(Index M, Index K, const float* a, Index lda, std::uint8_t* u, Index ldu,
                          float* scale, std::int32_t* zp) {
  for (Index m = 0; m < M; ++m) {
    const float* x = a + m * lda;
    std::uint8_t* o = u + m * ldu;
    float lo = 0.0f, hi = 0.0f;
    for (Index k = 0; k < K; ++k) {
      lo = std::min(lo, x[k]);
      hi = std::max(hi, x[k]);
    }
    float inv;
    u8_params(lo, hi, scale[m], zp[m], inv);
    for (Index k = 0; k < K; ++k) {
      const float v = std::nearbyint(x[k] * inv) + static_cast<float>(zp[m]);
      o[k] = static_cast<std::uint8_t>(std::clamp(v, 0.0f, 255.0f));
    }
    std::fill(o + K, o + ldu, std::uint8_t(0));
  }
}

#if defined(__x86_64__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
namespace {

__attribute__((target("avx512f,avx512bw,avx512vl"))) void quantize_u8_rows512(
    Index M, Index K, const float* a, Index lda, std::uint8_t* u, Index ldu, float* scale,
    std::int32_t* zp) {
  for (Index m = 0; m < M; ++m) {
    const float* x = a + m * lda;
    std::uint8_t* o = u + m * ldu;
    __m512 vlo = _mm512_setzero_ps(), vhi = _mm512_setzero_ps();
    Index k = 0;
    for (; k + 16 <= K; k += 16) {
      const __m512 v = _mm512_loadu_ps(x + k);
      vlo = _mm512_min_ps(vlo, v);
      vhi = _mm512_max_ps(vhi, v);
    }
    if (k < K) {
      const __mmask16 mk = static_cast<__mmask16>((1u << (K - k)) - 1);
      const __m512 v = _mm512_maskz_loadu_ps(mk, x + k);  // zeros outside: the range has 0
      vlo = _mm512_min_ps(vlo, v);
      vhi = _mm512_max_ps(vhi, v);
    }
    float inv;
    u8_params(_mm512_reduce_min_ps(vlo), _mm512_reduce_max_ps(vhi), scale[m], zp[m], inv);
    const __m512 vinv = _mm512_set1_ps(inv);
    const __m512i vzp = _mm512_set1_epi32(zp[m]);
    const __m512i v0 = _mm512_setzero_si512(), v255 = _mm512_set1_epi32(255);
    // round to nearest even (the MXCSR default, as nearbyint), + zp, clamp, narrow to bytes
    for (k = 0; k < K; k += 16) {
      const __mmask16 mk = K - k >= 16 ? static_cast<__mmask16>(0xFFFF)
                                       : static_cast<__mmask16>((1u << (K - k)) - 1);
      __m512i q = _mm512_add_epi32(
          _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + k), vinv)), vzp);
      q = _mm512_min_epi32(_mm512_max_epi32(q, v0), v255);
      _mm_mask_storeu_epi8(o + k, mk, _mm512_cvtepi32_epi8(q));
    }
    std::fill(o + K, o + ldu, std::uint8_t(0));
  }
}

}  // namespace
#pragma GCC diagnostic pop
#endif

void quantize_u8_rows(Index M, Index K, const float* a, Index lda, std::uint8_t* u, Index ldu,
                      float* scale, std::int32_t* zp) {
#if defined(__x86_64__)
  if (avx512_usable()) {
    quantize_u8_rows512(M, K, a, lda, u, ldu, scale, zp);
    return;
  }
#endif
  quantize_u8_rows_ref(M, K, a, lda, u, ldu, scale, zp);
}

// ---- the int8 × uint8 product ----

namespace {

void check_range(const Int8Packed& W, Index n0, Index n1, Index ldu) {
  if (n0 % 16 != 0 || n0 < 0 || n1 > W.packed_rows() || ldu < W.kp)
    throw std::invalid_argument("int8_gemm_u8_acc: packed rows [" + std::to_string(n0) + ", " +
                                std::to_string(n1) + ") of " + std::to_string(W.packed_rows()) +
                                " (the first must be a multiple of 16), ldu " +
                                std::to_string(ldu) + " for kp " + std::to_string(W.kp));
}

}  // namespace

void int8_gemm_u8_acc_ref(Index M, const std::uint8_t* u, Index ldu, const float* sa,
                          const std::int32_t* zp, const Int8Packed& W, Index n0, Index n1,
                          float* C, Index ldc) {
  check_range(W, n0, n1, ldu);
  const Index k4 = W.kp / 4;
  for (Index m = 0; m < M; ++m)
    for (Index n = n0; n < n1; ++n) {
      const std::int8_t* blk = W.b.data() + (n / 16) * k4 * 64 + (n % 16) * 4;
      std::int32_t acc = 0;
      for (Index k = 0; k < W.kp; ++k)
        acc += static_cast<std::int32_t>(u[m * ldu + k]) * blk[(k / 4) * 64 + k % 4];
      const std::int32_t v = acc - zp[m] * W.wsum[n];
      float& c = C[m * ldc + (n - n0)];
      c = std::fma(static_cast<float>(v), sa[m] * W.scale[n], c);
    }
}

#if defined(__x86_64__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
namespace {

// C += (sa · sw) · (float)(sums − zp · wsum) for MR rows × NR blocks of 16 columns (sums
// [MR][NR][16]); ncols: the valid columns from the first block on (masked stores past them).
template <int MR, int NR>
__attribute__((target("avx512f,avx512bw,avx512vl"), noinline)) void w8a8_epilogue(
    const std::int32_t* sums, const float* sa, const std::int32_t* zp, const std::int32_t* wsum,
    const float* sw, float* C, Index ldc, Index ncols) {
#pragma GCC unroll 8
  for (int j = 0; j < NR; ++j) {
    const Index left = ncols - 16 * j;
    const __mmask16 mk =
        left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
    const __m512i ws = _mm512_loadu_si512(wsum + 16 * j);
    const __m512 swv = _mm512_loadu_ps(sw + 16 * j);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512i v = _mm512_sub_epi32(_mm512_load_si512(sums + (i * NR + j) * 16),
                                         _mm512_mullo_epi32(_mm512_set1_epi32(zp[i]), ws));
      const __m512 s = _mm512_mul_ps(_mm512_set1_ps(sa[i]), swv);
      float* c = C + i * ldc + 16 * j;
      _mm512_mask_storeu_ps(c, mk,
                            _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), s, _mm512_maskz_loadu_ps(mk, c)));
    }
  }
}

// MR rows × NR blocks of 16 packed rows: MR·NR accumulators, k in steps of 4 (one vpdpbusd per
// accumulator per step). ncols: the valid columns of C from the first block on (the last block
// may be partial: masked stores).
template <int MR, int NR>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void w8a8_micro(
    Index k4, const std::uint8_t* u, Index ldu, const std::int8_t* b, const float* sa,
    const std::int32_t* zp, const std::int32_t* wsum, const float* sw, float* C, Index ldc,
    Index ncols) {
  // (every loop over i and j unrolled, so the accumulators live in registers)
  __m512i acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_si512();
  const Index bstride = k4 * 64;
  for (Index k = 0; k < k4; ++k) {
    __m512i bv[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) bv[j] = _mm512_loadu_si512(b + j * bstride + k * 64);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      std::int32_t a4;
      std::memcpy(&a4, u + i * ldu + k * 4, 4);
      const __m512i av = _mm512_set1_epi32(a4);
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], av, bv[j]);
    }
  }
  // The epilogue is a separate function: with _mm512_cvtepi32_ps in this one, GCC 12 kept every
  // accumulator on the stack through the k loop (a store per vpdpbusd, 3× slower).
  alignas(64) std::int32_t sums[MR * NR * 16];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) _mm512_store_si512(sums + (i * NR + j) * 16, acc[i][j]);
  w8a8_epilogue<MR, NR>(sums, sa, zp, wsum, sw, C, ldc, ncols);
}

using Micro = void (*)(Index, const std::uint8_t*, Index, const std::int8_t*, const float*,
                       const std::int32_t*, const std::int32_t*, const float*, float*, Index, Index);
#define INSPIRE_W8A8_ROW(MR) {&w8a8_micro<MR, 1>, &w8a8_micro<MR, 2>, &w8a8_micro<MR, 3>}
// 8 rows × 3 blocks: 24 accumulators + 3 weight vectors + 1 broadcast (of 32 registers). The
// shapes served divide into it: a 32-paper batch is 4 row blocks, a 1152-unit layer's slices
// (144 units) are 9 blocks of 16, and the projections' chunks of 192 rows are 24 row blocks.
constexpr int kMr = 8, kNr = 3;
const Micro kMicro[kMr][kNr] = {INSPIRE_W8A8_ROW(1), INSPIRE_W8A8_ROW(2), INSPIRE_W8A8_ROW(3),
                                INSPIRE_W8A8_ROW(4), INSPIRE_W8A8_ROW(5), INSPIRE_W8A8_ROW(6),
                                INSPIRE_W8A8_ROW(7), INSPIRE_W8A8_ROW(8)};
#undef INSPIRE_W8A8_ROW

}  // namespace
#pragma GCC diagnostic pop
#endif

void int8_gemm_u8_acc(Index M, const std::uint8_t* u, Index ldu, const float* sa,
                      const std::int32_t* zp, const Int8Packed& W, Index n0, Index n1, float* C,
                      Index ldc) {
#if defined(__x86_64__)
  if (vnni_usable()) {
    check_range(W, n0, n1, ldu);
    const Index k4 = W.kp / 4;
    // Columns in groups of up to kNr blocks of 16; rows in blocks of up to kMr under each group,
    // so the group's packed weights (kNr × k4 × 64 bytes) are reused from cache by every row
    // block.
    for (Index nb = n0; nb < n1; nb += 16 * kNr) {
      const Index ncols = std::min<Index>(16 * kNr, n1 - nb);
      const int nr = static_cast<int>((ncols + 15) / 16);
      const std::int8_t* b = W.b.data() + (nb / 16) * k4 * 64;
      for (Index m0 = 0; m0 < M; m0 += kMr) {
        const int mr = static_cast<int>(std::min<Index>(kMr, M - m0));
        kMicro[mr - 1][nr - 1](k4, u + m0 * ldu, ldu, b, sa + m0, zp + m0, W.wsum.data() + nb,
                               W.scale.data() + nb, C + m0 * ldc + (nb - n0), ldc, ncols);
      }
    }
    return;
  }
#endif
  int8_gemm_u8_acc_ref(M, u, ldu, sa, zp, W, n0, n1, C, ldc);
}

}  // namespace nn::kernels
