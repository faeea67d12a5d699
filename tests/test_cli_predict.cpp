// ctest-labels: cli
// The predict-coreness / predict / serve subcommands, through the built binary, on the tiny
// fastai-made classifier bundle (tests/tiny_bundle.h).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/sha256.h"
#include "tests/http_test_client.h"
#include "tests/tiny_bundle.h"
#include "ulmfit/classifier.h"
#include "ulmfit/default_model.h"
#include "ulmfit/labels.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kBin = INSPIRE_BINARY_DIR "/inspire-classifier";

struct Result {
  int rc = -1;
  std::string out, err;
};

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> v;
  std::istringstream is(s);
  for (std::string l; std::getline(is, l);) v.push_back(l);
  return v;
}

class Cli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("inspire_cli_predict_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    model_ = (dir_ / "tiny.safetensors").string();
    tiny::write(model_);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  // Runs the binary with `args` (already quoted as needed), stdin from `stdin_file` if given.
  static Result cli(const std::string& args, const std::string& stdin_file = "") {
    auto out = dir_ / "out.txt", err = dir_ / "err.txt";
    std::string cmd = quote(kBin) + " " + args + " >" + quote(out.string()) + " 2>" +
                      quote(err.string()) + (stdin_file.empty() ? " </dev/null" : " <" + quote(stdin_file));
    int st = std::system(cmd.c_str());
    Result r;
    r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
  }
  static inline fs::path dir_;
  static inline std::string model_;
};

}  // namespace

TEST_F(Cli, HelpAndUsageErrors) {
  for (std::string cmd : {"predict-coreness", "predict", "serve"}) {
    auto h = cli(cmd + " --help");
    EXPECT_EQ(h.rc, 0) << cmd;
    EXPECT_NE(h.out.find("--model"), std::string::npos) << cmd << ": " << h.out;
  }
  auto top = cli("--help");
  EXPECT_NE(top.out.find("predict-coreness"), std::string::npos);
  EXPECT_NE(top.out.find("serve"), std::string::npos);
  auto missing = cli("predict-coreness onlytitle");
  EXPECT_EQ(missing.rc, 2);
  EXPECT_NE(missing.err.find("abstract"), std::string::npos) << missing.err;
  EXPECT_EQ(cli("predict --threads -3").rc, 2);
  EXPECT_EQ(cli("serve --port notaport").rc, 2);
}

TEST_F(Cli, PredictCorenessPrintsInspiresObject) {
  const auto& rec = tiny::golden()["records"][0];
  auto r = cli("predict-coreness " + quote(rec["title"].get<std::string>()) + " " + quote(rec["abstract"].get<std::string>()) +
               " --model " + quote(model_));
  ASSERT_EQ(r.rc, 0) << r.err;
  auto ls = lines(r.out);
  ASSERT_EQ(ls.size(), 1u) << r.out;
  // Exactly what the library prints for this paper...
  auto clf = ulmfit::Classifier::load(model_);
  EXPECT_EQ(ls[0], clf.to_json(clf.predict_coreness(rec["title"].get<std::string>(),
                                                    rec["abstract"].get<std::string>())));
  // ...which is INSPIRE's answer (keys in order, values within float tolerance).
  EXPECT_EQ(ls[0].rfind("{\"prediction\": ", 0), 0u) << ls[0];
  EXPECT_LT(ls[0].find("\"rejected\": "), ls[0].find("\"non_core\": "));
  EXPECT_LT(ls[0].find("\"non_core\": "), ls[0].find("\"core\": "));
  auto j = json::parse(ls[0]);
  EXPECT_EQ(j["prediction"], rec["inspire_output"]["prediction"]);
  for (auto& k : {"rejected", "non_core", "core"})
    EXPECT_NEAR(j["scores"][k].get<double>(), rec["inspire_output"]["scores"][k].get<double>(), 2e-5);
}

TEST_F(Cli, WithoutModelUsesTheDefaultOrSaysSo) {
  auto r = cli("predict-coreness T A");
  if (ulmfit::default_model_bytes().empty()) {
    EXPECT_EQ(r.rc, 1);
    EXPECT_NE(r.err.find("no default model embedded in this build; pass --model"), std::string::npos)
        << r.err;
  } else {
    EXPECT_EQ(r.rc, 0) << r.err;
    EXPECT_NE(r.out.find("\"prediction\""), std::string::npos);
  }
  auto bad = cli("predict-coreness T A --model " + quote((dir_ / "nope.safetensors").string()));
  EXPECT_EQ(bad.rc, 1);
  EXPECT_NE(bad.err.find("nope.safetensors"), std::string::npos) << bad.err;
}

