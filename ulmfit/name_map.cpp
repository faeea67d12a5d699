#include "ulmfit/name_map.h"

#include <stdexcept>

namespace ulmfit {

std::string encoder_prefix_of(const std::string& kind) {
  if (kind == "lm" || kind == "classifier" || kind == "encoder") {
    io::ModelConfig c;  // the bundle format's own rule
    c.kind = kind;
    return c.encoder_prefix();
  }
  throw std::invalid_argument("unknown model kind '" + kind + "' (known: lm, classifier, encoder)");
}

namespace {
// The encoder key of a model key ("0.rnns.0.…" of an LM -> "rnns.0.…"), or nullopt for a head.
std::optional<std::string> encoder_part(const std::string& kind, const std::string& key) {
  const std::string p = encoder_prefix_of(kind);
  if (key.compare(0, p.size(), p) != 0) return std::nullopt;
  return key.substr(p.size());
}
}  // namespace

std::optional<std::string> bundle_name(const std::string& model_kind, const std::string& key,
                                       const std::string& bundle_kind) {
  if (auto enc = encoder_part(model_kind, key)) return encoder_prefix_of(bundle_kind) + *enc;
  if (model_kind == bundle_kind) return key;  // the head, in a bundle of its own kind
  return std::nullopt;
}

std::optional<std::string> model_key(const std::string& bundle_kind, const std::string& name,
                                     const std::string& model_kind) {
  return bundle_name(bundle_kind, name, model_kind);  // the map is symmetric
}

void load_tensors(const std::vector<NamedTensor<float>>& dst, const std::string& model_kind,
                  const io::Bundle& b, const std::function<bool(const std::string&)>& skip) {
  const std::string& bundle_kind = b.config().kind;
  for (auto& t : dst) {
    if (skip && skip(t.key)) continue;
    auto name = bundle_name(model_kind, t.key, bundle_kind);
    if (!name) continue;
    auto src = b.tensor(*name);  // throws naming the bundle and the key when absent
    nn::check_shape(src.shape, t.value.shape, name->c_str());
    t.value.copy_from(src);
  }
}

std::vector<io::TensorOut> bundle_tensors(const std::vector<NamedTensor<float>>& src,
                                          const std::string& model_kind,
                                          const std::string& bundle_kind) {
  std::vector<io::TensorOut> out;
  for (auto& t : src)
    if (auto name = bundle_name(model_kind, t.key, bundle_kind))
      out.push_back(io::TensorOut::f32(*name, t.value));
  return out;
}

}  // namespace ulmfit
