// [origin_group.health_check], [origin_group.outlier_detection] and slow_start: defaults, values
// and errors with file:line and key path.
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "tests/unit/conf/config_test_base.h"

namespace streamedge::conf {
namespace {

using namespace std::chrono_literals;
using testing::describe;
using testing::expectOnlyError;
using testing::load;

// A second group "dc" with two origins, then the text under test (its first line is line 1).
constexpr std::string_view kGroup = R"(
[[origin_group]]
name = "dc"
)";

std::string group(std::string_view keys, std::string_view tables = "") {
  std::string out(kGroup);
  out += keys;
  out += tables;
  out += "  [[origin_group.origin]]\n  url = \"http://127.0.0.1:8081\"\n  dc = \"dc-a\"\n";
  out += "  [[origin_group.origin]]\n  url = \"http://127.0.0.1:8082\"\n  dc = \"dc-b\"\n";
  out += "  priority = 2\n";
  return out;
}

// Line numbers in expectOnlyError count from the first line of `extra`, which is the empty line
// kGroup starts with: "[[origin_group]]" is line 2, "name" line 3, the first key line 4.

TEST(OriginHealthConfig, WithoutTablesThereAreNoActiveChecksAndPassiveDefaults) {
  const LoadResult r = load("");
  ASSERT_TRUE(r.ok()) << describe(r);
  const OriginGroupConfig& g = r.config->origin_groups[0];
  EXPECT_FALSE(g.health_check.enabled);
  EXPECT_EQ(g.slow_start, 0ms);
  EXPECT_EQ(g.outlier.consecutive_failures, 3);
  EXPECT_EQ(g.outlier.base_ejection_time, 10'000ms);
  EXPECT_EQ(g.outlier.max_ejection_time, 300'000ms);
  EXPECT_EQ(g.outlier.max_ejected_percent, 50);
  EXPECT_EQ(g.outlier.backoff_reset, 300'000ms);
}

TEST(OriginHealthConfig, TheContractExampleLoadsWithDefaults) {
  const LoadResult r = load(group("", "  [origin_group.health_check]\n  path = \"/health\"\n"
                                      "  interval = \"1s\"\n"));
  ASSERT_TRUE(r.ok()) << describe(r);
  const HealthCheckConfig& c = r.config->origin_groups[1].health_check;
  EXPECT_TRUE(c.enabled);
  EXPECT_EQ(c.path, "/health");
  EXPECT_EQ(c.interval, 1000ms);
  EXPECT_EQ(c.timeout, 1000ms);  // the 2 s default shrinks to the interval
  EXPECT_EQ(c.expected_status_min, 200);
  EXPECT_EQ(c.expected_status_max, 299);
  EXPECT_EQ(c.fall, 3);
  EXPECT_EQ(c.rise, 2);
  EXPECT_EQ(c.host, "");
  EXPECT_FALSE(r.config->origin_groups[0].health_check.enabled);
}

TEST(OriginHealthConfig, EveryKeyIsRead) {
  const LoadResult r = load(group(
      "slow_start = \"30s\"\n",
      "  [origin_group.health_check]\n  path = \"/status?deep=1\"\n  interval = \"10s\"\n"
      "  timeout = \"3s\"\n  expected_status = \"200-399\"\n  fall = 5\n  rise = 4\n"
      "  host = \"health.example:8080\"\n"
      "  [origin_group.outlier_detection]\n  consecutive_failures = 7\n"
      "  base_ejection_time = \"2s\"\n  max_ejection_time = \"1m\"\n  max_ejected_percent = 30\n"
      "  backoff_reset = \"10m\"\n"));
  ASSERT_TRUE(r.ok()) << describe(r);
  const OriginGroupConfig& g = r.config->origin_groups[1];
  EXPECT_EQ(g.slow_start, 30'000ms);
  EXPECT_EQ(g.health_check.path, "/status?deep=1");
  EXPECT_EQ(g.health_check.interval, 10'000ms);
  EXPECT_EQ(g.health_check.timeout, 3000ms);
  EXPECT_EQ(g.health_check.expected_status_min, 200);
  EXPECT_EQ(g.health_check.expected_status_max, 399);
  EXPECT_EQ(g.health_check.fall, 5);
  EXPECT_EQ(g.health_check.rise, 4);
  EXPECT_EQ(g.health_check.host, "health.example:8080");
  EXPECT_EQ(g.outlier.consecutive_failures, 7);
  EXPECT_EQ(g.outlier.base_ejection_time, 2000ms);
  EXPECT_EQ(g.outlier.max_ejection_time, 60'000ms);
  EXPECT_EQ(g.outlier.max_ejected_percent, 30);
  EXPECT_EQ(g.outlier.backoff_reset, 600'000ms);
}

TEST(OriginHealthConfig, ExpectedStatusForms) {
  const auto range = [](const std::string& value) {
    const LoadResult r = load(group("", "  [origin_group.health_check]\n  path = \"/h\"\n"
                                        "  expected_status = " + value + "\n"));
    EXPECT_TRUE(r.ok()) << value << describe(r);
    if (!r.ok()) return std::pair<int, int>(0, 0);
    const HealthCheckConfig& c = r.config->origin_groups[1].health_check;
    return std::pair<int, int>(c.expected_status_min, c.expected_status_max);
  };
  EXPECT_EQ(range("204"), std::make_pair(204, 204));
  EXPECT_EQ(range("\"204\""), std::make_pair(204, 204));
  EXPECT_EQ(range("\"3xx\""), std::make_pair(300, 399));
  EXPECT_EQ(range("\"200-204\""), std::make_pair(200, 204));
}

TEST(OriginHealthConfig, BadValuesNameFileLineAndKey) {
  const std::string check = "  [origin_group.health_check]\n";  // line 4 of the extra text
  expectOnlyError(group("", check), "origin_group[1].health_check.path", 4, "missing required key");
  expectOnlyError(group("", check + "  path = \"health\"\n"), "origin_group[1].health_check.path", 5,
                  "origin-form");
  expectOnlyError(group("", check + "  path = \"/h\"\n  interval = \"0s\"\n"),
                  "origin_group[1].health_check.interval", 6, "greater than zero");
  expectOnlyError(group("", check + "  path = \"/h\"\n  interval = \"1s\"\n  timeout = \"2s\"\n"),
                  "origin_group[1].health_check.timeout", 7, "must not exceed interval");
  expectOnlyError(group("", check + "  path = \"/h\"\n  expected_status = \"2xy\"\n"),
                  "origin_group[1].health_check.expected_status", 6, "\"2xx\"");
  expectOnlyError(group("", check + "  path = \"/h\"\n  expected_status = \"300-200\"\n"),
                  "origin_group[1].health_check.expected_status", 6, "range");
  expectOnlyError(group("", check + "  path = \"/h\"\n  expected_status = 700\n"),
                  "origin_group[1].health_check.expected_status", 6, "100..599");
  expectOnlyError(group("", check + "  path = \"/h\"\n  fall = 0\n"),
                  "origin_group[1].health_check.fall", 6, "between 1 and 100");
  expectOnlyError(group("", check + "  path = \"/h\"\n  rise = 101\n"),
                  "origin_group[1].health_check.rise", 6, "between 1 and 100");
  expectOnlyError(group("", check + "  path = \"/h\"\n  host = \"a b\"\n"),
                  "origin_group[1].health_check.host", 6, "host[:port]");
  expectOnlyError(group("", check + "  path = \"/h\"\n  intervall = \"1s\"\n"),
                  "origin_group[1].health_check.intervall", 6, "did you mean 'interval'");

  const std::string outlier = "  [origin_group.outlier_detection]\n";
  expectOnlyError(group("", outlier + "  consecutive_failures = -1\n"),
                  "origin_group[1].outlier_detection.consecutive_failures", 5, "between 0 and 1000");
  expectOnlyError(group("", outlier + "  base_ejection_time = \"0s\"\n"),
                  "origin_group[1].outlier_detection.base_ejection_time", 5, "greater than zero");
  expectOnlyError(group("", outlier + "  base_ejection_time = \"1m\"\n  max_ejection_time = \"30s\"\n"),
                  "origin_group[1].outlier_detection.max_ejection_time", 6, "at least base_ejection_time");
  expectOnlyError(group("", outlier + "  max_ejected_percent = 101\n"),
                  "origin_group[1].outlier_detection.max_ejected_percent", 5, "between 0 and 100");

  expectOnlyError(group("slow_start = \"soon\"\n"), "origin_group[1].slow_start", 4,
                  "invalid duration");
  expectOnlyError(group("", "  [[origin_group.health_check]]\n  path = \"/h\"\n"),
                  "origin_group[1].health_check", 4, "not [[");
}

TEST(OriginHealthConfig, ABaseEjectionTimeAboveTheDefaultCapRaisesIt) {
  const LoadResult r = load(group("", "  [origin_group.outlier_detection]\n"
                                      "  base_ejection_time = \"10m\"\n"));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->origin_groups[1].outlier.max_ejection_time, 600'000ms);
}

TEST(OriginHealthConfig, ExampleConfigDocumentsTheKeys) {
  const LoadResult r =
      loadConfigFile(std::string(STREAMEDGE_SOURCE_DIR) + "/conf/streamedge.example.toml");
  ASSERT_TRUE(r.ok()) << describe(r);
  const OriginGroupConfig& vod = r.config->origin_groups[0];
  EXPECT_EQ(vod.slow_start, 30'000ms);
  EXPECT_TRUE(vod.health_check.enabled);
  EXPECT_EQ(vod.health_check.path, "/health");
  EXPECT_EQ(vod.health_check.interval, 1000ms);
  EXPECT_EQ(vod.health_check.timeout, 500ms);
  EXPECT_EQ(vod.outlier.max_ejection_time, 300'000ms);
  EXPECT_FALSE(r.config->origin_groups[1].health_check.enabled);  // "captions": traffic only
}

}  // namespace
}  // namespace streamedge::conf