TEST_F(Cli, PredictStreamsJsonLinesKeepsIdsAndReportsBadLines) {
  const auto& recs = tiny::golden()["records"];
  auto in = dir_ / "in.jsonl";
  {
    std::ofstream f(in);
    f << json{{"id", "a"}, {"title", recs[0]["title"]}, {"abstract", recs[0]["abstract"]}}.dump() << "\n";  // 1
    f << "{not json\n";                                                                                 // 2
    f << json{{"id", 42}, {"title", recs[1]["title"]}, {"abstract", recs[1]["abstract"]}}.dump() << "\n";  // 3
    f << "\n";                                                                                          // 4 blank
    f << json{{"id", "c"}, {"title", "only a title"}}.dump() << "\n";                                   // 5
    f << json{{"title", recs[2]["title"]}, {"abstract", recs[2]["abstract"]}}.dump() << "\n";           // 6 no id
    f << "[1, 2]\n";                                                                                    // 7
    f << json{{"id", "t"}, {"text", ulmfit::join_title_abstract(recs[3]["title"].get<std::string>(), recs[3]["abstract"].get<std::string>())}}.dump() << "\n";  // 8
    f << "{\"id\": \"u\", \"title\": \"bad \xFF\", \"abstract\": \"x\"}\n";                             // 9
    f << json{{"id", "e"}, {"title", recs[4]["title"]}, {"abstract", recs[4]["abstract"]}}.dump();     // 10, no final newline
  }
  auto out = dir_ / "out.jsonl";
  auto r = cli("predict --input " + quote(in.string()) + " --output " + quote(out.string()) +
               " --model " + quote(model_) + " --threads 3 --chunk 4");
  EXPECT_EQ(r.rc, 1) << "bad lines must make the exit code 1\n" << r.err;
  auto ls = lines(slurp(out));
  ASSERT_EQ(ls.size(), 5u) << slurp(out);
  std::vector<json> js;
  for (auto& l : ls) js.push_back(json::parse(l));
  EXPECT_EQ(js[0]["id"], "a");
  EXPECT_EQ(js[1]["id"], 42);
  EXPECT_EQ(js[2]["line"], 6);
  EXPECT_FALSE(js[2].contains("id"));
  EXPECT_EQ(js[3]["id"], "t");
  EXPECT_EQ(js[4]["id"], "e");
  int ri[] = {0, 1, 2, 3, 4};
  for (int k = 0; k < 5; ++k) {
    const auto& want = recs[ri[k]]["inspire_output"];
    EXPECT_EQ(js[k]["prediction"], want["prediction"]) << k;
    for (auto& key : {"rejected", "non_core", "core"})
      EXPECT_NEAR(js[k]["scores"][key].get<double>(), want["scores"][key].get<double>(), 2e-5);
  }
  // Bad lines are named with their line numbers; the blank line is not an error.
  for (int bad : {2, 5, 7, 9})
    EXPECT_NE(r.err.find("in.jsonl:" + std::to_string(bad) + ":"), std::string::npos)
        << "line " << bad << "\n" << r.err;
  EXPECT_EQ(r.err.find("in.jsonl:4:"), std::string::npos);
  EXPECT_NE(r.err.find("missing field \"abstract\""), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("UTF-8"), std::string::npos) << r.err;

  // stdin → stdout gives the same lines.
  auto piped = cli("predict --model " + quote(model_) + " --quiet", in.string());
  EXPECT_EQ(piped.rc, 1);
  EXPECT_EQ(lines(piped.out), ls);
}

