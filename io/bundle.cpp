// io/bundle.cpp — see io/bundle.h.
#include "io/bundle.h"
#include "nn/lstm.h"  // half_to_float

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <set>
#include <sstream>
#include <stdexcept>

#include "io/errors.h"

namespace io {

using nlohmann::json;

// ---- ModelConfig ---------------------------------------------------------------------------------

ModelConfig ModelConfig::lm(std::int64_t vocab_size, double drop_mult) {
  ModelConfig c;
  c.kind = "lm";
  c.vocab_size = vocab_size;
  c.set_dropouts(kFastaiLmDropouts.times(drop_mult));
  return c;
}

ModelConfig ModelConfig::classifier(std::int64_t vocab_size, double drop_mult) {
  ModelConfig c;
  c.kind = "classifier";
  c.vocab_size = vocab_size;
  c.set_dropouts(kFastaiClasDropouts.times(drop_mult));
  c.head_ps = {c.output_p, 0.1};
  return c;
}

ModelConfig& ModelConfig::set_dropouts(const AwdLstmDropouts& d) {
  embed_p = d.embed_p, input_p = d.input_p, weight_p = d.weight_p, hidden_p = d.hidden_p,
  output_p = d.output_p;
  return *this;
}

ModelConfig& ModelConfig::no_dropout() {
  embed_p = input_p = weight_p = hidden_p = output_p = 0;
  for (auto& p : head_ps) p = 0;
  return *this;
}

std::vector<std::int64_t> ModelConfig::head_dims() const {
  std::vector<std::int64_t> d = {3 * emb_sz};
  d.insert(d.end(), lin_ftrs.begin(), lin_ftrs.end());
  d.push_back(n_classes);
  return d;
}

std::string ModelConfig::encoder_prefix() const {
  if (kind == "lm") return "0.";
  if (kind == "classifier") return "0.module.";
  return "";
}

json ModelConfig::to_json() const {
  json j = {{"kind", kind},         {"vocab_size", vocab_size}, {"emb_sz", emb_sz},
            {"n_hid", n_hid},       {"n_layers", n_layers},     {"pad_idx", pad_idx},
            {"embed_p", embed_p},   {"input_p", input_p},       {"weight_p", weight_p},
            {"hidden_p", hidden_p}, {"output_p", output_p},     {"bptt", bptt},
            {"max_len", max_len}};
  if (backwards) j["backwards"] = true;
  if (kind == "lm") {
    j["tie_weights"] = tie_weights;
    j["out_bias"] = out_bias;
  }
  if (kind == "classifier") {
    j["lin_ftrs"] = lin_ftrs;
    j["head_ps"] = head_ps;
    j["n_classes"] = n_classes;
  }
  return j;
}

namespace {

std::int64_t get_int(const json& j, const char* key, std::int64_t def, bool required) {
  auto it = j.find(key);
  if (it == j.end()) {
    if (required) throw std::invalid_argument(std::string("config: missing '") + key + "'");
    return def;
  }
  if (!it->is_number_integer())
    throw std::invalid_argument(std::string("config: '") + key + "' must be an integer, got " +
                                it->dump());
  return it->get<std::int64_t>();
}
double get_num(const json& j, const char* key, double def) {
  auto it = j.find(key);
  if (it == j.end()) return def;
  if (!it->is_number())
    throw std::invalid_argument(std::string("config: '") + key + "' must be a number, got " +
                                it->dump());
  return it->get<double>();
}
bool get_bool(const json& j, const char* key, bool def) {
  auto it = j.find(key);
  if (it == j.end()) return def;
  if (!it->is_boolean())
    throw std::invalid_argument(std::string("config: '") + key + "' must be true/false, got " +
                                it->dump());
  return it->get<bool>();
}

}  // namespace

ModelConfig ModelConfig::from_json(const json& j) {
  if (!j.is_object()) throw std::invalid_argument("config: not a JSON object");
  auto k = j.find("kind");
  if (k == j.end() || !k->is_string()) throw std::invalid_argument("config: missing 'kind'");
  std::string kind = k->get<std::string>();
  ModelConfig c = kind == "classifier" ? classifier(0) : lm(0);
  c.kind = kind;
  c.vocab_size = get_int(j, "vocab_size", 0, true);
  c.emb_sz = get_int(j, "emb_sz", 400, true);
  c.n_hid = get_int(j, "n_hid", 1152, true);
  c.n_layers = get_int(j, "n_layers", 3, true);
  c.pad_idx = get_int(j, "pad_idx", c.pad_idx, false);
  c.backwards = get_bool(j, "backwards", false);
  c.embed_p = get_num(j, "embed_p", c.embed_p);
  c.input_p = get_num(j, "input_p", c.input_p);
  c.weight_p = get_num(j, "weight_p", c.weight_p);
  c.hidden_p = get_num(j, "hidden_p", c.hidden_p);
  c.output_p = get_num(j, "output_p", c.output_p);
  c.tie_weights = get_bool(j, "tie_weights", c.tie_weights);
  c.out_bias = get_bool(j, "out_bias", c.out_bias);
  c.bptt = get_int(j, "bptt", c.bptt, false);
  c.max_len = get_int(j, "max_len", c.max_len, false);
  c.n_classes = get_int(j, "n_classes", c.n_classes, false);
  if (auto it = j.find("lin_ftrs"); it != j.end()) {
    if (!it->is_array()) throw std::invalid_argument("config: 'lin_ftrs' must be an array");
    c.lin_ftrs.clear();
    for (auto& v : *it) {
      if (!v.is_number_integer())
        throw std::invalid_argument("config: 'lin_ftrs' must hold integers, got " + v.dump());
      c.lin_ftrs.push_back(v.get<std::int64_t>());
    }
  }
  if (auto it = j.find("head_ps"); it != j.end()) {
    if (!it->is_array()) throw std::invalid_argument("config: 'head_ps' must be an array");
    c.head_ps.clear();
    for (auto& v : *it) {
      if (!v.is_number())
        throw std::invalid_argument("config: 'head_ps' must hold numbers, got " + v.dump());
      c.head_ps.push_back(v.get<double>());
    }
  }
  c.validate();
  return c;
}

void ModelConfig::validate() const {
  auto bad = [](const std::string& m) { throw std::invalid_argument("config: " + m); };
  if (kind != "lm" && kind != "classifier" && kind != "encoder")
    bad("kind must be \"lm\", \"classifier\" or \"encoder\", got \"" + kind + "\"");
  auto pos = [&](const char* n, std::int64_t v, std::int64_t hi) {
    if (v <= 0 || v > hi)
      bad(std::string(n) + " = " + std::to_string(v) + " is out of range (1.." +
          std::to_string(hi) + ")");
  };
  pos("vocab_size", vocab_size, 100'000'000);
  pos("emb_sz", emb_sz, 1'000'000);
  pos("n_hid", n_hid, 1'000'000);
  pos("n_layers", n_layers, 64);
  pos("bptt", bptt, 1'000'000);
  pos("max_len", max_len, 1'000'000'000);
  if (pad_idx < 0 || pad_idx >= vocab_size)
    bad("pad_idx = " + std::to_string(pad_idx) + " is not a token id (vocab_size " +
        std::to_string(vocab_size) + ")");
  auto prob = [&](const char* n, double p) {
    if (!(p >= 0.0 && p < 1.0)) bad(std::string(n) + " = " + std::to_string(p) + " not in [0, 1)");
  };
  prob("embed_p", embed_p);
  prob("input_p", input_p);
  prob("weight_p", weight_p);
  prob("hidden_p", hidden_p);
  prob("output_p", output_p);
  if (kind == "classifier") {
    pos("n_classes", n_classes, 1'000'000);
    for (auto f : lin_ftrs) pos("lin_ftrs[i]", f, 1'000'000);
    if (head_ps.size() != lin_ftrs.size() + 1)
      bad("head_ps has " + std::to_string(head_ps.size()) + " entries, expected len(lin_ftrs)+1 = " +
          std::to_string(lin_ftrs.size() + 1));
    for (double p : head_ps) prob("head_ps[i]", p);
  }
}

std::string ensemble_prefix(std::size_t k) { return "ensemble." + std::to_string(k) + "."; }

namespace {
// Every member's expected tensors, member 0 first (its names unprefixed).
std::vector<ExpectedTensor> members_tensors(const std::vector<BundleMember>& members) {
  std::vector<ExpectedTensor> out;
  for (auto& m : members)
    for (auto& e : expected_tensors(m.config, m.prefix)) out.push_back(std::move(e));
  return out;
}
}  // namespace

std::vector<ExpectedTensor> expected_tensors(const ModelConfig& c, const std::string& prefix) {
  std::vector<ExpectedTensor> out;
  const std::string p = c.encoder_prefix();
  const std::int64_t V = c.vocab_size, E = c.emb_sz;
  out.push_back({p + "encoder.weight", nn::Shape{V, E}});
  out.push_back({p + "encoder_dp.emb.weight", nn::Shape{V, E}, true, false, p + "encoder.weight"});
  for (std::int64_t l = 0; l < c.n_layers; ++l) {
    const std::int64_t h = c.layer_hidden(l), in = c.layer_input(l);
    const std::string r = p + "rnns." + std::to_string(l) + ".";
    out.push_back({r + "weight_hh_l0_raw", nn::Shape{4 * h, h}});
    out.push_back({r + "module.weight_ih_l0", nn::Shape{4 * h, in}});
    out.push_back({r + "module.bias_ih_l0", nn::Shape{4 * h}});
    out.push_back({r + "module.bias_hh_l0", nn::Shape{4 * h}});
  }
  if (c.kind == "lm") {
    out.push_back({"1.decoder.weight", nn::Shape{V, E}, true, false,
                   c.tie_weights ? p + "encoder.weight" : ""});
    if (c.out_bias) out.push_back({"1.decoder.bias", nn::Shape{V}});
  } else if (c.kind == "classifier") {
    std::vector<std::int64_t> dims = {3 * E};
    for (auto f : c.lin_ftrs) dims.push_back(f);
    dims.push_back(c.n_classes);
    for (std::size_t i = 0; i + 1 < dims.size(); ++i) {
      const std::string b = "1.layers." + std::to_string(i) + ".";
      const std::int64_t n = dims[i];
      for (const char* s : {"weight", "bias", "running_mean", "running_var"})
        out.push_back({b + "0." + s, nn::Shape{n}});
      ExpectedTensor nbt{b + "0.num_batches_tracked", nn::Shape{}, false, true, ""};
      out.push_back(nbt);
      // LinBnDrop: BatchNorm, Dropout (only if p > 0), Linear(bias=False).
      const int lin = c.head_ps[i] > 0 ? 2 : 1;
      out.push_back({b + std::to_string(lin) + ".weight", nn::Shape{dims[i + 1], n}});
    }
  }
  if (!prefix.empty())
    for (auto& e : out) {
      e.name = prefix + e.name;
      if (!e.alias_of.empty()) e.alias_of = prefix + e.alias_of;
    }
  return out;
}

std::int64_t parameter_count(const ModelConfig& c) {
  std::int64_t n = 0;
  for (auto& t : expected_tensors(c)) {
    if (!t.alias_of.empty() || t.is_i64) continue;
    if (t.name.find("running_") != std::string::npos) continue;
    n += t.shape.numel();
  }
  return n;
}

// ---- writing -------------------------------------------------------------------------------------

namespace {

std::string format_double(double v) {
  std::ostringstream s;
  s.precision(17);
  s << v;
  // Prefer the shortest representation that round-trips.
  for (int prec = 1; prec <= 17; ++prec) {
    std::ostringstream t;
    t.precision(prec);
    t << v;
    if (std::strtod(t.str().c_str(), nullptr) == v) return t.str();
  }
  return s.str();
}

std::int64_t numel_of(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

bool same_shape(const std::vector<std::int64_t>& a, const nn::Shape& b) {
  if ((int)a.size() != b.ndim) return false;
  for (int i = 0; i < b.ndim; ++i)
    if (a[i] != b.d[i]) return false;
  return true;
}

struct Prepared {
  std::vector<TensorOut> tensors;
  std::map<std::string, std::string> meta;
};

Prepared prepare(const BundleContents& b) {
  auto bad = [](const std::string& m) { throw std::invalid_argument("bundle: " + m); };
  b.config.validate();
  const ModelConfig& c = b.config;
  if ((std::int64_t)b.vocab.size() != c.vocab_size)
    bad("vocab has " + std::to_string(b.vocab.size()) + " tokens but config.vocab_size is " +
        std::to_string(c.vocab_size));
  if (c.kind == "classifier" && (std::int64_t)b.labels.size() != c.n_classes)
    bad("a classifier needs " + std::to_string(c.n_classes) + " labels, got " +
        std::to_string(b.labels.size()));

  std::map<std::string, const TensorOut*> given;
  for (auto& t : b.tensors)
    if (!given.emplace(t.name, &t).second) bad("tensor '" + t.name + "' given twice");

  std::vector<BundleMember> members = {{"", c}};
  if (b.extra_members.size() + 1 > kMaxEnsembleMembers)
    bad("an ensemble has at most " + std::to_string(kMaxEnsembleMembers) + " members, got " +
        std::to_string(b.extra_members.size() + 1));
  json ensemble = json::array();
  for (std::size_t k = 0; k < b.extra_members.size(); ++k) {
    const BundleMember& m = b.extra_members[k];
    m.config.validate();
    if (c.kind != "classifier" || m.config.kind != "classifier")
      bad("only classifiers can form an ensemble");
    if (m.prefix != ensemble_prefix(k + 1))
      bad("ensemble member " + std::to_string(k + 1) + " must have prefix '" +
          ensemble_prefix(k + 1) + "', got '" + m.prefix + "'");
    if (m.config.vocab_size != c.vocab_size || m.config.n_classes != c.n_classes)
      bad("ensemble member " + std::to_string(k + 1) +
          " has another vocabulary size or number of classes than member 0");
    members.push_back(m);
    ensemble.push_back({{"prefix", m.prefix}, {"config", m.config.to_json()}});
  }

  Prepared p;
  json aliases = json::object();
  std::set<std::string> used;
  for (auto& e : members_tensors(members)) {
    auto it = given.find(e.name);
    if (!e.alias_of.empty()) {
      aliases[e.name] = e.alias_of;
      if (it != given.end()) {
        // Must equal the stored tensor exactly.
        auto src = given.find(e.alias_of);
        const TensorOut& a = *it->second;
        if (src == given.end()) bad("'" + e.alias_of + "' missing (needed for alias " + e.name + ")");
        const TensorOut& s = *src->second;
        if (a.dtype != s.dtype || a.shape != s.shape ||
            (a.data != s.data &&
             std::memcmp(a.data, s.data, dtype_size(a.dtype) * numel_of(a.shape)) != 0))
          bad("'" + e.name + "' is a tied alias of '" + e.alias_of +
              "' but holds different values" +
              (c.kind == "lm" && e.name == "1.decoder.weight"
                   ? " (set config.tie_weights = false for an untied decoder)"
                   : ""));
        used.insert(e.name);
      }
      continue;
    }
    if (it == given.end()) {
      if (e.required) bad("missing tensor '" + e.name + "' (shape " + e.shape.str() + ")");
      continue;
    }
    const TensorOut& t = *it->second;
    if (!same_shape(t.shape, e.shape)) {
      std::string got = "[";
      for (std::size_t i = 0; i < t.shape.size(); ++i)
        got += (i ? ", " : "") + std::to_string(t.shape[i]);
      bad("tensor '" + e.name + "' has shape " + got + "], expected " + e.shape.str());
    }
    if (e.is_i64 ? t.dtype != DType::I64 : (t.dtype != DType::F32 && t.dtype != DType::F16))
      bad("tensor '" + e.name + "' has dtype " + dtype_name(t.dtype) + ", expected " +
          (e.is_i64 ? "I64" : "F32 or F16"));
    p.tensors.push_back(t);
    used.insert(e.name);
  }
  for (auto& t : b.tensors)
    if (!used.count(t.name))
      bad("unexpected tensor '" + t.name + "' for a " + c.kind + " with this config");

  p.meta = b.extra_metadata;
  // Version 1 readers know single models; only an ensemble needs version 2.
  p.meta["format"] = std::string(kBundleFormatName) + "/" + (ensemble.empty() ? "1" : "2");
  p.meta["config"] = c.to_json().dump();
  if (!ensemble.empty()) p.meta["ensemble"] = ensemble.dump();
  p.meta["vocab"] = json(b.vocab).dump();
  if (!b.labels.empty()) p.meta["labels"] = json(b.labels).dump();
  if (b.temperature) p.meta["temperature"] = format_double(*b.temperature);
  if (!b.class_weights.empty()) {
    if (c.kind != "classifier" || (std::int64_t)b.class_weights.size() != c.n_classes)
      bad("class_weights needs one weight per class of a classifier (" +
          std::to_string(c.n_classes) + "), got " + std::to_string(b.class_weights.size()));
    json w = json::array();
    for (double x : b.class_weights) {
      if (!(x > 0) || !std::isfinite(x)) bad("class_weights must be positive finite numbers");
      w.push_back(x);
    }
    p.meta["class_weights"] = w.dump();
  }
  if (!b.provenance.empty()) p.meta["provenance"] = b.provenance;
  if (!aliases.empty()) p.meta["aliases"] = aliases.dump();
  return p;
}

}  // namespace

void write_bundle(const std::string& path, const BundleContents& b) {
  Prepared p = prepare(b);
  write_safetensors(path, p.tensors, p.meta);
}

std::string serialize_bundle(const BundleContents& b) {
  Prepared p = prepare(b);
  return serialize_safetensors(p.tensors, p.meta);
}

// ---- loading -------------------------------------------------------------------------------------

Bundle Bundle::load(const std::string& path) {
  Bundle b(SafetensorsFile::open(path));
  b.validate();
  return b;
}

Bundle Bundle::from_file_image(const void* data, std::size_t size, const std::string& label) {
  Bundle b(SafetensorsFile::from_file_image(data, size, label));
  b.validate();
  return b;
}

Bundle Bundle::from_memory(const void* data, std::size_t size, const std::string& label,
                           bool copy) {
  Bundle b(SafetensorsFile::from_memory(data, size, label, copy));
  b.validate();
  return b;
}

// A NaN or infinite weight would make every score NaN: refuse the file, naming the tensor and
// the first bad element.
void Bundle::check_finite(const std::string& P, const std::string& name, const TensorInfo& t) const {
  const std::size_t n = numel_of(t.shape);
  auto fail = [&](std::size_t i, float v) {
    throw FormatError(P, std::string("weight is ") + (std::isnan(v) ? "NaN" : "infinite") +
                             " at element " + std::to_string(i),
                      "tensor '" + name + "'", "the model file is corrupt or its training diverged");
  };
  if (auto d = decoded_.find(name); d != decoded_.end()) {
    for (std::size_t i = 0; i < n; ++i)
      if (!std::isfinite(d->second[i])) fail(i, d->second[i]);
    return;
  }
  // Scanned block by block, each block's pages dropped again once checked (a file mapping
  // re-reads them when the weights are copied), so the check does not hold the file in memory.
  const unsigned char* p = static_cast<const unsigned char*>(file_.data(t));
  constexpr std::size_t kBlock = std::size_t(1) << 20;  // floats
  for (std::size_t b = 0; b < n; b += kBlock) {
    const std::size_t e = std::min(n, b + kBlock);
    for (std::size_t i = b; i < e; ++i) {
      float v;
      std::memcpy(&v, p + 4 * i, 4);
      if (!std::isfinite(v)) fail(i, v);
    }
    file_.drop_cached(p + 4 * b, 4 * (e - b));
  }
}

void Bundle::validate() {
  const std::string& P = file_.path();
  const auto& m = file_.metadata();
  auto get = [&](const char* key) -> const std::string* {
    auto it = m.find(key);
    return it == m.end() ? nullptr : &it->second;
  };
  const std::string* fmt = get("format");
  if (!fmt)
    throw FormatError(P, "not an inspire-classifier model bundle (no 'format' metadata)", "",
                      "convert fastai files with `inspire-classifier import-fastai`");
  const std::string prefix = std::string(kBundleFormatName) + "/";
  if (fmt->rfind(prefix, 0) != 0)
    throw FormatError(P, "unknown model format '" + *fmt + "'", "metadata 'format'",
                      "expected " + prefix + std::to_string(kBundleFormatVersion));
  {
    const std::string v = fmt->substr(prefix.size());
    char* end = nullptr;
    long ver = v.empty() ? -1 : std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || ver <= 0)
      throw FormatError(P, "bad format version '" + v + "'", "metadata 'format'");
    if (ver > kBundleFormatVersion)
      throw FormatError(P, "bundle format version " + v + " is newer than this build reads (" +
                               std::to_string(kBundleFormatVersion) + ")",
                        "metadata 'format'", "upgrade inspire-classifier");
    version_ = static_cast<int>(ver);
  }
  auto parse_json = [&](const char* key) -> json {
    const std::string* s = get(key);
    if (!s) throw FormatError(P, std::string("missing metadata '") + key + "'");
    try {
      return json::parse(*s);
    } catch (const json::exception& e) {
      throw FormatError(P, std::string("metadata '") + key + "' is not valid JSON: " + e.what());
    }
  };
  try {
    config_ = ModelConfig::from_json(parse_json("config"));
  } catch (const std::invalid_argument& e) {
    throw FormatError(P, e.what(), "metadata 'config'");
  }
  auto string_list = [&](const char* key) {
    json j = parse_json(key);
    if (!j.is_array()) throw FormatError(P, std::string("metadata '") + key + "' is not a JSON array");
    std::vector<std::string> out;
    out.reserve(j.size());
    for (std::size_t i = 0; i < j.size(); ++i) {
      if (!j[i].is_string())
        throw FormatError(P, "entry " + std::to_string(i) + " is not a string",
                          std::string("metadata '") + key + "'");
      out.push_back(j[i].get<std::string>());
    }
    return out;
  };
  vocab_ = string_list("vocab");
  if ((std::int64_t)vocab_.size() != config_.vocab_size)
    throw FormatError(P, "vocab has " + std::to_string(vocab_.size()) +
                             " tokens but config.vocab_size is " +
                             std::to_string(config_.vocab_size));
  if (get("labels")) labels_ = string_list("labels");
  {
    std::set<std::string> seen;
    for (std::size_t i = 0; i < labels_.size(); ++i)
      if (!seen.insert(labels_[i]).second)
        throw FormatError(P, "duplicate label name '" + labels_[i] + "' (entry " +
                                 std::to_string(i) + ")",
                          "metadata 'labels'", "each class needs its own name");
  }
  if (config_.kind == "classifier" && (std::int64_t)labels_.size() != config_.n_classes)
    throw FormatError(P, "a classifier bundle needs " + std::to_string(config_.n_classes) +
                             " labels, has " + std::to_string(labels_.size()),
                      "metadata 'labels'");
  if (const std::string* t = get("temperature")) {
    char* end = nullptr;
    double v = std::strtod(t->c_str(), &end);
    if (t->empty() || *end != '\0' || !std::isfinite(v) || v <= 0)
      throw FormatError(P, "temperature '" + *t + "' is not a positive number",
                        "metadata 'temperature'");
    temperature_ = v;
  }
  if (const std::string* pv = get("provenance")) provenance_ = *pv;
  if (get("class_weights")) {
    json w = parse_json("class_weights");
    if (!w.is_array() || (std::int64_t)w.size() != config_.n_classes || config_.kind != "classifier")
      throw FormatError(P, "must be an array of one weight per class of a classifier",
                        "metadata 'class_weights'");
    for (auto& x : w) {
      if (!x.is_number() || !(x.get<double>() > 0) || !std::isfinite(x.get<double>()))
        throw FormatError(P, "weight " + x.dump() + " is not a positive number",
                          "metadata 'class_weights'");
      class_weights_.push_back(x.get<double>());
    }
  }

  members_ = {{"", config_}};
  if (get("ensemble")) {
    if (version_ < 2)
      throw FormatError(P, "an ensemble needs format version 2, the file says " +
                               std::to_string(version_), "metadata 'ensemble'");
    json e = parse_json("ensemble");
    if (!e.is_array()) throw FormatError(P, "metadata 'ensemble' is not a JSON array");
    if (e.size() + 1 > kMaxEnsembleMembers)
      throw FormatError(P, "an ensemble has at most " + std::to_string(kMaxEnsembleMembers) +
                               " members, this one " + std::to_string(e.size() + 1),
                        "metadata 'ensemble'");
    for (std::size_t k = 0; k < e.size(); ++k) {
      const std::string where = "metadata 'ensemble' entry " + std::to_string(k);
      const json& m = e[k];
      if (!m.is_object() || !m.contains("prefix") || !m["prefix"].is_string() ||
          !m.contains("config"))
        throw FormatError(P, "an entry must be {\"prefix\": ..., \"config\": {...}}", where);
      BundleMember bm;
      bm.prefix = m["prefix"].get<std::string>();
      if (bm.prefix != ensemble_prefix(k + 1))
        throw FormatError(P, "prefix '" + bm.prefix + "', expected '" + ensemble_prefix(k + 1) + "'",
                          where);
      try {
        bm.config = ModelConfig::from_json(m["config"]);
      } catch (const std::invalid_argument& ex) {
        throw FormatError(P, ex.what(), where);
      }
      if (config_.kind != "classifier" || bm.config.kind != "classifier")
        throw FormatError(P, "only classifiers can form an ensemble", where);
      if (bm.config.vocab_size != config_.vocab_size || bm.config.n_classes != config_.n_classes)
        throw FormatError(P, "vocab_size/n_classes differ from the bundle's", where);
      members_.push_back(std::move(bm));
    }
  }

  // Tensors: exactly the expected set, right shapes and dtypes; aliases as declared.
  std::map<std::string, std::string> declared;
  if (get("aliases")) {
    json a = parse_json("aliases");
    if (!a.is_object()) throw FormatError(P, "metadata 'aliases' is not a JSON object");
    for (auto it = a.begin(); it != a.end(); ++it) {
      if (!it.value().is_string())
        throw FormatError(P, "alias '" + it.key() + "' does not name a tensor", "metadata 'aliases'");
      declared[it.key()] = it.value().get<std::string>();
    }
  }
  std::set<std::string> known;
  for (auto& e : members_tensors(members_)) {
    known.insert(e.name);
    if (!e.alias_of.empty()) {
      if (file_.contains(e.name))
        throw FormatError(P, "tied weight stored twice", "tensor '" + e.name + "'",
                          "it must be an alias of '" + e.alias_of + "'");
      auto d = declared.find(e.name);
      if (d == declared.end() || d->second != e.alias_of)
        throw FormatError(P, "alias '" + e.name + "' -> '" + e.alias_of + "' not declared",
                          "metadata 'aliases'");
      aliases_[e.name] = e.alias_of;
      continue;
    }
    const TensorInfo* t = file_.find(e.name);
    if (!t) {
      if (e.required)
        throw FormatError(P, "missing tensor '" + e.name + "' (" + config_.kind + " needs shape " +
                                 e.shape.str() + ")");
      continue;
    }
    if (e.is_i64 ? t->dtype != DType::I64 : (t->dtype != DType::F32 && t->dtype != DType::F16))
      throw FormatError(P, std::string("dtype ") + dtype_name(t->dtype) + ", expected " +
                               (e.is_i64 ? "I64" : "F32 or F16"),
                        "tensor '" + e.name + "'");
    if (!same_shape(t->shape, e.shape))
      throw FormatError(P, "shape " + t->shape_str() + ", expected " + e.shape.str() +
                               " for this config",
                        "tensor '" + e.name + "'");
    if (t->dtype == DType::F16) {
      // Stored in half precision: widened once here; tensor() returns these floats.
      const std::size_t n = numel_of(t->shape);
      std::vector<std::uint16_t> h(n);
      if (n) std::memcpy(h.data(), file_.data(*t), 2 * n);
      std::vector<float> f(n);
      for (std::size_t i = 0; i < n; ++i) f[i] = nn::half_to_float(h[i]);
      decoded_[e.name] = std::move(f);
    }
    if (!e.is_i64) check_finite(P, e.name, *t);
  }
  for (auto& [a, target] : declared)
    if (!aliases_.count(a))
      throw FormatError(P, "unexpected alias '" + a + "' -> '" + target + "'", "metadata 'aliases'");
  for (auto& t : file_.tensors())
    if (!known.count(t.name))
      throw FormatError(P, "unexpected tensor for a " + config_.kind + " model",
                        "tensor '" + t.name + "'");
}

nn::CView<float> Bundle::tensor(const std::string& name) const {
  auto a = aliases_.find(name);
  const std::string& real = a == aliases_.end() ? name : a->second;
  if (!file_.contains(real))
    throw FormatError(file_.path(), "no tensor named '" + name + "' in this " + config_.kind +
                                        " bundle");
  if (auto d = decoded_.find(real); d != decoded_.end()) {
    const TensorInfo& t = file_.info(real);
    nn::Shape sh;
    sh.ndim = static_cast<int>(t.shape.size());
    for (int i = 0; i < sh.ndim; ++i) sh.d[i] = t.shape[i];
    return nn::CView<float>(d->second.data(), sh);
  }
  return file_.f32(real);
}

bool Bundle::has(const std::string& name) const {
  return aliases_.count(name) || file_.contains(name);
}

std::vector<std::string> Bundle::names() const {
  std::vector<std::string> out;
  for (auto& e : members_tensors(members_))
    if (has(e.name)) out.push_back(e.name);
  return out;
}

}  // namespace io
