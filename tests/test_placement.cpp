// tests/test_placement.cpp — models on a backend with its own memory (nn::Placement), checked
// on the CPU: a test backend runs the CPU's ops but keeps every model tensor in memory handed out
// by its own Placement (host memory it allocates and counts), so the model takes every path a
// GPU backend takes — parameters uploaded, device views for the ops, host views for files,
// batches uploaded each step, the optimizer's moments and the carried state in that memory —
// while the arithmetic stays the CPU's. Training there must be BITWISE the CPU's: the same
// losses, the same weights, the same checkpoint/resume. (tests/test_cuda_train.cpp does the
// same against a real GPU, within tolerances.)
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <new>
#include <string>
#include <vector>

#include "backend_test_helpers.h"
#include "cli_helpers.h"
#include "io/bundle.h"
#include "nn/backend.h"
#include "nn/optim.h"
#include "nn/rng.h"
#include "train_test_helpers.h"
#include "ulmfit/awd_lstm.h"
#include "ulmfit/classifier_model.h"
#include "ulmfit/train.h"

using namespace nn;
using namespace ulmfit;
namespace fs = std::filesystem;

namespace {

// Host memory of its own, counted (strided row copies too).
class CountingPlacement final : public Placement {
 public:
  Memory memory() const override { return Memory::host; }
  void* alloc(std::size_t bytes) override {
    ++allocs;
    void* p = ::operator new[](bytes, std::align_val_t(kAlign));
    std::memset(p, 0, bytes);
    live += 1;
    return p;
  }
  void free(void* p) noexcept override {
    live -= 1;
    ::operator delete[](p, std::align_val_t(kAlign));
  }
  void zero(void* p, std::size_t bytes) override { std::memset(p, 0, bytes); }
  void copy(void* d, const void* s, std::size_t bytes) override { std::memmove(d, s, bytes); }
  void upload(void* d, const void* s, std::size_t bytes) override {
    ++uploads;
    std::memcpy(d, s, bytes);
  }
  void download(void* d, const void* s, std::size_t bytes) override {
    ++downloads;
    std::memcpy(d, s, bytes);
  }
  void copy_rows(void* d, std::size_t dp, const void* s, std::size_t sp, std::size_t row,
                 std::size_t rows) override {
    ++row_copies;
    Placement::copy_rows(d, dp, s, sp, row, rows);
  }
  long allocs = 0, live = 0, uploads = 0, downloads = 0, row_copies = 0;
};

// The CPU's ops over that memory.
class PlacedCpuBackend final : public CpuForwardingBackend {
 public:
  const char* name() const override { return "placed-cpu"; }
  Placement* placement() override { return &place; }
  CountingPlacement place;
};

ModelConfig tiny_lm() {
  ModelConfig c = ModelConfig::lm(40, 1.0);
  c.emb_sz = 8, c.n_hid = 12, c.n_layers = 3;
  c.embed_p = c.input_p = c.weight_p = c.hidden_p = c.output_p = 0.25;
  return c;
}

Tensor<std::int32_t> ids_of(Shape s, Rng& r) {
  Tensor<std::int32_t> t(s);
  for (Index i = 0; i < t.numel(); ++i) t[i] = (std::int32_t)(2 + r.below(38));
  return t;
}

std::vector<float> weights(AwdLstmLM& lm) {
  lm.encoder().sync_to_host();
  std::vector<float> w;
  for (auto& t : lm.tensors()) w.insert(w.end(), t.value.begin(), t.value.end());
  return w;
}

}  // namespace

TEST(Placement, TensorAndArenaKeepTheirElementsThere) {
  CountingPlacement p;
  Tensor<float> t;
  t.place(&p);
  t.resize({3, 4});
  EXPECT_EQ(t.placement(), &p);
  EXPECT_EQ(p.allocs, 1);
  for (Index i = 0; i < t.numel(); ++i) EXPECT_EQ(t[i], 0.f);  // (host memory: readable here)
  t[5] = 2.f;
  t.resize_keep({4, 4}, 12);  // grows: a new block, the old elements copied by the placement
  EXPECT_EQ(p.allocs, 2);
  EXPECT_EQ(t[5], 2.f);
  EXPECT_EQ(t[12], 0.f);
  Tensor<float> u = t;  // a copy stays in the same memory
  EXPECT_EQ(u.placement(), &p);
  EXPECT_EQ(u[5], 2.f);
  u.place(nullptr);  // back to the host: zeros of the same shape
  EXPECT_EQ(u.placement(), nullptr);
  EXPECT_EQ(u.shape(), (Shape{4, 4}));
  EXPECT_EQ(u[5], 0.f);
  {
    Arena<float> a;
    a.reserve(100, &p);
    EXPECT_EQ(a.placement(), &p);
    View<float> v = a.take({10});
    v[0] = 1.f;
    a.zero_all();
    EXPECT_EQ(v[0], 0.f);
  }
  t = Tensor<float>();
  u = Tensor<float>();
  EXPECT_EQ(p.live, 0) << "every block handed back to its placement";
}

