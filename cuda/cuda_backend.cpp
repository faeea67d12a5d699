// cuda/cuda_backend.cpp — the CUDA backend: device memory (cudaMalloc'd Buffers, explicit
// host<->device copies) and every float op of nn/ops.h: GEMMs through cuBLAS, the rest through
// the kernels of cuda/kernels.cu. double ops throw nn::NotImplemented. Host C++ only (g++),
// linked with cudart and cuBLAS. See cuda/README.md.
//
// NOT RUN ON A GPU YET: this backend was written and compiled on machines without a GPU (issue
// #16). tests/test_cuda_ops.cpp compares every op with the CPU backend wherever a GPU exists;
// until that has run, treat these ops as untested.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <tuple>
#include <utility>
#include <stdexcept>
#include <string>

#include "cuda/cuda_backend.h"
#include "cuda/kernels.cuh"
#include "nn/backend.h"

namespace nn {
namespace {

[[noreturn]] void cuda_fail(const char* what, cudaError_t e) {
  throw std::runtime_error(std::string("cuda backend: ") + what + ": " + cudaGetErrorName(e) +
                           " (" + cudaGetErrorString(e) + ")");
}
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) cuda_fail(what, e);
}

// Ops on device pointers must not be handed host memory: say so instead of faulting.
void require_device(const void* p, const char* op, const char* operand) {
  if (!p) return;
  cudaPointerAttributes a{};
  cudaError_t e = cudaPointerGetAttributes(&a, p);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky-free error state of this query
    a.type = cudaMemoryTypeUnregistered;
  }
  if (a.type != cudaMemoryTypeDevice && a.type != cudaMemoryTypeManaged)
    throw std::invalid_argument(std::string("cuda ") + op + ": operand " + operand +
                                " is not device memory; allocate it with the cuda backend and "
                                "copy it there with copy_from_host");
}

void device_free(void* p) { cudaFree(p); }

void ok(int e, const char* what) { check((cudaError_t)e, what); }

std::atomic<bool> g_tf32{false};  // nn::set_cuda_tf32
using cuda_backend::i64;

[[noreturn]] void bad_arg(const std::string& op, const std::string& msg) {
  throw std::invalid_argument("cuda " + op + ": " + msg);
}

// The CUDA backend's cache of one LSTM training window (LstmCache::backend_state). Layouts:
//   X [bs, sl, in] copy of the input; G [bs, sl, 4h] pre-activations -> activations -> dZ;
//   Hp [bs, sl, h] h_{t-1} of each step (Hp[:, 0] = h0); C [sl+1, bs, h] cell states;
//   hlast, dh, dc [bs, h].
// Batch-first G and Hp make the per-step GEMMs strided (ld = sl·4h, sl·h) and the weight
// gradients of the whole window ONE GEMM each.
struct DevLstm {
  Index bs = -1, sl = -1, in = -1, hid = -1;
  Buffer X, G, Hp, C, hlast, dh, dc;
};

class CudaOps final : public Ops<float> {
 public:
  explicit CudaOps(Backend* be) : Ops<float>("cuda"), be_(be) {}
  ~CudaOps() override {
    if (handle_) cublasDestroy(handle_);
    for (auto& s : scratch_)
      if (s.p) cudaFree(s.p);
  }

  void gemm(bool ta, bool tb, Index M, Index N, Index K, float alpha, const float* A, Index lda,
            const float* B, Index ldb, float beta, float* C, Index ldc) override {
    if (M == 0 || N == 0) return;
    require_device(A, "gemm", "A");
    require_device(B, "gemm", "B");
    require_device(C, "gemm", "C");
    raw_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }

  // ---- embedding ----
  void embedding_forward(CView<std::int32_t> ids, CView<float> table, CView<float> row_mask,
                         View<float> out) override {
    const char* op = "embedding_forward";
    if (table.ndim() != 2) bad_arg(op, "table must be [V, E], got " + table.shape.str());
    const Index V = table.dim(0), E = table.dim(1), n = ids.numel();
    if (out.numel() != n * E || (out.ndim() > 0 && out.dim(out.ndim() - 1) != E))
      bad_arg(op, "out " + out.shape.str() + " must hold ids " + ids.shape.str() + " x E = " +
                      std::to_string(E));
    if (!row_mask.empty() && row_mask.numel() != V)
      bad_arg(op, "row_mask " + row_mask.shape.str() + " must have V = " + std::to_string(V) +
                      " elements");
    if (n == 0) return;
    devs(op, {ids.data, table.data, row_mask.data, out.data});
    check_ids(ids.data, n, (std::int32_t)V, op, "token id", "position", "the vocabulary");
    ok(cuda_backend::launch_embedding_forward(ids.data, n, table.data, row_mask.data, E,
                                              out.data),
       op);
  }
  void embedding_backward(CView<std::int32_t> ids, CView<float> row_mask, CView<float> dout,
                          std::int32_t pad_idx, View<float> dtable) override {
    const char* op = "embedding_backward";
    if (dtable.ndim() != 2) bad_arg(op, "dtable must be [V, E], got " + dtable.shape.str());
    const Index V = dtable.dim(0), E = dtable.dim(1), n = ids.numel();
    if (dout.numel() != n * E)
      bad_arg(op, "dout " + dout.shape.str() + " must hold ids " + ids.shape.str() + " x E = " +
                      std::to_string(E));
    if (!row_mask.empty() && row_mask.numel() != V)
      bad_arg(op, "row_mask " + row_mask.shape.str() + " must have V = " + std::to_string(V) +
                      " elements");
    if (n == 0) return;
    devs(op, {ids.data, row_mask.data, dout.data, dtable.data});
    check_ids(ids.data, n, (std::int32_t)V, op, "token id", "position", "the vocabulary");
    ok(cuda_backend::launch_embedding_backward(ids.data, n, row_mask.data, dout.data, E, pad_idx,
                                               dtable.data, V, &CudaOps::sort_scratch, this),
       op);
  }

