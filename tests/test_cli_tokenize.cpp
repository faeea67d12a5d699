// ctest-labels: cli golden
// tests/test_cli_tokenize.cpp — `inspire-classifier tokenize` end to end, through the built
// binary: fastai's tokens (golden fixture tests/fixtures/data/tokenize_cli.jsonl, written by
// tools/reference/gen_vocab_data_goldens.py), ids, bad lines, empty input, exit codes.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

const std::string kBin = INSPIRE_BINARY_DIR "/inspire-classifier";
const std::string kFix = INSPIRE_SOURCE_DIR "/tests/fixtures/data/";

std::string tmp(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("inspire_test_cli_tok_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Run {
  int rc = -1;
  std::string out, err;
  std::vector<std::string> lines() const {
    std::vector<std::string> v;
    std::istringstream ss(out);
    std::string l;
    while (std::getline(ss, l)) v.push_back(l);
    return v;
  }
};

// Runs the binary with `args` (shell words), stdin from `stdin_file` when given.
Run run(const std::string& args, const std::string& stdin_file = "") {
  const auto o = tmp("stdout"), e = tmp("stderr");
  std::string cmd = "'" + kBin + "' " + args + " > '" + o + "' 2> '" + e + "'";
  if (!stdin_file.empty()) cmd += " < '" + stdin_file + "'";
  else cmd += " < /dev/null";
  int st = std::system(cmd.c_str());
  Run r;
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = slurp(o);
  r.err = slurp(e);
  std::filesystem::remove(o);
  std::filesystem::remove(e);
  return r;
}

std::string write(const std::string& name, const std::string& content) {
  auto p = tmp(name);
  std::ofstream(p, std::ios::binary) << content;
  return p;
}

std::vector<nlohmann::json> goldens() {
  std::vector<nlohmann::json> g;
  std::ifstream f(kFix + "tokenize_cli.jsonl");
  std::string l;
  while (std::getline(f, l)) g.push_back(nlohmann::json::parse(l));
  return g;
}

}  // namespace

TEST(CliTokenize, BinaryExists) { ASSERT_TRUE(std::filesystem::exists(kBin)) << kBin; }

TEST(CliTokenize, MatchesFastaiInBothModes) {
  auto g = goldens();
  ASSERT_EQ(g.size(), 7u);
  std::string in;
  for (auto& x : g) in += x["input"].dump() + "\n";
  auto p = write("in.jsonl", in);
  for (const char* mode : {"predict", "train"}) {
    SCOPED_TRACE(mode);
    auto r = run(std::string("tokenize --mode ") + mode + " --input '" + p + "'");
    EXPECT_EQ(r.rc, 0) << r.err;
    auto lines = r.lines();
    ASSERT_EQ(lines.size(), g.size());
    for (std::size_t i = 0; i < g.size(); ++i) {
      auto j = nlohmann::json::parse(lines[i]);
      EXPECT_EQ(j["tokens"], g[i][mode]) << "record " << i;
      if (g[i]["input"].contains("id")) EXPECT_EQ(j["id"], g[i]["input"]["id"]) << "record " << i;
      else EXPECT_FALSE(j.contains("id"));
    }
  }
  // The default mode is predict, and standard input works.
  auto r = run("tokenize", p);
  EXPECT_EQ(r.rc, 0) << r.err;
  auto lines = r.lines();
  ASSERT_EQ(lines.size(), g.size());
  EXPECT_EQ(nlohmann::json::parse(lines[4])["tokens"], g[4]["predict"]);
  EXPECT_NE(g[4]["predict"], g[4]["train"]);  // the fixture shows the predict/train asymmetry
  std::filesystem::remove(p);
}

