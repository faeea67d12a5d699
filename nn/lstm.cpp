// nn/lstm.cpp — LSTM layer forward / backward / infer: the CPU reference (see nn/lstm.h).
// The cell math is nn/elementwise.h's (shared with device kernels); the matrix kernels are
// nn/gemm_kernels.h's.
#include "nn/lstm.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "nn/backend.h"
#include "nn/elementwise.h"
#include "nn/gemm_kernels.h"

namespace nn {
namespace {

using kernels::gemm_parallel;
using nn::parallel_team;
using kernels::half_gemv_acc;
using nn::FixedSlices;
using nn::split_range;
using kernels::recurrent_gemm;
using kernels::team_size;
using kernels::transpose_into;

template <typename T>
using ArrMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <typename T>
using CArrMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// The cell forward (nn::ew::lstm_cell_forward) of n consecutive hidden units: z points at the
// first unit's i pre-activation, the f, g and o ones `stride` floats apart (the layer's h), and
// receives the activations; c_prev, c, hout point at the same units; c may alias c_prev.
template <typename T>
inline void cell_forward_units(T* z, Index stride, Index n, const T* c_prev, T* c, T* hout) {
  ArrMap<T> i(z, n), f(z + stride, n), g(z + 2 * stride, n), o(z + 3 * stride, n);
  CArrMap<T> cp(c_prev, n);
  ArrMap<T> cm(c, n), hm(hout, n);
  ew::lstm_cell_forward(i, f, g, o, cp, cm, hm);
}

// One whole row: z [4h].
template <typename T>
inline void cell_forward_row(T* z, const T* c_prev, T* c, T* hout, Index h) {
  cell_forward_units(z, h, h, c_prev, c, hout);
}

// The cell backward (nn::ew::lstm_cell_backward) of n consecutive units, laid out as in
// cell_forward_units: the activations in z become dZ; dh (with dy already added) and dc are
// the units' incoming gradients, dc updated; tmp is n floats of scratch.
template <typename T>
inline void cell_backward_units(T* z, Index stride, Index n, const T* c, const T* c_prev, T* dh,
                                T* dc, T* tmp) {
  ArrMap<T> i(z, n), f(z + stride, n), g(z + 2 * stride, n), o(z + 3 * stride, n);
  CArrMap<T> cm(c, n), cp(c_prev, n);
  ArrMap<T> dhm(dh, n), dcm(dc, n), tm(tmp, n);
  ew::lstm_cell_backward(i, f, g, o, cm, cp, dhm, dcm, tm);
}

// rows × [4h] of b_ih + b_hh (the input projection's starting value).
template <typename T>
void fill_bias_rows(const LstmParams<T>& p, T* z, Index rows) {
  const Index G = p.b_ih.numel();
  const T* bi = p.b_ih.data;
  const T* bh = p.b_hh.data;
  for (Index r = 0; r < rows; ++r) {
    T* zr = z + r * G;
    for (Index k = 0; k < G; ++k) zr[k] = bi[k] + bh[k];
  }
}

// The input projection z[rows, 4h] = x[rows, in] · W_ihᵀ + b_ih + b_hh, with AVX-512 (float,
// kernels::rec_packed_supported()): W_ihᵀ packed once (pack_projection, the threads sharing the
// panels), then the packed kernel on blocks of rows, its sums starting from the bias, so no bias
// rows are written and read back (project_packed). A row's bits depend neither on the blocks nor
// on the threads. pack: rec_pack_floats(in, 4h) floats; bias: 4h.
void pack_projection(const LstmParams<float>& p, float* pack, float* bias) {
  const Index G = p.b_ih.numel(), in = p.input();
  for (Index k = 0; k < G; ++k) bias[k] = p.b_ih.data[k] + p.b_hh.data[k];
  const Index panels = (G + kernels::kRecPanel - 1) / kernels::kRecPanel;
  parallel_team(team_size(panels, (double)G * in * 64), [&](int tid, int nth) {
    Index q0, q1;
    split_range(panels, tid, nth, q0, q1);
    const Index j0 = q0 * kernels::kRecPanel, j1 = std::min(G, q1 * kernels::kRecPanel);
    if (j1 > j0)  // the panels before j0 are full, so columns j0.. start at j0·in
      kernels::rec_pack(p.w_ih.data + j0 * in, in, /*trans=*/true, in, j1 - j0, pack + j0 * in);
  });
}

void project_packed(const LstmParams<float>& p, const float* pack, const float* bias,
                    const float* x, Index rows, float* z) {
  const Index G = p.b_ih.numel(), in = p.input();
  // Each block reads all of W_ihᵀ once (one panel at a time, reused by its 8-row tiles from
  // L2). Blocks of 64, 128 and 256 rows measured the same (bench_lstm lstm_fwd, one thread).
  constexpr Index kRows = 256;
  parallel_team(team_size(rows, (double)rows * G * in), [&](int tid, int nth) {
    Index r0, r1;
    split_range(rows, tid, nth, r0, r1);
    for (Index r = r0; r < r1; r += kRows)
      kernels::rec_gemm_packed_bias(std::min(kRows, r1 - r), G, in, x + r * in, in, pack, bias,
                                    z + r * G, G);
  });
}

// The same projection for any T: packed where it can be (pack, bias: scratch, grown once), else
// bias rows and one GEMM.
template <typename T>
void project_inputs(const LstmParams<T>& p, const T* x, Index rows, T* z, Tensor<T>& pack,
                    Tensor<T>& bias) {
  const Index G = p.b_ih.numel(), in = p.input();
  if (rows <= 0) return;
  if constexpr (std::is_same_v<T, float>) {
    if (kernels::rec_packed_supported()) {
      const Index need = kernels::rec_pack_floats(in, G);
      if (pack.numel() < need) pack.resize({need});
      if (bias.numel() < G) bias.resize({G});
      pack_projection(p, pack.data(), bias.data());
      project_packed(p, pack.data(), bias.data(), x, rows, z);
      return;
    }
  }
  fill_bias_rows(p, z, rows);
  gemm_parallel<T>(false, true, rows, G, in, T(1), x, in, p.w_ih.data, in, T(1), z, G);
}

// The right-hand side of the per-step product h·B, prepared once per window: with AVX-512 (float)
// packed into column panels (kernels::rec_pack), else plain (row stride ldb). W is stored
// [rows, cols]; B = Wᵀ when `trans` (the forward's W_hhᵀ), else W (the backward's dZ·W_hh).
template <typename T>
struct RecB {
  const T* b = nullptr;
  Index ldb = 0;
  bool packed = false;
};

template <typename T>
RecB<T> prepare_rec_b(CView<T> W, bool trans, Tensor<T>& buf) {
  const Index rows = W.dim(0), cols = W.dim(1);
  const Index K = trans ? cols : rows, N = trans ? rows : cols;
  if constexpr (std::is_same_v<T, float>) {
    if (kernels::rec_packed_supported()) {
      const Index need = kernels::rec_pack_floats(K, N);
      if (buf.numel() < need) buf.resize({need});
      kernels::rec_pack(W.data, cols, trans, K, N, buf.data());
      return {buf.data(), 0, true};
    }
  }
  if (!trans) return {W.data, cols, false};
  if (buf.numel() < K * N) buf.resize({K * N});
  transpose_into<T>(W, buf.data());
  return {buf.data(), N, false};
}

// C[M, N] (+)= A[M, K] · B (beta 0 or 1).
template <typename T>
inline void rec_step(Index M, Index N, Index K, const T* A, Index lda, const RecB<T>& B, T beta,
                     T* C, Index ldc) {
  if constexpr (std::is_same_v<T, float>) {
    if (B.packed) {
      kernels::rec_gemm_packed(M, N, K, A, lda, B.b, beta, C, ldc);
      return;
    }
  }
  recurrent_gemm<T>(M, N, K, A, lda, B.b, B.ldb, beta, C, ldc);
}

// Batch-1 inference (the serving path), float: per step z_t += W_hh h_{t-1}, then the cell. The
// hidden units are cut into fixed slices (by the size alone: one per 64 units, at most 8, edges
// at multiples of 16); a slice's four gate blocks of W_hh and its part of the cell are computed
// together, so the threads share each step's product (each streams only its slices' rows of W_hh,
// which does not fit in a core's cache) and meet once per step. The slices never depend on the
// thread count, so any number of threads gives the same bits (tests/test_gemm_threads.cpp).
// zx [sl, 4H] holds the input projections; h, c [H] the state (updated); y [sl, H] the outputs.
void infer_batch1(const LstmParams<float>& p, float* zx, Index sl, float* h, float* c, float* y) {
  const Index H = p.hidden(), G = 4 * H;
  const FixedSlices slices(H, 16, 64, 8);
  const HalfMatrix* wh = p.w_hh_half;
  const Int8Matrix* wq = p.w_hh_i8;
  parallel_team(team_size(slices.parts, (double)G * H), [&](int tid, int nth) {
    Index q0, q1;
    split_range(slices.parts, tid, nth, q0, q1);
    for (Index t = 0; t < sl; ++t) {
      float* z = zx + t * G;
      const float* hp = t == 0 ? h : y + (t - 1) * H;
      for (Index q = q0; q < q1; ++q) {
        Index j0, j1;
        slices.bounds(q, j0, j1);
        const Index n = j1 - j0;
        if (n <= 0) continue;
        for (Index g = 0; g < 4; ++g) {
          const Index r0 = g * H + j0;
          if (wq)
            kernels::int8_gemv_acc(*wq, r0, r0 + n, hp, z);
          else if (wh)
            half_gemv_acc(*wh, r0, r0 + n, hp, z);
          else
            kernels::f32_gemv_acc(p.w_hh.data, H, r0, r0 + n, hp, z);
        }
        cell_forward_units(z + j0, H, n, c + j0, c + j0, y + t * H + j0);
      }
      if (nth > 1) {  // step t+1 reads all of h_t (never inline: nth is 1 there)
#pragma omp barrier
      }
    }
  });
  std::copy_n(y + (sl - 1) * H, H, h);
}

// ---- The unit-sliced recurrent step: small batches (2 to lstm_unit_slice_max_rows() rows), float,
// AVX-512, several threads ----
// Splitting a few rows over the threads would make every thread stream all of W_hh (which does
// not fit in a core's cache) at every step, for a few rows each, with half-empty register
// blocks. Instead, as in infer_batch1, the hidden units are cut into fixed slices: a slice's four
// gate blocks of W_hhᵀ (forward) or its columns of W_hh (backward) are packed on their own, by
// the thread that uses them; a thread computes the product for its slices over all rows, then
// those units' cells, and the threads meet once per step. Each element is the same k-ordered FMA chain as in one
// rec_gemm_packed call over all columns, and the slices depend on the shape alone, so the bits
// are those of the row path, with any number of threads (tests/test_lstm.cpp, UnitSliced*).
std::atomic<Index> g_slice_max_rows{32};

constexpr Index kUnitSliceMaxParts = 8;
inline FixedSlices unit_slices(Index H) { return FixedSlices(H, 16, 64, kUnitSliceMaxParts); }

// The unit-sliced path is taken only with more than one thread: on one thread the row loop
// (one product call per step) measured as fast or faster. Both give the same bits, so the
// choice never changes a result.
template <typename T>
bool use_unit_slices(Index bs, Index H) {
  if constexpr (std::is_same_v<T, float>)
    return bs >= 2 && bs <= g_slice_max_rows.load(std::memory_order_relaxed) &&
           kernels::rec_packed_supported() &&
           team_size(unit_slices(H).parts, (double)bs * 4 * H * H) > 1;
  else
    return false;
}

// Floats of the packed slices (the same for both directions: per slice, 4 blocks of K = H or one
// of K = 4H, each rec_pack_floats(K, n)); slice q starts at offset(q).
struct SlicePack {
  FixedSlices sl;
  Index H;
  std::array<Index, kUnitSliceMaxParts + 1> offsets{};  // offsets[q]: where slice q starts
  explicit SlicePack(Index H_) : sl(unit_slices(H_)), H(H_) {
    for (Index q = 0; q < sl.parts; ++q) offsets[q + 1] = offsets[q] + 4 * H * width(q);
  }
  Index width(Index q) const {
    Index j0, j1;
    sl.bounds(q, j0, j1);
    return (j1 - j0 + 15) / 16 * 16;
  }
  Index offset(Index q) const { return offsets[q]; }
  Index floats() const { return offsets[sl.parts]; }
  // Packs slice q of W_hh into out: forward, B = W_hhᵀ, the slice's gate g at
  // offset(q) + g·H·width(q); backward, B = W_hh [4H, H], the slice's columns at offset(q).
  // Each thread packs the slices it computes with, before its time loop: nobody else reads them.
  void pack(Index q, const float* W, bool forward, float* out) const {
    Index j0, j1;
    sl.bounds(q, j0, j1);
    if (j1 <= j0) return;
    float* o = out + offset(q);
    if (forward)
      for (Index g = 0; g < 4; ++g)
        kernels::rec_pack(W + (g * H + j0) * H, H, /*trans=*/true, H, j1 - j0,
                          o + g * H * width(q));
    else
      kernels::rec_pack(W + j0, H, /*trans=*/false, 4 * H, j1 - j0, o);
  }
};

// The forward time loop: gs [sl, bs, 4H] holds x·W_ihᵀ + b and receives the activations; hs, cs
// [sl + 1, bs, H] the states (row 0 given).
void forward_unit_sliced(const SlicePack& sp, const float* W, float* packed, Index bs, Index sl,
                         float* gs, float* hs, float* cs) {
  const Index H = sp.H, G = 4 * H;
  parallel_team(team_size(sp.sl.parts, (double)bs * G * H), [&](int tid, int nth) {
    Index q0, q1;
    split_range(sp.sl.parts, tid, nth, q0, q1);
    for (Index q = q0; q < q1; ++q) sp.pack(q, W, /*forward=*/true, packed);
    for (Index t = 0; t < sl; ++t) {
      float* z = gs + t * bs * G;
      const float* hp = hs + t * bs * H;
      for (Index q = q0; q < q1; ++q) {
        Index j0, j1;
        sp.sl.bounds(q, j0, j1);
        const Index n = j1 - j0;
        if (n <= 0) continue;
        const float* bq = packed + sp.offset(q);
        for (Index g = 0; g < 4; ++g)
          kernels::rec_gemm_packed(bs, n, H, hp, H, bq + g * H * sp.width(q), 1.f, z + g * H + j0, G);
        for (Index b = 0; b < bs; ++b)
          cell_forward_units(z + b * G + j0, H, n, cs + (t * bs + b) * H + j0,
                             cs + ((t + 1) * bs + b) * H + j0, hs + ((t + 1) * bs + b) * H + j0);
      }
      if (nth > 1) {  // step t+1 reads all of h_t
#pragma omp barrier
      }
    }
  });
}

// The backward time loop: dZ_t (in gs) from the cell, then dh_{t-1} = dZ_t W_hh; as
// lstm_backward's row loop. dhbuf [2, bs, H] (slot t & 1 flows into step t), dcs [bs, H],
// tmp [H] scratch, dy [bs, sl, H].
void backward_unit_sliced(const SlicePack& sp, const float* W, float* packed, Index bs, Index sl,
                          float* gs, const float* cs, float* dhbuf, float* dcs, float* tmp,
                          const float* dy) {
  const Index H = sp.H, G = 4 * H;
  parallel_team(team_size(sp.sl.parts, (double)bs * G * H), [&](int tid, int nth) {
    Index q0, q1;
    split_range(sp.sl.parts, tid, nth, q0, q1);
    for (Index q = q0; q < q1; ++q) sp.pack(q, W, /*forward=*/false, packed);
    for (Index t = sl - 1; t >= 0; --t) {
      float* dh_in = dhbuf + (t & 1) * bs * H;
      float* dh_out = dhbuf + (1 - (t & 1)) * bs * H;
      // The cells of this thread's units, every row: activations -> dZ_t. They read only these
      // units of dh_in, which this thread's product wrote (or the initial value).
      for (Index q = q0; q < q1; ++q) {
        Index j0, j1;
        sp.sl.bounds(q, j0, j1);
        const Index n = j1 - j0;
        if (n <= 0) continue;
        for (Index b = 0; b < bs; ++b) {
          float* dh = dh_in + b * H + j0;
          ArrMap<float>(dh, n) += CArrMap<float>(dy + (b * sl + t) * H + j0, n);
          cell_backward_units(gs + (t * bs + b) * G + j0, H, n, cs + ((t + 1) * bs + b) * H + j0,
                              cs + (t * bs + b) * H + j0, dh, dcs + b * H + j0, tmp + j0);
        }
      }
      if (nth > 1) {  // the product reads all of dZ_t
#pragma omp barrier
      }
      for (Index q = q0; q < q1; ++q) {
        Index j0, j1;
        sp.sl.bounds(q, j0, j1);
        if (j1 <= j0) continue;
        kernels::rec_gemm_packed(bs, j1 - j0, G, gs + t * bs * G, G, packed + sp.offset(q), 0.f,
                                 dh_out + j0, H);
      }
    }
  });
}

// h [bs, H] <- each row's last real output in y [bs, sl, H] (rows of length 0 keep h).
void last_outputs_to_state(Index bs, Index sl, Index H, const float* y, const Index* lengths,
                           float* h) {
  for (Index b = 0; b < bs; ++b) {
    const Index len = lengths ? lengths[b] : sl;
    if (len > 0) std::copy_n(y + (b * sl + len - 1) * H, H, h + b * H);
  }
}

// lstm_infer's time loop on the unit slices: zx [bs, sl, 4H] (batch-first) holds the input
// projections; h, c [bs, H] the states (updated); y [bs, sl, H] the outputs. The rows of
// h_{t-1} are kept contiguous in hbuf [2, bs, H] (slot t & 1 is read at step t, the other
// written), so the product's operand is not strided by a whole document and no thread writes
// what another is reading. With lengths, a step runs only the rows still going (a prefix),
// exactly as the row loop.
void infer_unit_sliced(const SlicePack& sp, const float* W, float* packed, Index bs, Index sl,
                       float* zx, float* h, float* c, float* y, const Index* lengths, float* hbuf) {
  const Index H = sp.H, G = 4 * H;
  std::copy_n(h, bs * H, hbuf);
  parallel_team(team_size(sp.sl.parts, (double)bs * G * H), [&](int tid, int nth) {
    Index q0, q1;
    split_range(sp.sl.parts, tid, nth, q0, q1);
    for (Index q = q0; q < q1; ++q) sp.pack(q, W, /*forward=*/true, packed);
    Index active = bs;
    for (Index t = 0; t < sl; ++t) {
      if (lengths) {
        while (active > 0 && lengths[active - 1] <= t) --active;
        if (active == 0) break;
      }
      const float* hp = hbuf + (t & 1) * bs * H;
      float* hn = hbuf + (1 - (t & 1)) * bs * H;
      float* z = zx + t * G;
      for (Index q = q0; q < q1; ++q) {
        Index j0, j1;
        sp.sl.bounds(q, j0, j1);
        const Index n = j1 - j0;
        if (n <= 0) continue;
        const float* bq = packed + sp.offset(q);
        for (Index g = 0; g < 4; ++g)
          kernels::rec_gemm_packed(active, n, H, hp, H, bq + g * H * sp.width(q), 1.f,
                                   z + g * H + j0, sl * G);
        for (Index b = 0; b < active; ++b) {
          cell_forward_units(z + b * sl * G + j0, H, n, c + b * H + j0, c + b * H + j0,
                             hn + b * H + j0);
          std::copy_n(hn + b * H + j0, n, y + (b * sl + t) * H + j0);
        }
      }
      if (nth > 1) {  // step t+1 reads all of h_t
#pragma omp barrier
      }
    }
  });
  last_outputs_to_state(bs, sl, H, y, lengths, h);
}

// ---- w8a8 serving (LstmParams::w_hh_w8a8 / w_ih_w8a8; kernels::vnni_usable()) ----

void check_w8a8(const Int8Packed* W, Index rows, Index cols, const char* what) {
  if (W && (W->rows != rows || W->cols != cols || W->group != rows / 4))
    throw std::invalid_argument(std::string("LSTM infer: the int8 (w8a8) ") + what + " is [" +
                                std::to_string(W->rows) + ", " + std::to_string(W->cols) +
                                "] in groups of " + std::to_string(W->group) + ", expected [" +
                                std::to_string(rows) + ", " + std::to_string(cols) +
                                "] in groups of " + std::to_string(rows / 4));
}

// zx[row, :] += x[row, :] W_ihᵀ for the rows of each document's own positions (all of them
// without lengths), with x quantized to uint8 per row: chunks of up to 192 rows, dealt to the
// threads; each element is computed the same way whatever the thread count.
void project_w8a8(const Int8Packed& W, Index H, const float* x, Index in, Index bs, Index sl,
                  const Index* lengths, float* zx) {
  constexpr Index kChunk = 192;
  const Index G = 4 * H;
  std::vector<std::pair<Index, Index>> chunks;  // (first row, rows)
  for (Index b = 0; b < bs; ++b) {
    const Index len = lengths ? lengths[b] : sl;
    for (Index t = 0; t < len; t += kChunk) chunks.push_back({b * sl + t, std::min(kChunk, len - t)});
  }
  const Index nc = static_cast<Index>(chunks.size());
  parallel_team(team_size(nc, (double)bs * sl * G * in), [&](int tid, int nth) {
    std::vector<std::uint8_t> u(static_cast<std::size_t>(kChunk * W.kp));
    std::vector<float> sa(kChunk);
    std::vector<std::int32_t> zp(kChunk);
    for (Index ci = tid; ci < nc; ci += nth) {
      const auto [r0, m] = chunks[ci];
      kernels::quantize_u8_rows(m, in, x + r0 * in, in, u.data(), W.kp, sa.data(), zp.data());
      for (Index g = 0; g < 4; ++g)
        kernels::int8_gemm_u8_acc(m, u.data(), W.kp, sa.data(), zp.data(), W, g * W.group_padded,
                                  g * W.group_padded + H, zx + r0 * G + g * H, G);
    }
  });
}

// lstm_infer's time loop with W_hh in w8a8, any batch: as infer_unit_sliced, the hidden units
// are cut into fixed slices shared among the threads, and the threads meet once per step. Each
// thread quantizes the running rows of h_{t-1} (read from y, or h at t = 0) into its own buffer
// (the same bytes in every thread), then computes its slices' four gate blocks for those rows
// and their cells. zx [bs, sl, 4H], h, c [bs, H] (updated), y [bs, sl, H].
void infer_w8a8(const Int8Packed& W, Index H, Index bs, Index sl, float* zx, float* h, float* c,
                float* y, const Index* lengths) {
  const Index G = 4 * H;
  const FixedSlices slices(H, 16, 64, 8);
  parallel_team(team_size(slices.parts, (double)bs * G * H), [&](int tid, int nth) {
    Index q0, q1;
    split_range(slices.parts, tid, nth, q0, q1);
    std::vector<std::uint8_t> u(static_cast<std::size_t>(bs * W.kp));
    std::vector<float> sa(bs);
    std::vector<std::int32_t> zp(bs);
    Index active = bs;
    for (Index t = 0; t < sl; ++t) {
      if (lengths) {
        while (active > 0 && lengths[active - 1] <= t) --active;
        if (active == 0) break;
      }
      if (t == 0)
        kernels::quantize_u8_rows(active, H, h, H, u.data(), W.kp, sa.data(), zp.data());
      else
        kernels::quantize_u8_rows(active, H, y + (t - 1) * H, sl * H, u.data(), W.kp, sa.data(),
                                  zp.data());
      float* z = zx + t * G;
      for (Index q = q0; q < q1; ++q) {
        Index j0, j1;
        slices.bounds(q, j0, j1);
        const Index n = j1 - j0;
        if (n <= 0) continue;
        for (Index g = 0; g < 4; ++g)
          kernels::int8_gemm_u8_acc(active, u.data(), W.kp, sa.data(), zp.data(), W,
                                    g * W.group_padded + j0, g * W.group_padded + j1,
                                    z + g * H + j0, sl * G);
        for (Index b = 0; b < active; ++b)
          cell_forward_units(z + b * sl * G + j0, H, n, c + b * H + j0, c + b * H + j0,
                             y + (b * sl + t) * H + j0);
      }
      if (nth > 1) {  // step t+1 reads all of h_t
#pragma omp barrier
      }
    }
  });
  last_outputs_to_state(bs, sl, H, y, lengths, h);
}

}  // namespace

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
  tmp.resize({bs, hid});
  db.resize({4 * hid});
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
  // z = x W_ihᵀ + b_ih + b_hh for the whole window at once.
  project_inputs<T>(p, xs, sl * bs, gs, cache.wi, cache.bias);
  if constexpr (std::is_same_v<T, float>) {
    if (use_unit_slices<T>(bs, H)) {  // a few rows: the threads share each step by hidden units
      const SlicePack sp(H);
      if (cache.wt.numel() < sp.floats()) cache.wt.resize({sp.floats()});
      forward_unit_sliced(sp, p.w_hh.data, cache.wt.data(), bs, sl, gs, hs, cs);
      for (Index b = 0; b < bs; ++b)
        for (Index t = 0; t < sl; ++t)
          std::copy_n(hs + ((t + 1) * bs + b) * H, H, y.data + (b * sl + t) * H);
      if (!hn.empty()) std::copy_n(hs + sl * bs * H, bs * H, hn.data);
      if (!cn.empty()) std::copy_n(cs + sl * bs * H, bs * H, cn.data);
      return;
    }
  }
  // W_hhᵀ once per window (packed or transposed), so that the per-step product streams it.
  const RecB<T> wt = prepare_rec_b<T>(p.w_hh, /*trans=*/true, cache.wt);
  // Time loop: batch rows split over threads, one parallel region for the whole loop.
  int nt = team_size(bs, (double)bs * G * H);
  parallel_team(nt, [&](int tid, int nth) {
    Index b0, b1;
    split_range(bs, tid, nth, b0, b1);
    const Index nb = b1 - b0;
    if (nb > 0) {
      for (Index t = 0; t < sl; ++t) {
        T* z = gs + (t * bs + b0) * G;
        const T* hp = hs + (t * bs + b0) * H;
        if (nb == 1)  // one row: GEMV on W_hh as stored (no transposed read)
          Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>(z, G).noalias() +=
              mat(p.w_hh) * Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(hp, H);
        else
          rec_step<T>(nb, G, H, hp, H, wt, T(1), z, G);
        for (Index b = 0; b < nb; ++b) {
          cell_forward_row(z + b * G, cs + (t * bs + b0 + b) * H,
                           cs + ((t + 1) * bs + b0 + b) * H, hs + ((t + 1) * bs + b0 + b) * H, H);
        }
      }
      for (Index b = b0; b < b1; ++b)
        for (Index t = 0; t < sl; ++t)
          std::copy_n(hs + ((t + 1) * bs + b) * H, H, y.data + (b * sl + t) * H);
    }
  });
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
  bool sliced = false;
  if constexpr (std::is_same_v<T, float>) {
    if (use_unit_slices<T>(bs, H)) {  // a few rows: the threads share each step by hidden units
      const SlicePack sp(H);
      if (cache.wt.numel() < sp.floats()) cache.wt.resize({sp.floats()});
      backward_unit_sliced(sp, p.w_hh.data, cache.wt.data(), bs, sl, gs, cs, dhbuf, dcs,
                           cache.tmp.data(), dy.data);
      sliced = true;
    }
  }
  // W_hh for the per-step dZ·W_hh (packed with AVX-512; the forward's W_hhᵀ is no longer needed).
  const RecB<T> wr = sliced ? RecB<T>{} : prepare_rec_b<T>(p.w_hh, /*trans=*/false, cache.wt);
  int nt = sliced ? 1 : team_size(bs, (double)bs * G * H);
  if (!sliced) parallel_team(nt, [&](int tid, int nth) {
    Index b0, b1;
    split_range(bs, tid, nth, b0, b1);
    const Index nb = b1 - b0;
    if (nb > 0) {
      T* tmp = cache.tmp.data() + b0 * H;  // this thread's cell scratch
      for (Index t = sl - 1; t >= 0; --t) {
        T* dh_in = dhbuf + ((t & 1) * bs + b0) * H;       // dL/dh_t from the future
        T* dh_out = dhbuf + ((1 - (t & 1)) * bs + b0) * H;  // dL/dh_{t-1} (written by GEMM)
        for (Index b = 0; b < nb; ++b) {  // activations -> dZ
          const Index row = t * bs + b0 + b;
          T* dh = dh_in + b * H;
          ArrMap<T>(dh, H) += CArrMap<T>(dy.data + ((b0 + b) * sl + t) * H, H);
          cell_backward_units(gs + row * G, H, H, cs + ((t + 1) * bs + b0 + b) * H, cs + row * H,
                              dh, dcs + (b0 + b) * H, tmp);
        }
        // dh_{t-1} = dZ_t W_hh  (+ nothing else: dy_{t-1} is added at the next iteration)
        if (nb == 1)
          Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>>(dh_out, H).noalias() =
              mat(p.w_hh).transpose() *
              Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(gs + (t * bs + b0) * G, G);
        else
          rec_step<T>(nb, H, G, gs + (t * bs + b0) * G, G, wr, T(0), dh_out, H);
      }
    }
  });
  // After the loop, slot (1 - (0 & 1)) = 1 holds dL/dh_{-1} = dh0.
  if (!dh0.empty()) std::copy_n(dhbuf + bs * H, bs * H, dh0.data);
  if (!dc0.empty()) std::copy_n(dcs, bs * H, dc0.data);
  const Index R = sl * bs;
  if (R == 0) {
    if (!dx.empty()) dx.zero();
    return;
  }
  // Whole-window GEMMs: dW_hh += dZᵀ H_prev, dW_ih += dZᵀ X, db += colsum(dZ), dX = dZ W_ih.
  if (!g.w_hh.empty()) gemm_parallel<T>(true, false, G, H, R, T(1), gs, G, hs, H, T(1), g.w_hh.data, H);
  if (!g.w_ih.empty())
    gemm_parallel<T>(true, false, G, in, R, T(1), gs, G, cache.x.data(), in, T(1), g.w_ih.data, in);
  if (!g.b_ih.empty() || !g.b_hh.empty()) {
    // db = Σ_rows dZ (row by row), added to each bias gradient.
    T* db = cache.db.data();
    std::fill_n(db, G, T(0));
    for (Index r = 0; r < R; ++r) {
      const T* z = gs + r * G;
      for (Index k = 0; k < G; ++k) db[k] += z[k];
    }
    for (View<T> gb : {g.b_ih, g.b_hh})
      if (!gb.empty())
        for (Index k = 0; k < G; ++k) gb.data[k] += db[k];
  }
  if (!dx.empty()) {
    T* dxs = cache.x.data();  // x no longer needed: reuse for time-major dX
    gemm_parallel<T>(false, false, R, in, G, T(1), gs, G, p.w_ih.data, in, T(0), dxs, in);
    for (Index t = 0; t < sl; ++t)
      for (Index b = 0; b < bs; ++b)
        std::copy_n(dxs + (t * bs + b) * in, in, dx.data + (b * sl + t) * in);
  }
}

