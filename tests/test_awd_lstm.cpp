// ctest-labels: golden
// tests/test_awd_lstm.cpp — AWD-LSTM encoder + LM: finite-difference gradients (double, with
// fixed dropout masks), fastai 2.7 goldens (two consecutive batches, with and without dropout),
// freezing, state lifecycle, eval path, parameter names/groups, bad input.
#include <gtest/gtest.h>

#include "tests/golden_json.h"

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "nn/rng.h"
#include "tests/gradcheck.h"
#include "ulmfit/awd_lstm.h"

using namespace nn;
using namespace ulmfit;
using testing_util::GradVar;

namespace {

ModelConfig tiny(double p) {
  ModelConfig c;
  c.vocab_size = 17, c.emb_sz = 6, c.n_hid = 8, c.n_layers = 3, c.pad_idx = 1;
  c.embed_p = c.input_p = c.weight_p = c.hidden_p = c.output_p = p;
  return c;
}

template <typename T>
struct State {
  std::vector<Tensor<T>> h, c;
  void save(AwdLstmEncoderT<T>& e) {
    h.clear(), c.clear();
    for (int l = 0; l < e.config().n_layers; ++l) {
      h.emplace_back(e.state_h(l).shape), c.emplace_back(e.state_c(l).shape);
      h.back().view().copy_from(e.state_h(l)), c.back().view().copy_from(e.state_c(l));
    }
  }
  void restore(AwdLstmEncoderT<T>& e) {
    e.resize_state(h[0].shape()[0]);
    for (int l = 0; l < e.config().n_layers; ++l)
      e.state_h(l).copy_from(h[l].view()), e.state_c(l).copy_from(c[l].view());
  }
};

using golden_json::from_json;
using golden_json::rel_err;

Tensor<TokenId> ids_tensor(const std::vector<int>& v, Index bs, Index sl) {
  Tensor<TokenId> t{bs, sl};
  for (Index i = 0; i < bs * sl; ++i) t[i] = v[i];
  return t;
}

}  // namespace

// ---- finite differences through the whole encoder + tied decoder + loss, with dropout masks --
TEST(AwdLstm, GradcheckLmDoubleWithMasks) {
  const Index bs = 2, sl = 5;
  AwdLstmLMT<double> lm(tiny(0.3));
  Rng rng(77);
  lm.init(rng);
  for (auto& v : lm.decoder_bias()) v = rng.uniform(-0.2, 0.2);
  Tensor<TokenId> ids{bs, sl}, tgt{bs, sl}, ids2{bs, sl};
  for (Index i = 0; i < bs * sl; ++i) {
    ids[i] = (TokenId)(2 + rng.below(15));  // no pad token: the pad row's gradient is not the
    ids2[i] = (TokenId)(2 + rng.below(15)); // derivative by design (padding_idx)
    tgt[i] = (TokenId)rng.below(17);
  }
  AwdLstmCache<double> cache;
  ForwardOptions sample{true, &rng, false}, fixed{true, nullptr, true};
  lm.train_step(ids2, tgt, cache, sample);  // a first window: non-zero carried state
  State<double> s0;
  s0.save(lm.encoder());
  lm.train_step(ids, tgt, cache, sample);   // samples the masks of the checked window
  // the masks must actually drop something
  double zeros = 0;
  for (auto& w : cache.masks.weight)
    for (Index i = 0; i < w.numel(); ++i) zeros += w[i] == 0;
  EXPECT_GT(zeros, 0);
  s0.restore(lm.encoder());
  lm.grads().zero();
  double l0 = lm.train_step(ids, tgt, cache, fixed);
  EXPECT_GT(l0, 0);
  std::vector<Tensor<double>> analytic;
  std::vector<GradVar> vars;
  auto ts = lm.tensors();
  for (auto& t : ts) {
    analytic.emplace_back(t.grad.shape);
    analytic.back().view().copy_from(t.grad);
  }
  for (size_t k = 0; k < ts.size(); ++k) vars.push_back({ts[k].key, ts[k].value, analytic[k]});
  auto loss = [&]() {
    s0.restore(lm.encoder());
    return lm.train_step(ids, tgt, cache, fixed);
  };
  auto r = testing_util::gradcheck(loss, vars, 30, 1e-5);
  EXPECT_GRADCHECK(r, 1e-5);
}

