// tests/train_test_helpers.h — options for the tests that kill a training run and resume it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>

#include "ulmfit/train.h"

// Quiet, seed 11, checkpoints inside epochs every `every_steps` steps and/or `every_s` seconds
// (0: at epoch ends only), and a kill (a throw) right after step `kill_at` (-1: none).
inline ulmfit::TrainOptions kill_options(const std::filesystem::path& dir, bool resume,
                                         std::int64_t every_steps, double every_s,
                                         std::int64_t kill_at) {
  ulmfit::TrainOptions o;
  o.out_dir = dir.string();
  o.quiet = true;
  o.resume = resume;
  o.seed = 11;
  o.checkpoint_every_steps = every_steps;
  o.checkpoint_every_s = every_s;
  o.on_step = [kill_at](std::int64_t step) {
    if (step == kill_at) throw std::runtime_error("killed");
  };
  return o;
}
