// nn/optim.cpp — fastai Adam; see nn/optim.h for the update rule.
#include "nn/optim.h"
#include "nn/placed.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace nn {

static_assert(std::endian::native == std::endian::little,
              "optimizer state files are little-endian; big-endian hosts are not supported");

Adam::Adam(std::vector<Param> params, int n_groups, const AdamHyper& defaults)
    : params_(std::move(params)) {
  if (n_groups <= 0) throw std::invalid_argument("Adam: n_groups must be > 0");
  hyper_.assign(n_groups, defaults);
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Param& p = params_[i];
    if (p.group < 0 || p.group >= n_groups)
      throw std::invalid_argument("Adam: parameter '" + p.name + "' has group " +
                                  std::to_string(p.group) + ", outside [0, " +
                                  std::to_string(n_groups) + ")");
    if (p.value.numel() != p.grad.numel())
      throw std::invalid_argument("Adam: parameter '" + p.name + "' value " + p.value.shape.str() +
                                  " and grad " + p.grad.shape.str() + " differ in size");
  }
  reserve_state(nullptr);
  steps_.assign(params_.size(), 0);
}

void Adam::reserve_state(Placement* place) {
  Index total = 0;
  const Index pad = kAlign / sizeof(float);
  for (auto& p : params_) total += 2 * ((p.value.numel() + pad - 1) / pad * pad);
  arena_.reserve(total, place);
  m_.clear();
  v_.clear();
  for (auto& p : params_) {
    m_.push_back(arena_.take(Shape{p.value.numel()}));
    v_.push_back(arena_.take(Shape{p.value.numel()}));
  }
}

void Adam::set_backend(Backend& b) {
  if (&b == be_) return;
  be_ = &b;
  // The moments live where the parameters do: in the backend's memory (zeroed, as is the state).
  if (b.placement() != arena_.placement()) {
    reserve_state(b.placement());
    std::fill(steps_.begin(), steps_.end(), 0);
  }
}

AdamHyper& Adam::group(int g) {
  if (g < 0 || g >= n_groups())
    throw std::out_of_range("Adam: group " + std::to_string(g) + " outside [0, " +
                            std::to_string(n_groups()) + ")");
  return hyper_[g];
}
const AdamHyper& Adam::group(int g) const { return const_cast<Adam*>(this)->group(g); }

void Adam::set_lr(double lr) {
  for (auto& h : hyper_) h.lr = lr;
}
void Adam::set_lrs(const std::vector<double>& lrs) {
  if ((int)lrs.size() != n_groups())
    throw std::invalid_argument("Adam::set_lrs: " + std::to_string(lrs.size()) +
                                " values for " + std::to_string(n_groups()) + " groups");
  for (int g = 0; g < n_groups(); ++g) hyper_[g].lr = lrs[g];
}
void Adam::set_mom(double mom) {
  for (auto& h : hyper_) h.mom = mom;
}
void Adam::set_wd(double wd) {
  for (auto& h : hyper_) h.wd = wd;
}
void Adam::set_wds(const std::vector<double>& wds) {
  if ((int)wds.size() != n_groups())
    throw std::invalid_argument("Adam::set_wds: " + std::to_string(wds.size()) +
                                " values for " + std::to_string(n_groups()) + " groups");
  for (int g = 0; g < n_groups(); ++g) hyper_[g].wd = wds[g];
}

void Adam::freeze_to(int n) {
  int G = n_groups();
  int idx = n >= 0 ? n : G + n;
  if (idx < 0) idx = 0;
  for (int g = 0; g < G; ++g) hyper_[g].frozen = g < idx;
  clear_state();
}

int Adam::frozen_idx() const {
  for (int g = 0; g < n_groups(); ++g)
    if (!hyper_[g].frozen) return g;
  return n_groups();
}

void Adam::clear_state() {
  arena_.zero_all();
  std::fill(steps_.begin(), steps_.end(), 0);
}

void Adam::zero_grad() {
  for (auto& p : params_)
    if (!hyper_[p.group].frozen) placed::zero_in(arena_.placement(), p.grad);
}

ew::AdamScalars adam_scalars(const AdamHyper& h, std::int64_t step, bool do_wd) {
  // Scalars in double, applied in float (like torch's float32 kernels).
  const double debias1 = 1.0 - std::pow(h.mom, (double)step);
  const double debias2 = 1.0 - std::pow(h.sqr_mom, (double)step);
  ew::AdamScalars s;
  s.decay = (do_wd && h.wd != 0) ? (float)(1.0 - h.lr * h.wd) : 1.0f;
  s.mom = (float)h.mom, s.one_m_mom = (float)(1.0 - h.mom);
  s.sqr = (float)h.sqr_mom, s.one_m_sqr = (float)(1.0 - h.sqr_mom);
  s.step_size = (float)(h.lr / debias1);
  s.inv_debias2 = (float)(1.0 / debias2);
  s.eps = (float)h.eps;
  return s;
}

void Adam::step_param(std::size_t i, const AdamHyper& h) {
  const Param& p = params_[i];
  const std::int64_t step = ++steps_[i];
  // One fused pass (nn::ew::adam_update per element): decay, both moments, update.
  be_->f32().adam_step(p.value, p.grad, m_[i], v_[i], adam_scalars(h, step, p.do_wd));
}

void Adam::step() {
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const AdamHyper& h = hyper_[params_[i].group];
    if (h.frozen) continue;
    step_param(i, h);
  }
}

