// nn/lstm.cpp — LSTM layer forward / backward / infer (see nn/lstm.h for the design).
#include "nn/lstm.h"

#include <omp.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "nn/backend.h"

namespace nn {
namespace {

template <typename T>
using ArrMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <typename T>
using CArrMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// The rows [b0, b1) of this thread when `n` rows are split across the current team.
inline void my_rows(Index n, Index& b0, Index& b1) {
  int nt = omp_get_num_threads(), id = omp_get_thread_num();
  Index per = n / nt, rem = n % nt;
  b0 = id * per + std::min<Index>(id, rem);
  b1 = b0 + per + (id < rem ? 1 : 0);
}

// Threads worth using for `rows` independent rows of `work` multiply-adds each.
inline int team_size(Index rows, double work) {
  int nt = omp_get_max_threads();
  if (omp_in_parallel()) return 1;
  if (work < 2e5) return 1;
  return (int)std::max<Index>(1, std::min<Index>(nt, rows));
}

// C[M,N] (+)= op(A) op(B), split over the M rows across threads (one parallel region).
template <typename T>
void gemm_rows(bool ta, bool tb, Index M, Index N, Index K, T alpha, const T* A, Index lda,
               const T* B, Index ldb, T beta, T* C, Index ldc) {
  int nt = team_size(M / 16, (double)M * N * K);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    Index m0, m1;
    my_rows(M, m0, m1);
    if (m1 > m0) {
      const T* a = ta ? A + m0 : A + m0 * lda;
      gemm(ta, tb, m1 - m0, N, K, alpha, a, lda, B, ldb, beta, C + m0 * ldc, ldc);
    }
  }
}

// In place: sigmoid on [0, 2h) and [3h, 4h), tanh on [2h, 3h) of one gate row.
template <typename T>
inline void gate_activations(T* z, Index h) {
  ArrMap<T> if_(z, 2 * h), g(z + 2 * h, h), o(z + 3 * h, h);
  if_ = (T(1) + (-if_).exp()).inverse();
  g = g.tanh();
  o = (T(1) + (-o).exp()).inverse();
}

// One row of the cell update: c = f c_prev + i g; h = o tanh(c).
template <typename T>
inline void cell_update(const T* z, const T* c_prev, T* c, T* hout, Index h) {
  CArrMap<T> i(z, h), f(z + h, h), g(z + 2 * h, h), o(z + 3 * h, h), cp(c_prev, h);
  ArrMap<T> cm(c, h), hm(hout, h);
  cm = f * cp + i * g;
  hm = o * cm.tanh();
}


// ---- the recurrent product -------------------------------------------------------------------
// C[M,N] (+)= A[M,K] · B[K,N], all row-major, B NOT transposed. Used for the per-step products
// h_{t-1}·W_hhᵀ (B = W_hhᵀ, transposed once per window) and dZ_t·W_hh (B = W_hh as stored).
// Eigen's GEMM re-packs its big operand at every call, i.e. the whole W_hh at every time step;
// this kernel reads B in place instead (register-blocked 4 rows × 24 columns, K in L1-sized
// chunks). The float AVX2/FMA kernel is checked against the Eigen path (the double path).
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

inline void rec_gemm(Index M, Index N, Index K, const float* A, Index lda, const float* B,
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

template <typename T>
inline void recurrent_gemm(Index M, Index N, Index K, const T* A, Index lda, const T* B, Index ldb,
                           T beta, T* C, Index ldc) {
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (std::is_same_v<T, float>) {
    rec_gemm(M, N, K, A, lda, B, ldb, beta, C, ldc);
    return;
  }
#endif
  gemm(false, false, M, N, K, T(1), A, lda, B, ldb, beta, C, ldc);
}

// z[r] += Σ_k W[r, k] · h[k] with W in half precision (row-major [R, K]): the batch-1 recurrent
// step of the serving path. Four rows at a time share each load of h.
inline void half_gemv_acc(const HalfMatrix& W, const float* h, float* z) {
  const Index R = W.rows, K = W.cols;
  const std::uint16_t* w = W.data.data();
  Index r = 0;
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

}  // namespace

// ---- half precision ------------------------------------------------------------------------------
std::uint16_t float_to_half(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u)  // inf or NaN (NaN keeps a quiet payload bit)
    return static_cast<std::uint16_t>(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
  if (ax >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds past 65504
  if (ax < 0x38800000u) {  // below 2^-14: subnormal half (or zero)
    // value = ax_float; half subnormal unit = 2^-24. Round to nearest even in float arithmetic
    // (exact: the product is a float with enough bits, and nearbyint rounds ties to even).
    float v = std::bit_cast<float>(ax) * 16777216.0f;  // / 2^-24
    return static_cast<std::uint16_t>(sign | static_cast<std::uint32_t>(std::nearbyint(v)));
  }
  // normal: rebias the exponent (127 -> 15) and round the 23-bit mantissa to 10 bits
  std::uint32_t m = ax - 0x38000000u;  // exponent - 112
  const std::uint32_t lsb = (m >> 13) & 1u;
  m += 0xfffu + lsb;                   // round to nearest, ties to even
  return static_cast<std::uint16_t>(sign | (m >> 13));
}

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0) {  // zero or subnormal: m · 2^-24
    float v = static_cast<float>(m) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  if (e == 31) return std::bit_cast<float>(sign | 0x7f800000u | (m << 13));
  return std::bit_cast<float>(sign | ((e + 112u) << 23) | (m << 13));
}

void floats_to_half(const float* src, std::uint16_t* dst, Index n) {
  Index i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
  for (; i < n; ++i) dst[i] = float_to_half(src[i]);
}

HalfMatrix HalfMatrix::from(CView<float> m) {
  if (m.ndim() != 2) throw std::invalid_argument("HalfMatrix: expected a 2-D matrix, got " + m.shape.str());
  HalfMatrix h;
  h.rows = m.dim(0);
  h.cols = m.dim(1);
  h.data.resize(static_cast<std::size_t>(m.numel()));
  floats_to_half(m.data, h.data.data(), m.numel());
  return h;
}

float HalfMatrix::at(Index r, Index c) const { return half_to_float(data[r * cols + c]); }

template <typename T>
void LstmParams<T>::check() const {
  if (w_hh.ndim() != 2 || w_hh.dim(0) != 4 * w_hh.dim(1) || w_hh.dim(1) == 0)
    throw std::invalid_argument("LSTM: weight_hh must be [4h, h], got " + w_hh.shape.str());
  Index h = w_hh.dim(1);
  if (w_ih.ndim() != 2 || w_ih.dim(0) != 4 * h)
    throw std::invalid_argument("LSTM: weight_ih must be [4h=" + std::to_string(4 * h) +
                                ", in], got " + w_ih.shape.str());
  check_shape(b_ih.shape, Shape{4 * h}, "LSTM bias_ih");
  check_shape(b_hh.shape, Shape{4 * h}, "LSTM bias_hh");
}

template <typename T>
void LstmCache<T>::ensure(Index bs_, Index sl_, Index in_, Index hid_) {
  if (bs_ == bs && sl_ == sl && in_ == in && hid_ == hid) return;
  bs = bs_, sl = sl_, in = in_, hid = hid_;
  x.resize({sl, bs, in});
  gates.resize({sl, bs, 4 * hid});
  h.resize({sl + 1, bs, hid});
  c.resize({sl + 1, bs, hid});
  dh.resize({2, bs, hid});
  dc.resize({bs, hid});
}

template <typename T>
void lstm_forward(const LstmParams<T>& p, CView<T> x, CView<T> h0, CView<T> c0, View<T> y,
                  View<T> hn, View<T> cn, LstmCache<T>& cache) {
  p.check();
  if (x.ndim() != 3) throw std::invalid_argument("LSTM forward: x must be [bs, sl, in], got " + x.shape.str());
  const Index bs = x.dim(0), sl = x.dim(1), in = x.dim(2), H = p.hidden(), G = 4 * H;
  if (in != p.input())
    throw std::invalid_argument("LSTM forward: x has " + std::to_string(in) +
                                " features, weight_ih expects " + std::to_string(p.input()));
  check_shape(y.shape, Shape{bs, sl, H}, "LSTM forward y");
  if (!h0.empty()) check_shape(h0.shape, Shape{bs, H}, "LSTM forward h0");
  if (!c0.empty()) check_shape(c0.shape, Shape{bs, H}, "LSTM forward c0");
  if (!hn.empty()) check_shape(hn.shape, Shape{bs, H}, "LSTM forward hn");
  if (!cn.empty()) check_shape(cn.shape, Shape{bs, H}, "LSTM forward cn");
  cache.ensure(bs, sl, in, H);
  T* xs = cache.x.data();
  T* gs = cache.gates.data();
  T* hs = cache.h.data();
  T* cs = cache.c.data();
  // time-major copy of x; initial state
  for (Index t = 0; t < sl; ++t)
    for (Index b = 0; b < bs; ++b)
      std::copy_n(x.data + (b * sl + t) * in, in, xs + (t * bs + b) * in);
  if (h0.empty()) std::fill_n(hs, bs * H, T(0)); else std::copy_n(h0.data, bs * H, hs);
  if (c0.empty()) std::fill_n(cs, bs * H, T(0)); else std::copy_n(c0.data, bs * H, cs);
  if (sl == 0 || bs == 0) {
    if (!hn.empty()) std::copy_n(hs, bs * H, hn.data);
    if (!cn.empty()) std::copy_n(cs, bs * H, cn.data);
    return;
  }
  // z = x W_ihᵀ + b_ih + b_hh for the whole window: bias rows, then ONE GEMM.
  {
    Eigen::Array<T, Eigen::Dynamic, 1> bias(G);
    for (Index k = 0; k < G; ++k) bias[k] = p.b_ih[k] + p.b_hh[k];
    for (Index r = 0; r < sl * bs; ++r) std::copy_n(bias.data(), G, gs + r * G);
  }
  gemm_rows<T>(false, true, sl * bs, G, in, T(1), xs, in, p.w_ih.data, in, T(1), gs, G);
  // W_hhᵀ once per window, so that the per-step product reads it in place.
  if (cache.wt.numel() != H * G) cache.wt.resize({H, G});
  transpose_into<T>(p.w_hh, cache.wt.data());
  const T* wt = cache.wt.data();
  // Time loop: batch rows split over threads, one parallel region for the whole loop.
  int nt = team_size(bs, (double)bs * G * H);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    Index b0, b1;
    my_rows(bs, b0, b1);
    const Index nb = b1 - b0;
    if (nb > 0) {
      for (Index t = 0; t < sl; ++t) {
        T* z = gs + (t * bs + b0) * G;
        const T* hp = hs + (t * bs + b0) * H;
        if (nb == 1)  // one row: GEMV on W_hh as stored (no transposed read)
          Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>(z, G).noalias() +=
              mat(p.w_hh) * Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(hp, H);
        else
          recurrent_gemm<T>(nb, G, H, hp, H, wt, G, T(1), z, G);
        for (Index b = 0; b < nb; ++b) {
          T* zb = z + b * G;
          gate_activations(zb, H);
          cell_update(zb, cs + (t * bs + b0 + b) * H, cs + ((t + 1) * bs + b0 + b) * H,
                      hs + ((t + 1) * bs + b0 + b) * H, H);
        }
      }
      for (Index b = b0; b < b1; ++b)
        for (Index t = 0; t < sl; ++t)
          std::copy_n(hs + ((t + 1) * bs + b) * H, H, y.data + (b * sl + t) * H);
    }
  }
  if (!hn.empty()) std::copy_n(hs + sl * bs * H, bs * H, hn.data);
  if (!cn.empty()) std::copy_n(cs + sl * bs * H, bs * H, cn.data);
}

template <typename T>
void lstm_backward(const LstmParams<T>& p, LstmCache<T>& cache, CView<T> dy, CView<T> dhn,
                   CView<T> dcn, View<T> dx, View<T> dh0, View<T> dc0, const LstmGrads<T>& g) {
  const Index bs = cache.bs, sl = cache.sl, in = cache.in, H = cache.hid, G = 4 * H;
  if (p.hidden() != H || p.input() != in)
    throw std::invalid_argument("LSTM backward: parameters do not match the cached window");
  check_shape(dy.shape, Shape{bs, sl, H}, "LSTM backward dy");
  if (!dhn.empty()) check_shape(dhn.shape, Shape{bs, H}, "LSTM backward dhn");
  if (!dcn.empty()) check_shape(dcn.shape, Shape{bs, H}, "LSTM backward dcn");
  if (!dx.empty()) check_shape(dx.shape, Shape{bs, sl, in}, "LSTM backward dx");
  if (!dh0.empty()) check_shape(dh0.shape, Shape{bs, H}, "LSTM backward dh0");
  if (!dc0.empty()) check_shape(dc0.shape, Shape{bs, H}, "LSTM backward dc0");
  if (!g.w_ih.empty()) check_shape(g.w_ih.shape, p.w_ih.shape, "LSTM grad weight_ih");
  if (!g.w_hh.empty()) check_shape(g.w_hh.shape, p.w_hh.shape, "LSTM grad weight_hh");
  if (!g.b_ih.empty()) check_shape(g.b_ih.shape, p.b_ih.shape, "LSTM grad bias_ih");
  if (!g.b_hh.empty()) check_shape(g.b_hh.shape, p.b_hh.shape, "LSTM grad bias_hh");
  T* gs = cache.gates.data();
  const T* hs = cache.h.data();
  const T* cs = cache.c.data();
  T* dhbuf = cache.dh.data();  // [2, bs, H]: slot (t & 1) holds dh flowing into step t
  T* dcs = cache.dc.data();
  if (dhn.empty()) std::fill_n(dhbuf, 2 * bs * H, T(0));
  else for (int s = 0; s < 2; ++s) std::copy_n(dhn.data, bs * H, dhbuf + s * bs * H);
  if (dcn.empty()) std::fill_n(dcs, bs * H, T(0)); else std::copy_n(dcn.data, bs * H, dcs);
  int nt = team_size(bs, (double)bs * G * H);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    Index b0, b1;
    my_rows(bs, b0, b1);
    const Index nb = b1 - b0;
    if (nb > 0) {
      Eigen::Array<T, Eigen::Dynamic, 1> tmp(H);
      for (Index t = sl - 1; t >= 0; --t) {
        T* dh_in = dhbuf + ((t & 1) * bs + b0) * H;       // dL/dh_t from the future
        T* dh_out = dhbuf + ((1 - (t & 1)) * bs + b0) * H;  // dL/dh_{t-1} (written by GEMM)
        for (Index b = 0; b < nb; ++b) {
          const Index row = t * bs + b0 + b;
          T* z = gs + row * G;
          ArrMap<T> i(z, H), f(z + H, H), gg(z + 2 * H, H), o(z + 3 * H, H);
          CArrMap<T> c(cs + ((t + 1) * bs + b0 + b) * H, H), cp(cs + row * H, H);
          ArrMap<T> dh(dh_in + b * H, H), dc(dcs + (b0 + b) * H, H);
          dh += CArrMap<T>(dy.data + ((b0 + b) * sl + t) * H, H);
          // The activations are overwritten in place by dZ (order matters).
          tmp = c.tanh();
          dc += dh * o * (T(1) - tmp.square());        // dL/dc_t
          o = dh * tmp * o * (T(1) - o);               // dz_o
          tmp = i;                                     // i (old)
          i = dc * gg * i * (T(1) - i);                // dz_i
          gg = dc * tmp * (T(1) - gg.square());        // dz_g
          tmp = dc * f;                                // dL/dc_{t-1}
          f = dc * cp * f * (T(1) - f);                // dz_f
          dc = tmp;
        }
        // dh_{t-1} = dZ_t W_hh  (+ nothing else: dy_{t-1} is added at the next iteration)
        if (nb == 1)
          Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>(dh_out, H).noalias() =
              mat(p.w_hh).transpose() *
              Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(gs + (t * bs + b0) * G, G);
        else
          recurrent_gemm<T>(nb, H, G, gs + (t * bs + b0) * G, G, p.w_hh.data, H, T(0), dh_out, H);
      }
    }
  }
  // After the loop, slot (1 - (0 & 1)) = 1 holds dL/dh_{-1} = dh0.
  if (!dh0.empty()) std::copy_n(dhbuf + bs * H, bs * H, dh0.data);
  if (!dc0.empty()) std::copy_n(dcs, bs * H, dc0.data);
  const Index R = sl * bs;
  if (R == 0) {
    if (!dx.empty()) dx.zero();
    return;
  }
  // Whole-window GEMMs: dW_hh += dZᵀ H_prev, dW_ih += dZᵀ X, db += colsum(dZ), dX = dZ W_ih.
  if (!g.w_hh.empty()) gemm_rows<T>(true, false, G, H, R, T(1), gs, G, hs, H, T(1), g.w_hh.data, H);
  if (!g.w_ih.empty())
    gemm_rows<T>(true, false, G, in, R, T(1), gs, G, cache.x.data(), in, T(1), g.w_ih.data, in);
  if (!g.b_ih.empty() || !g.b_hh.empty()) {
    Eigen::Matrix<T, 1, Eigen::Dynamic> db = mat(CView<T>(cache.gates.view())).colwise().sum();
    if (!g.b_ih.empty()) vec(g.b_ih) += db.transpose();
    if (!g.b_hh.empty()) vec(g.b_hh) += db.transpose();
  }
  if (!dx.empty()) {
    T* dxs = cache.x.data();  // x no longer needed: reuse for time-major dX
    gemm_rows<T>(false, false, R, in, G, T(1), gs, G, p.w_ih.data, in, T(0), dxs, in);
    for (Index t = 0; t < sl; ++t)
      for (Index b = 0; b < bs; ++b)
        std::copy_n(dxs + (t * bs + b) * in, in, dx.data + (b * sl + t) * in);
  }
}

