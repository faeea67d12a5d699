// ctest-labels: mpi
// tests/mpi/test_mpi_cli.cpp — data-parallel training and sharded predict through the real
// command under `mpirun --allow-run-as-root --oversubscribe -np 2` (issue 17): equality with one
// process, per-rank dropout, failure behaviour (a killed rank, a bad input on one rank, a hung
// collective) and --resume. Built and run only with -DINSPIRE_MPI=ON (ctest -L mpi).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../cli_helpers.h"
#include "io/bundle.h"
#include "ulmfit/curves.h"

namespace fs = std::filesystem;
using clitest::fresh_dir;
using clitest::kBin;
using clitest::run;

namespace {

// (No CMA single-copy: it needs ptrace rights that some containers lack; loopback is enough.)
const std::string kMpirun = std::string(INSPIRE_MPIEXEC) +
                            " --allow-run-as-root --oversubscribe --mca btl_vader_single_copy_mechanism none";
std::string mpirun(int np) { return kMpirun + " -np " + std::to_string(np) + " "; }

// Tiny LM fine-tuning from scratch on `data` into `out` (no frozen stage).
std::string finetune(const fs::path& data, const fs::path& out, const std::string& extra) {
  return kBin + " finetune-lm --preset tiny --threads 1 --max-vocab 300 --frozen-epochs 0 -q -d " +
         data.string() + " -o " + out.string() + " " + extra;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Largest |a - b| / (1 + |a|) over every tensor of two bundles (which must hold the same names).
double max_rel_diff(const fs::path& a, const fs::path& b, int* n_tensors) {
  auto A = io::Bundle::load(a.string()), B = io::Bundle::load(b.string());
  double worst = 0;
  *n_tensors = 0;
  for (const auto& name : A.names()) {
    auto ta = A.tensor(name), tb = B.tensor(name);
    EXPECT_EQ(ta.numel(), tb.numel()) << name;
    if (ta.numel() != tb.numel()) return INFINITY;
    for (nn::Index i = 0; i < ta.numel(); ++i)
      worst = std::max(worst, (double)std::fabs(ta.data[i] - tb.data[i]) / (1.0 + std::fabs(ta.data[i])));
    ++*n_tensors;
  }
  return worst;
}

// The tolerance of "the same weights": float32 sums taken in another order (two half-batch
// gradients averaged instead of one whole-batch gradient), amplified by a few dozen Adam steps.
constexpr double kTol = 1e-5;

}  // namespace

// --drop-mult 0: two ranks give the weights one process gives with the same flags.
TEST(MpiTrain, TwoRanksEqualOneProcessWithoutDropout) {
  fs::path dir = fresh_dir("mpi_equal");
  clitest::write_sample(dir / "s.jsonl", 60);
  const std::string flags = "--epochs 2 --drop-mult 0 --bs 8";
  int rc = -1;
  std::string one = run(finetune(dir / "s.jsonl", dir / "one", flags), &rc);
  ASSERT_EQ(rc, 0) << one;
  std::string two = run(mpirun(2) + finetune(dir / "s.jsonl", dir / "two", flags), &rc, true);
  ASSERT_EQ(rc, 0) << two;
  // rank 0 alone prints the result: one JSON line
  auto j1 = nlohmann::json::parse(one), j2 = nlohmann::json::parse(two);
  EXPECT_EQ(j1["steps"], j2["steps"]);
  EXPECT_GT(j1["steps"].get<int>(), 20);
  EXPECT_NEAR(j1["valid_loss"].get<double>(), j2["valid_loss"].get<double>(), 1e-3);
  int n = 0;
  double d = max_rel_diff(dir / "one" / "lm.safetensors", dir / "two" / "lm.safetensors", &n);
  EXPECT_GT(n, 5);
  std::printf("1 vs 2 ranks: largest |a-b|/(1+|a|) = %.3g over %d tensors (tolerance %.0e)\n", d, n, kTol);
  EXPECT_LE(d, kTol) << "largest relative difference between 1 and 2 ranks";
  // The global (all-reduced) train loss is logged, epoch by epoch, as one process logs it.
  auto c1 = ulmfit::Curves::read_csv((dir / "one" / "curves.csv").string());
  auto c2 = ulmfit::Curves::read_csv((dir / "two" / "curves.csv").string());
  ASSERT_EQ(c1.points().size(), 2u);
  ASSERT_EQ(c2.points().size(), 2u);
  for (int e = 0; e < 2; ++e)
    EXPECT_NEAR(c1.points()[e].values.at("train_loss"), c2.points()[e].values.at("train_loss"), 1e-3);
  // The checkpoint records the rank count and both ranks' RNG streams.
  auto ck = nlohmann::json::parse(slurp(dir / "two" / "checkpoint.json"));
  EXPECT_EQ(ck["world_size"], 2);
  fs::remove_all(dir);
}

// Dropout on: the ranks draw different masks (different RNG streams, rank 0's = one
// process's), and the loss still falls.
TEST(MpiTrain, DropoutMasksDifferPerRankAndLossFalls) {
  fs::path dir = fresh_dir("mpi_dropout");
  clitest::write_sample(dir / "s.jsonl", 60);
  int rc = -1;
  std::string out =
      run(mpirun(2) + finetune(dir / "s.jsonl", dir / "o", "--epochs 3 --bs 8"), &rc, true);
  ASSERT_EQ(rc, 0) << out;
  auto ck = nlohmann::json::parse(slurp(dir / "o" / "checkpoint.json"));
  ASSERT_EQ(ck["world_size"], 2);
  ASSERT_EQ(ck["rank_rngs"].size(), 2u);
  EXPECT_NE(ck["rank_rngs"][0], ck["rank_rngs"][1]);
  EXPECT_EQ(ck["rank_rngs"][0], ck["model_rng"]);
  auto c = ulmfit::Curves::read_csv((dir / "o" / "curves.csv").string());
  ASSERT_EQ(c.points().size(), 3u);
  EXPECT_LT(c.points()[2].values.at("train_loss"), c.points()[0].values.at("train_loss"));
  EXPECT_LT(c.points()[2].values.at("valid_loss"), c.points()[0].values.at("valid_loss"));
  fs::remove_all(dir);
}

// A rank killed mid-run stops the job within seconds, the last checkpoint stays intact, a resume
// with another rank count is refused, and --resume with the same count finishes the run.
TEST(MpiTrain, KilledRankStopsAllAndResumeFinishes) {
  fs::path dir = fresh_dir("mpi_kill");
  clitest::write_sample(dir / "s.jsonl", 200);
  const std::string flags = "--epochs 4 --bs 8";
  const fs::path out = dir / "o";
  // In the background; the subshell writes mpirun's exit status when it ends.
  std::string cmd = std::string("(").append(mpirun(2)).append(finetune(dir / "s.jsonl", out, flags));
  cmd += " > " + (dir / "log").string() + " 2>&1; echo $? > " + (dir / "rc").string() + ") &";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  // Wait for the first checkpoint (after epoch 1 of 4).
  auto t0 = std::chrono::steady_clock::now();
  while (!fs::exists(out / "checkpoint.json")) {
    ASSERT_FALSE(fs::exists(dir / "rc")) << "the run ended before its first checkpoint:\n"
                                         << slurp(dir / "log");
    ASSERT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(120));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const std::string ck_before = slurp(out / "checkpoint.json");
  // Rank 1: the inspire-classifier process whose environment says OMPI_COMM_WORLD_RANK=1 and
  // whose out folder is ours.
  pid_t victim = 0;
  for (auto& e : fs::directory_iterator("/proc")) {
    const std::string pid = e.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = slurp(e.path() / "cmdline"), env = slurp(e.path() / "environ");
    for (auto& ch : cmdline)
      if (ch == '\0') ch = ' ';
    if (cmdline.find("finetune-lm") == std::string::npos ||
        cmdline.find(out.string()) == std::string::npos || cmdline.find("mpirun") != std::string::npos)
      continue;
    if (env.find(std::string("OMPI_COMM_WORLD_RANK=1") + '\0') != std::string::npos) victim = std::stoi(pid);
  }
  ASSERT_GT(victim, 0) << "rank 1 not found";
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  auto killed = std::chrono::steady_clock::now();
  while (!fs::exists(dir / "rc")) {
    ASSERT_LT(std::chrono::steady_clock::now() - killed, std::chrono::seconds(30))
        << "the job did not stop after rank 1 died";
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const double stop_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // rc written, flushed
  EXPECT_NE(std::stoi(slurp(dir / "rc")), 0) << slurp(dir / "log");
  std::printf("all ranks stopped %.2f s after rank 1 was killed\n", stop_s);
  EXPECT_LT(stop_s, 10.0);
  EXPECT_FALSE(fs::exists(out / "lm.safetensors")) << "the run finished before the kill";
  // The last checkpoint is intact: parses, and names files that exist.
  auto ck = nlohmann::json::parse(slurp(out / "checkpoint.json"));
  EXPECT_TRUE(fs::exists(out / ck["model"].get<std::string>()));
  EXPECT_TRUE(fs::exists(out / ck["optim"].get<std::string>()));
  EXPECT_GE(ck["epoch"].get<int>(), 0);
  (void)ck_before;
  // Another rank count: a clear error.
  int rc = -1;
  std::string msg = run(finetune(dir / "s.jsonl", out, flags + " --resume"), &rc, true);
  EXPECT_NE(rc, 0);
  EXPECT_NE(msg.find("written by a run of 2 rank(s)"), std::string::npos) << msg;
  // The same count finishes the run.
  std::string res = run(mpirun(2) + finetune(dir / "s.jsonl", out, flags + " --resume"), &rc, true);
  ASSERT_EQ(rc, 0) << res;
  EXPECT_TRUE(fs::exists(out / "lm.safetensors"));
  auto c = ulmfit::Curves::read_csv((out / "curves.csv").string());
  EXPECT_EQ(c.points().size(), 4u);
  // ... exactly as an uninterrupted run of two ranks: every rank's dropout stream was restored.
  res = run(mpirun(2) + finetune(dir / "s.jsonl", dir / "whole", flags), &rc, true);
  ASSERT_EQ(rc, 0) << res;
  int n = 0;
  EXPECT_EQ(max_rel_diff(dir / "whole" / "lm.safetensors", out / "lm.safetensors", &n), 0.0);
  fs::remove_all(dir);
}

// A bad input on one rank (rank 1 reads a file that does not exist) stops every rank with an
// error naming the rank, instead of leaving rank 0 waiting in its first all-reduce.
TEST(MpiTrain, BadInputOnOneRankStopsAll) {
  fs::path dir = fresh_dir("mpi_bad");
  clitest::write_sample(dir / "s.jsonl", 60);
  const std::string good = finetune(dir / "s.jsonl", dir / "o", "--epochs 50 --bs 8");
  const std::string bad = finetune(dir / "missing.jsonl", dir / "o", "--epochs 50 --bs 8");
  int rc = -1;
  auto t0 = std::chrono::steady_clock::now();
  std::string out = run(mpirun(2) + "sh -c 'if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then exec " + bad +
                            "; else exec " + good + "; fi'",
                        &rc, true);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(rc, 0) << out;
  EXPECT_LT(s, 60.0);
  EXPECT_NE(out.find("rank 1 of 2"), std::string::npos) << out;
  EXPECT_NE(out.find("missing.jsonl"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir / "o" / "lm.safetensors"));
  fs::remove_all(dir);
}

// A collective that one rank never joins: the watchdog stops the job after
// INSPIRE_COLLECTIVE_TIMEOUT_S instead of hanging.
TEST(MpiComm, WatchdogStopsAHungCollective) {
  int rc = -1;
  auto t0 = std::chrono::steady_clock::now();
  std::string out = run("INSPIRE_COLLECTIVE_TIMEOUT_S=2 " + mpirun(2) + INSPIRE_BINARY_DIR +
                            "/test_mpi_comm --hang",
                        &rc, true);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(rc, 0) << out;
  EXPECT_LT(s, 30.0);
  EXPECT_NE(out.find("MPI_Barrier did not complete within 2 s"), std::string::npos) << out;
}

// Sharded predict: one output, in input order, equal line for line to one process's; a bad
// line is reported once and gives exit code 1 as in one process.
TEST(MpiPredict, ShardedEqualsOneProcess) {
  fs::path dir = fresh_dir("mpi_predict");
  clitest::write_sample(dir / "s.jsonl", 37);
  {
    std::ofstream more(dir / "s.jsonl", std::ios::app);
    more << "{\"title\": 5}\n";
    more << R"({"id": "last", "title": "Lattice QCD", "abstract": "We compute the spectrum."})" << "\n";
  }
  int rc1 = -1, rc2 = -1;
  std::string e1 = run(kBin + " predict -q --threads 1 --chunk 8 -i " + (dir / "s.jsonl").string() +
                           " -o " + (dir / "one.jsonl").string(),
                       &rc1, true);
  std::string e2 = run(mpirun(2) + kBin + " predict -q --threads 1 --chunk 8 -i " +
                           (dir / "s.jsonl").string() + " -o " + (dir / "two.jsonl").string(),
                       &rc2, true);
  EXPECT_EQ(WEXITSTATUS(rc1), 1) << e1;
  EXPECT_NE(rc2, 0) << e2;
  const std::string a = slurp(dir / "one.jsonl"), b = slurp(dir / "two.jsonl");
  EXPECT_EQ(std::count(a.begin(), a.end(), '\n'), 38);
  // Line for line, byte for byte: the same records (id / line), predictions and scores.
  std::istringstream sa(a), sb(b);
  std::string la, lb;
  int lines = 0;
  while (std::getline(sa, la)) {
    ASSERT_TRUE(std::getline(sb, lb)) << "sharded output ends after " << lines << " lines";
    ++lines;
    EXPECT_EQ(la, lb) << "line " << lines;
  }
  EXPECT_FALSE(std::getline(sb, lb)) << "sharded output has more lines than " << lines;
  // the bad line (38) reported once, by rank 0
  size_t first = e2.find(":38:"), again = first == std::string::npos ? first : e2.find(":38:", first + 1);
  EXPECT_NE(first, std::string::npos) << e2;
  EXPECT_EQ(again, std::string::npos) << e2;
  // standard input reaches rank 0 only: refused
  int rc = -1;
  std::string msg = run(mpirun(2) + kBin + " predict -q < " + (dir / "s.jsonl").string(), &rc, true);
  EXPECT_NE(rc, 0);
  EXPECT_NE(msg.find("needs --input FILE"), std::string::npos) << msg;
  fs::remove_all(dir);
}

// The whole pipeline (`train`: LM fine-tuning, then the classifier, which reads the LM bundle
// rank 0 wrote) under two ranks: one result line, the final model, one set of checkpoints.
TEST(MpiTrain, WholePipelineUnderTwoRanks) {
  fs::path dir = fresh_dir("mpi_pipeline");
  clitest::write_sample(dir / "s.jsonl", 60);
  int rc = -1;
  std::string out = run(mpirun(2) + kBin + " train --preset tiny --threads 1 --max-vocab 300 -q -d " +
                            (dir / "s.jsonl").string() + " -o " + (dir / "o").string(),
                        &rc);
  ASSERT_EQ(rc, 0) << out;
  auto j = nlohmann::json::parse(out);  // exactly one JSON document on stdout
  EXPECT_TRUE(fs::exists(dir / "o" / "classifier" / "classifier.safetensors"));
  EXPECT_GT(j["classifier"]["steps"].get<int>(), 0);
  auto ck = nlohmann::json::parse(slurp(dir / "o" / "classifier" / "checkpoint.json"));
  EXPECT_EQ(ck["world_size"], 2);
  fs::remove_all(dir);
}