  // ---- dropouts ----
  // Masks come from Philox4x32-10 keyed by ONE draw of `rng` per call (nn::ew::
  // philox_dropout_mask_value), so a seed gives the same masks every run; they differ from the
  // CPU backend's masks (xoshiro draws per element) while following the same distribution.
  void dropout_mask(Rng& rng, double p, View<float> mask) override {
    if (!(p >= 0.0 && p <= 1.0))
      throw std::invalid_argument("dropout_mask: p must be in [0, 1], got " + std::to_string(p));
    const Index n = mask.numel();
    if (n == 0) return;
    devs("dropout_mask", {mask.data});
    const std::uint64_t seed = (p == 0.0 || p == 1.0) ? 0 : rng.next_u64();
    const float keep = p < 1.0 ? (float)(1.0 / (1.0 - p)) : 0.0f;
    ok(cuda_backend::launch_dropout_mask(mask.data, n, seed, 1.0 - p, keep), "dropout_mask");
  }
  void dropout_forward(CView<float> x, CView<float> mask, View<float> y) override {
    mul("dropout_forward", x, mask, y, 0, 0, false);
  }
  void dropout_backward(CView<float> dy, CView<float> mask, View<float> dx) override {
    mul("dropout_backward", dy, mask, dx, 0, 0, false);
  }
  void rnn_dropout_forward(CView<float> x, CView<float> mask, View<float> y) override {
    rnn_mul("rnn_dropout_forward", x, mask, y);
  }
  void rnn_dropout_backward(CView<float> dy, CView<float> mask, View<float> dx) override {
    rnn_mul("rnn_dropout_backward", dy, mask, dx);
  }
  void weight_dropout_forward(CView<float> w_raw, CView<float> mask, View<float> w_eff) override {
    mul("weight_dropout_forward", w_raw, mask, w_eff, 0, 0, false);
  }
  void weight_dropout_backward(CView<float> dw_eff, CView<float> mask,
                               View<float> dw_raw) override {
    mul("weight_dropout_backward", dw_eff, mask, dw_raw, 0, 0, true);
  }

  // ---- LSTM ----
  void lstm_forward(const LstmParams<float>& p, CView<float> x, CView<float> h0, CView<float> c0,
                    View<float> y, View<float> hn, View<float> cn,
                    LstmCache<float>& cache) override {
    const char* op = "lstm_forward";
    p.check();
    if (x.ndim() != 3) bad_arg(op, "x must be [bs, sl, in], got " + x.shape.str());
    const Index bs = x.dim(0), sl = x.dim(1), in = x.dim(2), H = p.hidden(), G4 = 4 * H;
    if (in != p.input())
      bad_arg(op, "x has " + std::to_string(in) + " features, weight_ih expects " +
                      std::to_string(p.input()));
    want(op, "y", y.shape, Shape{bs, sl, H});
    for (auto [v, nm] : {std::pair{h0, "h0"}, {c0, "c0"}})
      if (!v.empty()) want(op, nm, v.shape, Shape{bs, H});
    for (auto [v, nm] : {std::pair{CView<float>(hn), "hn"}, {CView<float>(cn), "cn"}})
      if (!v.empty()) want(op, nm, v.shape, Shape{bs, H});
    devs(op, {p.w_ih.data, p.w_hh.data, p.b_ih.data, p.b_hh.data, x.data, h0.data, c0.data,
              y.data, hn.data, cn.data});
    DevLstm& d = lstm_state(cache, bs, sl, in, H);
    float* X = f(d.X);
    float* G = f(d.G);
    float* Hp = f(d.Hp);
    float* C = f(d.C);
    const std::size_t st = sizeof(float) * bs * H;
    if (bs * sl * in > 0) cp(X, x.data, sizeof(float) * bs * sl * in);
    // Hp[:, 0] = h0 (strided), C[0] = c0
    if (sl > 0) {
      if (h0.empty())
        ok(cudaMemset2D(Hp, sizeof(float) * sl * H, 0, sizeof(float) * H, bs), "lstm h0");
      else
        ok(cudaMemcpy2D(Hp, sizeof(float) * sl * H, h0.data, sizeof(float) * H,
                        sizeof(float) * H, bs, cudaMemcpyDeviceToDevice),
           "lstm h0");
    }
    if (c0.empty())
      ok(cudaMemset(C, 0, st), "lstm c0");
    else
      cp(C, c0.data, st);
    if (sl == 0) {  // no step: the state passes through
      if (!hn.empty()) {
        if (h0.empty()) ok(cudaMemset(hn.data, 0, st), "lstm hn");
        else if (hn.data != h0.data) cp(hn.data, h0.data, st);
      }
      if (!cn.empty() && cn.data != C) cp(cn.data, C, st);
      return;
    }
    // The input projection of the whole window: one GEMM.
    raw_gemm(false, true, bs * sl, G4, in, 1.f, X, in, p.w_ih.data, in, 0.f, G, G4);
    for (Index t = 0; t < sl; ++t) {
      raw_gemm(false, true, bs, G4, H, 1.f, Hp + t * H, sl * H, p.w_hh.data, H, 1.f, G + t * G4,
               sl * G4);
      const bool last = t + 1 == sl;
      ok(cuda_backend::launch_lstm_cell_forward(
             G + t * G4, sl * G4, p.b_ih.data, p.b_hh.data, C + t * bs * H, C + (t + 1) * bs * H,
             y.data + t * H, sl * H, last ? f(d.hlast) : Hp + (t + 1) * H, last ? H : sl * H, bs,
             H, true),
         "lstm cell forward");
    }
    if (!hn.empty()) cp(hn.data, f(d.hlast), st);
    if (!cn.empty()) cp(cn.data, C + sl * bs * H, st);
  }

