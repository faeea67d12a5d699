// io/mmap_file.h — a small RAII read-only memory map of a whole file.
//
//   io::MmapFile f("model.pt");          // throws io::FormatError naming the path on failure
//   const std::uint8_t* p = f.data();    // valid while f lives; size() bytes
//
// An empty file maps to (nullptr, 0). Move-only. Share one map between owners with
// std::shared_ptr<const MmapFile> (io::MmapFile::open_shared).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace io {

class MmapFile {
 public:
  MmapFile() = default;
  explicit MmapFile(const std::string& path);
  ~MmapFile();
  MmapFile(MmapFile&& o) noexcept;
  MmapFile& operator=(MmapFile&& o) noexcept;
  MmapFile(const MmapFile&) = delete;
  MmapFile& operator=(const MmapFile&) = delete;

  static std::shared_ptr<const MmapFile> open_shared(const std::string& path) {
    return std::make_shared<const MmapFile>(path);
  }

  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  std::span<const std::uint8_t> bytes() const { return {data_, size_}; }
  std::string_view view() const { return {reinterpret_cast<const char*>(data_), size_}; }

 private:
  void release() noexcept;
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  std::string path_;
};

}  // namespace io
