// ctest-labels: cli
// Issue 20 (reliability): hostile input and faults. One test (or more) per item of the issue,
// each failing on the code before the fix; see docs/reliability.md.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_helpers.h"
#include "io/atomic_file.h"
#include "io/bundle.h"
#include "io/dataset.h"
#include "io/errors.h"
#include "io/pickle.h"
#include "io/sha256.h"
#include "io/torch_file.h"
#include "server/http_api.h"
#include "server/http_server.h"
#include "tests/http_test_client.h"
#include "tiny_bundle.h"
#include "ulmfit/classifier.h"
#include "ulmfit/train.h"

namespace fs = std::filesystem;
using clitest::fresh_dir;
using clitest::kBin;
using clitest::run;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
void spit(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}
std::vector<std::string> names_in(const fs::path& d) {
  std::vector<std::string> out;
  for (auto& e : fs::directory_iterator(d)) out.push_back(e.path().filename().string());
  return out;
}
// Runs `cmd` with stdout and stderr captured separately (stderr into `err`).
std::string run2(const std::string& cmd, const fs::path& dir, int* rc, std::string* err) {
  fs::path ef = dir / "stderr.txt";
  std::string out;
  FILE* p = popen(("{ " + cmd + " ; } 2>" + ef.string()).c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  *rc = pclose(p);
  *err = slurp(ef);
  return out;
}

// Rewrites a safetensors file's JSON header with `edit` (the data buffer is kept as is).
void edit_safetensors_header(const fs::path& p, const std::function<void(json&)>& edit) {
  std::string s = slurp(p);
  std::uint64_t n = 0;
  std::memcpy(&n, s.data(), 8);
  json h = json::parse(s.substr(8, n));
  edit(h);
  std::string nh = h.dump();
  while ((nh.size() + 8) % 8) nh += ' ';
  std::uint64_t nn = nh.size();
  std::string out(reinterpret_cast<const char*>(&nn), 8);
  out += nh + s.substr(8 + n);
  spit(p, out);
}

struct Tiny {
  fs::path dir;
  fs::path model;
  explicit Tiny(const std::string& name) : dir(fresh_dir(name)), model(dir / "tiny.safetensors") {
    tiny::write(model.string());
  }
  ~Tiny() { fs::remove_all(dir); }
};

}  // namespace

// ---- 1. unpredictable temporary, never through a symlink ----------------------------------
TEST(AtomicFile, TemporaryIsUnpredictableAndNeverFollowsASymlink) {
  fs::path d = fresh_dir("rel_tmpname");
  fs::path out = d / "out.txt", victim = d / "victim.txt";
  spit(victim, "precious");
  // The name the old writer used, planted as a symlink to the victim.
  fs::create_symlink(victim, d / ("out.txt.tmp." + std::to_string(::getpid())));
  io::write_file_atomically(out.string(), std::string("new").data(), 3);
  EXPECT_EQ(slurp(victim), "precious");
  EXPECT_EQ(slurp(out), "new");
  EXPECT_FALSE(fs::is_symlink(out));
  // Two writes use different temporary names (observed while writing).
  std::vector<std::string> seen;
  for (int k = 0; k < 2; ++k)
    io::write_file_atomically(out.string(), [&](std::ostream& o) {
      for (auto& n : names_in(d))
        if (n.rfind("out.txt.tmp.", 0) == 0 && !fs::is_symlink(d / n)) seen.push_back(n);
      o << "x";
    });
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_NE(seen[0], seen[1]);
  EXPECT_EQ(seen[0].find(std::to_string(::getpid())), std::string::npos) << seen[0];
  fs::remove_all(d);
}

// ---- 2. the target must be a regular file or absent ---------------------------------------
TEST(AtomicFile, RefusesToReplaceASymlinkFifoOrDevice) {
  fs::path d = fresh_dir("rel_target");
  fs::path victim = d / "victim.txt", link = d / "link.txt", fifo = d / "fifo";
  spit(victim, "precious");
  fs::create_symlink(victim, link);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (const fs::path& target : {link, fifo, fs::path("/dev/null"), d}) {
    try {
      io::write_file_atomically(target.string(), "x", 1);
      ADD_FAILURE() << "replaced " << target;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("not a regular file"), std::string::npos) << e.what();
    }
  }
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_EQ(slurp(victim), "precious");
  EXPECT_EQ(fs::status(fifo).type(), fs::file_type::fifo);
  // The CLI says so before doing any work.
  int rc = 0;
  std::string err;
  run2(kBin + " predict -q -i /dev/null -o " + link.string(), d, &rc, &err);
  EXPECT_NE(rc, 0);
  EXPECT_NE(err.find("not a regular file"), std::string::npos) << err;
  EXPECT_EQ(slurp(victim), "precious");
  fs::remove_all(d);
}