  void lstm_backward(const LstmParams<float>& p, LstmCache<float>& cache, CView<float> dy,
                     CView<float> dhn, CView<float> dcn, View<float> dx, View<float> dh0,
                     View<float> dc0, const LstmGrads<float>& g) override {
    const char* op = "lstm_backward";
    p.check();
    auto* dp = static_cast<DevLstm*>(cache.backend_state.get());
    if (!dp || dp->bs < 0)
      bad_arg(op, "the cache holds no window of this backend (run lstm_forward on cuda first)");
    DevLstm& d = *dp;
    const Index bs = d.bs, sl = d.sl, in = d.in, H = d.hid, G4 = 4 * H;
    if (p.hidden() != H || p.input() != in)
      bad_arg(op, "parameters do not match the cached window");
    want(op, "dy", dy.shape, Shape{bs, sl, H});
    for (auto [v, nm] : {std::pair{dhn, "dhn"}, {dcn, "dcn"}})
      if (!v.empty()) want(op, nm, v.shape, Shape{bs, H});
    for (auto [v, nm] : {std::pair{dh0, "dh0"}, {dc0, "dc0"}})
      if (!v.empty()) want(op, nm, v.shape, Shape{bs, H});
    if (!dx.empty()) want(op, "dx", dx.shape, Shape{bs, sl, in});
    if (!g.w_ih.empty()) want(op, "dW_ih", g.w_ih.shape, p.w_ih.shape);
    if (!g.w_hh.empty()) want(op, "dW_hh", g.w_hh.shape, p.w_hh.shape);
    if (!g.b_ih.empty()) want(op, "db_ih", g.b_ih.shape, Shape{G4});
    if (!g.b_hh.empty()) want(op, "db_hh", g.b_hh.shape, Shape{G4});
    devs(op, {p.w_ih.data, p.w_hh.data, dy.data, dhn.data, dcn.data, dx.data, dh0.data,
              dc0.data, g.w_ih.data, g.w_hh.data, g.b_ih.data, g.b_hh.data});
    float* G = f(d.G);
    float* C = f(d.C);
    float* dh = f(d.dh);
    float* dc = f(d.dc);
    const std::size_t st = sizeof(float) * bs * H;
    if (dhn.empty()) ok(cudaMemset(dh, 0, st), "lstm dhn");
    else cp(dh, dhn.data, st);
    if (dcn.empty()) ok(cudaMemset(dc, 0, st), "lstm dcn");
    else cp(dc, dcn.data, st);
    for (Index t = sl - 1; t >= 0; --t) {
      ok(cuda_backend::launch_lstm_cell_backward(G + t * G4, sl * G4, C + (t + 1) * bs * H,
                                                 C + t * bs * H, dy.data + t * H, sl * H, dh, dc,
                                                 bs, H),
         "lstm cell backward");
      if (t > 0 || !dh0.empty())  // dL/dh_{t-1} = dz_t W_hh
        raw_gemm(false, false, bs, H, G4, 1.f, G + t * G4, sl * G4, p.w_hh.data, H, 0.f, dh, H);
    }
    if (!dh0.empty()) {
      if (sl == 0 && dhn.empty()) ok(cudaMemset(dh0.data, 0, st), "lstm dh0");
      else cp(dh0.data, dh, st);
    }
    if (!dc0.empty()) cp(dc0.data, dc, st);
    const Index R = bs * sl;
    if (R == 0) return;
    // Window-wide weight gradients, one GEMM each; biases: one column sum for both.
    if (!g.w_ih.empty())
      raw_gemm(true, false, G4, in, R, 1.f, G, G4, f(d.X), in, 1.f, g.w_ih.data, in);
    if (!g.w_hh.empty())
      raw_gemm(true, false, G4, H, R, 1.f, G, G4, f(d.Hp), H, 1.f, g.w_hh.data, H);
    ok(cuda_backend::launch_colsum_acc(G, R, G4, G4, g.b_ih.data, g.b_hh.data), "lstm dbias");
    if (!dx.empty()) raw_gemm(false, false, R, in, G4, 1.f, G, G4, p.w_ih.data, in, 0.f, dx.data, in);
  }

  void lstm_infer(const LstmParams<float>& p, CView<float> x, View<float> h, View<float> c,
                  View<float> y, Tensor<float>& /*scratch: host; device scratch is internal*/,
                  const Index* lengths = nullptr) override {
    const char* op = "lstm_infer";
    if (lengths) bad_arg(op, "padded rows of different lengths are a CPU serving path");
    p.check();
    if (!p.w_hh.data)
      bad_arg(op, "needs the float weight_hh on the device (the half-precision W_hh copy is a "
                  "CPU serving path)");
    if (x.ndim() != 3) bad_arg(op, "x must be [bs, sl, in], got " + x.shape.str());
    const Index bs = x.dim(0), sl = x.dim(1), in = x.dim(2), H = p.hidden(), G4 = 4 * H;
    if (in != p.input())
      bad_arg(op, "x has " + std::to_string(in) + " features, weight_ih expects " +
                      std::to_string(p.input()));
    want(op, "h", h.shape, Shape{bs, H});
    want(op, "c", c.shape, Shape{bs, H});
    want(op, "y", y.shape, Shape{bs, sl, H});
    if (bs * sl == 0) return;
    devs(op, {p.w_ih.data, p.w_hh.data, p.b_ih.data, p.b_hh.data, x.data, h.data, c.data,
              y.data});
    float* Z = static_cast<float*>(scratch(kInfer, sizeof(float) * bs * sl * G4));
    raw_gemm(false, true, bs * sl, G4, in, 1.f, x.data, in, p.w_ih.data, in, 0.f, Z, G4);
    for (Index t = 0; t < sl; ++t) {
      raw_gemm(false, true, bs, G4, H, 1.f, h.data, H, p.w_hh.data, H, 1.f, Z + t * G4, sl * G4);
      ok(cuda_backend::launch_lstm_cell_forward(Z + t * G4, sl * G4, p.b_ih.data, p.b_hh.data,
                                                c.data, c.data, y.data + t * H, sl * H, h.data, H,
                                                bs, H, false),
         "lstm cell forward (infer)");
    }
  }