// --batch N: papers padded together through the model. The same records, ids and decisions as
// one at a time, scores within 1e-5; bad lines are still reported one by one.
TEST_F(Cli, PredictBatchedEqualsOneAtATime) {
  const auto& recs = tiny::golden()["records"];
  auto in = dir_ / "batch_in.jsonl";
  {
    std::ofstream f(in);
    for (std::size_t i = 0; i < recs.size(); ++i) {
      f << json{{"id", i}, {"title", recs[i]["title"]}, {"abstract", recs[i]["abstract"]}}.dump() << "\n";
      if (i == 2) f << "{\"id\": \"u\", \"title\": \"bad \xFF\", \"abstract\": \"x\"}\n";
    }
  }
  auto one = cli("predict -q -i " + quote(in.string()) + " -m " + quote(model_) + " -t 2");
  auto bat = cli("predict -q -i " + quote(in.string()) + " -m " + quote(model_) +
                 " -t 2 --chunk 5 --batch 3");
  EXPECT_EQ(one.rc, 1);
  EXPECT_EQ(bat.rc, 1) << bat.err;
  EXPECT_NE(bat.err.find("batch_in.jsonl:4:"), std::string::npos) << bat.err;
  auto a = lines(one.out), b = lines(bat.out);
  ASSERT_EQ(a.size(), recs.size());
  ASSERT_EQ(b.size(), a.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto ja = json::parse(a[i]), jb = json::parse(b[i]);
    EXPECT_EQ(jb["id"], ja["id"]);
    EXPECT_EQ(jb["prediction"], ja["prediction"]) << i;
    for (auto& key : {"rejected", "non_core", "core"})
      EXPECT_NEAR(jb["scores"][key].get<double>(), ja["scores"][key].get<double>(), 1e-5) << i;
  }
  auto zero = cli("predict -i " + quote(in.string()) + " -m " + quote(model_) + " --batch 0");
  EXPECT_NE(zero.rc, 0);
  EXPECT_NE(zero.err.find("--batch"), std::string::npos) << zero.err;
}

TEST_F(Cli, PredictAllGoodExitsZeroAndMissingInputFails) {
  auto in = dir_ / "good.jsonl";
  {
    std::ofstream f(in);
    for (int i = 0; i < 30; ++i)
      f << json{{"id", i}, {"title", "Paper " + std::to_string(i)}, {"abstract", "We compute things."}}.dump() << "\n";
  }
  auto r = cli("predict -i " + quote(in.string()) + " -m " + quote(model_) + " -t 2");
  EXPECT_EQ(r.rc, 0) << r.err;
  auto ls = lines(r.out);
  ASSERT_EQ(ls.size(), 30u);
  for (int i = 0; i < 30; ++i) EXPECT_EQ(json::parse(ls[i])["id"], i);
  auto missing = cli("predict -i " + quote((dir_ / "nope.jsonl").string()) + " -m " + quote(model_));
  EXPECT_EQ(missing.rc, 1);
  EXPECT_NE(missing.err.find("nope.jsonl"), std::string::npos) << missing.err;
}

// `inspire-classifier serve --port 0 <args>` in a child process; the port is read from its first
// line of output. stop() sends SIGTERM and returns the exit status (-1: killed after 10 s).
struct ServeProcess {
  pid_t pid = -1;
  int out_fd = -1;
  std::uint16_t port = 0;
  std::string first_line;

  explicit ServeProcess(std::vector<std::string> args) {
    int out_pipe[2];
    if (::pipe(out_pipe) != 0) return;
    args.insert(args.begin(), {kBin, "serve", "--port", "0"});
    pid = ::fork();
    if (pid == 0) {
      ::dup2(out_pipe[1], 1);
      ::close(out_pipe[0]);
      ::close(out_pipe[1]);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(kBin.c_str(), argv.data());
      ::_exit(127);
    }
    ::close(out_pipe[1]);
    out_fd = out_pipe[0];
    // First stdout line: "... on http://127.0.0.1:PORT ...".
    char c;
    while (::read(out_fd, &c, 1) == 1 && c != '\n') first_line += c;
    auto at = first_line.find("http://127.0.0.1:");
    if (at != std::string::npos) port = static_cast<std::uint16_t>(std::stoi(first_line.substr(at + 17)));
  }
  int stop() {
    ::kill(pid, SIGTERM);
    int st = 0;
    auto t0 = std::chrono::steady_clock::now();
    pid_t w = 0;
    while ((w = ::waitpid(pid, &st, WNOHANG)) == 0 &&
           std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10))
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (w == 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &st, 0);
      st = -1;
    }
    pid = -1;
    return st == -1 ? -1 : (WIFEXITED(st) ? WEXITSTATUS(st) : -2);
  }
  ~ServeProcess() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    if (out_fd >= 0) ::close(out_fd);
  }
};

