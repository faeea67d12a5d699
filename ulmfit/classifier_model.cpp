// ulmfit/classifier_model.cpp — fastai's text classifier; see ulmfit/classifier_model.h.
#include "ulmfit/classifier_model.h"
#include "ulmfit/name_map.h"

#include <algorithm>
#include <type_traits>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "io/bundle.h"
#include "io/errors.h"
#include "nn/activation.h"
#include "nn/batchnorm_sync.h"
#include "nn/dropout.h"
#include "nn/embedding.h"
#include "nn/linear.h"
#include "nn/loss.h"
#include "nn/lstm.h"
#include "nn/placed.h"
#include "nn/pooling.h"

namespace ulmfit {

using nn::CView;
using nn::Shape;
using nn::Tensor;
using nn::View;

// ---- config ---------------------------------------------------------------------------------


// ---- helpers ----------------------------------------------------------------------------------
using nn::placed::copy_in;
using nn::placed::copy_rows;
using nn::placed::ensure;
using nn::placed::present;
using nn::placed::scratch;
using nn::placed::upload_in;

namespace {
// A classifier is built from a config of kind "classifier" (its head's sizes and dropouts).
void check_classifier_config(const ModelConfig& cfg) {
  if (cfg.kind != "classifier")
    throw std::invalid_argument("classifier model: the config is of kind \"" + cfg.kind +
                                "\", not \"classifier\"");
  cfg.validate();
}
template <typename T>
Index head_extra(const ModelConfig& cfg) {
  const Index pad = nn::kAlign / sizeof(T);
  auto sz = [&](Index n) { return (n + pad - 1) / pad * pad; };
  auto d = cfg.head_dims();
  Index total = 0;
  // BatchNorm weight, bias, running mean and variance; the Linear weight
  for (std::size_t i = 0; i + 1 < d.size(); ++i) total += 4 * sz(d[i]) + sz(d[i] * d[i + 1]);
  return total;
}
}  // namespace

// ---- model ------------------------------------------------------------------------------------

template <typename T>
ClassifierModelT<T>::ClassifierModelT(const ModelConfig& cfg)
    : cfg_((check_classifier_config(cfg), cfg)), enc_(cfg, head_extra<T>(cfg)) {
  auto d = cfg_.head_dims();
  blocks_.resize(d.size() - 1);
  for (std::size_t i = 0; i < blocks_.size(); ++i) {
    Block& b = blocks_[i];
    b.n_in = d[i], b.n_out = d[i + 1], b.p = cfg_.head_ps[i];
    std::tie(b.bn_w, b.dbn_w) = enc_.take_extra({b.n_in});
    std::tie(b.bn_b, b.dbn_b) = enc_.take_extra({b.n_in});
    std::tie(b.lin_w, b.dlin_w) = enc_.take_extra({b.n_out, b.n_in});
    b.running_mean = enc_.take_extra({b.n_in}).first;  // buffers: their gradient views unused
    b.running_var = enc_.take_extra({b.n_in}).first;
    b.num_batches_tracked.resize({1});
    nn::batchnorm_init<T>(b.bn_w, b.bn_b, b.running_mean, b.running_var);
  }
  emb_ = enc_.embedding();
  freeze_to(0);
}

template <typename T>
void ClassifierModelT<T>::init(nn::Rng& rng) {
  enc_.init(rng);
  for (auto& b : blocks_) {  // host views, then uploaded
    nn::batchnorm_init<T>(b.bn_w, b.bn_b, b.running_mean, b.running_var);
    b.num_batches_tracked[0] = 0;
    const double s = 1.0 / std::sqrt((double)b.n_in);
    for (auto& v : b.lin_w) v = (T)rng.uniform(-s, s);
  }
  sync_to_device();
}

template <typename T>
std::vector<NamedTensor<T>> ClassifierModelT<T>::tensors() {
  std::vector<NamedTensor<T>> out;
  for (auto& t : enc_.tensors()) {
    t.key = "0.module." + t.key;
    out.push_back(t);
  }
  for (std::size_t i = 0; i < blocks_.size(); ++i) {
    Block& b = blocks_[i];
    const std::string k = "1.layers." + std::to_string(i) + ".";
    const int head = (int)cfg_.n_layers;  // layer index used for the head
    out.push_back({k + "0.weight", b.bn_w, b.dbn_w, head, false});
    out.push_back({k + "0.bias", b.bn_b, b.dbn_b, head, false});
    out.push_back({k + "0.running_mean", b.running_mean, View<T>(), -2, false});
    out.push_back({k + "0.running_var", b.running_var, View<T>(), -2, false});
    // LinBnDrop: [BatchNorm, Dropout (only if p > 0), Linear, (ReLU)]
    out.push_back({k + (b.p > 0 ? "2" : "1") + ".weight", b.lin_w, b.dlin_w, head, true});
  }
  return out;
}

template <typename T>
std::vector<NamedTensor<T>> ClassifierModelT<T>::compute_tensors() {
  auto v = tensors();
  if (placement())
    for (auto& t : v) t.value = enc_.device_of(t.value), t.grad = enc_.device_of(t.grad);
  return v;
}

template <typename T>
void ClassifierModelT<T>::require_host(const char* what) const {
  if (placement())
    throw std::invalid_argument(std::string("classifier ") + what + ": the model is on the " +
                                enc_.backend().name() + " backend, where it only trains; serve it "
                                "on the CPU (set_backend(cpu_backend()) or load its bundle)");
}

template <typename T>
void ClassifierModelT<T>::freeze_to(int n) {
  const int G = n_groups();
  int idx = n >= 0 ? n : G + n;
  idx = std::clamp(idx, 0, G - 1);  // the head always trains
  frozen_idx_ = idx;
  std::vector<bool> rnn((int)cfg_.n_layers);
  for (int l = 0; l < (int)cfg_.n_layers; ++l) rnn[l] = group_trainable(l + 1);
  enc_.set_trainable(group_trainable(0), rnn);
}

template <typename T>
bool ClassifierModelT<T>::group_trainable(int g) const {
  return g >= frozen_idx_;
}

// ---- training / eval forward ------------------------------------------------------------------

template <typename T>
void ClassifierModelT<T>::forward(CView<TokenId> ids, View<T> logits, ClassifierCache<T>& cache,
                                  const ForwardOptions& opt) {
  enc_.check_ids(ids);
  const Index bs = ids.dim(0), sl = ids.dim(1), E = cfg_.emb_sz;
  const TokenId pad = (TokenId)cfg_.pad_idx;
  nn::check_shape(logits.shape, Shape{bs, cfg_.n_classes}, "classifier forward logits");
  if (bs < 1 || sl < 1) throw std::invalid_argument("classifier forward: empty batch " + ids.shape.str());
  cache.bs = bs, cache.sl = sl, cache.training = opt.training;
  cache.sync = opt.training ? opt.sync : nullptr;

  // 1. chunk plan (SentenceEncoder)
  cache.chunks.clear();
  Index T_kept = 0;
  for (Index i = 0; i < sl; i += cfg_.bptt) {
    typename ClassifierCache<T>::Chunk c;
    c.start = i;
    c.len = std::min(cfg_.bptt, sl - i);
    // fastai: real_bs = number of rows whose token at column i is not pad, and the chunk runs on
    // the FIRST real_bs rows. With front chunk padding plus end padding, those rows are not
    // always exactly the ones with a token at column i (a row whose text ended a few tokens
    // before may be included, a shorter front-padded one excluded): fastai does it anyway, and
    // so do we, to give the same results.
    for (Index b = 0; b < bs; ++b) c.real_bs += ids[b * sl + i] != pad;
    if (c.real_bs == 0)
      throw std::invalid_argument("classifier batch: column " + std::to_string(i) +
                                  " (a chunk start) is padding in every row");
    c.kept = sl - i <= cfg_.max_len;
    c.col = T_kept;
    if (c.kept) T_kept += c.len;
    cache.chunks.push_back(c);
  }
  cache.T_kept = T_kept;

  // 2. run the encoder chunk by chunk (state carried, resized, detached)
  nn::Placement* place = placement();  // nullptr: host memory (the CPU)
  bool enc_trains = false;
  for (int g = 0; g <= (int)cfg_.n_layers; ++g) enc_trains |= group_trainable(g);
  // One encoder cache per chunk when the encoder trains (its backward needs them) or when the
  // caller replays fixed masks (reuse_masks: each chunk keeps its own); else one scratch cache.
  const bool per_chunk = opt.training && (enc_trains || opt.reuse_masks);
  const std::size_t n_caches = per_chunk ? cache.chunks.size() : 1;
  if (cache.enc.size() < n_caches) cache.enc.resize(n_caches);
  ensure(cache.out, Shape{bs, T_kept, E}, place);
  nn::placed::zero_in(place, cache.out.view());
  cache.state.reset(cfg_, 0, place);
  for (std::size_t k = 0; k < cache.chunks.size(); ++k) {
    const auto& c = cache.chunks[k];
    // host ids: the encoder uploads them
    View<TokenId> cid = scratch(cache.chunk_ids, Shape{c.real_bs, c.len});
    for (Index b = 0; b < c.real_bs; ++b)
      std::copy_n(ids.data + b * sl + c.start, c.len, cid.data + b * c.len);
    View<T> co = scratch(cache.chunk_out, Shape{c.real_bs, c.len, E}, place);
    if (opt.training) {
      AwdLstmCache<T>& ec = per_chunk ? cache.enc[k] : cache.enc[0];
      enc_.forward(cid, cache.state, co, ec, opt);
    } else {
      enc_.infer(cid, cache.state, co, cache.enc_ws);
    }
    if (c.kept)  // row b's chunk into columns [col, col + len) of out row b
      copy_rows(place, cache.out.data() + c.col * E, T_kept * E, co.data, c.len * E, c.real_bs,
                c.len * E);
  }
  // 3. pad mask of the kept columns (built on the host), pooling
  cache.pad_host.assign((std::size_t)(bs * T_kept), 0);
  for (auto& c : cache.chunks) {
    if (!c.kept) continue;
    for (Index b = 0; b < bs; ++b)
      for (Index t = 0; t < c.len; ++t)
        cache.pad_host[b * T_kept + c.col + t] = ids[b * sl + c.start + t] == pad;
  }
  ensure(cache.pad, Shape{bs, T_kept}, place);
  if (place)
    place->upload(cache.pad.data(), cache.pad_host.data(), cache.pad_host.size());
  else
    std::copy(cache.pad_host.begin(), cache.pad_host.end(), cache.pad.data());
  ensure(cache.pooled, Shape{bs, 3 * E}, place);
  ensure(cache.argmax, Shape{bs, E}, place);
  ops().concat_pool_forward(cache.out.view(), cache.pad.view(), cache.pooled.view(),
                                    cache.argmax.view(), cfg_.bptt);
  // 4. head; the logits to the caller's host memory
  head_forward(cache, opt);
  if (place)
    place->download(logits.data, cache.logits.data(), sizeof(T) * (std::size_t)logits.numel());
  else
    logits.copy_from(cache.logits.view());
}

template <typename T>
void ClassifierModelT<T>::head_forward(ClassifierCache<T>& cache, const ForwardOptions& opt) {
  const Index bs = cache.bs;
  nn::Placement* place = placement();
  cache.head.resize(blocks_.size());
  CView<T> x = cache.pooled.view();
  for (std::size_t i = 0; i < blocks_.size(); ++i) {
    Block& b = blocks_[i];
    HeadBlockCache<T>& hc = cache.head[i];
    const View<T> bn_w = dev(b.bn_w), bn_b = dev(b.bn_b), rm = dev(b.running_mean),
                  rv = dev(b.running_var);
    ensure(hc.x, Shape{bs, b.n_in}, place);
    copy_in(place, hc.x.view(), x);
    ensure(hc.bn_out, Shape{bs, b.n_in}, place);
    if (opt.training) {
      if ((opt.sync ? opt.sync->global_bs : bs) < 2)
        throw std::invalid_argument(
            "classifier training: BatchNorm needs at least 2 documents per batch, got 1");
      ensure(hc.xhat, Shape{bs, b.n_in}, place);
      ensure(hc.rstd, Shape{b.n_in}, place);
      if (opt.sync) {  // data parallel: the statistics of the global batch (host memory)
        if (place || enc_.backend().memory() != nn::Memory::host)
          throw std::invalid_argument("classifier: synchronised BatchNorm runs on host memory only");
        nn::batchnorm_forward_train_sync<T>(hc.x.view(), b.bn_w, b.bn_b, b.running_mean,
                                            b.running_var, hc.bn_out.view(),
                                            nn::BatchNormCache<T>{hc.xhat.view(), hc.rstd.view()},
                                            opt.sync->sum, opt.sync->global_bs);
      } else {
        ops().batchnorm_forward_train(hc.x.view(), bn_w, bn_b, rm, rv, hc.bn_out.view(),
                                      nn::BatchNormCache<T>{hc.xhat.view(), hc.rstd.view()});
      }
      b.num_batches_tracked[0] += 1;  // host
      // dropout
      if (opt.reuse_masks) {
        if (present(hc.mask) && hc.mask.shape() != Shape{bs, b.n_in})
          throw std::invalid_argument("classifier reuse_masks: head mask " + std::to_string(i) +
                                      " is " + hc.mask.shape().str());
      } else if (b.p > 0) {
        if (!opt.rng) throw std::invalid_argument("classifier forward: training needs an Rng");
        ensure(hc.mask, Shape{bs, b.n_in}, place);
        ops().dropout_mask(*opt.rng, b.p, hc.mask.view());
      } else {
        hc.mask = Tensor<T>();
      }
      if (present(hc.mask)) ops().dropout_forward(hc.bn_out.view(), hc.mask.view(), hc.bn_out.view());
    } else {
      ops().batchnorm_forward_eval(hc.x.view(), bn_w, bn_b, rm, rv, hc.bn_out.view());
    }
    ensure(hc.y, Shape{bs, b.n_out}, place);
    ops().linear_forward(hc.bn_out.view(), dev(b.lin_w), CView<T>(), hc.y.view());
    if (i + 1 < blocks_.size()) ops().relu_forward(hc.y.view(), hc.y.view());
    x = hc.y.view();
  }
  ensure(cache.logits, Shape{bs, cfg_.n_classes}, place);
  copy_in(place, cache.logits.view(), x);
}

template <typename T>
void ClassifierModelT<T>::backward(ClassifierCache<T>& cache, CView<T> dlogits) {
  if (!cache.training) throw std::invalid_argument("classifier backward: the forward was in eval mode");
  const Index bs = cache.bs, E = cfg_.emb_sz;
  nn::check_shape(dlogits.shape, Shape{bs, cfg_.n_classes}, "classifier backward dlogits");
  nn::Placement* place = placement();  // dlogits: in the model's memory
  bool enc_trains = false;
  for (int g = 0; g <= (int)cfg_.n_layers; ++g) enc_trains |= group_trainable(g);
  // head, last block first; dy lives in da / db (ping-pong)
  Tensor<T>* bufs[2] = {&cache.da, &cache.db};
  int cur = 0;
  View<T> dy = scratch(*bufs[cur], Shape{bs, cfg_.n_classes}, place);
  copy_in(place, dy, dlogits);
  for (int i = (int)blocks_.size() - 1; i >= 0; --i) {
    Block& b = blocks_[i];
    HeadBlockCache<T>& hc = cache.head[i];
    if (i + 1 < (int)blocks_.size()) ops().relu_backward(hc.y.view(), dy, dy);
    View<T> dbn = scratch(*bufs[1 - cur], Shape{bs, b.n_in}, place);
    ops().linear_backward(hc.bn_out.view(), dev(b.lin_w), dy, dbn, dev(b.dlin_w), View<T>());
    if (present(hc.mask)) ops().dropout_backward(dbn, hc.mask.view(), dbn);
    const bool need_dx = i > 0 || enc_trains;
    View<T> dx = need_dx ? scratch(*bufs[cur], Shape{bs, b.n_in}, place) : View<T>();
    if (cache.sync)
      nn::batchnorm_backward_sync<T>(dbn, b.bn_w, nn::BatchNormCache<T>{hc.xhat.view(), hc.rstd.view()},
                                     dx, b.dbn_w, b.dbn_b, cache.sync->sum, cache.sync->global_bs,
                                     cache.sync->share);
    else
      ops().batchnorm_backward(dbn, dev(b.bn_w), nn::BatchNormCache<T>{hc.xhat.view(), hc.rstd.view()},
                               dx, dev(b.dbn_w), dev(b.dbn_b));
    dy = dx;
  }
  if (!enc_trains) return;
  // pooling → dout [bs, T_kept, E]
  const Index T_kept = cache.T_kept;
  ensure(cache.dout, Shape{bs, T_kept, E}, place);
  ops().concat_pool_backward(dy, cache.pad.view(), cache.argmax.view(), cache.dout.view(),
                                     cfg_.bptt);
  // each kept chunk: its own truncated-BPTT window
  if (cache.enc.size() < cache.chunks.size())
    throw std::logic_error("classifier backward: the forward kept no per-chunk encoder caches");
  for (std::size_t k = 0; k < cache.chunks.size(); ++k) {
    const auto& c = cache.chunks[k];
    if (!c.kept) continue;  // outside max_len: no gradient reaches it (and none crosses chunks)
    View<T> dco = scratch(cache.chunk_out, Shape{c.real_bs, c.len, E}, place);
    copy_rows(place, dco.data, c.len * E, cache.dout.data() + c.col * E, T_kept * E, c.real_bs,
              c.len * E);
    enc_.backward(cache.enc[k], dco);
  }
}

template <typename T>
double ClassifierModelT<T>::train_step(CView<TokenId> ids, CView<std::int32_t> targets,
                                       ClassifierCache<T>& cache, const ForwardOptions& opt,
                                       Index* correct) {
  const Index bs = ids.ndim() == 2 ? ids.dim(0) : 0;
  nn::check_shape(targets.shape, Shape{bs}, "classifier train_step targets");
  nn::Placement* place = placement();
  ensure(cache.logits_host, Shape{bs, cfg_.n_classes});
  forward(ids, cache.logits_host.view(), cache, opt);  // the logits stay in cache.logits too
  ensure(cache.dlogits, Shape{bs, cfg_.n_classes}, place);
  auto r = ops().softmax_ce_forward_backward(cache.logits.view(), upload_in(place, cache.targets, targets),
                                             cache.dlogits.view());
  if (correct) *correct = r.correct;
  backward(cache, cache.dlogits.view());
  return r.loss;
}

// ---- serving ----------------------------------------------------------------------------------

namespace {

// fastai's pooling of one document of n tokens, one block at a time: the outputs y [len, E] of
// positions i .. i+len-1 are added to the running sum and max when their bptt chunk lies within
// the last max_len positions. Returns how many positions were pooled.
template <typename T>
Index pool_block(const T* y, Index len, Index i, Index n, Index E, const ModelConfig& cfg,
                 T* sum, T* mx) {
  Index pooled = 0;
  for (Index t = 0; t < len; ++t) {
    const Index chunk_start = (i + t) / cfg.bptt * cfg.bptt;
    if (n - chunk_start > cfg.max_len) continue;
    const T* yt = y + t * E;
    for (Index e = 0; e < E; ++e) {
      sum[e] += yt[e];
      mx[e] = std::max(mx[e], yt[e]);
    }
    ++pooled;
  }
  return pooled;
}

// The head's input [last, max, avg] (3E) of one document.
template <typename T>
void concat_pooled(const T* last, const T* mx, const T* sum, Index count, Index E, T* f) {
  for (Index e = 0; e < E; ++e) {
    f[e] = last[e];
    f[E + e] = mx[e];
    f[2 * E + e] = sum[e] / (T)count;
  }
}

}  // namespace

template <typename T>
void ClassifierModelT<T>::infer(CView<TokenId> ids, View<T> logits, ClassifierWorkspace<T>& ws) const {
  require_host("infer");
  const Index n = ids.numel(), E = cfg_.emb_sz;
  if (n == 0) throw std::invalid_argument("classifier: empty document (no tokens)");
  nn::check_shape(logits.shape, Shape{cfg_.n_classes}, "classifier infer logits");
  if (cfg_.backwards) {  // callers pass reading order; a backwards model reads it reversed
    ws.reversed.assign(ids.data, ids.data + n);
    std::reverse(ws.reversed.begin(), ws.reversed.end());
    ids = CView<TokenId>(ws.reversed.data(), Shape{n});
  }
  enc_.check_ids(CView<TokenId>(ids.data, Shape{1, n}));
  ws.state.reset(cfg_, 1);
  ensure(ws.sum, Shape{E});
  ensure(ws.mx, Shape{E});
  ensure(ws.last, Shape{E});
  ws.sum.view().zero();
  ws.mx.view().fill(-std::numeric_limits<T>::infinity());
  Index count = 0;
  // For one document in eval mode the SentenceEncoder's chunk-by-chunk run (all layers on chunk
  // 1, then all layers on chunk 2, ...) equals running each layer over the whole sequence with
  // its state carried: no dropout, and detaching changes nothing forward. So run layer by layer
  // over large blocks (8 chunks): a layer's recurrent weights then stay in cache for hundreds of
  // steps instead of being evicted by the other layers after every 72 tokens. A position is
  // pooled when its 72-token chunk lies in the last max_len positions, as fastai decides.
  const Index block = cfg_.bptt * 8;
  for (Index i = 0; i < n; i += block) {
    const Index len = std::min(block, n - i);
    CView<TokenId> cid(ids.data + i, Shape{1, len});
    View<T> y = scratch(ws.y, Shape{1, len, E});
    enc_.infer(cid, ws.state, y, ws.enc);
    count += pool_block(y.data, len, i, n, E, cfg_, ws.sum.data(), ws.mx.data());
    if (i + len == n) std::copy_n(y.data + (len - 1) * E, E, ws.last.data());
  }
  View<T> f = scratch(ws.feat, Shape{1, 3 * E});
  concat_pooled(ws.last.data(), ws.mx.data(), ws.sum.data(), count, E, f.data);
  head_infer(f, View<T>(logits.data, Shape{1, cfg_.n_classes}), ws);
}

template <typename T>
void ClassifierModelT<T>::head_infer(CView<T> feat, View<T> logits,
                                     ClassifierWorkspace<T>& ws) const {
  const Index bs = feat.dim(0);
  CView<T> xin = feat;
  Tensor<T>* hb[2] = {&ws.a, &ws.b};
  int cur = 0;
  for (std::size_t i = 0; i < blocks_.size(); ++i) {
    const Block& b = blocks_[i];
    View<T> bn = scratch(*hb[cur], Shape{bs, b.n_in});
    ops().batchnorm_forward_eval(xin, b.bn_w, b.bn_b, b.running_mean, b.running_var, bn);
    View<T> y = i + 1 < blocks_.size() ? scratch(*hb[1 - cur], Shape{bs, b.n_out})
                                       : View<T>(logits.data, Shape{bs, b.n_out});
    ops().linear_forward(bn, b.lin_w, CView<T>(), y);
    if (i + 1 < blocks_.size()) ops().relu_forward(y, y);
    xin = y;
    cur = 1 - cur;
  }
}

template <typename T>
void ClassifierModelT<T>::infer_group(const std::vector<const std::vector<TokenId>*>& docs,
                                      View<T> out, ClassifierWorkspace<T>& ws, bool head) const {
  const Index bs = (Index)docs.size(), E = cfg_.emb_sz;
  if (bs == 0) return;
  std::vector<const TokenId*> rows(bs);  // each document in the model's reading order
  std::vector<std::vector<TokenId>> rev;
  if (cfg_.backwards) rev.resize(bs);
  for (Index b = 0; b < bs; ++b) {
    const auto& d = *docs[b];
    if (cfg_.backwards) {
      rev[b].assign(d.rbegin(), d.rend());
      rows[b] = rev[b].data();
    } else {
      rows[b] = d.data();
    }
  }
  auto len = [&](Index b) { return (Index)docs[b]->size(); };
  ws.state.reset(cfg_, bs);
  View<T> sum = scratch(ws.sum, Shape{bs, E}), mx = scratch(ws.mx, Shape{bs, E});
  View<T> last = scratch(ws.last, Shape{bs, E});
  sum.zero();
  mx.fill(-std::numeric_limits<T>::infinity());
  ws.count.assign(bs, 0);
  // As infer(): layer by layer over blocks of 8 chunks, the state carried; the rows still
  // running in a block are a prefix (longest first).
  const Index block = cfg_.bptt * 8, n0 = len(0);
  for (Index i = 0; i < n0; i += block) {
    Index active = 0;
    while (active < bs && len(active) > i) ++active;
    const Index blen = std::min(block, n0 - i);
    ws.ids.assign(active * blen, (TokenId)cfg_.pad_idx);
    ws.lengths.resize(active);
    for (Index b = 0; b < active; ++b) {
      ws.lengths[b] = std::min(blen, len(b) - i);
      std::copy_n(rows[b] + i, ws.lengths[b], ws.ids.begin() + b * blen);
    }
    ws.state.resize(cfg_, active);  // finished rows leave (their pooled values are kept)
    View<T> y = scratch(ws.y, Shape{active, blen, E});
    // (a backend without padded rows only gets groups of one document: nothing to pad)
    enc_.infer(CView<TokenId>(ws.ids.data(), Shape{active, blen}), ws.state, y, ws.enc,
               enc_.infer_takes_lengths() ? ws.lengths.data() : nullptr);
    for (Index b = 0; b < active; ++b) {
      const T* yb = y.data + b * blen * E;
      ws.count[b] += pool_block(yb, ws.lengths[b], i, len(b), E, cfg_, sum.data + b * E,
                                mx.data + b * E);
      if (i + ws.lengths[b] == len(b))
        std::copy_n(yb + (ws.lengths[b] - 1) * E, E, last.data + b * E);
    }
  }
  // [last, max, avg] per row: the head's input, or the output itself (pooled_batch)
  View<T> f = head ? scratch(ws.feat, Shape{bs, 3 * E}) : out;
  for (Index b = 0; b < bs; ++b)
    concat_pooled(last.data + b * E, mx.data + b * E, sum.data + b * E, ws.count[b], E,
                  f.data + b * 3 * E);
  if (head) head_infer(f, out, ws);
}

template <typename T>
void ClassifierModelT<T>::infer_batch_padded(const std::vector<std::vector<TokenId>>& docs,
                                             View<T> logits, Index group) const {
  nn::check_shape(logits.shape, Shape{(Index)docs.size(), cfg_.n_classes},
                  "classifier infer_batch_padded logits");
  require_host("infer_batch_padded");
  if (group < 1) throw std::invalid_argument("classifier infer_batch_padded: group must be >= 1");
  if (!enc_.infer_takes_lengths()) {
    infer_batch(docs, logits);
    return;
  }
  run_groups(docs, logits, group, true, "infer_batch_padded");
}

template <typename T>
void ClassifierModelT<T>::pooled_batch(const std::vector<std::vector<TokenId>>& docs,
                                       View<T> feats, Index group) const {
  nn::check_shape(feats.shape, Shape{(Index)docs.size(), 3 * cfg_.emb_sz},
                  "classifier pooled_batch features");
  require_host("pooled_batch");
  run_groups(docs, feats, enc_.infer_takes_lengths() ? group : 1, false, "pooled_batch");
}

template <typename T>
void ClassifierModelT<T>::run_groups(const std::vector<std::vector<TokenId>>& docs, View<T> out,
                                     Index group, bool head, const char* what) const {
  const Index n = (Index)docs.size(), W = out.ndim() == 2 ? out.dim(1) : 0;
  if (group < 1)
    throw std::invalid_argument(std::string("classifier ") + what + ": group must be >= 1");
  for (Index i = 0; i < n; ++i) {
    if (docs[i].empty())
      throw std::invalid_argument(std::string("classifier ") + what + ": document " +
                                  std::to_string(i) + ": empty document (no tokens)");
    try {
      enc_.check_ids(CView<TokenId>(docs[i].data(), Shape{1, (Index)docs[i].size()}));
    } catch (const std::exception& e) {
      throw std::invalid_argument(std::string("classifier ") + what + ": document " +
                                  std::to_string(i) + ": " + e.what());
    }
  }
  std::vector<Index> order(n);
  for (Index i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](Index a, Index b) { return docs[a].size() > docs[b].size(); });
  thread_local ClassifierWorkspace<T> ws;
  Tensor<T> res;
  for (Index g0 = 0; g0 < n; g0 += group) {
    const Index g1 = std::min(n, g0 + group);
    std::vector<const std::vector<TokenId>*> grp;
    for (Index k = g0; k < g1; ++k) grp.push_back(&docs[order[k]]);
    View<T> r = scratch(res, Shape{g1 - g0, W});
    infer_group(grp, r, ws, head);
    for (Index k = g0; k < g1; ++k) std::copy_n(r.data + (k - g0) * W, W, out.data + order[k] * W);
  }
}

