// nn/schedule.h — fastai's one-cycle schedule and per-group learning rates.
//
//   fit_one_cycle(n_epoch, lr_max, div=25, div_final=1e5, pct_start=0.25, moms=(0.8,0.7,0.8))
//
// Position pos ∈ [0, 1) = fraction of the training iterations done before the current batch.
//   lr_g(pos)  = cos_sched(lr_g/div, lr_g, pos/pct)            for pos < pct
//              = cos_sched(lr_g, lr_g/div_final, (pos−pct)/(1−pct))  otherwise
//   mom(pos)   = cos_sched(m0, m1, …) then cos_sched(m1, m2, …) on the same segments
//   cos_sched(a, b, t) = a + (1 + cos(π(1 − t))) · (b − a) / 2
// Hyper-parameters are applied (OneCycle::apply) at the start of each training batch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace nn {

class Adam;

// Cosine annealing from a (t = 0) to b (t = 1).
double cos_sched(double a, double b, double t);

// fastai's pct_train before batch `it` (0-based) of epoch `epoch` (0-based):
// epoch/n_epoch + it/(n_iter·n_epoch).
double one_cycle_position(std::int64_t epoch, std::int64_t it, std::int64_t n_iter,
                          std::int64_t n_epoch);

// A learning rate as fastai accepts it: a scalar (same for every group), slice(lo, hi)
// (geometric spread lo·(hi/lo)^(i/(G−1))), or slice(hi) (hi/10 for all groups but the last).
struct LrSpec {
  enum class Kind { Scalar, Slice, SliceHi } kind = Kind::Scalar;
  double lo = 0, hi = 1e-3;

  static LrSpec scalar(double lr) { return {Kind::Scalar, lr, lr}; }
  static LrSpec slice(double lo, double hi) { return {Kind::Slice, lo, hi}; }
  static LrSpec slice_hi(double hi) { return {Kind::SliceHi, 0, hi}; }
  // Text form for command lines: "1e-3" (scalar), "1e-5:1e-3" (slice), ":1e-3" (slice(hi)).
  // Throws std::invalid_argument naming the text on anything else (including lr <= 0).
  static LrSpec parse(const std::string& text);
  std::string str() const;

  // The per-group values for G groups (fastai set_hyper + even_mults).
  std::vector<double> per_group(int n_groups) const;
};

struct OneCycle {
  std::vector<double> lr_max;  // per group
  double div = 25.0;
  double div_final = 1e5;
  double pct_start = 0.25;
  double mom_start = 0.8, mom_mid = 0.7, mom_end = 0.8;  // TextLearner's moms

  OneCycle() = default;
  OneCycle(std::vector<double> lr_max_per_group) : lr_max(std::move(lr_max_per_group)) {}
  OneCycle(const LrSpec& lr, int n_groups) : lr_max(lr.per_group(n_groups)) {}

  double lr(int group, double pos) const;
  double mom(double pos) const;
  // Sets every group's lr and the shared mom of `opt` for position `pos`.
  void apply(Adam& opt, double pos) const;
};

}  // namespace nn
