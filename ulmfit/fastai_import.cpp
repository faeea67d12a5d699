// ulmfit/fastai_import.cpp — see ulmfit/fastai_import.h.
#include "ulmfit/fastai_import.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <stdexcept>
#include <unordered_map>

#include "io/errors.h"
#include "ulmfit/labels.h"

namespace ulmfit {

namespace tt = io::torch;

// ---- clean_raw_keys ----------------------------------------------------------------------------

namespace {
// fastai's _rm_module: drop the LAST path component equal to "module".
std::string rm_module(const std::string& n) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    std::size_t dot = n.find('.', start);
    parts.push_back(n.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  for (std::size_t i = parts.size(); i-- > 0;)
    if (parts[i] == "module") {
      parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(i));
      break;
    }
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? "." : "") + parts[i];
  return out;
}
}  // namespace

std::vector<std::string> raw_keys_to_drop(const std::vector<std::string>& names) {
  std::set<std::string> all(names.begin(), names.end());
  std::vector<std::string> drop;
  for (auto& k : names)
    if (all.count(rm_module(k) + "_raw")) drop.push_back(k);
  return drop;
}

// ---- match_embeds ------------------------------------------------------------------------------

MatchedEmbeddings match_embeds(const float* old_emb, std::int64_t v_old, std::int64_t emb_sz,
                               const float* old_bias, const std::vector<std::string>& old_vocab,
                               const std::vector<std::string>& new_vocab) {
  if ((std::int64_t)old_vocab.size() != v_old)
    throw std::invalid_argument("match_embeds: old vocab has " + std::to_string(old_vocab.size()) +
                                " tokens but the embedding has " + std::to_string(v_old) + " rows");
  std::vector<double> mean(emb_sz, 0.0);
  double bias_mean = 0.0;
  for (std::int64_t r = 0; r < v_old; ++r) {
    const float* row = old_emb + r * emb_sz;
    for (std::int64_t c = 0; c < emb_sz; ++c) mean[c] += row[c];
    if (old_bias) bias_mean += old_bias[r];
  }
  std::vector<float> mean_f(emb_sz);
  for (std::int64_t c = 0; c < emb_sz; ++c)
    mean_f[c] = v_old ? static_cast<float>(mean[c] / v_old) : 0.f;
  const float bias_mean_f = v_old ? static_cast<float>(bias_mean / v_old) : 0.f;

  std::unordered_map<std::string, std::int64_t> o2i;
  o2i.reserve(old_vocab.size());
  for (std::int64_t i = 0; i < v_old; ++i) o2i[old_vocab[i]] = i;  // later duplicates win

  MatchedEmbeddings m;
  const std::int64_t v_new = static_cast<std::int64_t>(new_vocab.size());
  m.emb.resize(static_cast<std::size_t>(v_new * emb_sz));
  if (old_bias) m.bias.resize(v_new);
  for (std::int64_t i = 0; i < v_new; ++i) {
    auto it = o2i.find(new_vocab[i]);
    float* dst = m.emb.data() + i * emb_sz;
    if (it != o2i.end()) {
      std::memcpy(dst, old_emb + it->second * emb_sz, sizeof(float) * emb_sz);
      if (old_bias) m.bias[i] = old_bias[it->second];
      ++m.matched;
    } else {
      std::memcpy(dst, mean_f.data(), sizeof(float) * emb_sz);
      if (old_bias) m.bias[i] = bias_mean_f;
    }
  }
  return m;
}

// ---- config inference --------------------------------------------------------------------------

