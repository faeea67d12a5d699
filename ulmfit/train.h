// ulmfit/train.h — ULMFiT training recipes: LM pretraining / fine-tuning and the classifier with
// gradual unfreezing, as INSPIRE's original runs them (spec §0, §3, §5), with what users expect of
// long training: progress with ETA, tokens/s and loss, a validation line per epoch, a checkpoint
// each epoch, exact --resume, --seed, and training curves as CSV + SVG.
//
// Checkpoints (in TrainOptions::out_dir):
//   ckpt-<stage>-<epoch>.safetensors   model bundle after that epoch
//   ckpt-<stage>-<epoch>.optim         optimizer state (nn::Adam::save_state)
//   ckpt-<stage>-<epoch>-b<batch>.*    the same inside an epoch (TrainOptions::checkpoint_every_*),
//                                      with .carry: the state carried from batch to batch
//   checkpoint.json                    the pointer, written LAST and atomically: stage, epoch, RNG
//                                      and loader states, best score so far
//   curves.csv, curves.svg             training curves
// A run killed at any moment resumes from the last checkpoint.json: the same batches, dropout
// masks and optimizer state as an uninterrupted run (bit-identical on the same machine/threads).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "io/bundle.h"
#include "nn/schedule.h"
#include "ulmfit/awd_lstm.h"
#include "ulmfit/classifier_model.h"
#include "ulmfit/metrics.h"
#include "ulmfit/curves.h"
#include "ulmfit/data.h"
#include "ulmfit/vocab.h"

namespace dist {
class Communicator;  // dist/comm.h
}

