// ctest-labels: cuda
// tests/test_cuda_train.cpp — a language model and a classifier trained on the CUDA backend
// (parameters, gradients, optimizer state, state and caches in device memory;
// AwdLstmEncoderT::set_backend, ClassifierModelT::set_backend) against the same models on the
// CPU:
//   * without dropout (the backends draw different masks), the loss and every gradient of a
//     training step, and the losses of Adam steps after it, equal the CPU's within tolerance;
//   * with every dropout on, training lowers the loss; eval_loss equals the CPU's on the same
//     weights; weights saved from the device and loaded back on the CPU are those trained;
//   * `pretrain --device cuda` runs, checkpoints, resumes and writes a bundle the CPU loads;
//   * the classifier's steps through every freezing stage equal the CPU's (no dropout), and
//     `train-classifier --device cuda` trains, resumes and writes a bundle the CPU serves.
// Every test needs a usable CUDA device; elsewhere each is SKIPPED (as tests/test_cuda_ops.cpp).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli_helpers.h"
#include "gpu_test_helpers.h"
#include "train_test_helpers.h"
#include "io/bundle.h"
#include "nn/backend.h"
#include "nn/optim.h"
#include "nn/rng.h"
#include "ulmfit/awd_lstm.h"
#include "ulmfit/classifier_model.h"
#include "ulmfit/train.h"

using namespace nn;
using namespace ulmfit;
namespace fs = std::filesystem;

namespace {

ModelConfig small_lm(double p) {
  ModelConfig c = ModelConfig::lm(61, 1.0);
  c.emb_sz = 16, c.n_hid = 24, c.n_layers = 3;
  c.embed_p = c.input_p = c.weight_p = c.hidden_p = c.output_p = p;
  return c;
}

Tensor<std::int32_t> ids_of(Shape s, Rng& r, int V) {
  Tensor<std::int32_t> t(s);
  for (Index i = 0; i < t.numel(); ++i) t[i] = (std::int32_t)(2 + r.next_u64() % (V - 2));
  return t;
}

// The host copy of a device view.
std::vector<float> down(Placement* p, View<float> v) {
  std::vector<float> h((std::size_t)v.numel());
  if (p)
    p->download(h.data(), v.data, sizeof(float) * h.size());
  else
    std::copy(v.begin(), v.end(), h.begin());
  return h;
}

void expect_close(const std::vector<float>& gpu, const std::vector<float>& cpu, double atol,
                  double rtol, const std::string& what) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  std::size_t bad = 0;
  double worst = 0;
  for (std::size_t i = 0; i < gpu.size(); ++i) {
    const double d = std::abs((double)gpu[i] - cpu[i]);
    worst = std::max(worst, d);
    if (!(d <= atol + rtol * std::abs((double)cpu[i]))) ++bad;
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << gpu.size() << " elements differ (worst "
                     << worst << ")";
}

}  // namespace

