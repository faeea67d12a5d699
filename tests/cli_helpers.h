// tests/cli_helpers.h — what the tests that drive the real `inspire-classifier` binary share:
// running a command, a fresh scratch directory, and a small sample of the labeled INSPIRE data.
#pragma once

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace clitest {

inline const std::string kBin = INSPIRE_BINARY_DIR "/inspire-classifier";
inline const std::string kData = INSPIRE_SOURCE_DIR "/../shared/data/labeled/inspire_labeled.jsonl";

// Runs `cmd` in a shell; returns its stdout (and stderr too when keep_stderr), *rc the status.
inline std::string run(const std::string& cmd, int* rc, bool keep_stderr = false) {
  std::string out;
  FILE* p = popen((cmd + (keep_stderr ? " 2>&1" : " 2>/dev/null")).c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  *rc = pclose(p);
  return out;
}

// An empty directory of the system's temp folder, unique to this process.
inline std::filesystem::path fresh_dir(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() /
           ("inspire_test_" + name + "_" + std::to_string(getpid()));
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

// The first n labeled train-split papers as title/abstract/label JSON Lines, without their split
// field (so the tool makes its own random 80/20 split, as the original does).
inline void write_sample(const std::filesystem::path& path, int n) {
  std::ifstream in(kData);
  std::ofstream out(path);
  std::string line;
  int k = 0;
  while (k < n && std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j["split"] != "train") continue;
    out << nlohmann::json{{"title", j["title"]}, {"abstract", j["abstract"]}, {"label", j["label"]}}.dump()
        << "\n";
    ++k;
  }
}

}  // namespace clitest