TEST(Placement, LmStepsAndAdamAreBitwiseTheCpus) {
  PlacedCpuBackend be;
  const ModelConfig cfg = tiny_lm();
  AwdLstmLM cpu_lm(cfg), lm(cfg);
  Rng r1(5), r2(5);
  cpu_lm.init(r1);
  lm.init(r2);
  lm.set_backend(be);
  EXPECT_GT(be.place.allocs, 0);
  // Compute views are the placement's copies; tensors() stay host views for files.
  auto host = lm.tensors(), dev = lm.compute_tensors();
  ASSERT_EQ(host.size(), dev.size());
  for (std::size_t i = 0; i < host.size(); ++i) {
    EXPECT_NE(host[i].value.data, dev[i].value.data) << host[i].key;
    EXPECT_EQ(lm.encoder().host_of(dev[i].value).data, host[i].value.data) << host[i].key;
    EXPECT_EQ(lm.encoder().device_of(host[i].grad).data, dev[i].grad.data) << host[i].key;
  }
  Adam ca(lm_params(cpu_lm), cfg.n_layers + 1), ga(lm_params(lm), cfg.n_layers + 1);
  ga.set_backend(be);
  EXPECT_NE(ga.exp_avg(0).data, ca.exp_avg(0).data);
  Rng data(9);
  AwdLstmCache<float> cc, gc;
  ForwardOptions fo, go;
  fo.rng = &r1, go.rng = &r2;
  const long uploads = be.place.uploads;
  for (int step = 0; step < 5; ++step) {
    auto ids = ids_of({3, 6}, data), tg = ids_of({3, 6}, data);
    ca.zero_grad();
    ga.zero_grad();
    const double lc = cpu_lm.train_step(ids.view(), tg.view(), cc, fo);
    const double lg = lm.train_step(ids.view(), tg.view(), gc, go);
    EXPECT_EQ(lg, lc) << "step " << step;
    ca.step();
    ga.step();
  }
  EXPECT_GE(be.place.uploads - uploads, 10) << "ids and targets are uploaded every step";
  for (int l = 0; l < cfg.n_layers; ++l) EXPECT_EQ(lm.encoder().state().h[l].placement(), &be.place);
  EXPECT_EQ(weights(lm), weights(cpu_lm));
  Rng e(3);
  auto ids = ids_of({2, 9}, e), tg = ids_of({2, 9}, e);
  lm.reset(), cpu_lm.reset();
  EXPECT_EQ(lm.eval_loss(ids.view(), tg.view()), cpu_lm.eval_loss(ids.view(), tg.view()));
  // The optimizer state comes back from the placement's memory as the CPU's.
  EXPECT_EQ(ga.save_state(), ca.save_state());
  // Back on the CPU: the trained values are the model's again.
  lm.set_backend(cpu_backend());
  EXPECT_EQ(lm.encoder().placement(), nullptr);
  auto back = lm.compute_tensors(), cpu = cpu_lm.compute_tensors();
  for (std::size_t i = 0; i < back.size(); ++i)
    EXPECT_TRUE(std::equal(back[i].value.begin(), back[i].value.end(), cpu[i].value.begin())) << back[i].key;
}

