// nn/loss.cpp — softmax cross-entropy: the fused tied-decoder LM loss and the small-logits one.
//
// The fused LM loss works on row chunks: per chunk one GEMM for the logits, one pass per row
// (bias, max, exp, sum, gradient scaling, db accumulation), one GEMM for dhidden and one GEMM
// that accumulates dW. The N×V logits never exist whole.
#include "nn/loss.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "nn/backend.h"

#include <omp.h>

namespace nn {
namespace {

template <typename T>
using ArrRow = Eigen::Array<T, 1, Eigen::Dynamic>;

void check_targets(CView<std::int32_t> targets, Index N, Index V, const char* fn) {
  if (targets.numel() != N)
    throw std::invalid_argument(std::string(fn) + ": targets must have N = " + std::to_string(N) +
                                " elements, got shape " + targets.shape.str());
  for (Index i = 0; i < N; ++i)
    if (targets[i] < 0 || targets[i] >= V)
      throw std::out_of_range(std::string(fn) + ": target " + std::to_string(targets[i]) +
                              " at row " + std::to_string(i) + " is outside [0, " +
                              std::to_string(V) + ")");
}

template <typename T>
void check_lm(CView<T> hidden, CView<T> W, CView<T> b, const char* fn) {
  auto fail = [&](const std::string& why) {
    throw std::invalid_argument(std::string(fn) + ": " + why + " (hidden " + hidden.shape.str() +
                                ", W " + W.shape.str() + ", b " +
                                (b.data ? b.shape.str() : std::string("none")) + ")");
  };
  if (W.ndim() != 2) fail("W must be [V, E]");
  if (hidden.ndim() < 1 || hidden.dim(hidden.ndim() - 1) != W.dim(1))
    fail("hidden must be [N, E] with W's E");
  if (b.data && b.numel() != W.dim(0)) fail("b must have V elements");
}

// Row pass shared by both LM variants. `row` holds raw logits (no bias). Adds the bias, and
// returns (log-sum-exp − logit[target]) and whether argmax == target. If `grad` is true, leaves
// row = gscale·(softmax − onehot) and adds it to db (if given).
template <typename T>
double lm_row(T* row, Index V, const T* b, std::int32_t target, bool grad, T gscale, T* db,
              bool* correct) {
  Eigen::Map<ArrRow<T>> r(row, V);
  if (b) r += Eigen::Map<const ArrRow<T>>(b, V);
  const T m = r.maxCoeff();
  const T lt = r[target];
  bool ok = (lt == m);
  if (ok) {  // first max wins on ties
    for (Index j = 0; j < target; ++j)
      if (row[j] == m) {
        ok = false;
        break;
      }
  }
  *correct = ok;
  double s;
  if (grad) {
    r = (r - m).exp();
    s = (double)r.sum();
    const T c = T(gscale / s);
    if (db) {
      for (Index j = 0; j < V; ++j) {
        T v = row[j] * c;
        row[j] = v;
        db[j] += v;
      }
      db[target] -= gscale;
    } else {
      r *= c;
    }
    row[target] -= gscale;
  } else {
    s = (double)(r - m).exp().sum();
  }
  return std::log(s) + (double)m - (double)lt;
}

template <typename T>
LossResult lm_ce_impl(CView<T> hidden, CView<T> W, CView<T> b, CView<std::int32_t> targets,
                      View<T> dhidden, View<T> dW, View<T> db, View<T> workspace, Index chunk,
                      T grad_scale, bool grad, const char* fn) {
  check_lm<T>(hidden, W, b, fn);
  const Index V = W.dim(0), E = W.dim(1);
  const Index N = E ? hidden.numel() / E : 0;
  check_targets(targets, N, V, fn);
  if (chunk < 1) throw std::invalid_argument(std::string(fn) + ": chunk must be >= 1");
  if (grad) {
    if (dhidden.data && dhidden.numel() != hidden.numel())
      throw std::invalid_argument(std::string(fn) + ": dhidden " + dhidden.shape.str() +
                                  " must have hidden's shape " + hidden.shape.str());
    if (dW.data && dW.shape != W.shape)
      throw std::invalid_argument(std::string(fn) + ": dW " + dW.shape.str() +
                                  " must have W's shape " + W.shape.str());
    if (db.data && db.numel() != V)
      throw std::invalid_argument(std::string(fn) + ": db " + db.shape.str() + " must have V = " +
                                  std::to_string(V) + " elements");
  }
  LossResult res;
  if (N == 0) return res;
  // Balanced chunks: N = 560 with chunk 256 runs as 3 × 187 rows rather than 256 + 256 + 48
  // (a small trailing GEMM is the least efficient one).
  {
    const Index nchunks = (N + chunk - 1) / chunk;
    chunk = (N + nchunks - 1) / nchunks;
  }
  Tensor<T> own;
  T* L;
  if (workspace.data) {
    if (workspace.numel() < chunk * V)
      throw std::invalid_argument(std::string(fn) + ": workspace has " +
                                  std::to_string(workspace.numel()) + " elements, needs chunk·V = " +
                                  std::to_string(chunk * V));
    L = workspace.data;
  } else {
    own.resize(Shape{chunk * V});
    L = own.data();
  }
  const T gscale = grad_scale / T(N);
  double loss = 0;
  Index correct = 0;
  const int nt = num_threads();
  if (nt <= 1 || V < 64 * nt || omp_in_parallel()) {
    // Serial path: the row pass also accumulates db (one pass over each logits row).
    for (Index r0 = 0; r0 < N; r0 += chunk) {
      const Index n = std::min(chunk, N - r0);
      const T* h = hidden.data + r0 * E;
      gemm(false, true, n, V, E, T(1), h, E, W.data, E, T(0), L, V);
      for (Index i = 0; i < n; ++i) {
        bool ok;
        loss += lm_row<T>(L + i * V, V, b.data, targets[r0 + i], grad, gscale,
                          grad ? db.data : nullptr, &ok);
        correct += ok;
      }
      if (grad && dhidden.data)
        gemm(false, false, n, E, V, T(1), L, V, W.data, E, T(0), dhidden.data + r0 * E, E);
      if (grad && dW.data) gemm(true, false, V, E, n, T(1), L, V, h, E, T(1), dW.data, E);
    }
  } else {
    // Threaded path: every GEMM is split into independent slices (vocabulary rows for the
    // logits and dW, hidden columns for dhidden), the row pass is split by rows, and db is
    // summed per vocabulary slice. No thread writes what another one writes.
#pragma omp parallel reduction(+ : loss, correct)
    {
      const int nth = omp_get_num_threads(), tid = omp_get_thread_num();
      const Index v0 = V * tid / nth, v1 = V * (tid + 1) / nth;
      const Index e0 = E * tid / nth, e1 = E * (tid + 1) / nth;
      for (Index r0 = 0; r0 < N; r0 += chunk) {
        const Index n = std::min(chunk, N - r0);
        const T* h = hidden.data + r0 * E;
        if (v1 > v0)
          gemm(false, true, n, v1 - v0, E, T(1), h, E, W.data + v0 * E, E, T(0), L + v0, V);
#pragma omp barrier
#pragma omp for schedule(static)
        for (Index i = 0; i < n; ++i) {
          bool ok;
          loss += lm_row<T>(L + i * V, V, b.data, targets[r0 + i], grad, gscale, nullptr, &ok);
          correct += ok;
        }  // implicit barrier
        if (grad) {
          if (db.data)
            for (Index i = 0; i < n; ++i) {
              const T* row = L + i * V;
              for (Index j = v0; j < v1; ++j) db.data[j] += row[j];
            }
          if (dhidden.data && e1 > e0)
            gemm(false, false, n, e1 - e0, V, T(1), L, V, W.data + e0, E, T(0),
                 dhidden.data + r0 * E + e0, E);
          if (dW.data && v1 > v0)
            gemm(true, false, v1 - v0, E, n, T(1), L + v0, V, h, E, T(1), dW.data + v0 * E, E);
        }
#pragma omp barrier
      }
    }
  }
  res.loss = loss / (double)N;
  res.correct = correct;
  return res;
}

}  // namespace

template <typename T>
LossResult lm_softmax_ce_forward_backward(CView<T> hidden, CView<T> W, CView<T> b,
                                          CView<std::int32_t> targets, View<T> dhidden,
                                          View<T> dW, View<T> db, View<T> workspace, Index chunk,
                                          T grad_scale) {
  return lm_ce_impl<T>(hidden, W, b, targets, dhidden, dW, db, workspace, chunk, grad_scale, true,
                       "lm_softmax_ce_forward_backward");
}

template <typename T>
LossResult lm_softmax_ce_forward(CView<T> hidden, CView<T> W, CView<T> b,
                                 CView<std::int32_t> targets, View<T> workspace, Index chunk) {
  return lm_ce_impl<T>(hidden, W, b, targets, {}, {}, {}, workspace, chunk, T(1), false,
                       "lm_softmax_ce_forward");
}

template <typename T>
LossResult softmax_ce_forward_backward(CView<T> logits, CView<std::int32_t> targets,
                                       View<T> dlogits, T grad_scale) {
  if (logits.ndim() != 2)
    throw std::invalid_argument("softmax_ce_forward_backward: logits must be [N, C], got " +
                                logits.shape.str());
  const Index N = logits.dim(0), C = logits.dim(1);
  check_targets(targets, N, C, "softmax_ce_forward_backward");
  if (dlogits.data && dlogits.shape != logits.shape)
    throw std::invalid_argument("softmax_ce_forward_backward: dlogits " + dlogits.shape.str() +
                                " must have logits' shape " + logits.shape.str());
  LossResult res;
  if (N == 0) return res;
  const double gs = (double)grad_scale / (double)N;
  double loss = 0;
  for (Index i = 0; i < N; ++i) {
    const T* x = logits.data + i * C;
    const std::int32_t t = targets[i];
    Index am = 0;
    for (Index j = 1; j < C; ++j)
      if (x[j] > x[am]) am = j;
    const double m = (double)x[am];
    double s = 0;
    for (Index j = 0; j < C; ++j) s += std::exp((double)x[j] - m);
    const double lse = std::log(s) + m;
    loss += lse - (double)x[t];
    res.correct += (am == t);
    if (dlogits.data) {
      T* d = dlogits.data + i * C;
      for (Index j = 0; j < C; ++j) {
        double p = std::exp((double)x[j] - lse);
        d[j] = T(gs * (p - (j == t ? 1.0 : 0.0)));
      }
    }
  }
  res.loss = loss / (double)N;
  return res;
}

template <typename T>
void softmax_forward(CView<T> logits, View<T> probs) {
  if (logits.ndim() != 2 || probs.shape != logits.shape)
    throw std::invalid_argument("softmax_forward: logits must be [N, C] and probs the same, got " +
                                logits.shape.str() + " and " + probs.shape.str());
  const Index N = logits.dim(0), C = logits.dim(1);
  for (Index i = 0; i < N; ++i) {
    const T* x = logits.data + i * C;
    T* p = probs.data + i * C;
    double m = -INFINITY;
    for (Index j = 0; j < C; ++j) m = std::max(m, (double)x[j]);
    double s = 0;
    for (Index j = 0; j < C; ++j) s += std::exp((double)x[j] - m);
    for (Index j = 0; j < C; ++j) p[j] = T(std::exp((double)x[j] - m) / s);
  }
}

#define INSPIRE_INST(T)                                                                        \
  template LossResult lm_softmax_ce_forward_backward<T>(CView<T>, CView<T>, CView<T>,          \
                                                        CView<std::int32_t>, View<T>, View<T>, \
                                                        View<T>, View<T>, Index, T);           \
  template LossResult lm_softmax_ce_forward<T>(CView<T>, CView<T>, CView<T>,                   \
                                               CView<std::int32_t>, View<T>, Index);           \
  template LossResult softmax_ce_forward_backward<T>(CView<T>, CView<std::int32_t>, View<T>,   \
                                                     T);                                       \
  template void softmax_forward<T>(CView<T>, View<T>);
INSPIRE_INST(float)
INSPIRE_INST(double)
#undef INSPIRE_INST

}  // namespace nn
