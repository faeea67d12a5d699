// ctest-labels: unit cli
// tests/test_dist.cpp — dist/: the single-process communicator, batch shares, per-rank seeds,
// and a build without MPI started as if by mpirun. (The MPI communicator: tests/mpi/.)
#include <gtest/gtest.h>

#include <cstdlib>
#include <set>
#include <vector>

#include "cli_helpers.h"
#include "dist/comm.h"

TEST(Dist, ShareCoversEveryItemOnceInOrder) {
  for (std::size_t n : {0u, 1u, 7u, 8u, 64u, 65u})
    for (int size : {1, 2, 3, 5}) {
      std::size_t next = 0;
      for (int r = 0; r < size; ++r) {
        auto s = dist::share(n, r, size);
        EXPECT_EQ(s.begin, next) << n << " " << size << " " << r;
        EXPECT_LE(s.size(), n / size + 1);
        EXPECT_GE(s.size(), n / size);
        next = s.end;
      }
      EXPECT_EQ(next, n);
    }
  EXPECT_THROW(dist::share(4, 2, 2), std::invalid_argument);
  EXPECT_THROW(dist::share(4, 0, 0), std::invalid_argument);
}

TEST(Dist, RankSeedKeepsRankZeroAndDiffersPerRank) {
  EXPECT_EQ(dist::rank_seed(42, 0), 42u);
  std::set<std::uint64_t> seen;
  for (int r = 0; r < 64; ++r) seen.insert(dist::rank_seed(42, r));
  EXPECT_EQ(seen.size(), 64u);
  EXPECT_NE(dist::rank_seed(42, 1), dist::rank_seed(43, 1));
}

TEST(Dist, SingleCommunicatorIsTheIdentity) {
  auto c = dist::make_single();
  EXPECT_EQ(c->rank(), 0);
  EXPECT_EQ(c->size(), 1);
  std::vector<float> g = {1.f, -2.f, 4.f};
  c->allreduce_weighted(g.data(), g.size(), 1.0);
  EXPECT_EQ(g, (std::vector<float>{1.f, -2.f, 4.f}));
  c->allreduce_weighted(g.data(), g.size(), 0.5);  // a lone rank's weighted sum is w·x
  EXPECT_EQ(g, (std::vector<float>{0.5f, -1.f, 2.f}));
  double d[2] = {3, 4};
  c->allreduce_sum(d, 2);
  EXPECT_EQ(d[0], 3);
  auto all = c->gather("abc", 0);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0], "abc");
  EXPECT_THROW(c->gather("x", 1), std::invalid_argument);
  c->barrier();
}

TEST(Dist, WorldIsSingleWithoutALauncher) {
  // ctest does not run this under mpirun: one process, whatever the build.
  if (dist::launcher_world_size() != 1) GTEST_FAIL() << "run this test without mpirun";
  EXPECT_EQ(dist::world().size(), 1);
  EXPECT_EQ(dist::world().rank(), 0);
  EXPECT_STREQ(dist::world().name(), "single");
  EXPECT_EQ(&dist::gradient_communicator(nn::Memory::host), &dist::world());
}

TEST(Dist, CollectiveTimeoutFromTheEnvironment) {
  ::setenv("INSPIRE_COLLECTIVE_TIMEOUT_S", "12.5", 1);
  EXPECT_DOUBLE_EQ(dist::collective_timeout_s(), 12.5);
  ::setenv("INSPIRE_COLLECTIVE_TIMEOUT_S", "soon", 1);
  EXPECT_THROW(dist::collective_timeout_s(), std::invalid_argument);
  ::unsetenv("INSPIRE_COLLECTIVE_TIMEOUT_S");
  EXPECT_DOUBLE_EQ(dist::collective_timeout_s(), 600.0);
}

// A build without MPI started by `mpirun -np 2` (two copies that would write the same files)
// refuses to run, naming the fix. (In an MPI build the variable would start MPI instead: that
// build's tests run under mpirun, tests/mpi/.)
TEST(Dist, MpirunWithoutMpiSupportIsRefused) {
  if (dist::have_mpi()) {
    EXPECT_TRUE(dist::have_mpi());
    return;
  }
  int rc = -1;
  std::string out = clitest::run("OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_RANK=1 " + clitest::kBin +
                                     " tokenize --help",
                                 &rc, true);
  EXPECT_NE(rc, 0) << out;
  EXPECT_NE(out.find("no MPI support"), std::string::npos) << out;
  EXPECT_NE(out.find("-DINSPIRE_MPI=ON"), std::string::npos) << out;
}
