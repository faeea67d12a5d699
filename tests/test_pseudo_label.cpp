// ctest-labels: cli data
// tests/test_pseudo_label.cpp — `pseudo-label` (self-training data) on real unlabeled HEP
// abstracts with the embedded default model: the papers it keeps are the ones `predict` scores
// highest for each label, records of labeled data are left out, and bad requests are refused.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cli_helpers.h"

namespace fs = std::filesystem;
using clitest::fresh_dir;
using clitest::kBin;

namespace {

const std::string kUnlabeled = INSPIRE_SOURCE_DIR "/../shared/data/unlabeled/hep_abstracts_unlabeled.jsonl";

std::string run(const std::string& cmd, int* rc) { return clitest::run(cmd, rc); }

std::vector<nlohmann::json> read_lines(const fs::path& p) {
  std::vector<nlohmann::json> v;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line)) v.push_back(nlohmann::json::parse(line));
  return v;
}

}  // namespace

TEST(PseudoLabel, KeepsTheHighestScoredPapersPerLabel) {
  ASSERT_TRUE(fs::exists(kUnlabeled)) << kUnlabeled;
  fs::path dir = fresh_dir("pseudo");
  std::map<std::string, nlohmann::json> papers;  // id -> input record
  {
    std::ifstream in(kUnlabeled);
    std::ofstream out(dir / "u.jsonl");
    std::string line;
    while (papers.size() < 30 && std::getline(in, line)) {
      auto j = nlohmann::json::parse(line);
      if (j.contains("title_matches_labeled_split") || papers.count(j["id"])) continue;
      papers[j["id"]] = j;
      out << line << "\n";
    }
    out << R"({"id": "x1", "title": "A labeled paper", "abstract": "It has a split.", "split": "train"})"
        << "\n";
    out << R"({"id": "x2", "title": "A valid paper again", "abstract": "Same title.", "title_matches_labeled_split": "valid"})"
        << "\n";
    out << R"({"id": "x3", "title": 7})" << "\n";
  }
  int rc = -1;
  std::string out = run(kBin + " pseudo-label -q --threads 2 -i " + (dir / "u.jsonl").string() +
                            " --top core=6 --top non_core=4 -o " + (dir / "p.jsonl").string(),
                        &rc);
  ASSERT_EQ(rc, 0) << out;
  auto s = nlohmann::json::parse(out);
  EXPECT_EQ(s["records"], 30);
  EXPECT_EQ(s["left_out_with_split"], 1);
  EXPECT_EQ(s["left_out_matching_labeled"], 1);
  EXPECT_EQ(s["bad"], 1);
  EXPECT_EQ(s["selected"]["core"]["papers"], 6);
  EXPECT_EQ(s["selected"]["non_core"]["papers"], 4);

  // predict's scores for the same papers
  out = run(kBin + " predict -q --threads 2 -i " + (dir / "u.jsonl").string() + " -o " +
                (dir / "pred.jsonl").string(),
            &rc);
  std::map<std::string, nlohmann::json> scores;
  for (auto& p : read_lines(dir / "pred.jsonl"))
    if (p.contains("id") && papers.count(p["id"])) scores[p["id"]] = p["scores"];
  ASSERT_EQ(scores.size(), 30u);

  auto got = read_lines(dir / "p.jsonl");
  ASSERT_EQ(got.size(), 10u);
  std::set<std::string> taken;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const auto& r = got[i];
    const std::string label = i < 6 ? "core" : "non_core";
    ASSERT_TRUE(papers.count(r["id"])) << r.dump();
    const auto& src = papers[r["id"]];
    EXPECT_EQ(r["label"], label);
    EXPECT_EQ(r["split"], "train");
    EXPECT_EQ(r["title"], src["title"]);
    EXPECT_EQ(r["abstract"], src["abstract"]);
    EXPECT_EQ(r["pseudo_score"].get<double>(), scores[r["id"]][label].get<double>()) << r["id"];
    if (i != 0 && i != 6) {
      EXPECT_LE(r["pseudo_score"].get<double>(), got[i - 1]["pseudo_score"].get<double>());
    }
    EXPECT_TRUE(taken.insert(r["id"].get<std::string>()).second) << "taken twice: " << r["id"];
  }
  // every core paper kept scores at least as high as every paper not kept
  for (auto& [id, sc] : scores) {
    if (taken.count(id)) continue;
    EXPECT_LE(sc["core"].get<double>(), got[5]["pseudo_score"].get<double>()) << id;
  }

  // bad requests: a usage error naming the problem, and nothing written
  for (auto [top, msg] : {std::pair{"core", "expected LABEL=N"}, std::pair{"maybe=3", "unknown label 'maybe'"},
                          std::pair{"core=0", "N must be a positive integer"}}) {
    out = clitest::run(kBin + " pseudo-label -q -i " + (dir / "u.jsonl").string() + " --top " + top +
                           " -o " + (dir / "bad.jsonl").string(),
                       &rc, true);
    EXPECT_EQ(WEXITSTATUS(rc), 2) << top;
    EXPECT_NE(out.find(msg), std::string::npos) << out;
    EXPECT_FALSE(fs::exists(dir / "bad.jsonl"));
  }
  fs::remove_all(dir);
}
