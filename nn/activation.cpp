// nn/activation.cpp — ReLU forward and backward.
#include "nn/activation.h"

#include <stdexcept>
#include <string>

namespace nn {

template <typename T>
void relu_forward(CView<T> x, View<T> y) {
  if (x.numel() != y.numel())
    throw std::invalid_argument("relu_forward: input " + x.shape.str() + " and output " +
                                y.shape.str() + " differ in size");
  const Index n = x.numel();
  for (Index i = 0; i < n; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
}

template <typename T>
void relu_backward(CView<T> y, CView<T> dy, View<T> dx) {
  if (y.numel() != dy.numel() || y.numel() != dx.numel())
    throw std::invalid_argument("relu_backward: y " + y.shape.str() + ", dy " + dy.shape.str() +
                                " and dx " + dx.shape.str() + " differ in size");
  const Index n = y.numel();
  for (Index i = 0; i < n; ++i) dx[i] = y[i] > T(0) ? dy[i] : T(0);
}

template void relu_forward<float>(CView<float>, View<float>);
template void relu_forward<double>(CView<double>, View<double>);
template void relu_backward<float>(CView<float>, CView<float>, View<float>);
template void relu_backward<double>(CView<double>, CView<double>, View<double>);

}  // namespace nn
