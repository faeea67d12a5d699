// ctest-labels: golden
// Tests for io/torch_file.h (and io/zip.h through it) on real files written by torch 1.13 and
// fastai 2.7.19 (tools/reference/gen_torch_fixtures.py → tests/fixtures/torch/).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "io/errors.h"
#include "io/mmap_file.h"
#include "io/torch_file.h"
#include "io/zip.h"

namespace fs = std::filesystem;
using io::torch::DType;
using io::torch::StateDict;
using io::torch::Tensor;

namespace {

const std::string kDir = INSPIRE_SOURCE_DIR "/tests/fixtures/torch/";
const char* kMarker = "/tmp/inspire_pickle_hostile_marker";

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open " + path);
  return nlohmann::json::parse(f);
}

std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

fs::path tmp_dir() { return fs::temp_directory_path() / ("inspire_test_torch_" + std::to_string(::getpid())); }

// Removes the scratch directory when the test program exits.
struct TmpCleanup {
  ~TmpCleanup() {
    std::error_code ec;
    fs::remove_all(tmp_dir(), ec);
  }
} tmp_cleanup;

std::string tmp_path(const std::string& name) {
  fs::path d = tmp_dir();
  fs::create_directories(d);
  return (d / name).string();
}

void write_bytes(const std::string& path, const std::vector<std::uint8_t>& b, std::size_t n) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(n));
}

// Checks every entry of sd against the JSON dump (names in order, dtype, shape, values bit-exact).
void expect_matches(const StateDict& sd, const nlohmann::json& ref) {
  const auto& ts = ref.at("tensors");
  ASSERT_EQ(sd.size(), ts.size());
  for (std::size_t k = 0; k < ts.size(); ++k) {
    const auto& r = ts[k];
    const auto& [name, t] = sd.entries[k];
    SCOPED_TRACE(name);
    EXPECT_EQ(name, r.at("name").get<std::string>());
    EXPECT_EQ(io::torch::dtype_name(t.dtype), r.at("dtype").get<std::string>());
    EXPECT_EQ(t.shape, r.at("shape").get<std::vector<std::int64_t>>());
    EXPECT_EQ(t.stride, r.at("stride").get<std::vector<std::int64_t>>());
    const auto& vals = r.at("values");
    ASSERT_EQ(static_cast<std::size_t>(t.numel()), vals.size());
    bool fl = t.dtype == DType::Float32 || t.dtype == DType::Float64 || t.dtype == DType::Float16 ||
              t.dtype == DType::BFloat16;
    if (fl) {
      auto d = t.to_float64();
      auto f = t.to_float32();
      std::size_t bad = 0;
      for (std::size_t i = 0; i < vals.size(); ++i) {
        double want = vals[i].get<double>();
        if (std::memcmp(&d[i], &want, 8) != 0) ++bad;
        float wf = static_cast<float>(want);
        if (std::memcmp(&f[i], &wf, 4) != 0) ++bad;
      }
      EXPECT_EQ(bad, 0u);
    } else {
      auto v = t.to_int64();
      for (std::size_t i = 0; i < vals.size(); ++i) EXPECT_EQ(v[i], vals[i].get<std::int64_t>());
    }
  }
}

struct Case {
  const char* file;
  const char* values;
};

}  // namespace

TEST(TorchFile, EveryFixtureTensorIsBitExact) {
  const Case cases[] = {
      {"lm_zip.pt", "lm.values.json"},         {"lm_legacy.pt", "lm.values.json"},
      {"lm_wrapped.pth", "lm.values.json"},    {"lm_v1_legacy.pt", "lm_v1.values.json"},
      {"encoder.h5", "encoder.values.json"},   {"zoo_zip.pt", "zoo.values.json"},
      {"zoo_legacy.pt", "zoo.values.json"},    {"classifier.h5", "classifier.values.json"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.file);
    StateDict sd = io::torch::load_state_dict(kDir + c.file);
    expect_matches(sd, read_json(kDir + c.values));
  }
}

TEST(TorchFile, DetectsContainerAndVersion) {
  auto z = io::torch::open_torch_file(kDir + "lm_zip.pt");
  EXPECT_FALSE(z.legacy);
  EXPECT_EQ(z.version, 3);
  auto l = io::torch::open_torch_file(kDir + "lm_legacy.pt");
  EXPECT_TRUE(l.legacy);
  EXPECT_EQ(l.version, 1001);
  // The archive folder is named after the file (not "archive/"): the prefix comes from the data.
  io::ZipReader zr(kDir + "encoder.h5");
  EXPECT_NE(zr.find("encoder/data.pkl"), nullptr);
}

