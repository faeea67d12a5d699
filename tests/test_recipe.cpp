// ctest-labels: unit cli
// The Recipe: its defaults are the original's (spec §0, §3, §5), it round-trips through JSON,
// bad JSON is refused naming the field, and old bundles (without one) still load.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <string>

#include "cli_helpers.h"
#include "io/bundle.h"
#include "ulmfit/recipe.h"

using namespace ulmfit;

namespace {

void expect_stage(const Stage& s, const std::string& name, int epochs, double lo, double hi,
                  int freeze_to) {
  EXPECT_EQ(s.name, name);
  EXPECT_EQ(s.epochs, epochs) << name;
  EXPECT_NEAR(s.lr.lo, lo, 1e-12 * hi) << name;
  EXPECT_NEAR(s.lr.hi, hi, 1e-12 * hi) << name;
  EXPECT_EQ(s.freeze_to, freeze_to) << name;
}

void expect_error_naming(const std::string& json, const std::string& field) {
  try {
    Recipe::from_json_text(json);
    ADD_FAILURE() << "accepted: " << json;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("recipe"), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Recipe, DefaultsAreTheOriginals) {
  Recipe r;
  // AWD-LSTM (awd_lstm_lm_config) and INSPIRE's data settings
  EXPECT_EQ(r.emb_sz, 400);
  EXPECT_EQ(r.n_hid, 1152);
  EXPECT_EQ(r.n_layers, 3);
  EXPECT_FALSE(r.backwards);
  EXPECT_EQ(r.max_vocab, 60000u);
  EXPECT_EQ(r.min_freq, 2u);
  // LM: bs 64, seq_len 100, drop_mult 0.7, wd 1e-7, fit_one_cycle(1, 1e-2) frozen, (15, 1e-3)
  EXPECT_EQ(r.lm_bs, 64u);
  EXPECT_EQ(r.lm_bptt, 100u);
  EXPECT_DOUBLE_EQ(r.lm_drop_mult, 0.7);
  EXPECT_DOUBLE_EQ(r.lm_wd, 1e-7);
  auto lm = r.finetune_stages(true);
  ASSERT_EQ(lm.size(), 2u);
  expect_stage(lm[0], "lm-frozen", 1, 1e-2, 1e-2, -1);
  expect_stage(lm[1], "lm-unfrozen", 15, 1e-3, 1e-3, 0);
  // without a pretrained LM there is nothing to keep frozen
  auto scratch = r.finetune_stages(false);
  ASSERT_EQ(scratch.size(), 1u);
  EXPECT_EQ(scratch[0].name, "lm-unfrozen");
  // Classifier: bs 128, bptt 72, max_len 1440, drop_mult 0.5, wd 1e-6, gradual unfreezing
  EXPECT_EQ(r.clas_bs, 128u);
  EXPECT_EQ(r.clas_bptt, 72);
  EXPECT_EQ(r.clas_max_len, 1440);
  EXPECT_DOUBLE_EQ(r.clas_drop_mult, 0.5);
  EXPECT_DOUBLE_EQ(r.clas_wd, 1e-6);
  const double f = std::pow(2.6, 4);
  auto c = r.classifier_stages();
  ASSERT_EQ(c.size(), 4u);
  expect_stage(c[0], "clas-1", 1, 2e-2, 2e-2, -1);
  expect_stage(c[1], "clas-2", 1, 1e-2 / f, 1e-2, -2);
  expect_stage(c[2], "clas-3", 1, 5e-3 / f, 5e-3, -3);
  expect_stage(c[3], "clas-4", 15, 1e-3 / f, 1e-3, 0);
  EXPECT_NO_THROW(r.validate());
  // "original" is the default recipe
  EXPECT_EQ(Recipe::from_preset("original"), r);
}

TEST(Recipe, PresetsChangeSizesAndEpochsOnly) {
  Recipe t = Recipe::from_preset("tiny");
  Preset p = preset("tiny");
  EXPECT_EQ(t.preset, "tiny");
  EXPECT_EQ(t.emb_sz, p.emb_sz);
  EXPECT_EQ(t.n_hid, p.n_hid);
  EXPECT_EQ(t.max_vocab, p.max_vocab);
  EXPECT_EQ(t.lm_bs, p.lm_bs);
  EXPECT_EQ(t.clas_bs, p.clas_bs);
  EXPECT_EQ(t.lm_epochs, p.lm_epochs);
  EXPECT_EQ(t.clas_epochs, p.clas_last_epochs);
  EXPECT_DOUBLE_EQ(t.lm_lr, Recipe().lm_lr);
  EXPECT_DOUBLE_EQ(t.clas_wd, Recipe().clas_wd);
  EXPECT_THROW(Recipe::from_preset("huge"), std::invalid_argument);
}

TEST(Recipe, JsonRoundTripsEveryField) {
  Recipe r = Recipe::from_preset("small");
  r.backwards = true;
  r.seed = 1234567890123ULL;
  r.valid_pct = 0.15;
  r.lm_drop_mult = 0.35;
  r.clas_lr = 3e-3;
  r.clas_epochs = 0;
  r.lm_wd = 0;
  r.clas_max_len = 500;
  auto j = r.to_json();
  EXPECT_EQ(j["seed"].get<std::uint64_t>(), 1234567890123ULL);
  EXPECT_EQ(j["preset"], "small");
  Recipe back = Recipe::from_json_text(j.dump());
  EXPECT_EQ(back, r);
  EXPECT_EQ(back.to_json(), j);
  EXPECT_NE(back, Recipe());
  // Every field is written and read: changing any one changes the JSON.
  for (auto it = j.begin(); it != j.end(); ++it) {
    nlohmann::json k = j;
    if (it->is_boolean()) k[it.key()] = !it->get<bool>();
    else if (it->is_string()) k[it.key()] = "other";
    else if (it->is_number_float()) k[it.key()] = it->get<double>() * 0.5 + 1e-3;
    else k[it.key()] = it->get<std::int64_t>() + 1;
    EXPECT_NE(Recipe::from_json(k).to_json()[it.key()], j[it.key()]) << it.key();
  }
}

TEST(Recipe, PartialJsonKeepsTheBasesValues) {
  Recipe base = Recipe::from_preset("tiny");
  Recipe r = Recipe::from_json_text(R"({"lm_epochs": 7, "clas_lr": 0.01})", base);
  EXPECT_EQ(r.lm_epochs, 7);
  EXPECT_DOUBLE_EQ(r.clas_lr, 0.01);
  EXPECT_EQ(r.emb_sz, base.emb_sz);
  EXPECT_EQ(Recipe::from_json_text("{}"), Recipe());
}

TEST(Recipe, BadJsonIsRefusedNamingTheField) {
  expect_error_naming(R"({"lm_epoch": 3})", "lm_epoch");            // unknown (typo)
  expect_error_naming(R"({"lm_epochs": "3"})", "lm_epochs");        // string for int
  expect_error_naming(R"({"lm_epochs": 1.5})", "lm_epochs");        // float for int
  expect_error_naming(R"({"lm_bs": -4})", "lm_bs");                 // negative for unsigned
  expect_error_naming(R"({"backwards": 1})", "backwards");          // int for bool
  expect_error_naming(R"({"preset": 3})", "preset");
  expect_error_naming(R"({"clas_lr": null})", "clas_lr");
  expect_error_naming(R"({"lm_epochs": 99999999999})", "lm_epochs");  // out of int range
  expect_error_naming(R"({"valid_pct": 1.5})", "valid_pct");        // out of range
  expect_error_naming(R"({"lm_lr": 0})", "lm_lr");
  expect_error_naming(R"({"n_layers": 1})", "n_layers");
  expect_error_naming(R"({"clas_drop_mult": 3})", "clas_drop_mult");
  expect_error_naming(R"([1, 2])", "object");
  expect_error_naming(R"({"lm_epochs": 3)", "JSON");                // truncated
}

TEST(Recipe, DescribeListsEveryFieldWithItsValue) {
  Recipe r;
  std::string d = r.describe();
  auto j = r.to_json();
  for (auto it = j.begin(); it != j.end(); ++it)
    EXPECT_NE(d.find("  " + it.key() + " "), std::string::npos) << it.key() << "\n" << d;
  EXPECT_NE(d.find("60000"), std::string::npos);
  r.max_vocab = 123457;
  EXPECT_NE(r.describe().find("123457"), std::string::npos);
}

TEST(Recipe, OldBundlesWithoutOneStillLoad) {
  // models/default.safetensors was trained before bundles stored their recipe.
  auto b = io::Bundle::load(INSPIRE_SOURCE_DIR "/models/default.safetensors");
  EXPECT_EQ(b.metadata().count(kRecipeMetadataKey), 0u);
  EXPECT_FALSE(recipe_of(b).has_value());
}

TEST(Recipe, TrainHelpPrintsEveryField) {
  int rc = -1;
  std::string out = clitest::run(clitest::kBin + " train --help", &rc);
  ASSERT_EQ(rc, 0) << out;
  auto j = Recipe().to_json();
  for (auto it = j.begin(); it != j.end(); ++it) {
    auto at = out.find("  " + it.key() + " ");
    ASSERT_NE(at, std::string::npos) << it.key() << "\n" << out;
    auto line = out.substr(at, out.find('\n', at) - at);
    EXPECT_NE(line.find(it.value().dump()), std::string::npos) << line;
  }
}
