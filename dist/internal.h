// dist/internal.h — constructors of the optional communicators (dist/ only; see dist/comm.h).
#pragma once

#include <memory>

#include "dist/comm.h"

namespace dist::detail {

// MPI_COMM_WORLD (MPI_Init_thread on first call; MPI_Finalize at exit). dist/mpi_comm.cpp.
std::unique_ptr<Communicator> make_mpi_world();
// NCCL over the ranks of `boot` (rank 0 makes the id, boot broadcasts it). dist/nccl_comm.cpp.
std::unique_ptr<Communicator> make_nccl(Communicator& boot);

}  // namespace dist::detail
