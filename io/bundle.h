// io/bundle.h — the model bundle: ONE safetensors file holding a whole model.
//
// Metadata (all values are strings, as safetensors requires):
//   format       "inspire-classifier-bundle/1"  (name/version; a newer version is refused with a
//                clear message)
//   config       JSON object, see ModelConfig (io/model_config.h): kind "lm" | "classifier" |
//                "encoder", sizes, dropouts, bptt, max_len, pad_idx, head
//   vocab        JSON array of token strings in id order (len == config.vocab_size)
//   labels       JSON array of class names in class-index order (classifier; optional otherwise)
//   temperature  decimal string, e.g. "0.25" (optional)
//   provenance   free text or JSON: what it was made from, when, by which command (optional)
//   class_weights  JSON array of n_classes positive numbers (optional): a prior correction; a
//                classifier's prediction uses p_c * w_c / sum_j p_j * w_j instead of p_c (written
//                by `calibrate`)
//   ensemble     (format version 2) JSON array, one object per ADDITIONAL classifier of an
//                ensemble: {"prefix": "ensemble.<k>.", "config": {...}} for k = 1, 2, ...; member
//                k's tensors are its fastai keys with that prefix. Member 0 is the top-level
//                config and tensors. Every member is a classifier with the bundle's vocab and
//                labels; a prediction averages the members' class probabilities (the ULMFiT
//                paper's forward + backward ensemble). A bundle without it is version 1.
//   aliases      JSON object {alias name: stored name} for tied weights (written by the writer)
//   recipe       JSON object (optional): the ulmfit::Recipe the model was trained with (written by
//                the training pipeline, ulmfit/recipe.h; bundles without it load as before)
//   any other key is kept and ignored.
//
// Tensors are named by fastai's state_dict keys (see expected_tensors()). Tied weights are
// stored ONCE: fastai registers the embedding twice (`encoder.weight` and
// `encoder_dp.emb.weight`) and ties the LM decoder (`1.decoder.weight`) to it. The bundle stores
// only `<prefix>encoder.weight`; the other names are listed in the `aliases` metadata and
// Bundle::tensor() resolves them to the same memory. BatchNorm `num_batches_tracked` counters
// are optional I64 scalars; every other tensor is F32, or F16 (IEEE half: a bundle half the size,
// e.g. `ensemble --f16`; widened to float32 once at load, so computing is unchanged).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/model_config.h"
#include "io/safetensors.h"
#include "nn/tensor.h"

namespace io {

constexpr const char* kBundleFormatName = "inspire-classifier-bundle";
constexpr int kBundleFormatVersion = 2;  // the newest this build reads and writes
constexpr std::size_t kMaxEnsembleMembers = 16;

struct ExpectedTensor {
  std::string name;
  nn::Shape shape;
  bool required = true;          // false: may be absent (num_batches_tracked)
  bool is_i64 = false;           // num_batches_tracked
  std::string alias_of;          // non-empty: a tied alias of that (stored) tensor
};

// Every state_dict key fastai's model has for this config, in fastai's state_dict order,
// aliases included (e.g. lm: 0.encoder.weight, 0.encoder_dp.emb.weight (alias),
// 0.rnns.0.weight_hh_l0_raw, 0.rnns.0.module.weight_ih_l0, ..., 1.decoder.weight (alias if
// tie_weights), 1.decoder.bias).
// `prefix` is put before every name (and alias target): an ensemble member's tensors.
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& cfg, const std::string& prefix = "");

// One classifier of a bundle: member 0 has prefix "" and the bundle's config.
struct BundleMember {
  std::string prefix;
  ModelConfig config;
};
// The prefix of ensemble member k (k >= 1): "ensemble.<k>.".
std::string ensemble_prefix(std::size_t k);

// Total number of unique trainable floats (tied weights counted once; BN running stats and
// counters excluded), as spec §8.1 counts them.
std::int64_t parameter_count(const ModelConfig& cfg);

// What to write.
struct BundleContents {
  ModelConfig config;
  std::vector<std::string> vocab;
  std::vector<std::string> labels;     // classifier: required (size n_classes)
  std::optional<double> temperature;
  std::vector<double> class_weights;   // empty: none (see the `class_weights` metadata)
  std::string provenance;
  std::map<std::string, std::string> extra_metadata;
  // Further classifiers of an ensemble (members 1..): prefix ensemble_prefix(k) and their config;
  // their tensors are in `tensors` under prefixed names. Empty for a single model (version 1).
  std::vector<BundleMember> extra_members;
  // Named tensors (fastai keys). Alias names may be given too: they must then hold exactly the
  // same values as the stored tensor (checked) and are not written twice.
  std::vector<TensorOut> tensors;
};

// Validates (config, vocab size, labels, every expected tensor present with the right shape and
// dtype, no unexpected names) and writes atomically. Throws std::invalid_argument naming the
// problem.
void write_bundle(const std::string& path, const BundleContents& b);
std::string serialize_bundle(const BundleContents& b);

// A loaded, validated bundle. F32 tensor views point into the mapping (zero-copy). Loading refuses
// (FormatError naming the tensor or key) a NaN or infinite weight and duplicate label names.
class Bundle {
 public:
  static Bundle load(const std::string& path);
  // A bundle in memory (e.g. embedded in the binary); the buffer must outlive the Bundle unless
  // copy is true.
  static Bundle from_memory(const void* data, std::size_t size, const std::string& label,
                            bool copy = false);
  // Bytes that map a file read-only (the model embedded in the executable): see
  // SafetensorsFile::from_file_image.
  static Bundle from_file_image(const void* data, std::size_t size, const std::string& label);

  const ModelConfig& config() const { return config_; }
  // Every classifier in the bundle: {"" , config()} first, then the ensemble's further members.
  const std::vector<BundleMember>& members() const { return members_; }
  const std::vector<std::string>& vocab() const { return vocab_; }
  const std::vector<std::string>& labels() const { return labels_; }
  std::optional<double> temperature() const { return temperature_; }
  const std::vector<double>& class_weights() const { return class_weights_; }  // empty: none
  const std::string& provenance() const { return provenance_; }
  const std::map<std::string, std::string>& metadata() const { return file_.metadata(); }
  const std::map<std::string, std::string>& aliases() const { return aliases_; }
  const SafetensorsFile& file() const { return file_; }
  int format_version() const { return version_; }

  // Float tensor by fastai key (aliases resolved): zero-copy for F32, the widened copy for F16.
  // Throws io::FormatError naming the bundle and the key if absent.
  nn::CView<float> tensor(const std::string& name) const;
  // Part of a tensor has been copied out and will not be read again: let its pages go (see
  // SafetensorsFile::drop_cached). Loaders use this so a model is not held twice in memory.
  void drop_cached(const float* p, std::size_t count) const noexcept {
    file_.drop_cached(p, count * sizeof(float));
  }
  bool has(const std::string& name) const;
  // Keys in fastai state_dict order (aliases included; optional absent ones skipped).
  std::vector<std::string> names() const;

 private:
  explicit Bundle(SafetensorsFile f) : file_(std::move(f)) {}
  void validate();
  void check_finite(const std::string& path, const std::string& name, const TensorInfo& t) const;

  SafetensorsFile file_;
  ModelConfig config_;
  std::vector<BundleMember> members_;
  std::vector<std::string> vocab_;
  std::vector<std::string> labels_;
  std::optional<double> temperature_;
  std::vector<double> class_weights_;
  std::string provenance_;
  std::map<std::string, std::string> aliases_;
  std::map<std::string, std::vector<float>> decoded_;  // F16 tensors, widened at load
  int version_ = 0;
};

}  // namespace io