template <typename T>
std::array<float, 3> ClassifierModelT<T>::infer(const std::vector<TokenId>& ids) const {
  if (cfg_.n_classes != 3)
    throw std::invalid_argument("classifier infer: this model has " +
                                std::to_string(cfg_.n_classes) + " classes, expected 3");
  thread_local ClassifierWorkspace<T> ws;
  T out[3];
  infer(CView<TokenId>(ids.data(), Shape{(Index)ids.size()}), View<T>(out, Shape{3}), ws);
  return {(float)out[0], (float)out[1], (float)out[2]};
}

template <typename T>
void ClassifierModelT<T>::infer_batch(const std::vector<std::vector<TokenId>>& docs,
                                      View<T> logits) const {
  const Index n = (Index)docs.size(), C = cfg_.n_classes;
  nn::check_shape(logits.shape, Shape{n, C}, "classifier infer_batch logits");
  require_host("infer_batch");
  std::string err;
#pragma omp parallel for schedule(dynamic, 1)
  for (Index i = 0; i < n; ++i) {
    thread_local ClassifierWorkspace<T> ws;
    try {
      infer(CView<TokenId>(docs[i].data(), Shape{(Index)docs[i].size()}), logits.row(i), ws);
    } catch (const std::exception& e) {
#pragma omp critical(classifier_infer_batch)
      if (err.empty()) err = "document " + std::to_string(i) + ": " + e.what();
    }
  }
  if (!err.empty()) throw std::invalid_argument("classifier infer_batch: " + err);
}

