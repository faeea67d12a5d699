// tests/train_test_helpers.h — options for the tests that kill a training run and resume it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "nn/rng.h"
#include "nn/tensor.h"
#include "ulmfit/data.h"
#include "ulmfit/train.h"
#include "ulmfit/vocab.h"

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

// A classifier batch as the loader pads it: rows of lens[b] tokens, longest first; each front-padded
// by whole bptt chunks and end-padded to the longest row rounded up to a chunk (pad = 1); the
// tokens drawn uniformly from [first, first + count).
inline nn::Tensor<std::int32_t> padded_batch(const std::vector<nn::Index>& lens, nn::Index bptt,
                                             std::int32_t first, std::uint64_t count, nn::Rng& r) {
  const nn::Index sl = (lens[0] + bptt - 1) / bptt * bptt;
  nn::Tensor<std::int32_t> t({(nn::Index)lens.size(), sl});
  for (nn::Index b = 0; b < (nn::Index)lens.size(); ++b) {
    const nn::Index front = (sl - lens[b]) / bptt * bptt;
    for (nn::Index i = 0; i < sl; ++i)
      t[b * sl + i] = i < front || i >= front + lens[b] ? 1 : first + (std::int32_t)r.below(count);
  }
  return t;
}

// A tiny problem for the training-loop tests: random documents of 5..24 tokens over a vocabulary
// of 40 ("t0".."t39"; xxbos = 2, words from 9), and a 2-layer model (emb 8, hid 12).
struct TinyData {
  std::vector<ulmfit::Doc> train, valid;
  ulmfit::Vocab vocab;
  TinyData(std::uint64_t seed, std::size_t n_train, std::size_t n_valid)
      : train(n_train), valid(n_valid) {
    nn::Rng rng(seed);
    for (auto* set : {&train, &valid})
      for (auto& d : *set) {
        d.push_back(2);
        int len = 5 + (int)rng.below(20);
        for (int i = 0; i < len; ++i) d.push_back(9 + (int)rng.below(31));
      }
    std::vector<std::string> itos;
    for (int i = 0; i < 40; ++i) itos.push_back("t" + std::to_string(i));
    vocab = ulmfit::Vocab::from_itos(itos);
  }
  static ulmfit::ModelConfig sized(ulmfit::ModelConfig c) {
    c.emb_sz = 8, c.n_hid = 12, c.n_layers = 2;
    return c;
  }
};

