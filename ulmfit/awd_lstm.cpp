// ulmfit/awd_lstm.cpp — AWD-LSTM encoder and LM head (see ulmfit/awd_lstm.h).
#include "ulmfit/awd_lstm.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "nn/backend.h"
#include "nn/dropout.h"
#include "nn/embedding.h"
#include "nn/gemm_kernels.h"
#include "nn/loss.h"
#include "nn/placed.h"

namespace ulmfit {

using nn::CView;
using nn::Shape;
using nn::Tensor;
using nn::View;

using nn::placed::copy_in;
using nn::placed::ensure;
using nn::placed::present;
using nn::placed::scratch;
using nn::placed::upload_in;
using nn::placed::zero_in;

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------------------------
template <typename T>
AwdLstmEncoderT<T>::AwdLstmEncoderT(const ModelConfig& cfg, Index extra) : cfg_(cfg) {
  cfg_.validate();
  const int L = (int)cfg_.n_layers;
  Index pad = nn::kAlign / sizeof(T);
  auto sz = [&](Index n) { return (n + pad - 1) / pad * pad; };
  Index total = sz(cfg_.vocab_size * cfg_.emb_sz) + sz(extra) + 64 * pad;
  for (int l = 0; l < L; ++l) {
    Index h = cfg_.layer_hidden(l), in = cfg_.layer_input(l);
    total += sz(4 * h * h) + sz(4 * h * in) + 2 * sz(4 * h);
  }
  values_.reserve(total);
  grads_.reserve(total);
  emb_ = values_.take({cfg_.vocab_size, cfg_.emb_sz});
  demb_ = grads_.take({cfg_.vocab_size, cfg_.emb_sz});
  for (int l = 0; l < L; ++l) {
    Index h = cfg_.layer_hidden(l), in = cfg_.layer_input(l);
    w_hh_.push_back(values_.take({4 * h, h}));
    dw_hh_.push_back(grads_.take({4 * h, h}));
    w_ih_.push_back(values_.take({4 * h, in}));
    dw_ih_.push_back(grads_.take({4 * h, in}));
    b_ih_.push_back(values_.take({4 * h}));
    db_ih_.push_back(grads_.take({4 * h}));
    b_hh_.push_back(values_.take({4 * h}));
    db_hh_.push_back(grads_.take({4 * h}));
  }
  train_rnn_.assign(L, true);
  weff_.resize(L);
  dweff_.resize(L);
  reset();
}

template <typename T>
std::pair<View<T>, View<T>> AwdLstmEncoderT<T>::take_extra(Shape s) {
  if (placement()) throw std::logic_error("AWD-LSTM take_extra: after set_backend to another memory");
  return {values_.take(s), grads_.take(s)};
}

template <typename T>
void AwdLstmEncoderT<T>::set_backend(nn::Backend& b) {
  nn::Placement* from = be_->placement();
  nn::Placement* to = b.placement();
  if (to == from) {
    be_ = &b;
    return;
  }
  if (to && !std::is_same_v<T, float>)
    throw std::invalid_argument(std::string("AWD-LSTM: double models run on the CPU only, not ") + b.name());
  require_float_recurrent("set_backend");
  if (to && recurrent_precision() != RecurrentPrecision::f32)
    throw std::invalid_argument("AWD-LSTM: half-precision or int8 serving copies are CPU only");
  if (from) sync_to_host();  // the current values back into the host copy first
  T* old_v = from ? dvalues_.base() : values_.base();
  T* old_g = from ? dgrads_.base() : grads_.base();
  be_ = &b;
  if (to) {
    dvalues_.reserve(values_.capacity(), to);
    dgrads_.reserve(grads_.capacity(), to);  // zero gradients
    if (values_.used()) dvalues_.take({values_.used()});
    if (grads_.used()) dgrads_.take({grads_.used()});
    sync_to_device();
  } else {
    dvalues_ = nn::Arena<T>();
    dgrads_ = nn::Arena<T>();
  }
  T* new_v = to ? dvalues_.base() : values_.base();
  T* new_g = to ? dgrads_.base() : grads_.base();
  auto rv = [&](View<T>& v) { v.data = new_v + (v.data - old_v); };
  auto rg = [&](View<T>& v) { v.data = new_g + (v.data - old_g); };
  rv(emb_);
  rg(demb_);
  for (int l = 0; l < cfg_.n_layers; ++l) {
    rv(w_ih_[l]), rv(w_hh_[l]), rv(b_ih_[l]), rv(b_hh_[l]);
    rg(dw_ih_[l]), rg(dw_hh_[l]), rg(db_ih_[l]), rg(db_hh_[l]);
  }
  for (auto& t : weff_) t.place(to);
  for (auto& t : dweff_) t.place(to);
  state_.reset(cfg_, 0, to);
  ws_ = AwdLstmWorkspace<T>();
}

template <typename T>
void AwdLstmEncoderT<T>::sync_to_host() {
  if (nn::Placement* p = placement())
    p->download(values_.base(), dvalues_.base(), sizeof(T) * (std::size_t)values_.used());
}

template <typename T>
void AwdLstmEncoderT<T>::sync_to_device() {
  if (nn::Placement* p = placement())
    p->upload(dvalues_.base(), values_.base(), sizeof(T) * (std::size_t)values_.used());
}

namespace {
// v, a view into arena from_v or from_g, at the same offset in to_v or to_g.
template <typename T>
View<T> same_offset(View<T> v, const nn::Arena<T>& from_v, const nn::Arena<T>& from_g,
                    const nn::Arena<T>& to_v, const nn::Arena<T>& to_g, const char* what) {
  auto inside = [&](const nn::Arena<T>& a) {
    return v.data >= a.base() && v.data + v.numel() <= a.base() + a.capacity();
  };
  if (inside(from_v)) return View<T>(to_v.base() + (v.data - from_v.base()), v.shape);
  if (inside(from_g)) return View<T>(to_g.base() + (v.data - from_g.base()), v.shape);
  throw std::logic_error(std::string("AWD-LSTM ") + what + ": a view outside the model's arenas");
}
}  // namespace

template <typename T>
View<T> AwdLstmEncoderT<T>::host_of(View<T> v) const {
  if (!placement() || v.data == nullptr) return v;
  return same_offset(v, dvalues_, dgrads_, values_, grads_, "host_of");
}

template <typename T>
View<T> AwdLstmEncoderT<T>::device_of(View<T> v) const {
  if (!placement() || v.data == nullptr) return v;
  return same_offset(v, values_, grads_, dvalues_, dgrads_, "device_of");
}

template <typename T>
void AwdLstmEncoderT<T>::init(nn::Rng& rng) {
  for (auto& v : host_of(emb_)) v = (T)rng.uniform(-0.1, 0.1);
  for (int l = 0; l < cfg_.n_layers; ++l) {
    double s = 1.0 / std::sqrt((double)cfg_.layer_hidden(l));
    for (auto* t : {&w_ih_[l], &w_hh_[l], &b_ih_[l], &b_hh_[l]})
      for (auto& v : host_of(*t)) v = (T)rng.uniform(-s, s);
  }
  sync_to_device();
  reset();
}

template <typename T>
std::vector<NamedTensor<T>> AwdLstmEncoderT<T>::tensors() {
  auto v = compute_tensors();
  if (placement())
    for (auto& t : v) t.value = host_of(t.value), t.grad = host_of(t.grad);
  return v;
}

template <typename T>
std::vector<NamedTensor<T>> AwdLstmEncoderT<T>::compute_tensors() {
  require_float_recurrent("tensors");
  std::vector<NamedTensor<T>> v;
  v.push_back({"encoder.weight", emb_, demb_, -1, true});
  for (int l = 0; l < cfg_.n_layers; ++l) {
    std::string r = "rnns." + std::to_string(l) + ".";
    v.push_back({r + "weight_hh_l0_raw", w_hh_[l], dw_hh_[l], l, true});
    v.push_back({r + "module.weight_ih_l0", w_ih_[l], dw_ih_[l], l, true});
    v.push_back({r + "module.bias_ih_l0", b_ih_[l], db_ih_[l], l, true});
    v.push_back({r + "module.bias_hh_l0", b_hh_[l], db_hh_[l], l, true});
  }
  return v;
}

template <typename T>
nn::LstmParams<T> AwdLstmEncoderT<T>::lstm_params(int l) const {
  nn::LstmParams<T> p{w_ih_[l], w_hh_[l], b_ih_[l], b_hh_[l]};
  if (!whh_half_.empty()) p.w_hh_half = &whh_half_[l];
  if (!whh_i8_.empty()) p.w_hh_i8 = &whh_i8_[l];
  if (!whh_w8a8_.empty()) {
    p.w_hh_w8a8 = &whh_w8a8_[l];
    p.w_ih_w8a8 = &wih_w8a8_[l];
  }
  return p;
}

template <typename T>
void AwdLstmEncoderT<T>::require_float_recurrent(const char* what) const {
  if (!f32_whh_)
    throw std::logic_error(std::string("AWD-LSTM ") + what +
                           ": this model was loaded for serving with half-precision or int8 "
                           "recurrent weights only; load it again without --fp16 / --int8 / "
                           "--w8a8");
}

template <typename T>
template <typename M>
void AwdLstmEncoderT<T>::check_adopted(const std::vector<M>& w, const char* what) const {
  if ((int)w.size() != cfg_.n_layers)
    throw std::invalid_argument("AWD-LSTM: " + std::to_string(w.size()) + " " + what +
                                " W_hh for " + std::to_string(cfg_.n_layers) + " layers");
  for (int l = 0; l < cfg_.n_layers; ++l)
    if (w[l].rows != w_hh_[l].dim(0) || w[l].cols != w_hh_[l].dim(1))
      throw std::invalid_argument("AWD-LSTM: " + std::string(what) + " W_hh of layer " +
                                  std::to_string(l) + " is [" + std::to_string(w[l].rows) + ", " +
                                  std::to_string(w[l].cols) + "], expected " +
                                  w_hh_[l].shape.str());
}

template <typename T>
void AwdLstmEncoderT<T>::adopt_half_recurrent(std::vector<nn::HalfMatrix> w) {
  check_adopted(w, "half-precision");
  whh_i8_.clear();
  whh_half_ = std::move(w);
  for (auto& m : whh_half_) m.to_panels();  // the serving layout (nn/half.h)
  f32_whh_ = false;
}

template <typename T>
void AwdLstmEncoderT<T>::adopt_int8_recurrent(std::vector<nn::Int8Matrix> w, bool w8a8) {
  check_adopted(w, "int8");
  whh_half_.clear();
  whh_i8_.clear();
  whh_w8a8_.clear();
  wih_w8a8_.clear();
  if (w8a8) {
    pack_w8a8(std::move(w));
  } else {
    whh_i8_ = std::move(w);
    for (auto& m : whh_i8_) m.to_panels();  // the serving layout (nn/int8.h)
  }
  f32_whh_ = false;
}

template <typename T>
void AwdLstmEncoderT<T>::pack_w8a8(std::vector<nn::Int8Matrix> w_hh) {
  if constexpr (!std::is_same_v<T, float>) {
    throw std::invalid_argument("AWD-LSTM: w8a8 needs a float model");
  } else {
    if (!nn::kernels::vnni_usable())
      throw std::invalid_argument(
          "w8a8 (int8 activations) needs a CPU with AVX512-VNNI, and this one has none (or "
          "INSPIRE_NO_VNNI / INSPIRE_NO_AVX512 is set); use int8 weights alone (--int8)");
    for (int l = 0; l < cfg_.n_layers; ++l) {
      const Index h = w_hh_[l].dim(1);
      whh_w8a8_.push_back(nn::Int8Packed::from(w_hh[l], h));
      wih_w8a8_.push_back(nn::Int8Packed::from(nn::Int8Matrix::from(w_ih_[l]), h));
    }
  }
}

template <typename T>
void AwdLstmEncoderT<T>::set_recurrent_precision(RecurrentPrecision prec) {
  require_float_recurrent("set_recurrent_precision");
  if (placement() && prec != RecurrentPrecision::f32)
    throw std::invalid_argument("AWD-LSTM: half-precision or int8 serving copies are CPU only");
  whh_half_.clear();
  whh_i8_.clear();
  whh_w8a8_.clear();
  wih_w8a8_.clear();
  if (prec == RecurrentPrecision::f32) return;
  if constexpr (!std::is_same_v<T, float>) {
    throw std::invalid_argument("AWD-LSTM: half-precision or int8 recurrent weights need a float model");
  } else {
    std::vector<nn::Int8Matrix> q;
    for (int l = 0; l < cfg_.n_layers; ++l) {
      if (prec == RecurrentPrecision::f16) {
        whh_half_.push_back(nn::HalfMatrix::from(w_hh_[l]));
        whh_half_.back().to_panels();  // the serving layout (nn/half.h)
      } else {
        q.push_back(nn::Int8Matrix::from(w_hh_[l]));
      }
    }
    if (prec == RecurrentPrecision::w8a8)
      pack_w8a8(std::move(q));
    else if (prec == RecurrentPrecision::i8) {
      whh_i8_ = std::move(q);
      for (auto& m : whh_i8_) m.to_panels();  // the serving layout (nn/int8.h)
    }
  }
}
template <typename T>
nn::LstmGrads<T> AwdLstmEncoderT<T>::lstm_grads(int l) const {
  return {dw_ih_[l], dw_hh_[l], db_ih_[l], db_hh_[l]};
}

template <typename T>
void AwdLstmEncoderT<T>::set_trainable(bool embedding, const std::vector<bool>& rnn) {
  if ((int)rnn.size() != cfg_.n_layers)
    throw std::invalid_argument("AWD-LSTM set_trainable: " + std::to_string(rnn.size()) +
                                " flags for " + std::to_string(cfg_.n_layers) + " layers");
  train_emb_ = embedding;
  train_rnn_ = rnn;
}

template <typename T>
void AwdLstmState<T>::reset(const ModelConfig& cfg, Index bs, nn::Placement* place) {
  h.resize(cfg.n_layers);
  c.resize(cfg.n_layers);
  for (int l = 0; l < cfg.n_layers; ++l) {
    for (auto* t : {&h[l], &c[l]})
      if (t->placement() != place) t->place(place);
    h[l].resize({bs, cfg.layer_hidden(l)});  // zero-filled
    c[l].resize({bs, cfg.layer_hidden(l)});
  }
}

template <typename T>
void AwdLstmState<T>::resize(const ModelConfig& cfg, Index bs, nn::Placement* place) {
  if ((int)h.size() != cfg.n_layers || (int)c.size() != cfg.n_layers ||
      h[0].placement() != place) {
    reset(cfg, bs, place);
    return;
  }
  const Index old = batch();
  if (bs == old) return;
  for (int l = 0; l < cfg.n_layers; ++l) {
    const Index H = cfg.layer_hidden(l), keep = std::min(bs, old);
    for (auto* s : {&h[l], &c[l]}) {
      if (s->shape() != Shape{old, H})
        throw std::invalid_argument("AWD-LSTM state: layer " + std::to_string(l) + " is " +
                                    s->shape().str() + ", expected " + Shape{old, H}.str());
      s->resize_keep(Shape{bs, H}, keep * H);
    }
  }
}

template <typename T>
void AwdLstmEncoderT<T>::reset() {
  state_.reset(cfg_, 0, placement());
}

template <typename T>
AwdLstmState<T> AwdLstmEncoderT<T>::make_state(Index bs) const {
  AwdLstmState<T> st;
  st.reset(cfg_, bs, placement());
  return st;
}

template <typename T>
void AwdLstmEncoderT<T>::check_ids(CView<TokenId> ids) const {
  if (ids.ndim() != 2)
    throw std::invalid_argument("AWD-LSTM: token ids must be [bs, sl], got " + ids.shape.str());
  const Index sl = ids.dim(1);
  for (Index i = 0; i < ids.numel(); ++i)
    if (ids[i] < 0 || ids[i] >= cfg_.vocab_size)
      throw std::out_of_range("AWD-LSTM: token id " + std::to_string(ids[i]) + " at [" +
                              std::to_string(i / sl) + ", " + std::to_string(i % sl) +
                              "] is outside the vocabulary [0, " + std::to_string(cfg_.vocab_size) +
                              ")");
}

template <typename T>
void AwdLstmEncoderT<T>::sample_masks(AwdLstmCache<T>& cache, const ForwardOptions& opt) const {
  const Index bs = cache.bs;
  const int L = (int)cfg_.n_layers;
  auto& m = cache.masks;
  m.weight.resize(L);
  m.hidden.resize(L > 1 ? L - 1 : 0);
  if (!opt.training) {
    m.embed = Tensor<T>();
    m.input = Tensor<T>();
    for (auto& w : m.weight) w = Tensor<T>();
    for (auto& h : m.hidden) h = Tensor<T>();
    return;
  }
  auto want = [this](Tensor<T>& t, Shape s, double p, const char* what, const ForwardOptions& o) {
    if (o.reuse_masks) {
      if (present(t) && t.shape() != s)
        throw std::invalid_argument(std::string("AWD-LSTM reuse_masks: ") + what + " mask is " +
                                    t.shape().str() + ", expected " + s.str());
      return;
    }
    if (p <= 0) {
      t = Tensor<T>();
      return;
    }
    if (!o.rng) throw std::invalid_argument("AWD-LSTM forward: training needs an Rng");
    ensure(t, s, placement());
    be_->ops<T>().dropout_mask(*o.rng, p, t.view());
  };
  want(m.embed, {cfg_.vocab_size}, cfg_.embed_p, "embed", opt);
  want(m.input, {bs, cfg_.emb_sz}, cfg_.input_p, "input", opt);
  for (int l = 0; l < L; ++l) {
    Index H = cfg_.layer_hidden(l);
    want(m.weight[l], {4 * H, H}, cfg_.weight_p, "weight", opt);
    if (l < L - 1) want(m.hidden[l], {bs, H}, cfg_.hidden_p, "hidden", opt);
  }
}


template <typename T>
void AwdLstmEncoderT<T>::encode(CView<TokenId> ids, AwdLstmState<T>& state, View<T> out,
                                AwdLstmCache<T>* cache, AwdLstmWorkspace<T>* ws,
                                const ForwardOptions& opt, const Index* lengths) const {
  check_ids(ids);
  const Index bs = ids.dim(0), sl = ids.dim(1), E = cfg_.emb_sz;
  const int L = (int)cfg_.n_layers;
  nn::check_shape(out.shape, Shape{bs, sl, E}, cache ? "AWD-LSTM forward output" : "AWD-LSTM infer output");
  nn::Ops<T>& ops = be_->ops<T>();
  nn::Placement* place = placement();  // nullptr: host memory (the CPU)
  state.resize(cfg_, bs, place);
  AwdLstmMasks<T>* m = nullptr;  // null: eval (the serving path)
  View<T> x;                     // layer input
  CView<TokenId> dids = ids;     // the ids where the ops read them
  if (cache) {
    cache->bs = bs, cache->sl = sl, cache->training = opt.training;
    if (place) {
      dids = upload_in(place, cache->ids, ids);
    } else {
      ensure(cache->ids, Shape{bs, sl});
      cache->ids.view().copy_from(ids);
    }
    sample_masks(*cache, opt);
    m = &cache->masks;
    ensure(cache->x0, Shape{bs, sl, E}, place);
    x = cache->x0.view();
    cache->inputs.resize(L);
    cache->outputs.resize(L);
    cache->lstm.resize(L);
  } else {
    dids = upload_in(place, ws->ids, ids);
    x = scratch(ws->a, Shape{bs, sl, E}, place);
  }
  // 1-2. embedding (with whole-row dropout) and input dropout
  ops.embedding_forward(dids, emb_, m ? CView<T>(m->embed.view()) : CView<T>(), x);
  if (m && present(m->input)) ops.rnn_dropout_forward(x, m->input.view(), x);
  // 3. the LSTM stack, from `state` and back into it
  Tensor<T>* bufs[2] = {ws ? &ws->a : nullptr, ws ? &ws->b : nullptr};
  int cur = 0;
  for (int l = 0; l < L; ++l) {
    const Index H = cfg_.layer_hidden(l);
    nn::LstmParams<T> p = lstm_params(l);
    View<T> h = state.h[l].view(), c = state.c[l].view();
    if (!cache) {  // serving: ping-pong between two workspace buffers, the last layer into out
      View<T> y = l == L - 1 ? out : scratch(*bufs[1 - cur], Shape{bs, sl, H}, place);
      ops.lstm_infer(p, x, h, c, y, ws->scratch, lengths);
      x = y;
      cur = 1 - cur;
      continue;
    }
    if (present(m->weight[l])) {
      ensure(weff_[l], Shape{4 * H, H}, place);
      ops.weight_dropout_forward(w_hh_[l], m->weight[l].view(), weff_[l].view());
      p.w_hh = weff_[l].view();
    }
    ensure(cache->outputs[l], Shape{bs, sl, H}, place);
    ops.lstm_forward(p, x, h, c, cache->outputs[l].view(), h, c, cache->lstm[l]);
    if (l < L - 1) {
      ensure(cache->inputs[l + 1], Shape{bs, sl, H}, place);
      x = cache->inputs[l + 1].view();
      if (present(m->hidden[l]))
        ops.rnn_dropout_forward(cache->outputs[l].view(), m->hidden[l].view(), x);
      else
        copy_in<T>(place, x, cache->outputs[l].view());
    }
  }
  if (cache) copy_in<T>(place, out, cache->outputs[L - 1].view());
}

template <typename T>
void AwdLstmEncoderT<T>::forward(CView<TokenId> ids, AwdLstmState<T>& state, View<T> out,
                                 AwdLstmCache<T>& cache, const ForwardOptions& opt) {
  require_float_recurrent("forward");
  encode(ids, state, out, &cache, nullptr, opt);
}

template <typename T>
void AwdLstmEncoderT<T>::infer(CView<TokenId> ids, AwdLstmState<T>& state, View<T> out,
                               AwdLstmWorkspace<T>& ws) const {
  encode(ids, state, out, nullptr, &ws, ForwardOptions{false, nullptr, false});
}

template <typename T>
void AwdLstmEncoderT<T>::infer(CView<TokenId> ids, AwdLstmState<T>& state, View<T> out,
                               AwdLstmWorkspace<T>& ws, const Index* lengths) const {
  encode(ids, state, out, nullptr, &ws, ForwardOptions{false, nullptr, false}, lengths);
}

template <typename T>
void AwdLstmEncoderT<T>::backward(AwdLstmCache<T>& cache, CView<T> dout) {
  require_float_recurrent("backward");
  const Index bs = cache.bs, sl = cache.sl;
  const int L = (int)cfg_.n_layers;
  nn::check_shape(dout.shape, Shape{bs, sl, cfg_.emb_sz}, "AWD-LSTM backward dout");
  if ((int)cache.lstm.size() != L) throw std::invalid_argument("AWD-LSTM backward: empty cache");
  // The lowest part that needs a gradient; nothing below it is computed.
  int lowest = L;  // L: nothing trainable
  for (int l = L - 1; l >= 0; --l)
    if (train_rnn_[l]) lowest = l;
  if (train_emb_) lowest = -1;
  if (lowest == L) return;
  auto& m = cache.masks;
  nn::Ops<T>& ops = be_->ops<T>();
  Index maxw = cfg_.emb_sz;
  for (int l = 0; l < L; ++l) maxw = std::max(maxw, cfg_.layer_hidden(l));
  // d: gradient w.r.t. the current layer's output (ping-pong between two scratch buffers)
  nn::Placement* place = placement();
  Tensor<T>* bufs[2] = {&cache.scratch_a, &cache.scratch_b};
  for (auto* b : bufs) scratch(*b, Shape{bs * sl * maxw}, place);
  View<T> d(bufs[0]->data(), Shape{bs, sl, cfg_.emb_sz});
  copy_in<T>(place, d, dout);
  int cur = 0;
  for (int l = L - 1; l >= 0 && l >= lowest; --l) {
    const Index H = cfg_.layer_hidden(l), in = cfg_.layer_input(l);
    nn::LstmParams<T> p = lstm_params(l);
    nn::LstmGrads<T> g;
    const bool masked = m.weight.size() == (size_t)L && present(m.weight[l]);
    if (masked) {
      ensure(weff_[l], Shape{4 * H, H}, place);
      ops.weight_dropout_forward(w_hh_[l], m.weight[l].view(), weff_[l].view());
      p.w_hh = weff_[l].view();
    }
    if (train_rnn_[l]) {
      g = lstm_grads(l);
      if (masked) {
        ensure(dweff_[l], Shape{4 * H, H}, place);
        zero_in(place, dweff_[l].view());
        g.w_hh = dweff_[l].view();
      }
    }
    const bool need_dx = l > lowest;
    View<T> dx;
    if (need_dx) dx = View<T>(bufs[1 - cur]->data(), Shape{bs, sl, in});
    ops.lstm_backward(p, cache.lstm[l], d, {}, {}, dx, {}, {}, g);
    if (train_rnn_[l] && masked)
      ops.weight_dropout_backward(dweff_[l].view(), m.weight[l].view(), dw_hh_[l]);
    if (!need_dx) break;
    cur = 1 - cur;
    d = dx;
    // through the dropout in front of this layer
    if (l > 0) {
      if (m.hidden.size() == (size_t)(L - 1) && present(m.hidden[l - 1]))
        ops.rnn_dropout_backward(d, m.hidden[l - 1].view(), d);
    } else {
      if (present(m.input)) ops.rnn_dropout_backward(d, m.input.view(), d);
      ops.embedding_backward(cache.ids.view(), m.embed.view(), d, (TokenId)cfg_.pad_idx, demb_);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Language model
// ---------------------------------------------------------------------------------------------
template <typename T>
AwdLstmLMT<T>::AwdLstmLMT(const ModelConfig& cfg) : enc_(cfg, cfg.vocab_size + 64) {
  auto [v, g] = enc_.take_extra({cfg.vocab_size});
  bias_ = v, dbias_ = g;
}

template <typename T>
void AwdLstmLMT<T>::init(nn::Rng& rng) {
  enc_.init(rng);
  bias_.zero();
  enc_.sync_to_device();
}

template <typename T>
std::vector<NamedTensor<T>> AwdLstmLMT<T>::tensors() {
  auto v = enc_.tensors();
  for (auto& t : v) t.key = "0." + t.key;
  v.push_back({"1.decoder.bias", bias_, dbias_, -1, false});
  return v;
}

template <typename T>
std::vector<NamedTensor<T>> AwdLstmLMT<T>::compute_tensors() {
  auto v = enc_.compute_tensors();
  for (auto& t : v) t.key = "0." + t.key;
  v.push_back({"1.decoder.bias", enc_.device_of(bias_), enc_.device_of(dbias_), -1, false});
  return v;
}

template <typename T>
double AwdLstmLMT<T>::train_step(CView<TokenId> ids, CView<TokenId> targets,
                                 AwdLstmCache<T>& cache, const ForwardOptions& opt) {
  const ModelConfig& cfg = enc_.config();
  if (ids.ndim() != 2)
    throw std::invalid_argument("AWD-LSTM LM: ids must be [bs, sl], got " + ids.shape.str());
  if (targets.shape != ids.shape)
    throw std::invalid_argument("AWD-LSTM LM: targets " + targets.shape.str() +
                                " must have the shape of ids " + ids.shape.str());
  const Index bs = ids.dim(0), sl = ids.dim(1), E = cfg.emb_sz, V = cfg.vocab_size;
  nn::Placement* place = enc_.placement();
  ensure(out_, Shape{bs, sl, E}, place);
  enc_.forward(ids, out_.view(), cache, opt);
  const CView<TokenId> dtargets = upload_in(place, targets_, targets);
  const View<T> bias = enc_.device_of(bias_), dbias = enc_.device_of(dbias_);
  // output dropout
  auto& om = cache.masks.output;
  if (!opt.training) {
    om = Tensor<T>();
  } else if (!opt.reuse_masks) {
    if (cfg.output_p > 0) {
      if (!opt.rng) throw std::invalid_argument("AWD-LSTM LM: training needs an Rng");
      ensure(om, Shape{bs, E}, place);
      enc_.backend().template ops<T>().dropout_mask(*opt.rng, cfg.output_p, om.view());
    } else {
      om = Tensor<T>();
    }
  } else if (present(om) && om.shape() != Shape{bs, E}) {
    throw std::invalid_argument("AWD-LSTM reuse_masks: output mask is " + om.shape().str() +
                                ", expected " + Shape{bs, E}.str());
  }
  ensure(cache.dp, Shape{bs, sl, E}, place);
  if (present(om))
    enc_.backend().template ops<T>().rnn_dropout_forward(out_.view(), om.view(), cache.dp.view());
  else
    copy_in<T>(place, cache.dp.view(), out_.view());
  bool below = false;  // does anything below the decoder train?
  for (int l = 0; l < cfg.n_layers; ++l) below = below || enc_.rnn_trainable(l);
  below = below || enc_.embedding_trainable();
  const bool dec = enc_.embedding_trainable();  // decoder weight (tied) + bias share the group
  Index chunk = std::max<Index>(1, std::min(chunk_rows, bs * sl));
  ensure(logits_, Shape{chunk * V}, place);
  View<T> ddp = below ? View<T>(out_.data(), Shape{bs * sl, E}) : View<T>();  // reuse out_
  nn::LossResult r = enc_.backend().template ops<T>().lm_softmax_ce_forward_backward(
      cache.dp.view().reshape({bs * sl, E}), enc_.embedding(), bias,
      dtargets.reshape({bs * sl}), ddp, dec ? enc_.embedding_grad() : View<T>(),
      dec ? dbias : View<T>(), logits_.view(), chunk);
  if (below) {
    View<T> d = ddp.reshape({bs, sl, E});
    if (present(om)) enc_.backend().template ops<T>().rnn_dropout_backward(d, om.view(), d);
    enc_.backward(cache, d);
  }
  return r.loss;
}

template <typename T>
double AwdLstmLMT<T>::eval_loss(CView<TokenId> ids, CView<TokenId> targets) {
  const ModelConfig& cfg = enc_.config();
  if (ids.ndim() != 2 || targets.shape != ids.shape)
    throw std::invalid_argument("AWD-LSTM LM eval: ids " + ids.shape.str() + " and targets " +
                                targets.shape.str() + " must both be [bs, sl]");
  const Index bs = ids.dim(0), sl = ids.dim(1), E = cfg.emb_sz, V = cfg.vocab_size;
  nn::Placement* place = enc_.placement();
  ensure(out_, Shape{bs, sl, E}, place);
  enc_.infer(ids, out_.view());
  const CView<TokenId> dtargets = upload_in(place, targets_, targets);
  Index chunk = std::max<Index>(1, std::min(chunk_rows, bs * sl));
  ensure(logits_, Shape{chunk * V}, place);
  return enc_.backend().template ops<T>().lm_softmax_ce_forward(out_.view().reshape({bs * sl, E}), enc_.embedding(),
                                      enc_.device_of(bias_), dtargets.reshape({bs * sl}),
                                      logits_.view(), chunk)
      .loss;
}

template <typename T>
void AwdLstmLMT<T>::logits(CView<TokenId> ids, View<T> out, AwdLstmCache<T>& cache,
                           const ForwardOptions& opt) {
  const ModelConfig& cfg = enc_.config();
  if (ids.ndim() != 2)
    throw std::invalid_argument("AWD-LSTM LM: ids must be [bs, sl], got " + ids.shape.str());
  const Index bs = ids.dim(0), sl = ids.dim(1), E = cfg.emb_sz, V = cfg.vocab_size;
  nn::check_shape(out.shape, Shape{bs, sl, V}, "AWD-LSTM LM logits");
  if (enc_.placement())
    throw std::logic_error("AWD-LSTM LM logits: host output, CPU backend only");
  ensure(out_, Shape{bs, sl, E});
  if (opt.training) {
    enc_.forward(ids, out_.view(), cache, opt);
    auto& om = cache.masks.output;
    if (!opt.reuse_masks) {
      if (cfg.output_p > 0 && opt.rng) {
        ensure(om, Shape{bs, E});
        enc_.backend().template ops<T>().dropout_mask(*opt.rng, cfg.output_p, om.view());
      } else {
        om = Tensor<T>();
      }
    }
    if (present(om)) enc_.backend().template ops<T>().rnn_dropout_forward(out_.view(), om.view(), out_.view());
  } else {
    enc_.infer(ids, out_.view());
  }
  for (Index r = 0; r < bs * sl; ++r) std::copy_n(bias_.data, V, out.data + r * V);
  enc_.backend().template ops<T>().gemm(false, true, bs * sl, V, E, T(1), out_.data(), E, enc_.embedding().data, E, T(1),
           out.data, V);
}

template struct AwdLstmState<float>;
template struct AwdLstmState<double>;
template class AwdLstmEncoderT<float>;
template class AwdLstmEncoderT<double>;
template class AwdLstmLMT<float>;
template class AwdLstmLMT<double>;

// ---------------------------------------------------------------------------------------------
// Param lists
// ---------------------------------------------------------------------------------------------
std::vector<nn::Param> encoder_params(AwdLstmEncoder& enc, const std::string& prefix,
                                      int embedding_group, int first_rnn_group) {
  std::vector<nn::Param> ps;
  for (auto& t : enc.compute_tensors())
    ps.push_back({prefix + t.key, t.value, t.grad,
                  t.layer < 0 ? embedding_group : first_rnn_group + t.layer, t.do_wd});
  return ps;
}

std::vector<nn::Param> lm_params(AwdLstmLM& lm) {
  const int L = lm.config().n_layers;
  std::vector<nn::Param> ps;
  for (auto& t : lm.compute_tensors())
    ps.push_back({t.key, t.value, t.grad, t.layer < 0 ? L : t.layer, t.do_wd});
  return ps;
}

}  // namespace ulmfit