TEST_F(Cli, ServeAnswersAndStopsOnSigterm) {
  ServeProcess srv({"--threads", "2", "--model", model_});
  ASSERT_NE(srv.port, 0) << "serve printed: " << srv.first_line;
  const auto port = srv.port;

  const auto& rec = tiny::golden()["records"][5];
  auto r = testhttp::request(port, "POST", "/api/predict/coreness",
                             json{{"title", rec["title"]}, {"abstract", rec["abstract"]}}.dump());
  EXPECT_EQ(r.status, 200) << r.body;
  auto clf = ulmfit::Classifier::load(model_);
  EXPECT_EQ(r.body, clf.to_json(clf.predict_coreness(rec["title"].get<std::string>(),
                                                     rec["abstract"].get<std::string>())));
  auto h = testhttp::request(port, "GET", "/api/health");
  EXPECT_EQ(h.status, 200);
  // The model's name and digest, never its path on the server (issue 20).
  auto hj = json::parse(h.body);
  EXPECT_EQ(hj["model"], std::filesystem::path(model_).filename().string());
  EXPECT_EQ(hj["model_sha256"], io::sha256_file_hex(model_));
  EXPECT_EQ(h.body.find(std::filesystem::path(model_).parent_path().string()), std::string::npos)
      << h.body;
  // HEAD is answered like GET, without a body.
  testhttp::Conn hc(port);
  hc.send_raw("HEAD /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::string raw;
  char hb[4096];
  for (ssize_t n; (n = ::recv(hc.fd(), hb, sizeof hb, 0)) > 0;) raw.append(hb, static_cast<std::size_t>(n));
  EXPECT_EQ(raw.compare(0, 12, "HTTP/1.1 200"), 0) << raw;
  EXPECT_EQ(raw.size(), raw.find("\r\n\r\n") + 4) << raw;
  auto e = testhttp::request(port, "POST", "/api/predict/coreness", "{\"title\": 1}");
  EXPECT_EQ(e.status, 422);
  EXPECT_EQ(srv.stop(), 0) << "serve did not exit 0 within 10 s of SIGTERM";
}

// serve --batch N: the papers a worker takes together run as one padded batch. Each answer is
// the paper's own (same prediction, scores within 1e-5 of predict_coreness), in order, and
// single requests sent at once are answered each with its own result.
TEST_F(Cli, ServeBatchedAnswersEachPaperAsAlone) {
  ServeProcess srv({"--threads", "1", "--batch", "8", "--model", model_});
  ASSERT_NE(srv.port, 0) << "serve printed: " << srv.first_line;
  EXPECT_NE(srv.first_line.find("batches of up to 8"), std::string::npos) << srv.first_line;
  auto clf = ulmfit::Classifier::load(model_);
  const auto& recs = tiny::golden()["records"];
  json batch = json::array();
  for (const auto& rec : recs) batch.push_back({{"title", rec["title"]}, {"abstract", rec["abstract"]}});
  ASSERT_GE(batch.size(), 9u);  // more than one group of 8
  auto r = testhttp::request(srv.port, "POST", "/api/predict/coreness/batch", batch.dump());
  ASSERT_EQ(r.status, 200) << r.body;
  auto got = json::parse(r.body);
  ASSERT_EQ(got.size(), batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    auto want = json::parse(clf.to_json(clf.predict_coreness(
        batch[i]["title"].get<std::string>(), batch[i]["abstract"].get<std::string>())));
    EXPECT_EQ(got[i]["prediction"], want["prediction"]) << "item " << i;
    for (auto& [k, v] : want["scores"].items())
      EXPECT_NEAR(got[i]["scores"][k].get<double>(), v.get<double>(), 1e-5) << "item " << i << " " << k;
  }
  // Concurrent single requests (they may share a batch) get their own answers too.
  std::vector<std::thread> clients;
  std::vector<std::string> bodies(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i)
    clients.emplace_back([&, i] {
      try {  // an exception must not escape a thread (it would abort the test binary)
        bodies[i] = testhttp::request(srv.port, "POST", "/api/predict/coreness", batch[i].dump()).body;
      } catch (const std::exception& e) {
        bodies[i] = std::string("request failed: ") + e.what();
      }
    });
  for (auto& t : clients) t.join();
  for (std::size_t i = 0; i < batch.size(); ++i) {
    ASSERT_TRUE(json::accept(bodies[i])) << "request " << i << ": " << bodies[i];
    auto one = json::parse(bodies[i]);
    EXPECT_EQ(one["prediction"], got[i]["prediction"]) << "request " << i;
    for (auto& [k, v] : got[i]["scores"].items())
      EXPECT_NEAR(one["scores"][k].get<double>(), v.get<double>(), 1e-5) << "request " << i;
  }
  auto h = json::parse(testhttp::request(srv.port, "GET", "/api/health").body);
  EXPECT_EQ(h["batch"], 8);
  EXPECT_EQ(srv.stop(), 0);
}
