// nn/cpu_backend.cpp — the CPU backend: host memory and every op of nn/ops.h, implemented by the
// readable reference code of nn/*.cpp. Every other backend is tested against this one.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

#include "nn/activation.h"
#include "nn/backend.h"
#include "nn/batchnorm.h"
#include "nn/dropout.h"
#include "nn/elementwise.h"
#include "nn/embedding.h"
#include "nn/linear.h"
#include "nn/loss.h"
#include "nn/lstm.h"
#include "nn/parallel.h"
#include "nn/pooling.h"

namespace nn {
namespace {

template <typename T>
class CpuOps final : public Ops<T> {
 public:
  CpuOps() : Ops<T>("cpu") {}

  void gemm(bool ta, bool tb, Index M, Index N, Index K, T alpha, const T* A, Index lda,
            const T* B, Index ldb, T beta, T* C, Index ldc) override {
    nn::gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }

  void embedding_forward(CView<std::int32_t> ids, CView<T> table, CView<T> row_mask,
                         View<T> out) override {
    nn::embedding_forward<T>(ids, table, row_mask, out);
  }
  void embedding_backward(CView<std::int32_t> ids, CView<T> row_mask, CView<T> dout,
                          std::int32_t pad_idx, View<T> dtable) override {
    nn::embedding_backward<T>(ids, row_mask, dout, pad_idx, dtable);
  }

  void dropout_mask(Rng& rng, double p, View<T> mask) override {
    nn::dropout_mask<T>(rng, p, mask);
  }
  void dropout_forward(CView<T> x, CView<T> mask, View<T> y) override {
    nn::dropout_forward<T>(x, mask, y);
  }
  void dropout_backward(CView<T> dy, CView<T> mask, View<T> dx) override {
    nn::dropout_backward<T>(dy, mask, dx);
  }
  void rnn_dropout_forward(CView<T> x, CView<T> mask, View<T> y) override {
    nn::rnn_dropout_forward<T>(x, mask, y);
  }
  void rnn_dropout_backward(CView<T> dy, CView<T> mask, View<T> dx) override {
    nn::rnn_dropout_backward<T>(dy, mask, dx);
  }
  void weight_dropout_forward(CView<T> w_raw, CView<T> mask, View<T> w_eff) override {
    nn::weight_dropout_forward<T>(w_raw, mask, w_eff);
  }
  void weight_dropout_backward(CView<T> dw_eff, CView<T> mask, View<T> dw_raw) override {
    nn::weight_dropout_backward<T>(dw_eff, mask, dw_raw);
  }

  void lstm_forward(const LstmParams<T>& p, CView<T> x, CView<T> h0, CView<T> c0, View<T> y,
                    View<T> hn, View<T> cn, LstmCache<T>& cache) override {
    nn::lstm_forward<T>(p, x, h0, c0, y, hn, cn, cache);
  }
  void lstm_backward(const LstmParams<T>& p, LstmCache<T>& cache, CView<T> dy, CView<T> dhn,
                     CView<T> dcn, View<T> dx, View<T> dh0, View<T> dc0,
                     const LstmGrads<T>& g) override {
    nn::lstm_backward<T>(p, cache, dy, dhn, dcn, dx, dh0, dc0, g);
  }
  void lstm_infer(const LstmParams<T>& p, CView<T> x, View<T> h, View<T> c, View<T> y,
                  Tensor<T>& scratch, const Index* lengths = nullptr) override {
    nn::lstm_infer<T>(p, x, h, c, y, scratch, lengths);
  }
  bool lstm_infer_takes_lengths() const override { return true; }

  void linear_forward(CView<T> x, CView<T> w, CView<T> b, View<T> y) override {
    nn::linear_forward<T>(x, w, b, y);
  }
  void linear_backward(CView<T> x, CView<T> w, CView<T> dy, View<T> dx, View<T> dw,
                       View<T> db) override {
    nn::linear_backward<T>(x, w, dy, dx, dw, db);
  }
  void relu_forward(CView<T> x, View<T> y) override { nn::relu_forward<T>(x, y); }
  void relu_backward(CView<T> y, CView<T> dy, View<T> dx) override {
    nn::relu_backward<T>(y, dy, dx);
  }

  void batchnorm_forward_train(CView<T> x, CView<T> weight, CView<T> bias, View<T> running_mean,
                               View<T> running_var, View<T> y, BatchNormCache<T> cache,
                               double momentum, double eps) override {
    nn::batchnorm_forward_train<T>(x, weight, bias, running_mean, running_var, y, cache,
                                   momentum, eps);
  }
  void batchnorm_forward_eval(CView<T> x, CView<T> weight, CView<T> bias, CView<T> running_mean,
                              CView<T> running_var, View<T> y, double eps) override {
    nn::batchnorm_forward_eval<T>(x, weight, bias, running_mean, running_var, y, eps);
  }
  void batchnorm_backward(CView<T> dy, CView<T> weight, BatchNormCache<T> cache, View<T> dx,
                          View<T> dweight, View<T> dbias) override {
    nn::batchnorm_backward<T>(dy, weight, cache, dx, dweight, dbias);
  }

