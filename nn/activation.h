// nn/activation.h — elementwise activations. In place is allowed (y.data == x.data).
// Input gradients are WRITTEN (=).
#pragma once

#include "nn/tensor.h"

namespace nn {

// y = max(x, 0); x and y have the same number of elements.
template <typename T>
void relu_forward(CView<T> x, View<T> y);
// dx = dy where y > 0, else 0. Takes the forward OUTPUT y (so the forward may run in place).
// dx may alias dy.
template <typename T>
void relu_backward(CView<T> y, CView<T> dy, View<T> dx);

}  // namespace nn