// ---- 16. the mode of a replaced file is kept ----------------------------------------------
TEST(AtomicFile, KeepsTheModeOfTheFileReplaced) {
  fs::path d = fresh_dir("rel_mode");
  fs::path f = d / "report.json";
  spit(f, "old");
  ASSERT_EQ(::chmod(f.c_str(), 0640), 0);
  io::write_file_atomically(f.string(), "new", 3);
  struct stat st {};
  ASSERT_EQ(::stat(f.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  ASSERT_EQ(::chmod(f.c_str(), 0604), 0);
  io::write_file_atomically(f.string(), "newer", 5);
  ASSERT_EQ(::stat(f.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0604u);
  // A new file gets 0666 & ~umask, as open(2) would give it.
  mode_t old = ::umask(027);
  io::write_file_atomically((d / "fresh").string(), "x", 1);
  ::umask(old);
  ASSERT_EQ(::stat((d / "fresh").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  fs::remove_all(d);
}

// ---- 11. SIGINT / SIGTERM remove the temporaries ------------------------------------------
TEST(AtomicFile, SignalRemovesTemporaries) {
  for (int sig : {SIGINT, SIGTERM}) {
    fs::path d = fresh_dir("rel_signal" + std::to_string(sig));
    fs::path ready = d / "ready";
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      io::install_signal_cleanup();
      io::write_file_atomically((d / "out.bin").string(), [&](std::ostream& o) {
        o << std::string(100000, 'x') << std::flush;
        std::ofstream(ready) << "1";
        for (int i = 0; i < 200; ++i) ::usleep(50000);  // killed long before 10 s
      });
      ::_exit(0);
    }
    for (int i = 0; i < 400 && !fs::exists(ready); ++i) std::this_thread::sleep_for(10ms);
    ASSERT_TRUE(fs::exists(ready));
    bool had_tmp = false;
    for (auto& n : names_in(d)) had_tmp |= n.find(".tmp.") != std::string::npos;
    EXPECT_TRUE(had_tmp);
    ::kill(pid, sig);
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == sig) << status;
    for (auto& n : names_in(d)) EXPECT_EQ(n.find(".tmp."), std::string::npos) << n << " left behind";
    EXPECT_FALSE(fs::exists(d / "out.bin"));
    fs::remove_all(d);
  }
}

// ---- 12. full disk / closed output: non-zero exit -----------------------------------------
TEST(Cli, WritingToAFullDiskFails) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full on this system";
  Tiny t("rel_full");
  int rc = 0;
  std::string err;
  for (const std::string& args : std::vector<std::string>{"inspect " + t.model.string(), "--version",
                                                          "--help", "inspect --help"}) {
    run2(kBin + " " + args + " > /dev/full", t.dir, &rc, &err);
    EXPECT_NE(rc, 0) << args;
    EXPECT_NE(err.find("cannot write to standard output"), std::string::npos) << args << ": " << err;
  }
  // The atomic writer checks its writes too: an error from the stream is reported, no file.
  EXPECT_THROW(io::write_file_atomically((t.dir / "x").string(),
                                         [](std::ostream& o) { o.setstate(std::ios::badbit); }),
               std::runtime_error);
  EXPECT_FALSE(fs::exists(t.dir / "x"));
}

// ---- 9 / 18. numeric flags are range-checked by every command -----------------------------
TEST(Cli, NumericFlagsOutOfRangeAreUsageErrors) {
  fs::path d = fresh_dir("rel_flags");
  spit(d / "in.jsonl", "{\"title\": \"A\", \"abstract\": \"b\", \"label\": \"core\"}\n");
  const std::string in = (d / "in.jsonl").string(), out = (d / "o").string();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"predict -q -i " + in + " --threads 100000", "--threads"},
      {"predict -q -i " + in + " --threads -5", "--threads"},
      {"tokenize -i " + in + " --threads 100000", "--threads"},
      {"validate -d " + in + " --threads -5", "--threads"},
      {"train --preset tiny -d " + in + " -o " + out + " --max-vocab 0", "--max-vocab"},
      {"train --preset tiny -d " + in + " -o " + out + " --lm-epochs -1", "--lm-epochs"},
      {"train --preset tiny -d " + in + " -o " + out + " --threads -5", "--threads"},
      {"finetune-lm --preset tiny -d " + in + " -o " + out + " --epochs -3", "--epochs"},
      {"finetune-lm --preset tiny -d " + in + " -o " + out + " --bs 0", "--bs"},
      {"train-classifier --preset tiny -d " + in + " --lm " + in + " -o " + out + " --lr 0", "--lr"},
      {"predict -q -i " + in + " --max-text-bytes 0", "--max-text-bytes"},
  };
  for (auto& [args, flag] : cases) {
    int rc = 0;
    std::string err;
    run2(kBin + " " + args, d, &rc, &err);
    EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 2) << args << " -> " << rc << "\n" << err;
    EXPECT_NE(err.find(flag), std::string::npos) << args << "\n" << err;
    EXPECT_NE(err.find("range"), std::string::npos) << args << "\n" << err;
  }
  EXPECT_FALSE(fs::exists(out));
  fs::remove_all(d);
}