  // ---- linear, ReLU ----
  void linear_forward(CView<float> x, CView<float> w, CView<float> b, View<float> y) override {
    const char* op = "linear_forward";
    const Index N = linear_rows(op, x, w, b, y.shape, "y");
    const Index out = w.dim(0), in = w.dim(1);
    if (N == 0) return;
    devs(op, {x.data, w.data, b.data, y.data});
    if (!b.empty()) ok(cuda_backend::launch_rows_set(y.data, b.data, N, out), op);
    raw_gemm(false, true, N, out, in, 1.f, x.data, in, w.data, in, b.empty() ? 0.f : 1.f, y.data,
             out);
  }
  void linear_backward(CView<float> x, CView<float> w, CView<float> dy, View<float> dx,
                       View<float> dw, View<float> db) override {
    const char* op = "linear_backward";
    const Index N = linear_rows(op, x, w, {}, dy.shape, "dy");
    const Index out = w.dim(0), in = w.dim(1);
    if (!dx.empty() && dx.numel() != x.numel())
      bad_arg(op, "dx " + dx.shape.str() + " must have x's size " + x.shape.str());
    if (!dw.empty()) want(op, "dW", dw.shape, w.shape);
    if (!db.empty() && db.numel() != out)
      bad_arg(op, "db " + db.shape.str() + " must have " + std::to_string(out) + " elements");
    if (N == 0) return;
    devs(op, {x.data, w.data, dy.data, dx.data, dw.data, db.data});
    if (!dx.empty()) raw_gemm(false, false, N, in, out, 1.f, dy.data, out, w.data, in, 0.f, dx.data, in);
    if (!dw.empty()) raw_gemm(true, false, out, in, N, 1.f, dy.data, out, x.data, in, 1.f, dw.data, in);
    if (!db.empty()) ok(cuda_backend::launch_colsum_acc(dy.data, N, out, out, db.data, nullptr), op);
  }
  void relu_forward(CView<float> x, View<float> y) override {
    if (x.numel() != y.numel())
      bad_arg("relu_forward", "input " + x.shape.str() + " and output " + y.shape.str() +
                                  " differ in size");
    devs("relu_forward", {x.data, y.data});
    ok(cuda_backend::launch_relu_forward(x.data, y.data, x.numel()), "relu_forward");
  }
  void relu_backward(CView<float> y, CView<float> dy, View<float> dx) override {
    if (y.numel() != dy.numel() || y.numel() != dx.numel())
      bad_arg("relu_backward", "y " + y.shape.str() + ", dy " + dy.shape.str() + " and dx " +
                                   dx.shape.str() + " differ in size");
    devs("relu_backward", {y.data, dy.data, dx.data});
    ok(cuda_backend::launch_relu_backward(y.data, dy.data, dx.data, y.numel()), "relu_backward");
  }

  // ---- batch-norm ----
  void batchnorm_forward_train(CView<float> x, CView<float> weight, CView<float> bias,
                               View<float> running_mean, View<float> running_var, View<float> y,
                               BatchNormCache<float> cache, double momentum,
                               double eps) override {
    const char* op = "batchnorm_forward_train";
    const Index C = bn_check(op, x, weight, bias, running_mean, running_var, y.shape);
    const Index N = x.dim(0);
    if (N < 2)
      bad_arg(op, "expected more than 1 value per channel when training, got input " +
                      x.shape.str());
    if (cache.xhat.shape != x.shape || cache.rstd.numel() != C)
      bad_arg(op, "cache xhat " + cache.xhat.shape.str() + " must be " + x.shape.str() +
                      " and rstd " + cache.rstd.shape.str() + " must have C = " +
                      std::to_string(C) + " elements");
    devs(op, {x.data, weight.data, bias.data, running_mean.data, running_var.data, y.data,
              cache.xhat.data, cache.rstd.data});
    ok(cuda_backend::launch_batchnorm_train(x.data, weight.data, bias.data, running_mean.data,
                                            running_var.data, y.data, cache.xhat.data,
                                            cache.rstd.data, N, C, momentum, eps),
       op);
  }
  void batchnorm_forward_eval(CView<float> x, CView<float> weight, CView<float> bias,
                              CView<float> running_mean, CView<float> running_var, View<float> y,
                              double eps) override {
    const char* op = "batchnorm_forward_eval";
    const Index C = bn_check(op, x, weight, bias, running_mean, running_var, y.shape);
    devs(op, {x.data, weight.data, bias.data, running_mean.data, running_var.data, y.data});
    ok(cuda_backend::launch_batchnorm_eval(x.data, weight.data, bias.data, running_mean.data,
                                           running_var.data, y.data, x.dim(0), C, eps),
       op);
  }
  void batchnorm_backward(CView<float> dy, CView<float> weight, BatchNormCache<float> cache,
                          View<float> dx, View<float> dweight, View<float> dbias) override {
    const char* op = "batchnorm_backward";
    if (dy.ndim() != 2) bad_arg(op, "dy must be [N, C], got " + dy.shape.str());
    const Index N = dy.dim(0), C = dy.dim(1);
    want(op, "weight", weight.shape, Shape{C});
    want(op, "cache xhat", cache.xhat.shape, dy.shape);
    if (cache.rstd.numel() != C) bad_arg(op, "cache rstd must have C elements");
    if (!dx.empty()) want(op, "dx", dx.shape, dy.shape);
    if (!dweight.empty()) want(op, "dweight", dweight.shape, Shape{C});
    if (!dbias.empty()) want(op, "dbias", dbias.shape, Shape{C});
    devs(op, {dy.data, weight.data, cache.xhat.data, cache.rstd.data, dx.data, dweight.data,
              dbias.data});
    ok(cuda_backend::launch_batchnorm_backward(dy.data, weight.data, cache.xhat.data,
                                               cache.rstd.data, dx.data, dweight.data,
                                               dbias.data, N, C),
       op);
  }