namespace ulmfit {

// Model sizes. "original" is fastai's AWD-LSTM (400/1152/3, 60000 words); the smaller ones train
// on a laptop CPU.
struct Preset {
  std::string name;
  std::int64_t emb_sz, n_hid, n_layers;
  std::size_t max_vocab, min_freq;
  std::size_t lm_bs, lm_bptt, clas_bs;
  int pretrain_epochs, lm_frozen_epochs, lm_epochs, clas_last_epochs;
};
// "original", "small" (the embedded default model's size), "tiny" (tests: seconds).
// Throws std::invalid_argument listing the known names.
Preset preset(const std::string& name);
std::vector<std::string> preset_names();

// One fit_one_cycle call of a recipe.
struct Stage {
  std::string name;     // e.g. "lm-frozen", "clas-2"
  int epochs = 1;
  nn::LrSpec lr = nn::LrSpec::scalar(1e-3);
  int freeze_to = 0;    // fastai freeze_to(n): 0 = all trainable, -1 = last group only, -2 ...
};

struct TrainOptions {
  std::string out_dir;           // checkpoints, curves, final model
  std::uint64_t seed = 42;
  bool resume = false;
  bool quiet = false;
  double wd = 1e-7;              // LM 1e-7, classifier 1e-6
  double progress_interval_s = 10;  // plain-line interval when not on a TTY
  std::string provenance;        // stored in the bundles (command line, data)
  // Further metadata stored in every bundle written (e.g. "recipe", see ulmfit/recipe.h).
  std::map<std::string, std::string> metadata;
  // Called after every epoch's validation and checkpoint with (stage, epoch, metrics).
  std::function<void(const std::string&, int, const std::map<std::string, double>&)> on_epoch;
  // Classifier: no validation documents is allowed (no validation metrics, no best epoch: the
  // final model is the last epoch's). Without it, empty validation data is an error.
  bool no_validation = false;
  // Stop after this many training batches in total (0 = no limit; for smoke tests / --max-steps).
  std::int64_t max_steps = 0;
  // Checkpoints inside an epoch too, for epochs longer than a run may last (also under mpirun:
  // the ranks' rows of the carried state are gathered into one file, rank 0's clock decides):
  // after every `checkpoint_every_steps` training steps (0: never) and whenever
  // `checkpoint_every_s` seconds have passed since the last checkpoint (0: never). --resume
  // continues from one exactly: the loader's place, the dropout RNG, the optimizer, the epoch's
  // loss so far and the hidden state an LM carries from batch to batch are saved with it.
  std::int64_t checkpoint_every_steps = 0;
  double checkpoint_every_s = 0;
  // Called after every training step with the global step count (a throw is a kill there: tests).
  std::function<void(std::int64_t)> on_step;
  // Data-parallel ranks (docs/distributed.md); nullptr: dist::world(), i.e. one process unless
  // started by mpirun in an MPI build. Each rank takes its contiguous share of every batch's
  // rows, one all-reduce averages the gradients per step; rank 0 alone prints and writes files.
  dist::Communicator* comm = nullptr;
};

// The LM recipe's stages. Fine-tuning (INSPIRE): fit_one_cycle(1, 1e-2) frozen, then
// fit_one_cycle(15, 1e-3) unfrozen. Pretraining from scratch: one unfrozen stage.
std::vector<Stage> lm_finetune_stages(int frozen_epochs = 1, double frozen_lr = 1e-2,
                                      int epochs = 15, double lr = 1e-3);
std::vector<Stage> lm_pretrain_stages(int epochs, double lr = 5e-3);
// The classifier's gradual unfreezing (spec §5): (1, 2e-2) head; freeze_to(-2) (1, slice(1e-2/2.6^4,
// 1e-2)); freeze_to(-3) (1, slice(5e-3/2.6^4, 5e-3)); unfreeze (last_epochs, slice(1e-3/2.6^4, 1e-3)).
std::vector<Stage> classifier_stages(int last_epochs = 15, double base_lr = 2e-2);

struct LmResult {
  double valid_loss = 0, valid_accuracy = 0;
  std::int64_t steps = 0;
  std::string model_path;  // final bundle
};

// Trains `lm` on `train` documents (numericalised, xxbos first), validates on `valid` after each
// epoch, runs `stages` in order. `vocab` is stored in the bundles.
LmResult train_language_model(AwdLstmLM& lm, const Vocab& vocab, const std::vector<Doc>& train,
                              const std::vector<Doc>& valid, std::size_t bs, std::size_t bptt,
                              const std::vector<Stage>& stages, const TrainOptions& opt);

// Mean cross-entropy and next-token accuracy of `lm` on `docs` (eval mode, fastai's valid layout).
// With `comm` of several ranks, each rank evaluates its rows of every batch and the sums are
// all-reduced (every rank gets the global values; docs/distributed.md).
std::pair<double, double> evaluate_language_model(AwdLstmLM& lm, const std::vector<Doc>& docs,
                                                  std::size_t bs, std::size_t bptt,
                                                  dist::Communicator* comm = nullptr);

// Bundle contents for an LM (kind "lm", fastai LM keys).
io::BundleContents lm_bundle(AwdLstmLM& lm, const Vocab& vocab, const std::string& provenance);
// Loads an LM bundle's weights into `lm` (config must match; throws naming the first mismatch).
void load_lm_weights(AwdLstmLM& lm, const io::Bundle& b);

// ---------------------------------------------------------------------------------------------
// Classifier
// ---------------------------------------------------------------------------------------------
struct ClassifierResult {
  double valid_accuracy = 0, valid_macro_f1 = 0;
  double best_macro_f1 = -1;
  std::string best_stage;
  int best_epoch = -1;
  std::int64_t steps = 0;
  std::string model_path;       // the selected model (best valid macro-F1): classifier.safetensors
  std::string last_model_path;  // after the last epoch: classifier-last.safetensors
};

// Gradual unfreezing over `stages` on (train, train_labels); after every epoch the model is
// evaluated on (valid, valid_labels) one document at a time (exactly the predict path) and the
// epoch with the best macro-F1 is kept as the selected model.
ClassifierResult train_classifier(ClassifierModel& m, const Vocab& vocab, const std::vector<Doc>& train,
                            const std::vector<std::int32_t>& train_labels,
                            const std::vector<Doc>& valid,
                            const std::vector<std::int32_t>& valid_labels, std::size_t bs,
                            const std::vector<Stage>& stages, const TrainOptions& opt);

// Predicted class of every document (eval mode, one by one, OpenMP over documents).
// With `comm` of several ranks, each rank classifies its share and every rank gets all.
std::vector<int> classify_documents(const ClassifierModel& m, const std::vector<Doc>& docs,
                                    dist::Communicator* comm = nullptr);

// Bundle contents for a classifier (kind "classifier", labels, temperature 0.25).
io::BundleContents classifier_bundle(ClassifierModel& m, const Vocab& vocab,
                                     const std::string& provenance);
// A classifier's config (fastai's head, dropouts times drop_mult, bptt 72 / max_len 1440) over an
// encoder with `encoder`'s sizes and direction: what load_encoder_into_classifier fills.
ModelConfig classifier_config_over(const ModelConfig& encoder, std::int64_t vocab_size,
                                   double drop_mult);
// Copies an LM / encoder bundle's encoder weights into the classifier (sizes must match).
void load_encoder_into_classifier(ClassifierModel& m, const io::Bundle& lm_or_encoder);

}  // namespace ulmfit