// --checkpoint-every takes steps or a duration; anything else is a usage error naming the flag.
// A run with it finishes with its last checkpoint at an epoch's end and no carried state left.
TEST(Cli, CheckpointEveryTakesStepsOrADuration) {
  fs::path d = fresh_dir("rel_ckpt_every");
  std::string text;
  for (int i = 0; i < 40; ++i)
    text += "{\"title\": \"Paper " + std::to_string(i) + "\", \"abstract\": \"We measure the " +
            std::to_string(i % 7) + " decay of the boson and the quark in collisions at high energy.\"}\n";
  spit(d / "in.jsonl", text);
  const std::string in = (d / "in.jsonl").string(), out = (d / "o").string();
  for (const char* bad : {"0", "-3", "1.5", "5x", "m", "0s", "1e3", ".5h"}) {
    int rc = 0;
    std::string err;
    run2(kBin + " finetune-lm --preset tiny -q -d " + in + " -o " + out + " --checkpoint-every=" + bad,
         d, &rc, &err);
    EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 2) << bad << " -> " << rc << "\n" << err;
    EXPECT_NE(err.find("--checkpoint-every"), std::string::npos) << bad << "\n" << err;
  }
  EXPECT_FALSE(fs::exists(out));
  for (const char* good : {"2", "0.5s"}) {
    int rc = 0;
    std::string err;
    run2(kBin + " finetune-lm --preset tiny -q --threads 1 -d " + in + " -o " + out +
             " --frozen-epochs 0 --epochs 1 --bs 2 --bptt 8 --checkpoint-every " + good,
         d, &rc, &err);
    EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << good << " -> " << rc << "\n" << err;
    const json ck = json::parse(slurp(fs::path(out) / "checkpoint.json"));
    EXPECT_EQ(ck.value("in_epoch", 0), 0) << ck.dump();
    for (const auto& f : fs::directory_iterator(out))
      EXPECT_NE(f.path().extension(), ".carry") << f.path();
    fs::remove_all(out);
  }
  fs::remove_all(d);
}

// ---- 15. control bytes from the input are escaped in messages ----------------------------
TEST(Cli, ControlBytesInErrorsAreEscaped) {
  Tiny t("rel_escape");
  const std::string evil = "\x1b]0;pwned\x07\x1b[31m";
  int rc = 0;
  std::string err;
  for (const std::string& args : std::vector<std::string>{
           "'" + evil + "'",                                         // unknown command
        "predict -q -m " + t.model.string() + " -i '/nonexistent/" + evil + ".jsonl'",  // a path
        "predict -q '--bogus-" + evil + "'",   // CLI11's parse errors
        "inspect '" + (t.dir / evil).string() + "'"}) {
    run2(kBin + " " + args, t.dir, &rc, &err);
    EXPECT_NE(rc, 0);
    EXPECT_FALSE(err.empty()) << args;
    EXPECT_EQ(err.find('\x1b'), std::string::npos) << args << ": " << err;
    EXPECT_EQ(err.find('\x07'), std::string::npos) << args << ": " << err;
  }
  run2(kBin + " '" + evil + "'", t.dir, &rc, &err);
  EXPECT_NE(err.find("\\x1b]0;pwned\\x07"), std::string::npos) << err;
}

// ---- 6. predict: one huge line does not grow memory; .gz input ---------------------------
TEST(CliPredict, LongLineIsSkippedAndGzipIsRead) {
  Tiny t("rel_longline");
  fs::path in = t.dir / "in.jsonl";
  {
    std::ofstream o(in);
    o << "{\"id\": 1, \"title\": \"A\", \"abstract\": \"b c\"}\n";
    o << "{\"id\": 2, \"title\": \"" << std::string(3 << 20, 'x') << "\", \"abstract\": \"b\"}\n";
    o << "{\"id\": 3, \"title\": \"C\", \"abstract\": \"d e\"}\n";
  }
  int rc = 0;
  std::string err;
  std::string out = run2(kBin + " predict -q --max-line-bytes 100000 -m " + t.model.string() +
                             " -i " + in.string(),
                         t.dir, &rc, &err);
  EXPECT_EQ(WEXITSTATUS(rc), 1) << err;  // a bad line: exit 1
  EXPECT_NE(err.find(":2: line longer than 100000 bytes"), std::string::npos) << err;
  std::istringstream lines(out);
  std::string l;
  std::vector<int> ids;
  while (std::getline(lines, l)) ids.push_back(json::parse(l)["id"].get<int>());
  EXPECT_EQ(ids, (std::vector<int>{1, 3}));

  // gzip input gives the same output as plain input
  fs::path plain = t.dir / "p.jsonl", gz = t.dir / "p.jsonl.gz";
  std::string text = "{\"id\": 7, \"title\": \"Higgs\", \"abstract\": \"We measure.\"}\n";
  spit(plain, text);
  gzFile g = gzopen(gz.c_str(), "wb");
  gzwrite(g, text.data(), (unsigned)text.size());
  gzclose(g);
  std::string a = run2(kBin + " predict -q -m " + t.model.string() + " -i " + plain.string(), t.dir, &rc, &err);
  ASSERT_EQ(rc, 0) << err;
  std::string b = run2(kBin + " predict -q -m " + t.model.string() + " -i " + gz.string(), t.dir, &rc, &err);
  ASSERT_EQ(rc, 0) << err;
  EXPECT_EQ(a, b);
  EXPECT_NE(a.find("\"id\": 7"), std::string::npos) << a;
}

