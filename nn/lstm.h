// nn/lstm.h — one unidirectional LSTM layer, PyTorch convention, forward and backward side by side.
// This is the CPU reference of the backend ops lstm_forward / lstm_backward / lstm_infer
// (nn/ops.h); models call them through their backend.
//
//   gate order i, f, g, o;  W_ih [4h, in], W_hh [4h, h], b_ih [4h], b_hh [4h];
//   z_t = x_t W_ihᵀ + b_ih + b_hh + h_{t-1} W_hhᵀ
//   i = σ(z[0:h]), f = σ(z[h:2h]), g = tanh(z[2h:3h]), o = σ(z[3h:4h])
//   c_t = f ⊙ c_{t-1} + i ⊙ g,   h_t = o ⊙ tanh(c_t)
//
// Tensors are batch-first: x [bs, sl, in], y [bs, sl, h]; states h0/c0/hn/cn are [bs, h].
//
// Performance design:
//  * the input projection of the whole window is ONE GEMM before the time loop;
//  * the time loop only does h_{t-1} W_hhᵀ (GEMM over the batch rows) and the fused gate math;
//  * backward: dW_ih, dW_hh, the bias gradients and dX are each ONE GEMM (or one reduction) over
//    the whole window, after the loop (the cache keeps time-major x, h, c and the gate
//    activations; the gate activations are overwritten in place by dZ during backward);
//  * with several OpenMP threads, ONE parallel region spans the whole time loop: the batch rows
//    are split across threads (rows of an LSTM are independent), so there is no fork/join per
//    time step; the big GEMMs after the loop are split by output rows.
//  * a small batch (2 to lstm_unit_slice_max_rows() rows; float with AVX-512; several threads)
//    instead shares each step by hidden units: every thread streams only its units' part of
//    W_hh, for all rows, and the threads meet once per step. Same bits as the row split.
//  * lstm_infer() is the serving path: no cache, the window's input projection as one GEMM, then
//    one GEMV/GEMM per step with W_hh.
//
// Gradient semantics (nn/param.h): parameter gradients ACCUMULATE, input gradients (dx, dh0,
// dc0) are WRITTEN. Empty gradient views are skipped (e.g. frozen weights: no dW GEMMs).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "nn/half.h"  // HalfMatrix (and, for older includers, half_to_float)
#include "nn/int8.h"
#include "nn/tensor.h"

