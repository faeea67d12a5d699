// cuda/kernels.cuh — launchers of the CUDA kernels (cuda/kernels.cu), callable from host C++.
// Pointers are device memory. Each launcher returns the CUDA error of the launch (0 = success).
#pragma once

#include <cstdint>

#include "nn/elementwise.h"

namespace cuda_backend {

// w, g, m, v: n floats each; one thread per element runs nn::ew::adam_update.
int launch_adam_step(float* w, const float* g, float* m, float* v, std::int64_t n,
                     const nn::ew::AdamScalars& s);

}  // namespace cuda_backend
