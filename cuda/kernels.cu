// cuda/kernels.cu — CUDA kernels. Each one calls the per-element math of nn/elementwise.h (the
// same functions the CPU backend runs), so there is one definition of that math.
// Kept small: every new kernel adds nvcc time for each architecture built.
#include <cuda_runtime.h>

#include "cuda/kernels.cuh"

namespace cuda_backend {
namespace {

__global__ void adam_step_kernel(float* w, const float* g, float* m, float* v, std::int64_t n,
                                 nn::ew::AdamScalars s) {
  const std::int64_t k = (std::int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (k < n) nn::ew::adam_update(w[k], g[k], m[k], v[k], s);
}

}  // namespace

int launch_adam_step(float* w, const float* g, float* m, float* v, std::int64_t n,
                     const nn::ew::AdamScalars& s) {
  if (n <= 0) return 0;
  const int threads = 256;
  const std::int64_t blocks = (n + threads - 1) / threads;
  adam_step_kernel<<<(unsigned)blocks, threads>>>(w, g, m, v, n, s);
  return (int)cudaGetLastError();
}

}  // namespace cuda_backend
