// ctest-labels: data
// tests/test_dataset.cpp — io/dataset.h: JSON Lines / CSV readers, gzip, per-line errors.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "io/dataset.h"
#include "io/errors.h"
#include "ulmfit/labels.h"

using io::Record;
using io::RecordError;

namespace {

const std::string kData = INSPIRE_SOURCE_DIR "/../shared/data/";

std::string tmp(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("inspire_test_dataset_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

std::string write(const std::string& name, const std::string& content) {
  auto p = tmp(name);
  std::ofstream(p, std::ios::binary) << content;
  return p;
}

std::string write_gz(const std::string& name, const std::string& content) {
  auto p = tmp(name);
  gzFile g = gzopen(p.c_str(), "wb");
  EXPECT_NE(g, nullptr);
  EXPECT_EQ(gzwrite(g, content.data(), (unsigned)content.size()), (int)content.size());
  gzclose(g);
  return p;
}

bool contains(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

}  // namespace

TEST(Utf8, FindsFirstInvalidByte) {
  EXPECT_FALSE(io::find_invalid_utf8("plain ascii"));
  EXPECT_FALSE(io::find_invalid_utf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));
  EXPECT_EQ(io::find_invalid_utf8("ab\xC3"), 2u);                 // truncated
  EXPECT_EQ(io::find_invalid_utf8("a\x80"), 1u);                  // stray continuation
  EXPECT_EQ(io::find_invalid_utf8("\xC0\xAF"), 0u);               // overlong
  EXPECT_EQ(io::find_invalid_utf8("x\xE0\x80\xAF"), 1u);          // overlong 3-byte
  EXPECT_EQ(io::find_invalid_utf8("\xED\xA0\x80"), 0u);           // surrogate
  EXPECT_EQ(io::find_invalid_utf8("\xF4\x90\x80\x80"), 0u);       // > U+10FFFF
  EXPECT_EQ(io::find_invalid_utf8("ok \xFF"), 3u);
}

TEST(JsonLines, ReadsTheInspireLabeledSet) {
  std::map<std::string, int> labels, splits;
  std::size_t n_joined = 0, n_text = 0;
  std::vector<RecordError> errs;
  auto st = io::read_dataset(
      kData + "labeled/inspire_labeled.jsonl",
      [&](Record& r) {
        labels[r.label]++;
        splits[r.split]++;
        ASSERT_EQ(ulmfit::kLabels[r.label_index], r.label);
        if (r.title.empty()) {
          // the 50 oldest fixture rows: title inside the abstract, text given
          EXPECT_EQ(r.text, r.abstract);
          ++n_text;
        } else {
          EXPECT_EQ(r.text, ulmfit::join_title_abstract(r.title, r.abstract));
          ++n_joined;
        }
      },
      [&](const RecordError& e) { errs.push_back(e); });
  EXPECT_TRUE(errs.empty()) << errs[0].what();
  EXPECT_EQ(st.records, 4862u);
  EXPECT_EQ(st.lines, 4862u);
  EXPECT_EQ(labels["core"], 3540);
  EXPECT_EQ(labels["non_core"], 1294);
  EXPECT_EQ(labels["rejected"], 28);
  EXPECT_EQ(splits["fixture"], 118);
  EXPECT_EQ(n_text, 50u);
  EXPECT_EQ(n_joined, 4812u);
}

// The unlabeled HEP corpus marks records whose title is a labeled paper's
// (title_matches_labeled_split); training leaves out the valid/test ones (tools/cmd_train.cpp).
TEST(JsonLines, TitleMatchesOfLabeledPapersAreRead) {
  std::map<std::string, int> matches;
  std::vector<RecordError> errs;
  auto st = io::read_dataset(
      kData + "unlabeled/hep_abstracts_unlabeled.jsonl",
      [&](Record& r) {
        EXPECT_TRUE(r.split.empty());
        if (!r.title_match_split.empty()) matches[r.title_match_split]++;
      },
      [&](const RecordError& e) { errs.push_back(e); });
  EXPECT_EQ(st.records, 14127u);  // 14,132 less the 5 test matches
  EXPECT_TRUE(errs.empty());
  EXPECT_EQ(matches["train"], 54);
  EXPECT_EQ(matches["valid"], 6);
  EXPECT_EQ(matches.size(), 2u);  // the test matches were removed from the file
  auto p = write("match.jsonl", R"({"text": "x", "title_matches_labeled_split": 3})" "\n");
  std::vector<RecordError> bad;
  EXPECT_TRUE(io::read_all(p, &bad).empty());
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_TRUE(contains(bad[0].message, "'title_matches_labeled_split' must be a string")) << bad[0].message;
  std::filesystem::remove(p);
}

TEST(JsonLines, GzipIsReadTransparently) {
  std::string content;
  for (int i = 0; i < 3000; ++i)
    content += R"({"id": )" + std::to_string(i) + R"(, "title": "T)" + std::to_string(i) +
               R"(", "abstract": "A", "label": )" + std::to_string(i % 3) + "}\n";
  auto plain = write("a.jsonl", content);
  auto gz = write_gz("a.jsonl.gz", content);
  std::vector<RecordError> e1, e2;
  auto r1 = io::read_all(plain, &e1);
  auto r2 = io::read_all(gz, &e2);
  ASSERT_EQ(r1.size(), 3000u);
  ASSERT_EQ(r2.size(), 3000u);
  EXPECT_TRUE(e1.empty() && e2.empty());
  for (std::size_t i = 0; i < r1.size(); ++i) {
    EXPECT_EQ(r1[i].text, r2[i].text);
    EXPECT_EQ(r2[i].id, std::to_string(i));
    EXPECT_EQ(r2[i].line, i + 1);
    EXPECT_EQ(r2[i].label_index, (int)(i % 3));
    EXPECT_EQ(r2[i].text, "T" + std::to_string(i) + " <ENDTITLE> A");
  }
  // A truncated gzip file is an error naming the file, not silent data loss.
  std::ifstream f(gz, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), {});
  auto cut = write("cut.jsonl.gz", bytes.substr(0, bytes.size() / 2));
  try {
    io::read_all(cut);
    FAIL() << "expected FormatError";
  } catch (const io::FormatError& e) {
    EXPECT_TRUE(contains(e.what(), cut)) << e.what();
  }
  for (auto& p : {plain, gz, cut}) std::filesystem::remove(p);
}