// The whole training loop (stages, one-cycle, evaluation, checkpoints inside epochs with the
// carried state, a kill and --resume) on the placed backend: bitwise the CPU's uninterrupted run.
TEST(Placement, TrainLanguageModelAndResumeAreBitwiseTheCpus) {
  const TinyData docs(5, 24, 5);
  const ModelConfig cfg = tiny_lm();
  const auto stages = lm_finetune_stages(1, 1e-2, 1, 1e-3);
  auto run = [&](Backend* be, const fs::path& dir, bool resume, std::int64_t every, std::int64_t kill) {
    AwdLstmLM lm(cfg);
    Rng rng(7);
    lm.init(rng);
    if (be) lm.set_backend(*be);
    train_language_model(lm, docs.vocab, docs.train, docs.valid, 4, 6, stages,
                         kill_options(dir, resume, every, 0, kill));
    return weights(lm);
  };
  PlacedCpuBackend be;
  const fs::path a = clitest::fresh_dir("placement_cpu"), b = clitest::fresh_dir("placement_dev");
  const auto straight = run(nullptr, a, false, 0, -1);
  const auto placed = run(&be, b, false, 0, -1);
  EXPECT_EQ(placed, straight);
  // Its bundle holds the trained weights (read back from the placement's memory).
  auto bundle = io::Bundle::load((b / "lm.safetensors").string());
  AwdLstmLM loaded(bundle.config());
  load_lm_weights(loaded, bundle);
  EXPECT_EQ(weights(loaded), straight);
  // Killed inside an epoch (after a checkpoint that carries the state) and resumed.
  fs::remove_all(b);
  EXPECT_THROW(run(&be, b, false, 3, 8), std::runtime_error);
  const auto resumed = run(&be, b, true, 3, -1);
  EXPECT_EQ(resumed, straight);
  fs::remove_all(a);
  fs::remove_all(b);
}

namespace {

ModelConfig tiny_classifier() {
  ModelConfig c = TinyData::sized(ModelConfig::classifier(40, 0.5));
  c.bptt = 6, c.max_len = 18;
  return c;
}

std::vector<float> weights(ClassifierModel& m) {
  m.sync_to_host();
  std::vector<float> w;
  for (auto& t : m.tensors()) w.insert(w.end(), t.value.begin(), t.value.end());
  return w;
}

}  // namespace

// The classifier's steps on the placed backend through every freezing stage (head only, then
// deeper, then all): the same losses, hits, gradients and Adam steps as the CPU's, bit for bit;
// the BatchNorm running statistics live there too; eval-mode forwards agree; it refuses to
// serve there, and back on the CPU it serves the trained values.
TEST(Placement, ClassifierStepsAndAdamAreBitwiseTheCpus) {
  PlacedCpuBackend be;
  const ModelConfig cfg = tiny_classifier();
  ClassifierModel cpu(cfg), dev(cfg);
  Rng r1(5), r2(5);
  cpu.init(r1);
  dev.init(r2);
  dev.set_backend(be);
  EXPECT_EQ(dev.placement(), &be.place);
  auto host = dev.tensors(), comp = dev.compute_tensors();
  ASSERT_EQ(host.size(), comp.size());
  for (std::size_t i = 0; i < host.size(); ++i) {
    EXPECT_NE(host[i].value.data, comp[i].value.data) << host[i].key << ": a device copy";
    EXPECT_EQ(dev.encoder().host_of(comp[i].value).data, host[i].value.data) << host[i].key;
  }
  Adam ca(classifier_params(cpu), cpu.n_groups()), ga(classifier_params(dev), dev.n_groups());
  ga.set_backend(be);
  for (std::size_t i = 0; i < ga.params().size(); ++i)
    EXPECT_NE(ga.params()[i].value.data, ca.params()[i].value.data) << ga.params()[i].name;
  Rng data(9);
  ClassifierCache<float> cc, gc;
  ForwardOptions fo, go;
  fo.rng = &r1, go.rng = &r2;
  const long uploads = be.place.uploads, rows = be.place.row_copies;
  int step = 0;
  for (int freeze : {-1, -2, -3, 0}) {
    cpu.freeze_to(freeze), dev.freeze_to(freeze);
    ca.freeze_to(freeze), ga.freeze_to(freeze);
    for (int k = 0; k < 3; ++k, ++step) {
      auto ids = padded_batch({17, 14, 9, 5}, cfg.bptt, 9, 31, data);
      Tensor<std::int32_t> y({4});
      for (Index b = 0; b < 4; ++b) y[b] = (std::int32_t)data.below(3);
      ca.zero_grad();
      ga.zero_grad();
      Index hc = -1, hg = -2;
      const double lc = cpu.train_step(ids.view(), y.view(), cc, fo, &hc);
      const double lg = dev.train_step(ids.view(), y.view(), gc, go, &hg);
      EXPECT_EQ(lg, lc) << "step " << step << ", freeze_to " << freeze;
      EXPECT_EQ(hg, hc) << "step " << step;
      ca.step();
      ga.step();
    }
    EXPECT_EQ(weights(dev), weights(cpu)) << "after freeze_to " << freeze;
  }
  EXPECT_GE(be.place.uploads - uploads, 2 * step) << "pad masks and targets go up every step";
  EXPECT_GT(be.place.row_copies, rows) << "kept chunks are copied row by row in its memory";
  EXPECT_EQ(gc.out.placement(), &be.place);
  EXPECT_EQ(gc.head.at(0).xhat.placement(), &be.place);
  EXPECT_EQ(ga.save_state(), ca.save_state());
  // Eval mode on a padded batch (running statistics, no dropout).
  auto ids = padded_batch({11, 8, 3}, cfg.bptt, 9, 31, data);
  Tensor<float> lc({3, cfg.n_classes}), lg({3, cfg.n_classes});
  const ForwardOptions eval{false, nullptr, false};
  cpu.forward(ids.view(), lc.view(), cc, eval);
  dev.forward(ids.view(), lg.view(), gc, eval);
  EXPECT_TRUE(std::equal(lc.view().begin(), lc.view().end(), lg.view().begin()));
  // Serving there is refused with a message; back on the CPU it serves the trained values.
  const std::vector<std::int32_t> doc = {2, 9, 10, 11, 12, 13, 14, 15};
  try {
    (void)dev.infer(doc);
    ADD_FAILURE() << "served on the placed backend";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("only trains"), std::string::npos) << e.what();
  }
  dev.set_backend(cpu_backend());
  EXPECT_EQ(dev.placement(), nullptr);
  EXPECT_EQ(dev.infer(doc), cpu.infer(doc));
}