TEST(CliTokenize, BadLinesGetErrorLinesAndProcessingGoesOn) {
  std::string in;
  in += R"({"id": "a", "text": "First good line."})" "\n";  // 1
  in += R"({"text": "unterminated)" "\n";                   // 2 malformed JSON
  in += R"({"title": "Title only"})" "\n";                  // 3 missing abstract
  in += "{\"text\": \"bad \xFF byte\"}\n";                  // 4 invalid UTF-8
  in += R"({"abstract": "no title", "id": 5})" "\n";        // 5 missing title
  in += "\n";                                               // 6 blank: skipped
  in += goldens()[0]["input"].dump() + "\n";                // 7 good
  auto p = write("bad.jsonl", in);
  auto r = run("tokenize -i '" + p + "'");
  EXPECT_EQ(r.rc, 1);
  auto lines = r.lines();
  ASSERT_EQ(lines.size(), 6u) << r.out;
  std::vector<nlohmann::json> js;
  for (auto& l : lines) js.push_back(nlohmann::json::parse(l));
  EXPECT_EQ(js[0]["id"], "a");
  EXPECT_EQ(js[0]["tokens"][0], "xxbos");
  const int bad_lines[] = {2, 3, 4, 5};
  for (int k = 0; k < 4; ++k) {
    ASSERT_TRUE(js[1 + k].contains("error")) << lines[1 + k];
    EXPECT_EQ(js[1 + k]["line"], bad_lines[k]);
    EXPECT_FALSE(js[1 + k].contains("tokens"));
    EXPECT_NE(r.err.find(":" + std::to_string(bad_lines[k]) + ": "), std::string::npos) << r.err;
  }
  EXPECT_NE(js[1]["error"].get<std::string>().find("malformed JSON"), std::string::npos);
  EXPECT_NE(js[2]["error"].get<std::string>().find("abstract"), std::string::npos);
  EXPECT_NE(js[3]["error"].get<std::string>().find("UTF-8"), std::string::npos);
  EXPECT_NE(js[4]["error"].get<std::string>().find("title"), std::string::npos);
  EXPECT_EQ(js[5]["tokens"], goldens()[0]["predict"]);
  EXPECT_NE(r.err.find("4 of 6 lines failed"), std::string::npos) << r.err;
  std::filesystem::remove(p);
}

TEST(CliTokenize, EmptyInputIsFine) {
  auto p = write("empty.jsonl", "");
  auto r = run("tokenize --input '" + p + "'");
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "");
  auto r2 = run("tokenize");  // stdin is /dev/null
  EXPECT_EQ(r2.rc, 0) << r2.err;
  EXPECT_EQ(r2.out, "");
  std::filesystem::remove(p);
}

TEST(CliTokenize, GzipInputAndOutputFile) {
  auto p = tmp("in.jsonl.gz");
  const auto g = goldens();
  std::string content;
  for (int i = 0; i < 1500; ++i) {  // more than one internal batch
    auto in = g[i % g.size()]["input"];
    in["id"] = i;
    content += in.dump() + "\n";
  }
  gzFile gz = gzopen(p.c_str(), "wb");
  ASSERT_NE(gz, nullptr);
  gzwrite(gz, content.data(), (unsigned)content.size());
  gzclose(gz);
  auto o = tmp("out.jsonl");
  auto r = run("tokenize --threads 2 --input '" + p + "' --output '" + o + "'");
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "");
  std::istringstream ss(slurp(o));
  std::string l;
  int i = 0;
  while (std::getline(ss, l)) {
    auto j = nlohmann::json::parse(l);
    ASSERT_EQ(j["id"], i);
    ASSERT_EQ(j["tokens"], g[i % g.size()]["predict"]) << "record " << i;
    ++i;
  }
  EXPECT_EQ(i, 1500);
  std::filesystem::remove(p);
  std::filesystem::remove(o);
}

TEST(CliTokenize, HelpAndUsageErrors) {
  auto h = run("tokenize --help");
  EXPECT_EQ(h.rc, 0);
  EXPECT_NE(h.out.find("--mode"), std::string::npos);
  EXPECT_NE(h.out.find("<ENDTITLE>"), std::string::npos);
  auto bad_mode = run("tokenize --mode fast");
  EXPECT_EQ(bad_mode.rc, 2);
  EXPECT_NE(bad_mode.err.find("fast"), std::string::npos) << bad_mode.err;
  auto bad_opt = run("tokenize --frobnicate");
  EXPECT_EQ(bad_opt.rc, 2);
  auto missing = run("tokenize --input /nonexistent/file.jsonl");
  EXPECT_EQ(missing.rc, 1);
  EXPECT_NE(missing.err.find("/nonexistent/file.jsonl"), std::string::npos) << missing.err;
}
