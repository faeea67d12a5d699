// nn/backend.cpp — the one place where the compute backend is chosen.
#include "nn/backend.h"

#include <omp.h>

#include <memory>
#include <stdexcept>

namespace nn {
namespace {

template <typename T>
void eigen_gemm(bool ta, bool tb, Index M, Index N, Index K, T alpha, const T* A, Index lda,
                const T* B, Index ldb, T beta, T* C, Index ldc) {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Stride = Eigen::OuterStride<>;
  Eigen::Map<Mat, 0, Stride> c(C, M, N, Stride(ldc));
  if (M == 0 || N == 0) return;
  if (beta == T(0))
    c.setZero();
  else if (beta != T(1))
    c *= beta;
  if (K == 0) return;
  // Stored shapes: A is [M,K] (or [K,M] if ta), B is [K,N] (or [N,K] if tb).
  Eigen::Map<const Mat, 0, Stride> a(A, ta ? K : M, ta ? M : K, Stride(lda));
  Eigen::Map<const Mat, 0, Stride> b(B, tb ? N : K, tb ? K : N, Stride(ldb));
  if (!ta && !tb)
    c.noalias() += alpha * a * b;
  else if (ta && !tb)
    c.noalias() += alpha * a.transpose() * b;
  else if (!ta && tb)
    c.noalias() += alpha * a * b.transpose();
  else
    c.noalias() += alpha * a.transpose() * b.transpose();
}

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  void sgemm(bool ta, bool tb, Index M, Index N, Index K, float alpha, const float* A, Index lda,
             const float* B, Index ldb, float beta, float* C, Index ldc) override {
    eigen_gemm<float>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
};

CpuBackend& cpu() {
  static CpuBackend b;
  return b;
}
Backend* g_active = nullptr;

}  // namespace

#ifdef INSPIRE_HAVE_CUDA
Backend* make_cuda_backend();  // cuda/backend.cpp; returns nullptr when no GPU is usable
#endif

Backend& backend() { return g_active ? *g_active : cpu(); }

std::vector<std::string> available_backends() {
  std::vector<std::string> v{"cpu"};
#ifdef INSPIRE_HAVE_CUDA
  v.push_back("cuda");
#endif
  return v;
}

void set_backend(const std::string& name) {
  if (name == "cpu") {
    g_active = &cpu();
    return;
  }
#ifdef INSPIRE_HAVE_CUDA
  if (name == "cuda") {
    Backend* b = make_cuda_backend();
    if (!b) throw std::runtime_error("backend 'cuda': no usable CUDA device");
    g_active = b;
    return;
  }
#endif
  std::string avail;
  for (auto& s : available_backends()) avail += (avail.empty() ? "" : ", ") + s;
  throw std::runtime_error("unknown or unavailable backend '" + name + "' (available: " + avail +
                           ")");
}

void set_num_threads(int n) {
  if (n > 0) omp_set_num_threads(n);
}
int num_threads() { return omp_get_max_threads(); }

void gemm(bool ta, bool tb, Index M, Index N, Index K, float alpha, const float* A, Index lda,
          const float* B, Index ldb, float beta, float* C, Index ldc) {
  backend().sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void gemm(bool ta, bool tb, Index M, Index N, Index K, double alpha, const double* A, Index lda,
          const double* B, Index ldb, double beta, double* C, Index ldc) {
  eigen_gemm<double>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace nn
