// nn/tensor.h — the one tensor type that crosses nn/ APIs.
//
//   View<T>   : non-owning (pointer, shape) over a contiguous row-major buffer. Cheap to copy.
//   Tensor<T> : owning, 64-byte aligned buffer with a shape; hands out Views.
//   Arena<T>  : one big aligned block carved into Views (parameters, gradients, optimizer
//               moments, activations); nothing is allocated inside a training step.
//
// Eigen maps are created only inside kernels (see mat()/vec() below).
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace nn {

using Index = std::int64_t;

// Where a buffer lives (nn/memory.h: Buffer, BufferArena; nn/backend.h: explicit copies).
// Tensor and Arena below are host memory.
enum class Memory { host, cuda };
inline const char* memory_name(Memory m) { return m == Memory::host ? "host" : "cuda"; }
constexpr int kMaxDims = 4;
constexpr std::size_t kAlign = 64;

struct Shape {
  std::array<Index, kMaxDims> d{};
  int ndim = 0;

  Shape() = default;
  Shape(std::initializer_list<Index> dims) {
    if (dims.size() > kMaxDims) throw std::invalid_argument("Shape: more than 4 dimensions");
    for (Index x : dims) {
      if (x < 0) throw std::invalid_argument("Shape: negative dimension");
      d[ndim++] = x;
    }
  }
  Index numel() const {
    Index n = 1;
    for (int i = 0; i < ndim; ++i) n *= d[i];
    return n;
  }
  Index operator[](int i) const { return d[i]; }
  bool operator==(const Shape& o) const {
    if (ndim != o.ndim) return false;
    for (int i = 0; i < ndim; ++i)
      if (d[i] != o.d[i]) return false;
    return true;
  }
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + "]";
  }
};

template <typename T>
struct View {
  T* data = nullptr;
  Shape shape;

  View() = default;
  View(T* p, Shape s) : data(p), shape(s) {}
  // A View<T> converts to a View<const T>.
  template <typename U, typename = std::enable_if_t<std::is_same_v<const U, T>>>
  View(const View<U>& o) : data(o.data), shape(o.shape) {}

  Index numel() const { return shape.numel(); }
  Index dim(int i) const { return shape.d[i]; }
  int ndim() const { return shape.ndim; }
  bool empty() const { return data == nullptr || numel() == 0; }
  T& operator[](Index i) const { return data[i]; }
  T* begin() const { return data; }
  T* end() const { return data + numel(); }

  // Rows of the leading dimension: v.row(i) is a view of shape d[1:].
  View row(Index i) const {
    Shape s;
    s.ndim = shape.ndim - 1;
    for (int k = 1; k < shape.ndim; ++k) s.d[k - 1] = shape.d[k];
    return View(data + i * s.numel(), s);
  }
  // Same buffer, new shape with the same number of elements.
  View reshape(Shape s) const {
    if (s.numel() != numel())
      throw std::invalid_argument("reshape " + shape.str() + " -> " + s.str());
    return View(data, s);
  }
  // A contiguous range of the leading dimension.
  View slice(Index begin, Index end) const {
    Shape s = shape;
    s.d[0] = end - begin;
    Index stride = shape.d[0] ? numel() / shape.d[0] : 0;
    return View(data + begin * stride, s);
  }
  void zero() const {
    if (numel()) std::memset((void*)data, 0, sizeof(T) * numel());
  }
  void fill(T v) const {
    for (Index i = 0; i < numel(); ++i) data[i] = v;
  }
  void copy_from(View<const std::remove_const_t<T>> src) const {
    if (src.numel() != numel())
      throw std::invalid_argument("copy_from: " + src.shape.str() + " into " + shape.str());
    if (numel()) std::memcpy((void*)data, src.data, sizeof(T) * numel());
  }
};

template <typename T>
using CView = View<const T>;

namespace detail {
struct AlignedFree {
  void operator()(void* p) const { ::operator delete[](p, std::align_val_t(kAlign)); }
};
inline void* aligned_alloc_bytes(std::size_t bytes) {
  return ::operator new[](bytes ? bytes : kAlign, std::align_val_t(kAlign));
}
}  // namespace detail

