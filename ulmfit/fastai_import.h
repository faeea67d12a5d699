// ulmfit/fastai_import.h — turn fastai AWD-LSTM checkpoints into a model bundle (io/bundle.h).
//
//   auto m = ulmfit::import_weights("lstm_fwd.pth", "itos_wt103.pkl", &inspire_itos);
//   io::write_bundle("lm.safetensors", m.contents(provenance));
//   auto c = ulmfit::import_learner("classifier.h5");         // whole exported Learner
//
// What it does (spec §7.3, §7.7, §7.8):
//  * reads the state dict with io/torch_file.h (zip or legacy, `{'model': sd}` unwrapped);
//  * drops fastai v1's `...module.weight_hh_l0` working copies exactly as fastai's
//    `clean_raw_keys` does (a key K is dropped when K with its LAST `module` path component
//    removed, plus `_raw`, is also a key);
//  * infers the model from the keys and shapes: "lm" (`0.encoder.weight`, `1.decoder.*`),
//    "encoder" (keys without `0.`), "classifier" (`0.module.*`, `1.layers.*`); emb_sz and vocab
//    size from the embedding, n_layers from `rnns.N`, n_hid from layer 0, the head sizes from the
//    Linear weights; then checks every key against io::expected_tensors (unexpected, missing or
//    mis-shaped keys are errors naming the key, the expected and the actual shape);
//  * tied weights (`encoder_dp.emb.weight`, `1.decoder.weight`) must equal `encoder.weight`
//    (an untied decoder is kept as its own tensor with tie_weights = false);
//  * optionally matches the embedding to another vocabulary like fastai's `match_embeds`.
// Float32 contiguous tensors are not copied: the bundle is written straight from the mapped
// checkpoint (a 220 MB WT103 file imports in bounded memory).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/bundle.h"
#include "io/torch_file.h"

namespace ulmfit {

// The keys fastai's clean_raw_keys removes from `names` (in input order).
std::vector<std::string> raw_keys_to_drop(const std::vector<std::string>& names);

// fastai's match_embeds on plain arrays: `old_emb` is [V_old, E] row-major, `old_bias` has V_old
// entries or is empty. For each new token: the row (and bias) of its index in the old vocab,
// else the mean row (mean bias). Like fastai (a dict built from the list), a token that occurs
// several times in the old vocab maps to its LAST occurrence. Means are computed in double and
// rounded to float.
struct MatchedEmbeddings {
  std::vector<float> emb;   // [V_new, E]
  std::vector<float> bias;  // [V_new] (empty if old_bias was empty)
  std::int64_t matched = 0; // new tokens found in the old vocab
};
MatchedEmbeddings match_embeds(const float* old_emb, std::int64_t v_old, std::int64_t emb_sz,
                               const float* old_bias, const std::vector<std::string>& old_vocab,
                               const std::vector<std::string>& new_vocab);

// Config implied by a (cleaned) state dict's names and shapes. Throws io::FormatError naming
// `source` when it is not a fastai AWD-LSTM state dict.
io::ModelConfig infer_config(const io::torch::StateDict& sd);

// A model ready to be written as a bundle. Holds the source checkpoint (tensor data may point
// into its mapping) and any converted/matched buffers.
struct ImportedModel {
  io::ModelConfig config;
  std::vector<std::string> vocab;
  std::vector<std::string> labels;        // classifier only
  std::optional<double> temperature;      // classifier: 0.25 (INSPIRE)
  std::vector<std::string> notes;         // what was dropped/matched/converted, for provenance
  std::vector<io::TensorOut> tensors;     // fastai keys (aliases omitted), data kept alive below
  std::int64_t matched_tokens = -1;       // with a target vocab: tokens found in the old vocab

  // Bundle contents (views into this object) with the given provenance text.
  io::BundleContents contents(const std::string& provenance) const;

  // keep-alive
  io::torch::StateDict source;
  std::vector<std::shared_ptr<std::vector<float>>> owned_f32;
  std::vector<std::shared_ptr<std::int64_t>> owned_i64;
};

// From a state dict in memory. `vocab` must have V entries (V from the embedding) unless
// `target_vocab` is given, in which case `vocab` is the OLD vocab (len V_old) and the model is
// re-indexed to `target_vocab`.
ImportedModel import_state_dict(io::torch::StateDict sd, const std::vector<std::string>& vocab,
                                const std::vector<std::string>* target_vocab = nullptr);

// `import-fastai --weights W --itos I [--target-vocab T]`.
ImportedModel import_weights(const std::string& weights_path, const std::string& itos_path,
                             const std::string& target_vocab_path = "");

// `import-fastai --learner L [--itos I]`: a whole exported fastai Learner (INSPIRE
// classifier.h5). The vocab comes from the learner's Numericalize transform, or from `itos_path`
// (then it must have V entries and, if the learner has a vocab too, be identical to it).
// Labels: the learner's class names, where INSPIRE's "0","1","2" become rejected/non_core/core.
ImportedModel import_learner(const std::string& learner_path, const std::string& itos_path = "");

}  // namespace ulmfit