// ---- fastai goldens ----------------------------------------------------------------------------
template <typename T>
void golden(const char* scenario, double tol) {
  std::ifstream f(INSPIRE_SOURCE_DIR "/tests/fixtures/awd_lm/awd_lm_golden.json");
  ASSERT_TRUE(f) << "missing fixture tests/fixtures/awd_lm/awd_lm_golden.json";
  auto j = nlohmann::json::parse(f);
  auto& cj = j["config"];
  const bool drop = std::string(scenario) == "drop";
  ModelConfig cfg = tiny(0);
  cfg.vocab_size = cj["vocab"], cfg.emb_sz = cj["emb"], cfg.n_hid = cj["hidden"];
  cfg.n_layers = cj["n_layers"], cfg.pad_idx = cj["pad_token"];
  if (drop) {
    cfg.embed_p = cj["embed_p"], cfg.input_p = cj["input_p"], cfg.weight_p = cj["weight_p"];
    cfg.hidden_p = cj["hidden_p"], cfg.output_p = cj["output_p"];
  }
  const Index bs = cj["bs"], sl = cj["sl"], V = cfg.vocab_size;
  AwdLstmLMT<T> lm(cfg);
  auto& sj = j[scenario];
  int loaded = 0;
  for (auto& t : lm.tensors()) {
    ASSERT_TRUE(sj["params"].contains(t.key)) << t.key;
    auto v = from_json<T>(sj["params"][t.key]);
    ASSERT_EQ(v.shape(), t.value.shape) << t.key;
    t.value.copy_from(v.view());
    ++loaded;
  }
  EXPECT_EQ(loaded, 2 + 4 * cfg.n_layers);
  // the tied aliases in the state dict hold the same values
  for (const char* alias : {"0.encoder_dp.emb.weight", "1.decoder.weight"}) {
    auto a = from_json<double>(sj["params"][alias]);
    EXPECT_EQ(rel_err<T>(lm.encoder().embedding(), a.view()), 0.0) << alias;
  }
  Rng unused(1);
  for (auto& b : sj["batches"]) {
    auto ids = ids_tensor(b["ids"].get<std::vector<int>>(), bs, sl);
    auto tgt = ids_tensor(b["targets"].get<std::vector<int>>(), bs, sl);
    AwdLstmCache<T> cache;
    ForwardOptions opt{true, &unused, false};
    if (drop) {
      auto& m = b["masks"];
      cache.masks.embed = from_json<T>(m["embed"]);
      cache.masks.input = from_json<T>(m["input"]);
      cache.masks.output = from_json<T>(m["output"]);
      for (auto& w : m["weight"]) cache.masks.weight.push_back(from_json<T>(w));
      for (auto& h : m["hidden"]) cache.masks.hidden.push_back(from_json<T>(h));
      opt = ForwardOptions{true, nullptr, true};
    }
    // logits (training forward; state restored afterwards)
    State<T> s0;
    if (lm.encoder().state_batch() == bs) s0.save(lm.encoder());
    Tensor<T> logits{bs, sl, V};
    lm.logits(ids, logits, cache, opt);
    EXPECT_LT(rel_err<T>(logits, from_json<double>(b["logits"]).view()), tol) << scenario;
    if (s0.h.empty()) lm.reset(); else s0.restore(lm.encoder());
    lm.grads().zero();
    double loss = lm.train_step(ids, tgt, cache, opt);
    EXPECT_NEAR(loss, b["loss"].get<double>(), tol * 10) << scenario;
    for (int l = 0; l < cfg.n_layers; ++l) {
      EXPECT_LT(rel_err<T>(lm.encoder().state_h(l), from_json<double>(b["hidden"][l][0]).view()), tol);
      EXPECT_LT(rel_err<T>(lm.encoder().state_c(l), from_json<double>(b["hidden"][l][1]).view()), tol);
    }
    for (auto& t : lm.tensors()) {
      ASSERT_TRUE(b["grads"].contains(t.key)) << t.key;
      EXPECT_LT(rel_err<T>(t.grad, from_json<double>(b["grads"][t.key]).view()), tol)
          << scenario << " grad " << t.key;
    }
  }
}

TEST(AwdLstm, FastaiGoldenNoDropoutDouble) { golden<double>("nodrop", 1e-9); }
TEST(AwdLstm, FastaiGoldenNoDropoutFloat) { golden<float>("nodrop", 1e-5); }
TEST(AwdLstm, FastaiGoldenFixedMasksDouble) { golden<double>("drop", 1e-9); }
TEST(AwdLstm, FastaiGoldenFixedMasksFloat) { golden<float>("drop", 1e-5); }

