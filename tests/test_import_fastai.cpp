// ctest-labels: cli golden
// tests/test_import_fastai.cpp — ulmfit/fastai_import.h and the import-fastai / inspect commands.
//
// Fixtures: tests/fixtures/torch/ (real fastai 2.7 files written by
// tools/reference/gen_torch_fixtures.py) and tests/fixtures/bundle/ (fastai's own match_embeds,
// written by tools/reference/gen_match_embeds_golden.py).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/bundle.h"
#include "io/errors.h"
#include "io/torch_file.h"
#include "ulmfit/fastai_import.h"
#include "ulmfit/labels.h"

namespace {

using nlohmann::json;
const std::string kTorch = INSPIRE_SOURCE_DIR "/tests/fixtures/torch/";
const std::string kBundleFx = INSPIRE_SOURCE_DIR "/tests/fixtures/bundle/";
const std::string kBin = INSPIRE_BINARY_DIR "/inspire-classifier";

std::string tmp_path(const std::string& name) {
  return ::testing::TempDir() + "imp_" + std::to_string(::getpid()) + "_" + name;
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return json::parse(in);
}

io::Bundle to_bundle(const ulmfit::ImportedModel& m, std::string* keep) {
  *keep = io::serialize_bundle(m.contents("test"));
  return io::Bundle::from_memory(keep->data(), keep->size(), "imported", false);
}

// Every float tensor of `values.json` (except `skip`) must be in the bundle bit-exactly.
void expect_matches_values(const io::Bundle& b, const std::string& values_json,
                           const std::vector<std::string>& skip = {}) {
  json v = read_json(values_json);
  int checked = 0;
  for (auto& t : v["tensors"]) {
    std::string name = t["name"];
    if (std::find(skip.begin(), skip.end(), name) != skip.end()) continue;
    if (t["dtype"] == "int64") {
      const auto& info = b.file().info(name);
      EXPECT_EQ(*static_cast<const std::int64_t*>(b.file().data(info)),
                t["values"][0].get<std::int64_t>())
          << name;
      ++checked;
      continue;
    }
    ASSERT_TRUE(b.has(name)) << name;
    auto view = b.tensor(name);
    std::vector<std::int64_t> shape(view.shape.d.begin(), view.shape.d.begin() + view.ndim());
    EXPECT_EQ(shape, t["shape"].get<std::vector<std::int64_t>>()) << name;
    auto vals = t["values"];
    ASSERT_EQ((std::size_t)view.numel(), vals.size()) << name;
    for (std::size_t i = 0; i < vals.size(); ++i)
      ASSERT_EQ(view[i], static_cast<float>(vals[i].get<double>())) << name << "[" << i << "]";
    ++checked;
  }
  EXPECT_GE(checked, 14);
}

std::vector<std::string> itos() { return io::torch::load_itos(kTorch + "itos_p4.pkl"); }

// ---- pieces -----------------------------------------------------------------------------------

TEST(FastaiImport, RawKeysToDropLikeCleanRawKeys) {
  std::vector<std::string> names = {
      "0.encoder.weight", "0.rnns.0.weight_hh_l0_raw", "0.rnns.0.module.weight_ih_l0",
      "0.rnns.0.module.weight_hh_l0", "0.rnns.0.module.bias_ih_l0",
      "0.module.rnns.1.module.weight_hh_l0",  // last 'module' removed -> 0.module.rnns.1.weight_hh_l0_raw
      "0.module.rnns.1.weight_hh_l0_raw", "1.decoder.weight"};
  EXPECT_EQ(ulmfit::raw_keys_to_drop(names),
            (std::vector<std::string>{"0.rnns.0.module.weight_hh_l0",
                                      "0.module.rnns.1.module.weight_hh_l0"}));
  EXPECT_TRUE(ulmfit::raw_keys_to_drop({"0.rnns.0.module.weight_hh_l0"}).empty());
}

TEST(FastaiImport, MatchEmbedsSmall) {
  // old vocab: a b c b  (b twice: the LAST index wins, as fastai's dict comprehension)
  std::vector<float> emb = {1, 2, 3, 4, 5, 6, 7, 8};  // [4, 2]
  std::vector<float> bias = {0.5f, 1.5f, 2.5f, 3.5f};
  auto m = ulmfit::match_embeds(emb.data(), 4, 2, bias.data(), {"a", "b", "c", "b"},
                                {"c", "zz", "b", "a"});
  EXPECT_EQ(m.matched, 3);
  EXPECT_EQ(m.emb, (std::vector<float>{5, 6, 4, 5, 7, 8, 1, 2}));
  EXPECT_EQ(m.bias, (std::vector<float>{2.5f, 2.0f, 3.5f, 0.5f}));
  auto nb = ulmfit::match_embeds(emb.data(), 4, 2, nullptr, {"a", "b", "c", "b"}, {"q"});
  EXPECT_TRUE(nb.bias.empty());
  EXPECT_EQ(nb.emb, (std::vector<float>{4, 5}));
  EXPECT_THROW(ulmfit::match_embeds(emb.data(), 4, 2, nullptr, {"a"}, {"a"}), std::invalid_argument);
}

// ---- whole files --------------------------------------------------------------------------------

void expect_tiny_lm_config(const io::ModelConfig& c, const std::string& kind) {
  EXPECT_EQ(c.kind, kind);
  EXPECT_EQ(c.vocab_size, 40);
  EXPECT_EQ(c.emb_sz, 8);
  EXPECT_EQ(c.n_hid, 12);
  EXPECT_EQ(c.n_layers, 3);
  EXPECT_EQ(c.pad_idx, 1);
}

TEST(FastaiImport, LmZipLegacyAndWrappedAreBitExact) {
  for (auto file : {"lm_zip.pt", "lm_legacy.pt", "lm_wrapped.pth"}) {
    SCOPED_TRACE(file);
    auto m = ulmfit::import_weights(kTorch + file, kTorch + "itos_p4.pkl");
    expect_tiny_lm_config(m.config, "lm");
    EXPECT_TRUE(m.config.tie_weights);
    EXPECT_TRUE(m.config.out_bias);
    EXPECT_EQ(m.vocab, itos());
    std::string keep;
    io::Bundle b = to_bundle(m, &keep);
    EXPECT_EQ(b.file().tensors().size(), 14u);  // 16 keys, tied embedding stored once
    expect_matches_values(b, kTorch + "lm.values.json");
  }
}

TEST(FastaiImport, FastaiV1FileDropsWorkingCopies) {
  auto m = ulmfit::import_weights(kTorch + "lm_v1_legacy.pt", kTorch + "itos_p2.pkl");
  expect_tiny_lm_config(m.config, "lm");
  ASSERT_FALSE(m.notes.empty());
  EXPECT_NE(m.notes[0].find("0.rnns.2.module.weight_hh_l0"), std::string::npos);
  std::string keep;
  io::Bundle b = to_bundle(m, &keep);
  EXPECT_FALSE(b.has("0.rnns.0.module.weight_hh_l0"));
  expect_matches_values(b, kTorch + "lm_v1.values.json",
                        {"0.rnns.0.module.weight_hh_l0", "0.rnns.1.module.weight_hh_l0",
                         "0.rnns.2.module.weight_hh_l0"});
}

TEST(FastaiImport, EncoderOnlyFile) {
  auto m = ulmfit::import_weights(kTorch + "encoder.h5", kTorch + "itos_pd.pkl");
  expect_tiny_lm_config(m.config, "encoder");
  std::string keep;
  io::Bundle b = to_bundle(m, &keep);
  EXPECT_EQ(b.file().tensors().size(), 13u);
  EXPECT_TRUE(b.has("encoder_dp.emb.weight"));
  expect_matches_values(b, kTorch + "encoder.values.json");
}

TEST(FastaiImport, WholeLearner) {
  auto m = ulmfit::import_learner(kTorch + "classifier.h5");
  expect_tiny_lm_config(m.config, "classifier");
  EXPECT_EQ(m.config.lin_ftrs, (std::vector<std::int64_t>{50}));
  EXPECT_EQ(m.config.n_classes, 3);
  EXPECT_EQ(m.config.head_ps, (std::vector<double>{0.2, 0.1}));
  EXPECT_EQ(m.labels, (std::vector<std::string>(ulmfit::kLabels.begin(), ulmfit::kLabels.end())));
  ASSERT_TRUE(m.temperature.has_value());
  EXPECT_EQ(*m.temperature, 0.25);
  EXPECT_EQ(m.vocab, itos());  // the learner's own Numericalize vocab
  std::string keep;
  io::Bundle b = to_bundle(m, &keep);
  expect_matches_values(b, kTorch + "classifier.values.json");
  // The same with an explicit (identical) vocab.
  auto m2 = ulmfit::import_learner(kTorch + "classifier.h5", kTorch + "itos_p0.pkl");
  EXPECT_EQ(m2.vocab, itos());
}

TEST(FastaiImport, MatchEmbedsAgainstFastaiGolden) {
  json g = read_json(kBundleFx + "match_embeds_golden.json");
  auto m = ulmfit::import_weights(kTorch + "lm_v1_legacy.pt", kTorch + "itos_p4.pkl",
                                  kBundleFx + "target_itos.pkl");
  EXPECT_EQ(m.vocab, g["new_vocab"].get<std::vector<std::string>>());
  EXPECT_EQ(m.matched_tokens, g["matched"].get<std::int64_t>());
  EXPECT_EQ(m.config.vocab_size, (std::int64_t)g["new_vocab"].size());
  std::string keep;
  io::Bundle b = to_bundle(m, &keep);
  const auto nv = g["new_vocab"].get<std::vector<std::string>>();
  const auto ov = g["old_vocab"].get<std::vector<std::string>>();
  int exact = 0, mean_rows = 0;
  for (auto& t : g["tensors"]) {
    std::string name = t["name"];
    SCOPED_TRACE(name);
    ASSERT_TRUE(b.has(name));
    auto view = b.tensor(name);
    auto vals = t["values"];
    ASSERT_EQ((std::size_t)view.numel(), vals.size());
    bool per_token = name == "0.encoder.weight" || name == "0.encoder_dp.emb.weight" ||
                     name == "1.decoder.weight" || name == "1.decoder.bias";
    const std::size_t width = per_token ? vals.size() / nv.size() : 1;
    for (std::size_t i = 0; i < vals.size(); ++i) {
      float want = static_cast<float>(vals[i].get<double>());
      bool unknown = per_token &&
                     std::find(ov.begin(), ov.end(), nv[i / width]) == ov.end();
      if (unknown) {
        // mean row / mean bias: torch's float32 mean vs our double mean, within rounding
        EXPECT_NEAR(view[i], want, 1e-6f) << i;
        ++mean_rows;
      } else {
        ASSERT_EQ(view[i], want) << i;
        ++exact;
      }
    }
  }
  EXPECT_GT(mean_rows, 0);
  EXPECT_GT(exact, 1000);
  // xxfake is duplicated in the old vocab: fastai takes its LAST index.
  auto xf = std::find(nv.begin(), nv.end(), "xxfake") - nv.begin();
  const std::int64_t last = g["xxfake_old_index"];
  auto old = io::torch::load_state_dict(kTorch + "lm_v1_legacy.pt").at("0.encoder.weight").to_float32();
  auto row = b.tensor("0.encoder.weight").row(xf);
  for (int c = 0; c < 8; ++c) EXPECT_EQ(row[c], old[last * 8 + c]);
}

// ---- errors -------------------------------------------------------------------------------------

template <typename F>
void expect_format_error(F&& f, std::initializer_list<const char*> needles) {
  try {
    f();
    FAIL() << "no error; expected: " << *needles.begin();
  } catch (const io::FormatError& e) {
    std::string m = e.what();
    for (auto n : needles) EXPECT_NE(m.find(n), std::string::npos) << "'" << n << "' not in: " << m;
  }
}

TEST(FastaiImport, Errors) {
  // Vocab of the wrong length.
  expect_format_error(
      [&] { ulmfit::import_weights(kTorch + "lm_zip.pt", kBundleFx + "target_itos.pkl"); },
      {"lm_zip.pt", "32 tokens", "40 rows"});
  // Not an AWD-LSTM.
  expect_format_error([&] { ulmfit::import_weights(kTorch + "zoo_zip.pt", kTorch + "itos_p4.pkl"); },
                      {"zoo_zip.pt", "not a fastai AWD-LSTM"});
  // Vocab matching on a classifier.
  expect_format_error(
      [&] {
        auto sd = io::torch::load_learner(kTorch + "classifier.h5").model;
        auto target = itos();
        ulmfit::import_state_dict(std::move(sd), itos(), &target);
      },
      {"--target-vocab"});
  // Learner + a different vocab.
  expect_format_error(
      [&] { ulmfit::import_learner(kTorch + "classifier.h5", kBundleFx + "target_itos.pkl"); },
      {"differs", "id 9"});
  // Missing, mis-shaped and unexpected keys.
  auto base = [] { return io::torch::load_state_dict(kTorch + "lm_zip.pt"); };
  expect_format_error(
      [&] {
        auto sd = base();
        std::erase_if(sd.entries, [](auto& e) { return e.first == "0.rnns.1.module.bias_hh_l0"; });
        ulmfit::import_state_dict(std::move(sd), itos());
      },
      {"missing key '0.rnns.1.module.bias_hh_l0'", "[48]"});
  expect_format_error(
      [&] {
        auto sd = base();
        for (auto& [k, t] : sd.entries)
          if (k == "0.rnns.1.module.weight_ih_l0") t = sd.at("0.rnns.0.module.weight_ih_l0");
        ulmfit::import_state_dict(std::move(sd), itos());
      },
      {"'0.rnns.1.module.weight_ih_l0'", "[48, 8]", "expected [48, 12]"});
  expect_format_error(
      [&] {
        auto sd = base();
        sd.entries.emplace_back("0.rnns.0.module.weight_hh_l0_reverse", sd.at("0.rnns.0.weight_hh_l0_raw"));
        ulmfit::import_state_dict(std::move(sd), itos());
      },
      {"unexpected key", "weight_hh_l0_reverse"});
  expect_format_error(
      [&] {
        auto sd = base();
        for (auto& [k, t] : sd.entries)
          if (k == "0.encoder_dp.emb.weight") t = sd.at("1.decoder.weight"), t.offset = 8;
        ulmfit::import_state_dict(std::move(sd), itos());
      },
      {"encoder_dp.emb.weight", "differs"});
  // An untied decoder is kept as its own tensor.
  {
    auto sd = base();
    auto& dec = sd.entries;
    for (auto& [k, t] : dec)
      if (k == "1.decoder.weight") {
        auto v = t.to_float32();
        for (auto& x : v) x *= 2;
        auto st = std::make_shared<io::torch::Storage>();
        auto buf = std::make_shared<std::vector<float>>(v);
        st->numel = (std::int64_t)v.size();
        st->data = reinterpret_cast<const std::uint8_t*>(buf->data());
        st->owner = buf;
        t.storage = st;
        t.offset = 0;
      }
    auto m = ulmfit::import_state_dict(std::move(sd), itos());
    EXPECT_FALSE(m.config.tie_weights);
    std::string keep;
    io::Bundle b = to_bundle(m, &keep);
    EXPECT_TRUE(b.file().contains("1.decoder.weight"));
    EXPECT_EQ(b.tensor("1.decoder.weight")[3], 2 * b.tensor("0.encoder.weight")[3]);
  }
}

// ---- the commands, through the built binary -----------------------------------------------------

struct CliRun {
  int rc;
  std::string out;
};
CliRun run(const std::string& args) {
  std::string cmd = kBin + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

TEST(FastaiImportCli, ImportAndInspect) {
  std::string out = tmp_path("cli_lm.safetensors");
  CliRun r = run("import-fastai --weights " + kTorch + "lm_v1_legacy.pt --itos " + kTorch +
              "itos_p4.pkl --target-vocab " + kBundleFx + "target_itos.pkl --out " + out);
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("lm, vocab 32"), std::string::npos) << r.out;
  io::Bundle b = io::Bundle::load(out);
  EXPECT_EQ(b.config().vocab_size, 32);
  EXPECT_NE(b.provenance().find("import-fastai"), std::string::npos);

  CliRun i = run("inspect " + out);
  ASSERT_EQ(i.rc, 0) << i.out;
  for (auto s : {"inspire-classifier-bundle/1", "vocab: 32 tokens", "\"xxunk\"",
                 "0.rnns.2.module.weight_ih_l0", "[32, 12]", "1.decoder.weight",
                 "tied, stored once", "3,296"})
    EXPECT_NE(i.out.find(s), std::string::npos) << s << "\n" << i.out;
  CliRun j = run("inspect --json --vocab 3 " + out);
  ASSERT_EQ(j.rc, 0) << j.out;
  json parsed = json::parse(j.out);
  EXPECT_EQ(parsed["vocab"]["size"], 32);
  EXPECT_EQ(parsed["vocab"]["first"].size(), 3u);
  EXPECT_EQ(parsed["metadata"]["config"]["kind"], "lm");
  std::remove(out.c_str());

  std::string clf = tmp_path("cli_clf.safetensors");
  CliRun c = run("import-fastai --learner " + kTorch + "classifier.h5 --labels a,b,c -o " + clf);
  ASSERT_EQ(c.rc, 0) << c.out;
  EXPECT_EQ(io::Bundle::load(clf).labels(), (std::vector<std::string>{"a", "b", "c"}));
  std::remove(clf.c_str());

  CliRun t = run("inspect " + kTorch + "lm_legacy.pt");
  ASSERT_EQ(t.rc, 0) << t.out;
  EXPECT_NE(t.out.find("legacy format"), std::string::npos);
  EXPECT_NE(t.out.find("0.rnns.0.weight_hh_l0_raw"), std::string::npos);
}

TEST(FastaiImportCli, UsageAndFailures) {
  CliRun h = run("import-fastai --help");
  EXPECT_EQ(h.rc, 0);
  EXPECT_NE(h.out.find("--target-vocab"), std::string::npos);
  EXPECT_EQ(run("import-fastai --out x.safetensors").rc, 2);
  EXPECT_EQ(run("import-fastai --weights " + kTorch + "lm_zip.pt --out x.safetensors").rc, 2);
  EXPECT_EQ(run("import-fastai --weights " + kTorch + "lm_zip.pt --learner " + kTorch +
                "classifier.h5 --itos " + kTorch + "itos_p4.pkl --out x.safetensors")
                .rc,
            2);
  EXPECT_EQ(run("import-fastai --weights /nonexistent.pth --itos " + kTorch + "itos_p4.pkl -o x")
                .rc,
            2);
  std::string out = tmp_path("fail.safetensors");
  CliRun bad = run("import-fastai --weights " + kTorch + "zoo_zip.pt --itos " + kTorch +
                "itos_p4.pkl --out " + out);
  EXPECT_EQ(bad.rc, 1);
  EXPECT_NE(bad.out.find("not a fastai AWD-LSTM"), std::string::npos) << bad.out;
  EXPECT_NE(::access(out.c_str(), F_OK), 0) << "a failed import left a file behind";
  CliRun lab = run("import-fastai --learner " + kTorch + "classifier.h5 --labels a,b -o " + out);
  EXPECT_EQ(lab.rc, 2) << lab.out;

  EXPECT_EQ(run("inspect").rc, 2);
  CliRun notmodel = run("inspect " + kTorch + "itos.json");
  EXPECT_EQ(notmodel.rc, 1);
  EXPECT_NE(notmodel.out.find("itos.json"), std::string::npos);
  // A corrupt bundle: error naming the file, exit 1, no crash.
  std::string corrupt = tmp_path("corrupt.safetensors");
  {
    std::ofstream f(corrupt, std::ios::binary);
    std::string hdr = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
    std::uint64_t n = hdr.size();
    f.write(reinterpret_cast<const char*>(&n), 8);
    f << hdr << "short";
  }
  CliRun cr = run("inspect " + corrupt);
  EXPECT_EQ(cr.rc, 1);
  EXPECT_NE(cr.out.find("corrupt.safetensors"), std::string::npos) << cr.out;
  EXPECT_NE(cr.out.find("'a'"), std::string::npos) << cr.out;
  std::remove(corrupt.c_str());
}

}  // namespace