// ---- 3. bounded work per document ---------------------------------------------------------
TEST(Classifier, TextBeyondMaxTextBytesIsNotRead) {
  Tiny t("rel_maxtext");
  ulmfit::LoadOptions o;
  o.max_text_bytes = 2000;
  auto clf = ulmfit::Classifier::load(t.model.string(), o);
  EXPECT_EQ(clf.max_text_bytes(), 2000u);
  std::string abstract;
  for (int i = 0; i < 2000; ++i) abstract += "quark gluon é ";  // multi-byte chars at the cut
  const std::string title = "A title";
  auto joined = title + " <ENDTITLE> " + abstract;
  auto cut = ulmfit::truncate_utf8(joined, 2000);
  EXPECT_LE(cut.size(), 2000u);
  EXPECT_GE(cut.size(), 1998u);
  auto full = clf.predict_coreness(title, abstract);
  auto part = clf.predict_text(std::string(cut));
  for (int k = 0; k < 3; ++k) EXPECT_EQ(full.scores[k], part.scores[k]);
  // The default reads whole real-sized papers, and differs here (the text is longer than 2000).
  auto whole = ulmfit::Classifier::load(t.model.string()).predict_coreness(title, abstract);
  EXPECT_EQ(ulmfit::LoadOptions{}.max_text_bytes, 64u * 1024);
  bool differs = false;
  for (int k = 0; k < 3; ++k) differs |= whole.scores[k] != full.scores[k];
  EXPECT_TRUE(differs);
  // Never cuts inside a UTF-8 sequence.
  EXPECT_EQ(ulmfit::truncate_utf8("a\xc3\xa9", 2), "a");
  EXPECT_EQ(ulmfit::truncate_utf8("a\xc3\xa9", 3), "a\xc3\xa9");
}

// ---- 7 / 19. model files: NaN / Inf weights and duplicate labels are refused --------------
TEST(Bundle, NonFiniteWeightsAreRefusedNamingTheTensor) {
  Tiny t("rel_nan");
  // Find a float tensor and poison one element in the file.
  std::string s = slurp(t.model);
  std::uint64_t n = 0;
  std::memcpy(&n, s.data(), 8);
  json h = json::parse(s.substr(8, n));
  std::string name;
  std::uint64_t begin = 0;
  for (auto& [k, v] : h.items())
    if (k != "__metadata__" && v["dtype"] == "F32") {
      name = k;
      begin = v["data_offsets"][0];
      break;
    }
  ASSERT_FALSE(name.empty());
  for (float bad : {std::nanf(""), INFINITY}) {
    std::string p = s;
    std::memcpy(&p[8 + n + begin + 4], &bad, 4);  // element 1
    spit(t.dir / "bad.safetensors", p);
    try {
      io::Bundle::load((t.dir / "bad.safetensors").string());
      ADD_FAILURE() << "loaded a bundle with a non-finite weight";
    } catch (const io::FormatError& e) {
      std::string m = e.what();
      EXPECT_NE(m.find("'" + name + "'"), std::string::npos) << m;
      EXPECT_NE(m.find("element 1"), std::string::npos) << m;
    }
  }
}

TEST(Bundle, DuplicateLabelNamesAreRefused) {
  Tiny t("rel_duplabels");
  edit_safetensors_header(t.model, [](json& h) {
    h["__metadata__"]["labels"] = json(std::vector<std::string>{"core", "non_core", "core"}).dump();
  });
  try {
    io::Bundle::load(t.model.string());
    ADD_FAILURE() << "loaded a bundle with duplicate labels";
  } catch (const io::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("duplicate label name 'core'"), std::string::npos) << e.what();
  }
}

// ---- 8. decompression is bounded by the declared sizes ------------------------------------
TEST(TorchFile, DecompressionBombsAreRefusedUnread) {
  const std::string dir = INSPIRE_SOURCE_DIR "/tests/fixtures/torch/";
  for (const char* f : {"bomb_storage.pt", "bomb_pickle.pt"}) {
    try {
      io::torch::load_state_dict(dir + f);
      ADD_FAILURE() << f << " loaded";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find("declares"), std::string::npos) << f << ": " << e.what();
    }
  }
}

