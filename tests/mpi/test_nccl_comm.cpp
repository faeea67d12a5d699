// ctest-labels: gpu
// tests/mpi/test_nccl_comm.cpp — the NCCL communicator on a GPU: built with -DINSPIRE_MPI=ON
// -DINSPIRE_CUDA=ON when NCCL is found; needs a CUDA device. One rank is enough (a plain run,
// ctest nccl_comm): the weighted all-reduce of a buffer in GPU memory; under
// `mpirun -np N` (one GPU per rank, or several ranks sharing one) it checks the N-rank sum.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <vector>

#include "dist/comm.h"
#include "tests/mpi/mpi_gtest_main.h"

TEST(NcclComm, WeightedAllreduceInGpuMemory) {
  ASSERT_TRUE(dist::have_nccl());
  auto& w = dist::world();
  const int n = w.size(), r = w.rank();
  // gradient_communicator(cuda) on one rank is world() itself (nothing to reduce); the NCCL
  // communicator is built on first use when there are several ranks. Exercise NCCL either way.
  dist::Communicator& g = dist::gradient_communicator(nn::Memory::cuda);
  if (n > 1) {
    EXPECT_STREQ(g.name(), "nccl");
  }
  const std::size_t len = 1000003;  // not a multiple of anything
  std::vector<float> h(len);
  for (std::size_t i = 0; i < len; ++i) h[i] = (float)((r + 1) * (int)(i % 97));
  float* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, len * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d, h.data(), len * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  double S = 0, Q = 0;
  for (int k = 0; k < n; ++k) S += k + 1, Q += (k + 1) * (k + 1);
  if (n > 1) {
    g.allreduce_weighted(d, len, (r + 1) / S);
  } else {
    auto nccl = dist::make_nccl(w);
    ASSERT_STREQ(nccl->name(), "nccl");
    EXPECT_EQ(nccl->memory(), nn::Memory::cuda);
    nccl->allreduce_weighted(d, len, (r + 1) / S);
  }
  ASSERT_EQ(cudaMemcpy(h.data(), d, len * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(d);
  for (std::size_t i = 0; i < len; i += 9973)
    EXPECT_NEAR(h[i], Q / S * (double)(i % 97), 1e-3 * (1 + (double)(i % 97))) << i;
}

int main(int argc, char** argv) { return mpitest::run_all_tests_on_every_rank(argc, argv); }
