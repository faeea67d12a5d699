// dist/comm.h — the communicator seam for data-parallel training and sharded scoring (issue 17).
//
// A Communicator joins the processes ("ranks") of one job. Three implementations:
//   * single (always built): one rank; every collective is the identity. The default: a plain
//     `inspire-classifier train` never touches MPI.
//   * MPI (dist/mpi_comm.cpp, built with -DINSPIRE_MPI=ON): the job `mpirun -np N` started.
//     MPI_COMM_WORLD with MPI_ERRORS_RETURN (an MPI error is a C++ exception naming the call),
//     and a watchdog: a collective that does not complete within collective_timeout_s() stops
//     the whole job with a clear error instead of hanging.
//   * NCCL (dist/nccl_comm.cpp, built with -DINSPIRE_MPI=ON -DINSPIRE_CUDA=ON when NCCL is
//     found): all-reduce of gradients in GPU memory; bootstrapped through the MPI communicator
//     (rank 0 makes the NCCL id and broadcasts it). Only allreduce_weighted() runs on it.
//
// world() is the process-wide communicator: MPI when this build has MPI and the process was
// started by mpirun (OMPI_COMM_WORLD_SIZE / PMI_SIZE / PMIX_RANK in the environment), single
// otherwise. A build without MPI started by `mpirun -np 2` throws (two independent single-rank
// runs would write the same files) instead of running twice.
//
// Every collective must be called by every rank in the same order with the same sizes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nn/tensor.h"

namespace dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* name() const = 0;  // "single", "mpi", "nccl"
  // Where the buffers of allreduce_weighted() must live (host for single and MPI).
  virtual nn::Memory memory() const { return nn::Memory::host; }

  // data ← Σ_r weight_r · data_r over all ranks, in place (n floats on every rank): the
  // data-parallel gradient average when weight_r is rank r's share of the global batch.
  virtual void allreduce_weighted(float* data, std::size_t n, double weight) = 0;
  // data ← Σ_r data_r (host doubles: losses, counts, metrics).
  virtual void allreduce_sum(double* data, std::size_t n) = 0;
  // root's bytes to every rank (the same `bytes` everywhere).
  virtual void broadcast(void* data, std::size_t bytes, int root) = 0;
  // Every rank's buffer (any size) at `root` (index = rank); other ranks get an empty vector.
  virtual std::vector<std::string> gather(const std::string& mine, int root) = 0;
  virtual void barrier() = 0;
  // Stops every rank of the job with exit code `code` (never returns).
  [[noreturn]] virtual void abort(int code) noexcept = 0;
};

// The single-process communicator.
std::unique_ptr<Communicator> make_single();
// The NCCL communicator over the ranks of `boot` (every rank calls it; rank 0 makes the id,
// `boot` broadcasts it). Throws std::runtime_error in a build without NCCL.
std::unique_ptr<Communicator> make_nccl(Communicator& boot);

// The process-wide communicator (see above). The first call initialises MPI when needed.
Communicator& world();
// Whether this build has the MPI communicator / the NCCL communicator.
bool have_mpi();
bool have_nccl();
// Whether the environment says this process was started by an MPI launcher (and how many ranks).
int launcher_world_size();

// The communicator for gradients living in `m`: world() for host memory; for CUDA memory the
// NCCL communicator over world()'s ranks (created on first use). Throws std::runtime_error when
// this build cannot reduce buffers in `m` (and the job has more than one rank).
Communicator& gradient_communicator(nn::Memory m);

// Seconds a collective may take before the watchdog stops the job: INSPIRE_COLLECTIVE_TIMEOUT_S
// (default 600; 0 = no watchdog). Throws std::invalid_argument on a malformed value.
double collective_timeout_s();

// The process-wide communicator if world() has created it (nullptr otherwise; never initialises).
const Communicator* world_if_created();

// Called by the command-line tool after it printed a fatal error: in a job of several ranks,
// stops every rank (a rank that just returned would leave the others waiting in a collective).
void fatal_error_exit(int code);

// The dropout / RNG seed of `rank`: `seed` itself on rank 0 (one process = rank 0 of one), a
// well-mixed function of (seed, rank) on the others.
std::uint64_t rank_seed(std::uint64_t seed, int rank);

// [begin, end) of the `n` items (rows, documents) that `rank` of `size` takes: contiguous
// blocks, the first n % size ranks one item more.
struct Range {
  std::size_t begin = 0, end = 0;
  std::size_t size() const { return end - begin; }
};
Range share(std::size_t n, int rank, int size);

}  // namespace dist