namespace nn {

template <typename T>
struct LstmParams {
  CView<T> w_ih;  // [4h, in]
  CView<T> w_hh;  // [4h, h]   (for AWD-LSTM: the weight-dropped working copy)
  CView<T> b_ih;  // [4h]
  CView<T> b_hh;  // [4h]
  // Optional, serving only (T = float): lstm_infer with a batch of one reads W_hh from this
  // half-precision copy instead of w_hh. Training paths ignore it.
  const HalfMatrix* w_hh_half = nullptr;
  // The same with int8 weights and per-row scales (at most one of the two is set).
  const Int8Matrix* w_hh_i8 = nullptr;
  // Optional, serving only (float), "w8a8" (only where kernels::vnni_usable()): W_hh and/or W_ih
  // as int8 packed for int8 × uint8 products (Int8Packed with group = h), with the activations
  // (h_{t-1}, x) quantized to uint8 per row at each use. lstm_infer then runs the recurrent
  // step (w_hh_w8a8) and the input projection (w_ih_w8a8) with kernels::int8_gemm_u8_acc, for
  // any batch, instead of float (w_hh_w8a8 takes precedence over w_hh_half / w_hh_i8).
  const Int8Packed* w_hh_w8a8 = nullptr;
  const Int8Packed* w_ih_w8a8 = nullptr;
  Index hidden() const { return w_hh.ndim() == 2 ? w_hh.dim(1) : 0; }
  Index input() const { return w_ih.ndim() == 2 ? w_ih.dim(1) : 0; }
  // Throws std::invalid_argument naming the offending tensor if shapes are inconsistent.
  void check() const;
};

template <typename T>
struct LstmGrads {  // each ACCUMULATED; an empty view means "do not compute"
  View<T> w_ih, w_hh, b_ih, b_hh;
};

// Caller-owned cache of one forward window (llm.c style). Sized by lstm_forward; reused without
// reallocation while (bs, sl, in, h) stay the same. lstm_backward consumes it (gates -> dZ).
template <typename T>
struct LstmCache {
  Index bs = 0, sl = 0, in = 0, hid = 0;
  Tensor<T> x;      // [sl, bs, in]   time-major copy of the input (reused for dX in backward)
  Tensor<T> gates;  // [sl, bs, 4h]   i, f, g, o activations (dZ after backward)
  Tensor<T> h;      // [sl+1, bs, h]  h[0] = h0
  Tensor<T> c;      // [sl+1, bs, h]  c[0] = c0
  Tensor<T> dh;     // [2, bs, h]     backward scratch (ping-pong)
  Tensor<T> dc;     // [bs, h]
  Tensor<T> tmp;    // [bs, h]        backward cell scratch (row b used by the thread owning b)
  Tensor<T> db;     // [4h]           backward bias-gradient sum
  Tensor<T> wt;     // W_hhᵀ of this window for the per-step product (AVX-512: packed panels,
                    // nn/gemm_kernels.h; else [h, 4h]); backward re-packs W_hh into it
  Tensor<T> wi;     // W_ihᵀ packed for the window's input projection (AVX-512 float only)
  Tensor<T> bias;   // [4h] b_ih + b_hh, where that projection's sums start
  // A non-CPU backend's own cache of the window (e.g. the CUDA backend's device buffers); the
  // CPU backend never touches it, and the host tensors above stay empty on such a backend.
  std::shared_ptr<void> backend_state;
  void ensure(Index bs, Index sl, Index in, Index hid);
};

// Forward over one window. h0/c0 may be empty (zeros). hn/cn may be empty (not written) and may
// alias h0/c0 (the state is copied into the cache first).
template <typename T>
void lstm_forward(const LstmParams<T>& p, CView<T> x, CView<T> h0, CView<T> c0, View<T> y,
                  View<T> hn, View<T> cn, LstmCache<T>& cache);

// Backward of the window held in `cache`. dy [bs, sl, h]; dhn/dcn: gradients w.r.t. the final
// state (empty = zero; truncated BPTT). dx, dh0, dc0 are WRITTEN (empty = skip; dx empty skips
// the dX GEMM). Parameter gradients in `g` accumulate.
template <typename T>
void lstm_backward(const LstmParams<T>& p, LstmCache<T>& cache, CView<T> dy, CView<T> dhn,
                   CView<T> dcn, View<T> dx, View<T> dh0, View<T> dc0, const LstmGrads<T>& g);

// Inference (serving): no cache. h, c [bs, h] are the state, read and updated in place.
// y [bs, sl, h]. `scratch` is resized as needed (holds the window's input projection).
// With p.w_hh_half or p.w_hh_i8 set (float) W_hh is read from it and p.w_hh is not read at all:
// batch 1 runs a half-precision (int8) GEMV per step, larger batches widen it to float once per
// call.
// lengths (optional, bs values, non-increasing, each in [0, sl]): row b holds lengths[b] real
// positions followed by padding. Its state stops after its last real position (h, c end as
// after a run over that row alone) and y past it is zero: several documents of different
// lengths run as one batch (sorted longest first), each as if alone up to summation order.
template <typename T>
void lstm_infer(const LstmParams<T>& p, CView<T> x, View<T> h, View<T> c, View<T> y,
                Tensor<T>& scratch, const Index* lengths = nullptr);

// The most batch rows for which lstm_forward / lstm_backward / lstm_infer share each time step
// among the threads by hidden units (float, AVX-512, more than one thread); larger batches split
// their rows. Default 32; 0 turns the unit-sliced path off. The two paths give the same bits: this is a speed knob for tests and
// benchmarks (process-wide; set it before training starts).
void set_lstm_unit_slice_max_rows(Index rows);
Index lstm_unit_slice_max_rows();

}  // namespace nn
