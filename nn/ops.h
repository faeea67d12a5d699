// nn/ops.h — every op the models run, as one backend interface (the shape of ggml's backends).
//
// A model holds the nn::Backend it runs on (nn/backend.h) and calls ops through
// backend.ops<T>(), never a free kernel function and never behind an #ifdef. Views passed to an
// op live in that backend's memory (Backend::memory()).
//
// The CPU backend (nn/cpu_backend.cpp) implements every op with the readable reference code in
// nn/*.cpp; it is the specification that any other backend is tested against
// (tests/test_backend_ops.cpp). An op a backend has not implemented yet throws
// nn::NotImplemented("not implemented on <backend> yet: <op>") — the default below — so a
// missing kernel is never a silent wrong answer.
//
// Adding an op: declare it here (with the default that throws), implement it in
// nn/cpu_backend.cpp, test it in tests/test_backend_ops.cpp.
//
// Semantics (same as the reference functions, see their headers): parameter gradients
// ACCUMULATE, input gradients are WRITTEN; an empty gradient view means "do not compute".
// T = float on every backend; T = double exists on the CPU (finite-difference gradient checks).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "nn/batchnorm.h"
#include "nn/elementwise.h"
#include "nn/loss.h"
#include "nn/lstm.h"
#include "nn/rng.h"
#include "nn/tensor.h"

namespace nn {

struct NotImplemented : std::logic_error {
  NotImplemented(const std::string& backend, const std::string& op)
      : std::logic_error("not implemented on " + backend + " yet: " + op) {}
};

template <typename T>
class Ops {
 public:
  explicit Ops(std::string backend) : backend_(std::move(backend)) {}
  virtual ~Ops() = default;
  const std::string& backend_name() const { return backend_; }

 protected:
  [[noreturn]] void nyi(const char* op) const { throw NotImplemented(backend_, op); }

 public:

  // ---- GEMM: row-major C[M,N] = alpha op(A) op(B) + beta C (lda/ldb/ldc: row strides) ----
  virtual void gemm(bool trans_a, bool trans_b, Index M, Index N, Index K, T alpha, const T* A,
                    Index lda, const T* B, Index ldb, T beta, T* C, Index ldc) {
    nyi("gemm");
  }

  // ---- embedding (+ EmbeddingDropout as a per-row mask [V], empty = none) ----
  virtual void embedding_forward(CView<std::int32_t> ids, CView<T> table, CView<T> row_mask,
                                 View<T> out) {
    nyi("embedding_forward");
  }
  virtual void embedding_backward(CView<std::int32_t> ids, CView<T> row_mask, CView<T> dout,
                                  std::int32_t pad_idx, View<T> dtable) {
    nyi("embedding_backward");
  }

  // ---- dropouts: masks, plain, RNN (mask shared over time), weight-drop ----
  virtual void dropout_mask(Rng& rng, double p, View<T> mask) { nyi("dropout_mask"); }
  virtual void dropout_forward(CView<T> x, CView<T> mask, View<T> y) { nyi("dropout_forward"); }
  virtual void dropout_backward(CView<T> dy, CView<T> mask, View<T> dx) { nyi("dropout_backward"); }
  virtual void rnn_dropout_forward(CView<T> x, CView<T> mask, View<T> y) {
    nyi("rnn_dropout_forward");
  }
  virtual void rnn_dropout_backward(CView<T> dy, CView<T> mask, View<T> dx) {
    nyi("rnn_dropout_backward");
  }
  virtual void weight_dropout_forward(CView<T> w_raw, CView<T> mask, View<T> w_eff) {
    nyi("weight_dropout_forward");
  }
  virtual void weight_dropout_backward(CView<T> dw_eff, CView<T> mask, View<T> dw_raw) {
    nyi("weight_dropout_backward");
  }

  // ---- LSTM: a training window (cache kept for backward), its backward, the serving path ----
  virtual void lstm_forward(const LstmParams<T>& p, CView<T> x, CView<T> h0, CView<T> c0,
                            View<T> y, View<T> hn, View<T> cn, LstmCache<T>& cache) {
    nyi("lstm_forward");
  }
  virtual void lstm_backward(const LstmParams<T>& p, LstmCache<T>& cache, CView<T> dy,
                             CView<T> dhn, CView<T> dcn, View<T> dx, View<T> dh0, View<T> dc0,
                             const LstmGrads<T>& g) {
    nyi("lstm_backward");
  }
  // State h, c [bs, h] read and updated in place (single-step recurrence, no cache).
  // lengths (optional): padded rows of different lengths, as nn::lstm_infer; a backend that
  // cannot take them says so with lstm_infer_takes_lengths() (callers then run rows one by one).
  virtual void lstm_infer(const LstmParams<T>& p, CView<T> x, View<T> h, View<T> c, View<T> y,
                          Tensor<T>& scratch, const Index* lengths = nullptr) {
    nyi("lstm_infer");
  }
  virtual bool lstm_infer_takes_lengths() const { return false; }

