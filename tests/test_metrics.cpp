// ctest-labels: unit
#include <gtest/gtest.h>

#include "ulmfit/labels.h"
#include "ulmfit/metrics.h"

using namespace ulmfit;

static std::vector<std::string> L() { return {kLabels.begin(), kLabels.end()}; }

TEST(Metrics, HandComputedThreeClass) {
  // gold: 2 rejected, 3 non_core, 5 core
  std::vector<int> gold = {0, 0, 1, 1, 1, 2, 2, 2, 2, 2};
  std::vector<int> pred = {0, 2, 1, 1, 2, 2, 2, 2, 1, 2};
  auto r = classification_report(gold, pred, L());
  EXPECT_DOUBLE_EQ(r.accuracy, 0.7);
  EXPECT_DOUBLE_EQ(r.micro_f1, 0.7);
  // rejected: P=1/1 R=1/2 F1=2/3; non_core: P=2/3 R=2/3 F1=2/3; core: P=4/6 R=4/5 F1=8/11
  EXPECT_NEAR(*r.per_class[0].f1, 2.0 / 3, 1e-12);
  EXPECT_NEAR(*r.per_class[1].f1, 2.0 / 3, 1e-12);
  EXPECT_NEAR(*r.per_class[2].f1, 8.0 / 11, 1e-12);
  EXPECT_NEAR(r.macro_f1, (2.0 / 3 + 2.0 / 3 + 8.0 / 11) / 3, 1e-12);
  EXPECT_EQ(r.confusion_matrix[0][2], 1);
  EXPECT_EQ(r.confusion_matrix[2][1], 1);
  EXPECT_EQ(r.per_class[2].support, 5);
  EXPECT_EQ(r.per_class[1].predicted, 3);
}

TEST(Metrics, AbsentClassDoesNotDragMacroAverage) {
  // No rejected in gold (like the valid split), but one wrongly predicted as rejected.
  std::vector<int> gold = {1, 1, 2, 2};
  std::vector<int> pred = {1, 0, 2, 2};
  auto r = classification_report(gold, pred, L());
  EXPECT_TRUE(r.per_class[0].absent);
  EXPECT_FALSE(r.per_class[0].f1.has_value());
  // non_core: P=1 R=1/2 F1=2/3; core: F1=1 -> macro over the 2 present classes.
  EXPECT_NEAR(r.macro_f1, (2.0 / 3 + 1.0) / 2, 1e-12);
  auto j = r.to_json();
  for (auto key : {"accuracy", "macro_f1", "micro_f1", "per_class", "confusion_matrix", "labels"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_TRUE(j["per_class"]["rejected"]["absent"].get<bool>());
  EXPECT_TRUE(j["per_class"]["rejected"]["f1"].is_null());
  EXPECT_NE(r.to_text().find("absent"), std::string::npos);
}

TEST(Metrics, RejectsBadInput) {
  EXPECT_THROW(classification_report({}, {}, L()), std::invalid_argument);
  EXPECT_THROW(classification_report({1}, {1, 2}, L()), std::invalid_argument);
  EXPECT_THROW(classification_report({3}, {1}, L()), std::invalid_argument);
}
