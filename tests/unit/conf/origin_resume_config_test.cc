// The origin group keys of mid-body resume: resume_attempts, resume_deadline, min_rate,
// min_rate_window — defaults, values, and file:line errors.
#include <gtest/gtest.h>

#include "tests/unit/conf/config_test_base.h"

namespace streamedge::conf::testing {
namespace {

TEST(OriginResumeConfig, DefaultsResumeTwiceWithinThirtySecondsAndNoRateFloor) {
  const LoadResult r = load("");
  ASSERT_TRUE(r.ok()) << describe(r);
  const OriginGroupConfig& g = r.config->origin_groups[0];
  EXPECT_EQ(g.resume_attempts, 2);
  EXPECT_EQ(g.resume_deadline, Millis(30'000));
  EXPECT_EQ(g.min_rate, 0u);
  EXPECT_EQ(g.min_rate_window, Millis(5'000));
}

TEST(OriginResumeConfig, ValuesAreRead) {
  const LoadResult r = load(R"(
[[origin_group]]
name = "media"
resume_attempts = 0
resume_deadline = "12s"
min_rate = "64KiB"
min_rate_window = "1500ms"
  [[origin_group.origin]]
  url = "http://10.0.0.1"
)");
  ASSERT_TRUE(r.ok()) << describe(r);
  ASSERT_EQ(r.config->origin_groups.size(), 2u);
  const OriginGroupConfig& g = r.config->origin_groups[1];
  EXPECT_EQ(g.resume_attempts, 0);
  EXPECT_EQ(g.resume_deadline, Millis(12'000));
  EXPECT_EQ(g.min_rate, 64u * 1024);
  EXPECT_EQ(g.min_rate_window, Millis(1500));
}

TEST(OriginResumeConfig, InvalidValuesAreReportedWithTheirLine) {
  expectOnlyError("\n[[origin_group]]\nname = \"x\"\nresume_attempts = 17\n"
                  "  [[origin_group.origin]]\n  url = \"http://a\"\n",
                  "origin_group[1].resume_attempts", 4, "between 0 and 16");
  expectOnlyError("\n[[origin_group]]\nname = \"x\"\nresume_attempts = -1\n"
                  "  [[origin_group.origin]]\n  url = \"http://a\"\n",
                  "origin_group[1].resume_attempts", 4, "between 0 and 16");
  expectOnlyError("\n[[origin_group]]\nname = \"x\"\nresume_deadline = \"0s\"\n"
                  "  [[origin_group.origin]]\n  url = \"http://a\"\n",
                  "origin_group[1].resume_deadline", 4, "greater than zero");
  expectOnlyError("\n[[origin_group]]\nname = \"x\"\n\nmin_rate = \"fast\"\n"
                  "  [[origin_group.origin]]\n  url = \"http://a\"\n",
                  "origin_group[1].min_rate", 5, "invalid byte size");
  expectOnlyError("\n[[origin_group]]\nname = \"x\"\nmin_rate_window = \"0ms\"\n"
                  "  [[origin_group.origin]]\n  url = \"http://a\"\n",
                  "origin_group[1].min_rate_window", 4, "greater than zero");
  expectOnlyError("\n[[origin_group]]\nname = \"x\"\nmin_rate_window = true\n"
                  "  [[origin_group.origin]]\n  url = \"http://a\"\n",
                  "origin_group[1].min_rate_window", 4, "duration");
}

}  // namespace
}  // namespace streamedge::conf::testing
