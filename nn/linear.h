// nn/linear.h — fully connected layer, PyTorch convention: y = x Wᵀ + b, W is [out, in].
//
// Forward and backward live side by side in nn/linear.cpp. Instantiated for float and double.
// Gradient convention (nn/param.h): dW and db ACCUMULATE (+=); dx is WRITTEN (=).
#pragma once

#include "nn/tensor.h"

namespace nn {

// x [..., in] (leading dims are flattened into N rows), W [out, in], b [out] or empty (no bias),
// y [..., out] with the same leading dims as x.
// Throws std::invalid_argument naming "linear" and the shapes when they do not fit.
template <typename T>
void linear_forward(CView<T> x, CView<T> W, CView<T> b, View<T> y);

// dy [..., out]. Any of dx / dW / db may be an empty View (data == nullptr): that gradient is
// skipped (e.g. dx of the first layer, or frozen weights).
//   dx  = dy W          (written)
//   dW += dyᵀ x         (accumulated)
//   db += Σ_rows dy     (accumulated)
template <typename T>
void linear_backward(CView<T> x, CView<T> W, CView<T> dy, View<T> dx, View<T> dW, View<T> db);

}  // namespace nn
