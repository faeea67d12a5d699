// ctest-labels: cli
// tests/test_cli_device.cpp — `--device cpu|cuda[:N]` on the commands that train or classify:
// a malformed value is a usage error (exit 2); cuda where it cannot run is ONE line on stderr
// naming what is missing (exit 1), in every build: without CUDA ("built without CUDA"), with
// CUDA but no GPU ("no usable CUDA device"), with a GPU for the commands that do not run there
// yet (all but the training commands: "only training runs").
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <string>

#include "nn/backend.h"
#include "tests/cli_helpers.h"

using namespace clitest;

namespace {
int status(int rc) { return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1; }
int lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}
// What a cuda device is missing here, as the error must say it.
std::string expected_reason() {
  bool built = false;
  for (const auto& b : nn::available_backends()) built |= b == "cuda";
  if (!built) return "built without CUDA";
  try {
    nn::get_backend("cuda");
  } catch (const std::runtime_error&) {
    return "no usable CUDA device";
  }
  return "only training runs";
}
}  // namespace

TEST(CliDevice, CudaWhereItCannotRunIsOneLineNamingWhatIsMissing) {
  const auto dir = fresh_dir("cli_device");
  const std::string in = (dir / "in.jsonl").string();
  write_sample(dir / "in.jsonl", 3);
  const std::string reason = expected_reason();
  const std::string cmds[] = {
      "predict --input " + in + " --output " + (dir / "out.jsonl").string(),
      "validate --data " + in,
      "serve --port 0",
      "train --data " + in + " -o " + (dir / "t").string(),
      "pretrain --data " + in + " -o " + (dir / "p").string(),
      "finetune-lm --data " + in + " -o " + (dir / "f").string(),
      "train-classifier --data " + in + " --lm " + in + " -o " + (dir / "c").string(),
      "cv --data " + in + " --lm " + in + " -o " + (dir / "v").string(),
  };
  for (const std::string& c : cmds) {
    // With a GPU, models train there: those commands go on (and fail later on this data, which
    // is not the point here).
    const bool trains = c.rfind("predict", 0) != 0 && c.rfind("validate", 0) != 0 && c.rfind("serve", 0) != 0;
    if (reason == "only training runs" && trains) continue;
    for (const char* dev : {"cuda", "cuda:0"}) {
      int rc = 0;
      const std::string err = run("(" + kBin + " " + c + " --device " + dev + " 2>&1 >/dev/null)", &rc);  // stderr only
      SCOPED_TRACE(c + " --device " + dev);
      EXPECT_EQ(status(rc), 1) << err;
      EXPECT_EQ(lines(err), 1) << err;
      EXPECT_NE(err.find(std::string("--device ") + dev), std::string::npos) << err;
      EXPECT_NE(err.find(reason), std::string::npos) << err;
    }
  }
  std::filesystem::remove_all(dir);
}

TEST(CliDevice, AMalformedDeviceIsAUsageError) {
  for (const char* dev : {"gpu", "cuda:", "cuda:x", "cuda0", "CPU"}) {
    int rc = 0;
    const std::string err = run(kBin + " validate --data x.jsonl --device " + dev, &rc, true);
    EXPECT_EQ(status(rc), 2) << dev << ": " << err;
    EXPECT_NE(err.find("cpu, cuda or cuda:N"), std::string::npos) << dev << ": " << err;
  }
}

TEST(CliDevice, CpuIsTheDefaultAndListedInHelp) {
  int rc = 0;
  const std::string help = run(kBin + " predict --help", &rc);
  EXPECT_EQ(status(rc), 0);
  EXPECT_NE(help.find("--device"), std::string::npos) << help;
  EXPECT_NE(help.find("cpu"), std::string::npos);
  // --device cpu changes nothing: the same usage error as without it (missing --input)
  const std::string a = run(kBin + " validate --device cpu", &rc, true);
  const int with = status(rc);
  const std::string b = run(kBin + " validate", &rc, true);
  EXPECT_EQ(with, status(rc));
  EXPECT_EQ(a, b);
}

TEST(CliDevice, Tf32WithoutCudaIsRefused) {
  const auto dir = fresh_dir("cli_tf32");
  write_sample(dir / "in.jsonl", 3);
  int rc = 0;
  const std::string err = run(kBin + " pretrain --tf32 -q --data " + (dir / "in.jsonl").string() +
                                  " -o " + (dir / "p").string(),
                              &rc, true);
  EXPECT_EQ(status(rc), 1) << err;
  EXPECT_NE(err.find("--tf32 needs --device cuda"), std::string::npos) << err;
  EXPECT_FALSE(std::filesystem::exists(dir / "p" / "lm.safetensors"));
  std::filesystem::remove_all(dir);
}
