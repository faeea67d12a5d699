// nn/batchnorm.cpp — BatchNorm1d [N, C]: train/eval forward and the train-mode backward.
#include "nn/batchnorm.h"

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace nn {
namespace {

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
  std::vector<double> mean(C, 0.0), var(C, 0.0);
  for (Index n = 0; n < N; ++n)
    for (Index c = 0; c < C; ++c) mean[c] += (double)x.data[n * C + c];
  for (Index c = 0; c < C; ++c) mean[c] /= (double)N;
  for (Index n = 0; n < N; ++n)
    for (Index c = 0; c < C; ++c) {
      double d = (double)x.data[n * C + c] - mean[c];
      var[c] += d * d;
    }
  for (Index c = 0; c < C; ++c) {
    const double vb = var[c] / (double)N;
    const double vu = var[c] / (double)(N - 1);
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
void batchnorm_forward_eval(CView<T> x, CView<T> weight, CView<T> bias, CView<T> running_mean,
                            CView<T> running_var, View<T> y, double eps) {
  check_bn<T>(x, weight, bias, running_mean, running_var, y.shape, "batchnorm_forward_eval");
  const Index N = x.dim(0), C = x.dim(1);
  std::vector<T> scale(C), shift(C);
  for (Index c = 0; c < C; ++c) {
    const double s = (double)weight[c] / std::sqrt((double)running_var[c] + eps);
    scale[c] = T(s);
    shift[c] = T((double)bias[c] - (double)running_mean[c] * s);
  }
  for (Index n = 0; n < N; ++n)
    for (Index c = 0; c < C; ++c) y.data[n * C + c] = x.data[n * C + c] * scale[c] + shift[c];
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
  std::vector<double> sdy(C, 0.0), sdyx(C, 0.0);
  for (Index n = 0; n < N; ++n)
    for (Index c = 0; c < C; ++c) {
      const double g = (double)dy.data[n * C + c];
      sdy[c] += g;
      sdyx[c] += g * (double)cache.xhat.data[n * C + c];
    }
  if (dbias.data)
    for (Index c = 0; c < C; ++c) dbias[c] += T(sdy[c]);
  if (dweight.data)
    for (Index c = 0; c < C; ++c) dweight[c] += T(sdyx[c]);
  if (!dx.data) return;
  for (Index n = 0; n < N; ++n)
    for (Index c = 0; c < C; ++c) {
      const double k = (double)weight[c] * (double)cache.rstd[c] / (double)N;
      const double v = k * ((double)N * (double)dy.data[n * C + c] - sdy[c] -
                            (double)cache.xhat.data[n * C + c] * sdyx[c]);
      dx.data[n * C + c] = T(v);
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