  // ---- linear (y = x Wᵀ + b), ReLU ----
  virtual void linear_forward(CView<T> x, CView<T> w, CView<T> b, View<T> y) {
    nyi("linear_forward");
  }
  virtual void linear_backward(CView<T> x, CView<T> w, CView<T> dy, View<T> dx, View<T> dw,
                               View<T> db) {
    nyi("linear_backward");
  }
  virtual void relu_forward(CView<T> x, View<T> y) { nyi("relu_forward"); }
  virtual void relu_backward(CView<T> y, CView<T> dy, View<T> dx) { nyi("relu_backward"); }

  // ---- batch-norm (1-D, over the batch rows) ----
  virtual void batchnorm_forward_train(CView<T> x, CView<T> weight, CView<T> bias,
                                       View<T> running_mean, View<T> running_var, View<T> y,
                                       BatchNormCache<T> cache, double momentum = 0.1,
                                       double eps = 1e-5) {
    nyi("batchnorm_forward_train");
  }
  virtual void batchnorm_forward_eval(CView<T> x, CView<T> weight, CView<T> bias,
                                      CView<T> running_mean, CView<T> running_var, View<T> y,
                                      double eps = 1e-5) {
    nyi("batchnorm_forward_eval");
  }
  virtual void batchnorm_backward(CView<T> dy, CView<T> weight, BatchNormCache<T> cache,
                                  View<T> dx, View<T> dweight, View<T> dbias) {
    nyi("batchnorm_backward");
  }

  // ---- masked concat pooling [last, max, avg] ----
  virtual void concat_pool_forward(CView<T> out, CView<std::uint8_t> pad_mask, View<T> pooled,
                                   View<std::int32_t> argmax, Index bptt) {
    nyi("concat_pool_forward");
  }
  virtual void concat_pool_backward(CView<T> dpooled, CView<std::uint8_t> pad_mask,
                                    CView<std::int32_t> argmax, View<T> dout, Index bptt) {
    nyi("concat_pool_backward");
  }

  // ---- fused softmax + cross-entropy ----
  // LM head: logits = hidden Wᵀ + b computed in row chunks (never all [N, V] at once).
  virtual LossResult lm_softmax_ce_forward_backward(CView<T> hidden, CView<T> w, CView<T> b,
                                                    CView<std::int32_t> targets, View<T> dhidden,
                                                    View<T> dw, View<T> db, View<T> workspace,
                                                    Index chunk, T grad_scale = T(1)) {
    nyi("lm_softmax_ce_forward_backward");
    return {};  // not reached
  }
  virtual LossResult lm_softmax_ce_forward(CView<T> hidden, CView<T> w, CView<T> b,
                                           CView<std::int32_t> targets, View<T> workspace,
                                           Index chunk) {
    nyi("lm_softmax_ce_forward");
    return {};  // not reached
  }
  // Classifier: logits [N, C] -> mean loss, dlogits written.
  virtual LossResult softmax_ce_forward_backward(CView<T> logits, CView<std::int32_t> targets,
                                                 View<T> dlogits, T grad_scale = T(1)) {
    nyi("softmax_ce_forward_backward");
    return {};  // not reached
  }

  // ---- optimizer ----
  // One Adam step (nn::ew::adam_update per element) over a flat range of the parameter arena
  // and the matching ranges of the gradient and moment arenas.
  virtual void adam_step(View<T> w, CView<T> g, View<T> m, View<T> v, const ew::AdamScalars& s) {
    nyi("adam_step");
  }
  // PyTorch's clip_grad_norm_ over one flat gradient arena: the L2 norm of `grads` is returned;
  // if it exceeds max_norm every gradient is scaled by max_norm / (norm + 1e-6).
  virtual double clip_grad_norm(View<T> grads, double max_norm) {
    nyi("clip_grad_norm");
    return 0;  // not reached
  }

 private:
  std::string backend_;
};

}  // namespace nn