// ---- freezing: frozen parts get no gradient, trainable parts get the same gradient ----------
TEST(AwdLstm, FrozenGroupsSkipGradients) {
  const Index bs = 3, sl = 4;
  ModelConfig cfg = tiny(0);
  Rng rng(3);
  Tensor<TokenId> ids{bs, sl}, tgt{bs, sl};
  for (Index i = 0; i < bs * sl; ++i) ids[i] = (TokenId)rng.below(17), tgt[i] = (TokenId)rng.below(17);
  auto run = [&](bool emb, std::vector<bool> rnn) {
    auto lm = std::make_unique<AwdLstmLMT<double>>(cfg);
    Rng r(5);
    lm->init(r);
    lm->encoder().set_trainable(emb, rnn);
    AwdLstmCache<double> cache;
    lm->train_step(ids, tgt, cache, ForwardOptions{false, nullptr, false});
    return lm;
  };
  auto full = run(true, {true, true, true});
  auto last = run(true, {false, false, false});   // LM stage 1: only embedding/decoder
  auto top = run(false, {false, false, true});    // classifier stage 2 analogue: rnn2 only
  auto none = run(false, {false, false, false});
  auto tf = full->tensors(), tl = last->tensors(), tt = top->tensors(), tn = none->tensors();
  for (size_t k = 0; k < tf.size(); ++k) {
    const auto& key = tf[k].key;
    bool is_emb = tf[k].layer < 0, is_rnn2 = tf[k].layer == 2;
    double nf = 0, nl = 0, nt = 0, nn_ = 0;
    for (Index i = 0; i < tf[k].grad.numel(); ++i) {
      nf += std::fabs(tf[k].grad[i]), nl += std::fabs(tl[k].grad[i]);
      nt += std::fabs(tt[k].grad[i]), nn_ += std::fabs(tn[k].grad[i]);
    }
    EXPECT_GT(nf, 0) << key;
    EXPECT_EQ(nn_, 0) << key;
    if (is_emb) {
      EXPECT_LT(rel_err<double>(tl[k].grad, tf[k].grad), 1e-12) << key;
      EXPECT_EQ(nt, 0) << key;
    } else {
      EXPECT_EQ(nl, 0) << key;
      if (is_rnn2) EXPECT_LT(rel_err<double>(tt[k].grad, tf[k].grad), 1e-12) << key;
      else EXPECT_EQ(nt, 0) << key;
    }
  }
}

// ---- eval path == training forward without dropout; state carried; batch resize ------------
TEST(AwdLstm, InferMatchesForwardAndCarriesState) {
  ModelConfig cfg = tiny(0.4);
  AwdLstmEncoderT<float> a(cfg), b(cfg);
  Rng r1(8), r2(8);
  a.init(r1), b.init(r2);
  Rng rng(2);
  for (Index bs : {3, 3, 1, 4}) {  // same, smaller (truncate), larger (zero rows) batch
    const Index sl = 6;
    Tensor<TokenId> ids{bs, sl};
    for (Index i = 0; i < bs * sl; ++i) ids[i] = (TokenId)rng.below(17);
    Tensor<float> ya{bs, sl, 6}, yb{bs, sl, 6};
    AwdLstmCache<float> cache;
    a.forward(ids, ya, cache, ForwardOptions{false, nullptr, false});
    b.infer(ids, yb);
    for (Index i = 0; i < ya.numel(); ++i) ASSERT_NEAR(ya[i], yb[i], 1e-6) << "bs " << bs;
    EXPECT_EQ(a.state_batch(), bs);
  }
  // resize keeps the first rows and zero-fills new ones
  a.resize_state(2);
  Tensor<float> keep{2, 6};
  keep.view().copy_from(a.state_h(2));
  a.resize_state(5);
  for (Index i = 0; i < 12; ++i) EXPECT_EQ(a.state_h(2)[i], keep[i]);
  for (Index i = 12; i < 30; ++i) EXPECT_EQ(a.state_h(2)[i], 0.f);
  a.reset();
  EXPECT_EQ(a.state_batch(), 0);
}

