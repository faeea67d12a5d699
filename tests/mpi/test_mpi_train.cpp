// ctest-labels: mpi
// tests/mpi/test_mpi_train.cpp — data-parallel training through the library API, run under
// `mpirun -np 2` by ctest (mpi_train_np2): the classifier (gradual unfreezing, synchronised
// BatchNorm, an uneven 4 + 3 split of every batch of 7) trained by the two ranks equals the
// same classifier trained by one process (each rank trains that reference alone, with the
// single-process communicator), every tensor — BatchNorm running stats included.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <unistd.h>
#include <vector>

#include "dist/comm.h"
#include "tests/mpi/mpi_gtest_main.h"
#include "tests/train_test_helpers.h"
#include "nn/rng.h"
#include "ulmfit/train.h"

namespace fs = std::filesystem;
using namespace ulmfit;

namespace {

struct Data {
  std::vector<Doc> train, valid;
  std::vector<std::int32_t> train_labels, valid_labels;
};

// Documents of 5..80 tokens (bptt 16: several chunks, front padding of whole chunks); the label
// is a function of the tokens, so there is something to learn.
Data make_data() {
  nn::Rng rng(11);
  Data d;
  auto one = [&](std::vector<Doc>& docs, std::vector<std::int32_t>& labels) {
    Doc doc = {2};
    const int len = 5 + (int)rng.below(76);
    int s = 0;
    for (int i = 0; i < len; ++i) {
      int t = 9 + (int)rng.below(31);
      doc.push_back(t);
      s += t;
    }
    docs.push_back(doc);
    labels.push_back(s % 3);
  };
  for (int i = 0; i < 63; ++i) one(d.train, d.train_labels);
  for (int i = 0; i < 12; ++i) one(d.valid, d.valid_labels);
  return d;
}

ModelConfig config() {
  ModelConfig c = ModelConfig::classifier(40, 0.5);
  c.emb_sz = 8, c.n_hid = 12, c.n_layers = 2;
  c.bptt = 16;
  c.max_len = 16 * 20;
  c.lin_ftrs = {10};
  c.no_dropout();
  return c;
}

Vocab vocab() {
  std::vector<std::string> itos;
  for (int i = 0; i < 40; ++i) itos.push_back(std::string("t").append(std::to_string(i)));
  return Vocab::from_itos(itos);
}

void train(ClassifierModel& m, const Data& d, const std::string& out, dist::Communicator* comm) {
  nn::Rng rng(5);
  m.init(rng);
  TrainOptions opt;
  opt.out_dir = out;
  opt.quiet = true;
  opt.wd = 1e-6;
  opt.comm = comm;
  train_classifier(m, vocab(), d.train, d.train_labels, d.valid, d.valid_labels, /*bs=*/7,
                   classifier_stages(/*last_epochs=*/2, 2e-2), opt);
}

}  // namespace

TEST(MpiTrainApi, ClassifierTwoRanksEqualOneProcess) {
  auto& w = dist::world();
  ASSERT_EQ(w.size(), 2) << "run under mpirun -np 2";
  const Data d = make_data();
  // One run folder per job, made unique by rank 0's pid (broadcast).
  long id = (long)getpid();
  w.broadcast(&id, sizeof id, 0);
  const fs::path dir = fs::temp_directory_path() / std::string("inspire_mpi_train_").append(std::to_string(id));
  if (w.rank() == 0) fs::create_directories(dir);
  w.barrier();

  ClassifierModel par(config()), ref(config());
  train(par, d, (dir / "parallel").string(), &w);
  auto single = dist::make_single();
  train(ref, d, (dir / std::string("single-").append(std::to_string(w.rank()))).string(), single.get());

  auto a = ref.tensors(), b = par.tensors();
  ASSERT_EQ(a.size(), b.size());
  double worst = 0, moved = 0;
  int running = 0;
  ClassifierModel init(config());
  nn::Rng rng(5);
  init.init(rng);
  auto c = init.tensors();
  for (std::size_t t = 0; t < a.size(); ++t) {
    ASSERT_EQ(a[t].value.numel(), b[t].value.numel()) << a[t].key;
    running += a[t].key.find("running_") != std::string::npos;
    for (nn::Index i = 0; i < a[t].value.numel(); ++i) {
      const double x = a[t].value.data[i], y = b[t].value.data[i];
      worst = std::max(worst, std::fabs(x - y) / (1.0 + std::fabs(x)));
      moved = std::max(moved, std::fabs(x - (double)c[t].value.data[i]));
    }
  }
  EXPECT_EQ(running, 4);   // two BatchNorm layers' running mean and var are compared too
  EXPECT_GT(moved, 1e-2);  // the models did train
  std::printf("rank %d: classifier, 1 vs 2 ranks: largest |a-b|/(1+|a|) = %.3g\n", w.rank(), worst);
  EXPECT_LE(worst, 1e-5);
  w.barrier();
  if (w.rank() == 0) fs::remove_all(dir);
}

