// ctest-labels: mpi
// tests/mpi/test_mpi_comm.cpp — the MPI communicator's collectives; run under
// `mpirun -np 2` by ctest (mpi_comm_np2). Every rank runs every test; a failing rank fails the
// job. `test_mpi_comm --hang` is the watchdog check driven by test_mpi_cli: rank 1 never joins
// the barrier rank 0 waits in. `test_mpi_comm --bench FLOATS [REPS]` times the all-reduce.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "dist/comm.h"
#include "tests/mpi/mpi_gtest_main.h"

TEST(MpiComm, IsMpiWithTheLauncherSize) {
  ASSERT_TRUE(dist::have_mpi());
  EXPECT_STREQ(dist::world().name(), "mpi");
  EXPECT_EQ(dist::world().size(), dist::launcher_world_size());
  EXPECT_GE(dist::world().size(), 2);
}

TEST(MpiComm, AllreduceWeightedIsTheWeightedSum) {
  auto& c = dist::world();
  const int n = c.size(), r = c.rank();
  // rank r holds (r+1)·(1, 2, ..., 7); weight (r+1)/S with S = Σ (r+1): result Σ (r+1)²/S·i.
  std::vector<float> g(7);
  for (int i = 0; i < 7; ++i) g[i] = (float)((r + 1) * (i + 1));
  double S = 0, Q = 0;
  for (int k = 0; k < n; ++k) S += k + 1, Q += (k + 1) * (k + 1);
  c.allreduce_weighted(g.data(), g.size(), (r + 1) / S);
  for (int i = 0; i < 7; ++i) EXPECT_NEAR(g[i], Q / S * (i + 1), 1e-5) << i;
}

TEST(MpiComm, AllreduceSumBroadcastGatherBarrier) {
  auto& c = dist::world();
  const int n = c.size(), r = c.rank();
  double d[2] = {1.0, (double)r};
  c.allreduce_sum(d, 2);
  EXPECT_EQ(d[0], n);
  EXPECT_EQ(d[1], n * (n - 1) / 2.0);

  char buf[16] = {};
  if (r == 1) std::strcpy(buf, "from rank one");
  c.broadcast(buf, sizeof buf, 1);
  EXPECT_STREQ(buf, "from rank one");

  std::string mine(r * 3, (char)('a' + r));  // rank 0 sends nothing
  auto all = c.gather(mine, 0);
  if (r == 0) {
    ASSERT_EQ((int)all.size(), n);
    for (int k = 0; k < n; ++k) EXPECT_EQ(all[k], std::string(k * 3, (char)('a' + k)));
  } else {
    EXPECT_TRUE(all.empty());
  }
  c.barrier();
}

int main(int argc, char** argv) {
  if (argc > 2 && std::string(argv[1]) == "--bench") {
    // test_mpi_comm --bench FLOATS [REPS]: time of allreduce_weighted (docs/distributed.md).
    auto& c = dist::world();
    const std::size_t n = std::stoull(argv[2]);
    const int reps = argc > 3 ? std::stoi(argv[3]) : 5;
    std::vector<float> g(n, 1.0f);
    c.allreduce_weighted(g.data(), n, 0.5);  // warm-up (page faults, connections)
    std::vector<double> t;
    for (int i = 0; i < reps; ++i) {
      c.barrier();
      auto t0 = std::chrono::steady_clock::now();
      c.allreduce_weighted(g.data(), n, 1.0 / c.size());
      t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(t.begin(), t.end());
    if (c.rank() == 0)
      std::printf("allreduce_weighted of %zu floats (%.1f MB) over %d ranks: median %.1f ms, "
                  "min %.1f ms (%d repeats)\n",
                  n, n * 4 / 1e6, c.size(), t[t.size() / 2] * 1e3, t[0] * 1e3, reps);
    return 0;
  }
  if (argc > 1 && std::string(argv[1]) == "--hang") {
    auto& c = dist::world();
    if (c.rank() == 1) std::this_thread::sleep_for(std::chrono::seconds(120));
    c.barrier();  // rank 0: the watchdog must stop the job
    return 0;
  }
  return mpitest::run_all_tests_on_every_rank(argc, argv);
}
