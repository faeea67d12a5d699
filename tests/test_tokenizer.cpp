// ctest-labels: golden
// tests/test_tokenizer.cpp — parity of ulmfit::tokenize with the real fastai 2.7.19 + spaCy 3.8.7.
//
// Golden tokens come from tools/reference/tokenize_golden.py (real fastai in ../refenv):
//  * tests/fixtures/tokenizer/golden_sample.jsonl.gz (committed): a sample of every corpus plus
//    hand-written edge cases; agreement thresholds below.
//  * tools/reference/out/tokenizer_golden.jsonl.gz (git-ignored, regenerate with the script):
//    the FULL golden set; FullGoldenSet (only in builds with -DINSPIRE_TOKENIZER_FULL_TEST=ON)
//    reports agreement per corpus.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <zlib.h>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "ulmfit/tokenizer.h"

namespace {

struct GoldenDoc {
  std::string corpus, id, text;
  std::vector<std::string> predict, train;
};

bool file_exists(const std::string& p) { return std::ifstream(p).good(); }

std::vector<GoldenDoc> read_golden(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + path);
  std::vector<GoldenDoc> docs;
  std::string line;
  char buf[1 << 16];
  while (true) {
    line.clear();
    bool got = false;
    while (gzgets(f, buf, sizeof buf)) {
      got = true;
      line += buf;
      if (!line.empty() && line.back() == '\n') break;
    }
    if (!got) break;
    if (line.size() <= 1) continue;
    auto j = nlohmann::json::parse(line);
    GoldenDoc d;
    d.corpus = j.at("corpus").get<std::string>();
    d.id = j.at("id").get<std::string>();
    d.text = j.at("text").get<std::string>();
    d.predict = j.at("predict").get<std::vector<std::string>>();
    d.train = j.at("train").get<std::vector<std::string>>();
    docs.push_back(std::move(d));
  }
  gzclose(f);
  return docs;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& t : v) s += t + " | ";
  return s;
}

// Prints the first differing token window.
std::string first_diff(const std::vector<std::string>& got, const std::vector<std::string>& want) {
  std::size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  std::size_t a = i >= 3 ? i - 3 : 0;
  std::vector<std::string> g(got.begin() + std::min(a, got.size()), got.begin() + std::min(i + 4, got.size()));
  std::vector<std::string> w(want.begin() + std::min(a, want.size()), want.begin() + std::min(i + 4, want.size()));
  return "at token " + std::to_string(i) + ": got [" + join(g) + "] want [" + join(w) + "]";
}

struct Agreement {
  std::map<std::string, std::pair<int, int>> by_corpus;  // corpus -> (same, total)
};

Agreement measure(const std::vector<GoldenDoc>& docs, int max_print) {
  Agreement a;
  int printed = 0;
  for (const auto& d : docs) {
    auto p = ulmfit::tokenize(d.text, ulmfit::TokenizeMode::Predict);
    auto t = ulmfit::tokenize(d.text, ulmfit::TokenizeMode::Train);
    bool same = (p == d.predict) && (t == d.train);
    auto& c = a.by_corpus[d.corpus];
    c.first += same;
    c.second += 1;
    if (!same && printed < max_print) {
      ++printed;
      std::printf("MISMATCH %s %s: %s\n", d.corpus.c_str(), d.id.c_str(),
                  p != d.predict ? first_diff(p, d.predict).c_str() : first_diff(t, d.train).c_str());
    }
  }
  for (auto& [k, v] : a.by_corpus)
    std::printf("%-8s %6d / %6d identical (%.3f%%)\n", k.c_str(), v.first, v.second, 100.0 * v.first / v.second);
  return a;
}

double rate(const Agreement& a, const std::string& corpus) {
  auto it = a.by_corpus.find(corpus);
  if (it == a.by_corpus.end() || it->second.second == 0) return -1;
  return double(it->second.first) / it->second.second;
}

const std::string kSample = std::getenv("GOLDEN_SAMPLE") ? std::getenv("GOLDEN_SAMPLE") : INSPIRE_SOURCE_DIR "/tests/fixtures/tokenizer/golden_sample.jsonl.gz";
const std::string kFull = std::getenv("GOLDEN_FULL") ? std::getenv("GOLDEN_FULL") : INSPIRE_SOURCE_DIR "/tools/reference/out/tokenizer_golden.jsonl.gz";

}  // namespace

TEST(Tokenizer, GoldenSampleAgreesWithFastai) {
  auto docs = read_golden(kSample);
  ASSERT_GT(docs.size(), 1000u);
  auto a = measure(docs, 20);
  ASSERT_GE(rate(a, "inspire"), 0.0);
  ASSERT_GE(rate(a, "hep"), 0.0);
  ASSERT_GE(rate(a, "imdb"), 0.0);
  ASSERT_GE(rate(a, "wiki"), 0.0);
  EXPECT_GE(rate(a, "inspire"), 0.999);
  EXPECT_GE(rate(a, "hep"), 0.999);
  EXPECT_GE(rate(a, "imdb"), 0.995);
  EXPECT_GE(rate(a, "wiki"), 0.995);
}

TEST(Tokenizer, EdgeCasesAgreeWithFastai) {
  auto docs = read_golden(kSample);
  int n = 0;
  for (const auto& d : docs) {
    if (d.corpus != "edge") continue;
    ++n;
    EXPECT_EQ(ulmfit::tokenize(d.text, ulmfit::TokenizeMode::Predict), d.predict)
        << d.id << " text=" << d.text << "\n"
        << first_diff(ulmfit::tokenize(d.text), d.predict);
    EXPECT_EQ(ulmfit::tokenize(d.text, ulmfit::TokenizeMode::Train), d.train) << d.id;
  }
  EXPECT_GE(n, 20);
}

