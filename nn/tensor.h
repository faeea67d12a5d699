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
#include <utility>

namespace nn {

using Index = std::int64_t;

// Where a buffer lives (nn/memory.h: Buffer, BufferArena; nn/backend.h: explicit copies).
// Tensor and Arena below are host memory unless given a Placement.
enum class Memory { host, cuda };
inline const char* memory_name(Memory m) { return m == Memory::host ? "host" : "cuda"; }

// Memory that is not the host's, as a backend hands it out (Backend::placement(); the CPU
// backend has none: its tensors are plain host memory). A Tensor or Arena given a Placement keeps
// its elements there: alloc/zero/copy go through it, and its views are handles for that
// backend's ops, never dereferenced on the host. upload/download are the explicit transfers.
class Placement {
 public:
  virtual ~Placement() = default;
  virtual Memory memory() const = 0;
  virtual void* alloc(std::size_t bytes) = 0;  // zero-filled; throws std::bad_alloc
  virtual void free(void* p) noexcept = 0;
  virtual void zero(void* p, std::size_t bytes) = 0;
  virtual void copy(void* dst, const void* src, std::size_t bytes) = 0;  // both in this memory
  virtual void upload(void* dst, const void* host_src, std::size_t bytes) = 0;
  virtual void download(void* host_dst, const void* src, std::size_t bytes) = 0;
  // `rows` blocks of row_bytes, dst row r at dst + r·dst_pitch, src row r at src + r·src_pitch,
  // both in this memory (one strided transfer where the memory has one).
  virtual void copy_rows(void* dst, std::size_t dst_pitch, const void* src, std::size_t src_pitch,
                         std::size_t row_bytes, std::size_t rows) {
    for (std::size_t r = 0; r < rows; ++r)
      copy(static_cast<char*>(dst) + r * dst_pitch, static_cast<const char*>(src) + r * src_pitch,
           row_bytes);
  }
};
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
// Frees host memory, or memory of a Placement.
struct PlacedFree {
  Placement* place = nullptr;
  void operator()(void* p) const {
    if (place)
      place->free(p);
    else
      ::operator delete[](p, std::align_val_t(kAlign));
  }
};
inline void* aligned_alloc_bytes(std::size_t bytes) {
  return ::operator new[](bytes ? bytes : kAlign, std::align_val_t(kAlign));
}
}  // namespace detail

// Owning tensor. Zero-initialised. Movable, copyable (deep copy of the elements). Host memory,
// or a Placement's (place() before the first resize): then its elements are only touched
// through the Placement and the backend's ops, and operator[] must not be used.
template <typename T>
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape s) { resize(s); }
  Tensor(std::initializer_list<Index> dims) : Tensor(Shape(dims)) {}
  Tensor(const Tensor& o) : buf_(nullptr, detail::PlacedFree{o.placement()}) {
    resize(o.shape_);
    copy_elements(o);
  }
  Tensor& operator=(const Tensor& o) {
    if (this != &o) {
      if (o.placement() != placement()) place(o.placement());
      resize(o.shape_);
      copy_elements(o);
    }
    return *this;
  }
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;

  // Where the elements live from now on (nullptr: host). Drops the elements (shape kept, zeros).
  void place(Placement* p) {
    buf_ = std::unique_ptr<T[], detail::PlacedFree>(nullptr, detail::PlacedFree{p});
    capacity_ = 0;
    const Shape s = shape_;
    shape_ = Shape();
    if (s.ndim > 0) resize(s);
  }
  Placement* placement() const { return buf_.get_deleter().place; }

  // New shape, zero-filled. The buffer only grows: a smaller (or equal) size reuses it, so a
  // tensor resized back and forth between shapes allocates only for the largest.
  void resize(Shape s) {
    if (s.numel() > capacity_ || (!buf_ && s.numel() > 0)) {  // (!buf_: moved from)
      buf_.reset(static_cast<T*>(alloc_bytes(sizeof(T) * s.numel())));
      capacity_ = s.numel();
    }
    shape_ = s;
    zero_elements(0, numel());
  }
  // New shape keeping the first `keep` elements (keep <= numel() and the new size); the rest is
  // zero. Allocates (and copies) only when the buffer must grow.
  void resize_keep(Shape s, Index keep) {
    keep = std::min({keep, numel(), s.numel()});
    if (s.numel() > capacity_ || (!buf_ && s.numel() > 0)) {
      std::unique_ptr<T[], detail::PlacedFree> nb(
          static_cast<T*>(alloc_bytes(sizeof(T) * s.numel())), detail::PlacedFree{placement()});
      if (keep) {
        if (placement())
          placement()->copy(nb.get(), buf_.get(), sizeof(T) * (std::size_t)keep);
        else
          std::copy_n(buf_.get(), keep, nb.get());
      }
      buf_ = std::move(nb);
      capacity_ = s.numel();
    }
    shape_ = s;
    if (s.numel() > keep) zero_elements(keep, s.numel());
  }
  View<T> view() { return View<T>(buf_.get(), shape_); }
  CView<T> view() const { return CView<T>(buf_.get(), shape_); }
  operator View<T>() { return view(); }
  operator CView<T>() const { return view(); }
  T* data() { return buf_.get(); }
  const T* data() const { return buf_.get(); }
  const Shape& shape() const { return shape_; }
  Index numel() const { return shape_.numel(); }
  Memory memory() const { return placement() ? placement()->memory() : Memory::host; }
  T& operator[](Index i) { return buf_.get()[i]; }
  const T& operator[](Index i) const { return buf_.get()[i]; }

 private:
  void* alloc_bytes(std::size_t bytes) {
    if (placement()) return placement()->alloc(bytes ? bytes : kAlign);
    return detail::aligned_alloc_bytes(bytes);
  }
  void zero_elements(Index from, Index to) {
    if (to <= from) return;
    if (placement())
      placement()->zero(buf_.get() + from, sizeof(T) * (std::size_t)(to - from));
    else
      std::memset(static_cast<void*>(buf_.get() + from), 0, sizeof(T) * (std::size_t)(to - from));
  }
  void copy_elements(const Tensor& o) {
    if (!numel()) return;
    if (placement())
      placement()->copy(buf_.get(), o.buf_.get(), sizeof(T) * (std::size_t)numel());
    else
      view().copy_from(o.view());
  }
  std::unique_ptr<T[], detail::PlacedFree> buf_;
  Shape shape_;
  Index capacity_ = 0;
};