// ---- 20. every global outside the allow-list is reported ----------------------------------
TEST(Inspect, ReportsEveryGlobalOutsideTheAllowList) {
  EXPECT_TRUE(io::pickle::is_allowed_global("torch._utils", "_rebuild_tensor_v2"));
  EXPECT_TRUE(io::pickle::is_allowed_global("collections", "OrderedDict"));
  EXPECT_TRUE(io::pickle::is_allowed_global("torch", "FloatStorage"));
  for (auto [m, n] : {std::pair{"numpy.testing._private.utils", "runstring"},
                      std::pair{"builtins", "getattr"}, std::pair{"torch.storage", "_load_from_bytes"},
                      std::pair{"pandas.io.pickle", "read_pickle"}, std::pair{"os", "system"}})
    EXPECT_FALSE(io::pickle::is_allowed_global(m, n)) << m << "." << n;
  fs::path d = fresh_dir("rel_inspect");
  const std::string f = INSPIRE_SOURCE_DIR "/tests/fixtures/torch/untrusted_global.pt";
  int rc = 0;
  std::string err;
  run2(kBin + " inspect " + f, d, &rc, &err);
  EXPECT_NE(err.find("numpy.testing._private.utils.runstring"), std::string::npos) << err;
  EXPECT_NE(err.find("outside the allow-list"), std::string::npos) << err;
  // A plain checkpoint has none.
  std::string out = run2(kBin + " inspect --json " INSPIRE_SOURCE_DIR "/tests/fixtures/torch/lm_zip.pt",
                         d, &rc, &err);
  ASSERT_EQ(rc, 0) << err;
  EXPECT_EQ(json::parse(out)["untrusted_globals"].size(), 0u) << out;
  fs::remove_all(d);
}