TEST(TorchFile, TiedWeightsShareOneStorage) {
  for (const char* f : {"lm_zip.pt", "lm_legacy.pt"}) {
    SCOPED_TRACE(f);
    StateDict sd = io::torch::load_state_dict(kDir + f);
    const Tensor& a = sd.at("0.encoder.weight");
    const Tensor& b = sd.at("0.encoder_dp.emb.weight");
    const Tensor& c = sd.at("1.decoder.weight");
    EXPECT_EQ(a.storage.get(), b.storage.get());
    EXPECT_EQ(a.storage.get(), c.storage.get());
    EXPECT_EQ(a.shape, (std::vector<std::int64_t>{40, 8}));
  }
}

TEST(TorchFile, ViewsStridesAndOffsets) {
  for (const char* f : {"zoo_zip.pt", "zoo_legacy.pt"}) {
    SCOPED_TRACE(f);
    StateDict sd = io::torch::load_state_dict(kDir + f);
    const Tensor& base = sd.at("base");
    const Tensor& tr = sd.at("transposed");
    EXPECT_EQ(base.storage.get(), tr.storage.get());
    EXPECT_TRUE(base.is_contiguous());
    EXPECT_FALSE(tr.is_contiguous());
    EXPECT_EQ(tr.stride, (std::vector<std::int64_t>{1, 10}));
    EXPECT_EQ(sd.at("offset_vec").offset, 7);
    EXPECT_EQ(sd.at("sliced").offset, 23);
    EXPECT_EQ(sd.at("expanded").stride, (std::vector<std::int64_t>{1, 0}));
    EXPECT_EQ(sd.at("scalar").ndim(), 0);
    EXPECT_EQ(sd.at("scalar").to_float32(), std::vector<float>{3.25f});
    EXPECT_EQ(sd.at("num_batches_tracked").to_int64(), std::vector<std::int64_t>{7});
    EXPECT_EQ(sd.at("empty").numel(), 0);
    EXPECT_EQ(sd.at("half").dtype, DType::Float16);
    EXPECT_EQ(sd.at("bf16").dtype, DType::BFloat16);
    EXPECT_THROW(sd.at("half").to_int64(), std::invalid_argument);
  }
}

TEST(TorchFile, MissingKeyErrorNamesTheFile) {
  StateDict sd = io::torch::load_state_dict(kDir + "encoder.h5");
  try {
    sd.at("0.encoder.weight");
    FAIL() << "expected an error";
  } catch (const io::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("encoder.h5"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'0.encoder.weight'"), std::string::npos) << e.what();
  }
  EXPECT_EQ(sd.names().front(), "encoder.weight");
}

TEST(TorchFile, ItosAllProtocols) {
  auto want = read_json(kDir + "itos.json").get<std::vector<std::string>>();
  ASSERT_EQ(want.size() % 8, 0u);
  for (const char* f : {"itos_p0.pkl", "itos_p2.pkl", "itos_p4.pkl", "itos_pd.pkl"}) {
    SCOPED_TRACE(f);
    EXPECT_EQ(io::torch::load_itos(kDir + f), want);
  }
  EXPECT_EQ(want.back(), "xxfake");
}

TEST(TorchFile, WholeLearner) {
  auto lf = io::torch::load_learner(kDir + "classifier.h5");
  EXPECT_EQ(lf.learner_class, "fastai.text.learner.TextLearner");
  expect_matches(lf.model, read_json(kDir + "classifier.values.json"));
  EXPECT_EQ(lf.vocab, read_json(kDir + "itos.json").get<std::vector<std::string>>());
  auto pred = read_json(kDir + "classifier.predictions.json");
  EXPECT_EQ(lf.classes, pred.at("classes").get<std::vector<std::string>>());
  EXPECT_EQ(lf.vocab.size(), pred.at("vocab_len").get<std::size_t>());
  // The classifier keys of spec §7.3 (tiny dims).
  EXPECT_EQ(lf.model.at("0.module.encoder.weight").storage.get(),
            lf.model.at("0.module.encoder_dp.emb.weight").storage.get());
  EXPECT_TRUE(lf.model.contains("1.layers.0.0.num_batches_tracked"));
  EXPECT_FALSE(lf.model.contains("0.module.rnns.0.module.weight_hh_l0"));
}

TEST(TorchFile, HostileCheckpointIsRefusedAndNothingRuns) {
  std::remove(kMarker);
  try {
    io::torch::load_state_dict(kDir + "hostile_zip.pt");
    FAIL() << "expected an error";
  } catch (const io::FormatError& e) {
    std::string w = e.what();
    EXPECT_NE(w.find("refusing to call posix.system"), std::string::npos) << w;
    EXPECT_NE(w.find("hostile_zip.pt"), std::string::npos) << w;
    EXPECT_NE(w.find("byte offset"), std::string::npos) << w;
  }
  EXPECT_FALSE(fs::exists(kMarker));
}

TEST(TorchFile, NotACheckpoint) {
  std::string p = tmp_path("not_a_checkpoint.pt");
  std::vector<std::uint8_t> text{'h', 'e', 'l', 'l', 'o', '\n'};
  write_bytes(p, text, text.size());
  EXPECT_THROW(io::torch::load_state_dict(p), io::FormatError);
  std::vector<std::uint8_t> tar(1024, 0);
  std::memcpy(tar.data() + 257, "ustar", 5);
  write_bytes(p, tar, tar.size());
  try {
    io::torch::load_state_dict(p);
    FAIL();
  } catch (const io::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("tar-format"), std::string::npos) << e.what();
  }
  write_bytes(p, tar, 0);
  EXPECT_THROW(io::torch::load_state_dict(p), io::FormatError);
  EXPECT_THROW(io::torch::load_state_dict(kDir + "does_not_exist.pt"), io::FormatError);
  // A pickle of a plain list is not a state dict.
  try {
    io::torch::load_state_dict(kDir + "itos_p2.pkl");
    FAIL();
  } catch (const io::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("itos_p2.pkl"), std::string::npos) << e.what();
  }
}

