// io/sha256.h — SHA-256 (FIPS 180-4) of bytes or of a file, as lowercase hex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace io {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, std::size_t size);
  std::string hex();  // finishes; call once

 private:
  void block(const std::uint8_t* p);
  std::uint32_t h_[8];
  std::uint8_t buf_[64];
  std::size_t fill_ = 0;
  std::uint64_t bytes_ = 0;
};

std::string sha256_hex(const void* data, std::size_t size);
// Streams the file; throws std::runtime_error naming it when it cannot be read.
std::string sha256_file_hex(const std::string& path);

}  // namespace io