template <typename T>
void lstm_infer(const LstmParams<T>& p, CView<T> x, View<T> h, View<T> c, View<T> y,
                Tensor<T>& scratch, const Index* lengths) {
  p.check();
  if (x.ndim() != 3) throw std::invalid_argument("LSTM infer: x must be [bs, sl, in], got " + x.shape.str());
  const Index bs = x.dim(0), sl = x.dim(1), in = x.dim(2), H = p.hidden(), G = 4 * H;
  if (in != p.input())
    throw std::invalid_argument("LSTM infer: x has " + std::to_string(in) +
                                " features, weight_ih expects " + std::to_string(p.input()));
  check_shape(y.shape, Shape{bs, sl, H}, "LSTM infer y");
  check_shape(h.shape, Shape{bs, H}, "LSTM infer h");
  check_shape(c.shape, Shape{bs, H}, "LSTM infer c");
  if (lengths)
    for (Index b = 0; b < bs; ++b)
      if (lengths[b] < 0 || lengths[b] > sl || (b > 0 && lengths[b] > lengths[b - 1]))
        throw std::invalid_argument("LSTM infer: lengths must be non-increasing and within [0, " +
                                    std::to_string(sl) + "]; row " + std::to_string(b) + " has " +
                                    std::to_string(lengths[b]));
  if (sl == 0 || bs == 0) return;
  if (lengths)  // each row's positions past its length: zero output
    for (Index b = 0; b < bs; ++b)
      std::fill(y.data + (b * sl + lengths[b]) * H, y.data + (b + 1) * sl * H, T(0));
  if (bs == 1 && lengths) {  // one row: the plain run over its own length
    const Index n = lengths[0];
    if (n == 0) return;
    lstm_infer<T>(p, CView<T>(x.data, Shape{1, n, in}), h, c,
                  View<T>(y.data, Shape{1, n, H}), scratch, nullptr);
    return;
  }
  // scratch: [bs, sl, G] input projections (batch-first: rows of x as they are), + [bs, G]
  // then (bs > 1) W_hh for the steps: packed, sliced or transposed, where W_ih packed for the
  // projection (float, AVX-512) lies before that.
  const bool packed_proj = std::is_same_v<T, float> && bs > 1 && kernels::rec_packed_supported();
  const Index need = bs * sl * G + bs * G +
                     (bs > 1 ? std::max({H * G, kernels::rec_pack_floats(H, G), SlicePack(H).floats(),
                                         packed_proj ? kernels::rec_pack_floats(in, G) : Index(0)})
                             : 0);
  if (scratch.numel() < need) scratch.resize({need});
  T* zx = scratch.data();
  bool projected = false;
  if constexpr (std::is_same_v<T, float>) {
    check_w8a8(p.w_ih_w8a8, G, in, "W_ih");
    check_w8a8(p.w_hh_w8a8, G, H, "W_hh");
    if (p.w_ih_w8a8) {
      for (Index b = 0; b < (lengths ? bs : 1); ++b)
        fill_bias_rows(p, zx + b * sl * G, lengths ? lengths[b] : bs * sl);
      project_w8a8(*p.w_ih_w8a8, H, x.data, in, bs, sl, lengths, zx);
      projected = true;
    } else if (packed_proj) {  // a batch: W_ih packed once, each row's own positions only
      float* pack = zx + bs * sl * G + bs * G;  // the W_hh buffer, filled after this
      float* bias = zx + bs * sl * G;           // the [bs, G] scratch, used after this
      pack_projection(p, pack, bias);
      if (lengths) {
        for (Index b = 0; b < bs; ++b)
          project_packed(p, pack, bias, x.data + b * sl * in, lengths[b], zx + b * sl * G);
      } else {
        project_packed(p, pack, bias, x.data, bs * sl, zx);
      }
      projected = true;
    }
  }
  if (projected) {
  } else if (lengths) {
    // Each row's own positions only: the padding past a row's length is never projected (nor
    // read by the steps below), and each row's product is the one it gets alone.
    for (Index b = 0; b < bs; ++b) {
      if (lengths[b] == 0) continue;
      fill_bias_rows(p, zx + b * sl * G, lengths[b]);
      gemm_parallel<T>(false, true, lengths[b], G, in, T(1), x.data + b * sl * in, in,
                       p.w_ih.data, in, T(1), zx + b * sl * G, G);
    }
  } else {
    fill_bias_rows(p, zx, bs * sl);
    gemm_parallel<T>(false, true, bs * sl, G, in, T(1), x.data, in, p.w_ih.data, in, T(1), zx, G);
  }
  if constexpr (std::is_same_v<T, float>) {
    if (p.w_hh_w8a8) {
      infer_w8a8(*p.w_hh_w8a8, H, bs, sl, zx, h.data, c.data, y.data, lengths);
      return;
    }
    if (p.w_hh_half && (p.w_hh_half->rows != G || p.w_hh_half->cols != H))
      throw std::invalid_argument("LSTM infer: the half-precision W_hh does not match weight_hh");
    if (p.w_hh_i8 && (p.w_hh_i8->rows != G || p.w_hh_i8->cols != H))
      throw std::invalid_argument("LSTM infer: the int8 W_hh does not match weight_hh");
    if (bs == 1) {
      infer_batch1(p, zx, sl, h.data, c.data, y.data);
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
      cell_forward_row(z, c.data, c.data, h.data, H);
      std::copy_n(h.data, H, y.data + t * H);
    }
    return;
  }
  // W_hhᵀ once per call (after the projections and the per-row state in scratch): packed
  // panels with AVX-512 (float), else transposed.
  T* wbuf = zx + bs * sl * G + bs * G;
  if constexpr (std::is_same_v<T, float>) {
    if (!p.w_hh_half && !p.w_hh_i8 && use_unit_slices<T>(bs, H)) {  // a few rows: share by units
      const SlicePack sp(H);
      infer_unit_sliced(sp, p.w_hh.data, wbuf, bs, sl, zx, h.data, c.data, y.data, lengths,
                        zx + bs * sl * G);  // the [bs, G] scratch: 2 × [bs, H]
      return;
    }
  }
  RecB<T> wt{wbuf, G, false};
  if constexpr (std::is_same_v<T, float>) {
    if (p.w_hh_half) {  // Wt[k, r] = W_hh[r, k], widened from half precision (shape checked above)
      const HalfMatrix& w = *p.w_hh_half;  // row-major or panels
      for (Index r = 0; r < G; ++r)
        for (Index k = 0; k < H; ++k) wbuf[k * G + r] = w.at(r, k);
    } else if (p.w_hh_i8) {  // the same, from int8 · scale
      for (Index r = 0; r < G; ++r)
        for (Index k = 0; k < H; ++k) wbuf[k * G + r] = p.w_hh_i8->at(r, k);
    } else if (kernels::rec_packed_supported()) {
      kernels::rec_pack(p.w_hh.data, H, /*trans=*/true, H, G, wbuf);
      wt.packed = true;
    } else {
      transpose_into<T>(p.w_hh, wbuf);
    }
  } else {
    transpose_into<T>(p.w_hh, wbuf);
  }
  int nt = team_size(bs, (double)bs * G * H);
  parallel_team(nt, [&](int tid, int nth) {
    Index b0, b1;
    split_range(bs, tid, nth, b0, b1);
    const Index nb = b1 - b0;
    if (nb > 0) {
      // rows of zx for step t are b*sl + t: stride sl*G. Recurrent GEMM on h rows [b0, b1);
      // with lengths, on the rows still running (a prefix: lengths do not increase).
      Index active = nb;
      for (Index t = 0; t < sl; ++t) {
        if (lengths) {
          while (active > 0 && lengths[b0 + active - 1] <= t) --active;
          if (active == 0) break;
        }
        T* z = zx + (b0 * sl + t) * G;
        rec_step<T>(active, G, H, h.data + b0 * H, H, wt, T(1), z, sl * G);
        for (Index b = 0; b < active; ++b) {
          T* zb = z + b * sl * G;
          T* hb = h.data + (b0 + b) * H;
          T* cb = c.data + (b0 + b) * H;
          cell_forward_row(zb, cb, cb, hb, H);
          std::copy_n(hb, H, y.data + ((b0 + b) * sl + t) * H);
        }
      }
    }
  });
}

void set_lstm_unit_slice_max_rows(Index rows) { g_slice_max_rows.store(std::max<Index>(0, rows)); }
Index lstm_unit_slice_max_rows() { return g_slice_max_rows.load(); }

#define INSPIRE_LSTM_INSTANTIATE(T)                                                          \
  template struct LstmParams<T>;                                                             \
  template struct LstmCache<T>;                                                              \
  template void lstm_forward<T>(const LstmParams<T>&, CView<T>, CView<T>, CView<T>, View<T>, \
                                View<T>, View<T>, LstmCache<T>&);                            \
  template void lstm_backward<T>(const LstmParams<T>&, LstmCache<T>&, CView<T>, CView<T>,    \
                                 CView<T>, View<T>, View<T>, View<T>, const LstmGrads<T>&);  \
  template void lstm_infer<T>(const LstmParams<T>&, CView<T>, View<T>, View<T>, View<T>,     \
                              Tensor<T>&, const Index*);
INSPIRE_LSTM_INSTANTIATE(float)
INSPIRE_LSTM_INSTANTIATE(double)

}  // namespace nn
