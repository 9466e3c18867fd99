// The progress reporter's text, in plain (non-terminal) mode.
#include <gtest/gtest.h>

#include <cstdlib>
#include <sstream>
#include <stdexcept>

#include "common/progress.h"

namespace vitprobe {
namespace {

TEST(DataProgress, FormatsDurationsAndLines) {
  EXPECT_EQ(format_duration(0), "0:00");
  EXPECT_EQ(format_duration(75.9), "1:15");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(-1), "?");
  EXPECT_EQ(format_progress("load", 250, 1000, 5.0, "img"), "load 250/1000 (25%) 50.0 img/s, ETA 0:15");
  EXPECT_EQ(format_progress("load", 250, 0, 5.0, "img"), "load 250 50.0 img/s");
  EXPECT_EQ(format_progress("x", 1, 4, 1.0, "img", 8), "x [##......] 1/4 (25%) 1.00 img/s, ETA 0:03");
}

TEST(DataProgress, PlainLinesAndOneSummary) {
  unsetenv("VITPROBE_PROGRESS");
  std::ostringstream out;
  ProgressOptions options;
  options.bar = false;
  options.log_interval_s = 0;  // a line on every advance
  options.stream = &out;
  {
    Progress progress("verify", 3, options);
    progress.advance();
    progress.advance(2);
    progress.finish();
    progress.finish();
    EXPECT_EQ(progress.done(), 3);
  }
  const std::string text = out.str();
  EXPECT_NE(text.find("verify 1/3 (33%)"), std::string::npos) << text;
  EXPECT_NE(text.find("verify 3/3 (100%)"), std::string::npos) << text;
  EXPECT_EQ(text.find('\r'), std::string::npos);
  const size_t summary = text.find("verify: 3 img in ");
  ASSERT_NE(summary, std::string::npos) << text;
  EXPECT_EQ(text.find("verify: 3 img in ", summary + 1), std::string::npos);  // once, despite the destructor
}

TEST(DataProgress, NoSummaryWhileUnwindingFromAnError) {
  unsetenv("VITPROBE_PROGRESS");
  std::ostringstream out;
  ProgressOptions options;
  options.bar = false;
  options.stream = &out;
  try {
    Progress progress("failing", 5, options);
    progress.advance();
    throw std::runtime_error("decode failed");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(out.str().find("failing:"), std::string::npos) << out.str();
}

TEST(DataProgress, DisabledPrintsNothing) {
  std::ostringstream out;
  ProgressOptions options;
  options.enabled = false;
  options.stream = &out;
  Progress progress("quiet", 10, options);
  progress.advance(10);
  progress.finish();
  EXPECT_TRUE(out.str().empty());
}

}  // namespace
}  // namespace vitprobe
