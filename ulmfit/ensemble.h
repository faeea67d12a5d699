// ulmfit/ensemble.h — several classifiers in one bundle, whose predictions average the members'
// class probabilities (the ULMFiT paper's forward + backward ensemble; bundle format version 2,
// see io/bundle.h). The members must share the vocabulary and labels; each keeps its own sizes and
// reading direction. An input that is itself an ensemble contributes all of its members.
// extract_member() does the reverse: member K of an ensemble as a single classifier bundle.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "io/bundle.h"
#include "ulmfit/splits.h"

namespace ulmfit {

// Bundle contents ready for io::write_bundle, with what its tensor pointers point into: the
// source bundles (mapped files) and half-precision copies. Keep it alive until written.
struct BundleBuild {
  std::vector<io::Bundle> sources;
  std::deque<std::vector<std::uint16_t>> half_store;
  io::BundleContents contents;
  std::size_t members = 0;
};

// The ensemble of `inputs` (classifier bundles; two or more members in all). `half`: every
// float32 tensor rounded to IEEE half. Throws std::runtime_error naming the offending input
// (not a classifier, another vocabulary or labels, fewer than two members). A member with
// another temperature is logged as a warning.
BundleBuild make_ensemble(const std::vector<std::string>& inputs, bool half, const LogFn& log = {});

// Member k (0 = the first) of the bundle at `input`, as a version-1 classifier bundle (no class
// weights). Throws std::runtime_error when k is out of range.
BundleBuild extract_member(const std::string& input, long long k, bool half);

}  // namespace ulmfit
