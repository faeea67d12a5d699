// fuzz/fuzz_safetensors.cpp — libFuzzer harness for the safetensors reader and the model bundle
// validator (io/safetensors.h, io/bundle.h). Any input must either load (and then every tensor's
// bytes are readable in bounds) or throw io::FormatError: no crash, leak, hang or huge allocation.
//   CXX=clang++ cmake -S . -B build-fuzz-e2 -DINSPIRE_FUZZ=ON -DINSPIRE_TESTS=OFF -DINSPIRE_BENCH=OFF
//   cmake --build build-fuzz-e2 --target fuzz_safetensors
//   ./build-fuzz-e2/fuzz_safetensors fuzz/corpus/safetensors -max_total_time=600 -rss_limit_mb=2048
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "io/bundle.h"
#include "io/errors.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Zero-copy path on the fuzzer's (unaligned-size) buffer: exercises the realignment copies.
  try {
    auto f = io::SafetensorsFile::from_memory(data, size, "fuzz.safetensors", false);
    volatile std::uint8_t sink = 0;
    for (const auto& t : f.tensors()) {
      const auto* p = static_cast<const std::uint8_t*>(f.data(t));
      for (std::uint64_t i = 0; i < t.nbytes(); i += 61) sink = sink + p[i];
      if (t.nbytes()) sink = sink + p[t.nbytes() - 1];
      if (t.dtype == io::DType::F32 && t.shape.size() <= 4) (void)f.f32(t.name);
    }
    (void)sink;
  } catch (const io::FormatError&) {
  }
  try {
    auto b = io::Bundle::from_memory(data, size, "fuzz.safetensors", false);
    for (const auto& n : b.names()) {
      if (b.file().contains(n) && b.file().info(n).dtype != io::DType::F32) continue;
      auto v = b.tensor(n);
      volatile float s = 0;
      if (v.numel()) s = s + v[v.numel() - 1];
      (void)s;
    }
  } catch (const io::FormatError&) {
  }
  return 0;
}
