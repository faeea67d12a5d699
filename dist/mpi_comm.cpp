// dist/mpi_comm.cpp — the MPI communicator (built with -DINSPIRE_MPI=ON; see dist/comm.h).
//
// MPI_COMM_WORLD with MPI_ERRORS_RETURN: a failing call throws std::runtime_error naming the
// call, the rank and MPI's message (the tool then stops every rank, dist::fatal_error_exit).
// A watchdog thread bounds every collective by collective_timeout_s(): past it, the rank prints
// which collective hung and exits (status 3) without MPI_Finalize, which makes mpirun stop the
// whole job. A rank killed outright (SIGKILL, OOM) is noticed by mpirun itself, which then
// terminates the others (SIGTERM: atomic writes in flight are removed, the last checkpoint
// stays as it was).
// The C API only (no MPI C++ bindings, which would need libmpi_cxx).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <unistd.h>

#include "dist/comm.h"
#include "dist/internal.h"

namespace dist {
namespace {

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class Watchdog {
 public:
  Watchdog(double timeout_s, int rank) : timeout_s_(timeout_s), rank_(rank) {
    if (timeout_s_ > 0) thread_ = std::thread([this] { loop(); });
  }
  ~Watchdog() { stop(); }
  void stop() {
    {
      std::lock_guard<std::mutex> g(mu_);
      done_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  void arm(const char* what) {
    what_.store(what);
    since_.store(now_ns());
  }
  void disarm() { since_.store(0); }

 private:
  void loop() {
    std::unique_lock<std::mutex> lk(mu_);
    while (!done_) {
      cv_.wait_for(lk, std::chrono::milliseconds(200));
      const std::int64_t s = since_.load();
      if (done_ || s == 0) continue;
      const double el = (double)(now_ns() - s) * 1e-9;
      if (el > timeout_s_) {
        std::fprintf(stderr,
                     "inspire-classifier: error: rank %d: %s did not complete within %.0f s: "
                     "another rank died, hangs or failed (set INSPIRE_COLLECTIVE_TIMEOUT_S to "
                     "change the limit); stopping the job\n",
                     rank_, what_.load(), timeout_s_);
        std::fflush(stderr);
        ::_exit(3);  // no MPI_Finalize: mpirun then terminates every rank
      }
    }
  }
  double timeout_s_;
  int rank_;
  std::atomic<const char*> what_{""};
  std::atomic<std::int64_t> since_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

class MpiComm;
MpiComm* g_mpi = nullptr;
void finalize_at_exit();

class MpiComm final : public Communicator {
 public:
  MpiComm() {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
      int provided = 0;
      if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        throw std::runtime_error("MPI_Init_thread failed");
      owns_ = true;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    watchdog_ = std::make_unique<Watchdog>(collective_timeout_s(), rank_);
    g_mpi = this;
    std::atexit(finalize_at_exit);
  }
  ~MpiComm() override { shutdown(); }

  void shutdown() {
    if (down_) return;
    down_ = true;
    if (watchdog_) watchdog_->stop();
    int fin = 0;
    MPI_Finalized(&fin);
    if (owns_ && !fin) MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "mpi"; }

  void allreduce_weighted(float* data, std::size_t n, double weight) override {
    if (weight != 1.0) {
      const float w = (float)weight;
      for (std::size_t i = 0; i < n; ++i) data[i] *= w;
    }
    Guard g(*this, "MPI_Allreduce (gradients)");
    for (std::size_t off = 0; off < n; off += kChunk) {
      const int c = (int)std::min(kChunk, n - off);
      check(MPI_Allreduce(MPI_IN_PLACE, data + off, c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
            "MPI_Allreduce");
    }
  }
  void allreduce_sum(double* data, std::size_t n) override {
    Guard g(*this, "MPI_Allreduce");
    for (std::size_t off = 0; off < n; off += kChunk) {
      const int c = (int)std::min(kChunk, n - off);
      check(MPI_Allreduce(MPI_IN_PLACE, data + off, c, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD),
            "MPI_Allreduce");
    }
  }
  void broadcast(void* data, std::size_t bytes, int root) override {
    Guard g(*this, "MPI_Bcast");
    auto* p = static_cast<char*>(data);
    for (std::size_t off = 0; off < bytes; off += kChunk) {
      const int c = (int)std::min(kChunk, bytes - off);
      check(MPI_Bcast(p + off, c, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
    }
  }
  std::vector<std::string> gather(const std::string& mine, int root) override {
    Guard g(*this, "MPI_Gatherv");
    if (mine.size() > (std::size_t)INT_MAX)
      throw std::runtime_error("gather: " + std::to_string(mine.size()) + " bytes on rank " +
                               std::to_string(rank_) + " (at most 2 GiB per call)");
    int len = (int)mine.size();
    std::vector<int> lens(rank_ == root ? size_ : 0), displs;
    check(MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, root, MPI_COMM_WORLD), "MPI_Gather");
    std::string all;
    if (rank_ == root) {
      displs.resize(size_);
      long long tot = 0;
      for (int r = 0; r < size_; ++r) {
        displs[r] = (int)tot;
        tot += lens[r];
      }
      if (tot > INT_MAX)
        throw std::runtime_error("gather: " + std::to_string(tot) + " bytes in all (at most 2 GiB per call)");
      all.resize((std::size_t)tot);
    }
    check(MPI_Gatherv(mine.data(), len, MPI_BYTE, all.data(), lens.data(), displs.data(), MPI_BYTE,
                      root, MPI_COMM_WORLD),
          "MPI_Gatherv");
    std::vector<std::string> out;
    if (rank_ == root)
      for (int r = 0; r < size_; ++r) out.emplace_back(all.substr((std::size_t)displs[r], (std::size_t)lens[r]));
    return out;
  }
  void barrier() override {
    Guard g(*this, "MPI_Barrier");
    check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
  }
  [[noreturn]] void abort(int code) noexcept override {
    std::fflush(stdout);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

 private:
  static constexpr std::size_t kChunk = std::size_t{1} << 30;
  struct Guard {
    Guard(MpiComm& c, const char* what) : c_(c) { c_.watchdog_->arm(what); }
    ~Guard() { c_.watchdog_->disarm(); }
    MpiComm& c_;
  };
  void check(int rc, const char* call) const {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw std::runtime_error(std::string(call) + " failed on rank " + std::to_string(rank_) +
                             " of " + std::to_string(size_) + ": " + std::string(msg, (std::size_t)len));
  }
  int rank_ = 0, size_ = 1;
  bool owns_ = false, down_ = false;
  std::unique_ptr<Watchdog> watchdog_;
};

void finalize_at_exit() {
  if (g_mpi) g_mpi->shutdown();
}

}  // namespace

namespace detail {
std::unique_ptr<Communicator> make_mpi_world() { return std::make_unique<MpiComm>(); }
}  // namespace detail

}  // namespace dist