  // ---- masked concat pooling ----
  void concat_pool_forward(CView<float> out, CView<std::uint8_t> pad_mask, View<float> pooled,
                           View<std::int32_t> argmax, Index bptt) override {
    const char* op = "masked_concat_pool_forward";
    pool_check(op, out.shape, pad_mask, bptt);
    const Index bs = out.dim(0), T = out.dim(1), C = out.dim(2);
    want(op, "pooled", pooled.shape, Shape{bs, 3 * C});
    want(op, "argmax cache", argmax.shape, Shape{bs, C});
    devs(op, {out.data, pad_mask.data, pooled.data, argmax.data});
    i64 bad = -1;
    ok(cuda_backend::launch_concat_pool_forward(out.data, pad_mask.data, pooled.data, argmax.data,
                                                bs, T, C, bptt, flag(), &bad),
       op);
    if (bad >= 0)
      bad_arg(op, "row " + std::to_string(bad) + " of pad_mask has no non-pad position (T = " +
                      std::to_string(T) + ")");
  }
  void concat_pool_backward(CView<float> dpooled, CView<std::uint8_t> pad_mask,
                            CView<std::int32_t> argmax, View<float> dout, Index bptt) override {
    const char* op = "masked_concat_pool_backward";
    pool_check(op, dout.shape, pad_mask, bptt);
    const Index bs = dout.dim(0), T = dout.dim(1), C = dout.dim(2);
    want(op, "dpooled", dpooled.shape, Shape{bs, 3 * C});
    want(op, "argmax", argmax.shape, Shape{bs, C});
    devs(op, {dpooled.data, pad_mask.data, argmax.data, dout.data});
    i64 bad = -1;
    ok(cuda_backend::launch_concat_pool_backward(dpooled.data, pad_mask.data, argmax.data,
                                                 dout.data, bs, T, C, bptt, flag(), &bad),
       op);
    if (bad >= 0)
      bad_arg(op, "row " + std::to_string(bad) +
                      " has no non-pad position or an argmax outside [0, " + std::to_string(T) +
                      ")");
  }

  // ---- softmax + cross-entropy ----
  LossResult lm_softmax_ce_forward_backward(CView<float> hidden, CView<float> w, CView<float> b,
                                            CView<std::int32_t> targets, View<float> dhidden,
                                            View<float> dw, View<float> db, View<float> workspace,
                                            Index chunk, float grad_scale) override {
    return lm_ce("lm_softmax_ce_forward_backward", hidden, w, b, targets, dhidden, dw, db,
                 workspace, chunk, grad_scale, true);
  }
  LossResult lm_softmax_ce_forward(CView<float> hidden, CView<float> w, CView<float> b,
                                   CView<std::int32_t> targets, View<float> workspace,
                                   Index chunk) override {
    return lm_ce("lm_softmax_ce_forward", hidden, w, b, targets, {}, {}, {}, workspace, chunk,
                 1.f, false);
  }
  LossResult softmax_ce_forward_backward(CView<float> logits, CView<std::int32_t> targets,
                                         View<float> dlogits, float grad_scale) override {
    const char* op = "softmax_ce_forward_backward";
    if (logits.ndim() != 2) bad_arg(op, "logits must be [N, C], got " + logits.shape.str());
    const Index N = logits.dim(0), C = logits.dim(1);
    if (targets.numel() != N)
      bad_arg(op, "targets " + targets.shape.str() + " must have N = " + std::to_string(N) +
                      " elements");
    if (dlogits.data && dlogits.shape != logits.shape)
      bad_arg(op, "dlogits " + dlogits.shape.str() + " must have logits' shape " +
                      logits.shape.str());
    LossResult res;
    if (N == 0) return res;
    devs(op, {logits.data, targets.data, dlogits.data});
    check_ids(targets.data, N, (std::int32_t)C, op, "target", "row", "the classes");
    auto [loss, correct, out2] = loss_arrays(N);
    ok(cuda_backend::launch_softmax_ce_rows(logits.data, dlogits.data, nullptr, targets.data, N,
                                            C, (float)((double)grad_scale / (double)N), loss,
                                            correct),
       op);
    i64 nc = 0;
    ok(cuda_backend::sum_loss(loss, correct, N, out2, &res.loss, &nc), op);
    res.loss /= (double)N;
    res.correct = nc;
    return res;
  }