TEST(JsonLines, RealGzipCorpusWithOtherLabels) {
  io::DatasetOptions opt;
  opt.labels = {"neg", "pos"};
  opt.require_label = true;
  std::map<int, int> counts;
  std::size_t n_err = 0;
  auto st = io::read_dataset(
      kData + "general_english/imdb/imdb_test.jsonl.gz", [&](Record& r) { counts[r.label_index]++; },
      [&](const RecordError&) { ++n_err; }, opt);
  EXPECT_EQ(st.records, 25000u);
  EXPECT_EQ(n_err, 0u);
  EXPECT_EQ(counts[0], 12500);
  EXPECT_EQ(counts[1], 12500);
}

TEST(JsonLines, BadLinesAreReportedWithLineNumbersAndReadingGoesOn) {
  std::string s;
  s += R"({"title": "Good", "abstract": "one", "label": "core", "split": "train"})" "\n";  // 1
  s += R"({"title": "Bad" "abstract": "x"})" "\n";                                        // 2 malformed
  s += R"({"title": "No abstract"})" "\n";                                                // 3 missing
  s += "{\"text\": \"bad \xC3\x28 utf8\"}\n";                                             // 4 utf-8
  s += R"({"text": "x", "label": "maybe"})" "\n";                                         // 5 label
  s += "\n";                                                                              // 6 blank
  s += R"(["not", "an", "object"])" "\n";                                                 // 7
  s += R"({"text": 42})" "\n";                                                            // 8 type
  s += R"({"text": "lone \ud800 surrogate"})" "\n";                                       // 9
  s += R"({"text": "x", "label": 7})" "\n";                                               // 10
  s += R"({"id": "p1", "text": "Good two", "is_valid": true, "label": 0})";                // 11, no \n
  auto p = write("bad.jsonl", s);
  std::vector<RecordError> errs;
  auto recs = io::read_all(p, &errs);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].line, 1u);
  EXPECT_EQ(recs[0].text, "Good <ENDTITLE> one");
  EXPECT_EQ(recs[0].split, "train");
  EXPECT_EQ(recs[1].line, 11u);
  EXPECT_EQ(recs[1].id, "p1");
  EXPECT_EQ(recs[1].text, "Good two");
  EXPECT_EQ(recs[1].split, "valid");
  EXPECT_EQ(recs[1].label, "rejected");
  ASSERT_EQ(errs.size(), 8u);
  std::vector<std::size_t> lines;
  for (auto& e : errs) lines.push_back(e.line);
  EXPECT_EQ(lines, (std::vector<std::size_t>{2, 3, 4, 5, 7, 8, 9, 10}));
  EXPECT_TRUE(contains(errs[0].message, "malformed JSON")) << errs[0].message;
  EXPECT_TRUE(contains(errs[1].message, "'abstract'")) << errs[1].message;
  EXPECT_TRUE(contains(errs[2].message, "invalid UTF-8 at byte")) << errs[2].message;
  EXPECT_TRUE(contains(errs[3].message, "unknown label 'maybe'")) << errs[3].message;
  EXPECT_TRUE(contains(errs[4].message, "JSON object")) << errs[4].message;
  EXPECT_TRUE(contains(errs[5].message, "'text' must be a string")) << errs[5].message;
  EXPECT_TRUE(contains(errs[7].message, "out of range")) << errs[7].message;
  EXPECT_EQ(errs[0].what(), p + ":2: " + errs[0].message);
  std::filesystem::remove(p);
}

