// io/safetensors.h — read and write safetensors files (https://github.com/huggingface/safetensors).
//
// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON, then the data buffer.
//   {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"<key>": "<string value>", ...}}
// Offsets are relative to the start of the data buffer.
//
// The reader treats the file as hostile and checks everything before any byte of tensor data is
// touched: header length against the file size (and a 100 MB cap, as the reference library),
// the header starts with '{' and is valid JSON, no duplicate keys, every dtype known, shape dims
// non-negative integers whose product (times the element size) does not overflow, data_offsets
// two integers with begin <= end, end - begin == numel * element size, the tensors' byte ranges
// non-overlapping and covering the data buffer exactly (no holes, no trailing bytes — the
// reference library's rule, which rules out polyglot files), metadata an object of strings.
// Every error is an io::FormatError naming the file, the tensor and the problem.
//
// Tensor data is zero-copy: views point into the read-only mapping (or the caller's buffer).
// A tensor whose bytes are not aligned to its element size (possible in foreign files, or an
// unaligned caller buffer) is copied once, at open time, into an aligned private buffer.
//
// The writer lays the data out so that every tensor is aligned to its element size (the header is
// padded with spaces to a multiple of 8 and tensors are ordered by decreasing element size,
// keeping the caller's order within a size), and writes atomically (io/atomic_file.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nn/tensor.h"

namespace io {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, U16, U32, U64 };

std::size_t dtype_size(DType t);
const char* dtype_name(DType t);  // "F32", ...
std::optional<DType> parse_dtype(const std::string& s);

// Header limit (same as the reference implementation).
constexpr std::uint64_t kMaxSafetensorsHeader = 100u * 1000u * 1000u;

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;  // any rank; [] is a scalar
  std::uint64_t begin = 0, end = 0; // byte offsets in the data buffer
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  std::uint64_t nbytes() const { return end - begin; }
  std::string shape_str() const;    // "[60000, 400]"
};

// A validated, read-only safetensors file. Movable, not copyable. Views stay valid while the
// object lives.
class SafetensorsFile {
 public:
  // Memory-maps `path` read-only and validates it. Throws io::FormatError (or std::runtime_error
  // when the file cannot be opened).
  static SafetensorsFile open(const std::string& path);
  // Validates a buffer in memory (e.g. a model embedded in the binary). If `copy` is false the
  // buffer must outlive the returned object. `label` names the buffer in error messages.
  static SafetensorsFile from_memory(const void* data, std::size_t size, const std::string& label,
                                     bool copy = false);

  // Like from_memory (no copy), for bytes that are a read-only mapping of a file, such as the
  // model embedded in the executable: drop_cached may then let their pages go.
  static SafetensorsFile from_file_image(const void* data, std::size_t size,
                                         const std::string& label);

  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  ~SafetensorsFile();

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // header order (by name)
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorInfo* find(const std::string& name) const;
  bool contains(const std::string& name) const { return find(name) != nullptr; }
  std::size_t file_size() const { return size_; }
  std::uint64_t data_bytes() const;

  // Raw bytes of a tensor (aligned to its element size). Throws if the name is unknown.
  const void* data(const TensorInfo& t) const;
  const void* data(const std::string& name) const { return data(info(name)); }
  const TensorInfo& info(const std::string& name) const;

  // A float32 view (zero-copy). Throws naming the tensor if it is missing, not F32, or has
  // more than nn::kMaxDims dims.
  nn::CView<float> f32(const std::string& name) const;

  // The caller has copied [p, p+n) out of a file opened with open() and will not read it again
  // soon: drop those pages from memory (they are re-read from the file if touched again), so
  // that loading a model does not hold it twice. A no-op for buffers in memory (from_memory) and
  // for bytes outside the file.
  void drop_cached(const void* p, std::size_t n) const noexcept;

 private:
  SafetensorsFile() = default;
  void parse();

  struct Mapping;
  std::string path_;
  std::unique_ptr<Mapping> map_;       // owns the bytes (mmap or heap copy) when not borrowed
  const unsigned char* bytes_ = nullptr;
  std::size_t size_ = 0;
  bool file_backed_ = false;  // bytes_ map a file read-only (open, from_file_image)
  std::size_t data_start_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, std::unique_ptr<std::uint64_t[]>> realigned_;  // copies of misaligned data
};

// A tensor to write: raw bytes (little-endian, row-major, nbytes == numel * dtype_size).
struct TensorOut {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  const void* data = nullptr;

  static TensorOut f32(std::string name, nn::CView<float> v);
};

// Serialises to a byte string (header + data). Throws std::invalid_argument on duplicate or
// reserved names ("__metadata__"), negative dims or a null data pointer with numel > 0.
std::string serialize_safetensors(const std::vector<TensorOut>& tensors,
                                  const std::map<std::string, std::string>& metadata);

// Writes atomically (temp file + rename). Streams the data, no full in-memory copy.
void write_safetensors(const std::string& path, const std::vector<TensorOut>& tensors,
                       const std::map<std::string, std::string>& metadata);

}  // namespace io
