// nn/optim.h — fastai's Adam (decoupled weight decay) over a list of nn::Param.
//
// One step, for every parameter p (gradient g) of a group that is not frozen, with that group's
// hyper-parameters (lr, mom = β1, sqr_mom = β2, eps, wd) — exactly fastai 2.7's
// Adam(decouple_wd=True) callbacks weight_decay, average_grad(dampening), average_sqr_grad,
// step_stat, adam_step:
//   1. if do_wd and wd != 0:  p ← p · (1 − lr·wd)
//   2. m ← mom·m + (1 − mom)·g
//   3. v ← sqr_mom·v + (1 − sqr_mom)·g²
//   4. step ← step + 1                          (per parameter)
//   5. p ← p − lr/(1 − mom^step) · m / (sqrt(v / (1 − sqr_mom^step)) + eps)
// The bias correction uses the CURRENT (scheduled) mom, as fastai does.
//
// Frozen groups are not stepped at all (no decay, no moment update): in fastai a parameter that
// never received a gradient is skipped. (fastai would keep decaying a parameter that trained and
// was later re-frozen, with a zero gradient; the ULMFiT recipes only ever unfreeze, so we do not
// model that case.)
//
// Moments (m, v) live in one arena, allocated once. freeze_to()/clear_state() reset m, v and the
// step counters, like Learner.freeze_to. save_state()/load_state() serialise everything a resumed
// run needs (hyper-parameters, frozen flags, step counters, moments) to a flat byte buffer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nn/backend.h"
#include "nn/elementwise.h"
#include "nn/param.h"
#include "nn/tensor.h"

namespace nn {

struct AdamHyper {
  double lr = 1e-3;
  double mom = 0.9;       // β1 (overwritten every batch by the one-cycle schedule)
  double sqr_mom = 0.99;  // β2
  double eps = 1e-5;
  double wd = 0.01;       // decoupled weight decay (fastai Learner passes 1e-7 LM / 1e-6 classifier)
  bool frozen = false;
};

// The per-step scalars of one parameter tensor (nn::ew::adam_update applies them).
ew::AdamScalars adam_scalars(const AdamHyper& h, std::int64_t step, bool do_wd);

class Adam {
 public:
  // `params` are borrowed views (their storage must outlive the optimizer). Every p.group must be
  // in [0, n_groups). `defaults` initialise every group's hyper-parameters.
  Adam(std::vector<Param> params, int n_groups, const AdamHyper& defaults = AdamHyper{});

  int n_groups() const { return (int)hyper_.size(); }
  const std::vector<Param>& params() const { return params_; }
  AdamHyper& group(int g);
  const AdamHyper& group(int g) const;

  // Setters over all groups (one value each) or per group (a vector of n_groups values).
  void set_lr(double lr);
  void set_lrs(const std::vector<double>& lrs);
  void set_mom(double mom);
  void set_wd(double wd);
  void set_wds(const std::vector<double>& wds);

  // fastai Learner.freeze_to(n): groups [0, n) frozen, [n, G) trainable (n < 0 counts from the
  // end: -1 = only the last group trains), then clear_state(). freeze() = freeze_to(-1),
  // unfreeze() = freeze_to(0).
  void freeze_to(int n);
  void freeze() { freeze_to(-1); }
  void unfreeze() { freeze_to(0); }
  bool frozen(int g) const { return group(g).frozen; }
  // First trainable group (fastai's frozen_idx).
  int frozen_idx() const;

  // Zero m, v and every step counter (hyper-parameters and frozen flags are kept).
  void clear_state();

  // The backend whose adam_step op runs the update (its memory must hold the parameters).
  // A backend with its own memory (Backend::placement()) gets the moments there, zeroed with the
  // step counters: call it before the first step. exp_avg()/exp_avg_sq() are then device views.
  void set_backend(Backend& b);
  Backend& backend() const { return *be_; }
  // One optimizer step over every parameter of every non-frozen group, reading p.grad.
  void step();
  // Zero the gradients of the parameters of non-frozen groups (fastai: only params with a grad).
  void zero_grad();

  // Step counter of parameter i (0 before its first step or after clear_state()).
  std::int64_t step_count(std::size_t i) const { return steps_.at(i); }
  View<float> exp_avg(std::size_t i) const { return m_.at(i); }
  View<float> exp_avg_sq(std::size_t i) const { return v_.at(i); }

  // Whole optimizer state to/from a flat little-endian buffer. load_state() checks the magic,
  // version, group count and every parameter's name and size, and throws std::invalid_argument
  // naming the first mismatch (so a --resume with another model fails clearly).
  std::vector<std::uint8_t> save_state() const;
  void load_state(const std::uint8_t* data, std::size_t size);
  void load_state(const std::vector<std::uint8_t>& buf) { load_state(buf.data(), buf.size()); }

 private:
  void step_param(std::size_t i, const AdamHyper& h);
  void reserve_state(Placement* place);
  Backend* be_ = &cpu_backend();

  std::vector<Param> params_;
  std::vector<AdamHyper> hyper_;
  Arena<float> arena_;
  std::vector<View<float>> m_, v_;
  std::vector<std::int64_t> steps_;
};

}  // namespace nn