// Owning tensor. Zero-initialised. Movable, copyable (deep copy of the elements).
template <typename T>
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape s) { resize(s); }
  Tensor(std::initializer_list<Index> dims) : Tensor(Shape(dims)) {}
  Tensor(const Tensor& o) : Tensor(o.shape_) { view().copy_from(o.view()); }
  Tensor& operator=(const Tensor& o) {
    if (this != &o) {
      resize(o.shape_);
      view().copy_from(o.view());
    }
    return *this;
  }
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;

  // New shape, zero-filled. The buffer only grows: a smaller (or equal) size reuses it, so a
  // tensor resized back and forth between shapes allocates only for the largest.
  void resize(Shape s) {
    if (s.numel() > capacity_ || (!buf_ && s.numel() > 0)) {  // (!buf_: moved from)
      buf_.reset(static_cast<T*>(detail::aligned_alloc_bytes(sizeof(T) * s.numel())));
      capacity_ = s.numel();
    }
    shape_ = s;
    view().zero();
  }
  // New shape keeping the first `keep` elements (keep <= numel() and the new size); the rest is
  // zero. Allocates (and copies) only when the buffer must grow.
  void resize_keep(Shape s, Index keep) {
    keep = std::min({keep, numel(), s.numel()});
    if (s.numel() > capacity_ || (!buf_ && s.numel() > 0)) {
      std::unique_ptr<T[], detail::AlignedFree> nb(
          static_cast<T*>(detail::aligned_alloc_bytes(sizeof(T) * s.numel())));
      if (keep) std::copy_n(buf_.get(), keep, nb.get());
      buf_ = std::move(nb);
      capacity_ = s.numel();
    }
    shape_ = s;
    if (s.numel() > keep) std::fill(buf_.get() + keep, buf_.get() + s.numel(), T(0));
  }
  View<T> view() { return View<T>(buf_.get(), shape_); }
  CView<T> view() const { return CView<T>(buf_.get(), shape_); }
  operator View<T>() { return view(); }
  operator CView<T>() const { return view(); }
  T* data() { return buf_.get(); }
  const T* data() const { return buf_.get(); }
  const Shape& shape() const { return shape_; }
  Index numel() const { return shape_.numel(); }
  static constexpr Memory memory() { return Memory::host; }
  T& operator[](Index i) { return buf_.get()[i]; }
  const T& operator[](Index i) const { return buf_.get()[i]; }

 private:
  std::unique_ptr<T[], detail::AlignedFree> buf_;
  Shape shape_;
  Index capacity_ = 0;
};

// A bump allocator over one aligned block: reserve() once, then take() named views.
// Every view is 64-byte aligned and zero-initialised. reset() reuses the block.
template <typename T>
class Arena {
 public:
  Arena() = default;
  explicit Arena(Index elements) { reserve(elements); }
  // The block comes from calloc: large blocks are fresh zero pages that the OS maps only when
  // first written, so a reserved part nobody writes (e.g. the gradients of a model that only
  // serves) costs address space, not memory.
  void reserve(Index elements) {
    std::size_t bytes = sizeof(T) * static_cast<std::size_t>(elements) + kAlign;
    raw_.reset(std::calloc(bytes, 1));
    if (!raw_) throw std::bad_alloc();
    auto a = reinterpret_cast<std::uintptr_t>(raw_.get());
    base_ = reinterpret_cast<T*>((a + kAlign - 1) / kAlign * kAlign);
    capacity_ = elements;
    used_ = dirty_ = 0;
  }
  // A zeroed view. Memory never handed out before is already zero and is not touched.
  View<T> take(Shape s) {
    Index n = s.numel();
    Index pad = (kAlign / sizeof(T));
    Index start = (used_ + pad - 1) / pad * pad;
    if (start + n > capacity_)
      throw std::length_error("Arena: out of space (" + std::to_string(start + n) + " > " +
                              std::to_string(capacity_) + " elements)");
    used_ = start + n;
    View<T> v(base_ + start, s);
    if (start < dirty_)  // reused after reset(): clear what earlier views may have written
      std::memset(static_cast<void*>(base_ + start), 0,
                  sizeof(T) * static_cast<std::size_t>(std::min(used_, dirty_) - start));
    dirty_ = std::max(dirty_, used_);
    return v;
  }
  // Elements needed to take() the given shapes, alignment included.
  static Index bytes_for(std::initializer_list<Shape> shapes) {
    Index pad = (kAlign / sizeof(T)), total = 0;
    for (auto& s : shapes) total += (s.numel() + pad - 1) / pad * pad;
    return total;
  }
  void reset() { used_ = 0; }
  View<T> all() { return View<T>(base_, Shape{used_}); }
  static constexpr Memory memory() { return Memory::host; }
  Index used() const { return used_; }
  Index capacity() const { return capacity_; }

 private:
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<void, Free> raw_;
  T* base_ = nullptr;
  Index capacity_ = 0, used_ = 0;
  Index dirty_ = 0;  // [0, dirty_) may hold values written through earlier views
};

// ---- Eigen maps, for use inside kernels only -------------------------------------------------
template <typename T>
using RowMat = Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// A 2-D row-major map: the leading dims are flattened into rows, the last dim is the columns.
template <typename T>
auto mat(View<T> v) {
  Index cols = v.ndim() ? v.dim(v.ndim() - 1) : 1;
  Index rows = cols ? v.numel() / cols : 0;
  if constexpr (std::is_const_v<T>)
    return Eigen::Map<const RowMat<T>>(v.data, rows, cols);
  else
    return Eigen::Map<RowMat<T>>(v.data, rows, cols);
}
template <typename T>
auto mat(View<T> v, Index rows, Index cols) {
  assert(rows * cols == v.numel());
  if constexpr (std::is_const_v<T>)
    return Eigen::Map<const RowMat<T>>(v.data, rows, cols);
  else
    return Eigen::Map<RowMat<T>>(v.data, rows, cols);
}
template <typename T>
auto vec(View<T> v) {
  using V = Eigen::Matrix<std::remove_const_t<T>, Eigen::Dynamic, 1>;
  if constexpr (std::is_const_v<T>)
    return Eigen::Map<const V>(v.data, v.numel());
  else
    return Eigen::Map<V>(v.data, v.numel());
}

// Throws std::invalid_argument naming `what` when shapes differ.
inline void check_shape(const Shape& got, const Shape& want, const char* what) {
  if (got != want)
    throw std::invalid_argument(std::string(what) + ": expected shape " + want.str() + ", got " +
                                got.str());
}

}  // namespace nn
