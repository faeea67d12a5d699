// cuda/kernels.cuh — launchers of the CUDA kernels (cuda/kernels.cu), callable from host C++.
// Pointers are device memory. Each launcher returns the CUDA error of the launch (0 = success);
// all run on the default stream, in order with the cuBLAS calls of cuda/cuda_backend.cpp.
//
// NOT RUN ON A GPU YET: these kernels were written and compiled (nvcc 13, sm_80/sm_90) on a
// machine without a GPU. tests/test_cuda_ops.cpp compares each of them with the CPU backend and
// will do so the first time it runs where a GPU is present (tools/device-check.sh).
#pragma once

#include <cstddef>
#include <cstdint>

#include "nn/elementwise.h"

namespace cuda_backend {

using i64 = std::int64_t;

// w, g, m, v: n floats each; one thread per element runs nn::ew::adam_update.
int launch_adam_step(float* w, const float* g, float* m, float* v, i64 n,
                     const nn::ew::AdamScalars& s);

// First index i in [0, n) with ids[i] outside [0, hi), or -1; `flag` is one device i64 of scratch.
// Synchronises (copies the answer back). On error returns -2 and sets *err.
i64 first_id_outside(const std::int32_t* ids, i64 n, std::int32_t hi, i64* flag, int* err);

// out[i, e] = table[ids[i], e] * (row_mask ? row_mask[ids[i]] : 1); ids already validated.
int launch_embedding_forward(const std::int32_t* ids, i64 n, const float* table,
                             const float* row_mask, i64 E, float* out);
// dtable[ids[i], :] += dout[i, :] * row_mask[ids[i]] for ids[i] != pad_idx, deterministic: the
// ids are stably radix-sorted (cub) and each (row, e) is summed by one thread in the order of i
// (the CPU's order). `scratch(bytes)` returns device scratch of at least that many bytes.
using ScratchFn = void* (*)(std::size_t bytes, void* ctx);
int launch_embedding_backward(const std::int32_t* ids, i64 n, const float* row_mask,
                              const float* dout, i64 E, std::int32_t pad_idx, float* dtable,
                              i64 V, ScratchFn scratch, void* ctx);

// Counter-based dropout mask: mask[k] = nn::ew::philox_dropout_mask_value(seed, k, 1-p, keep).
int launch_dropout_mask(float* mask, i64 n, std::uint64_t seed, double q, float keep);
// y[i] = x[i] * m[idx(i)] (accumulate: y[i] += ...), idx(i) = i for plain masks, and
// (i / (sl·C))·C + i % C for an RNN mask [bs, C] over x [bs, sl, C] (sl_c = sl·C, C > 0).
int launch_mul_mask(const float* x, const float* m, float* y, i64 n, i64 sl_c, i64 C,
                    bool accumulate);

// LSTM cell over one time step for bs rows of H units (one thread per (row, unit)):
// z = G[b·ldg + gate·H + j] + b_ih + b_hh; nn::ew::lstm_cell_forward; activations written back
// to G when keep_acts; c_out[b·H + j] (may alias c_prev); h to h1[b·ld1 + j] and, if h2,
// h2[b·ld2 + j].
int launch_lstm_cell_forward(float* G, i64 ldg, const float* b_ih, const float* b_hh,
                             const float* c_prev, float* c_out, float* h1, i64 ld1, float* h2,
                             i64 ld2, i64 bs, i64 H, bool keep_acts);
// Backward of one step: G holds the activations (overwritten by dz); dh = dy[b·ldy + j] (dy may
// be null) + dh_rec[b·H + j] (may be null); dc [bs, H] in: dL/dc_t, out: dL/dc_{t-1}.
int launch_lstm_cell_backward(float* G, i64 ldg, const float* c, const float* c_prev,
                              const float* dy, i64 ldy, const float* dh_rec, float* dc, i64 bs,
                              i64 H);

// out1[j] += Σ_r A[r·lda + j] (and out2 likewise, if not null), j < cols, r < rows; one thread
// per column summing rows in order (deterministic).
int launch_colsum_acc(const float* A, i64 rows, i64 cols, i64 lda, float* out1, float* out2);
// y[r·N + j] = b[j] (rows × N).
int launch_rows_set(float* y, const float* b, i64 rows, i64 N);
int launch_relu_forward(const float* x, float* y, i64 n);
int launch_relu_backward(const float* y, const float* dy, float* dx, i64 n);

// Batch-norm over [N, C] (one thread per channel).
int launch_batchnorm_train(const float* x, const float* w, const float* b, float* rmean,
                           float* rvar, float* y, float* xhat, float* rstd, i64 N, i64 C,
                           double momentum, double eps);
int launch_batchnorm_eval(const float* x, const float* w, const float* b, const float* rmean,
                          const float* rvar, float* y, i64 N, i64 C, double eps);
int launch_batchnorm_backward(const float* dy, const float* w, const float* xhat,
                              const float* rstd, float* dx, float* dw, float* db, i64 N, i64 C);

// Masked concat pooling (nn/pooling.h); one thread per (row, channel). `bad` (device i64, set
// to bs by the launcher) receives the smallest row without a non-pad position (forward) or with
// an argmax outside [0, T) (backward); the launcher copies it back into *bad_row (-1: none).
int launch_concat_pool_forward(const float* out, const std::uint8_t* pad, float* pooled,
                               std::int32_t* argmax, i64 bs, i64 T, i64 C, i64 bptt, i64* bad,
                               i64* bad_row);
int launch_concat_pool_backward(const float* dpooled, const std::uint8_t* pad,
                                const std::int32_t* argmax, float* dout, i64 bs, i64 T, i64 C,
                                i64 bptt, i64* bad, i64* bad_row);

// Softmax cross-entropy over rows of `in` [rows, V] (leading dim V), one block per row. bias
// (may be null) is added to the logits. loss[r] = logsumexp − logit[target[r]] (double),
// correct[r] = (first argmax == target[r]). If out (may alias in):
// out[r, :] = (softmax − onehot) · gscale. Targets already validated.
int launch_softmax_ce_rows(const float* in, float* out, const float* bias,
                           const std::int32_t* targets, i64 rows, i64 V, float gscale,
                           double* loss, std::int32_t* correct);
// Sums loss[0..n) and correct[0..n) in a fixed order (one block); copies them to the host.
int sum_loss(const double* loss, const std::int32_t* correct, i64 n, double* dev_out,
             double* host_loss, i64* host_correct);

// Σ x² in double with a fixed reduction tree (deterministic); partial: 1024 doubles of scratch.
int sum_squares(const float* x, i64 n, double* partial, double* host_out);
int launch_scale(float* x, i64 n, float c);

}  // namespace cuda_backend
