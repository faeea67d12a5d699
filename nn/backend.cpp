// nn/backend.cpp — the one place where a backend is chosen by name; the CPU GEMM.
#include "nn/backend.h"

#include "nn/gemm_avx512.h"
#include "nn/gemm_kernels.h"

#include <omp.h>

#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <stdexcept>

namespace nn {

namespace kernels {
namespace {
struct PackBuffers {
  void* p[2] = {nullptr, nullptr};
  std::size_t bytes[2] = {0, 0};
  ~PackBuffers() {
    std::free(p[0]);
    std::free(p[1]);
  }
};
thread_local PackBuffers t_pack;
}  // namespace

void* gemm_pack_buffer(int which, std::size_t want) {
  void*& p = t_pack.p[which];
  std::size_t& have = t_pack.bytes[which];
  if (want > have) {
    std::free(p);
    p = nullptr;
    have = 0;
    want = (want + 4095) / 4096 * 4096;
    if (posix_memalign(&p, 64, want) != 0) throw std::bad_alloc();
    have = want;
  }
  return p;
}
}  // namespace kernels

namespace {


// Eigen's blocking object (the sizes its own products compute) over this thread's packing
// buffers (kernels::gemm_pack_buffer).
template <typename T>
struct OwnBlocking
    : Eigen::internal::gemm_blocking_space<Eigen::RowMajor, T, T, Eigen::Dynamic, Eigen::Dynamic,
                                           Eigen::Dynamic, 1, false> {
  using Base = Eigen::internal::gemm_blocking_space<Eigen::RowMajor, T, T, Eigen::Dynamic,
                                                    Eigen::Dynamic, Eigen::Dynamic, 1, false>;
  OwnBlocking(Index rows, Index cols, Index depth) : Base(rows, cols, depth, 1, true) {
    const std::size_t sa = sizeof(T) * (std::size_t)this->m_mc * (std::size_t)this->m_kc;
    const std::size_t sb = sizeof(T) * (std::size_t)this->m_kc * (std::size_t)this->m_nc;
    this->m_blockA = static_cast<T*>(kernels::gemm_pack_buffer(0, sa));
    this->m_blockB = static_cast<T*>(kernels::gemm_pack_buffer(1, sb));
  }
  ~OwnBlocking() { this->m_blockA = nullptr, this->m_blockB = nullptr; }  // not Eigen's to free
};

// C (+)= alpha op(A) op(B) by Eigen's blocked GEMM kernel (general_matrix_matrix_product), as
// Eigen's own `c.noalias() += alpha * a * b` runs it for these shapes, but on PackBuffers.
template <typename T, int LhsOrder, int RhsOrder>
void eigen_gemm_kernel(Index M, Index N, Index K, T alpha, const T* A, Index lda, const T* B,
                       Index ldb, T* C, Index ldc) {
  OwnBlocking<T> blocking(M, N, K);
  Eigen::internal::general_matrix_matrix_product<Index, T, LhsOrder, false, T, RhsOrder, false,
                                                 Eigen::RowMajor, 1>::run(M, N, K, A, lda, B, ldb,
                                                                          C, 1, ldc, alpha,
                                                                          blocking, nullptr);
}

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
  // Products Eigen runs as a blocked GEMM (not a GEMV, not a small coefficient-wise product):
  // the same kernel and blocking, without its per-call heap allocation.
  if (M > 1 && N > 1 && K + M + N >= EIGEN_GEMM_TO_COEFFBASED_THRESHOLD) {
    if constexpr (std::is_same_v<T, float>) {
      if (kernels::avx512_usable() && kernels::sgemm_acc_avx512_built()) {
        kernels::sgemm_acc_avx512(ta, tb, M, N, K, alpha, A, lda, B, ldb, C, ldc);
        return;
      }
    }
    constexpr int R = Eigen::RowMajor, Cm = Eigen::ColMajor;
    if (!ta && !tb) eigen_gemm_kernel<T, R, R>(M, N, K, alpha, A, lda, B, ldb, C, ldc);
    else if (ta && !tb) eigen_gemm_kernel<T, Cm, R>(M, N, K, alpha, A, lda, B, ldb, C, ldc);
    else if (!ta && tb) eigen_gemm_kernel<T, R, Cm>(M, N, K, alpha, A, lda, B, ldb, C, ldc);
    else eigen_gemm_kernel<T, Cm, Cm>(M, N, K, alpha, A, lda, B, ldb, C, ldc);
    return;
  }
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

}  // namespace

Backend& cpu_backend();  // nn/cpu_backend.cpp

#ifdef INSPIRE_HAVE_CUDA
// cuda/cuda_backend.cpp: the backend on CUDA device `device`, or nullptr with the reason in
// *why (no driver, no device, no such device index, already bound to another device).
Backend* make_cuda_backend(int device, std::string* why);
#endif

void Backend::check_range(const Buffer& b, std::size_t offset, std::size_t bytes,
                          const char* what) {
  if (offset > b.size() || bytes > b.size() - offset)
    throw std::out_of_range(std::string(what) + ": bytes [" + std::to_string(offset) + ", " +
                            std::to_string(offset + bytes) + ") outside the " +
                            std::to_string(b.size()) + "-byte " + memory_name(b.memory()) +
                            " buffer");
}

std::vector<std::string> available_backends() {
  std::vector<std::string> v{"cpu"};
#ifdef INSPIRE_HAVE_CUDA
  v.push_back("cuda");
#endif
  return v;
}

Backend& get_backend(const std::string& name) {
  if (name == "cpu") return cpu_backend();
#ifdef INSPIRE_HAVE_CUDA
  // "cuda" = "cuda:0"; "cuda:N" picks device N (one CUDA device per process).
  if (name == "cuda" || (name.rfind("cuda:", 0) == 0 && name.size() > 5 && name.size() < 9 &&
                         name.find_first_not_of("0123456789", 5) == std::string::npos)) {
    const int dev = name == "cuda" ? 0 : std::stoi(name.substr(5));
    std::string why;
    Backend* cuda = make_cuda_backend(dev, &why);
    if (!cuda) throw std::runtime_error("backend '" + name + "': " + why);
    return *cuda;
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
  eigen_gemm<float>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void gemm(bool ta, bool tb, Index M, Index N, Index K, double alpha, const double* A, Index lda,
          const double* B, Index ldb, double beta, double* C, Index ldc) {
  eigen_gemm<double>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace nn
