// tests/mpi/mpi_gtest_main.h — the main() body the MPI test programs share: GoogleTest on every
// rank, MPI initialised first, and a failure on any rank fails the job (exit status 1 on every
// rank) even when the other ranks passed.
#pragma once

#include <gtest/gtest.h>

#include "dist/comm.h"

namespace mpitest {

inline int run_all_tests_on_every_rank(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  dist::world();  // MPI_Init before the tests
  const int rc = RUN_ALL_TESTS();
  double bad = rc != 0;
  dist::world().allreduce_sum(&bad, 1);
  return bad > 0 ? 1 : 0;
}

}  // namespace mpitest