// Agreement over the FULL golden set (~25k documents x 2 modes, ~30 s). The set is written by
// `tools/reference/tokenize_golden.py` into the git-ignored tools/reference/out/, so this test
// exists only in builds configured with -DINSPIRE_TOKENIZER_FULL_TEST=ON (never skipped: it is
// either compiled in and must pass, or absent).
#ifdef INSPIRE_TOKENIZER_FULL_TEST
TEST(Tokenizer, FullGoldenSet) {
  ASSERT_TRUE(file_exists(kFull)) << "full golden set absent; create it with "
                                     "../refenv/bin/python tools/reference/tokenize_golden.py";
  auto docs = read_golden(kFull);
  auto a = measure(docs, 60);
  EXPECT_GE(rate(a, "inspire"), 0.999);
  EXPECT_GE(rate(a, "hep"), 0.999);
  EXPECT_GE(rate(a, "imdb"), 0.995);
}
#endif

TEST(Tokenizer, InvalidUtf8NamesTheByteOffset) {
  struct Case { std::string text; std::size_t offset; };
  const std::vector<Case> cases = {
      {std::string("abc\xff" "def"), 3},
      {std::string("ok \xc3"), 3},                 // truncated at end
      {std::string("\xe2\x82zz"), 2},              // bad continuation byte
      {std::string("x\xc0\xaf"), 1},               // overlong
      {std::string("ab\xed\xa0\x80"), 2},          // surrogate
      {std::string("\xf4\x90\x80\x80"), 0},        // > U+10FFFF
      {std::string("caf\xc3\xa9 \x80"), 6},        // stray continuation
  };
  for (const auto& c : cases) {
    try {
      ulmfit::tokenize(c.text);
      ADD_FAILURE() << "no TextError for offset " << c.offset;
    } catch (const ulmfit::TextError& e) {
      EXPECT_EQ(e.byte_offset(), c.offset) << e.what();
      EXPECT_NE(std::string(e.what()).find("byte offset " + std::to_string(c.offset)), std::string::npos)
          << e.what();
    }
  }
}

TEST(Tokenizer, EmptyAndWhitespaceOnly) {
  EXPECT_EQ(ulmfit::tokenize(""), std::vector<std::string>{"xxbos"});
  EXPECT_EQ(ulmfit::tokenize("   \n\t "), std::vector<std::string>{"xxbos"});
}

TEST(Tokenizer, TrainModeReplacesSpacesInsideTokens) {
  auto p = ulmfit::tokenize("a\n b", ulmfit::TokenizeMode::Predict);
  auto t = ulmfit::tokenize("a\n b", ulmfit::TokenizeMode::Train);
  ASSERT_EQ(p.size(), t.size());
  bool saw = false;
  for (std::size_t i = 0; i < p.size(); ++i) {
    std::string r;
    for (char c : p[i]) r += (c == ' ') ? std::string("\xe2\x96\x81") : std::string(1, c);
    EXPECT_EQ(r, t[i]);
    saw |= (p[i] != t[i]);
  }
  EXPECT_TRUE(saw) << join(p);
}

TEST(Tokenizer, HugeInputIsLinear) {
  // 1 MB of abstract-like text, plus a 1 MB run with no spaces at all.
  std::string unit = "Measurement of the W-boson mass (m_W = 80.4 GeV) at sqrt(s)=13 TeV, see arXiv:1207.7214. ";
  std::string big;
  while (big.size() < (1u << 20)) big += unit;
  // CPU time, not wall time: the test machines are shared and noisy.
  std::clock_t t0 = std::clock();
  auto toks = ulmfit::tokenize(big);
  std::string nospace(1u << 20, 'a');
  for (std::size_t i = 7; i < nospace.size(); i += 8) nospace[i] = (i % 3) ? '.' : '-';
  auto toks2 = ulmfit::tokenize(nospace);
  double s = double(std::clock() - t0) / CLOCKS_PER_SEC;
  EXPECT_GT(toks.size(), 100000u);
  EXPECT_GE(toks2.size(), 2u);
  EXPECT_LT(s, 10.0) << "tokenizing 2 MB took " << s << " s";
}

TEST(Tokenizer, ConcurrentCallsAgree) {
  auto docs = read_golden(kSample);
  docs.resize(std::min<std::size_t>(docs.size(), 400));
  std::vector<std::vector<std::string>> ref;
  for (const auto& d : docs) ref.push_back(ulmfit::tokenize(d.text));
  std::vector<int> bad(4, 0);
  std::vector<std::thread> th;
  for (int k = 0; k < 4; ++k) {
    th.emplace_back([&, k] {
      for (std::size_t i = 0; i < docs.size(); ++i)
        if (ulmfit::tokenize(docs[(i + k * 97) % docs.size()].text) != ref[(i + k * 97) % docs.size()]) ++bad[k];
    });
  }
  for (auto& t : th) t.join();
  for (int k = 0; k < 4; ++k) EXPECT_EQ(bad[k], 0);
}

TEST(Tokenizer, HtmlUnescapeMatchesPython) {
  // Expected values are Python 3.11 html.unescape outputs.
  EXPECT_EQ(ulmfit::html_unescape("&amp;&lt;&gt"), "&<>");
  EXPECT_EQ(ulmfit::html_unescape("&notit;"), "\xc2\xacit;");       // longest prefix 'not'
  EXPECT_EQ(ulmfit::html_unescape("&#128;&#0;&#x110000;"), "\xe2\x82\xac\xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_EQ(ulmfit::html_unescape("&#1;x"), "x");                    // invalid code point dropped
  EXPECT_EQ(ulmfit::html_unescape("&unknown; &# &"), "&unknown; &# &");
}
