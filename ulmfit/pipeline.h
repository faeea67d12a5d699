// ulmfit/pipeline.h — the ULMFiT pipeline as a library call:
//   data -> splits -> [pretrain on general English] -> LM fine-tuning on HEP text -> classifier
//   (gradual unfreezing)
// driven by one Recipe (ulmfit/recipe.h). Plain values in, results out; what it does is reported
// through RunOptions::log (one line per event) and the training loops' progress bars
// (ulmfit/progress.h, off with `quiet`). The command-line tool (`train`, `pretrain`,
// `finetune-lm`, `train-classifier`) only parses flags into a Recipe and RunOptions, calls these
// and prints the result; a Python binding or a multi-process trainer calls the same functions.
//
// Every bundle written (checkpoints, lm.safetensors, classifier.safetensors, ...) stores the
// recipe under the metadata key `recipe` and RunOptions::provenance under `provenance`.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ulmfit/awd_lstm.h"
#include "ulmfit/data.h"
#include "ulmfit/recipe.h"
#include "ulmfit/splits.h"
#include "ulmfit/train.h"
#include "ulmfit/vocab.h"

namespace ulmfit {

struct RunOptions {
  std::string out_dir;       // checkpoints, curves, final model of the stage (run_pipeline: the
                             // parent of pretrain/, lm/, classifier/)
  bool resume = false;       // continue from <out_dir>/checkpoint.json (run_pipeline: per stage,
                             // where a checkpoint exists; finished stages are skipped anyway)
  bool quiet = false;        // no progress bars
  LogFn log;                 // summaries and warnings (empty: silent)
  std::int64_t max_steps = 0;  // stop each training run after this many batches (0: no limit)
  // Checkpoints inside an epoch too (TrainOptions::checkpoint_every_*; 0: at epoch ends only).
  std::int64_t checkpoint_every_steps = 0;
  double checkpoint_every_s = 0;
  std::string provenance;    // stored in the bundles; see make_provenance()
  // Where the models train: "cpu", or "cuda[:N]" (nn::get_backend; every training stage, in one
  // process; the trained models serve on the CPU).
  std::string device = "cpu";
  bool tf32 = false;  // with a CUDA device: TF32 tensor-core GEMMs (Backend::set_tf32)
  // train_classifier_from_lm: train on the train AND valid records, with no validation (the last
  // epoch's model is the result): the final model of a recipe measured by `cv`.
  bool fit_all = false;
  // Called after every epoch's validation and checkpoint with (stage, epoch, metrics).
  std::function<void(const std::string&, int, const std::map<std::string, double>&)> on_epoch;
};

// JSON provenance: {"date": UTC now, "command": command, "data": data, "tool": tool}.
std::string make_provenance(const std::string& command, const std::vector<std::string>& data,
                            const std::string& tool);

// Tokenized and numericalised LM data with its vocabulary (built on train + valid text, as fastai
// counts the whole dataframe, spec §1.4).
struct LmData {
  Vocab vocab;
  std::vector<Doc> train, valid;
};
LmData prepare_lm_data(const Sides& s, std::size_t max_vocab, std::size_t min_freq, bool quiet,
                       const LogFn& log = {});

// The AWD-LSTM LM config of the recipe (sizes, drop_mult, direction) over `vocab_size` tokens.
ModelConfig lm_config(const Recipe& r, std::size_t vocab_size);
// Initialises `lm` (seeded) and, when `pretrained` is given, copies its encoder in, matching the
// embeddings to `vocab` by token string. Throws when the sizes differ.
void init_lm(AwdLstmLM& lm, const Vocab& vocab, const std::string& pretrained, std::uint64_t seed,
             const LogFn& log = {});
// Whether the bundle at `path` (empty: none) holds a backwards model.
bool bundle_is_backwards(const std::string& path);

struct LmStageResult {
  LmResult lm;
  std::size_t vocab_size = 0, train_docs = 0, valid_docs = 0;
};
// Pretraining from scratch on `data` (valid share recipe.pretrain_valid_pct; stages
// recipe.pretrain_stages()). Writes <out_dir>/lm.safetensors.
LmStageResult pretrain_language_model(const Recipe& r, const std::vector<std::string>& data,
                                      const RunOptions& o);
// Fine-tuning on `data` (valid share recipe.valid_pct), from `pretrained` (empty: from scratch,
// then the frozen stage is skipped). Writes <out_dir>/lm.safetensors. `keep_vocab`: the
// vocabulary of `pretrained` as it is (finetune_language_model_keep_vocab below).
LmStageResult finetune_language_model(const Recipe& r, const std::vector<std::string>& data,
                                      const std::string& pretrained, const RunOptions& o,
                                      bool keep_vocab = false);

// Fine-tuning on texts already read (`sides`; labels are not read), keeping the vocabulary of
// `pretrained`: no token is added or dropped, so text outside `sides` is read exactly as the
// pretrained LM reads it (cross_validate's per-fold LM step). Sizes and direction come from the
// bundle; stages recipe.finetune_stages(true) (lm_frozen_epochs 0 for none frozen). Writes
// <out_dir>/lm.safetensors (the last epoch's); o.resume continues from <out_dir>/checkpoint.json.
LmStageResult finetune_language_model_keep_vocab(const Recipe& r, const Sides& sides,
                                                 const std::string& pretrained, const RunOptions& o);

struct ClassifierStageResult {
  ClassifierResult clas;
  std::size_t train_docs = 0, valid_docs = 0;
};
// The classifier on the encoder and vocabulary of `lm_path` (an LM, encoder or classifier
// bundle), trained on labeled `data` with gradual unfreezing. Sizes and direction come from the
// bundle; the rest from the recipe. Writes <out_dir>/classifier.safetensors (best valid macro-F1)
// and classifier-last.safetensors.
ClassifierStageResult train_classifier_from_lm(const Recipe& r, const std::string& lm_path,
                                         const std::vector<std::string>& data, const RunOptions& o);
// The same on sides already read.
ClassifierStageResult train_classifier_from_lm(const Recipe& r, const std::string& lm_path,
                                         const Sides& sides, const RunOptions& o);

struct PipelineInputs {
  std::vector<std::string> data;           // labeled JSON Lines / CSV
  std::vector<std::string> lm_data;        // extra unlabeled HEP text for LM fine-tuning
  std::vector<std::string> pretrain_data;  // general English: pretrain an LM first
  std::string pretrained;                  // or start from this pretrained LM bundle
};
struct PipelineResult {
  std::optional<LmStageResult> pretrain;   // absent: not run (or already done)
  std::optional<LmStageResult> lm;         // absent: already done (resumed run)
  ClassifierStageResult classifier;
  std::string model_path;                  // <out_dir>/classifier/classifier.safetensors
};
// The whole pipeline into <out_dir>/pretrain, <out_dir>/lm, <out_dir>/classifier. A stage whose
// final bundle exists is skipped (so a killed run re-run with resume continues where it stopped).
PipelineResult run_pipeline(const Recipe& r, const PipelineInputs& in, const RunOptions& o);

}  // namespace ulmfit