// ---- 14. CSV cells cannot be formulas -----------------------------------------------------
TEST(Csv, FormulaCellsAreEscaped) {
  EXPECT_EQ(io::csv_field("=cmd|' /C calc'!A0"), "\"'=cmd|' /C calc'!A0\"");
  EXPECT_EQ(io::csv_field("+1"), "\"'+1\"");
  EXPECT_EQ(io::csv_field("-2+3"), "\"'-2+3\"");
  EXPECT_EQ(io::csv_field("@SUM(A1)"), "\"'@SUM(A1)\"");
  EXPECT_EQ(io::csv_field("\tx"), "\"'\tx\"");
  EXPECT_EQ(io::csv_field("a,b"), "\"a,b\"");
  EXPECT_EQ(io::csv_field("plain"), "plain");
  EXPECT_EQ(io::csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
  // Through `validate --predictions`.
  Tiny t("rel_csv");
  spit(t.dir / "d.jsonl",
       "{\"id\": \"=HYPERLINK(\\\"http://x\\\")\", \"title\": \"A\", \"abstract\": \"b\", \"label\": \"core\"}\n");
  int rc = 0;
  std::string err;
  run2(kBin + " validate -q -m " + t.model.string() + " -d " + (t.dir / "d.jsonl").string() +
           " --predictions " + (t.dir / "p.csv").string(),
       t.dir, &rc, &err);
  ASSERT_EQ(rc, 0) << err;
  std::string csv = slurp(t.dir / "p.csv");
  EXPECT_NE(csv.find(",\"'=HYPERLINK"), std::string::npos) << csv;
  EXPECT_EQ(csv.find(",=HYPERLINK"), std::string::npos) << csv;
}

// ---- 13, HEAD, 4: the server -------------------------------------------------------------
namespace {
struct Srv {
  server::HttpServer server;
  std::atomic<int> calls{0};
  explicit Srv(server::HttpServerOptions o = {}) : server(port0(o)) {
    server::CorenessApi api;
    api.predict = [this](const std::string& t, const std::string&) -> std::string {
      ++calls;
      if (t == "THROW") throw std::runtime_error("/secret/path/model.safetensors: boom");
      return "{\"prediction\": \"core\", \"scores\": {}}";
    };
    api.health_extra = {{"model", "m"}};
    server::add_coreness_routes(server, api);
    server.start();
  }
  static server::HttpServerOptions port0(server::HttpServerOptions o) {
    o.host = "127.0.0.1";
    o.port = 0;
    return o;
  }
  std::uint16_t port() const { return server.port(); }
};
}  // namespace

TEST(ServerReliability, BadNumbersAre400AndInternalErrorsDoNotLeak) {
  Srv s;
  for (const char* body : {"{\"title\": 1e99999, \"abstract\": \"a\"}", "[1e99999]",
                           "{\"title\": \"a\", \"abstract\": \"b\", \"x\": -1e400}"}) {
    auto r = testhttp::request(s.port(), "POST", "/api/predict/coreness", body);
    EXPECT_EQ(r.status, 400) << body << " -> " << r.body;
    EXPECT_EQ(r.body.find("json.exception"), std::string::npos) << r.body;
    auto b = testhttp::request(s.port(), "POST", "/api/predict/coreness/batch", body);
    EXPECT_EQ(b.status, 400) << body << " -> " << b.body;
  }
  auto r = testhttp::request(s.port(), "POST", "/api/predict/coreness",
                             "{\"title\": \"THROW\", \"abstract\": \"\"}");
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.body.find("secret"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("boom"), std::string::npos) << r.body;
  EXPECT_EQ(s.calls.load(), 1);
}

TEST(ServerReliability, HeadIsAnsweredForGetRoutes) {
  Srv s;
  testhttp::Conn c(s.port());
  c.send_raw("HEAD /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::string raw;
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(c.fd(), buf, sizeof buf, 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<std::size_t>(n));
  }
  ASSERT_NE(raw.find("\r\n\r\n"), std::string::npos) << raw;
  EXPECT_EQ(raw.substr(0, 12), "HTTP/1.1 200") << raw;
  EXPECT_NE(raw.find("Content-Length: "), std::string::npos) << raw;  // that of the GET answer
  EXPECT_EQ(raw.find("Content-Length: 0\r\n"), std::string::npos) << raw;
  EXPECT_EQ(raw.size(), raw.find("\r\n\r\n") + 4) << "HEAD answered with a body:\n" << raw;
  auto m = testhttp::request(s.port(), "DELETE", "/api/health");
  EXPECT_EQ(m.status, 405);
  EXPECT_EQ(m.headers["allow"], "GET, HEAD");
}

TEST(ServerReliability, SlowRequestGets408) {
  server::HttpServerOptions o;
  o.read_timeout_s = 1;
  Srv s(o);
  testhttp::Conn c(s.port());
  c.send_raw("POST /api/predict/coreness HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"ti");
  auto t0 = std::chrono::steady_clock::now();
  auto r = c.read_response();
  EXPECT_EQ(r.status, 408) << r.body;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  for (int i = 0; i < 100 && s.server.inflight_body_bytes() != 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(s.server.inflight_body_bytes(), 0u);
}

TEST(ServerReliability, BodiesInFlightAreBoundedAcrossConnections) {
  server::HttpServerOptions o;
  o.max_body_bytes = 1 << 20;
  o.max_inflight_body_bytes = 2 << 20;  // big bodies may hold 1.5 MiB of it
  o.read_timeout_s = 20;
  Srv s(o);
  const std::string head =
      "POST /api/predict/coreness HTTP/1.1\r\nHost: x\r\nContent-Length: 800000\r\n\r\n";
  testhttp::Conn a(s.port());
  a.send_raw(head + "{\"title\": \"");  // holds its 800000-byte reservation
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(s.server.inflight_body_bytes(), 800000u);
  testhttp::Conn b(s.port());
  b.send_raw(head);  // a second big one would exceed 1.5 MiB: 503 at once
  auto rb = b.read_response();
  EXPECT_EQ(rb.status, 503) << rb.body;
  EXPECT_EQ(rb.headers["retry-after"], "1");
  // Small requests are still served.
  auto ok = testhttp::request(s.port(), "POST", "/api/predict/coreness",
                              "{\"title\": \"t\", \"abstract\": \"a\"}");
  EXPECT_EQ(ok.status, 200) << ok.body;
  // The slow one finishes and its reservation goes.
  std::string rest = std::string(800000 - 11 - 20, 'x') + "\", \"abstract\": \"\"}";
  rest.resize(800000 - 11, ' ');
  a.send_raw(rest);
  EXPECT_EQ(a.read_response().status, 200);
  for (int i = 0; i < 100 && s.server.inflight_body_bytes() != 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(s.server.inflight_body_bytes(), 0u);
}

// The load test: slow clients, huge bodies and normal traffic at once on loopback, for a few
// seconds; every normal request is answered 200 and the bodies held stay under the cap.
static long rss_kb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return 0;
}

TEST(ServerReliability, LoadMixSlowHugeAndNormal) {
  const long rss0 = rss_kb();
  server::HttpServerOptions o;
  o.max_body_bytes = 1 << 20;
  o.max_inflight_body_bytes = 4 << 20;
  o.read_timeout_s = 2;
  o.worker_threads = 2;
  Srv s(o);
  std::atomic<bool> stop{false};
  std::atomic<std::size_t> peak{0};
  std::atomic<int> normal_ok{0}, normal_bad{0}, huge_413{0}, slow_answered{0};
  std::vector<std::thread> th;
  // 40 slow clients: 1 MiB bodies trickled at 1 kB / 100 ms (get 503 or 408).
  for (int i = 0; i < 40; ++i)
    th.emplace_back([&] {
      try {
        testhttp::Conn c(s.port(), 10);
        c.send_raw("POST /api/predict/coreness HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n");
        for (int k = 0; k < 30 && !stop; ++k) {
          c.send_raw(std::string(1000, 'x'));
          std::this_thread::sleep_for(100ms);
        }
        slow_answered += c.read_response().status >= 400;
      } catch (...) {
        slow_answered++;  // closed on us after the answer (or a reset): also an answer
      }
    });
  // 10 huge bodies (50 MB declared): 413 without the server reading them.
  for (int i = 0; i < 10; ++i)
    th.emplace_back([&] {
      try {
        testhttp::Conn c(s.port(), 10);
        c.send_raw("POST /api/predict/coreness HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n");
        huge_413 += c.read_response().status == 413;
      } catch (...) {
      }
    });
  // Normal traffic from 4 clients while all that goes on.
  for (int i = 0; i < 4; ++i)
    th.emplace_back([&] {
      while (!stop) {
        try {
          auto r = testhttp::request(s.port(), "POST", "/api/predict/coreness",
                                     "{\"title\": \"Higgs\", \"abstract\": \"We measure.\"}");
          (r.status == 200 ? normal_ok : normal_bad)++;
        } catch (...) {
          normal_bad++;
        }
      }
    });
  auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - t0 < 4s) {
    std::size_t cur = s.server.inflight_body_bytes();
    if (cur > peak) peak = cur;
    std::this_thread::sleep_for(5ms);
  }
  stop = true;
  for (auto& t : th) t.join();
  EXPECT_EQ(normal_bad.load(), 0);
  EXPECT_GT(normal_ok.load(), 50);
  EXPECT_EQ(huge_413.load(), 10);
  EXPECT_EQ(slow_answered.load(), 40);
  EXPECT_LE(peak.load(), std::size_t(4) << 20);
  EXPECT_GT(peak.load(), std::size_t(2) << 20);  // the slow clients did fill the budget
  const long grown_kb = rss_kb() - rss0;
  // 40 x 1 MB + 10 x 50 MB were offered; the process (server and clients) grew by far less.
  EXPECT_LT(grown_kb, 128 * 1024);
  std::fprintf(stderr,
               "load mix: %d normal requests answered 200 (0 errors), %d huge bodies got 413, %d "
               "slow clients got 408/503, peak body bytes held %zu, RSS growth %ld KiB\n",
               normal_ok.load(), huge_413.load(), slow_answered.load(), peak.load(), grown_kb);
}

// ---- 5 / 10. --resume: provenance is checked, paths are confined --------------------------
namespace {
struct TinyRun {
  ulmfit::ModelConfig cfg = [] {
    auto c = ulmfit::ModelConfig::lm(40, 0.7);
    c.emb_sz = 8, c.n_hid = 12, c.n_layers = 2;
    return c;
  }();
  std::vector<ulmfit::Doc> train, valid;
  ulmfit::Vocab vocab;
  TinyRun() {
    nn::Rng r(3);
    train.resize(30), valid.resize(6);
    for (auto* set : {&train, &valid})
      for (auto& d : *set) {
        d.push_back(2);
        int len = 5 + (int)r.below(20);
        for (int i = 0; i < len; ++i) d.push_back(9 + (int)r.below(31));
      }
    std::vector<std::string> itos;
    for (int i = 0; i < 40; ++i) itos.push_back("t" + std::to_string(i));
    vocab = ulmfit::Vocab::from_itos(itos);
  }
  // Trains; throws "killed" after `kill_after` epochs when > 0. poison: every weight NaN.
  void go(const fs::path& dir, bool resume, int kill_after, const std::vector<ulmfit::Doc>& tr,
          const ulmfit::Vocab& v, bool poison = false) {
    ulmfit::AwdLstmLM lm(cfg);
    nn::Rng rng(7);
    lm.init(rng);
    if (poison)
      for (auto& w : lm.values()) w = std::nanf("");
    ulmfit::TrainOptions o;
    o.out_dir = dir.string();
    o.quiet = true;
    o.resume = resume;
    o.seed = 11;
    int epochs = 0;
    o.on_epoch = [&](const std::string&, int, const std::map<std::string, double>&) {
      if (++epochs == kill_after) throw std::runtime_error("killed");
    };
    ulmfit::train_language_model(lm, v, tr, valid, 4, 6, ulmfit::lm_finetune_stages(1, 1e-2, 2, 1e-3), o);
  }
};
}  // namespace

TEST(TrainReliability, ResumeRefusesOtherDataOrVocabulary) {
  TinyRun t;
  fs::path d = fresh_dir("rel_prov");
  EXPECT_THROW(t.go(d, false, 1, t.train, t.vocab), std::runtime_error);
  ASSERT_TRUE(fs::exists(d / "checkpoint.json"));
  auto other = t.train;
  other[3].push_back(12);
  try {
    t.go(d, true, -1, other, t.vocab);
    ADD_FAILURE() << "resumed with other data";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("training data"), std::string::npos) << e.what();
  }
  std::vector<std::string> itos = t.vocab.itos();
  std::swap(itos[20], itos[21]);
  try {
    t.go(d, true, -1, t.train, ulmfit::Vocab::from_itos(itos));
    ADD_FAILURE() << "resumed with another vocabulary";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("vocabulary"), std::string::npos) << e.what();
  }
  // The same inputs resume fine.
  EXPECT_NO_THROW(t.go(d, true, -1, t.train, t.vocab));
  fs::remove_all(d);
}

