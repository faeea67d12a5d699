// ctest-labels: golden
// tests/test_layers_golden.cpp — agreement with PyTorch / fastai 2.7.19 on golden fixtures
// written by tools/reference/gen_layer_goldens.py (tests/fixtures/layers/*.json, float64).
//
// Every case runs twice: in double (tolerance 1e-10 relative to the tensor's max |value|) and in
// float (tolerance 1e-5 relative), with the same masks torch used.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nn/activation.h"
#include "nn/batchnorm.h"
#include "nn/dropout.h"
#include "nn/embedding.h"
#include "nn/linear.h"
#include "nn/loss.h"
#include "nn/pooling.h"

using namespace nn;

namespace {

struct Golden {
  std::string name;
  nlohmann::json j;

  explicit Golden(const std::string& case_name) : name(case_name) {
    std::string path = std::string(INSPIRE_SOURCE_DIR) + "/tests/fixtures/layers/" + name + ".json";
    std::ifstream f(path);
    if (!f) throw std::runtime_error("cannot open golden fixture " + path);
    j = nlohmann::json::parse(f);
  }
  Shape shape(const std::string& k) const {
    Shape s;
    for (auto& d : j.at("tensors").at(k).at("shape")) s.d[s.ndim++] = d.get<Index>();
    return s;
  }
  template <typename T>
  Tensor<T> get(const std::string& k) const {
    if (!j.at("tensors").contains(k)) throw std::runtime_error(name + ": no tensor " + k);
    Tensor<T> t(shape(k));
    auto& d = j["tensors"][k]["data"];
    if ((Index)d.size() != t.numel()) throw std::runtime_error(name + ": bad size for " + k);
    for (Index i = 0; i < t.numel(); ++i) t[i] = (T)d[i].get<double>();
    return t;
  }
  double scalar(const std::string& k) const { return j.at("scalars").at(k).get<double>(); }
};

template <typename T>
constexpr double tol() {
  return std::is_same_v<T, double> ? 1e-10 : 1e-5;
}

// max |got - want| / max(max|want|, 1e-3)
template <typename T>
void expect_close(const Golden& g, const std::string& k, CView<T> got) {
  Tensor<double> want = g.get<double>(k);
  ASSERT_EQ(got.numel(), want.numel()) << g.name << "." << k;
  double md = 0, mw = 1e-3;
  Index worst = 0;
  for (Index i = 0; i < want.numel(); ++i) {
    double d = std::fabs((double)got[i] - want[i]);
    if (d > md) md = d, worst = i;
    mw = std::max(mw, std::fabs(want[i]));
  }
  EXPECT_LT(md / mw, tol<T>()) << g.name << "." << k << " (" << (sizeof(T) == 8 ? "double" : "float")
                               << "): max abs err " << md << " at " << worst << ", want "
                               << want[worst] << ", got " << (double)got[worst];
}

template <typename T>
class LayerGolden : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(LayerGolden, Types);

}  // namespace

TYPED_TEST(LayerGolden, Linear) {
  using T = TypeParam;
  for (bool bias : {true, false}) {
    Golden g(bias ? "linear_bias" : "linear_nobias");
    auto x = g.get<T>("x"), W = g.get<T>("W"), dy = g.get<T>("dy");
    Tensor<T> b = bias ? g.get<T>("b") : Tensor<T>();
    Tensor<T> y(g.shape("y")), dx(x.shape()), dW(W.shape()), db(Shape{W.shape()[0]});
    linear_forward<T>(x, W, bias ? CView<T>(b.view()) : CView<T>(), y);
    linear_backward<T>(x, W, dy, dx, dW, bias ? db.view() : View<T>());
    expect_close<T>(g, "y", y);
    expect_close<T>(g, "dx", dx);
    expect_close<T>(g, "dW", dW);
    if (bias) expect_close<T>(g, "db", db);
  }
}

TYPED_TEST(LayerGolden, EmbeddingDropout) {
  using T = TypeParam;
  Golden g("embedding_dropout");
  auto idsd = g.get<double>("ids");
  Tensor<std::int32_t> ids(idsd.shape());
  for (Index i = 0; i < ids.numel(); ++i) ids[i] = (std::int32_t)idsd[i];
  auto table = g.get<T>("table"), mask = g.get<T>("row_mask"), dy = g.get<T>("dy");
  Tensor<T> y(g.shape("y")), dtable(table.shape());
  embedding_forward<T>(ids, table, mask, y);
  embedding_backward<T>(ids, mask, dy, (std::int32_t)g.scalar("pad_idx"), dtable);
  expect_close<T>(g, "y", y);
  expect_close<T>(g, "dtable", dtable);
}

TYPED_TEST(LayerGolden, RnnDropout) {
  using T = TypeParam;
  Golden g("rnn_dropout");
  auto x = g.get<T>("x"), mask = g.get<T>("mask"), dy = g.get<T>("dy");
  Tensor<T> y(x.shape()), dx(x.shape());
  rnn_dropout_forward<T>(x, mask, y);
  rnn_dropout_backward<T>(dy, mask, dx);
  expect_close<T>(g, "y", y);
  expect_close<T>(g, "dx", dx);
}

TYPED_TEST(LayerGolden, WeightDropoutThroughLinear) {
  using T = TypeParam;
  Golden g("weight_dropout");
  auto x = g.get<T>("x"), Wr = g.get<T>("W_raw"), b = g.get<T>("b"), mask = g.get<T>("mask"),
       dy = g.get<T>("dy");
  Tensor<T> We(Wr.shape()), y(g.shape("y")), dx(x.shape()), dWe(Wr.shape()), dWr(Wr.shape()),
      db(b.shape());
  weight_dropout_forward<T>(Wr, mask, We);
  linear_forward<T>(x, We, b, y);
  linear_backward<T>(x, We, dy, dx, dWe, db);
  weight_dropout_backward<T>(dWe, mask, dWr);
  expect_close<T>(g, "y", y);
  expect_close<T>(g, "dx", dx);
  expect_close<T>(g, "dW_raw", dWr);
  expect_close<T>(g, "db", db);
}