TEST(JsonLines, LongLinesAndRequiredLabels) {
  io::DatasetOptions opt;
  opt.max_record_bytes = 100;
  opt.require_label = true;
  std::string s = R"({"text": ")" + std::string(500, 'a') + "\"}\n" +
                  R"({"text": "short", "label": "core"})" "\n" + R"({"text": "nolabel"})" "\n";
  auto p = write("long.jsonl", s);
  std::vector<RecordError> errs;
  auto recs = io::read_all(p, &errs, opt);
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].line, 2u);
  ASSERT_EQ(errs.size(), 2u);
  EXPECT_EQ(errs[0].line, 1u);
  EXPECT_TRUE(contains(errs[0].message, "longer than 100 bytes"));
  EXPECT_EQ(errs[1].line, 3u);
  EXPECT_TRUE(contains(errs[1].message, "'label'"));
  std::filesystem::remove(p);
}

TEST(Files, MissingFileIsAFormatError) {
  try {
    io::read_all("/nonexistent/dir/x.jsonl");
    FAIL();
  } catch (const io::FormatError& e) {
    EXPECT_TRUE(contains(e.what(), "/nonexistent/dir/x.jsonl")) << e.what();
  }
}

TEST(Csv, Rfc4180Quoting) {
  std::string s =
      "\xEF\xBB\xBFid,title,abstract,label,extra\r\n"                 // 1 (BOM, CRLF)
      "1,Plain,Simple abstract,core,x\r\n"                            // 2
      "2,\"Comma, inside\",\"He said \"\"hi\"\"\",non_core,\r\n"      // 3
      "3,Multi,\"line one\nline two\nline three\",2,\n"               // 4-6
      "\n"                                                            // 7 blank
      "4,Too,few\n"                                                   // 8
      "5,\"bad\"x,abs,core,\n"                                        // 9
      "6,Utf,\"bad \xC3\x28\",core,\n"                                // 10
      "7,Last,\"never closed,core,\nmore\n";                          // 11-12
  auto p = write("a.csv", s);
  std::vector<RecordError> errs;
  auto recs = io::read_all(p, &errs);
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[0].id, "1");
  EXPECT_EQ(recs[0].line, 2u);
  EXPECT_EQ(recs[0].text, "Plain <ENDTITLE> Simple abstract");
  EXPECT_EQ(recs[0].label_index, 2);
  EXPECT_EQ(recs[1].title, "Comma, inside");
  EXPECT_EQ(recs[1].abstract, "He said \"hi\"");
  EXPECT_EQ(recs[1].label, "non_core");
  EXPECT_EQ(recs[2].line, 4u);
  EXPECT_EQ(recs[2].abstract, "line one\nline two\nline three");
  EXPECT_EQ(recs[2].label, "core");  // integer class index 2
  ASSERT_EQ(errs.size(), 4u);
  EXPECT_EQ(errs[0].line, 8u);
  EXPECT_TRUE(contains(errs[0].message, "expected 5 fields")) << errs[0].message;
  EXPECT_EQ(errs[1].line, 9u);
  EXPECT_TRUE(contains(errs[1].message, "closing quote")) << errs[1].message;
  EXPECT_EQ(errs[2].line, 10u);
  EXPECT_TRUE(contains(errs[2].message, "invalid UTF-8 in field 'abstract'")) << errs[2].message;
  EXPECT_EQ(errs[3].line, 11u);
  EXPECT_TRUE(contains(errs[3].message, "unterminated")) << errs[3].message;
  std::filesystem::remove(p);
}