// The whole classifier recipe (gradual unfreezing, one-cycle, validation every epoch on a CPU
// copy, best-model bundle, a kill inside an epoch and --resume) on the placed backend: bitwise
// the CPU's uninterrupted run, and its bundles hold those weights.
TEST(Placement, TrainClassifierAndResumeAreBitwiseTheCpus) {
  const ModelConfig cfg = tiny_classifier();
  const TinyData data(9, 24, 8);
  Rng label_rng(10);
  std::vector<std::int32_t> train_y(data.train.size()), valid_y(data.valid.size());
  for (auto& y : train_y) y = (std::int32_t)label_rng.below(3);
  for (auto& y : valid_y) y = (std::int32_t)label_rng.below(3);
  const auto stages = classifier_stages(1);  // 4 epochs, 6 batches each
  ClassifierResult last;
  auto run = [&](Backend* be, const fs::path& dir, bool resume, std::int64_t every, std::int64_t kill) {
    ClassifierModel m(cfg);
    Rng rng(7);
    m.init(rng);
    if (be) m.set_backend(*be);
    last = train_classifier(m, data.vocab, data.train, train_y, data.valid, valid_y, 4, stages,
                            kill_options(dir, resume, every, 0, kill));
    return weights(m);
  };
  PlacedCpuBackend be;
  const fs::path a = clitest::fresh_dir("placement_clas_cpu"), b = clitest::fresh_dir("placement_clas_dev");
  const auto straight = run(nullptr, a, false, 0, -1);
  const ClassifierResult cpu_res = last;
  const auto placed = run(&be, b, false, 0, -1);
  EXPECT_EQ(placed, straight);
  EXPECT_EQ(last.best_macro_f1, cpu_res.best_macro_f1) << "validation scores the same values";
  EXPECT_EQ(last.valid_accuracy, cpu_res.valid_accuracy);
  auto loaded = ClassifierModel::from_bundle(io::Bundle::load(last.last_model_path));
  EXPECT_EQ(weights(loaded), straight);
  for (const std::int64_t kill : {10, 23}) {  // inside the 2nd epoch, inside the last
    fs::remove_all(b);
    EXPECT_THROW(run(&be, b, false, 3, kill), std::runtime_error);
    const auto resumed = run(&be, b, true, 3, -1);
    EXPECT_EQ(resumed, straight) << "killed at step " << kill;
    // The resumed run reports the best epoch, even one reached before the kill (the checkpoint
    // keeps where it was).
    EXPECT_EQ(last.best_macro_f1, cpu_res.best_macro_f1) << "killed at step " << kill;
    EXPECT_EQ(last.best_stage, cpu_res.best_stage) << "killed at step " << kill;
    EXPECT_EQ(last.best_epoch, cpu_res.best_epoch) << "killed at step " << kill;
  }
  EXPECT_GE(cpu_res.best_epoch, 0);
  fs::remove_all(a);
  fs::remove_all(b);
}
