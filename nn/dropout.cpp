// nn/dropout.cpp — dropout masks and the three ways AWD-LSTM applies them (see nn/dropout.h).
#include "nn/dropout.h"

#include "nn/elementwise.h"
#include "nn/parallel.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace nn {
namespace {

template <typename T>
void check_same_numel(const Shape& a, const Shape& b, const char* layer, const char* an,
                      const char* bn) {
  if (a.numel() != b.numel())
    throw std::invalid_argument(std::string(layer) + ": " + an + " " + a.str() + " and " + bn +
                                " " + b.str() + " must have the same number of elements");
}

template <typename T>
void mul_elementwise(CView<T> a, CView<T> m, View<T> out, const char* layer) {
  check_same_numel<T>(a.shape, m.shape, layer, "input", "mask");
  check_same_numel<T>(a.shape, out.shape, layer, "input", "output");
  const Index n = a.numel();
  const T* pa = a.data;
  const T* pm = m.data;
  T* po = out.data;
  parallel_ranges(n, 1 << 16, [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; ++i) po[i] = pa[i] * pm[i];
  });
}

// x [bs, sl, C] with mask [bs, C] or [bs, 1, C].
template <typename T>
void rnn_mul(CView<T> x, CView<T> mask, View<T> y, const char* layer) {
  if (x.ndim() != 3)
    throw std::invalid_argument(std::string(layer) + ": input must be [bs, sl, C], got " +
                                x.shape.str());
  const Index bs = x.dim(0), sl = x.dim(1), C = x.dim(2);
  bool ok = (mask.ndim() == 2 && mask.dim(0) == bs && mask.dim(1) == C) ||
            (mask.ndim() == 3 && mask.dim(0) == bs && mask.dim(1) == 1 && mask.dim(2) == C);
  if (!ok)
    throw std::invalid_argument(std::string(layer) + ": mask must be [bs, C] or [bs, 1, C] = " +
                                Shape{bs, C}.str() + " for input " + x.shape.str() + ", got " +
                                mask.shape.str());
  check_same_numel<T>(x.shape, y.shape, layer, "input", "output");
  parallel_ranges(bs, bs * sl * C > (1 << 16) ? 1 : bs, [&](Index b0, Index b1) {
    for (Index b = b0; b < b1; ++b) {
      const T* m = mask.data + b * C;
      for (Index t = 0; t < sl; ++t) {
        const T* xi = x.data + (b * sl + t) * C;
        T* yi = y.data + (b * sl + t) * C;
        for (Index c = 0; c < C; ++c) yi[c] = xi[c] * m[c];
      }
    }
  });
}

}  // namespace

template <typename T>
void dropout_mask(Rng& rng, double p, View<T> mask) {
  if (!(p >= 0.0 && p <= 1.0))
    throw std::invalid_argument("dropout_mask: p must be in [0, 1], got " + std::to_string(p));
  const Index n = mask.numel();
  if (p == 0.0) {
    mask.fill(T(1));
    return;
  }
  if (p == 1.0) {
    mask.fill(T(0));
    return;
  }
  const T keep = T(1.0 / (1.0 - p));
  const double q = 1.0 - p;  // keep probability
  for (Index i = 0; i < n; ++i) mask[i] = ew::dropout_mask_value<T>(rng.uniform(), q, keep);
}

template <typename T>
void dropout_forward(CView<T> x, CView<T> mask, View<T> y) {
  mul_elementwise<T>(x, mask, y, "dropout_forward");
}
template <typename T>
void dropout_backward(CView<T> dy, CView<T> mask, View<T> dx) {
  mul_elementwise<T>(dy, mask, dx, "dropout_backward");
}

template <typename T>
void rnn_dropout_forward(CView<T> x, CView<T> mask, View<T> y) {
  rnn_mul<T>(x, mask, y, "rnn_dropout_forward");
}
template <typename T>
void rnn_dropout_backward(CView<T> dy, CView<T> mask, View<T> dx) {
  rnn_mul<T>(dy, mask, dx, "rnn_dropout_backward");
}

template <typename T>
void weight_dropout_forward(CView<T> W_raw, CView<T> mask, View<T> W_eff) {
  if (W_raw.shape != mask.shape || W_raw.shape != W_eff.shape)
    throw std::invalid_argument("weight_dropout_forward: W_raw " + W_raw.shape.str() + ", mask " +
                                mask.shape.str() + " and W_eff " + W_eff.shape.str() +
                                " must have the same shape");
  mul_elementwise<T>(W_raw, mask, W_eff, "weight_dropout_forward");
}
template <typename T>
void weight_dropout_backward(CView<T> dW_eff, CView<T> mask, View<T> dW_raw) {
  if (dW_eff.shape != mask.shape || dW_eff.shape != dW_raw.shape)
    throw std::invalid_argument("weight_dropout_backward: dW_eff " + dW_eff.shape.str() +
                                ", mask " + mask.shape.str() + " and dW_raw " +
                                dW_raw.shape.str() + " must have the same shape");
  const Index n = dW_eff.numel();
  const T* g = dW_eff.data;
  const T* m = mask.data;
  T* o = dW_raw.data;
  parallel_ranges(n, 1 << 16, [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; ++i) o[i] += g[i] * m[i];
  });
}

#define INSPIRE_INST(T)                                                     \
  template void dropout_mask<T>(Rng&, double, View<T>);                     \
  template void dropout_forward<T>(CView<T>, CView<T>, View<T>);            \
  template void dropout_backward<T>(CView<T>, CView<T>, View<T>);           \
  template void rnn_dropout_forward<T>(CView<T>, CView<T>, View<T>);        \
  template void rnn_dropout_backward<T>(CView<T>, CView<T>, View<T>);       \
  template void weight_dropout_forward<T>(CView<T>, CView<T>, View<T>);     \
  template void weight_dropout_backward<T>(CView<T>, CView<T>, View<T>);
INSPIRE_INST(float)
INSPIRE_INST(double)
#undef INSPIRE_INST

}  // namespace nn