// Checkpoints inside an epoch with two ranks: each rank's rows of the LM's carried hidden state
// are gathered into one file (the whole batch's) and handed back on resume. Killed (both ranks)
// between two such checkpoints, by steps and by time (rank 0's clock decides for both), and
// resumed with two ranks: the weights are those of the uninterrupted two-rank run, bit for bit.
TEST(MpiTrainApi, LmResumeInsideAnEpochTwoRanks) {
  auto& w = dist::world();
  ASSERT_EQ(w.size(), 2) << "run under mpirun -np 2";
  long id = (long)getpid();
  w.broadcast(&id, sizeof id, 0);
  const fs::path dir = fs::temp_directory_path() / std::string("inspire_mpi_inside_").append(std::to_string(id));
  if (w.rank() == 0) fs::create_directories(dir);
  w.barrier();
  ModelConfig cfg = ModelConfig::lm(40, 0.7);  // dropout on: each rank draws its own masks
  cfg.emb_sz = 8, cfg.n_hid = 12, cfg.n_layers = 2;
  const Data d = make_data();
  auto run = [&](const fs::path& out, bool resume, std::int64_t every, double every_s,
                 std::int64_t kill_at) {
    AwdLstmLM lm(cfg);
    nn::Rng rng(7);
    lm.init(rng);
    TrainOptions o = kill_options(out, resume, every, every_s, kill_at);
    o.seed = 3;
    o.comm = &w;
    train_language_model(lm, vocab(), d.train, d.valid, /*bs=*/6, /*bptt=*/8,
                         lm_finetune_stages(1, 1e-2, 1, 1e-3), o);
    return std::vector<float>(lm.values().begin(), lm.values().end());
  };
  const auto straight = run(dir / "straight", false, 0, 0, -1);
  struct Kill {
    std::int64_t every;
    double every_s;
    std::int64_t at;
  };
  for (const Kill k : {Kill{4, 0, 10}, Kill{0, 1e-9, 70}}) {
    const fs::path out = dir / ("killed-" + std::to_string(k.at));
    EXPECT_THROW(run(out, false, k.every, k.every_s, k.at), std::runtime_error);
    w.barrier();  // rank 0 has written the checkpoint both ranks read
    if (w.rank() == 0) {
      std::ifstream in(out / "checkpoint.json");
      const std::string j((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      EXPECT_NE(j.find("\"in_epoch\""), std::string::npos) << j;
      EXPECT_NE(j.find(".carry"), std::string::npos) << j;
    }
    const auto resumed = run(out, true, k.every, k.every_s, -1);
    ASSERT_EQ(straight.size(), resumed.size());
    std::size_t diff = 0;
    for (std::size_t i = 0; i < straight.size(); ++i) diff += straight[i] != resumed[i];
    EXPECT_EQ(diff, 0u) << "rank " << w.rank() << ", killed at step " << k.at << ": " << diff
                        << " weights differ";
  }
  w.barrier();
  if (w.rank() == 0) fs::remove_all(dir);
}

int main(int argc, char** argv) { return mpitest::run_all_tests_on_every_rank(argc, argv); }
