// nn/backend.h — the compute backend: memory it owns plus the ops of nn/ops.h.
//
// A model holds a reference to the Backend it runs on (default: nn::cpu_backend()); choosing a
// backend happens in one place (nn::get_backend by name). No call site tests for CUDA.
//   * memory: alloc() gives a zeroed Buffer in memory(); copies between host and the backend's
//     memory are explicit (copy_from_host / copy_to_host / copy).
//   * ops: ops<float>() on every backend, ops<double>() on the CPU (gradient checks); an op a
//     backend lacks throws nn::NotImplemented.
// The CPU backend (nn/cpu_backend.cpp) is the readable reference; cuda/ holds the CUDA one.
//
// Also here: the CPU GEMM that CPU kernels call directly (nn::gemm, nn::matmul) and the OpenMP
// thread count.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "nn/memory.h"
#include "nn/ops.h"
#include "nn/tensor.h"

namespace nn {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // Where this backend's tensors live (views passed to its ops point there).
  virtual Memory memory() const = 0;

  // ---- memory ----
  virtual Buffer alloc(std::size_t bytes) = 0;  // zero-filled
  // Explicit transfers. dst/src offsets are in bytes; ranges are checked against the buffer.
  virtual void copy_from_host(Buffer& dst, std::size_t dst_offset, const void* src,
                              std::size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const Buffer& src, std::size_t src_offset,
                            std::size_t bytes) = 0;
  virtual void copy(Buffer& dst, std::size_t dst_offset, const Buffer& src,
                    std::size_t src_offset, std::size_t bytes) = 0;
  virtual void synchronize() {}
  // Where models keep their tensors and arenas on this backend: nullptr for host memory (the
  // CPU backend), else the backend's Placement (nn/tensor.h).
  virtual Placement* placement() { return nullptr; }
  // TF32 tensor-core products for this backend's float GEMMs (10-bit mantissas in the products,
  // float32 sums): false where the backend has no such mode (the CPU) and `on` was asked.
  virtual bool set_tf32(bool on) { return !on; }

  // ---- ops ----
  virtual Ops<float>& f32() = 0;
  virtual Ops<double>& f64() = 0;
  template <typename T>
  Ops<T>& ops() {
    if constexpr (std::is_same_v<T, float>)
      return f32();
    else
      return f64();
  }

  // Row-major C[M,N] = alpha * op(A) * op(B) + beta * C on this backend's memory
  // (= f32().gemm).
  void sgemm(bool trans_a, bool trans_b, Index M, Index N, Index K, float alpha, const float* A,
             Index lda, const float* B, Index ldb, float beta, float* C, Index ldc) {
    f32().gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }

 protected:
  // Throws std::out_of_range unless [offset, offset + bytes) lies inside `b`.
  static void check_range(const Buffer& b, std::size_t offset, std::size_t bytes,
                          const char* what);
};

// The CPU backend (always present).
Backend& cpu_backend();
// A backend by name: "cpu" always; "cuda" (= "cuda:0") or "cuda:N" in a build with
// -DINSPIRE_CUDA=ON and a usable GPU (one CUDA device per process). Throws std::runtime_error
// naming what is missing (no device, no such device) or the available backends otherwise.
Backend& get_backend(const std::string& name);
std::vector<std::string> available_backends();

// Number of threads used by OpenMP regions in nn/ (default: OpenMP's default).
void set_num_threads(int n);
int num_threads();

// ---- CPU GEMM in float and double (host memory; used inside CPU kernels) ----
void gemm(bool trans_a, bool trans_b, Index M, Index N, Index K, float alpha, const float* A,
          Index lda, const float* B, Index ldb, float beta, float* C, Index ldc);
void gemm(bool trans_a, bool trans_b, Index M, Index N, Index K, double alpha, const double* A,
          Index lda, const double* B, Index ldb, double beta, double* C, Index ldc);

// Convenience on 2-D host views: C = alpha * op(A) op(B) + beta * C (shapes checked).
template <typename T>
void matmul(CView<T> A, bool trans_a, CView<T> B, bool trans_b, View<T> C, T alpha = T(1),
            T beta = T(0)) {
  Index ar = A.numel() / A.dim(A.ndim() - 1), ac = A.dim(A.ndim() - 1);
  Index br = B.numel() / B.dim(B.ndim() - 1), bc = B.dim(B.ndim() - 1);
  Index M = trans_a ? ac : ar, K = trans_a ? ar : ac;
  Index K2 = trans_b ? bc : br, N = trans_b ? br : bc;
  Index cc = C.dim(C.ndim() - 1), cr = C.numel() / cc;
  if (K != K2 || cr != M || cc != N)
    throw std::invalid_argument("matmul: shapes " + A.shape.str() + (trans_a ? "ᵀ" : "") + " x " +
                                B.shape.str() + (trans_b ? "ᵀ" : "") + " -> " + C.shape.str());
  gemm(trans_a, trans_b, M, N, K, alpha, A.data, ac, B.data, bc, beta, C.data, cc);
}

}  // namespace nn
