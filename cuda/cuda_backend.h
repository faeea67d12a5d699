// cuda/cuda_backend.h — settings of the CUDA backend that only a CUDA build has (include only
// where INSPIRE_HAVE_CUDA is defined). The backend itself is reached through nn::get_backend.
#pragma once

namespace nn {

// GEMM precision of the CUDA backend's cuBLAS calls: false (default) = IEEE fp32; true = TF32
// tensor cores (inputs rounded to a 10-bit mantissa, fp32 accumulation), cuBLAS's
// CUBLAS_TF32_TENSOR_OP_MATH. Affects every GEMM of the backend (LSTM, linear, LM head) from the
// next call on; the element-wise kernels stay fp32. bf16 is not implemented.
// NOT RUN ON A GPU YET (see cuda/README.md).
void set_cuda_tf32(bool on);
bool cuda_tf32();

}  // namespace nn
