// io/zip.h — a read-only ZIP reader over a memory-mapped file (or any byte span).
//
// Reads the central directory (with ZIP64 end-of-central-directory record/locator and ZIP64
// extra fields), checks every offset and size against the file size, and gives STORED entries
// as zero-copy spans into the map; DEFLATE entries are inflated with zlib into a buffer.
// Encrypted entries and other methods are rejected with a clear message. Throws io::FormatError
// naming the file, the entry and the byte offset.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "io/mmap_file.h"

namespace io {

struct ZipEntry {
  std::string name;
  std::uint16_t method = 0;       // 0 STORED, 8 DEFLATE
  std::uint16_t flags = 0;
  std::uint32_t crc32 = 0;
  std::uint64_t compressed_size = 0;
  std::uint64_t size = 0;         // uncompressed
  std::uint64_t header_offset = 0;  // local file header
  std::uint64_t data_offset = 0;    // first byte of the (compressed) data, checked in bounds
};

class ZipReader {
 public:
  // Maps and indexes the file. Keeps the map alive (shared with spans handed out).
  explicit ZipReader(const std::string& path);
  explicit ZipReader(std::shared_ptr<const MmapFile> file);
  // Over caller-owned bytes (must outlive the reader); `name` is used in errors.
  ZipReader(std::span<const std::uint8_t> bytes, std::string name);

  const std::string& path() const { return name_; }
  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* find(std::string_view name) const;  // nullptr if absent
  const ZipEntry& at(std::string_view name) const;     // throws "missing record <name>"

  // Zero-copy view of a STORED entry's bytes (throws for compressed entries).
  std::span<const std::uint8_t> stored(const ZipEntry& e) const;
  // The entry's uncompressed bytes (copied or inflated); refuses more than max_size bytes.
  std::vector<std::uint8_t> read(const ZipEntry& e, std::uint64_t max_size = std::uint64_t(1) << 32) const;
  // Throws if the CRC-32 of the entry's (uncompressed) bytes does not match the directory.
  void verify_crc(const ZipEntry& e, std::span<const std::uint8_t> data) const;

  const std::shared_ptr<const MmapFile>& file() const { return file_; }

 private:
  void parse();
  [[noreturn]] void fail(const std::string& what, std::uint64_t offset) const;
  std::shared_ptr<const MmapFile> file_;
  const std::uint8_t* p_ = nullptr;
  std::uint64_t n_ = 0;
  std::string name_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, std::size_t> index_;
};

}  // namespace io
