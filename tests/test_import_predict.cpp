// ctest-labels: golden
// Issue #4's end-to-end proof: a whole fastai Learner exported the way INSPIRE does
// (tests/fixtures/torch/classifier.h5, written by tools/reference/gen_torch_fixtures.py with
// torch 1.13 + fastai 2.7.19) is imported with no Python, and our predict path gives fastai's
// own `learn.predict` probabilities (recorded in classifier.predictions.json) to 1e-5.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <string>

#include "io/bundle.h"
#include "ulmfit/classifier.h"
#include "ulmfit/fastai_import.h"

namespace {
const std::string kDir = INSPIRE_SOURCE_DIR "/tests/fixtures/torch/";
}

TEST(ImportPredict, FastaiLearnerPredictionsTo1e5) {
  auto imported = ulmfit::import_learner(kDir + "classifier.h5");
  std::string bytes = io::serialize_bundle(imported.contents("test"));
  auto clf = ulmfit::Classifier::from_memory(bytes, "imported-learner");
  std::ifstream in(kDir + "classifier.predictions.json");
  ASSERT_TRUE(in) << kDir;
  auto j = nlohmann::json::parse(in);
  ASSERT_EQ(clf.vocab_size(), j["vocab_len"].get<size_t>());
  ASSERT_GE(j["predictions"].size(), 3u);
  for (auto& p : j["predictions"]) {
    std::string text = p["text"];
    auto pred = clf.predict_text(text);
    for (int k = 0; k < 3; ++k)
      EXPECT_NEAR(pred.probabilities[k], p["probs"][k].get<double>(), 1e-5)
          << "class " << k << " of: " << text.substr(0, 60);
  }
}
