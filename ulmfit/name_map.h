// ulmfit/name_map.h — THE map between a model's tensors and the names in bundles / fastai
// state_dicts (the same names: a bundle uses fastai's keys).
//
// Two pieces, one each:
//   - the TABLE of names: io::expected_tensors(config, member_prefix) (io/bundle.h) lists every
//     tensor a bundle of that config holds, with shapes and tied aliases, for every kind and
//     ensemble member. The bundle writer and loader check files against it, fastai import copies
//     the state_dict entries it lists, ensembles rename members along it.
//   - the MAP from a model's tensors() to those names (below), used by every model load and save:
//     lm_bundle, classifier_bundle, load_lm_weights, load_encoder_into_classifier, the pretrained
//     warm start, ClassifierModel::from_bundle, and so every checkpoint.
//
// A model's tensors() keys are fastai's keys of that model kind: an LM's are "0.<enc>" and
// "1.decoder.bias", a classifier's "0.module.<enc>" and "1.layers.<k>.…", an encoder's "<enc>"
// (e.g. <enc> = "rnns.0.weight_hh_l0_raw"). A bundle of kind K holds the encoder under
// io::ModelConfig::encoder_prefix() ("0.", "0.module.", ""), plus K's own head. So the encoder
// part maps between any two kinds; a head maps only to a bundle of its own kind.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "io/bundle.h"
#include "ulmfit/awd_lstm.h"

namespace ulmfit {

// The encoder prefix of a model / bundle kind: "lm" -> "0.", "classifier" -> "0.module.",
// "encoder" -> "". Throws std::invalid_argument on another kind.
std::string encoder_prefix_of(const std::string& kind);

// The name under which a bundle of kind `bundle_kind` stores the tensor `key` of a model of kind
// `model_kind`, or nullopt when such a bundle has no such tensor (an LM's decoder bias in an
// encoder or classifier bundle, a classifier head in an LM bundle).
std::optional<std::string> bundle_name(const std::string& model_kind, const std::string& key,
                                       const std::string& bundle_kind);
// The reverse: the model key of bundle tensor `name`, or nullopt when the model has none.
std::optional<std::string> model_key(const std::string& bundle_kind, const std::string& name,
                                     const std::string& model_kind);

// Copies every tensor of `dst` (a `model_kind` model's tensors()) from bundle `b` by the map,
// checking shapes (throws std::invalid_argument naming the tensor). Tensors the bundle's kind does
// not have are left as they are, as are those for which `skip(key)` is true.
void load_tensors(const std::vector<NamedTensor<float>>& dst, const std::string& model_kind,
                  const io::Bundle& b, const std::function<bool(const std::string&)>& skip = {});

// The tensors of a `model_kind` model as a bundle of kind `bundle_kind` names them (views into
// the model: keep it alive until written). Tensors such a bundle does not hold are left out.
std::vector<io::TensorOut> bundle_tensors(const std::vector<NamedTensor<float>>& src,
                                          const std::string& model_kind,
                                          const std::string& bundle_kind);

}  // namespace ulmfit