template <typename T>
void lstm_infer(const LstmParams<T>& p, CView<T> x, View<T> h, View<T> c, View<T> y,
                Tensor<T>& scratch) {
  p.check();
  if (x.ndim() != 3) throw std::invalid_argument("LSTM infer: x must be [bs, sl, in], got " + x.shape.str());
  const Index bs = x.dim(0), sl = x.dim(1), in = x.dim(2), H = p.hidden(), G = 4 * H;
  if (in != p.input())
    throw std::invalid_argument("LSTM infer: x has " + std::to_string(in) +
                                " features, weight_ih expects " + std::to_string(p.input()));
  check_shape(y.shape, Shape{bs, sl, H}, "LSTM infer y");
  check_shape(h.shape, Shape{bs, H}, "LSTM infer h");
  check_shape(c.shape, Shape{bs, H}, "LSTM infer c");
  if (sl == 0 || bs == 0) return;
  // scratch: [bs, sl, G] input projections (batch-first: rows of x as they are), + [bs, G]
  const Index need = bs * sl * G + bs * G + (bs > 1 ? H * G : 0);
  if (scratch.numel() < need) scratch.resize({need});
  T* zx = scratch.data();
  {
    Eigen::Array<T, Eigen::Dynamic, 1> bias(G);
    for (Index k = 0; k < G; ++k) bias[k] = p.b_ih[k] + p.b_hh[k];
    for (Index r = 0; r < bs * sl; ++r) std::copy_n(bias.data(), G, zx + r * G);
  }
  gemm_rows<T>(false, true, bs * sl, G, in, T(1), x.data, in, p.w_ih.data, in, T(1), zx, G);
  if constexpr (std::is_same_v<T, float>) {
    if (p.w_hh_half && (p.w_hh_half->rows != G || p.w_hh_half->cols != H))
      throw std::invalid_argument("LSTM infer: the half-precision W_hh does not match weight_hh");
    if (bs == 1 && p.w_hh_half) {
      for (Index t = 0; t < sl; ++t) {
        T* z = zx + t * G;
        half_gemv_acc(*p.w_hh_half, h.data, z);
        gate_activations(z, H);
        cell_update(z, c.data, c.data, h.data, H);
        std::copy_n(h.data, H, y.data + t * H);
      }
      return;
    }
  }
  if (bs == 1) {
    // GEMV per step; x-projection row t is contiguous. h is the previous output row.
    auto W = mat(p.w_hh);
    using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
    Eigen::Map<Vec> hv(h.data, H);
    for (Index t = 0; t < sl; ++t) {
      T* z = zx + t * G;
      Eigen::Map<Vec> zv(z, G);
      zv.noalias() += W * hv;
      gate_activations(z, H);
      cell_update(z, c.data, c.data, h.data, H);
      std::copy_n(h.data, H, y.data + t * H);
    }
    return;
  }
  // W_hhᵀ once per call (after the projections and the per-row state in scratch)
  T* wt = zx + bs * sl * G + bs * G;
  if constexpr (std::is_same_v<T, float>) {
    if (p.w_hh_half) {  // Wt[k, r] = W_hh[r, k], widened from half precision (shape checked above)
      const std::uint16_t* w = p.w_hh_half->data.data();
      for (Index r = 0; r < G; ++r)
        for (Index k = 0; k < H; ++k) wt[k * G + r] = half_to_float(w[r * H + k]);
    } else {
      transpose_into<T>(p.w_hh, wt);
    }
  } else {
    transpose_into<T>(p.w_hh, wt);
  }
  int nt = team_size(bs, (double)bs * G * H);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    Index b0, b1;
    my_rows(bs, b0, b1);
    const Index nb = b1 - b0;
    if (nb > 0) {
      // rows of zx for step t are b*sl + t: stride sl*G. Recurrent GEMM on h rows [b0, b1).
      for (Index t = 0; t < sl; ++t) {
        T* z = zx + (b0 * sl + t) * G;
        recurrent_gemm<T>(nb, G, H, h.data + b0 * H, H, wt, G, T(1), z, sl * G);
        for (Index b = 0; b < nb; ++b) {
          T* zb = z + b * sl * G;
          T* hb = h.data + (b0 + b) * H;
          T* cb = c.data + (b0 + b) * H;
          gate_activations(zb, H);
          cell_update(zb, cb, cb, hb, H);
          std::copy_n(hb, H, y.data + ((b0 + b) * sl + t) * H);
        }
      }
    }
  }
}

#define INSPIRE_LSTM_INSTANTIATE(T)                                                          \
  template struct LstmParams<T>;                                                             \
  template struct LstmCache<T>;                                                              \
  template void lstm_forward<T>(const LstmParams<T>&, CView<T>, CView<T>, CView<T>, View<T>, \
                                View<T>, View<T>, LstmCache<T>&);                            \
  template void lstm_backward<T>(const LstmParams<T>&, LstmCache<T>&, CView<T>, CView<T>,    \
                                 CView<T>, View<T>, View<T>, View<T>, const LstmGrads<T>&);  \
  template void lstm_infer<T>(const LstmParams<T>&, CView<T>, View<T>, View<T>, View<T>,     \
                              Tensor<T>&);
INSPIRE_LSTM_INSTANTIATE(float)
INSPIRE_LSTM_INSTANTIATE(double)

}  // namespace nn