  // ---- optimizer ----
  void adam_step(View<float> w, CView<float> g, View<float> m, View<float> v,
                 const ew::AdamScalars& s) override {
    const Index n = w.numel();
    if (g.numel() != n || m.numel() != n || v.numel() != n)
      throw std::invalid_argument("cuda adam_step: weights " + w.shape.str() + ", grads " +
                                  g.shape.str() + ", moments " + m.shape.str() + " / " +
                                  v.shape.str() + " must have the same number of elements");
    if (n == 0) return;
    require_device(w.data, "adam_step", "w");
    require_device(g.data, "adam_step", "g");
    require_device(m.data, "adam_step", "m");
    require_device(v.data, "adam_step", "v");
    check((cudaError_t)cuda_backend::launch_adam_step(w.data, g.data, m.data, v.data, n, s),
          "adam_step launch");
  }
  double clip_grad_norm(View<float> grads, double max_norm) override {
    if (!(max_norm > 0))
      throw std::invalid_argument("clip_grad_norm: max_norm must be > 0, got " +
                                  std::to_string(max_norm));
    const Index n = grads.numel();
    if (n == 0) return 0;
    devs("clip_grad_norm", {grads.data});
    double ss = 0;
    ok(cuda_backend::sum_squares(grads.data, n,
                                 static_cast<double*>(scratch(kNorm, sizeof(double) * 1024)), &ss),
       "clip_grad_norm");
    const double norm = std::sqrt(ss);
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1) ok(cuda_backend::launch_scale(grads.data, n, (float)coef), "clip_grad_norm");
    return norm;
  }

 private:
  enum Slot { kFlag, kLoss, kWork, kInfer, kSort, kNorm, kSlots };
  struct Scratch {
    void* p = nullptr;
    std::size_t bytes = 0;
  };

  // Grow-only device scratch, one block per purpose.
  void* scratch(Slot s, std::size_t bytes) {
    Scratch& sc = scratch_[s];
    if (sc.bytes < bytes || !sc.p) {
      if (sc.p) check(cudaFree(sc.p), "cudaFree (scratch)");
      sc.p = nullptr, sc.bytes = 0;
      check(cudaMalloc(&sc.p, bytes ? bytes : 1), "cudaMalloc (scratch)");
      sc.bytes = bytes;
    }
    return sc.p;
  }
  static void* sort_scratch(std::size_t bytes, void* ctx) {
    return static_cast<CudaOps*>(ctx)->scratch(kSort, bytes);
  }
  i64* flag() { return static_cast<i64*>(scratch(kFlag, sizeof(i64))); }
  std::tuple<double*, std::int32_t*, double*> loss_arrays(Index N) {
    char* p = static_cast<char*>(scratch(kLoss, sizeof(double) * (N + 2) + sizeof(std::int32_t) * N + 64));
    auto* loss = reinterpret_cast<double*>(p);
    auto* out2 = loss + N;
    auto* correct = reinterpret_cast<std::int32_t*>(out2 + 2);
    return {loss, correct, out2};
  }

  void raw_gemm(bool ta, bool tb, Index M, Index N, Index K, float alpha, const float* A,
                Index lda, const float* B, Index ldb, float beta, float* C, Index ldc) {
    if (M == 0 || N == 0) return;
    const bool tf32 = g_tf32.load(std::memory_order_relaxed);
    if (tf32 != tf32_) {
      if (cublasSetMathMode(handle(), tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH) !=
          CUBLAS_STATUS_SUCCESS)
        throw std::runtime_error("cuda backend: cublasSetMathMode failed");
      tf32_ = tf32;
    }
    // Row-major C = op(A) op(B) is column-major Cᵀ = op(B)ᵀ op(A)ᵀ: swap the operands.
    cublasStatus_t st = cublasSgemm(handle(), tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                    ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N, (int)M, (int)K, &alpha,
                                    B, (int)ldb, A, (int)lda, &beta, C, (int)ldc);
    if (st != CUBLAS_STATUS_SUCCESS)
      throw std::runtime_error(std::string("cuda gemm: cublasSgemm failed: ") +
                               cublasGetStatusString(st));
  }

  static float* f(const Buffer& b) { return static_cast<float*>(b.data()); }
  static void cp(void* dst, const void* src, std::size_t bytes) {
    if (bytes && dst != src)
      check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "device copy");
  }
  static void devs(const char* op, std::initializer_list<const void*> ps) {
    int k = 0;
    for (const void* p : ps) {
      ++k;
      if (p) require_device(p, op, ("#" + std::to_string(k)).c_str());
    }
  }
  static void want(const char* op, const char* what, const Shape& got, const Shape& need) {
    if (got != need) bad_arg(op, std::string(what) + " must be " + need.str() + ", got " + got.str());
  }
  // Throws std::out_of_range naming the first id outside [0, hi) (position and value).
  void check_ids(const std::int32_t* ids, Index n, std::int32_t hi, const char* op,
                 const char* what, const char* where, const char* range) {
    int err = 0;
    const i64 bad = cuda_backend::first_id_outside(ids, n, hi, flag(), &err);
    if (err) ok(err, op);
    if (bad < 0) return;
    std::int32_t v = 0;
    check(cudaMemcpy(&v, ids + bad, sizeof v, cudaMemcpyDeviceToHost), op);
    throw std::out_of_range(std::string("cuda ") + op + ": " + what + " " + std::to_string(v) +
                            " at " + where + " " + std::to_string(bad) + " is outside " + range +
                            " [0, " + std::to_string(hi) + ")");
  }
  void mul(const char* op, CView<float> x, CView<float> m, View<float> y, Index sl_c, Index C,
           bool acc) {
    if (x.numel() != y.numel() || (sl_c == 0 && m.numel() != x.numel()))
      bad_arg(op, "x " + x.shape.str() + ", mask " + m.shape.str() + " and output " +
                      y.shape.str() + " differ in size");
    if (x.numel() == 0) return;
    devs(op, {x.data, m.data, y.data});
    ok(cuda_backend::launch_mul_mask(x.data, m.data, y.data, x.numel(), sl_c, C, acc), op);
  }
  void rnn_mul(const char* op, CView<float> x, CView<float> m, View<float> y) {
    if (x.ndim() != 3) bad_arg(op, "x must be [bs, sl, C], got " + x.shape.str());
    const Index bs = x.dim(0), sl = x.dim(1), C = x.dim(2);
    if (m.numel() != bs * C)
      bad_arg(op, "mask " + m.shape.str() + " must be [bs, C] = " + Shape{bs, C}.str());
    if (sl * C == 0) return;
    mul(op, x, m, y, sl * C, C, false);
  }
  Index linear_rows(const char* op, CView<float> x, CView<float> w, CView<float> b,
                    const Shape& y, const char* yname) {
    if (w.ndim() != 2) bad_arg(op, "W must be [out, in], got " + w.shape.str());
    const Index out = w.dim(0), in = w.dim(1);
    if (in == 0 || x.numel() % in != 0 || (x.ndim() > 0 && x.dim(x.ndim() - 1) != in))
      bad_arg(op, "x " + x.shape.str() + " does not end in in = " + std::to_string(in));
    const Index N = x.numel() / in;
    if (y.numel() != N * out)
      bad_arg(op, std::string(yname) + " " + y.str() + " must hold " + std::to_string(N) +
                      " rows of " + std::to_string(out));
    if (!b.empty() && b.numel() != out)
      bad_arg(op, "b " + b.shape.str() + " must have " + std::to_string(out) + " elements");
    return N;
  }
  static Index bn_check(const char* op, CView<float> x, CView<float> w, CView<float> b,
                        CView<float> rm, CView<float> rv, const Shape& y) {
    if (x.ndim() != 2) bad_arg(op, "x must be [N, C], got " + x.shape.str());
    const Index C = x.dim(1);
    want(op, "y", y, x.shape);
    want(op, "weight", w.shape, Shape{C});
    want(op, "bias", b.shape, Shape{C});
    want(op, "running_mean", rm.shape, Shape{C});
    want(op, "running_var", rv.shape, Shape{C});
    return C;
  }
  static void pool_check(const char* op, const Shape& out, CView<std::uint8_t> pad, Index bptt) {
    if (out.ndim != 3) bad_arg(op, "out must be [bs, T, C], got " + out.str());
    want(op, "pad_mask", pad.shape, Shape{out[0], out[1]});
    if (bptt < 1) bad_arg(op, "bptt must be >= 1, got " + std::to_string(bptt));
  }

  LossResult lm_ce(const char* op, CView<float> hidden, CView<float> w, CView<float> b,
                   CView<std::int32_t> targets, View<float> dhidden, View<float> dw,
                   View<float> db, View<float> workspace, Index chunk, float grad_scale,
                   bool grad) {
    if (hidden.ndim() != 2 || w.ndim() != 2 || hidden.dim(1) != w.dim(1))
      bad_arg(op, "hidden " + hidden.shape.str() + " must be [N, E] and W " + w.shape.str() +
                      " [V, E]");
    const Index N = hidden.dim(0), E = hidden.dim(1), V = w.dim(0);
    if (targets.numel() != N)
      bad_arg(op, "targets " + targets.shape.str() + " must have N = " + std::to_string(N) +
                      " elements");
    if (!b.empty() && b.numel() != V) bad_arg(op, "b must have V elements");
    if (!dhidden.empty()) want(op, "dhidden", dhidden.shape, hidden.shape);
    if (!dw.empty()) want(op, "dW", dw.shape, w.shape);
    if (!db.empty() && db.numel() != V) bad_arg(op, "db must have V elements");
    if (chunk < 1) bad_arg(op, "chunk must be >= 1, got " + std::to_string(chunk));
    LossResult res;
    if (N == 0) return res;
    devs(op, {hidden.data, w.data, b.data, targets.data, dhidden.data, dw.data, db.data,
              workspace.data});
    check_ids(targets.data, N, (std::int32_t)V, op, "target", "row", "the vocabulary");
    {  // balanced chunks, as on the CPU
      const Index nchunks = (N + chunk - 1) / chunk;
      chunk = (N + nchunks - 1) / nchunks;
    }
    float* L;
    if (workspace.data) {
      if (workspace.numel() < chunk * V)
        bad_arg(op, "workspace has " + std::to_string(workspace.numel()) +
                        " elements, needs chunk·V = " + std::to_string(chunk * V));
      L = workspace.data;
    } else {
      L = static_cast<float*>(scratch(kWork, sizeof(float) * chunk * V));
    }
    auto [loss, correct, out2] = loss_arrays(N);
    const float gscale = grad_scale / (float)N;
    for (Index r0 = 0; r0 < N; r0 += chunk) {
      const Index n = std::min(chunk, N - r0);
      const float* h = hidden.data + r0 * E;
      raw_gemm(false, true, n, V, E, 1.f, h, E, w.data, E, 0.f, L, V);
      ok(cuda_backend::launch_softmax_ce_rows(L, grad ? L : nullptr, b.data, targets.data + r0, n,
                                              V, gscale, loss + r0, correct + r0),
         op);
      if (!grad) continue;
      if (!dhidden.empty())
        raw_gemm(false, false, n, E, V, 1.f, L, V, w.data, E, 0.f, dhidden.data + r0 * E, E);
      if (!dw.empty()) raw_gemm(true, false, V, E, n, 1.f, L, V, h, E, 1.f, dw.data, E);
      if (!db.empty()) ok(cuda_backend::launch_colsum_acc(L, n, V, V, db.data, nullptr), op);
    }
    i64 nc = 0;
    ok(cuda_backend::sum_loss(loss, correct, N, out2, &res.loss, &nc), op);
    res.loss /= (double)N;
    res.correct = nc;
    return res;
  }

  DevLstm& lstm_state(LstmCache<float>& cache, Index bs, Index sl, Index in, Index H) {
    auto st = std::static_pointer_cast<DevLstm>(cache.backend_state);
    if (!st) {
      st = std::make_shared<DevLstm>();
      cache.backend_state = st;
    }
    DevLstm& d = *st;
    if (d.bs != bs || d.sl != sl || d.in != in || d.hid != H) {
      d.bs = -1;  // invalid until every buffer is in place
      auto fl = [&](Index n) { return be_->alloc(sizeof(float) * (n > 0 ? n : 1)); };
      d.X = fl(bs * sl * in);
      d.G = fl(bs * sl * 4 * H);
      d.Hp = fl(bs * sl * H);
      d.C = fl((sl + 1) * bs * H);
      d.hlast = fl(bs * H);
      d.dh = fl(bs * H);
      d.dc = fl(bs * H);
      d.bs = bs, d.sl = sl, d.in = in, d.hid = H;
    }
    return d;
  }

  cublasHandle_t handle() {
    std::call_once(once_, [&] {
      if (cublasCreate(&handle_) != CUBLAS_STATUS_SUCCESS)
        throw std::runtime_error("cuda backend: cublasCreate failed");
      // fp32 means fp32: no TF32 tensor-core rounding unless a precision mode asks for it.
      cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH);
    });
    return handle_;
  }
  Backend* be_;
  bool tf32_ = false;  // the math mode last set on handle_
  std::once_flag once_;
  cublasHandle_t handle_ = nullptr;
  Scratch scratch_[kSlots];
};