TEST(TrainReliability, CheckpointPathsAreConfinedToTheRunFolder) {
  TinyRun t;
  fs::path root = fresh_dir("rel_confine");
  fs::path d = root / "run", outside = root / "outside";
  fs::create_directories(outside);
  EXPECT_THROW(t.go(d, false, 1, t.train, t.vocab), std::runtime_error);
  auto ck = json::parse(slurp(d / "checkpoint.json"));
  // Valid files, but outside the run folder: the old code read them and deleted them later.
  fs::copy_file(d / ck["model"].get<std::string>(), outside / "ckpt-x-1.safetensors");
  fs::copy_file(d / ck["optim"].get<std::string>(), outside / "ckpt-x-1.optim");
  const json good = ck;
  for (auto [field, value] :
       {std::pair{"model", std::string("../outside/ckpt-x-1.safetensors")},
        std::pair{"optim", (outside / "ckpt-x-1.optim").string()},
        std::pair{"model", std::string("../../etc/passwd")},
        std::pair{"best_model", std::string("/tmp/x.safetensors")}}) {
    ck = good;
    ck[field] = value;
    spit(d / "checkpoint.json", ck.dump());
    try {
      t.go(d, true, -1, t.train, t.vocab);
      ADD_FAILURE() << field << " = " << value << " was followed";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("field '") + field + "'"), std::string::npos)
          << e.what();
    }
  }
  // The carried state of a checkpoint inside an epoch is confined the same way.
  ck = good;
  ck["epoch"] = -1, ck["in_epoch"] = 1, ck["epoch_loss"] = 0.5;
  ck["carry"] = "../outside/ckpt-x-1.carry";
  spit(d / "checkpoint.json", ck.dump());
  try {
    t.go(d, true, -1, t.train, t.vocab);
    ADD_FAILURE() << "carry outside the run folder was followed";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("field 'carry'"), std::string::npos) << e.what();
  }
  // A symlink inside the run folder, pointing out of it, is refused too.
  ck = good;
  fs::create_symlink(outside / "ckpt-x-1.safetensors", d / "ckpt-link-1.safetensors");
  ck["model"] = "ckpt-link-1.safetensors";
  spit(d / "checkpoint.json", ck.dump());
  EXPECT_THROW(t.go(d, true, -1, t.train, t.vocab), std::runtime_error);
  EXPECT_TRUE(fs::exists(outside / "ckpt-x-1.safetensors"));
  EXPECT_TRUE(fs::exists(outside / "ckpt-x-1.optim"));
  fs::remove_all(root);
}

