// nn/placed.h — small helpers for model code whose tensors may live in a backend's own memory
// (nn::Placement, nn/tensor.h; nullptr: host memory, the CPU's): make a tensor of a shape there,
// take a scratch view, copy / zero / copy rows there, upload host elements. The models
// (ulmfit/awd_lstm.cpp, ulmfit/classifier_model.cpp) go through these so that one code path
// serves the CPU and a GPU.
#pragma once

#include <algorithm>
#include <cstddef>
#include <stdexcept>

#include "nn/tensor.h"

namespace nn::placed {

// A tensor that exists (a default Tensor has no buffer and a 0-d shape whose numel() is 1):
// e.g. a dropout mask that is absent when p = 0.
template <typename T>
bool present(const Tensor<T>& t) {
  return t.data() != nullptr && t.shape().ndim > 0 && t.numel() > 0;
}

// `t` in `place`'s memory with shape s (zeroed when it changes).
template <typename T>
void ensure(Tensor<T>& t, Shape s, Placement* place = nullptr) {
  if (t.placement() != place) t.place(place);
  if (t.shape() != s) t.resize(s);
}

// A view of the first s.numel() elements of a grow-only scratch tensor in `place`'s memory.
template <typename T>
View<T> scratch(Tensor<T>& t, Shape s, Placement* place = nullptr) {
  if (t.placement() != place) t.place(place);
  if (t.data() == nullptr || t.numel() < s.numel()) t.resize(Shape{std::max<Index>(s.numel(), 1)});
  return View<T>(t.data(), s);
}

// dst = src (the same element count), both in `place`'s memory.
template <typename T>
void copy_in(Placement* place, View<T> dst, CView<T> src) {
  if (dst.numel() != src.numel())
    throw std::invalid_argument("copy: " + src.shape.str() + " into " + dst.shape.str());
  if (place)
    place->copy(dst.data, src.data, sizeof(T) * (std::size_t)dst.numel());
  else
    dst.copy_from(src);
}

template <typename T>
void zero_in(Placement* place, View<T> v) {
  if (place)
    place->zero(v.data, sizeof(T) * (std::size_t)v.numel());
  else
    v.zero();
}

// `rows` rows of n elements: row r of dst (at dst + r·dst_stride) = row r of src (src +
// r·src_stride), both in `place`'s memory (one strided transfer there).
template <typename T>
void copy_rows(Placement* place, T* dst, Index dst_stride, const T* src, Index src_stride,
               Index rows, Index n) {
  if (place) {
    place->copy_rows(dst, sizeof(T) * (std::size_t)dst_stride, src, sizeof(T) * (std::size_t)src_stride,
                     sizeof(T) * (std::size_t)n, (std::size_t)rows);
    return;
  }
  for (Index r = 0; r < rows; ++r) std::copy_n(src + r * src_stride, n, dst + r * dst_stride);
}

// Host elements into t, a tensor in `place`'s memory; the view the ops read (the host view
// itself when place is null: nothing is copied).
template <typename E>
CView<E> upload_in(Placement* place, Tensor<E>& t, CView<E> host) {
  if (!place) return host;
  ensure(t, host.shape, place);
  place->upload(t.data(), host.data, sizeof(E) * (std::size_t)host.numel());
  return t.view();
}

}  // namespace nn::placed
