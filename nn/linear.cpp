// nn/linear.cpp — y = x Wᵀ + b and its backward, through nn::gemm (the backend seam).
#include "nn/linear.h"

#include <stdexcept>
#include <string>

#include "nn/backend.h"

namespace nn {
namespace {

template <typename T>
void check_linear(CView<T> x, CView<T> W, CView<T> b, const Shape& y, const char* fn,
                  const char* yname) {
  auto fail = [&](const std::string& why) {
    throw std::invalid_argument(std::string(fn) + ": " + why + " (x " + x.shape.str() + ", W " +
                                W.shape.str() + ", b " + (b.empty() ? "none" : b.shape.str()) +
                                ", " + yname + " " + y.str() + ")");
  };
  if (W.ndim() != 2) fail("W must be [out, in]");
  if (x.ndim() < 1 || x.dim(x.ndim() - 1) != W.dim(1)) fail("x's last dim must equal W's in");
  if (!b.empty() && (b.numel() != W.dim(0))) fail("b must have out elements");
  Index rows = W.dim(1) ? x.numel() / W.dim(1) : 0;
  if (y.ndim < 1 || y.d[y.ndim - 1] != W.dim(0) || y.numel() != rows * W.dim(0))
    fail(std::string(yname) + " must be [..., out] with x's rows");
}

}  // namespace

template <typename T>
void linear_forward(CView<T> x, CView<T> W, CView<T> b, View<T> y) {
  check_linear<T>(x, W, b, y.shape, "linear_forward", "y");
  const Index out = W.dim(0), in = W.dim(1), N = in ? x.numel() / in : 0;
  if (N == 0) return;
  if (!b.empty()) {
    for (Index r = 0; r < N; ++r)
      for (Index o = 0; o < out; ++o) y.data[r * out + o] = b[o];
  }
  gemm(false, true, N, out, in, T(1), x.data, in, W.data, in, b.empty() ? T(0) : T(1), y.data,
       out);
}

template <typename T>
void linear_backward(CView<T> x, CView<T> W, CView<T> dy, View<T> dx, View<T> dW, View<T> db) {
  check_linear<T>(x, W, db.empty() ? CView<T>() : CView<T>(db), dy.shape, "linear_backward",
                  "dy");
  const Index out = W.dim(0), in = W.dim(1), N = in ? x.numel() / in : 0;
  if (dx.data) {
    if (dx.shape.numel() != x.numel() || dx.dim(dx.ndim() - 1) != in)
      throw std::invalid_argument("linear_backward: dx " + dx.shape.str() +
                                  " must have x's shape " + x.shape.str());
  }
  if (dW.data && dW.shape != W.shape)
    throw std::invalid_argument("linear_backward: dW " + dW.shape.str() + " must have W's shape " +
                                W.shape.str());
  if (N == 0) return;
  if (dx.data) gemm(false, false, N, in, out, T(1), dy.data, out, W.data, in, T(0), dx.data, in);
  if (dW.data) gemm(true, false, out, in, N, T(1), dy.data, out, x.data, in, T(1), dW.data, in);
  if (db.data) {
    for (Index r = 0; r < N; ++r)
      for (Index o = 0; o < out; ++o) db.data[o] += dy.data[r * out + o];
  }
}

#define INSPIRE_INST(T)                                                   \
  template void linear_forward<T>(CView<T>, CView<T>, CView<T>, View<T>); \
  template void linear_backward<T>(CView<T>, CView<T>, CView<T>, View<T>, View<T>, View<T>);
INSPIRE_INST(float)
INSPIRE_INST(double)
#undef INSPIRE_INST

}  // namespace nn
