// nn/batchnorm_sync.h — synchronised BatchNorm1d (data parallelism, docs/distributed.md): the
// train-mode batch statistics are those of the rows of ALL ranks together, so N ranks with
// bs/N rows each compute what one process computes on the whole batch (PyTorch SyncBatchNorm).
// nn/ knows no communicator: `sum` adds host doubles over the ranks, in place. Host memory.
//
// Scales: each rank's dy, dx, dweight, dbias are gradients of its LOCAL loss (the mean over
// its rows); the global loss is Σ_r share_r · local_r with share_r = local rows / global_n,
// which is also the weight of the rank's gradient in the data-parallel all-reduce. The backward
// forms the global sums Σ share_r·Σ dy and Σ share_r·Σ dy·x̂ and returns dx at the local scale.
#pragma once

#include <cstddef>
#include <functional>

#include "nn/batchnorm.h"
#include "nn/tensor.h"

namespace nn {

using AllSumFn = std::function<void(double* data, std::size_t n)>;

// As batchnorm_forward_train, with mean / variance over global_n rows (x holds this rank's).
// Every rank updates the running stats identically. global_n >= 2.
template <typename T>
void batchnorm_forward_train_sync(CView<T> x, CView<T> weight, CView<T> bias,
                                  View<T> running_mean, View<T> running_var, View<T> y,
                                  BatchNormCache<T> cache, const AllSumFn& sum, Index global_n,
                                  double momentum = 0.1, double eps = 1e-5);

// As batchnorm_backward for the forward above; share = this rank's rows / global_n.
template <typename T>
void batchnorm_backward_sync(CView<T> dy, CView<T> weight, BatchNormCache<T> cache, View<T> dx,
                             View<T> dweight, View<T> dbias, const AllSumFn& sum, Index global_n,
                             double share);

}  // namespace nn
