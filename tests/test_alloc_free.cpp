// tests/test_alloc_free.cpp — a training step allocates nothing once it has seen its shapes.
//
// This test program replaces the C allocator (malloc, calloc, realloc, aligned_alloc,
// posix_memalign, memalign; operator new and Eigen go through them) with counting wrappers
// around glibc's own (__libc_malloc, ...). A counter is switched on around the measured calls
// only; every thread (OpenMP workers included) counts into the same atomic.
//
// A "step" is what run_stages (ulmfit/train.cpp) does per batch: Adam::zero_grad, the model's
// train_step (forward, loss, backward) and Adam::step. The models are small (seconds in total)
// but large enough that the LSTM and the vocabulary softmax take their threaded paths with two
// threads. Warm-up: one epoch over the loader's batches (every shape the run will see); the
// measured epoch then runs over the same batches in a new order and must allocate nothing.
#include <gtest/gtest.h>
#include <execinfo.h>
#include <malloc.h>
#include <unistd.h>
#include <omp.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "nn/backend.h"
#include "nn/optim.h"
#include "nn/rng.h"
#include "ulmfit/awd_lstm.h"
#include "ulmfit/classifier_model.h"
#include "ulmfit/data.h"

// ---- the counting allocator ----------------------------------------------------------------------
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);
}

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocs{0};
thread_local bool t_in_trace = false;
// INSPIRE_ALLOC_TRACE=1: print the stack of every counted allocation (to find where it is).
void trace() {
  static const bool on = std::getenv("INSPIRE_ALLOC_TRACE") != nullptr;
  if (!on || t_in_trace) return;
  t_in_trace = true;
  void* frames[24];
  int n = backtrace(frames, 24);
  backtrace_symbols_fd(frames, n, 2);
  write(2, "----\n", 5);
  t_in_trace = false;
}
inline void note() {
  if (g_counting.load(std::memory_order_relaxed) && !t_in_trace) {
    g_allocs.fetch_add(1, std::memory_order_relaxed);
    trace();
  }
}
}  // namespace

extern "C" {
void* malloc(std::size_t n) {
  note();
  return __libc_malloc(n);
}
void* calloc(std::size_t a, std::size_t b) {
  note();
  return __libc_calloc(a, b);
}
void* realloc(void* p, std::size_t n) {
  note();
  return __libc_realloc(p, n);
}
void free(void* p) { __libc_free(p); }
void* memalign(std::size_t al, std::size_t n) {
  note();
  return __libc_memalign(al, n);
}
void* aligned_alloc(std::size_t al, std::size_t n) {
  note();
  return __libc_memalign(al, n);
}
int posix_memalign(void** out, std::size_t al, std::size_t n) {
  note();
  void* p = __libc_memalign(al, n);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
}

namespace {

using namespace ulmfit;
using nn::Index;

// Counts allocations made while `f` runs.
template <typename F>
long count_allocs(F&& f) {
  g_allocs = 0;
  g_counting = true;
  f();
  g_counting = false;
  return g_allocs.load();
}

std::vector<Doc> random_docs(nn::Rng& rng, int n, int min_len, int max_len, Index vocab) {
  std::vector<Doc> docs(n);
  for (auto& d : docs) {
    d.resize(min_len + rng.below(max_len - min_len + 1));
    d[0] = 2;  // xxbos
    for (std::size_t i = 1; i < d.size(); ++i) d[i] = 4 + (std::int32_t)rng.below(vocab - 4);
  }
  return docs;
}

ModelConfig small_encoder(Index vocab) {
  ModelConfig c;  // dropouts: the defaults (all on)
  c.vocab_size = vocab, c.emb_sz = 64, c.n_hid = 128, c.n_layers = 3, c.pad_idx = 1;
  return c;
}

class AllocFree : public testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    saved_ = nn::num_threads();
    nn::set_num_threads(GetParam());
  }
  void TearDown() override { nn::set_num_threads(saved_); }
  int saved_ = 1;
};

}  // namespace

// The hook itself: an allocation made while counting is seen (also from another thread), none is
// counted outside the window.
TEST(AllocFreeHook, CountsAllocationsOnEveryThread) {
  std::vector<int>* keep = nullptr;
  long n = count_allocs([&] { keep = new std::vector<int>(1000); });
  EXPECT_EQ(n, 2);  // the vector object and its buffer
  delete keep;
  long m = count_allocs([&] {
#pragma omp parallel num_threads(2)
    {
      void* p = std::malloc(64 + omp_get_thread_num());
      asm volatile("" : : "r"(p) : "memory");
      std::free(p);
    }
  });
  EXPECT_GE(m, 2);
  EXPECT_EQ(count_allocs([] {}), 0);
}

