// nn/elementwise.h — the per-element math of the models, written ONCE.
//
// Each function here is the single definition of one piece of per-element math: the LSTM cell
// (forward and backward), the dropout mask value, the Adam update. They are plain inline
// templates marked INSPIRE_HD (= __host__ __device__ under nvcc, empty otherwise), so that
//   * a CUDA kernel calls them on scalars (one thread per element);
//   * the CPU backend calls them on Eigen arrays (one call per row: Eigen vectorises exp/tanh
//     with AVX2, which a scalar loop over std::exp would not), or on scalars in a loop that the
//     compiler vectorises (Adam, dropout masks).
// The value type V is a scalar (float/double) or an Eigen array expression; the few functions
// that differ between the two (exp, tanh, sqrt) are overloaded below. This header includes no
// Eigen when compiled by nvcc.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define INSPIRE_HD __host__ __device__
#else
#define INSPIRE_HD
#include <Eigen/Core>
#endif

namespace nn::ew {

// ---- the functions that scalars and Eigen arrays spell differently --------------------------
INSPIRE_HD inline float exp_of(float x) {
#if defined(__CUDA_ARCH__)
  return ::expf(x);
#else
  return std::exp(x);
#endif
}
INSPIRE_HD inline double exp_of(double x) {
#if defined(__CUDA_ARCH__)
  return ::exp(x);
#else
  return std::exp(x);
#endif
}
INSPIRE_HD inline float tanh_of(float x) {
#if defined(__CUDA_ARCH__)
  return ::tanhf(x);
#else
  return std::tanh(x);
#endif
}
INSPIRE_HD inline double tanh_of(double x) {
#if defined(__CUDA_ARCH__)
  return ::tanh(x);
#else
  return std::tanh(x);
#endif
}
INSPIRE_HD inline float sqrt_of(float x) {
#if defined(__CUDA_ARCH__)
  return ::sqrtf(x);
#else
  return std::sqrt(x);
#endif
}
INSPIRE_HD inline double sqrt_of(double x) {
#if defined(__CUDA_ARCH__)
  return ::sqrt(x);
#else
  return std::sqrt(x);
#endif
}
INSPIRE_HD inline float sigmoid_of(float x) { return 1.0f / (1.0f + exp_of(-x)); }
INSPIRE_HD inline double sigmoid_of(double x) { return 1.0 / (1.0 + exp_of(-x)); }
INSPIRE_HD inline float one_minus(float x) { return 1.0f - x; }
INSPIRE_HD inline double one_minus(double x) { return 1.0 - x; }

#if !defined(__CUDACC__)
// Eigen arrays (CPU): the same math as whole-row expressions.
template <typename D>
auto tanh_of(const Eigen::ArrayBase<D>& x) {
  return x.derived().tanh();
}
template <typename D>
auto sigmoid_of(const Eigen::ArrayBase<D>& x) {
  using S = typename D::Scalar;
  return (S(1) + (-x.derived()).exp()).inverse();
}
template <typename D>
auto one_minus(const Eigen::ArrayBase<D>& x) {
  using S = typename D::Scalar;
  return S(1) - x.derived();
}
#endif

// ---- LSTM cell (PyTorch gate order i, f, g, o) -----------------------------------------------
// Forward of one cell. In: the pre-activations i, f, g, o (z = x W_ihᵀ + b + h W_hhᵀ) and the
// previous cell state. Out: i, f, g, o overwritten by their activations (backward reads them),
// the new cell state c (may alias c_prev) and hidden state h.
//   i = σ(z_i), f = σ(z_f), g = tanh(z_g), o = σ(z_o);  c = f c_prev + i g;  h = o tanh(c)
template <typename Z, typename CP, typename C, typename H>
INSPIRE_HD inline void lstm_cell_forward(Z& i, Z& f, Z& g, Z& o, const CP& c_prev, C& c, H& h) {
  i = sigmoid_of(i);
  f = sigmoid_of(f);
  g = tanh_of(g);
  o = sigmoid_of(o);
  c = f * c_prev + i * g;
  h = o * tanh_of(c);
}

// Backward of one cell. In: the activations i, f, g, o of the forward, its cell states c and
// c_prev, dh = dL/dh_t (from the output and from step t+1), dc = dL/dc_t from step t+1.
// Out: i, f, g, o overwritten by dL/dz (order matters: each line reads what is still an
// activation), dc = dL/dc_{t-1}. `tmp` is scratch of the value type.
template <typename Z, typename CC, typename DH, typename DC, typename TMP>
INSPIRE_HD inline void lstm_cell_backward(Z& i, Z& f, Z& g, Z& o, const CC& c, const CC& c_prev,
                                          const DH& dh, DC& dc, TMP& tmp) {
  tmp = tanh_of(c);
  dc += dh * o * one_minus(tmp * tmp);  // dL/dc_t
  o = dh * tmp * o * one_minus(o);      // dz_o
  tmp = i;                              // i (old)
  i = dc * g * i * one_minus(i);        // dz_i
  g = dc * tmp * one_minus(g * g);      // dz_g
  tmp = dc * f;                         // dL/dc_{t-1}
  f = dc * c_prev * f * one_minus(f);   // dz_f
  dc = tmp;
}

// ---- dropout ---------------------------------------------------------------------------------
// Inverted dropout: one mask entry from a uniform draw u in [0, 1). keep = 1 / (1 - p),
// q = 1 - p (keep probability). The entry is `keep` with probability q, else 0.
template <typename T>
INSPIRE_HD inline T dropout_mask_value(double u, double q, T keep) {
  return u < q ? keep : T(0);
}

// ---- counter-based random numbers (the CUDA backend's dropout masks) --------------------------
// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11; the
// generator of cuRAND and of PyTorch's CUDA dropout): a pure function of (counter, key), so any
// thread can draw element k of a mask without touching a shared state, and one seed gives the
// same mask on every run and every GPU. Checked against the Random123 known-answer vectors on
// the CPU (tests/test_backend_ops.cpp).
INSPIRE_HD inline void philox4x32_10(const std::uint32_t ctr_in[4], const std::uint32_t key_in[2],
                                     std::uint32_t out[4]) {
  std::uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
  std::uint32_t k0 = key_in[0], k1 = key_in[1];
  for (int r = 0; r < 10; ++r) {
    const std::uint64_t p0 = (std::uint64_t)0xD2511F53u * c0;
    const std::uint64_t p1 = (std::uint64_t)0xCD9E8D57u * c2;
    const std::uint32_t hi0 = (std::uint32_t)(p0 >> 32), lo0 = (std::uint32_t)p0;
    const std::uint32_t hi1 = (std::uint32_t)(p1 >> 32), lo1 = (std::uint32_t)p1;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}
// The 4 uniforms in [0, 1) of block `block` (elements 4·block .. 4·block+3) of the stream `seed`:
// counter = (block lo, block hi, 0, 0), key = (seed lo, seed hi); u = bits · 2⁻³².
INSPIRE_HD inline void philox_uniform4(std::uint64_t seed, std::uint64_t block, double u[4]) {
  const std::uint32_t ctr[4] = {(std::uint32_t)block, (std::uint32_t)(block >> 32), 0u, 0u};
  const std::uint32_t key[2] = {(std::uint32_t)seed, (std::uint32_t)(seed >> 32)};
  std::uint32_t r[4];
  philox4x32_10(ctr, key, r);
  for (int j = 0; j < 4; ++j) u[j] = (double)r[j] * 2.3283064365386963e-10;  // 2^-32
}
// Element k of the counter-based dropout mask of stream `seed` (what the CUDA dropout_mask
// writes; the CPU backend draws its masks from nn::Rng instead, so masks differ between
// backends while their distribution is the same).
template <typename T>
INSPIRE_HD inline T philox_dropout_mask_value(std::uint64_t seed, std::uint64_t k, double q,
                                              T keep) {
  double u[4];
  philox_uniform4(seed, k >> 2, u);
  return dropout_mask_value<T>(u[k & 3], q, keep);
}

// ---- Adam (fastai's Adam with decoupled weight decay; torch float32 arithmetic) ---------------
// The per-step scalars, computed once per parameter tensor in double and applied in float.
struct AdamScalars {
  float decay = 1;        // 1 - lr·wd (1 without weight decay)
  float mom = 0.9f, one_m_mom = 0.1f;
  float sqr = 0.99f, one_m_sqr = 0.01f;
  float step_size = 0;    // lr / (1 - mom^step)
  float inv_debias2 = 1;  // 1 / (1 - sqr_mom^step)
  float eps = 1e-5f;
};
// One element: both moments, then the decayed, bias-corrected update of the weight.
template <typename T>
INSPIRE_HD inline void adam_update(T& w, T g, T& m, T& v, const AdamScalars& s) {
  const T mk = s.mom * m + s.one_m_mom * g;
  const T vk = s.sqr * v + s.one_m_sqr * g * g;
  m = mk;
  v = vk;
  w = w * s.decay - s.step_size * mk / (sqrt_of(vk * s.inv_debias2) + s.eps);
}

}  // namespace nn::ew
