// tests/gradcheck.h — finite-difference gradient checking in double precision.
//
// Usage: put every input and parameter you want checked in `vars` together with the analytic
// gradient your backward pass produced for it, and give a `loss` closure that re-runs the
// forward pass from the current values and returns a scalar (typically sum(dy ⊙ y) for a fixed
// random dy, whose analytic input to backward is dy itself).
// Big tensors are subsampled (max_per_var entries, chosen by a fixed-seed RNG).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "nn/rng.h"
#include "nn/tensor.h"

namespace testing_util {

struct GradVar {
  std::string name;
  nn::View<double> value;      // perturbed in place, restored afterwards
  nn::CView<double> analytic;  // d loss / d value from the backward pass
};

struct GradCheckReport {
  double max_rel_err = 0;
  double max_abs_err = 0;
  std::string worst;
  int checked = 0;
};

// Central differences with step h; error metric |a-n| / max(1e-6 + |a|, |n|) ... with an absolute
// floor so exact zeros compare sensibly.
inline GradCheckReport gradcheck(const std::function<double()>& loss, std::vector<GradVar> vars,
                                 int max_per_var = 40, double h = 1e-6, double abs_floor = 1e-7) {
  GradCheckReport r;
  nn::Rng rng(1234);
  for (auto& v : vars) {
    nn::Index n = v.value.numel();
    std::vector<nn::Index> idx;
    if (n <= max_per_var) {
      for (nn::Index i = 0; i < n; ++i) idx.push_back(i);
    } else {
      for (int k = 0; k < max_per_var; ++k) idx.push_back((nn::Index)rng.below(n));
    }
    for (nn::Index i : idx) {
      double orig = v.value[i];
      v.value[i] = orig + h;
      double lp = loss();
      v.value[i] = orig - h;
      double lm = loss();
      v.value[i] = orig;
      double num = (lp - lm) / (2 * h);
      double ana = v.analytic[i];
      double abs_err = std::fabs(num - ana);
      double rel = abs_err / std::max({std::fabs(num), std::fabs(ana), abs_floor});
      if (abs_err < abs_floor) rel = 0;
      r.checked++;
      if (rel > r.max_rel_err) {
        r.max_rel_err = rel;
        r.worst = v.name + "[" + std::to_string(i) + "] analytic=" + std::to_string(ana) +
                  " numeric=" + std::to_string(num);
      }
      r.max_abs_err = std::max(r.max_abs_err, abs_err);
    }
  }
  return r;
}

// Fill with U(lo, hi) from a seeded RNG.
inline void fill_uniform(nn::View<double> v, nn::Rng& rng, double lo = -1, double hi = 1) {
  for (nn::Index i = 0; i < v.numel(); ++i) v[i] = rng.uniform(lo, hi);
}
inline void fill_uniform(nn::View<float> v, nn::Rng& rng, double lo = -1, double hi = 1) {
  for (nn::Index i = 0; i < v.numel(); ++i) v[i] = (float)rng.uniform(lo, hi);
}

// sum(a ⊙ b)
template <typename T>
double dot(nn::CView<T> a, nn::CView<T> b) {
  double s = 0;
  for (nn::Index i = 0; i < a.numel(); ++i) s += (double)a[i] * (double)b[i];
  return s;
}

#define EXPECT_GRADCHECK(report, tol)                                              \
  do {                                                                             \
    auto _r = (report);                                                            \
    EXPECT_GT(_r.checked, 0);                                                      \
    EXPECT_LT(_r.max_rel_err, (tol)) << "worst: " << _r.worst << " (" << _r.checked \
                                     << " entries checked)";                       \
  } while (0)

}  // namespace testing_util
