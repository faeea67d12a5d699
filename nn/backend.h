// nn/backend.h — the compute backend seam (ggml-style): one interface, chosen in one place.
//
// Layers call the free functions below (nn::gemm, ...). They never test for CUDA themselves:
// nn/backend.cpp is the only place that decides which implementation runs. The CPU backend is
// the readable reference; any other backend (cuda/) is tested by comparison with it.
#pragma once

#include <string>
#include <vector>

#include "nn/tensor.h"

namespace nn {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // Row-major C[M,N] = alpha * op(A) * op(B) + beta * C, with op(X) = X or Xᵀ.
  // lda/ldb/ldc are row strides (elements) of the matrices as stored.
  virtual void sgemm(bool trans_a, bool trans_b, Index M, Index N, Index K, float alpha,
                     const float* A, Index lda, const float* B, Index ldb, float beta, float* C,
                     Index ldc) = 0;
};

// The active backend (CPU unless set_backend chose another).
Backend& backend();
// Select by name: "cpu" always exists; "cuda" only in a build with -DINSPIRE_CUDA=ON and a GPU.
// Throws std::runtime_error naming the available backends otherwise.
void set_backend(const std::string& name);
std::vector<std::string> available_backends();

// Number of threads used by OpenMP regions in nn/ (default: OpenMP's default).
void set_num_threads(int n);
int num_threads();

// ---- GEMM in float (through the active backend) and double (CPU reference, for gradchecks) ----
void gemm(bool trans_a, bool trans_b, Index M, Index N, Index K, float alpha, const float* A,
          Index lda, const float* B, Index ldb, float beta, float* C, Index ldc);
void gemm(bool trans_a, bool trans_b, Index M, Index N, Index K, double alpha, const double* A,
          Index lda, const double* B, Index ldb, double beta, double* C, Index ldc);

// Convenience on 2-D views: C = alpha * op(A) op(B) + beta * C (shapes checked).
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