namespace {

std::string shape_str(const std::vector<std::int64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::string some_keys(const tt::StateDict& sd) {
  std::string s;
  std::size_t n = 0;
  for (auto& [k, t] : sd) {
    if (n == 6) {
      s += ", ... (" + std::to_string(sd.size()) + " keys)";
      break;
    }
    s += (n++ ? ", " : "") + k;
  }
  return s.empty() ? "no keys" : s;
}

}  // namespace

io::ModelConfig infer_config(const tt::StateDict& sd) {
  const std::string& S = sd.source;
  std::string prefix, kind;
  if (sd.contains("0.encoder.weight")) {
    prefix = "0.";
    kind = "lm";
  } else if (sd.contains("0.module.encoder.weight")) {
    prefix = "0.module.";
    kind = "classifier";
  } else if (sd.contains("encoder.weight")) {
    prefix = "";
    kind = "encoder";
  } else {
    throw io::FormatError(S, "not a fastai AWD-LSTM state dict: no 'encoder.weight', "
                             "'0.encoder.weight' or '0.module.encoder.weight' key (has: " +
                                 some_keys(sd) + ")");
  }
  const tt::Tensor& emb = sd.at(prefix + "encoder.weight");
  if (emb.ndim() != 2 || emb.shape[0] <= 0 || emb.shape[1] <= 0)
    throw io::FormatError(S, "embedding has shape " + shape_str(emb.shape) + ", expected [V, emb_sz]",
                          "key '" + prefix + "encoder.weight'");
  const std::int64_t V = emb.shape[0], E = emb.shape[1];
  io::ModelConfig c = kind == "classifier" ? io::ModelConfig::classifier(V) : io::ModelConfig::lm(V);
  c.kind = kind;
  c.emb_sz = E;
  c.n_layers = 0;
  while (sd.contains(prefix + "rnns." + std::to_string(c.n_layers) + ".weight_hh_l0_raw")) ++c.n_layers;
  if (c.n_layers == 0)
    throw io::FormatError(S, "no LSTM layers: key '" + prefix +
                                 "rnns.0.weight_hh_l0_raw' is missing (has: " + some_keys(sd) + ")",
                          "", "is this an AWD-LSTM (not QRNN/Transformer) checkpoint?");
  if (c.n_layers > 1) {
    const tt::Tensor& w = sd.at(prefix + "rnns.0.weight_hh_l0_raw");
    if (w.ndim() != 2 || w.shape[1] <= 0)
      throw io::FormatError(S, "shape " + shape_str(w.shape) + ", expected [4*n_hid, n_hid]",
                            "key '" + prefix + "rnns.0.weight_hh_l0_raw'");
    c.n_hid = w.shape[1];
  } else {
    c.n_hid = E;
  }
  if (kind == "lm") c.out_bias = sd.contains("1.decoder.bias");
  if (kind == "classifier") {
    std::vector<std::int64_t> outs;
    std::vector<double> ps;
    for (int i = 0; sd.contains("1.layers." + std::to_string(i) + ".0.weight"); ++i) {
      const std::string b = "1.layers." + std::to_string(i) + ".";
      const tt::Tensor* lin = sd.find(b + "2.weight");
      bool dropout = lin != nullptr;
      if (!lin) lin = sd.find(b + "1.weight");
      if (!lin)
        throw io::FormatError(S, "classifier head block " + std::to_string(i) +
                                     " has no Linear weight ('" + b + "2.weight' or '" + b +
                                     "1.weight')");
      if (lin->ndim() != 2)
        throw io::FormatError(S, "shape " + shape_str(lin->shape) + ", expected [out, in]",
                              "key '" + b + (dropout ? "2" : "1") + ".weight'");
      outs.push_back(lin->shape[0]);
      // Dropout probabilities are not in a state dict: fastai's defaults (first block output_p,
      // then 0.1), 0 where the Linear index shows there was no Dropout module.
      ps.push_back(dropout ? (i == 0 ? c.output_p : 0.1) : 0.0);
    }
    if (outs.empty())
      throw io::FormatError(S, "classifier has no head: key '1.layers.0.0.weight' is missing");
    c.n_classes = outs.back();
    c.lin_ftrs.assign(outs.begin(), outs.end() - 1);
    c.head_ps = ps;
  }
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw io::FormatError(S, std::string("inferred an invalid model: ") + e.what());
  }
  return c;
}

// ---- import ------------------------------------------------------------------------------------