TYPED_TEST(LayerGolden, DropoutThenRelu) {
  using T = TypeParam;
  Golden g("dropout_relu");
  auto x = g.get<T>("x"), mask = g.get<T>("mask"), dy = g.get<T>("dy");
  Tensor<T> a(x.shape()), y(x.shape()), da(x.shape()), dx(x.shape());
  dropout_forward<T>(x, mask, a);
  relu_forward<T>(a, y);
  relu_backward<T>(y, dy, da);
  dropout_backward<T>(da, mask, dx);
  expect_close<T>(g, "y", y);
  expect_close<T>(g, "dx", dx);
}

TYPED_TEST(LayerGolden, BatchNorm1d) {
  using T = TypeParam;
  Golden g("batchnorm");
  auto x = g.get<T>("x"), w = g.get<T>("weight"), b = g.get<T>("bias"), rm = g.get<T>("running_mean0"),
       rv = g.get<T>("running_var0"), dy = g.get<T>("dy");
  const Index C = w.numel();
  Tensor<T> y(x.shape()), xhat(x.shape()), rstd(Shape{C}), dx(x.shape()), dw(Shape{C}), db(Shape{C});
  batchnorm_forward_train<T>(x, w, b, rm, rv, y, {xhat, rstd}, g.scalar("momentum"), g.scalar("eps"));
  batchnorm_backward<T>(dy, w, {xhat, rstd}, dx, dw, db);
  expect_close<T>(g, "y", y);
  expect_close<T>(g, "running_mean1", rm);
  expect_close<T>(g, "running_var1", rv);
  expect_close<T>(g, "dx", dx);
  expect_close<T>(g, "dweight", dw);
  expect_close<T>(g, "dbias", db);
  auto xe = g.get<T>("x_eval");
  Tensor<T> ye(xe.shape());
  batchnorm_forward_eval<T>(xe, w, b, rm, rv, ye, g.scalar("eps"));
  expect_close<T>(g, "y_eval", ye);
  Tensor<T> wi(Shape{C}), bi(Shape{C});
  batchnorm_init<T>(wi, bi, {}, {});
  expect_close<T>(g, "weight_init", wi);
  expect_close<T>(g, "bias_init", bi);
}

TYPED_TEST(LayerGolden, MaskedConcatPool) {
  using T = TypeParam;
  Golden g("masked_concat_pool");
  auto out = g.get<T>("out"), dy = g.get<T>("dy");
  auto md = g.get<double>("pad_mask");
  Tensor<std::uint8_t> mask(md.shape());
  for (Index i = 0; i < md.numel(); ++i) mask[i] = md[i] != 0;
  const Index bs = out.shape()[0], C = out.shape()[2], bptt = (Index)g.scalar("bptt");
  Tensor<T> y(Shape{bs, 3 * C}), dout(out.shape());
  Tensor<std::int32_t> am(Shape{bs, C});
  masked_concat_pool_forward<T>(out, mask, y, am, bptt);
  masked_concat_pool_backward<T>(dy, mask, am, dout, bptt);
  expect_close<T>(g, "y", y);
  expect_close<T>(g, "dout", dout);
}

TYPED_TEST(LayerGolden, LmFusedSoftmaxCrossEntropy) {
  using T = TypeParam;
  for (const char* name : {"lm_softmax_ce", "lm_softmax_ce_acc"}) {
    Golden g(name);
    auto h = g.get<T>("hidden"), W = g.get<T>("W"), b = g.get<T>("b");
    auto td = g.get<double>("targets");
    Tensor<std::int32_t> tg(td.shape());
    for (Index i = 0; i < tg.numel(); ++i) tg[i] = (std::int32_t)td[i];
    for (Index chunk : {4, 64}) {
      Tensor<T> dh(h.shape()), dW(W.shape()), db(b.shape());
      auto r = lm_softmax_ce_forward_backward<T>(h, W, b, tg, dh, dW, db, {}, chunk);
      EXPECT_NEAR(r.loss, g.scalar("loss"), tol<T>() * 10) << name;
      EXPECT_EQ(r.correct, (Index)g.scalar("correct")) << name;
      expect_close<T>(g, "dhidden", dh);
      expect_close<T>(g, "dW", dW);
      expect_close<T>(g, "db", db);
      auto rf = lm_softmax_ce_forward<T>(h, W, b, tg, {}, chunk);
      EXPECT_NEAR(rf.loss, g.scalar("loss"), tol<T>() * 10) << name;
      EXPECT_EQ(rf.correct, (Index)g.scalar("correct")) << name;
    }
  }
}

TYPED_TEST(LayerGolden, SoftmaxCrossEntropy) {
  using T = TypeParam;
  Golden g("softmax_ce");
  auto x = g.get<T>("logits");
  auto td = g.get<double>("targets");
  Tensor<std::int32_t> tg(td.shape());
  for (Index i = 0; i < tg.numel(); ++i) tg[i] = (std::int32_t)td[i];
  Tensor<T> dx(x.shape()), p(x.shape());
  auto r = softmax_ce_forward_backward<T>(x, tg, dx);
  EXPECT_NEAR(r.loss, g.scalar("loss"), tol<T>());
  EXPECT_EQ(r.correct, (Index)g.scalar("correct"));
  expect_close<T>(g, "dlogits", dx);
  softmax_forward<T>(x, p);
  expect_close<T>(g, "probs", p);
}
