// ctest-labels: golden
// tests/test_optim.cpp — nn::Adam and the one-cycle schedule: hand-computed values, state
// save/restore, and a replay of fastai's real Adam + fit_one_cycle
// (tests/fixtures/optim/adam_one_cycle.json, written by tools/reference/gen_adam_goldens.py).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "nn/optim.h"
#include "nn/schedule.h"

using nn::Adam;
using nn::AdamHyper;
using nn::LrSpec;
using nn::OneCycle;
using nn::Param;
using nn::Shape;
using nn::Tensor;

namespace {

// ---- schedule ---------------------------------------------------------------------------------

TEST(Schedule, CosSchedEndpointsAndMiddle) {
  EXPECT_DOUBLE_EQ(nn::cos_sched(2.0, 10.0, 0.0), 2.0);
  EXPECT_NEAR(nn::cos_sched(2.0, 10.0, 1.0), 10.0, 1e-12);
  EXPECT_NEAR(nn::cos_sched(2.0, 10.0, 0.5), 6.0, 1e-12);
  // t = 1/3: (1 + cos(2π/3))/2 = 1/4 of the way.
  EXPECT_NEAR(nn::cos_sched(0.0, 8.0, 1.0 / 3.0), 2.0, 1e-12);
  // decreasing segments work too
  EXPECT_NEAR(nn::cos_sched(0.8, 0.7, 0.5), 0.75, 1e-12);
}

TEST(Schedule, OneCycleHandValues) {
  OneCycle oc({1e-2});
  EXPECT_NEAR(oc.lr(0, 0.0), 1e-2 / 25, 1e-15);
  EXPECT_NEAR(oc.lr(0, 0.125), (1e-2 / 25 + 1e-2) / 2, 1e-15);  // half-way up
  EXPECT_NEAR(oc.lr(0, 0.25), 1e-2, 1e-15);                     // peak
  EXPECT_NEAR(oc.lr(0, 0.625), (1e-2 + 1e-7) / 2, 1e-15);       // half-way down
  EXPECT_NEAR(oc.lr(0, 1.0), 1e-7, 1e-18);                      // lr/div_final
  EXPECT_NEAR(oc.mom(0.0), 0.8, 1e-15);
  EXPECT_NEAR(oc.mom(0.125), 0.75, 1e-15);
  EXPECT_NEAR(oc.mom(0.25), 0.7, 1e-15);
  EXPECT_NEAR(oc.mom(0.625), 0.75, 1e-15);
  EXPECT_NEAR(oc.mom(1.0), 0.8, 1e-15);
  // pos = 0.25 + 0.75/4 → t = 1/4 of the down segment: (1 + cos(3π/4))/2 = 0.1464466...
  double w = (1 + std::cos(M_PI * 0.75)) / 2;
  EXPECT_NEAR(oc.lr(0, 0.25 + 0.75 / 4), 1e-2 + w * (1e-7 - 1e-2), 1e-15);
  EXPECT_NEAR(w, 0.14644660940672627, 1e-15);
}

TEST(Schedule, Position) {
  EXPECT_DOUBLE_EQ(nn::one_cycle_position(0, 0, 10, 2), 0.0);
  EXPECT_DOUBLE_EQ(nn::one_cycle_position(0, 5, 10, 2), 0.25);
  EXPECT_DOUBLE_EQ(nn::one_cycle_position(1, 0, 10, 2), 0.5);
  EXPECT_DOUBLE_EQ(nn::one_cycle_position(1, 9, 10, 2), 0.95);
  EXPECT_THROW(nn::one_cycle_position(0, 0, 0, 1), std::invalid_argument);
}

TEST(Schedule, LrSpecPerGroupMatchesTheUlmfitTable) {
  // §5 stage 2: slice(1e-2/2.6^4, 1e-2) over 5 groups.
  auto v = LrSpec::slice(1e-2 / std::pow(2.6, 4), 1e-2).per_group(5);
  const double want[5] = {2.188e-4, 5.690e-4, 1.479e-3, 3.846e-3, 1e-2};
  ASSERT_EQ(v.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(v[i], want[i], want[i] * 1e-3) << i;
  for (int i = 0; i + 1 < 5; ++i) EXPECT_NEAR(v[i + 1] / v[i], 2.6, 1e-12);
  auto s = LrSpec::scalar(2e-2).per_group(5);
  for (double x : s) EXPECT_EQ(x, 2e-2);
  auto h = LrSpec::slice_hi(1e-3).per_group(3);
  EXPECT_NEAR(h[0], 1e-4, 1e-18);
  EXPECT_NEAR(h[1], 1e-4, 1e-18);
  EXPECT_EQ(h[2], 1e-3);
  EXPECT_EQ(LrSpec::slice(1e-5, 1e-3).per_group(1)[0], 1e-3);
}

TEST(Schedule, LrSpecParse) {
  auto a = LrSpec::parse("2e-2");
  EXPECT_EQ(a.kind, LrSpec::Kind::Scalar);
  EXPECT_EQ(a.hi, 2e-2);
  auto b = LrSpec::parse("1e-5:1e-3");
  EXPECT_EQ(b.kind, LrSpec::Kind::Slice);
  EXPECT_EQ(b.lo, 1e-5);
  EXPECT_EQ(b.hi, 1e-3);
  auto c = LrSpec::parse(":1e-3");
  EXPECT_EQ(c.kind, LrSpec::Kind::SliceHi);
  EXPECT_EQ(c.hi, 1e-3);
  for (const char* bad : {"", "abc", "1e-3x", "-1", "0", "1:2:3", "1e-3:", "nan", "inf"}) {
    try {
      LrSpec::parse(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("learning rate"), std::string::npos) << e.what();
    }
  }
}

// ---- Adam ---------------------------------------------------------------------------------------

struct Tiny {
  Tensor<float> w{Shape{3}}, gw{Shape{3}}, b{Shape{2}}, gb{Shape{2}};
  std::vector<Param> params() {
    return {Param{"w", w.view(), gw.view(), 0, true}, Param{"b", b.view(), gb.view(), 1, false}};
  }
};

TEST(Adam, OneStepByHand) {
  Tensor<float> w{Shape{1}}, g{Shape{1}};
  w[0] = 1.0f;
  g[0] = 0.5f;
  AdamHyper h;
  h.lr = 0.1;
  h.mom = 0.9;
  h.sqr_mom = 0.99;
  h.eps = 1e-5;
  h.wd = 0.1;
  Adam opt({Param{"w", w.view(), g.view(), 0, true}}, 1, h);
  opt.step();
  // decay: 1·(1 − 0.01) = 0.99; m = 0.05, v = 0.0025; debiased m = 0.5, sqrt(v̂) = 0.5
  // p = 0.99 − 0.1 · 0.5 / (0.5 + 1e-5)
  EXPECT_NEAR(w[0], 0.99 - 0.1 * 0.5 / 0.50001, 1e-7);
  EXPECT_NEAR(opt.exp_avg(0)[0], 0.05, 1e-8);
  EXPECT_NEAR(opt.exp_avg_sq(0)[0], 0.0025, 1e-9);
  EXPECT_EQ(opt.step_count(0), 1);
  // second step, g = −0.5, mom changed to 0.8 (bias correction with the CURRENT mom)
  g[0] = -0.5f;
  opt.set_mom(0.8);
  double p1 = w[0];
  opt.step();
  double m = 0.8 * 0.05 + 0.2 * -0.5, v = 0.99 * 0.0025 + 0.01 * 0.25;
  double want = p1 * (1 - 0.01) - 0.1 / (1 - 0.8 * 0.8) * m / (std::sqrt(v / (1 - 0.99 * 0.99)) + 1e-5);
  EXPECT_NEAR(w[0], want, 2e-7);
  EXPECT_EQ(opt.step_count(0), 2);
}

TEST(Adam, FrozenGroupsAndNoDecayParams) {
  Tiny t;
  for (int i = 0; i < 3; ++i) t.w[i] = 1, t.gw[i] = 0;
  for (int i = 0; i < 2; ++i) t.b[i] = 1, t.gb[i] = 0;
  AdamHyper h;
  h.lr = 0.1;
  h.wd = 0.5;
  Adam opt(t.params(), 2, h);
  opt.freeze();  // group 0 frozen
  EXPECT_TRUE(opt.frozen(0));
  EXPECT_FALSE(opt.frozen(1));
  EXPECT_EQ(opt.frozen_idx(), 1);
  opt.step();
  // group 0: never stepped — no decay even though do_wd and wd > 0
  for (int i = 0; i < 3; ++i) EXPECT_EQ(t.w[i], 1.0f);
  EXPECT_EQ(opt.step_count(0), 0);
  // group 1: stepped, but do_wd = false and g = 0 → unchanged value, step counted
  for (int i = 0; i < 2; ++i) EXPECT_EQ(t.b[i], 1.0f);
  EXPECT_EQ(opt.step_count(1), 1);
  opt.unfreeze();
  EXPECT_EQ(opt.step_count(1), 0);  // freeze_to clears the state
  opt.step();
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(t.w[i], 1.0f * (1 - 0.05f), 1e-7);  // decay only (g = 0)
  // zero_grad only touches trainable groups
  t.gw[0] = 3;
  t.gb[0] = 4;
  opt.freeze_to(1);
  opt.zero_grad();
  EXPECT_EQ(t.gw[0], 3.0f);
  EXPECT_EQ(t.gb[0], 0.0f);
  EXPECT_THROW(opt.set_lrs({1.0}), std::invalid_argument);
  EXPECT_THROW(opt.group(2), std::out_of_range);
}

TEST(Adam, RejectsBadParams) {
  Tensor<float> w{Shape{3}}, g{Shape{4}};
  EXPECT_THROW(Adam({Param{"w", w.view(), g.view(), 0, true}}, 1), std::invalid_argument);
  Tensor<float> g3{Shape{3}};
  EXPECT_THROW(Adam({Param{"w", w.view(), g3.view(), 2, true}}, 2), std::invalid_argument);
}

// Runs k steps with deterministic pseudo-gradients.
void run_steps(Adam& opt, Tiny& t, int from, int k) {
  for (int s = from; s < from + k; ++s) {
    for (int i = 0; i < 3; ++i) t.gw[i] = std::sin(1.0f + s * 3 + i);
    for (int i = 0; i < 2; ++i) t.gb[i] = std::cos(2.0f + s * 5 + i);
    opt.set_mom(0.8 - 0.01 * s);
    opt.step();
  }
}

TEST(Adam, SaveLoadResumesBitExactly) {
  Tiny a;
  for (int i = 0; i < 3; ++i) a.w[i] = 0.1f * i;
  for (int i = 0; i < 2; ++i) a.b[i] = -0.2f * i;
  AdamHyper h;
  h.lr = 0.01;
  h.wd = 0.1;
  Adam opt(a.params(), 2, h);
  opt.set_lrs({0.01, 0.03});
  run_steps(opt, a, 0, 3);
  auto state = opt.save_state();
  Tiny b = a;  // copy of the weights at the checkpoint
  run_steps(opt, a, 3, 4);

  Adam opt2(b.params(), 2);  // different defaults: everything must come from the state
  opt2.load_state(state);
  EXPECT_EQ(opt2.group(1).lr, 0.03);
  EXPECT_EQ(opt2.group(0).wd, 0.1);
  EXPECT_EQ(opt2.step_count(0), 3);
  run_steps(opt2, b, 3, 4);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(a.w[i], b.w[i]);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(a.b[i], b.b[i]);
}

std::string load_error(Adam& opt, std::vector<std::uint8_t> buf) {
  try {
    opt.load_state(buf);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(Adam, LoadStateRejectsBadBuffers) {
  Tiny a;
  Adam opt(a.params(), 2);
  auto good = opt.save_state();
  auto bad = good;
  bad[0] = 'X';
  EXPECT_NE(load_error(opt, bad).find("bad magic"), std::string::npos);
  bad = good;
  bad.resize(bad.size() - 3);
  EXPECT_NE(load_error(opt, bad).find("truncated"), std::string::npos);
  bad = good;
  bad.push_back(0);
  EXPECT_NE(load_error(opt, bad).find("trailing"), std::string::npos);
  // another model: different parameter names
  Tensor<float> w{Shape{3}}, g{Shape{3}}, c{Shape{2}}, gc{Shape{2}};
  Adam other({Param{"w", w.view(), g.view(), 0, true}, Param{"c", c.view(), gc.view(), 1, false}}, 2);
  std::string e = load_error(other, good);
  EXPECT_NE(e.find("'b' in the state but 'c'"), std::string::npos) << e;
  Adam three(a.params(), 3);
  EXPECT_NE(load_error(three, good).find("2 parameter groups"), std::string::npos);
  for (std::size_t cut : {0, 5, 12, 30}) {
    std::vector<std::uint8_t> t(good.begin(), good.begin() + cut);
    EXPECT_FALSE(load_error(opt, t).empty()) << cut;
  }
}

// ---- golden replay of fastai's Adam + fit_one_cycle ---------------------------------------------

TEST(Adam, MatchesFastaiAdamWithOneCycle) {
  std::ifstream f(INSPIRE_SOURCE_DIR "/tests/fixtures/optim/adam_one_cycle.json");
  ASSERT_TRUE(f) << "missing fixture; run tools/reference/gen_adam_goldens.py";
  nlohmann::json j = nlohmann::json::parse(f);

  struct Buf {
    Tensor<float> value, grad;
  };
  std::map<std::string, Buf> bufs;
  std::vector<Param> params;
  for (auto& pj : j["params"]) {
    std::string name = pj["name"];
    nn::Index n = 1;
    for (auto d : pj["shape"]) n *= d.get<nn::Index>();
    auto& b = bufs[name];
    b.value.resize(Shape{n});
    b.grad.resize(Shape{n});
    auto init = j["initial"][name];
    for (nn::Index i = 0; i < n; ++i) b.value[i] = init[i].get<float>();
  }
  for (auto& pj : j["params"]) {
    auto& b = bufs[pj["name"].get<std::string>()];
    params.push_back(Param{pj["name"], b.value.view(), b.grad.view(), pj["group"].get<int>(),
                           pj["do_wd"].get<bool>()});
  }
  ASSERT_EQ(params.size(), 4u);
  EXPECT_FALSE(params[1].do_wd);  // fastai: Linear biases get no weight decay

  AdamHyper h;  // fastai defaults: sqr_mom 0.99, eps 1e-5
  Adam opt(params, 2, h);
  const auto& steps = j["steps"];
  std::size_t k = 0;
  int checked = 0;
  for (auto& st : j["stages"]) {
    opt.freeze_to(st["freeze_to"].get<int>());
    opt.set_wds(st["wd"].get<std::vector<double>>());
    // lr_spec in the fixture is informative; rebuild the same spec here
    LrSpec spec = st["stage"] == 1 ? LrSpec::slice_hi(2e-2) : LrSpec::slice(1e-3, 3e-2);
    OneCycle oc(spec, 2);
    auto want_lr = st["lr_max"].get<std::vector<double>>();
    for (int g = 0; g < 2; ++g) EXPECT_NEAR(oc.lr_max[g], want_lr[g], 1e-15);
    int n_epoch = st["n_epoch"], n_iter = st["n_iter"];
    for (int e = 0; e < n_epoch; ++e) {
      for (int it = 0; it < n_iter; ++it, ++k) {
        ASSERT_LT(k, steps.size());
        const auto& s = steps[k];
        double pos = nn::one_cycle_position(e, it, n_iter, n_epoch);
        EXPECT_NEAR(pos, s["pct_train"].get<double>(), 1e-12) << "step " << k;
        oc.apply(opt, pos);
        for (int g = 0; g < 2; ++g) {
          const auto& hy = s["hypers"][g];
          EXPECT_NEAR(opt.group(g).lr, hy["lr"].get<double>(), 1e-6 * hy["lr"].get<double>())
              << "step " << k << " group " << g;
          EXPECT_NEAR(opt.group(g).mom, hy["mom"].get<double>(), 1e-7) << "step " << k;
          EXPECT_EQ(opt.group(g).wd, hy["wd"].get<double>());
          EXPECT_EQ(opt.group(g).eps, hy["eps"].get<double>());
          EXPECT_EQ(opt.group(g).sqr_mom, hy["sqr_mom"].get<double>());
        }
        opt.zero_grad();
        for (auto& p : params) {
          const auto& gj = s["grads"][p.name];
          // a parameter without a gradient in fastai must be in a frozen group here
          EXPECT_EQ(gj.is_null(), opt.frozen(p.group)) << p.name << " step " << k;
          if (gj.is_null()) continue;
          for (nn::Index i = 0; i < p.grad.numel(); ++i) p.grad[i] = gj[i].get<float>();
        }
        opt.step();
        for (auto& p : params) {
          const auto& pj = s["params"][p.name];
          for (nn::Index i = 0; i < p.value.numel(); ++i) {
            double want = pj[i].get<double>(), got = p.value[i];
            EXPECT_NEAR(got, want, 1e-5 * std::max(std::fabs(want), 1e-2))
                << p.name << "[" << i << "] after step " << k;
            ++checked;
          }
        }
      }
    }
  }
  EXPECT_EQ(k, steps.size());
  EXPECT_EQ(checked, 9 * (20 + 4 + 12 + 3));
}

}  // namespace