  void concat_pool_forward(CView<T> out, CView<std::uint8_t> pad_mask, View<T> pooled,
                           View<std::int32_t> argmax, Index bptt) override {
    nn::masked_concat_pool_forward<T>(out, pad_mask, pooled, argmax, bptt);
  }
  void concat_pool_backward(CView<T> dpooled, CView<std::uint8_t> pad_mask,
                            CView<std::int32_t> argmax, View<T> dout, Index bptt) override {
    nn::masked_concat_pool_backward<T>(dpooled, pad_mask, argmax, dout, bptt);
  }

  LossResult lm_softmax_ce_forward_backward(CView<T> hidden, CView<T> w, CView<T> b,
                                            CView<std::int32_t> targets, View<T> dhidden,
                                            View<T> dw, View<T> db, View<T> workspace,
                                            Index chunk, T grad_scale) override {
    return nn::lm_softmax_ce_forward_backward<T>(hidden, w, b, targets, dhidden, dw, db,
                                                 workspace, chunk, grad_scale);
  }
  LossResult lm_softmax_ce_forward(CView<T> hidden, CView<T> w, CView<T> b,
                                   CView<std::int32_t> targets, View<T> workspace,
                                   Index chunk) override {
    return nn::lm_softmax_ce_forward<T>(hidden, w, b, targets, workspace, chunk);
  }
  LossResult softmax_ce_forward_backward(CView<T> logits, CView<std::int32_t> targets,
                                         View<T> dlogits, T grad_scale) override {
    return nn::softmax_ce_forward_backward<T>(logits, targets, dlogits, grad_scale);
  }

  void adam_step(View<T> w, CView<T> g, View<T> m, View<T> v,
                 const ew::AdamScalars& s) override {
    const Index n = w.numel();
    if (g.numel() != n || m.numel() != n || v.numel() != n)
      throw std::invalid_argument("adam_step: weights " + w.shape.str() + ", grads " +
                                  g.shape.str() + ", moments " + m.shape.str() + " / " +
                                  v.shape.str() + " must have the same number of elements");
    T* __restrict pw = w.data;
    const T* __restrict pg = g.data;
    T* __restrict pm = m.data;
    T* __restrict pv = v.data;
    const ew::AdamScalars sc = s;
    parallel_ranges(n, 1 << 16, [&](Index k0, Index k1) {
#pragma omp simd
      for (Index k = k0; k < k1; ++k) ew::adam_update(pw[k], pg[k], pm[k], pv[k], sc);
    });
  }

  double clip_grad_norm(View<T> grads, double max_norm) override {
    if (!(max_norm > 0))
      throw std::invalid_argument("clip_grad_norm: max_norm must be > 0, got " +
                                  std::to_string(max_norm));
    const Index n = grads.numel();
    const T* p = grads.data;
    // Per-thread partial sums (at most 64 threads' worth), added in thread order.
    double part[64] = {};
    const int parts = std::min(64, num_threads());
    parallel_team(n > (1 << 16) ? parts : 1, [&](int tid, int nth) {
      Index k0, k1;
      split_range(n, tid, nth, k0, k1);
      double s = 0;
      for (Index k = k0; k < k1; ++k) s += (double)p[k] * (double)p[k];
      part[tid] = s;
    });
    double ss = 0;
    for (int t = 0; t < parts; ++t) ss += part[t];
    const double norm = std::sqrt(ss);
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1) {
      const T c = (T)coef;
      T* q = grads.data;
      parallel_ranges(n, 1 << 16, [&](Index k0, Index k1) {
#pragma omp simd
        for (Index k = k0; k < k1; ++k) q[k] *= c;
      });
    }
    return norm;
  }
};

void host_free(void* p) { std::free(p); }

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  Memory memory() const override { return Memory::host; }

  Buffer alloc(std::size_t bytes) override {
    void* p = std::calloc(bytes ? bytes : 1, 1);  // 16-byte aligned; calloc'd pages are lazy
    if (!p) throw std::bad_alloc();
    return Buffer(p, bytes, Memory::host, &host_free);
  }
  void copy_from_host(Buffer& dst, std::size_t off, const void* src, std::size_t bytes) override {
    check_range(dst, off, bytes, "cpu copy_from_host");
    if (bytes) std::memcpy(static_cast<char*>(dst.data()) + off, src, bytes);
  }
  void copy_to_host(void* dst, const Buffer& src, std::size_t off, std::size_t bytes) override {
    check_range(src, off, bytes, "cpu copy_to_host");
    if (bytes) std::memcpy(dst, static_cast<const char*>(src.data()) + off, bytes);
  }
  void copy(Buffer& dst, std::size_t doff, const Buffer& src, std::size_t soff,
            std::size_t bytes) override {
    check_range(dst, doff, bytes, "cpu copy (destination)");
    check_range(src, soff, bytes, "cpu copy (source)");
    if (bytes)
      std::memmove(static_cast<char*>(dst.data()) + doff,
                   static_cast<const char*>(src.data()) + soff, bytes);
  }

  Ops<float>& f32() override { return f32_; }
  Ops<double>& f64() override { return f64_; }

 private:
  CpuOps<float> f32_;
  CpuOps<double> f64_;
};

}  // namespace

Backend& cpu_backend() {
  static CpuBackend b;
  return b;
}

}  // namespace nn
