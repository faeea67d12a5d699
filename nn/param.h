// nn/param.h — a trainable parameter as seen by optimizers, checkpoints and model files.
//
// Models keep their parameter values, gradients and optimizer moments in arenas and describe
// them with a list of Param. The names are fastai's state_dict keys (e.g.
// "0.rnns.0.weight_hh_l0_raw"), so that a model maps 1:1 to a fastai checkpoint.
#pragma once

#include <string>
#include <vector>

#include "nn/tensor.h"

namespace nn {

struct Param {
  std::string name;     // fastai state_dict key
  View<float> value;    // the weights
  View<float> grad;     // same shape; backward passes ACCUMULATE (+=) into it
  int group = 0;        // layer group (fastai splitter): discriminative lr, freezing
  bool do_wd = true;    // false for BatchNorm params and nn.Linear biases (fastai's rule)
};

// Gradient semantics for every layer in nn/ (stated once, here):
//  * gradients w.r.t. parameters ACCUMULATE (+=): a tied weight gets both contributions;
//    callers zero them (zero_grads) once per optimizer step;
//  * gradients w.r.t. inputs are WRITTEN (=), unless a function's comment says otherwise.
inline void zero_grads(const std::vector<Param>& ps) {
  for (auto& p : ps) p.grad.zero();
}

}  // namespace nn
