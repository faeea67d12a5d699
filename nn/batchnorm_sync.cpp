// nn/batchnorm_sync.cpp — see nn/batchnorm_sync.h (the same double-precision arithmetic as
// nn/batchnorm.cpp, with the per-channel sums added over the ranks).
#include "nn/batchnorm_sync.h"

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace nn {

template <typename T>
void batchnorm_forward_train_sync(CView<T> x, CView<T> weight, CView<T> bias,
                                  View<T> running_mean, View<T> running_var, View<T> y,
                                  BatchNormCache<T> cache, const AllSumFn& sum, Index global_n,
                                  double momentum, double eps) {
  if (x.ndim() != 2 || y.shape != x.shape || cache.xhat.shape != x.shape)
    throw std::invalid_argument("batchnorm_forward_train_sync: x " + x.shape.str() + ", y " +
                                y.shape.str() + ", cache xhat " + cache.xhat.shape.str() +
                                " must be the same [N, C]");
  const Index N = x.dim(0), C = x.dim(1);
  if (weight.numel() != C || bias.numel() != C || running_mean.numel() != C ||
      running_var.numel() != C || cache.rstd.numel() != C)
    throw std::invalid_argument("batchnorm_forward_train_sync: weight, bias, running stats and "
                                "rstd must have C = " + std::to_string(C) + " elements");
  if (global_n < 2 || global_n < N)
    throw std::invalid_argument("batchnorm_forward_train_sync: global batch of " +
                                std::to_string(global_n) + " rows (this rank has " +
                                std::to_string(N) + "; BatchNorm needs at least 2)");
  const double G = (double)global_n;
  std::vector<double> mean(C, 0.0), var(C, 0.0);
  for (Index n = 0; n < N; ++n)
    for (Index c = 0; c < C; ++c) mean[c] += (double)x.data[n * C + c];
  sum(mean.data(), mean.size());
  for (Index c = 0; c < C; ++c) mean[c] /= G;
  for (Index n = 0; n < N; ++n)
    for (Index c = 0; c < C; ++c) {
      double d = (double)x.data[n * C + c] - mean[c];
      var[c] += d * d;
    }
  sum(var.data(), var.size());
  for (Index c = 0; c < C; ++c) {
    const double vb = var[c] / G;
    const double vu = var[c] / (G - 1);
    cache.rstd[c] = T(1.0 / std::sqrt(vb + eps));
    running_mean[c] = T((1.0 - momentum) * (double)running_mean[c] + momentum * mean[c]);
    running_var[c] = T((1.0 - momentum) * (double)running_var[c] + momentum * vu);
  }
  for (Index n = 0; n < N; ++n)
    for (Index c = 0; c < C; ++c) {
      const T xh = T(((double)x.data[n * C + c] - mean[c]) * (double)cache.rstd[c]);
      cache.xhat.data[n * C + c] = xh;
      y.data[n * C + c] = xh * weight[c] + bias[c];
    }
}

template <typename T>
void batchnorm_backward_sync(CView<T> dy, CView<T> weight, BatchNormCache<T> cache, View<T> dx,
                             View<T> dweight, View<T> dbias, const AllSumFn& sum, Index global_n,
                             double share) {
  if (dy.ndim() != 2 || cache.xhat.shape != dy.shape || weight.numel() != dy.dim(1) ||
      cache.rstd.numel() != dy.dim(1) || (dx.data && dx.shape != dy.shape))
    throw std::invalid_argument("batchnorm_backward_sync: dy " + dy.shape.str() + ", cache xhat " +
                                cache.xhat.shape.str() + ", dx " + dx.shape.str() +
                                " and weight " + weight.shape.str() + " do not fit [N, C]");
  const Index N = dy.dim(0), C = dy.dim(1);
  if ((dweight.data && dweight.numel() != C) || (dbias.data && dbias.numel() != C))
    throw std::invalid_argument("batchnorm_backward_sync: dweight " + dweight.shape.str() +
                                " and dbias " + dbias.shape.str() + " must have C elements");
  if (!(share > 0 && share <= 1))
    throw std::invalid_argument("batchnorm_backward_sync: share must be in (0, 1]");
  // [0, C): Σ dy; [C, 2C): Σ dy·x̂ — this rank's, at its local scale.
  std::vector<double> s(2 * C, 0.0);
  for (Index n = 0; n < N; ++n)
    for (Index c = 0; c < C; ++c) {
      const double g = (double)dy.data[n * C + c];
      s[c] += g;
      s[C + c] += g * (double)cache.xhat.data[n * C + c];
    }
  // Parameter gradients stay local: the data-parallel all-reduce weights them by share.
  if (dbias.data)
    for (Index c = 0; c < C; ++c) dbias[c] += T(s[c]);
  if (dweight.data)
    for (Index c = 0; c < C; ++c) dweight[c] += T(s[C + c]);
  // Every rank takes part in the sum (even one that needs no dx): the global sums at the
  // global scale, divided back by share for this rank's local-scale dx.
  for (auto& v : s) v *= share;
  sum(s.data(), s.size());
  if (!dx.data) return;
  const double G = (double)global_n;
  for (Index n = 0; n < N; ++n)
    for (Index c = 0; c < C; ++c) {
      const double k = (double)weight[c] * (double)cache.rstd[c] / G;
      const double v = k * (G * (double)dy.data[n * C + c] - s[c] / share -
                            (double)cache.xhat.data[n * C + c] * s[C + c] / share);
      dx.data[n * C + c] = T(v);
    }
}

#define INSPIRE_INST(T)                                                                          \
  template void batchnorm_forward_train_sync<T>(CView<T>, CView<T>, CView<T>, View<T>, View<T>,  \
                                                View<T>, BatchNormCache<T>, const AllSumFn&,     \
                                                Index, double, double);                          \
  template void batchnorm_backward_sync<T>(CView<T>, CView<T>, BatchNormCache<T>, View<T>,       \
                                           View<T>, View<T>, const AllSumFn&, Index, double);
INSPIRE_INST(float)
INSPIRE_INST(double)
#undef INSPIRE_INST

}  // namespace nn
