// nn/pooling.cpp — masked concat pooling [last, max, avg] and its backward.
#include "nn/pooling.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace nn {
namespace {

// Shapes, and per-row (length, index of `last`). Throws on an all-pad row.
template <typename T>
void check_pool(const Shape& out, CView<std::uint8_t> mask, Index bptt, const char* fn) {
  if (out.ndim != 3)
    throw std::invalid_argument(std::string(fn) + ": out must be [bs, T, C], got " + out.str());
  if (mask.ndim() != 2 || mask.dim(0) != out.d[0] || mask.dim(1) != out.d[1])
    throw std::invalid_argument(std::string(fn) + ": pad_mask must be [bs, T] = " +
                                Shape{out.d[0], out.d[1]}.str() + ", got " + mask.shape.str());
  if (bptt < 1)
    throw std::invalid_argument(std::string(fn) + ": bptt must be >= 1, got " +
                                std::to_string(bptt));
}

struct RowInfo {
  Index len, last;
};

RowInfo row_info(CView<std::uint8_t> mask, Index b, Index T_, Index bptt, const char* fn) {
  const std::uint8_t* m = mask.data + b * T_;
  Index pads = 0, k = 0;
  for (Index t = 0; t < T_; ++t) pads += (m[t] != 0);
  for (Index t = std::max<Index>(0, T_ - bptt); t < T_; ++t) k += (m[t] != 0);
  if (pads == T_)
    throw std::invalid_argument(std::string(fn) + ": row " + std::to_string(b) +
                                " of pad_mask has no non-pad position (T = " +
                                std::to_string(T_) + ")");
  return {T_ - pads, T_ - 1 - k};
}

}  // namespace

template <typename T>
void masked_concat_pool_forward(CView<T> out, CView<std::uint8_t> pad_mask, View<T> pooled,
                                View<std::int32_t> argmax, Index bptt) {
  const char* fn = "masked_concat_pool_forward";
  check_pool<T>(out.shape, pad_mask, bptt, fn);
  const Index bs = out.dim(0), Tn = out.dim(1), C = out.dim(2);
  if (pooled.shape != Shape{bs, 3 * C})
    throw std::invalid_argument(std::string(fn) + ": pooled must be " + Shape{bs, 3 * C}.str() +
                                " for out " + out.shape.str() + ", got " + pooled.shape.str());
  if (argmax.shape != Shape{bs, C})
    throw std::invalid_argument(std::string(fn) + ": argmax cache must be " +
                                Shape{bs, C}.str() + ", got " + argmax.shape.str());
  for (Index b = 0; b < bs; ++b) {
    const RowInfo ri = row_info(pad_mask, b, Tn, bptt, fn);
    const std::uint8_t* m = pad_mask.data + b * Tn;
    T* last = pooled.data + b * 3 * C;
    T* mx = last + C;
    T* avg = last + 2 * C;
    std::int32_t* am = argmax.data + b * C;
    const T* o = out.data + b * Tn * C;
    for (Index c = 0; c < C; ++c) last[c] = o[ri.last * C + c];
    bool first = true;
    for (Index c = 0; c < C; ++c) avg[c] = T(0);
    for (Index t = 0; t < Tn; ++t) {
      if (m[t]) continue;
      const T* ot = o + t * C;
      if (first) {
        for (Index c = 0; c < C; ++c) {
          mx[c] = ot[c];
          am[c] = (std::int32_t)t;
        }
        first = false;
      } else {
        for (Index c = 0; c < C; ++c)
          if (ot[c] > mx[c]) {
            mx[c] = ot[c];
            am[c] = (std::int32_t)t;
          }
      }
      for (Index c = 0; c < C; ++c) avg[c] += ot[c];
    }
    const T inv = T(1) / T(ri.len);
    for (Index c = 0; c < C; ++c) avg[c] *= inv;
  }
}

template <typename T>
void masked_concat_pool_backward(CView<T> dpooled, CView<std::uint8_t> pad_mask,
                                 CView<std::int32_t> argmax, View<T> dout, Index bptt) {
  const char* fn = "masked_concat_pool_backward";
  check_pool<T>(dout.shape, pad_mask, bptt, fn);
  const Index bs = dout.dim(0), Tn = dout.dim(1), C = dout.dim(2);
  if (dpooled.shape != Shape{bs, 3 * C} || argmax.shape != Shape{bs, C})
    throw std::invalid_argument(std::string(fn) + ": dpooled " + dpooled.shape.str() +
                                " must be " + Shape{bs, 3 * C}.str() + " and argmax " +
                                argmax.shape.str() + " must be " + Shape{bs, C}.str() +
                                " for dout " + dout.shape.str());
  for (Index b = 0; b < bs; ++b) {
    const RowInfo ri = row_info(pad_mask, b, Tn, bptt, fn);
    const std::uint8_t* m = pad_mask.data + b * Tn;
    const T* dlast = dpooled.data + b * 3 * C;
    const T* dmx = dlast + C;
    const T* davg = dlast + 2 * C;
    const std::int32_t* am = argmax.data + b * C;
    T* d = dout.data + b * Tn * C;
    const T inv = T(1) / T(ri.len);
    for (Index t = 0; t < Tn; ++t) {
      T* dt = d + t * C;
      if (m[t])
        for (Index c = 0; c < C; ++c) dt[c] = T(0);
      else
        for (Index c = 0; c < C; ++c) dt[c] = davg[c] * inv;
    }
    for (Index c = 0; c < C; ++c) {
      const Index t = am[c];
      if (t < 0 || t >= Tn)
        throw std::invalid_argument(std::string(fn) + ": argmax[" + std::to_string(b) + ", " +
                                    std::to_string(c) + "] = " + std::to_string(t) +
                                    " outside [0, " + std::to_string(Tn) + ")");
      d[t * C + c] += dmx[c];
    }
    for (Index c = 0; c < C; ++c) d[ri.last * C + c] += dlast[c];
  }
}

#define INSPIRE_INST(T)                                                                         \
  template void masked_concat_pool_forward<T>(CView<T>, CView<std::uint8_t>, View<T>,           \
                                              View<std::int32_t>, Index);                       \
  template void masked_concat_pool_backward<T>(CView<T>, CView<std::uint8_t>,                   \
                                               CView<std::int32_t>, View<T>, Index);
INSPIRE_INST(float)
INSPIRE_INST(double)
#undef INSPIRE_INST

}  // namespace nn