// ---- 7 (second half). a NaN loss stops training with a clear error ------------------------
TEST(TrainReliability, NaNLossStopsTraining) {
  TinyRun t;
  fs::path d = fresh_dir("rel_nanloss");
  try {
    t.go(d, false, -1, t.train, t.vocab, /*poison=*/true);
    ADD_FAILURE() << "trained on with a NaN loss";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("training diverged: loss is"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("nan"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(d / "checkpoint.json"));  // nothing NaN was checkpointed
  fs::remove_all(d);
}

// ---- 17. all inputs are checked before any training ---------------------------------------
TEST(TrainReliability, BadLabelsFailBeforeAnyTraining) {
  fs::path d = fresh_dir("rel_labels");
  clitest::write_sample(d / "data.jsonl", 40);
  {
    std::ofstream o(d / "data.jsonl", std::ios::app);
    o << "{\"title\": \"T\", \"abstract\": \"A\", \"label\": \"corr\"}\n";
  }
  int rc = 0;
  std::string err;
  auto t0 = std::chrono::steady_clock::now();
  run2(kBin + " train --preset tiny --threads 1 -q -d " + (d / "data.jsonl").string() + " -o " +
           (d / "out").string(),
       d, &rc, &err);
  EXPECT_NE(rc, 0);
  EXPECT_NE(err.find("unknown label 'corr'"), std::string::npos) << err;
  EXPECT_NE(err.find(":41:"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(d / "out" / "lm")) << "the LM stage ran before the labels were checked";
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 30s);
  fs::remove_all(d);
}

// (/api/health naming the model and its digest: tests/test_cli_predict.cpp, serve test.)

TEST(Sha256, KnownDigests) {
  EXPECT_EQ(io::sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(io::sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::string m(1000000, 'a');
  EXPECT_EQ(io::sha256_hex(m.data(), m.size()),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