// A bump allocator over one aligned block: reserve() once, then take() named views.
// Every view is 64-byte aligned and zero-initialised. reset() reuses the block. The block is
// host memory, or a Placement's (reserve(elements, placement)).
template <typename T>
class Arena {
 public:
  Arena() = default;
  explicit Arena(Index elements) { reserve(elements); }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  Arena(Arena&& o) noexcept { *this = std::move(o); }
  Arena& operator=(Arena&& o) noexcept {
    if (this != &o) {
      release();
      raw_ = std::exchange(o.raw_, nullptr);
      place_ = std::exchange(o.place_, nullptr);
      base_ = std::exchange(o.base_, nullptr);
      capacity_ = std::exchange(o.capacity_, 0);
      used_ = std::exchange(o.used_, 0);
      dirty_ = std::exchange(o.dirty_, 0);
    }
    return *this;
  }
  ~Arena() { release(); }
  // Host: the block comes from calloc: large blocks are fresh zero pages that the OS maps only
  // when first written, so a reserved part nobody writes (e.g. the gradients of a model that only
  // serves) costs address space, not memory. A Placement's block comes zeroed from it.
  void reserve(Index elements, Placement* place = nullptr) {
    release();
    std::size_t bytes = sizeof(T) * static_cast<std::size_t>(elements) + kAlign;
    place_ = place;
    raw_ = place ? place->alloc(bytes) : std::calloc(bytes, 1);
    if (!raw_) throw std::bad_alloc();
    auto a = reinterpret_cast<std::uintptr_t>(raw_);
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
      zero_range(start, std::min(used_, dirty_));
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
  // Zero every element handed out so far (through the Placement when there is one).
  void zero_all() { zero_range(0, used_); }
  Memory memory() const { return place_ ? place_->memory() : Memory::host; }
  Placement* placement() const { return place_; }
  T* base() const { return base_; }
  Index used() const { return used_; }
  Index capacity() const { return capacity_; }

 private:
  void zero_range(Index from, Index to) {
    if (to <= from) return;
    const std::size_t bytes = sizeof(T) * static_cast<std::size_t>(to - from);
    if (place_)
      place_->zero(base_ + from, bytes);
    else
      std::memset(static_cast<void*>(base_ + from), 0, bytes);
  }
  void release() {
    if (raw_) {
      if (place_)
        place_->free(raw_);
      else
        std::free(raw_);
    }
    raw_ = nullptr;
  }
  void* raw_ = nullptr;
  Placement* place_ = nullptr;
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
