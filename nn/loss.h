// nn/loss.h — softmax cross-entropy losses (mean over rows, like F.cross_entropy).
//
// Gradient convention (nn/param.h): parameter gradients (dW, db) ACCUMULATE (+=); input
// gradients (dhidden, dlogits) are WRITTEN (=).
// Targets are int32 class ids in [0, V); an id outside throws std::out_of_range naming the row
// and value. Bad shapes throw std::invalid_argument naming the function and the shapes.
#pragma once

#include <cstdint>

#include "nn/tensor.h"

namespace nn {

struct LossResult {
  double loss = 0;    // mean cross-entropy over the N rows (natural log)
  Index correct = 0;  // rows whose argmax logit equals the target (first max wins on ties)
};

// ---- Fused tied LM decoder + softmax cross-entropy --------------------------------------------
// logits = hidden Wᵀ + b, hidden [N, E], W [V, E] (the tied embedding table), b [V] (or empty:
// no bias), targets [N]. The N×V logits are never held whole: rows are processed in chunks of
// `chunk` rows, each chunk using `workspace`, a caller-owned buffer with at least
// chunk·V elements (pass an empty View to let the function allocate it per call).
//
// Forward + backward in one pass. Returns the mean loss and accuracy; writes
//   dhidden  = grad_scale/N · (softmax − onehot) W        (written; may be empty → skipped)
// and ACCUMULATES
//   dW      += grad_scale/N · (softmax − onehot)ᵀ hidden  (may be empty → skipped)
//   db      += grad_scale/N · Σ_rows (softmax − onehot)   (may be empty → skipped)
// grad_scale multiplies the gradients only (e.g. a loss-scale, or 1/num_micro_batches).
// Bigger chunks make the three GEMMs more efficient (V=60000, E=400, N=256, 1 thread, CPU time:
// chunk 64 0.84 s, 128 0.66 s, 256 0.57 s); the default 256 needs a 61 MB float workspace at
// V=60000 (min(chunk, N)·V elements are used). With more than one
// OpenMP thread (nn::set_num_threads) every GEMM is split into independent vocabulary / hidden
// slices, so results do not depend on the thread count beyond float summation order.
// Targets are validated before anything is written or accumulated.
template <typename T>
LossResult lm_softmax_ce_forward_backward(CView<T> hidden, CView<T> W, CView<T> b,
                                          CView<std::int32_t> targets, View<T> dhidden,
                                          View<T> dW, View<T> db, View<T> workspace = {},
                                          Index chunk = 256, T grad_scale = T(1));

// Forward only (validation): mean loss and number of correct argmax predictions.
template <typename T>
LossResult lm_softmax_ce_forward(CView<T> hidden, CView<T> W, CView<T> b,
                                 CView<std::int32_t> targets, View<T> workspace = {},
                                 Index chunk = 256);

// Elements `workspace` needs for the two functions above.
inline Index lm_softmax_ce_workspace_size(Index V, Index chunk = 256) { return V * chunk; }

// ---- Ordinary softmax cross-entropy over small logits [N, C] (classifier head) ----------------
// Returns mean loss and accuracy; dlogits [N, C] = (softmax − onehot)/N · grad_scale (written;
// may alias logits; may be empty → forward only).
template <typename T>
LossResult softmax_ce_forward_backward(CView<T> logits, CView<std::int32_t> targets,
                                       View<T> dlogits, T grad_scale = T(1));

// Row-wise softmax of logits [N, C] into probs [N, C] (may alias), numerically stable.
template <typename T>
void softmax_forward(CView<T> logits, View<T> probs);

}  // namespace nn
