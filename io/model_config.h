// io/model_config.h — the model configuration: THE description of an AWD-LSTM model (sizes,
// dropouts, head), what a bundle stores as its `config` metadata (see io/bundle.h) and what the
// models are built from (ulmfit::AwdLstmEncoder, AwdLstmLM and ClassifierModel all take this one
// type; ulmfit::ModelConfig names it there).
//
// Where it lives and why: io/ must not depend on ulmfit/ (ulmfit/ builds on io/), and the bundle
// format has to read and write the config, so the one config type and the one table of dropout
// defaults live here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace io {

// Dropout probabilities of an AWD-LSTM.
struct AwdLstmDropouts {
  double embed_p, input_p, weight_p, hidden_p, output_p;
  // Every p times drop_mult (fastai multiplies every *_p key of the config).
  constexpr AwdLstmDropouts times(double drop_mult) const {
    return {embed_p * drop_mult, input_p * drop_mult, weight_p * drop_mult, hidden_p * drop_mult,
            output_p * drop_mult};
  }
};
// fastai 2.7 awd_lstm_lm_config / awd_lstm_clas_config (before drop_mult).
constexpr AwdLstmDropouts kFastaiLmDropouts{0.02, 0.25, 0.2, 0.15, 0.1};
constexpr AwdLstmDropouts kFastaiClasDropouts{0.05, 0.4, 0.5, 0.3, 0.4};
// INSPIRE's drop_mult: 0.7 for the language model, 0.5 for the classifier.
constexpr double kInspireLmDropMult = 0.7, kInspireClasDropMult = 0.5;
constexpr AwdLstmDropouts kInspireLmDropouts = kFastaiLmDropouts.times(kInspireLmDropMult);
constexpr AwdLstmDropouts kInspireClasDropouts = kFastaiClasDropouts.times(kInspireClasDropMult);

// Architecture + hyper-parameters. Dropout probabilities are the EFFECTIVE ones (fastai's config
// value times drop_mult): the defaults are fastai's awd_lstm_lm_config x 0.7 (INSPIRE's LM
// drop_mult) for "lm"/"encoder" and awd_lstm_clas_config x 0.5 for "classifier".
struct ModelConfig {
  std::string kind = "lm";  // "lm" | "classifier" | "encoder"
  std::int64_t vocab_size = 0;
  std::int64_t emb_sz = 400;
  std::int64_t n_hid = 1152;
  std::int64_t n_layers = 3;
  std::int64_t pad_idx = 1;
  bool backwards = false;   // reads documents last token first (written only when true)
  double embed_p = kInspireLmDropouts.embed_p, input_p = kInspireLmDropouts.input_p,
         weight_p = kInspireLmDropouts.weight_p, hidden_p = kInspireLmDropouts.hidden_p,
         output_p = kInspireLmDropouts.output_p;
  bool tie_weights = true;  // lm: decoder weight == encoder weight
  bool out_bias = true;     // lm: decoder has a bias
  std::int64_t bptt = 72;
  std::int64_t max_len = 1440;  // classifier: 20 * bptt
  // classifier head: dims = [3*emb_sz] + lin_ftrs + [n_classes]; ps one per block.
  std::vector<std::int64_t> lin_ftrs = {50};
  std::vector<double> head_ps = {0.2, 0.1};
  std::int64_t n_classes = 3;

  // fastai's awd_lstm_lm_config / awd_lstm_clas_config at the original's sizes, every *_p times
  // drop_mult (INSPIRE: LM 0.7, classifier 0.5). The classifier's head_ps are
  // [output_p, 0.1] (fastai: [output_p] + ps, ps = [0.1]).
  static ModelConfig lm(std::int64_t vocab_size, double drop_mult = kInspireLmDropMult);
  static ModelConfig classifier(std::int64_t vocab_size, double drop_mult = kInspireClasDropMult);

  // Sets the five dropout probabilities (the head's ps are left as they are).
  ModelConfig& set_dropouts(const AwdLstmDropouts& d);
  // Every dropout probability, the head's included, set to 0.
  ModelConfig& no_dropout();

  // Prefix of the AWD-LSTM keys: "0." (lm), "0.module." (classifier), "" (encoder).
  std::string encoder_prefix() const;
  // Hidden size of LSTM layer l (the last one has emb_sz).
  std::int64_t layer_hidden(std::int64_t l) const { return l == n_layers - 1 ? emb_sz : n_hid; }
  std::int64_t layer_input(std::int64_t l) const { return l == 0 ? emb_sz : n_hid; }
  // Sizes of a classifier's head: [3 * emb_sz, lin_ftrs..., n_classes].
  std::vector<std::int64_t> head_dims() const;

  nlohmann::json to_json() const;
  // Throws std::invalid_argument naming the field on a missing/ill-typed/out-of-range value.
  static ModelConfig from_json(const nlohmann::json& j);
  // Sanity checks (positive sizes, known kind, ps in [0,1), head sizes); throws invalid_argument.
  void validate() const;
};

}  // namespace io
