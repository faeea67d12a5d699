// ctest-labels: golden
// tests/test_dataset_pickle.cpp — `train -d x.pkl`: the original's pandas DataFrame pickles
// (written by real pandas 1.5.3 and 2.2.3: tools/reference/gen_pandas_pickles.py) read through
// io::read_dataset with the safe unpickler, checked against what pandas itself wrote out
// (tests/fixtures/pandas/expected.json).
#include <unistd.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "io/dataset.h"
#include "io/errors.h"
#include "io/pandas_pickle.h"

namespace {

const std::string kDir = INSPIRE_SOURCE_DIR "/tests/fixtures/pandas/";

nlohmann::json expected() {
  std::ifstream in(kDir + "expected.json");
  return nlohmann::json::parse(in);
}

class PandasPickle : public ::testing::TestWithParam<int> {};

}  // namespace

TEST_P(PandasPickle, ReadsTheOriginalDatasetWithIntegerLabels) {
  std::string path = kDir + "original_pandas" + std::to_string(GetParam()) + ".pkl";
  std::vector<io::RecordError> errors;
  io::DatasetOptions opt;
  opt.require_label = true;
  auto recs = io::read_all(path, &errors, opt);
  auto want = expected()["original"];
  EXPECT_TRUE(errors.empty()) << (errors.empty() ? "" : errors[0].what());
  ASSERT_EQ(recs.size(), want.size());
  for (std::size_t i = 0; i < recs.size(); ++i) {
    EXPECT_EQ(recs[i].text, want[i]["text"].get<std::string>()) << i;
    EXPECT_EQ(recs[i].label, want[i]["label"].get<std::string>()) << i;
    EXPECT_EQ(recs[i].line, i + 1);
  }
}

TEST_P(PandasPickle, ReadsNamedColumnsAndReportsTheRowWithoutAbstract) {
  std::string path = kDir + "columns_pandas" + std::to_string(GetParam()) + ".pkl";
  std::vector<io::RecordError> errors;
  auto recs = io::read_all(path, &errors);
  auto want = expected()["columns"];
  std::size_t k = 0, bad = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (want[i].is_null()) {
      ++bad;
      ASSERT_EQ(errors.size(), 1u);
      EXPECT_EQ(errors[0].line, i + 1);
      EXPECT_NE(errors[0].message.find("missing text"), std::string::npos) << errors[0].what();
      continue;
    }
    ASSERT_LT(k, recs.size());
    EXPECT_EQ(recs[k].id, want[i]["id"].get<std::string>());
    EXPECT_TRUE(recs[k].id_is_number);
    EXPECT_EQ(recs[k].label, want[i]["label"].get<std::string>());
    EXPECT_EQ(recs[k].text, want[i]["text"].get<std::string>());
    EXPECT_EQ(recs[k].split, want[i]["split"].get<std::string>());
    ++k;
  }
  EXPECT_EQ(bad, 1u);
  EXPECT_EQ(recs.size(), k);
  // The raw frame: every column, in order, with the row count.
  auto df = io::read_pandas_pickle(path);
  EXPECT_EQ(df.names, (std::vector<std::string>{"id", "inspire_categories", "label", "title", "abstract", "is_valid", "text"}));
  EXPECT_EQ(df.rows, want.size());
  EXPECT_EQ(df.columns[df.find("is_valid")].type, io::DataFrameColumn::Type::Bool);
  EXPECT_EQ(df.columns[df.find("id")].type, io::DataFrameColumn::Type::Int);
}

TEST_P(PandasPickle, RefusesACategoricalColumnClearly) {
  std::string path = kDir + "categorical_pandas" + std::to_string(GetParam()) + ".pkl";
  try {
    io::read_all(path);
    FAIL() << "no error";
  } catch (const io::FormatError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find(path), std::string::npos) << m;
    EXPECT_NE(m.find("Categorical"), std::string::npos) << m;
  }
}

INSTANTIATE_TEST_SUITE_P(Pandas, PandasPickle, ::testing::Values(1, 2),
                         [](const auto& info) { return "pandas" + std::to_string(info.param); });

TEST(PandasPickleErrors, NotADataFrame) {
  auto dir = std::filesystem::temp_directory_path() / ("inspire_test_pkl_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  auto p = (dir / "list.pkl").string();
  // pickle.dumps([1, 2], protocol=2)
  const unsigned char bytes[] = {0x80, 0x02, ']', 'q', 0x00, '(', 'K', 0x01, 'K', 0x02, 'e', '.'};
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(bytes), sizeof bytes);
  try {
    io::read_all(p);
    FAIL() << "no error";
  } catch (const io::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("not a pandas.core.frame.DataFrame"), std::string::npos) << e.what();
  }
  // A truncated DataFrame pickle: an error naming the file, never a crash.
  std::ifstream in(kDir + "columns_pandas2.pkl", std::ios::binary);
  std::string full((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (std::size_t cut : {full.size() / 3, full.size() / 2, full.size() - 1}) {
    auto t = (dir / "cut.pkl").string();
    std::ofstream(t, std::ios::binary).write(full.data(), std::streamsize(cut));
    EXPECT_THROW(io::read_all(t), io::FormatError) << cut;
  }
  std::filesystem::remove_all(dir);
}

TEST(PandasPickleErrors, CorruptedBytesGiveErrorsNotCrashes) {
  auto dir = std::filesystem::temp_directory_path() / ("inspire_test_pklfuzz_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ifstream in(kDir + "columns_pandas1.pkl", std::ios::binary);
  const std::string full((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::uint64_t state = 42;
  auto next = [&] { return state = state * 6364136223846793005ULL + 1442695040888963407ULL, state >> 33; };
  int errors = 0, read = 0;
  for (int trial = 0; trial < 300; ++trial) {
    std::string b = full;
    for (int k = 0, n = 1 + int(next() % 4); k < n; ++k) b[next() % b.size()] = char(next() & 0xff);
    auto t = (dir / "x.pkl").string();
    std::ofstream(t, std::ios::binary).write(b.data(), std::streamsize(b.size()));
    try {
      io::read_all(t);
      ++read;
    } catch (const io::FormatError&) {
      ++errors;
    }
  }
  EXPECT_EQ(errors + read, 300);
  EXPECT_GT(errors, 0);
  std::filesystem::remove_all(dir);
}