TEST(CudaTrain, LmStepAndAdamEqualTheCpuWithoutDropout) {
  NEED_GPU_BACKEND();
  const ModelConfig cfg = small_lm(0.0);
  AwdLstmLM cpu_lm(cfg), gpu_lm(cfg);
  Rng r1(5), r2(5);
  cpu_lm.init(r1);
  gpu_lm.init(r2);
  gpu_lm.set_backend(be);
  ASSERT_EQ(gpu_lm.encoder().placement(), be.placement());
  Adam cpu_adam(lm_params(cpu_lm), cfg.n_layers + 1), gpu_adam(lm_params(gpu_lm), cfg.n_layers + 1);
  gpu_adam.set_backend(be);
  for (auto* a : {&cpu_adam, &gpu_adam}) a->set_lr(3e-3);
  Rng data(9);
  AwdLstmCache<float> cc, gc;
  ForwardOptions fo;
  fo.rng = &r1;
  ForwardOptions go;
  go.rng = &r2;
  for (int step = 0; step < 4; ++step) {
    auto ids = ids_of({4, 7}, data, 61), tg = ids_of({4, 7}, data, 61);
    cpu_adam.zero_grad();
    gpu_adam.zero_grad();
    const double lc = cpu_lm.train_step(ids.view(), tg.view(), cc, fo);
    const double lg = gpu_lm.train_step(ids.view(), tg.view(), gc, go);
    EXPECT_NEAR(lg, lc, 1e-5 * std::abs(lc) + 1e-6) << "step " << step;
    if (step == 0) {  // every gradient of the first step
      auto ct = cpu_lm.compute_tensors(), gt = gpu_lm.compute_tensors();
      ASSERT_EQ(ct.size(), gt.size());
      for (std::size_t i = 0; i < ct.size(); ++i)
        expect_close(down(be.placement(), gt[i].grad), down(nullptr, ct[i].grad), 1e-5, 1e-3,
                     "grad " + ct[i].key);
    }
    cpu_adam.step();
    gpu_adam.step();
  }
  // The weights after 4 Adam steps, read back through the host copy.
  gpu_lm.encoder().sync_to_host();
  auto ct = cpu_lm.tensors(), gt = gpu_lm.tensors();
  for (std::size_t i = 0; i < ct.size(); ++i)
    expect_close(down(nullptr, gt[i].value), down(nullptr, ct[i].value), 1e-4, 1e-3, ct[i].key);
  // The carried state is in device memory and equals the CPU's.
  for (int l = 0; l < cfg.n_layers; ++l)
    expect_close(down(be.placement(), gpu_lm.encoder().state_h(l)),
                 down(nullptr, cpu_lm.encoder().state_h(l)), 1e-4, 1e-3, "state h" + std::to_string(l));
}

TEST(CudaTrain, WithDropoutTheLossFallsAndWeightsComeBack) {
  NEED_GPU_BACKEND();
  const ModelConfig cfg = small_lm(0.2);
  AwdLstmLM lm(cfg);
  Rng r(3);
  lm.init(r);
  lm.set_backend(be);
  Adam adam(lm_params(lm), cfg.n_layers + 1);
  adam.set_backend(be);
  adam.set_lr(1e-2);
  Rng data(4);
  auto ids = ids_of({8, 10}, data, 61), tg = ids_of({8, 10}, data, 61);
  AwdLstmCache<float> cache;
  ForwardOptions fo;
  fo.rng = &r;
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    lm.reset();
    adam.zero_grad();
    const double loss = lm.train_step(ids.view(), tg.view(), cache, fo);
    ASSERT_TRUE(std::isfinite(loss)) << step;
    if (step == 0) first = loss;
    last = loss;
    adam.step();
  }
  EXPECT_LT(last, first - 0.5) << "first " << first << ", last " << last;

  // eval_loss on the device equals the CPU's on the same weights (a bundle in between).
  io::BundleContents b = lm_bundle(lm, Vocab::from_itos([] {
                                     std::vector<std::string> v;
                                     for (int i = 0; i < 61; ++i) v.push_back("t" + std::to_string(i));
                                     return v;
                                   }()),
                                   "");
  fs::path dir = clitest::fresh_dir("cuda_train_bundle");
  const std::string path = (dir / "lm.safetensors").string();
  io::write_bundle(path, b);
  AwdLstmLM cpu_lm(cfg);
  load_lm_weights(cpu_lm, io::Bundle::load(path));
  lm.reset();
  cpu_lm.reset();
  const double eg = lm.eval_loss(ids.view(), tg.view());
  const double ec = cpu_lm.eval_loss(ids.view(), tg.view());
  EXPECT_NEAR(eg, ec, 1e-4 * std::abs(ec));
  // and loading that bundle into a device model gives the same eval loss again
  AwdLstmLM again(cfg);
  again.set_backend(be);
  load_lm_weights(again, io::Bundle::load(path));
  again.reset();
  EXPECT_NEAR(again.eval_loss(ids.view(), tg.view()), ec, 1e-4 * std::abs(ec));
  fs::remove_all(dir);
}

