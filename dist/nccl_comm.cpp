// dist/nccl_comm.cpp — the NCCL communicator: all-reduce of gradients in GPU memory (built with
// -DINSPIRE_MPI=ON -DINSPIRE_CUDA=ON when CMake finds NCCL; see dist/comm.h).
//
// Bootstrapped through the MPI communicator: rank 0 makes the ncclUniqueId, MPI broadcasts it,
// every rank joins with ncclCommInitRank. Each rank uses GPU (local rank mod GPUs on the node)
// unless the CUDA backend already chose one. allreduce_weighted() is one ncclAllReduce with a
// pre-multiplied sum (ncclRedOpCreatePreMulSum: data ← Σ_r w_r·data_r, no extra kernel) on the
// communicator's stream, waited for by polling, so that a dead peer (ncclCommGetAsyncError) or a
// collective past collective_timeout_s() aborts the NCCL communicator and throws instead of
// hanging. Host collectives (losses, gathers, barriers) go through the MPI communicator.
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>

#include "dist/comm.h"
#include "dist/internal.h"

namespace dist {
namespace {

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("NCCL communicator: ") + what + ": " + cudaGetErrorString(e));
}

class NcclComm final : public Communicator {
 public:
  explicit NcclComm(Communicator& boot) : boot_(boot) {
    int n_dev = 0;
    cuda_check(cudaGetDeviceCount(&n_dev), "cudaGetDeviceCount");
    if (n_dev < 1) throw std::runtime_error("NCCL communicator: no CUDA device");
    if (const char* lr = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK")) {
      int dev = std::atoi(lr) % n_dev;
      cuda_check(cudaSetDevice(dev), "cudaSetDevice");
    }
    ncclUniqueId id{};
    if (boot_.rank() == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    boot_.broadcast(&id, sizeof id, 0);
    check(ncclCommInitRank(&comm_, boot_.size(), id, boot_.rank()), "ncclCommInitRank");
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  }
  ~NcclComm() override {
    if (comm_) ncclCommDestroy(comm_);
    if (stream_) cudaStreamDestroy(stream_);
  }
  int rank() const override { return boot_.rank(); }
  int size() const override { return boot_.size(); }
  const char* name() const override { return "nccl"; }
  nn::Memory memory() const override { return nn::Memory::cuda; }

  void allreduce_weighted(float* data, std::size_t n, double weight) override {
    // The caller's kernels (default stream) must have finished writing the gradients.
    cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    float w = (float)weight;
    ncclRedOp_t op;
    check(ncclRedOpCreatePreMulSum(&op, &w, ncclFloat, ncclScalarHostImmediate, comm_),
          "ncclRedOpCreatePreMulSum");
    check(ncclAllReduce(data, data, n, ncclFloat, op, comm_, stream_), "ncclAllReduce");
    wait("ncclAllReduce (gradients)");
    check(ncclRedOpDestroy(op, comm_), "ncclRedOpDestroy");
  }
  void allreduce_sum(double* data, std::size_t n) override { boot_.allreduce_sum(data, n); }
  void broadcast(void* data, std::size_t bytes, int root) override { boot_.broadcast(data, bytes, root); }
  std::vector<std::string> gather(const std::string& mine, int root) override {
    return boot_.gather(mine, root);
  }
  void barrier() override { boot_.barrier(); }
  [[noreturn]] void abort(int code) noexcept override {
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
    boot_.abort(code);
    std::_Exit(code);  // (not reached)
  }

 private:
  void check(ncclResult_t r, const char* what) const {
    if (r == ncclSuccess || r == ncclInProgress) return;
    throw std::runtime_error(std::string(what) + " failed on rank " + std::to_string(boot_.rank()) +
                             ": " + ncclGetErrorString(r));
  }
  void wait(const char* what) {
    const double limit = collective_timeout_s();
    const auto t0 = std::chrono::steady_clock::now();
    for (;;) {
      cudaError_t e = cudaStreamQuery(stream_);
      if (e == cudaSuccess) return;
      if (e != cudaErrorNotReady) cuda_check(e, what);
      ncclResult_t async = ncclSuccess;
      check(ncclCommGetAsyncError(comm_, &async), "ncclCommGetAsyncError");
      const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (async != ncclSuccess || (limit > 0 && el > limit)) {
        ncclCommAbort(comm_);
        comm_ = nullptr;
        throw std::runtime_error(std::string(what) + " on rank " + std::to_string(boot_.rank()) +
                                 (async != ncclSuccess ? std::string(": ") + ncclGetErrorString(async)
                                                       : " did not complete within " +
                                                             std::to_string((int)limit) + " s"));
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  Communicator& boot_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

}  // namespace

namespace detail {
std::unique_ptr<Communicator> make_nccl(Communicator& boot) { return std::make_unique<NcclComm>(boot); }
}  // namespace detail

}  // namespace dist
