// nn/parallel.h — OpenMP regions that are only opened when they run on more than one thread.
//
// libgomp allocates (and frees) a team descriptor for every parallel region that runs on one
// thread (an `if` clause that is false, num_threads(1), OMP_NUM_THREADS=1, or a nested region);
// a team of several threads is cached and reused. A training step opens hundreds of small
// regions, so kernels go through these helpers, which run the body inline on the calling thread
// instead of opening a one-thread region (tests/test_alloc_free.cpp checks that a training step
// allocates nothing).
#pragma once

#include <omp.h>

#include <algorithm>

#include "nn/tensor.h"

namespace nn {

// The part [b0, b1) of [0, n) that part `i` of `parts` contiguous, balanced parts gets (the
// first n % parts parts one element more; OpenMP's schedule(static) split).
inline void split_range(Index n, int i, int parts, Index& b0, Index& b1) {
  const Index per = n / parts, rem = n % parts;
  b0 = i * per + std::min<Index>(i, rem);
  b1 = b0 + per + (i < rem ? 1 : 0);
}

// [0, n) cut into `parts` fixed slices whose edges are multiples of `align` (the last slice ends
// at n): one slice per `per` elements, between 1 and `max_parts` (and at most one per `align`
// block). The cut depends on (n, align, per, max_parts) alone, never on the thread count, so work
// done slice by slice (each slice one call) gives the same bits with any number of threads; the
// threads share the slices (split_range over `parts`).
struct FixedSlices {
  Index n, align, blocks, parts;
  FixedSlices(Index n_, Index align_, Index per, Index max_parts)
      : n(n_), align(align_), blocks((n_ + align_ - 1) / align_),
        parts(std::clamp<Index>(n_ / per, 1, std::max<Index>(1, std::min(max_parts, blocks)))) {}
  // Slice q is [i0, i1) (empty when n is 0).
  void bounds(Index q, Index& i0, Index& i1) const {
    Index b0, b1;
    split_range(blocks, (int)q, (int)parts, b0, b1);
    i0 = std::min(n, b0 * align);
    i1 = std::min(n, b1 * align);
  }
};

// Runs f(tid, nth) on every thread of a team of `nt` threads (tid = this thread's number, nth =
// the team's size), or f(0, 1) once inline when nt <= 1 or the caller is already inside a
// parallel region. Bodies split their work with (tid, nth), never with omp_get_thread_num()
// (inline inside another region that is the OUTER team's).
template <typename F>
inline void parallel_team(int nt, F&& f) {
  if (nt > 1 && !omp_in_parallel()) {
#pragma omp parallel num_threads(nt)
    f(omp_get_thread_num(), omp_get_num_threads());
  } else {
    f(0, 1);
  }
}

// f(b0, b1) over contiguous parts of [0, n): split over all OpenMP threads when n > threshold,
// else f(0, n) inline.
template <typename F>
inline void parallel_ranges(Index n, Index threshold, F&& f) {
  const int nt = n > threshold ? std::min<Index>(omp_get_max_threads(), n) : 1;
  if (nt > 1 && !omp_in_parallel()) {
#pragma omp parallel num_threads(nt)
    {
      Index b0, b1;
      split_range(n, omp_get_thread_num(), omp_get_num_threads(), b0, b1);
      if (b1 > b0) f(b0, b1);
    }
  } else if (n > 0) {
    f(Index(0), n);
  }
}

}  // namespace nn
