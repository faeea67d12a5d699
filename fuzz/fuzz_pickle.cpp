// fuzz/fuzz_pickle.cpp — libFuzzer harness for the inert pickle VM (io/pickle.h).
// Any input must either parse or throw io::FormatError: no crash, leak, hang or huge allocation.
//   CXX=clang++ cmake -S . -B build-fuzz -DINSPIRE_FUZZ=ON -DINSPIRE_TESTS=OFF -DINSPIRE_BENCH=OFF
//   cmake --build build-fuzz --target fuzz_pickle
//   ./build-fuzz/fuzz_pickle fuzz/corpus/pickle -max_total_time=600 -rss_limit_mb=2048 -timeout=10
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "io/errors.h"
#include "io/pickle.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace io::pickle;
  Options opt;
  opt.max_alloc_bytes = std::size_t(64) << 20;
  opt.max_stack = 1 << 20;
  opt.max_memo = 1 << 20;
  // Persistent ids resolve to a marker value (exercises BINPERSID/PERSID paths).
  opt.persistent_load = [](Document& doc, const Value& pid) {
    Value* v = doc.make(Kind::Ext);
    v->name = "pid";
    return v;
  };
  // A hook that accepts one name and rejects another, like the torch loader does.
  opt.reduce_hook = [](Document& doc, const Value& fn, Value& args) -> Value* {
    if (fn.s == "torch._utils" && fn.name == "_rebuild_parameter" && !args.items.empty()) return args.items[0];
    if (fn.s == "torch._utils" && fn.name == "_rebuild_sparse_tensor") throw std::runtime_error("unsupported");
    return nullptr;
  };
  std::size_t pos = 0;
  // Like the legacy torch format: several pickles back to back.
  for (int k = 0; k < 4 && pos < size; ++k) {
    try {
      std::size_t used = 0;
      Document d = parse(std::span<const std::uint8_t>(data + pos, size - pos), "fuzz", opt, &used, pos);
      (void)describe(d.root, 4);
      if (d.root) (void)d.root->get("model");
      pos += used;
    } catch (const io::FormatError&) {
      break;
    }
  }
  return 0;
}