namespace {

bool is_plain_f32(const tt::Tensor& t) {
  return t.dtype == tt::DType::Float32 && t.is_contiguous() && t.storage && t.storage->data;
}
const void* raw_ptr(const tt::Tensor& t) {
  return t.storage->data + t.offset * static_cast<std::int64_t>(tt::element_size(t.dtype));
}

bool same_values(const tt::Tensor& a, const tt::Tensor& b) {
  if (a.shape != b.shape) return false;
  if (a.storage == b.storage && a.offset == b.offset && a.stride == b.stride) return true;
  if (is_plain_f32(a) && is_plain_f32(b))
    return std::memcmp(raw_ptr(a), raw_ptr(b), sizeof(float) * a.numel()) == 0;
  auto x = a.to_float32(), y = b.to_float32();
  return x.size() == y.size() &&
         std::memcmp(x.data(), y.data(), sizeof(float) * x.size()) == 0;
}

std::vector<std::int64_t> to_vec(const nn::Shape& s) {
  return std::vector<std::int64_t>(s.d.begin(), s.d.begin() + s.ndim);
}

}  // namespace

io::BundleContents ImportedModel::contents(const std::string& provenance) const {
  io::BundleContents b;
  b.config = config;
  b.vocab = vocab;
  b.labels = labels;
  b.temperature = temperature;
  b.provenance = provenance;
  b.tensors = tensors;
  return b;
}

