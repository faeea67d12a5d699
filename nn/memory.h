// nn/memory.h — where a buffer lives, and buffers that know it.
//
// A Buffer is a block of bytes owned by the backend that allocated it (nn::Backend::alloc), in
// one Memory (host RAM or one CUDA device). Views carry no memory tag: an op of a backend reads
// and writes views in that backend's memory (Backend::memory()), and moving data between memories
// is always an explicit Backend::copy_* call (never a hidden copy inside an op).
// BufferArena<T> carves typed views out of one Buffer, like nn::Arena does on the host.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>

#include "nn/tensor.h"

namespace nn {

// (nn::Memory and memory_name are in nn/tensor.h.)

class Buffer {
 public:
  using FreeFn = void (*)(void*);
  Buffer() = default;
  Buffer(void* data, std::size_t bytes, Memory memory, FreeFn free_fn)
      : data_(data), bytes_(bytes), memory_(memory), free_(free_fn) {}
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
      memory_ = o.memory_;
      free_ = std::exchange(o.free_, nullptr);
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { release(); }

  void* data() const { return data_; }
  std::size_t size() const { return bytes_; }
  Memory memory() const { return memory_; }
  bool empty() const { return data_ == nullptr; }

  // A typed view of `s` starting `offset` elements in. Dereferenceable on the host only when
  // memory() == Memory::host; otherwise it is a handle for the owning backend's ops.
  template <typename T>
  View<T> view(Shape s, std::size_t offset = 0) const {
    if ((offset + static_cast<std::size_t>(s.numel())) * sizeof(T) > bytes_)
      throw std::out_of_range("Buffer::view: " + s.str() + " at element " +
                              std::to_string(offset) + " exceeds the " + std::to_string(bytes_) +
                              "-byte " + memory_name(memory_) + " buffer");
    return View<T>(static_cast<T*>(data_) + offset, s);
  }

 private:
  void release() {
    if (data_ && free_) free_(data_);
    data_ = nullptr;
  }
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
  Memory memory_ = Memory::host;
  FreeFn free_ = nullptr;
};

// A bump allocator over one Buffer (any memory): take() hands out 64-byte aligned views. The
// buffer comes zeroed from Backend::alloc; views are not re-zeroed (use the backend to clear).
template <typename T>
class BufferArena {
 public:
  BufferArena() = default;
  explicit BufferArena(Buffer buf) : buf_(std::move(buf)) {}
  View<T> take(Shape s) {
    constexpr std::size_t pad = kAlign / sizeof(T);
    const std::size_t start = (used_ + pad - 1) / pad * pad;
    View<T> v = buf_.view<T>(s, start);  // throws when out of space
    used_ = start + static_cast<std::size_t>(s.numel());
    return v;
  }
  View<T> all() const { return buf_.view<T>(Shape{static_cast<Index>(used_)}); }
  Memory memory() const { return buf_.memory(); }
  const Buffer& buffer() const { return buf_; }

 private:
  Buffer buf_;
  std::size_t used_ = 0;
};

}  // namespace nn