class CudaOps64 final : public Ops<double> {  // no double kernels: every op throws
 public:
  CudaOps64() : Ops<double>("cuda") {}
};

// Device memory for the models' own tensors and arenas (nn::Placement): cudaMalloc'd, zeroed.
class CudaPlacement final : public Placement {
 public:
  Memory memory() const override { return Memory::cuda; }
  void* alloc(std::size_t bytes) override {
    void* p = nullptr;
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
      (void)cudaGetLastError();
      throw std::bad_alloc();
    }
    cudaError_t e = cudaMemset(p, 0, bytes ? bytes : 1);
    if (e != cudaSuccess) {
      cudaFree(p);
      cuda_fail("cudaMemset", e);
    }
    return p;
  }
  void free(void* p) noexcept override { cudaFree(p); }
  void zero(void* p, std::size_t bytes) override {
    if (bytes) check(cudaMemset(p, 0, bytes), "cudaMemset");
  }
  void copy(void* dst, const void* src, std::size_t bytes) override {
    if (bytes && dst != src) check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "device copy");
  }
  void copy_rows(void* dst, std::size_t dst_pitch, const void* src, std::size_t src_pitch,
                 std::size_t row_bytes, std::size_t rows) override {
    if (row_bytes && rows)
      check(cudaMemcpy2D(dst, dst_pitch, src, src_pitch, row_bytes, rows, cudaMemcpyDeviceToDevice),
            "device row copy");
  }
  void upload(void* dst, const void* src, std::size_t bytes) override {
    if (bytes) check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "upload");
  }
  void download(void* dst, const void* src, std::size_t bytes) override {
    if (bytes) check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "download");
  }
};

