// ulmfit/recipe.h — every hyperparameter of the ULMFiT pipeline in ONE plain value.
//
// A default-constructed Recipe is INSPIRE's original run (fastai 2.7, see
// ../shared/spec/ulmfit-reference.md §0, §3, §5 and the "Recipe" table of docs/pipeline.md):
// AWD-LSTM 400/1152/3, vocabulary 60000 words (min count 2), LM fine-tuning bs 64, bptt 100,
// drop_mult 0.7, wd 1e-7, fit_one_cycle(1, 1e-2) frozen then (15, 1e-3) unfrozen; classifier bs 128,
// bptt 72, max_len 1440, drop_mult 0.5, wd 1e-6, gradual unfreezing from 2e-2 with 15 last epochs.
// Recipe::from_preset() gives the smaller presets ("small", "tiny") of ulmfit/train.h.
//
// The pipeline (ulmfit/pipeline.h) is driven by a Recipe, `train --help` prints it, and every
// bundle the pipeline writes stores it as JSON under the metadata key `recipe` (see io/bundle.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/bundle.h"
#include "ulmfit/train.h"

namespace ulmfit {

struct Recipe {
  // Model sizes ("original": fastai's AWD-LSTM).
  std::string preset = "original";  // the preset the sizes/epochs came from (informational)
  std::int64_t emb_sz = 400, n_hid = 1152, n_layers = 3;
  bool backwards = false;           // read every document last token first

  // Data.
  std::uint64_t seed = 42;          // data split, order, dropout masks, init
  double valid_pct = 0.2;           // share of records WITHOUT a `split` that go to validation
  double pretrain_valid_pct = 0.05; // the same for the general-English pretraining corpus
  std::size_t max_vocab = 60000, min_freq = 2;

  // Language model (pretraining and fine-tuning share batch shape, dropout and wd).
  std::size_t lm_bs = 64, lm_bptt = 100;
  double lm_drop_mult = 0.7, lm_wd = 1e-7;
  int pretrain_epochs = 10;
  double pretrain_lr = 5e-3;
  int lm_frozen_epochs = 1;         // only with a pretrained LM (nothing to freeze otherwise)
  double lm_frozen_lr = 1e-2;
  int lm_epochs = 15;
  double lm_lr = 1e-3;

  // Classifier (gradual unfreezing: lr, lr/2, lr/4, lr/20; see classifier_stages()).
  std::size_t clas_bs = 128;
  std::int64_t clas_bptt = 72, clas_max_len = 1440;
  double clas_drop_mult = 0.5, clas_wd = 1e-6, clas_lr = 2e-2;
  int clas_epochs = 15;             // epochs of the last (unfrozen) stage

  // The original recipe with a preset's sizes, vocabulary, batch shapes and epochs.
  // Throws std::invalid_argument listing the known names.
  static Recipe from_preset(const std::string& name);

  // Every field, by name. from_json takes a (possibly partial) object: absent fields keep the
  // defaults of `base`; an unknown field, a wrong type or an out-of-range value throws
  // std::invalid_argument naming the field.
  nlohmann::json to_json() const;
  static Recipe from_json(const nlohmann::json& j, const Recipe& base);
  static Recipe from_json(const nlohmann::json& j);
  static Recipe from_json_text(const std::string& text, const Recipe& base);
  static Recipe from_json_text(const std::string& text);

  // Range checks (positive sizes and batch shapes, lrs > 0, epochs >= 0, ps in [0, 1), ...).
  // Throws std::invalid_argument naming the field.
  void validate() const;

  // The LM / classifier stage lists this recipe runs.
  std::vector<Stage> pretrain_stages() const;
  // `with_frozen`: the frozen stage runs only when starting from a pretrained LM.
  std::vector<Stage> finetune_stages(bool with_frozen) const;
  std::vector<Stage> classifier_stages() const;

  // A human-readable table "name  value  meaning" (for `train --help`).
  std::string describe() const;

  bool operator==(const Recipe& o) const { return to_json() == o.to_json(); }
  bool operator!=(const Recipe& o) const { return !(*this == o); }
};

// The metadata key under which bundles store the recipe that made them.
constexpr const char* kRecipeMetadataKey = "recipe";

// The recipe a bundle was trained with; nullopt for bundles without one (imported from fastai,
// made by an older version, ensembles). Throws std::invalid_argument naming the bundle when the
// stored recipe is not valid.
std::optional<Recipe> recipe_of(const io::Bundle& b);

}  // namespace ulmfit
