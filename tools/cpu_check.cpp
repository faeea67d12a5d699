// tools/cpu_check.cpp — runs before anything else in inspire-classifier (constructor priority
// 101) and refuses, with a clear message instead of a SIGILL crash, to run on a CPU that lacks the
// instruction set the binary was compiled for. Compiled with -march=x86-64 (see CMakeLists.txt).
#include <cstdio>
#include <cstdlib>

#if defined(__x86_64__)
namespace {
__attribute__((constructor(101))) void inspire_cpu_check() {
  __builtin_cpu_init();
  bool ok = true;
#ifdef INSPIRE_NEEDS_AVX2
  ok = ok && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  if (!ok) {
    std::fprintf(stderr,
                 "inspire-classifier: error: this binary was built for x86-64-v3 (AVX2 + FMA) and "
                 "this CPU lacks them (hint: rebuild with -DINSPIRE_ARCH=x86-64)\n");
    std::_Exit(1);
  }
}
}  // namespace
#endif
