// cuda/cuda_backend.cpp — the CUDA backend: device memory (cudaMalloc'd Buffers, explicit
// host<->device copies), GEMM through cuBLAS, Adam through cuda/kernels.cu. Every other op of
// nn/ops.h throws nn::NotImplemented ("not implemented on cuda yet: <op>") until its kernel
// exists (issue #16); see cuda/README.md. Host C++ only (g++), linked with cudart and cuBLAS.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <mutex>
#include <stdexcept>
#include <string>

#include "cuda/kernels.cuh"
#include "nn/backend.h"

namespace nn {
namespace {

[[noreturn]] void cuda_fail(const char* what, cudaError_t e) {
  throw std::runtime_error(std::string("cuda backend: ") + what + ": " + cudaGetErrorName(e) +
                           " (" + cudaGetErrorString(e) + ")");
}
void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) cuda_fail(what, e);
}

// Ops on device pointers must not be handed host memory: say so instead of faulting.
void require_device(const void* p, const char* op, const char* operand) {
  if (!p) return;
  cudaPointerAttributes a{};
  cudaError_t e = cudaPointerGetAttributes(&a, p);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky-free error state of this query
    a.type = cudaMemoryTypeUnregistered;
  }
  if (a.type != cudaMemoryTypeDevice && a.type != cudaMemoryTypeManaged)
    throw std::invalid_argument(std::string("cuda ") + op + ": operand " + operand +
                                " is not device memory; allocate it with the cuda backend and "
                                "copy it there with copy_from_host");
}

void device_free(void* p) { cudaFree(p); }

class CudaOps final : public Ops<float> {
 public:
  CudaOps() : Ops<float>("cuda") {}
  ~CudaOps() override {
    if (handle_) cublasDestroy(handle_);
  }

  void gemm(bool ta, bool tb, Index M, Index N, Index K, float alpha, const float* A, Index lda,
            const float* B, Index ldb, float beta, float* C, Index ldc) override {
    if (M == 0 || N == 0) return;
    require_device(A, "gemm", "A");
    require_device(B, "gemm", "B");
    require_device(C, "gemm", "C");
    // Row-major C = op(A) op(B) is column-major Cᵀ = op(B)ᵀ op(A)ᵀ: swap the operands.
    cublasStatus_t st = cublasSgemm(handle(), tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                    ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N, (int)M, (int)K, &alpha,
                                    B, (int)ldb, A, (int)lda, &beta, C, (int)ldc);
    if (st != CUBLAS_STATUS_SUCCESS)
      throw std::runtime_error(std::string("cuda gemm: cublasSgemm failed: ") +
                               cublasGetStatusString(st));
  }

  void adam_step(View<float> w, CView<float> g, View<float> m, View<float> v,
                 const ew::AdamScalars& s) override {
    const Index n = w.numel();
    if (g.numel() != n || m.numel() != n || v.numel() != n)
      throw std::invalid_argument("cuda adam_step: weights " + w.shape.str() + ", grads " +
                                  g.shape.str() + ", moments " + m.shape.str() + " / " +
                                  v.shape.str() + " must have the same number of elements");
    if (n == 0) return;
    require_device(w.data, "adam_step", "w");
    require_device(g.data, "adam_step", "g");
    require_device(m.data, "adam_step", "m");
    require_device(v.data, "adam_step", "v");
    check((cudaError_t)cuda_backend::launch_adam_step(w.data, g.data, m.data, v.data, n, s),
          "adam_step launch");
  }

 private:
  cublasHandle_t handle() {
    std::call_once(once_, [&] {
      if (cublasCreate(&handle_) != CUBLAS_STATUS_SUCCESS)
        throw std::runtime_error("cuda backend: cublasCreate failed");
    });
    return handle_;
  }
  std::once_flag once_;
  cublasHandle_t handle_ = nullptr;
};

class CudaOps64 final : public Ops<double> {  // no double kernels: every op throws
 public:
  CudaOps64() : Ops<double>("cuda") {}
};

class CudaBackend final : public Backend {
 public:
  const char* name() const override { return "cuda"; }
  Memory memory() const override { return Memory::cuda; }

  Buffer alloc(std::size_t bytes) override {
    void* p = nullptr;
    check(cudaMalloc(&p, bytes ? bytes : 1), "cudaMalloc");
    cudaError_t e = cudaMemset(p, 0, bytes ? bytes : 1);
    if (e != cudaSuccess) {
      cudaFree(p);
      cuda_fail("cudaMemset", e);
    }
    return Buffer(p, bytes, Memory::cuda, &device_free);
  }
  void copy_from_host(Buffer& dst, std::size_t off, const void* src, std::size_t bytes) override {
    check_range(dst, off, bytes, "cuda copy_from_host");
    require_memory(dst, "copy_from_host");
    if (bytes)
      check(cudaMemcpy(static_cast<char*>(dst.data()) + off, src, bytes, cudaMemcpyHostToDevice),
            "copy_from_host");
  }
  void copy_to_host(void* dst, const Buffer& src, std::size_t off, std::size_t bytes) override {
    check_range(src, off, bytes, "cuda copy_to_host");
    require_memory(src, "copy_to_host");
    if (bytes)
      check(cudaMemcpy(dst, static_cast<const char*>(src.data()) + off, bytes,
                       cudaMemcpyDeviceToHost),
            "copy_to_host");
  }
  void copy(Buffer& dst, std::size_t doff, const Buffer& src, std::size_t soff,
            std::size_t bytes) override {
    check_range(dst, doff, bytes, "cuda copy (destination)");
    check_range(src, soff, bytes, "cuda copy (source)");
    require_memory(dst, "copy");
    require_memory(src, "copy");
    if (bytes)
      check(cudaMemcpy(static_cast<char*>(dst.data()) + doff,
                       static_cast<const char*>(src.data()) + soff, bytes,
                       cudaMemcpyDeviceToDevice),
            "copy");
  }
  void synchronize() override { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

  Ops<float>& f32() override { return f32_; }
  Ops<double>& f64() override { return f64_; }

 private:
  static void require_memory(const Buffer& b, const char* what) {
    if (b.memory() != Memory::cuda)
      throw std::invalid_argument(std::string("cuda ") + what + ": the buffer lives in " +
                                  memory_name(b.memory()) + " memory, not cuda");
  }
  CudaOps f32_;
  CudaOps64 f64_;
};

}  // namespace

// nn/backend.cpp calls this once, from get_backend("cuda"). nullptr: no usable device.
Backend* make_cuda_backend() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n < 1) {
    (void)cudaGetLastError();
    return nullptr;
  }
  static CudaBackend b;
  return &b;
}

}  // namespace nn