TEST(Csv, TextColumnIsValidAndGzip) {
  std::string s = "text,label,is_valid\n\"a, b\",core,True\nc,rejected,False\n";
  auto p = write_gz("b.csv.gz", s);
  auto recs = io::read_all(p);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0].text, "a, b");
  EXPECT_EQ(recs[0].split, "valid");
  EXPECT_EQ(recs[1].split, "train");
  EXPECT_EQ(recs[1].label_index, 0);
  std::filesystem::remove(p);
}

TEST(Csv, HeaderProblemsAreFileErrors) {
  auto p1 = write("h1.csv", "title,label\nx,core\n");
  EXPECT_THROW(io::read_all(p1), io::FormatError);
  auto p2 = write("h2.csv", "");
  EXPECT_THROW(io::read_all(p2), io::FormatError);
  auto p3 = write("h3.csv", "text,text\na,b\n");
  EXPECT_THROW(io::read_all(p3), io::FormatError);
  for (auto& p : {p1, p2, p3}) std::filesystem::remove(p);
}

TEST(Robustness, CorruptedInputsNeverCrash) {
  // Byte flips, insertions and truncations of valid JSON Lines / CSV / gzip files: every
  // outcome must be records, per-line errors, or an io::FormatError — never a crash or hang.
  const std::string jsonl =
      "{\"id\": 1, \"title\": \"A \\\"q\\\" \\u00e9\", \"abstract\": \"x\", \"label\": \"core\"}\n"
      "{\"text\": \"caf\xC3\xA9\", \"label\": 1, \"is_valid\": true}\n";
  const std::string csv = "id,title,abstract,label\n1,\"a,b\",\"c\n\"\"d\"\"\",core\n2,e,f,0\n";
  std::uint64_t s = 12345;
  auto rnd = [&]() { return s = s * 6364136223846793005ULL + 1442695040888963407ULL, s >> 33; };
  const char specials[] = {'"', ',', '\n', '\r', '\\', '{', '}', '\0', '\xC3', '\xFF', ':'};
  std::size_t n_records = 0, n_errors = 0, n_format = 0;
  for (int it = 0; it < 400; ++it) {
    std::string t = (it % 2) ? csv : jsonl;
    const int n_mut = 1 + (int)(rnd() % 4);
    for (int m = 0; m < n_mut; ++m) {
      const std::size_t pos = rnd() % (t.size() + 1);
      switch (rnd() % 3) {
        case 0: if (pos < t.size()) t[pos] = specials[rnd() % sizeof specials]; break;
        case 1: t.insert(pos, 1, specials[rnd() % sizeof specials]); break;
        default: t.resize(pos); break;
      }
    }
    const bool gz = (it % 5) == 0;
    const std::string name = std::string("fuzz") + ((it % 2) ? ".csv" : ".jsonl") + (gz ? ".gz" : "");
    std::string p;
    if (gz) {
      // a truncated gzip stream on top of the corrupted text, half of the time
      auto full = write_gz(name, t);
      std::ifstream f(full, std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(f)), {});
      if (it % 10 == 0) bytes.resize(bytes.size() / 2);
      p = write(name, bytes);
    } else {
      p = write(name, t);
    }
    try {
      std::vector<RecordError> errs;
      auto recs = io::read_all(p, &errs);
      n_records += recs.size();
      n_errors += errs.size();
      for (auto& r : recs) EXPECT_FALSE(io::find_invalid_utf8(r.text)) << r.text;
      for (auto& e : errs) EXPECT_GE(e.line, 1u);
    } catch (const io::FormatError&) {
      ++n_format;
    }
    std::filesystem::remove(p);
  }
  EXPECT_GT(n_records, 0u);
  EXPECT_GT(n_errors, 0u);
}
