// dist/comm.cpp — the single-process communicator, world(), and the helpers of dist/comm.h.
#include "dist/comm.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

#include "dist/internal.h"

namespace dist {

namespace {

class SingleComm final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const char* name() const override { return "single"; }
  void allreduce_weighted(float* data, std::size_t n, double weight) override {
    if (weight == 1.0) return;
    const float w = (float)weight;
    for (std::size_t i = 0; i < n; ++i) data[i] *= w;
  }
  void allreduce_sum(double*, std::size_t) override {}
  void broadcast(void*, std::size_t, int root) override {
    if (root != 0) throw std::invalid_argument("broadcast: root " + std::to_string(root) + " of 1 rank");
  }
  std::vector<std::string> gather(const std::string& mine, int root) override {
    if (root != 0) throw std::invalid_argument("gather: root " + std::to_string(root) + " of 1 rank");
    return {mine};
  }
  void barrier() override {}
  [[noreturn]] void abort(int code) noexcept override {
    std::fflush(stdout);
    std::fflush(stderr);
    std::_Exit(code);
  }
};

std::once_flag g_world_once;
std::unique_ptr<Communicator> g_world;

std::uint64_t splitmix(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

int env_int(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return -1;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < 0 || x > (1L << 24)) return -1;
  return (int)x;
}

}  // namespace

std::unique_ptr<Communicator> make_single() { return std::make_unique<SingleComm>(); }

int launcher_world_size() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"}) {
    int n = env_int(v);
    if (n > 0) return n;
  }
  // PMIx launchers (OpenMPI 5, Slurm) always set PMIX_RANK; the size is then learnt from MPI.
  if (std::getenv("PMIX_RANK")) return 0;
  return 1;  // no launcher
}

bool have_mpi() {
#ifdef INSPIRE_HAVE_MPI
  return true;
#else
  return false;
#endif
}

bool have_nccl() {
#ifdef INSPIRE_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Communicator> make_nccl(Communicator& boot) {
#ifdef INSPIRE_HAVE_NCCL
  return detail::make_nccl(boot);
#else
  (void)boot;
  throw std::runtime_error("this build has no NCCL communicator (build with -DINSPIRE_MPI=ON "
                           "-DINSPIRE_CUDA=ON and NCCL installed)");
#endif
}

Communicator& world() {
  std::call_once(g_world_once, [] {
    const int launched = launcher_world_size();
#ifdef INSPIRE_HAVE_MPI
    if (launched != 1) {
      g_world = detail::make_mpi_world();
      return;
    }
#else
    if (launched > 1 || launched == 0)
      throw std::runtime_error(
          "this process was started by mpirun (" +
          (launched > 1 ? std::to_string(launched) + " ranks" : std::string("PMIx")) +
          "), but this build of inspire-classifier has no MPI support: rebuild with "
          "-DINSPIRE_MPI=ON (docs/distributed.md), or run it without mpirun");
#endif
    g_world = make_single();
  });
  if (!g_world) throw std::runtime_error("the communicator failed to initialise (see above)");
  return *g_world;
}

Communicator& gradient_communicator(nn::Memory m) {
  Communicator& w = world();
  if (m == nn::Memory::host || w.size() == 1) return w;
#ifdef INSPIRE_HAVE_NCCL
  static std::unique_ptr<Communicator> nccl;
  static std::once_flag once;
  std::call_once(once, [&] { nccl = detail::make_nccl(w); });
  return *nccl;
#else
  throw std::runtime_error(std::string("data-parallel training with gradients in ") +
                           nn::memory_name(m) +
                           " memory needs the NCCL communicator, which this build does not have "
                           "(build with -DINSPIRE_MPI=ON -DINSPIRE_CUDA=ON and NCCL installed)");
#endif
}

double collective_timeout_s() {
  const char* v = std::getenv("INSPIRE_COLLECTIVE_TIMEOUT_S");
  if (!v || !*v) return 600.0;
  char* end = nullptr;
  double x = std::strtod(v, &end);
  if (*end != '\0' || !(x >= 0) || x > 1e7)
    throw std::invalid_argument(std::string("INSPIRE_COLLECTIVE_TIMEOUT_S='") + v +
                                "' is not a number of seconds in [0, 1e7] (0 = no timeout)");
  return x;
}

const Communicator* world_if_created() { return g_world.get(); }

void fatal_error_exit(int code) {
  // Only when a communicator exists: an error before any collective in a single-rank run is an
  // ordinary non-zero exit.
  if (g_world && g_world->size() > 1) g_world->abort(code ? code : 1);
}

std::uint64_t rank_seed(std::uint64_t seed, int rank) {
  if (rank == 0) return seed;
  std::uint64_t x = seed ^ (0x6a09e667f3bcc909ULL * (std::uint64_t)rank);
  splitmix(x);
  return splitmix(x);
}

Range share(std::size_t n, int rank, int size) {
  if (size <= 0 || rank < 0 || rank >= size)
    throw std::invalid_argument("share: rank " + std::to_string(rank) + " of " + std::to_string(size));
  const std::size_t q = n / (std::size_t)size, r = n % (std::size_t)size, k = (std::size_t)rank;
  Range out;
  out.begin = k * q + std::min(k, r);
  out.end = out.begin + q + (k < r ? 1 : 0);
  return out;
}

}  // namespace dist