TEST_P(AllocFree, LanguageModelStep) {
  const Index V = 300;
  AwdLstmLM model(small_encoder(V));
  nn::Rng rng(7);
  model.init(rng);
  model.chunk_rows = 64;  // several row chunks per step
  nn::Adam adam(lm_params(model), model.config().n_layers + 1);
  nn::Rng drng(11);
  LMLoader loader(random_docs(drng, 40, 5, 60, V), /*bs=*/8, /*seq_len=*/20, /*shuffle=*/true, 3);
  AwdLstmCache<float> cache;
  LMBatch b;
  ForwardOptions fo{true, &rng, false};
  double loss_sum = 0;
  auto step = [&] {
    nn::CView<TokenId> ids(b.x.data(), {(Index)b.bs, (Index)b.seq_len});
    nn::CView<TokenId> tg(b.y.data(), {(Index)b.bs, (Index)b.seq_len});
    adam.zero_grad();
    loss_sum += model.train_step(ids, tg, cache, fo);
    adam.step();
  };
  loader.begin_epoch();
  int warm = 0;
  while (loader.next(b)) step(), ++warm;
  ASSERT_GE(warm, 3);
  loader.begin_epoch();
  int measured = 0;
  long allocs = 0;
  while (loader.next(b)) {
    allocs += count_allocs(step);
    ++measured;
  }
  EXPECT_EQ(measured, warm);
  EXPECT_EQ(allocs, 0) << "heap allocations in " << measured << " LM steps after warm-up ("
                       << GetParam() << " threads)";
  EXPECT_TRUE(std::isfinite(loss_sum));
}

TEST_P(AllocFree, ClassifierStep) {
  const Index V = 300;
  ModelConfig cfg = small_encoder(V);
  cfg.kind = "classifier";
  cfg.set_dropouts(io::kFastaiClasDropouts.times(0.5));
  cfg.bptt = 12;        // several chunks per document
  cfg.max_len = 12 * 3; // and some chunks that are not kept for pooling
  ClassifierModel m(cfg);
  nn::Rng rng(5);
  m.init(rng);
  nn::Adam adam(classifier_params(m), m.n_groups());
  nn::Rng drng(13);
  const int n_docs = 32;
  auto docs = random_docs(drng, n_docs, 3, 70, V);
  std::vector<std::int32_t> labels(n_docs);
  for (auto& l : labels) l = (std::int32_t)drng.below(3);
  ClassifierLoader loader(docs, labels, /*bs=*/8, /*train=*/true, 9, (std::size_t)cfg.bptt);
  ClassifierCache<float> cache;
  ClassifierBatch b;
  ForwardOptions fo{true, &rng, false};
  double loss_sum = 0;
  auto step = [&] {
    nn::CView<TokenId> ids(b.x.data(), {(Index)b.bs, (Index)b.len});
    nn::CView<std::int32_t> tg(b.y.data(), {(Index)b.bs});
    adam.zero_grad();
    loss_sum += m.train_step(ids, tg, cache, fo);
    adam.step();
  };
  // Every stage of gradual unfreezing (head only, then more groups, then all), as the recipe.
  for (int freeze : {-1, -2, -3, 0}) {
    m.freeze_to(freeze);
    adam.freeze_to(freeze);
    loader.begin_epoch();
    int warm = 0;
    while (loader.next(b)) step(), ++warm;
    ASSERT_GE(warm, 3);
    loader.begin_epoch();
    long allocs = 0;
    int measured = 0;
    while (loader.next(b)) {
      allocs += count_allocs(step);
      ++measured;
    }
    EXPECT_EQ(measured, warm);
    EXPECT_EQ(allocs, 0) << "heap allocations in " << measured
                         << " classifier steps after warm-up at freeze_to(" << freeze << ", "
                         << GetParam() << " threads)";
  }
  EXPECT_TRUE(std::isfinite(loss_sum));
}

INSTANTIATE_TEST_SUITE_P(Threads, AllocFree, testing::Values(1, 2),
                         [](const testing::TestParamInfo<int>& i) {
                           return std::to_string(i.param) + "threads";
                         });