TEST(CudaTrain, PretrainOnTheDeviceCheckpointsResumesAndWritesABundle) {
  NEED_GPU_BACKEND();
  fs::path dir = clitest::fresh_dir("cuda_pretrain");
  // A plain-text corpus: 300 paragraphs of words from a small list (blank-line separated).
  const std::string data = (dir / "corpus.txt").string();
  {
    const char* words[] = {"the", "quark", "gluon", "mass", "of", "a", "field", "theory", "we",
                           "study", "model", "decay", "lattice", "and", "in", "is", "new", "data"};
    std::ofstream f(data);
    Rng r(1);
    for (int p = 0; p < 300; ++p) {
      for (int w = 0; w < 40; ++w) f << words[r.next_u64() % 18] << (w % 13 == 12 ? ". " : " ");
      f << "\n\n";
    }
  }
  const std::string base = clitest::kBin + " pretrain --preset tiny --device cuda -q --max-vocab 500 -d " +
                           data + " --epochs 2 -o " + (dir / "p").string();
  int rc = -1;
  std::string out = clitest::run(base + " --max-steps 6", &rc, true);
  ASSERT_EQ(WEXITSTATUS(rc), 0) << out;
  ASSERT_TRUE(fs::exists(dir / "p" / "checkpoint.json")) << out;
  out = clitest::run(base + " --resume", &rc, true);
  ASSERT_EQ(WEXITSTATUS(rc), 0) << out;
  auto b = io::Bundle::load((dir / "p" / "lm.safetensors").string());
  AwdLstmLM lm(b.config());
  load_lm_weights(lm, b);
  for (auto& t : lm.tensors())
    for (float v : t.value) ASSERT_TRUE(std::isfinite(v)) << t.key;
  // Serving does not run on the device: one line says so.
  out = clitest::run(clitest::kBin + " validate --device cuda -d " + data + " --model " +
                         (dir / "p" / "lm.safetensors").string(), &rc, true);
  EXPECT_EQ(WEXITSTATUS(rc), 1) << out;
  EXPECT_NE(out.find("only training runs"), std::string::npos) << out;
  fs::remove_all(dir);
}

TEST(CudaTrain, ClassifierStepsEqualTheCpuThroughEveryStage) {
  NEED_GPU_BACKEND();
  ModelConfig cfg = ModelConfig::classifier(61, 0.0);  // no dropout: the same function
  cfg.emb_sz = 16, cfg.n_hid = 24, cfg.n_layers = 3;
  cfg.head_ps = {0.0, 0.0};
  cfg.bptt = 5, cfg.max_len = 15;
  ClassifierModel cpu(cfg), gpu(cfg);
  Rng r1(5), r2(5);
  cpu.init(r1);
  gpu.init(r2);
  gpu.set_backend(be);
  ASSERT_EQ(gpu.placement(), be.placement());
  Adam ca(classifier_params(cpu), cpu.n_groups()), ga(classifier_params(gpu), gpu.n_groups());
  ga.set_backend(be);
  for (auto* a : {&ca, &ga}) a->set_lr(3e-3);
  Rng data(9);
  ClassifierCache<float> cc, gc;
  ForwardOptions fo, go;
  fo.rng = &r1, go.rng = &r2;
  // Rows longest first, front padding to whole chunks, then end padding (pad = 1), as batched.
  const std::vector<Index> lens = {23, 19, 12, 9, 6, 4};
  for (int freeze : {-1, -2, 0}) {
    for (auto* m : {&cpu, &gpu}) m->freeze_to(freeze);
    for (auto* a : {&ca, &ga}) a->freeze_to(freeze);
    for (int step = 0; step < 3; ++step) {
      const Tensor<std::int32_t> ids = padded_batch(lens, cfg.bptt, 2, 59, data);  // 25 columns
      Tensor<std::int32_t> y({(Index)lens.size()});
      for (Index b = 0; b < (Index)lens.size(); ++b) y[b] = (std::int32_t)(data.next_u64() % 3);
      ca.zero_grad();
      ga.zero_grad();
      const double lc = cpu.train_step(ids.view(), y.view(), cc, fo);
      const double lg = gpu.train_step(ids.view(), y.view(), gc, go);
      const std::string at = "freeze_to " + std::to_string(freeze) + " step " + std::to_string(step);
      EXPECT_NEAR(lg, lc, 1e-4 * std::abs(lc) + 1e-5) << at;
      if (step == 0) {
        auto ct = cpu.compute_tensors(), gt = gpu.compute_tensors();
        ASSERT_EQ(ct.size(), gt.size());
        for (std::size_t i = 0; i < ct.size(); ++i)
          if (gt[i].grad.data)
            expect_close(down(be.placement(), gt[i].grad), down(nullptr, ct[i].grad), 1e-4, 1e-2,
                         at + " grad " + ct[i].key);
      }
      ca.step();
      ga.step();
    }
  }
  // Weights and BatchNorm running statistics after the steps, through the host copies.
  gpu.sync_to_host();
  auto ct = cpu.tensors(), gt = gpu.tensors();
  for (std::size_t i = 0; i < ct.size(); ++i)
    expect_close(down(nullptr, gt[i].value), down(nullptr, ct[i].value), 1e-3, 1e-2, ct[i].key);
  // Eval mode on the device (running statistics) against the CPU.
  Tensor<std::int32_t> ids({2, 10});
  for (Index i = 0; i < 20; ++i) ids[i] = (std::int32_t)(2 + data.next_u64() % 59);
  Tensor<float> lc({2, 3}), lg({2, 3});
  const ForwardOptions eval{false, nullptr, false};
  cpu.forward(ids.view(), lc.view(), cc, eval);
  gpu.forward(ids.view(), lg.view(), gc, eval);
  expect_close(down(nullptr, lg.view()), down(nullptr, lc.view()), 1e-3, 1e-2, "eval logits");
  EXPECT_THROW((void)gpu.infer(std::vector<std::int32_t>{2, 5, 6}), std::invalid_argument);
}

