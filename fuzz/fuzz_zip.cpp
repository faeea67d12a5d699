// fuzz/fuzz_zip.cpp — libFuzzer harness for the ZIP reader (io/zip.h).
// Any input must either index or throw io::FormatError: no crash, leak, hang or huge allocation.
//   ./build-fuzz/fuzz_zip fuzz/corpus/zip -max_total_time=600 -rss_limit_mb=2048 -timeout=10
#include <cstddef>
#include <cstdint>
#include <span>

#include "io/errors.h"
#include "io/zip.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    io::ZipReader z(std::span<const std::uint8_t>(data, size), "fuzz.zip");
    int k = 0;
    for (const auto& e : z.entries()) {
      if (++k > 64) break;
      (void)z.find(e.name);
      try {
        auto b = z.read(e, std::uint64_t(16) << 20);
        z.verify_crc(e, b);
        if (e.method == 0) (void)z.stored(e);
      } catch (const io::FormatError&) {
      }
    }
  } catch (const io::FormatError&) {
  }
  return 0;
}