// Cut every fixture at many offsets: always a FormatError naming the file, never a crash.
TEST(TorchFile, TruncatedFilesGiveClearErrors) {
  for (const char* f : {"lm_zip.pt", "lm_legacy.pt", "zoo_legacy.pt", "classifier.h5"}) {
    SCOPED_TRACE(f);
    auto bytes = read_bytes(kDir + f);
    std::string p = tmp_path(std::string("cut_") + f);
    std::vector<std::size_t> cuts;
    for (std::size_t k = 0; k < 97; ++k) cuts.push_back(bytes.size() * k / 97);
    for (std::size_t k = 1; k <= 30; ++k) cuts.push_back(bytes.size() - k);
    for (std::size_t cut : cuts) {
      write_bytes(p, bytes, cut);
      try {
        if (std::string(f) == "classifier.h5") io::torch::load_learner(p);
        else io::torch::load_state_dict(p);
        ADD_FAILURE() << "cut at " << cut << " loaded without error";
      } catch (const io::FormatError& e) {
        EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
      }
    }
  }
}

// Flip single bytes: zip files either fail with a FormatError or load the SAME values
// (bytes outside data/CRC coverage, e.g. timestamps or padding); legacy files have no checksum,
// so flips inside raw tensor bytes may change values, but never crash.
TEST(TorchFile, FlippedBytesNeverCrashAndZipNeverSilentlyChanges) {
  for (const char* f : {"lm_zip.pt", "lm_legacy.pt"}) {
    SCOPED_TRACE(f);
    bool zip = std::string(f).find("zip") != std::string::npos;
    auto bytes = read_bytes(kDir + f);
    auto ref = io::torch::load_state_dict(kDir + f);
    std::string p = tmp_path(std::string("flip_") + f);
    int errors = 0, same = 0;
    for (std::size_t k = 0; k < 400; ++k) {
      std::size_t at = (k * 7919u) % bytes.size();
      auto b = bytes;
      b[at] ^= static_cast<std::uint8_t>(0x5a + k);
      write_bytes(p, b, b.size());
      try {
        auto sd = io::torch::load_state_dict(p);
        if (zip) {
          ASSERT_EQ(sd.size(), ref.size()) << "flip at " << at;
          for (std::size_t e = 0; e < sd.size(); ++e) {
            EXPECT_EQ(sd.entries[e].first, ref.entries[e].first) << "flip at " << at;
            EXPECT_EQ(sd.entries[e].second.to_float64(), ref.entries[e].second.to_float64())
                << "flip at " << at << " changed " << sd.entries[e].first;
          }
        }
        ++same;
      } catch (const io::FormatError& e) {
        EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
        ++errors;
      }
    }
    EXPECT_GT(errors, 0);
  }
}

TEST(MmapFile, MapsAndMoves) {
  io::MmapFile a(kDir + "itos_p2.pkl");
  EXPECT_EQ(a.size(), fs::file_size(kDir + "itos_p2.pkl"));
  EXPECT_EQ(a.data()[0], 0x80);
  io::MmapFile b = std::move(a);
  EXPECT_EQ(a.size(), 0u);
  EXPECT_EQ(b.data()[0], 0x80);
  EXPECT_THROW(io::MmapFile{kDir + "nope"}, io::FormatError);
  EXPECT_THROW(io::MmapFile{kDir}, io::FormatError);  // a directory
}