ImportedModel import_state_dict(tt::StateDict sd, const std::vector<std::string>& vocab,
                                const std::vector<std::string>* target_vocab) {
  const std::string S = sd.source;
  ImportedModel m;
  // 1. clean_raw_keys
  auto drop = raw_keys_to_drop(sd.names());
  if (!drop.empty()) {
    std::set<std::string> d(drop.begin(), drop.end());
    std::erase_if(sd.entries, [&](const auto& e) { return d.count(e.first) > 0; });
    std::string list;
    for (auto& k : drop) list += (list.empty() ? "" : ", ") + k;
    m.notes.push_back("dropped fastai v1 working copies (clean_raw_keys): " + list);
  }
  // 2. config
  io::ModelConfig cfg = infer_config(sd);
  const std::string p = cfg.encoder_prefix();
  const std::int64_t V = cfg.vocab_size, E = cfg.emb_sz;
  const tt::Tensor& emb = sd.at(p + "encoder.weight");

  // Every key must be one the model has.
  {
    std::set<std::string> known;
    io::ModelConfig untied = cfg;
    untied.tie_weights = false;
    for (auto& e : io::expected_tensors(untied)) known.insert(e.name);
    for (auto& [k, t] : sd)
      if (!known.count(k))
        throw io::FormatError(S, "unexpected key for a fastai AWD-LSTM " + cfg.kind + " with " +
                                     std::to_string(cfg.n_layers) + " layers",
                              "key '" + k + "' " + t.str(),
                              "only AWD-LSTM language models, their encoders and text "
                              "classifiers can be imported");
  }

  auto keep_f32 = [&](const std::string& name, const tt::Tensor& t, const nn::Shape& shape) {
    if (is_plain_f32(t)) {
      m.tensors.push_back(io::TensorOut{name, io::DType::F32, to_vec(shape), raw_ptr(t)});
    } else {
      auto buf = std::make_shared<std::vector<float>>(t.to_float32());
      m.tensors.push_back(io::TensorOut{name, io::DType::F32, to_vec(shape), buf->data()});
      m.owned_f32.push_back(buf);
      m.notes.push_back("converted " + name + " from " + tt::dtype_name(t.dtype) +
                        (t.is_contiguous() ? "" : " (strided)") + " to float32");
    }
  };
  auto own_f32 = [&](const std::string& name, std::vector<float> v, nn::Shape shape) {
    auto buf = std::make_shared<std::vector<float>>(std::move(v));
    m.tensors.push_back(io::TensorOut{name, io::DType::F32, to_vec(shape), buf->data()});
    m.owned_f32.push_back(buf);
  };

  // 3. vocab, optional re-indexing (match_embeds)
  std::set<std::string> replaced;
  if (target_vocab) {
    if (cfg.kind == "classifier")
      throw io::FormatError(S, "--target-vocab applies to a pretrained language model or encoder, "
                               "not to a classifier");
    if ((std::int64_t)vocab.size() != V)
      throw io::FormatError(S, "the pretraining vocab has " + std::to_string(vocab.size()) +
                                   " tokens but the embedding has " + std::to_string(V) + " rows",
                            "key '" + p + "encoder.weight'",
                            "pass the itos.pkl that was saved with these weights");
    if (target_vocab->empty()) throw io::FormatError(S, "the target vocab is empty");
    std::vector<float> scratch_e, scratch_b;
    const float* e = nullptr;
    if (is_plain_f32(emb) && reinterpret_cast<std::uintptr_t>(raw_ptr(emb)) % alignof(float) == 0) {
      e = static_cast<const float*>(raw_ptr(emb));
    } else {
      scratch_e = emb.to_float32();
      e = scratch_e.data();
    }
    const float* b = nullptr;
    const tt::Tensor* bias = cfg.kind == "lm" ? sd.find("1.decoder.bias") : nullptr;
    if (bias) {
      if (bias->ndim() != 1 || bias->shape[0] != V)
        throw io::FormatError(S, "shape " + shape_str(bias->shape) + ", expected [" +
                                     std::to_string(V) + "]",
                              "key '1.decoder.bias'");
      scratch_b = bias->to_float32();
      b = scratch_b.data();
    }
    auto mt = match_embeds(e, V, E, b, vocab, *target_vocab);
    const std::int64_t Vn = static_cast<std::int64_t>(target_vocab->size());
    m.matched_tokens = mt.matched;
    m.notes.push_back("vocab matched like fastai match_embeds: " + std::to_string(mt.matched) +
                      " of " + std::to_string(Vn) + " target tokens found in the " +
                      std::to_string(V) + "-token pretraining vocab; the others got the mean " +
                      "embedding row" + (bias ? " and the mean decoder bias" : ""));
    cfg.vocab_size = Vn;
    cfg.tie_weights = true;  // match_embeds sets the decoder weight to the new embedding
    own_f32(p + "encoder.weight", std::move(mt.emb), nn::Shape{Vn, E});
    replaced.insert(p + "encoder.weight");
    if (bias) {
      own_f32("1.decoder.bias", std::move(mt.bias), nn::Shape{Vn});
      replaced.insert("1.decoder.bias");
    }
    m.vocab = *target_vocab;
  } else {
    if ((std::int64_t)vocab.size() != V)
      throw io::FormatError(S, "the vocab has " + std::to_string(vocab.size()) +
                                   " tokens but the embedding has " + std::to_string(V) + " rows",
                            "key '" + p + "encoder.weight'",
                            "pass the itos.pkl saved with these weights");
    m.vocab = vocab;
  }

  // 4. tied weights
  if (!target_vocab) {
    if (auto* a = sd.find(p + "encoder_dp.emb.weight"); a && !same_values(*a, emb))
      throw io::FormatError(S, "'" + p + "encoder_dp.emb.weight' differs from '" + p +
                                   "encoder.weight' (fastai ties them: one tensor)");
    if (cfg.kind == "lm") {
      auto* d = sd.find("1.decoder.weight");
      if (!d) {
        cfg.tie_weights = true;  // a tied LM may omit it
      } else if (!same_values(*d, emb)) {
        cfg.tie_weights = false;
        m.notes.push_back("1.decoder.weight differs from 0.encoder.weight: stored untied");
      }
    }
  }

  // 5. every expected tensor: present, right shape; data kept zero-copy where possible
  for (auto& e : io::expected_tensors(cfg)) {
    if (!e.alias_of.empty() || replaced.count(e.name)) continue;
    const tt::Tensor* t = sd.find(e.name);
    if (!t) {
      if (e.required)
        throw io::FormatError(S, "missing key '" + e.name + "' (a " + cfg.kind + " with emb_sz " +
                                     std::to_string(cfg.emb_sz) + ", n_hid " +
                                     std::to_string(cfg.n_hid) + ", " +
                                     std::to_string(cfg.n_layers) + " layers needs shape " +
                                     e.shape.str() + ")");
      continue;
    }
    if (t->shape != to_vec(e.shape))
      throw io::FormatError(S, "shape " + shape_str(t->shape) + ", expected " + e.shape.str() +
                                   " (inferred: vocab " + std::to_string(V) + ", emb_sz " +
                                   std::to_string(E) + ", n_hid " + std::to_string(cfg.n_hid) +
                                   ", " + std::to_string(cfg.n_layers) + " layers)",
                            "key '" + e.name + "'");
    if (e.is_i64) {
      auto v = t->to_int64();
      auto buf = std::make_shared<std::int64_t>(v.empty() ? 0 : v[0]);
      m.tensors.push_back(io::TensorOut{e.name, io::DType::I64, {}, buf.get()});
      m.owned_i64.push_back(buf);
      continue;
    }
    keep_f32(e.name, *t, e.shape);
  }
  if (cfg.kind == "classifier") m.temperature = kTemperature;
  m.config = cfg;
  m.source = std::move(sd);  // storages are shared_ptr-owned: pointers above stay valid
  return m;
}