// ---- loading ----------------------------------------------------------------------------------

template <typename T>
ClassifierModelT<T> ClassifierModelT<T>::from_bundle(const io::Bundle& bundle,
                                                     RecurrentPrecision precision,
                                                     std::size_t member) {
  if (member >= bundle.members().size())
    throw std::invalid_argument("classifier model: the bundle has " +
                                std::to_string(bundle.members().size()) + " member(s), no member " +
                                std::to_string(member));
  const auto& mc = bundle.members()[member].config;
  const std::string& prefix = bundle.members()[member].prefix;
  if (mc.kind != "classifier")
    throw std::invalid_argument("classifier model: the bundle holds a \"" + mc.kind +
                                "\" model, not a classifier");
  ClassifierModelT<T> m(mc);
  std::vector<nn::HalfMatrix> half;  // layer order: tensors() lists rnns.0, rnns.1, ...
  std::vector<nn::Int8Matrix> int8;
  for (auto& t : m.tensors()) {
    // The name map (ulmfit/name_map.h): a classifier's tensor in a classifier bundle, under the
    // member's prefix.
    const auto name = bundle_name("classifier", t.key, mc.kind);
    if (!name) throw std::logic_error("classifier model: no bundle name for '" + t.key + "'");
    CView<float> src = bundle.tensor(prefix + *name);
    if (src.numel() != t.value.numel())
      throw std::invalid_argument("classifier model: tensor '" + t.key + "' has shape " +
                                  src.shape.str() + " in the bundle, the model needs " +
                                  t.value.shape.str());
    // Copy in blocks and let each block's pages of the mapped file go once copied: peak memory
    // stays near one copy of the model, not two.
    auto in_blocks = [&](auto&& copy) {
      constexpr Index kBlock = Index(1) << 16;
      for (Index i0 = 0; i0 < src.numel(); i0 += kBlock) {
        const Index i1 = std::min(src.numel(), i0 + kBlock);
        copy(i0, i1);
        bundle.drop_cached(src.data + i0, static_cast<std::size_t>(i1 - i0));
      }
    };
    if (precision != RecurrentPrecision::f32 && t.key.ends_with("weight_hh_l0_raw")) {
      if constexpr (!std::is_same_v<T, float>) {
        throw std::invalid_argument(
            "classifier model: half-precision or int8 weights need a float model");
      } else {
        const Index rows = t.value.dim(0), cols = t.value.dim(1);
        if (precision == RecurrentPrecision::f16) {
          // Straight into the serving layout (16-row panels, nn/half.h): no row-major copy.
          nn::HalfMatrix hm;
          hm.rows = rows;
          hm.cols = cols;
          hm.panels = true;
          hm.data.assign(static_cast<std::size_t>(nn::panel_size(rows, cols)), 0);
          std::vector<std::uint16_t> block;
          in_blocks([&](Index i0, Index i1) {
            block.resize(static_cast<std::size_t>(i1 - i0));
            nn::floats_to_half(src.data + i0, block.data(), i1 - i0);
            for (Index i = i0; i < i1; ++i)
              hm.data[nn::panel_index(i / cols, i % cols, cols)] = block[i - i0];
          });
          half.push_back(std::move(hm));  // the float32 view stays untouched (never resident)
        } else {
          nn::Int8Matrix qm;
          qm.rows = rows;
          qm.cols = cols;
          qm.q.resize(static_cast<std::size_t>(src.numel()));
          qm.scale.resize(static_cast<std::size_t>(rows));
          // Whole rows per block (a row's scale needs all of it).
          const Index block = std::max<Index>(1, (Index(1) << 16) / std::max<Index>(cols, 1));
          for (Index r0 = 0; r0 < rows; r0 += block) {
            const Index r1 = std::min(rows, r0 + block);
            try {
              qm.quantize_rows(src.data + r0 * cols, r0, r1);
            } catch (const std::invalid_argument& e) {
              throw std::invalid_argument("classifier model: tensor '" + t.key + "': " + e.what());
            }
            bundle.drop_cached(src.data + r0 * cols, static_cast<std::size_t>((r1 - r0) * cols));
          }
          int8.push_back(std::move(qm));
        }
      }
      continue;
    }
    in_blocks([&](Index i0, Index i1) {
      for (Index i = i0; i < i1; ++i) t.value[i] = (T)src[i];
    });
  }
  if (precision == RecurrentPrecision::f16) m.enc_.adopt_half_recurrent(std::move(half));
  if (precision == RecurrentPrecision::i8 || precision == RecurrentPrecision::w8a8)
    m.enc_.adopt_int8_recurrent(std::move(int8), precision == RecurrentPrecision::w8a8);
  m.enc_.reset();
  return m;
}

std::vector<nn::Param> classifier_params(ClassifierModel& m) {
  const int L = (int)m.config().n_layers;
  std::vector<nn::Param> ps;
  for (auto& t : m.compute_tensors()) {
    if (t.layer == -2) continue;  // buffers
    int group = t.layer < 0 ? 0 : t.layer == L ? L + 1 : t.layer + 1;
    // encoder tensors: layer -1 embedding, 0..L-1 rnns; head tensors use layer L
    ps.push_back({t.key, t.value, t.grad, group, t.do_wd});
  }
  return ps;
}

template class ClassifierModelT<float>;
template class ClassifierModelT<double>;

}  // namespace ulmfit
