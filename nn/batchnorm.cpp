// nn/batchnorm.cpp — BatchNorm1d [N, C]: train/eval forward and the train-mode backward.
#include "nn/batchnorm.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace nn {
namespace {

constexpr Index kBlock = 256;  // channels whose statistics are held at once (on the stack)

template <typename T>
void check_bn(CView<T> x, CView<T> weight, CView<T> bias, CView<T> rm, CView<T> rv,
              const Shape& y, const char* fn) {
  auto fail = [&](const std::string& why) {
    throw std::invalid_argument(std::string(fn) + ": " + why + " (x " + x.shape.str() +
                                ", weight " + weight.shape.str() + ", bias " + bias.shape.str() +
                                ", running_mean " + rm.shape.str() + ", running_var " +
                                rv.shape.str() + ", y " + y.str() + ")");
  };
  if (x.ndim() != 2) fail("x must be [N, C]");
  const Index C = x.dim(1);
  if (weight.numel() != C || bias.numel() != C) fail("weight and bias must have C elements");
  if (rm.numel() != C || rv.numel() != C) fail("running stats must have C elements");
  if (y != x.shape) fail("y must have x's shape");
}

}  // namespace

template <typename T>
void batchnorm_init(View<T> weight, View<T> bias, View<T> running_mean, View<T> running_var) {
  if (weight.data) weight.fill(T(1));
  if (bias.data) bias.fill(T(1e-3));
  if (running_mean.data) running_mean.fill(T(0));
  if (running_var.data) running_var.fill(T(1));
}

template <typename T>
void batchnorm_forward_train(CView<T> x, CView<T> weight, CView<T> bias, View<T> running_mean,
                             View<T> running_var, View<T> y, BatchNormCache<T> cache,
                             double momentum, double eps) {
  check_bn<T>(x, weight, bias, running_mean, running_var, y.shape, "batchnorm_forward_train");
  const Index N = x.dim(0), C = x.dim(1);
  if (N < 2)
    throw std::invalid_argument("batchnorm_forward_train: expected more than 1 value per channel "
                                "when training, got input " + x.shape.str());
  if (cache.xhat.shape != x.shape || cache.rstd.numel() != C)
    throw std::invalid_argument("batchnorm_forward_train: cache xhat " + cache.xhat.shape.str() +
                                " must be " + x.shape.str() + " and rstd " +
                                cache.rstd.shape.str() + " must have C = " + std::to_string(C) +
                                " elements");
  // Channel blocks of kBlock with the statistics on the stack (nothing allocated); within a
  // channel the sums run over n in order.
  for (Index c0 = 0; c0 < C; c0 += kBlock) {
    const Index nc = std::min(kBlock, C - c0);
    double mean[kBlock] = {}, var[kBlock] = {};
    for (Index n = 0; n < N; ++n)
      for (Index j = 0; j < nc; ++j) mean[j] += (double)x.data[n * C + c0 + j];
    for (Index j = 0; j < nc; ++j) mean[j] /= (double)N;
    for (Index n = 0; n < N; ++n)
      for (Index j = 0; j < nc; ++j) {
        double d = (double)x.data[n * C + c0 + j] - mean[j];
        var[j] += d * d;
      }
    for (Index j = 0; j < nc; ++j) {
      const Index c = c0 + j;
      const double vb = var[j] / (double)N;
      const double vu = var[j] / (double)(N - 1);
      cache.rstd[c] = T(1.0 / std::sqrt(vb + eps));
      running_mean[c] = T((1.0 - momentum) * (double)running_mean[c] + momentum * mean[j]);
      running_var[c] = T((1.0 - momentum) * (double)running_var[c] + momentum * vu);
    }
    for (Index n = 0; n < N; ++n)
      for (Index j = 0; j < nc; ++j) {
        const Index c = c0 + j;
        const T xh = T(((double)x.data[n * C + c] - mean[j]) * (double)cache.rstd[c]);
        cache.xhat.data[n * C + c] = xh;
        y.data[n * C + c] = xh * weight[c] + bias[c];
      }
  }
}

