// nn/batchnorm.h — BatchNorm1d over [N, C] (PyTorch semantics, fastai init).
//
// Train mode: normalise with the batch mean and BIASED batch variance; update the running
// stats with momentum 0.1 using the UNBIASED batch variance:
//   running_mean = (1-m) running_mean + m mean;  running_var = (1-m) running_var + m var·N/(N-1)
// Eval mode: normalise with the running stats. Affine: y = x̂ · weight + bias.
// Gradient convention (nn/param.h): dweight/dbias ACCUMULATE (+=); dx is WRITTEN (=).
#pragma once

#include "nn/tensor.h"

namespace nn {

// fastai BatchNorm init: weight = 1, bias = 1e-3; running_mean = 0, running_var = 1.
// Any argument may be empty (skipped).
template <typename T>
void batchnorm_init(View<T> weight, View<T> bias, View<T> running_mean, View<T> running_var);

// Caller-owned cache written by the train-mode forward and read by the backward.
template <typename T>
struct BatchNormCache {
  View<T> xhat;  // [N, C] normalised input
  View<T> rstd;  // [C]    1 / sqrt(var_biased + eps)
};

// x, y [N, C] (y may alias x); weight, bias, running_mean, running_var [C].
// Needs N >= 2 (like PyTorch: "Expected more than 1 value per channel when training"), else
// throws std::invalid_argument. Updates running_mean / running_var in place.
template <typename T>
void batchnorm_forward_train(CView<T> x, CView<T> weight, CView<T> bias, View<T> running_mean,
                             View<T> running_var, View<T> y, BatchNormCache<T> cache,
                             double momentum = 0.1, double eps = 1e-5);

// Eval mode: y = (x - running_mean) / sqrt(running_var + eps) · weight + bias. y may alias x.
template <typename T>
void batchnorm_forward_eval(CView<T> x, CView<T> weight, CView<T> bias, CView<T> running_mean,
                            CView<T> running_var, View<T> y, double eps = 1e-5);

// Backward of the train-mode forward. dx may be empty (skipped), dweight/dbias may be empty
// (frozen). dx may alias dy.
//   dbias   += Σ_n dy;   dweight += Σ_n dy ⊙ x̂
//   dx = weight·rstd/N · (N dy − Σ_n dy − x̂ Σ_n (dy ⊙ x̂))
template <typename T>
void batchnorm_backward(CView<T> dy, CView<T> weight, BatchNormCache<T> cache, View<T> dx,
                        View<T> dweight, View<T> dbias);

}  // namespace nn
