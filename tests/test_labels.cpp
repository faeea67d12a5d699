// ctest-labels: unit
#include <gtest/gtest.h>

#include <cmath>

#include "ulmfit/labels.h"

TEST(Labels, TemperatureScoresMatchTheOriginalRange) {
  // A certain prediction never reports more than e^4/(e^4+2) ≈ 0.96466.
  auto s = ulmfit::temperature_scores({0.f, 0.f, 1.f});
  double hi = std::exp(4.0) / (std::exp(4.0) + 2), lo = 1 / (std::exp(4.0) + 2);
  EXPECT_NEAR(s[2], hi, 1e-6);
  EXPECT_NEAR(s[0], lo, 1e-6);
  EXPECT_NEAR(s[0] + s[1] + s[2], 1.0, 1e-6);
  auto u = ulmfit::temperature_scores({1.f / 3, 1.f / 3, 1.f / 3});
  for (float x : u) EXPECT_NEAR(x, 1.0 / 3, 1e-6);
  EXPECT_EQ(ulmfit::join_title_abstract("T", "A"), "T <ENDTITLE> A");
}