// ---- state serialisation ------------------------------------------------------------------
namespace {
constexpr char kMagic[8] = {'I', 'N', 'S', 'P', 'A', 'D', 'A', 'M'};
constexpr std::uint32_t kVersion = 1;

void put_bytes(std::vector<std::uint8_t>& b, const void* p, std::size_t n) {
  const std::size_t at = b.size();
  b.resize(at + n);
  if (n) std::memcpy(b.data() + at, p, n);
}
template <typename T>
void put(std::vector<std::uint8_t>& b, const T& x) {
  put_bytes(b, &x, sizeof(T));
}

struct Reader {
  const std::uint8_t* data;
  std::size_t size, off = 0;
  void need(std::size_t n, const char* what) {
    if (n > size - off)
      throw std::invalid_argument("Adam::load_state: truncated buffer reading " +
                                  std::string(what) + " at offset " + std::to_string(off) +
                                  " (need " + std::to_string(n) + " bytes, " +
                                  std::to_string(size - off) + " left)");
  }
  template <typename T>
  T get(const char* what) {
    need(sizeof(T), what);
    T x;
    std::memcpy(&x, data + off, sizeof(T));
    off += sizeof(T);
    return x;
  }
};
}  // namespace

std::vector<std::uint8_t> Adam::save_state() const {
  std::vector<std::uint8_t> b;
  put_bytes(b, kMagic, 8);
  put(b, kVersion);
  put(b, (std::uint32_t)n_groups());
  for (const auto& h : hyper_) {
    put(b, h.lr);
    put(b, h.mom);
    put(b, h.sqr_mom);
    put(b, h.eps);
    put(b, h.wd);
    put(b, (std::uint8_t)h.frozen);
  }
  put(b, (std::uint64_t)params_.size());
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const auto& name = params_[i].name;
    put(b, (std::uint32_t)name.size());
    put_bytes(b, name.data(), name.size());
    put(b, (std::int64_t)params_[i].value.numel());
    put(b, steps_[i]);
    if (Placement* place = arena_.placement()) {  // the moments are in the backend's memory
      const std::size_t nb = sizeof(float) * (std::size_t)m_[i].numel(), at = b.size();
      b.resize(at + 2 * nb);
      place->download(b.data() + at, m_[i].data, nb);
      place->download(b.data() + at + nb, v_[i].data, nb);
    } else {
      put_bytes(b, m_[i].data, sizeof(float) * m_[i].numel());
      put_bytes(b, v_[i].data, sizeof(float) * v_[i].numel());
    }
  }
  return b;
}

void Adam::load_state(const std::uint8_t* data, std::size_t size) {
  Reader r{data, size};
  r.need(8, "magic");
  if (std::memcmp(data, kMagic, 8) != 0)
    throw std::invalid_argument("Adam::load_state: not an optimizer state (bad magic at offset 0)");
  r.off = 8;
  auto version = r.get<std::uint32_t>("version");
  if (version != kVersion)
    throw std::invalid_argument("Adam::load_state: unsupported version " + std::to_string(version) +
                                " (this build reads version " + std::to_string(kVersion) + ")");
  auto G = r.get<std::uint32_t>("group count");
  if ((int)G != n_groups())
    throw std::invalid_argument("Adam::load_state: state has " + std::to_string(G) +
                                " parameter groups, the model has " + std::to_string(n_groups()));
  std::vector<AdamHyper> hy(G);
  for (auto& h : hy) {
    h.lr = r.get<double>("lr");
    h.mom = r.get<double>("mom");
    h.sqr_mom = r.get<double>("sqr_mom");
    h.eps = r.get<double>("eps");
    h.wd = r.get<double>("wd");
    h.frozen = r.get<std::uint8_t>("frozen") != 0;
  }
  auto P = r.get<std::uint64_t>("parameter count");
  if (P != params_.size())
    throw std::invalid_argument("Adam::load_state: state has " + std::to_string(P) +
                                " parameters, the model has " + std::to_string(params_.size()));
  // Validate everything before touching our own state.
  struct Entry {
    std::int64_t step;
    std::size_t off;
  };
  std::vector<Entry> entries(P);
  for (std::size_t i = 0; i < P; ++i) {
    auto len = r.get<std::uint32_t>("name length");
    r.need(len, "parameter name");
    std::string name(reinterpret_cast<const char*>(data + r.off), len);
    r.off += len;
    if (name != params_[i].name)
      throw std::invalid_argument("Adam::load_state: parameter " + std::to_string(i) + " is '" +
                                  name + "' in the state but '" + params_[i].name +
                                  "' in the model");
    auto numel = r.get<std::int64_t>("parameter size");
    if (numel != params_[i].value.numel())
      throw std::invalid_argument("Adam::load_state: parameter '" + name + "' has " +
                                  std::to_string(numel) + " elements in the state but " +
                                  std::to_string(params_[i].value.numel()) + " in the model");
    entries[i].step = r.get<std::int64_t>("step counter");
    if (entries[i].step < 0)
      throw std::invalid_argument("Adam::load_state: negative step counter for '" + name + "'");
    std::size_t bytes = 2 * sizeof(float) * (std::size_t)numel;
    r.need(bytes, "moments");
    entries[i].off = r.off;
    r.off += bytes;
  }
  if (r.off != size)
    throw std::invalid_argument("Adam::load_state: " + std::to_string(size - r.off) +
                                " trailing bytes after the last parameter");
  hyper_ = hy;
  for (std::size_t i = 0; i < P; ++i) {
    steps_[i] = entries[i].step;
    std::size_t nb = sizeof(float) * m_[i].numel();
    if (Placement* place = arena_.placement()) {
      place->upload(m_[i].data, data + entries[i].off, nb);
      place->upload(v_[i].data, data + entries[i].off + nb, nb);
    } else {
      std::memcpy(m_[i].data, data + entries[i].off, nb);
      std::memcpy(v_[i].data, data + entries[i].off + nb, nb);
    }
  }
}

}  // namespace nn
