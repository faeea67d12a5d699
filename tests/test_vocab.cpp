// ctest-labels: golden
// tests/test_vocab.cpp — ulmfit::Vocab against fastai 2.7.19's make_vocab / Numericalize
// (golden fixtures written by tools/reference/gen_vocab_data_goldens.py from fastai-tokenized
// INSPIRE abstracts; the tokens come from fastai itself, so these tests do not depend on our
// tokenizer).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/errors.h"
#include "ulmfit/tokenizer.h"
#include "ulmfit/vocab.h"

using ulmfit::TokenCounter;
using ulmfit::Vocab;
using ulmfit::VocabOptions;

namespace {

const std::string kFix = INSPIRE_SOURCE_DIR "/tests/fixtures/data/";

std::vector<std::vector<std::string>> load_docs() {
  std::ifstream f(kFix + "docs.jsonl");
  EXPECT_TRUE(f) << "missing fixture docs.jsonl";
  std::vector<std::vector<std::string>> docs;
  std::string line;
  while (std::getline(f, line)) docs.push_back(nlohmann::json::parse(line).get<std::vector<std::string>>());
  return docs;
}

nlohmann::json load_json(const std::string& name) {
  std::ifstream f(kFix + name);
  EXPECT_TRUE(f) << "missing fixture " << name;
  return nlohmann::json::parse(f);
}

std::string tmp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("inspire_test_vocab_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

}  // namespace

TEST(TokenCounter, MostCommonTiesKeepFirstInsertionOrder) {
  TokenCounter c;
  for (const char* t : {"b", "a", "c", "a", "d", "b", "e", "c"}) c.add(std::string(t));
  auto mc = c.most_common();
  // counts: b2 a2 c2 d1 e1 -> Python Counter("bacadbec").most_common()
  std::vector<std::string> got;
  for (auto& [t, n] : mc) got.push_back(t);
  EXPECT_EQ(got, (std::vector<std::string>{"b", "a", "c", "d", "e"}));
  EXPECT_EQ(mc[0].second, 2u);
  EXPECT_EQ(c.count("e"), 1u);
  EXPECT_EQ(c.count("zz"), 0u);
  EXPECT_EQ(c.total(), 8u);
  EXPECT_EQ(c.most_common(2).size(), 2u);
}

TEST(Vocab, SpecialTokensFirstAndPaddedToMultipleOf8) {
  // "the" x3, "xxmaj" x2 (a special token that also occurs), "cat" x2, "sat" x1
  std::vector<std::vector<std::string>> docs = {{"xxbos", "xxmaj", "the", "cat", "sat"},
                                                {"xxbos", "xxmaj", "the", "cat", "the"}};
  auto v = Vocab::build(docs, VocabOptions{2, 60000});
  std::vector<std::string> want = {"xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep",
                                   "xxwrep", "xxup", "xxmaj", "the", "cat"};
  for (int i = 0; i < 5; ++i) want.push_back("xxfake");
  EXPECT_EQ(v.itos(), want);
  EXPECT_EQ(v.size() % 8, 0u);
  EXPECT_EQ(v.id("cat"), 10);
  EXPECT_EQ(v.id("sat"), 0);     // below min_freq -> xxunk
  EXPECT_EQ(v.id("xxfake"), 0);  // built here: xxfake is not mapped (fastai o2i)
  EXPECT_EQ(v.id("xxpad"), Vocab::kPad);
  EXPECT_EQ(v.numericalize({"xxbos", "the", "dog"}), (std::vector<int32_t>{2, 9, 0}));
}

TEST(Vocab, SizeAlreadyMultipleOf8StillGets8Fakes) {
  // 9 specials + 7 tokens with count 2 = 16 -> fastai appends 8 more (24).
  std::vector<std::string> d;
  for (const char* t : {"a", "b", "c", "d", "e", "f", "g"}) d.push_back(t), d.push_back(t);
  auto v = Vocab::build(std::vector<std::vector<std::string>>{d}, VocabOptions{2, 60000});
  EXPECT_EQ(v.size(), 24u);
  EXPECT_EQ(v.token(15), "g");
  EXPECT_EQ(v.token(16), "xxfake");
  EXPECT_EQ(v.token(23), "xxfake");
}

TEST(Vocab, MatchesFastaiMakeVocabAndNumericalize) {
  const auto docs = load_docs();
  ASSERT_EQ(docs.size(), 240u);
  const auto g = load_json("vocab_goldens.json");
  ASSERT_GE(g["cases"].size(), 6u);
  for (const auto& c : g["cases"]) {
    const std::size_t n_build = c["n_build"], min_freq = c["min_freq"], max_vocab = c["max_vocab"];
    SCOPED_TRACE("n_build=" + std::to_string(n_build) + " min_freq=" + std::to_string(min_freq) +
                 " max_vocab=" + std::to_string(max_vocab));
    std::vector<std::vector<std::string>> build(docs.begin(), docs.begin() + n_build);
    auto v = Vocab::build(build, VocabOptions{min_freq, max_vocab});
    const auto want = c["vocab"].get<std::vector<std::string>>();
    ASSERT_EQ(v.size(), want.size());
    EXPECT_EQ(v.itos(), want);  // same list, same order
    const auto ids = c["ids"];
    ASSERT_EQ(ids.size(), docs.size());
    std::size_t n_oov = 0;
    for (std::size_t i = 0; i < docs.size(); ++i) {
      auto got = v.numericalize(docs[i]);
      ASSERT_EQ(got, ids[i].get<std::vector<int32_t>>()) << "document " << i;
      for (auto x : got) n_oov += (x == 0);
    }
    EXPECT_GT(n_oov, 0u);  // the fixtures do exercise unknown tokens
  }
}

TEST(Vocab, MaxVocab500Gives504) {
  const auto docs = load_docs();
  std::vector<std::vector<std::string>> build(docs.begin(), docs.begin() + 200);
  auto v = Vocab::build(build, VocabOptions{2, 500});
  EXPECT_EQ(v.size(), 504u);
  for (std::size_t i = 500; i < 504; ++i) EXPECT_EQ(v.token(i), "xxfake");
  for (std::size_t i = 0; i < 9; ++i) EXPECT_EQ(v.token(i), ulmfit::special_tokens()[i]);
}

TEST(Vocab, JsonRoundTripAndFile) {
  const auto docs = load_docs();
  auto v = Vocab::build(docs, VocabOptions{2, 60000});
  auto j = v.to_json();
  ASSERT_TRUE(j.is_array());
  auto v2 = Vocab::from_json(j);
  EXPECT_EQ(v, v2);
  // A loaded vocab maps xxfake (as fastai's Numericalize(vocab=...) does: last index).
  EXPECT_EQ(v2.id("xxfake"), (int32_t)v2.size() - 1);
  for (std::size_t i = 0; i < 50; ++i) EXPECT_EQ(v2.numericalize(docs[i]), v.numericalize(docs[i]));

  const auto p = tmp_path("vocab.json");
  v.save(p);
  auto v3 = Vocab::load(p);
  EXPECT_EQ(v3.itos(), v.itos());
  std::filesystem::remove(p);
}

TEST(Vocab, BadJsonIsReportedClearly) {
  EXPECT_THROW(Vocab::from_json(nlohmann::json::object()), std::invalid_argument);
  EXPECT_THROW(Vocab::from_json(nlohmann::json::array()), std::invalid_argument);
  try {
    Vocab::from_json(nlohmann::json::parse(R"(["xxunk", 3])"));
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("element 1"), std::string::npos) << e.what();
  }
  const auto p = tmp_path("bad.json");
  {
    std::ofstream f(p);
    f << "[\"xxunk\", ";
  }
  try {
    Vocab::load(p);
    FAIL() << "expected an error";
  } catch (const io::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
  std::filesystem::remove(p);
  EXPECT_THROW(Vocab::load(p), io::FormatError);  // missing file
}

TEST(Vocab, DecodeChecksRange) {
  auto v = Vocab::from_itos({"xxunk", "xxpad", "a"});
  EXPECT_EQ(v.decode({2, 0}), (std::vector<std::string>{"a", "xxunk"}));
  EXPECT_THROW(v.decode({3}), std::out_of_range);
  EXPECT_THROW(v.decode({-1}), std::out_of_range);
}
