// ulmfit/input_check.h — everything a training run reads, checked before any training starts
// (issue 20 item 17): a bad label found after hours of LM fine-tuning is hours lost.
#pragma once

#include <string>
#include <vector>

namespace ulmfit {

struct TrainingInputs {
  std::vector<std::string> labeled;    // labeled JSON Lines / CSV: every record needs a good label
  std::vector<std::string> unlabeled;  // extra LM text: must be readable
  std::string pretrained;              // an LM bundle to start from (empty: none)
  std::string lm;                      // a fine-tuned LM / classifier bundle (empty: none)
  std::string out_dir;                 // must be (or become) a writable directory
};

// Reads every labeled file completely and the others' first bytes; loads the bundles (which
// validates them, NaN/Inf weights included); creates out_dir. Throws std::runtime_error listing
// the problems found (up to 10, each "file:line: what"), or returns when all is well. Records
// with a missing, unknown or out-of-range label are errors here, not skipped.
void check_training_inputs(const TrainingInputs& in);

}  // namespace ulmfit