// Masks are resampled at every training forward call.
TEST(AwdLstm, MasksResampledEachCall) {
  AwdLstmEncoderT<float> e(tiny(0.5));
  Rng rng(4);
  e.init(rng);
  Tensor<TokenId> ids{2, 3};
  Tensor<float> y{2, 3, 6};
  AwdLstmCache<float> c;
  e.forward(ids, y, c, ForwardOptions{true, &rng, false});
  Tensor<float> w0 = c.masks.weight[0];
  e.forward(ids, y, c, ForwardOptions{true, &rng, false});
  double diff = 0;
  for (Index i = 0; i < w0.numel(); ++i) diff += std::fabs(w0[i] - c.masks.weight[0][i]);
  EXPECT_GT(diff, 0);
  for (Index i = 0; i < w0.numel(); ++i) EXPECT_TRUE(w0[i] == 0.f || std::fabs(w0[i] - 2.f) < 1e-6);
  EXPECT_THROW(e.forward(ids, y, c, ForwardOptions{true, nullptr, false}), std::invalid_argument);
}

// ---- names, groups, do_wd, sizes ------------------------------------------------------------------
TEST(AwdLstm, ParamNamesGroupsAndCounts) {
  AwdLstmLM lm(ModelConfig::lm(100));
  auto ps = lm_params(lm);
  ASSERT_EQ(ps.size(), 14u);
  EXPECT_EQ(ps[0].name, "0.encoder.weight");
  EXPECT_EQ(ps[0].group, 3);
  EXPECT_TRUE(ps[0].do_wd);
  EXPECT_EQ(ps[1].name, "0.rnns.0.weight_hh_l0_raw");
  EXPECT_EQ(ps[1].value.shape, (Shape{4608, 1152}));
  EXPECT_EQ(ps[2].name, "0.rnns.0.module.weight_ih_l0");
  EXPECT_EQ(ps[3].name, "0.rnns.0.module.bias_ih_l0");
  EXPECT_TRUE(ps[3].do_wd);  // LSTM biases DO get weight decay (fastai's rule)
  EXPECT_EQ(ps[4].name, "0.rnns.0.module.bias_hh_l0");
  EXPECT_EQ(ps[9].name, "0.rnns.2.weight_hh_l0_raw");
  EXPECT_EQ(ps[9].value.shape, (Shape{1600, 400}));
  EXPECT_EQ(ps[9].group, 2);
  EXPECT_EQ(ps[13].name, "1.decoder.bias");
  EXPECT_FALSE(ps[13].do_wd);
  EXPECT_EQ(ps[13].group, 3);
  Index n = 0;
  for (auto& p : ps) n += p.value.numel();
  EXPECT_EQ(n, 401 * 100 + 20273280);  // spec §8.1
  AwdLstmEncoder enc(ModelConfig::classifier(50));
  auto cp = encoder_params(enc, "0.module.", 0, 1);
  EXPECT_EQ(cp[0].name, "0.module.encoder.weight");
  EXPECT_EQ(cp[0].group, 0);
  EXPECT_EQ(cp[5].name, "0.module.rnns.1.weight_hh_l0_raw");
  EXPECT_EQ(cp[5].group, 2);
  auto c = ModelConfig::lm(10, 0.7);
  EXPECT_NEAR(c.weight_p, 0.14, 1e-12);
  EXPECT_NEAR(c.output_p, 0.07, 1e-12);
  auto k = ModelConfig::classifier(10, 0.5);
  EXPECT_NEAR(k.input_p, 0.2, 1e-12);
  EXPECT_NEAR(k.weight_p, 0.25, 1e-12);
}

TEST(AwdLstm, BadInputIsNamed) {
  AwdLstmEncoderT<float> e(tiny(0));
  Tensor<TokenId> ids{2, 3};
  ids[4] = 17;
  Tensor<float> y{2, 3, 6};
  try {
    e.infer(ids, y);
    FAIL();
  } catch (const std::out_of_range& ex) {
    EXPECT_NE(std::string(ex.what()).find("17 at [1, 1]"), std::string::npos) << ex.what();
  }
  ModelConfig bad = tiny(0);
  bad.weight_p = 1.0;
  EXPECT_THROW({ AwdLstmEncoderT<float> x(bad); }, std::invalid_argument);
  bad = tiny(0);
  bad.vocab_size = 0;
  EXPECT_THROW({ AwdLstmEncoderT<float> x(bad); }, std::invalid_argument);
  Tensor<float> ybad{2, 3, 5};
  ids[4] = 0;
  EXPECT_THROW(e.infer(ids, ybad), std::invalid_argument);
}