class CudaBackend final : public Backend {
 public:
  const char* name() const override { return "cuda"; }
  Memory memory() const override { return Memory::cuda; }
  Placement* placement() override { return &place_; }
  bool set_tf32(bool on) override {
    g_tf32.store(on);
    return true;
  }

  Buffer alloc(std::size_t bytes) override {
    void* p = nullptr;
    check(cudaMalloc(&p, bytes ? bytes : 1), "cudaMalloc");
    cudaError_t e = cudaMemset(p, 0, bytes ? bytes : 1);
    if (e != cudaSuccess) {
      cudaFree(p);
      cuda_fail("cudaMemset", e);
    }
    return Buffer(p, bytes, Memory::cuda, &device_free);
  }
  void copy_from_host(Buffer& dst, std::size_t off, const void* src, std::size_t bytes) override {
    check_range(dst, off, bytes, "cuda copy_from_host");
    require_memory(dst, "copy_from_host");
    if (bytes)
      check(cudaMemcpy(static_cast<char*>(dst.data()) + off, src, bytes, cudaMemcpyHostToDevice),
            "copy_from_host");
  }
  void copy_to_host(void* dst, const Buffer& src, std::size_t off, std::size_t bytes) override {
    check_range(src, off, bytes, "cuda copy_to_host");
    require_memory(src, "copy_to_host");
    if (bytes)
      check(cudaMemcpy(dst, static_cast<const char*>(src.data()) + off, bytes,
                       cudaMemcpyDeviceToHost),
            "copy_to_host");
  }
  void copy(Buffer& dst, std::size_t doff, const Buffer& src, std::size_t soff,
            std::size_t bytes) override {
    check_range(dst, doff, bytes, "cuda copy (destination)");
    check_range(src, soff, bytes, "cuda copy (source)");
    require_memory(dst, "copy");
    require_memory(src, "copy");
    if (bytes)
      check(cudaMemcpy(static_cast<char*>(dst.data()) + doff,
                       static_cast<const char*>(src.data()) + soff, bytes,
                       cudaMemcpyDeviceToDevice),
            "copy");
  }
  void synchronize() override { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

  Ops<float>& f32() override { return f32_; }
  Ops<double>& f64() override { return f64_; }

 private:
  static void require_memory(const Buffer& b, const char* what) {
    if (b.memory() != Memory::cuda)
      throw std::invalid_argument(std::string("cuda ") + what + ": the buffer lives in " +
                                  memory_name(b.memory()) + " memory, not cuda");
  }
  CudaOps f32_{this};
  CudaOps64 f64_;
  CudaPlacement place_;
};

}  // namespace

void set_cuda_tf32(bool on) { g_tf32.store(on); }
bool cuda_tf32() { return g_tf32.load(); }

// nn/backend.cpp calls this from get_backend("cuda[:N]"). nullptr (and the reason in *why): no
// usable device N. The backend is one per process, bound to the first device asked for.
Backend* make_cuda_backend(int device, std::string* why) {
  static std::mutex mu;
  static int bound = -1;
  std::lock_guard<std::mutex> lock(mu);
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n < 1) {
    (void)cudaGetLastError();
    *why = std::string("no usable CUDA device (cudaGetDeviceCount: ") +
           (e != cudaSuccess ? cudaGetErrorString(e) : "0 devices") + ")";
    return nullptr;
  }
  if (device < 0 || device >= n) {
    *why = "no CUDA device " + std::to_string(device) + " (this machine has " +
           std::to_string(n) + ")";
    return nullptr;
  }
  if (bound >= 0 && bound != device) {
    *why = "this process already uses CUDA device " + std::to_string(bound) +
           " (one device per process)";
    return nullptr;
  }
  if (bound < 0) {
    if ((e = cudaSetDevice(device)) != cudaSuccess) {
      *why = std::string("cudaSetDevice(") + std::to_string(device) + "): " + cudaGetErrorString(e);
      return nullptr;
    }
    bound = device;
  }
  static CudaBackend b;
  return &b;
}

}  // namespace nn
