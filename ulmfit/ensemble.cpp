#include "ulmfit/ensemble.h"

#include <stdexcept>

#include <nlohmann/json.hpp>

#include "nn/lstm.h"  // floats_to_half

namespace ulmfit {

namespace {

// Copies the stored (non-alias) tensors of member `m` of `b` into `c`, renamed from m's prefix to
// `dst`: as stored, or with `half` every float32 tensor rounded to IEEE half (into `store`).
void copy_member(const io::Bundle& b, const io::BundleMember& m, const std::string& dst,
                 io::BundleContents& c, bool half, std::deque<std::vector<std::uint16_t>>& store) {
  for (const auto& e : io::expected_tensors(m.config, m.prefix)) {
    if (!e.alias_of.empty() || !b.file().contains(e.name)) continue;
    const io::TensorInfo& t = b.file().info(e.name);
    io::TensorOut o;
    o.name = dst + e.name.substr(m.prefix.size());
    o.dtype = t.dtype;
    o.shape = t.shape;
    o.data = b.file().data(t);
    if (half && t.dtype == io::DType::F32) {
      auto v = b.tensor(e.name);
      store.emplace_back(static_cast<std::size_t>(v.numel()));
      nn::floats_to_half(v.data, store.back().data(), v.numel());
      o.dtype = io::DType::F16;
      o.data = store.back().data();
    }
    c.tensors.push_back(std::move(o));
  }
}

}  // namespace

BundleBuild extract_member(const std::string& input, long long k, bool half) {
  BundleBuild out;
  out.sources.push_back(io::Bundle::load(input));
  const io::Bundle& b = out.sources.back();
  const auto& ms = b.members();
  if (k < 0 || (std::size_t)k >= ms.size())
    throw std::runtime_error(input + ": --member " + std::to_string(k) + " is out of range; it has " +
                             std::to_string(ms.size()) + " member(s), numbered from 0");
  io::BundleContents& c = out.contents;
  c.config = ms[(std::size_t)k].config;
  c.vocab = b.vocab();
  c.labels = b.labels();
  c.temperature = b.temperature();
  c.provenance =
      nlohmann::json{{"member_of", input}, {"member", k}, {"provenance", b.provenance()}}.dump();
  copy_member(b, ms[(std::size_t)k], "", c, half, out.half_store);
  out.members = 1;
  return out;
}

BundleBuild make_ensemble(const std::vector<std::string>& inputs, bool half, const LogFn& log) {
  BundleBuild out;
  out.sources.reserve(inputs.size());  // the contents point into them: no reallocation
  for (auto& p : inputs) {
    out.sources.push_back(io::Bundle::load(p));
    if (out.sources.back().config().kind != "classifier")
      throw std::runtime_error(p + ": holds a \"" + out.sources.back().config().kind +
                               "\" model; only classifiers can be ensembled");
  }
  if (out.sources.empty()) throw std::runtime_error("an ensemble needs two or more members, got 0");
  const io::Bundle& first = out.sources.front();
  io::BundleContents& c = out.contents;
  c.config = first.config();
  c.vocab = first.vocab();
  c.labels = first.labels();
  c.temperature = first.temperature();
  nlohmann::json prov = nlohmann::json::array();
  std::size_t k = 0;  // next member index
  for (std::size_t i = 0; i < out.sources.size(); ++i) {
    const io::Bundle& b = out.sources[i];
    if (b.vocab() != first.vocab())
      throw std::runtime_error(inputs[i] + ": its vocabulary differs from " + inputs[0] +
                               "'s; ensemble members must share one (train them from LMs "
                               "fine-tuned on the same data)");
    if (b.labels() != first.labels())
      throw std::runtime_error(inputs[i] + ": its labels differ from " + inputs[0] + "'s");
    if (b.temperature() != first.temperature() && log)
      log("warning: " + inputs[i] + " has another temperature; the ensemble uses " + inputs[0] + "'s");
    prov.push_back({{"file", inputs[i]}, {"provenance", b.provenance()}});
    for (const auto& m : b.members()) {
      const std::string dst = k == 0 ? "" : io::ensemble_prefix(k);
      if (k > 0) c.extra_members.push_back({dst, m.config});
      copy_member(b, m, dst, c, half, out.half_store);
      ++k;
    }
  }
  if (k < 2) throw std::runtime_error("an ensemble needs two or more members, got " + std::to_string(k));
  c.provenance = nlohmann::json{{"ensemble_of", prov}}.dump();
  out.members = k;
  return out;
}

}  // namespace ulmfit