ImportedModel import_weights(const std::string& weights_path, const std::string& itos_path,
                             const std::string& target_vocab_path) {
  tt::StateDict sd = tt::load_state_dict(weights_path);
  std::vector<std::string> itos = tt::load_itos(itos_path);
  if (target_vocab_path.empty()) return import_state_dict(std::move(sd), itos);
  std::vector<std::string> target = tt::load_itos(target_vocab_path);
  return import_state_dict(std::move(sd), itos, &target);
}

ImportedModel import_learner(const std::string& learner_path, const std::string& itos_path) {
  tt::LearnerFile lf = tt::load_learner(learner_path);
  std::vector<std::string> vocab = lf.vocab;
  std::string vocab_note = "vocab from the learner's Numericalize transform";
  if (!itos_path.empty()) {
    auto itos = tt::load_itos(itos_path);
    if (!lf.vocab.empty() && itos != lf.vocab) {
      std::size_t i = 0;
      while (i < itos.size() && i < lf.vocab.size() && itos[i] == lf.vocab[i]) ++i;
      std::string detail =
          i < itos.size() && i < lf.vocab.size()
              ? "first difference at id " + std::to_string(i) + ": '" + itos[i] + "' vs '" +
                    lf.vocab[i] + "'"
              : "lengths " + std::to_string(itos.size()) + " vs " + std::to_string(lf.vocab.size());
      throw io::FormatError(itos_path, "this vocab differs from the one inside " + learner_path +
                                           " (" + detail + ")",
                            "", "omit --itos to use the learner's own vocab");
    }
    vocab = std::move(itos);
    vocab_note = "vocab from " + itos_path;
  }
  if (vocab.empty())
    throw io::FormatError(learner_path, "no vocab found in the learner (Numericalize.vocab)", "",
                          "pass the LM vocab with --itos FILE.pkl");
  ImportedModel m = import_state_dict(std::move(lf.model), vocab);
  m.notes.insert(m.notes.begin(), vocab_note);
  if (m.config.kind == "classifier") {
    const auto& cls = lf.classes;
    const std::int64_t n = m.config.n_classes;
    bool inspire_ids = n == 3 && cls == std::vector<std::string>{"0", "1", "2"};
    if (inspire_ids || (cls.empty() && n == 3)) {
      m.labels.assign(kLabels.begin(), kLabels.end());
      m.notes.push_back(inspire_ids ? "classes 0,1,2 named rejected,non_core,core (INSPIRE)"
                                    : "no class names in the learner: assumed INSPIRE's "
                                      "rejected,non_core,core");
    } else if ((std::int64_t)cls.size() == n) {
      m.labels = cls;
    } else if (cls.empty()) {
      for (std::int64_t i = 0; i < n; ++i) m.labels.push_back(std::to_string(i));
      m.notes.push_back("no class names in the learner: labels are class indices");
    } else {
      throw io::FormatError(learner_path, "the learner has " + std::to_string(cls.size()) +
                                              " class names but the head outputs " +
                                              std::to_string(n) + " classes");
    }
  }
  return m;
}

}  // namespace ulmfit