template <typename T>
void batchnorm_forward_eval(CView<T> x, CView<T> weight, CView<T> bias, CView<T> running_mean,
                            CView<T> running_var, View<T> y, double eps) {
  check_bn<T>(x, weight, bias, running_mean, running_var, y.shape, "batchnorm_forward_eval");
  const Index N = x.dim(0), C = x.dim(1);
  for (Index c0 = 0; c0 < C; c0 += kBlock) {
    const Index nc = std::min(kBlock, C - c0);
    T scale[kBlock], shift[kBlock];
    for (Index j = 0; j < nc; ++j) {
      const Index c = c0 + j;
      const double s = (double)weight[c] / std::sqrt((double)running_var[c] + eps);
      scale[j] = T(s);
      shift[j] = T((double)bias[c] - (double)running_mean[c] * s);
    }
    for (Index n = 0; n < N; ++n)
      for (Index j = 0; j < nc; ++j)
        y.data[n * C + c0 + j] = x.data[n * C + c0 + j] * scale[j] + shift[j];
  }
}

template <typename T>
void batchnorm_backward(CView<T> dy, CView<T> weight, BatchNormCache<T> cache, View<T> dx,
                        View<T> dweight, View<T> dbias) {
  if (dy.ndim() != 2 || cache.xhat.shape != dy.shape || weight.numel() != dy.dim(1) ||
      cache.rstd.numel() != dy.dim(1))
    throw std::invalid_argument("batchnorm_backward: dy " + dy.shape.str() + ", cache xhat " +
                                cache.xhat.shape.str() + ", rstd " + cache.rstd.shape.str() +
                                " and weight " + weight.shape.str() + " do not fit [N, C]");
  const Index N = dy.dim(0), C = dy.dim(1);
  if (dx.data && dx.shape != dy.shape)
    throw std::invalid_argument("batchnorm_backward: dx " + dx.shape.str() + " must be " +
                                dy.shape.str());
  if ((dweight.data && dweight.numel() != C) || (dbias.data && dbias.numel() != C))
    throw std::invalid_argument("batchnorm_backward: dweight " + dweight.shape.str() +
                                " and dbias " + dbias.shape.str() + " must have C elements");
  for (Index c0 = 0; c0 < C; c0 += kBlock) {
    const Index nc = std::min(kBlock, C - c0);
    double sdy[kBlock] = {}, sdyx[kBlock] = {};
    for (Index n = 0; n < N; ++n)
      for (Index j = 0; j < nc; ++j) {
        const double g = (double)dy.data[n * C + c0 + j];
        sdy[j] += g;
        sdyx[j] += g * (double)cache.xhat.data[n * C + c0 + j];
      }
    if (dbias.data)
      for (Index j = 0; j < nc; ++j) dbias[c0 + j] += T(sdy[j]);
    if (dweight.data)
      for (Index j = 0; j < nc; ++j) dweight[c0 + j] += T(sdyx[j]);
    if (!dx.data) continue;
    for (Index n = 0; n < N; ++n)
      for (Index j = 0; j < nc; ++j) {
        const Index c = c0 + j;
        const double k = (double)weight[c] * (double)cache.rstd[c] / (double)N;
        const double v = k * ((double)N * (double)dy.data[n * C + c] - sdy[j] -
                              (double)cache.xhat.data[n * C + c] * sdyx[j]);
        dx.data[n * C + c] = T(v);
      }
  }
}

#define INSPIRE_INST(T)                                                                         \
  template void batchnorm_init<T>(View<T>, View<T>, View<T>, View<T>);                          \
  template void batchnorm_forward_train<T>(CView<T>, CView<T>, CView<T>, View<T>, View<T>,      \
                                           View<T>, BatchNormCache<T>, double, double);         \
  template void batchnorm_forward_eval<T>(CView<T>, CView<T>, CView<T>, CView<T>, CView<T>,     \
                                          View<T>, double);                                     \
  template void batchnorm_backward<T>(CView<T>, CView<T>, BatchNormCache<T>, View<T>, View<T>, \
                                      View<T>);
INSPIRE_INST(float)
INSPIRE_INST(double)
#undef INSPIRE_INST

}  // namespace nn