TEST(CudaTrain, TrainClassifierOnTheDeviceResumesAndWritesABundleTheCpuServes) {
  NEED_GPU_BACKEND();
  fs::path dir = clitest::fresh_dir("cuda_clas");
  // Labeled papers of words from three small lists (one per label), and a tiny LM on the CPU.
  const std::string labeled = (dir / "papers.jsonl").string();
  {
    const char* words[3][6] = {{"quark", "gluon", "lattice", "qcd", "hadron", "meson"},
                               {"galaxy", "star", "cosmic", "dust", "planet", "orbit"},
                               {"protein", "cell", "tissue", "gene", "virus", "enzyme"}};
    const char* labels[3] = {"core", "non_core", "rejected"};
    std::ofstream f(labeled);
    Rng r(2);
    for (int p = 0; p < 90; ++p) {
      const int c = p % 3;
      std::string text;
      for (int w = 0; w < 12 + (int)(r.next_u64() % 30); ++w)
        text += std::string(words[r.next_u64() % 4 == 0 ? (c + 1) % 3 : c][r.next_u64() % 6]) + " ";
      f << "{\"title\": \"t" << p << "\", \"abstract\": \"" << text << "\", \"label\": \""
        << labels[c] << "\"}\n";
    }
  }
  int rc = -1;
  std::string out = clitest::run(clitest::kBin + " finetune-lm --preset tiny -q -d " + labeled +
                                     " --epochs 1 -o " + (dir / "lm").string(), &rc, true);
  ASSERT_EQ(WEXITSTATUS(rc), 0) << out;
  const std::string base = clitest::kBin + " train-classifier --preset tiny --device cuda -q -d " +
                           labeled + " --lm " + (dir / "lm" / "lm.safetensors").string() +
                           " --epochs 2 -o " + (dir / "c").string();
  out = clitest::run(base + " --max-steps 4", &rc, true);
  ASSERT_EQ(WEXITSTATUS(rc), 0) << out;
  ASSERT_TRUE(fs::exists(dir / "c" / "checkpoint.json")) << out;
  out = clitest::run(base + " --resume", &rc, true);
  ASSERT_EQ(WEXITSTATUS(rc), 0) << out;
  // The bundle serves on the CPU: finite weights, and validate scores it.
  auto b = io::Bundle::load((dir / "c" / "classifier.safetensors").string());
  auto m = ClassifierModel::from_bundle(b);
  for (auto& t : m.tensors())
    for (float v : t.value) ASSERT_TRUE(std::isfinite(v)) << t.key;
  out = clitest::run(clitest::kBin + " validate -d " + labeled + " --model " +
                         (dir / "c" / "classifier.safetensors").string(), &rc, true);
  EXPECT_EQ(WEXITSTATUS(rc), 0) << out;
  EXPECT_NE(out.find("accuracy"), std::string::npos) << out;
  fs::remove_all(dir);
}
