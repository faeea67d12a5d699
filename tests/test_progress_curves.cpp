// ctest-labels: unit
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ulmfit/curves.h"
#include "ulmfit/progress.h"

using namespace ulmfit;

TEST(Progress, PlainLinesWhenNotATty) {
  std::FILE* f = std::tmpfile();
  {
    Progress p("epoch 1/2", 10, f, false, /*plain_interval_s=*/0.0);
    for (int i = 0; i < 10; ++i) p.update(1, 100, 2.5);
  }
  std::rewind(f);
  std::string all;
  char buf[512];
  while (std::fgets(buf, sizeof buf, f)) all += buf;
  std::fclose(f);
  EXPECT_EQ(all.find('\r'), std::string::npos);  // no carriage returns in logs
  EXPECT_NE(all.find("epoch 1/2: 10/10 (100%)"), std::string::npos) << all;
  EXPECT_NE(all.find("tok/s"), std::string::npos);
  EXPECT_NE(all.find("loss 2.5000"), std::string::npos);
}

TEST(Progress, QuietPrintsNothingAndDurationsFormat) {
  std::FILE* f = std::tmpfile();
  {
    Progress p("x", 3, f, /*quiet=*/true, 0.0);
    p.update(3);
  }
  EXPECT_EQ(std::ftell(f), 0);
  std::fclose(f);
  EXPECT_EQ(Progress::format_duration(65), "01:05");
  EXPECT_EQ(Progress::format_duration(3725), "1:02:05");
}

TEST(Curves, CsvRoundTripAndSvg) {
  auto dir = std::filesystem::temp_directory_path() / "inspire_curves_test";
  std::filesystem::create_directories(dir);
  Curves c;
  c.add({0, "lm-frozen", {{"train_loss", 5.0}}});
  c.add({1, "lm-frozen", {{"train_loss", 4.0}, {"valid_loss", 4.5}, {"valid_accuracy", 0.2}}});
  c.write_csv((dir / "c.csv").string());
  auto back = Curves::read_csv((dir / "c.csv").string());
  ASSERT_EQ(back.points().size(), 2u);
  EXPECT_EQ(back.points()[1].stage, "lm-frozen");
  EXPECT_DOUBLE_EQ(back.points()[1].values.at("valid_loss"), 4.5);
  EXPECT_EQ(back.points()[0].values.count("valid_loss"), 0u);
  std::string s = c.svg("LM <fine-tune>");
  EXPECT_NE(s.find("<svg"), std::string::npos);
  EXPECT_NE(s.find("polyline"), std::string::npos);
  EXPECT_NE(s.find("LM &lt;fine-tune&gt;"), std::string::npos);
  EXPECT_NE(s.find("valid_accuracy"), std::string::npos);
  std::ofstream(dir / "bad.csv") << "x,stage,a\n1,s,2,3\n";
  EXPECT_THROW(Curves::read_csv((dir / "bad.csv").string()), std::runtime_error);
  std::filesystem::remove_all(dir);
}
