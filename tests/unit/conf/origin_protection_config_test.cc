// The keys of origin protection, retry limits, hedging and name resolution: max_concurrent_requests,
// max_connections, queue_size, queue_timeout, dns_cache_time (group defaults, origin overrides),
// retry_deadline, retry_budget, retry_budget_min (group), hedge_after (route) — defaults,
// inheritance, values and file:line errors.
#include <gtest/gtest.h>

#include "tests/unit/conf/config_test_base.h"

namespace streamedge::conf::testing {
namespace {

TEST(OriginProtectionConfig, DefaultsCapAt1024WithAQueueAndABudgetAndNoHedging) {
  const LoadResult r = load("");
  ASSERT_TRUE(r.ok()) << describe(r);
  const OriginGroupConfig& g = r.config->origin_groups[0];
  EXPECT_EQ(g.retry_deadline, Millis(0));
  EXPECT_DOUBLE_EQ(g.retry_budget, 0.2);
  EXPECT_EQ(g.retry_budget_min, 10);
  ASSERT_FALSE(g.origins.empty());
  const OriginConfig& o = g.origins[0];
  EXPECT_EQ(o.max_concurrent_requests, 1024);
  EXPECT_EQ(o.max_connections, 1024);
  EXPECT_EQ(o.queue_size, 1024);
  EXPECT_EQ(o.queue_timeout, Millis(2'000));
  EXPECT_EQ(o.dns_cache_time, Millis(30'000));
  ASSERT_FALSE(r.config->vhosts.empty());
  ASSERT_FALSE(r.config->vhosts[0].routes.empty());
  EXPECT_EQ(r.config->vhosts[0].routes[0].hedge_after, Millis(0));
}

TEST(OriginProtectionConfig, GroupValuesAreInheritedAndOriginValuesOverride) {
  const LoadResult r = load(R"(
[[origin_group]]
name = "media"
retry_deadline = "3s"
retry_budget = 0.5
retry_budget_min = 2
max_concurrent_requests = 64
max_connections = 80
queue_size = 10
queue_timeout = "500ms"
dns_cache_time = "5s"
  [[origin_group.origin]]
  url = "http://10.0.0.1"
  [[origin_group.origin]]
  url = "http://10.0.0.2"
  max_concurrent_requests = 0
  queue_size = 0
  dns_cache_time = 0

[[vhost]]
hostnames = ["media.example"]
  [[vhost.route]]
  prefix = "/live/"
  origin_group = "media"
  hedge_after = "300ms"
)");
  ASSERT_TRUE(r.ok()) << describe(r);
  const OriginGroupConfig& g = r.config->origin_groups[1];
  EXPECT_EQ(g.retry_deadline, Millis(3'000));
  EXPECT_DOUBLE_EQ(g.retry_budget, 0.5);
  EXPECT_EQ(g.retry_budget_min, 2);
  ASSERT_EQ(g.origins.size(), 2u);
  EXPECT_EQ(g.origins[0].max_concurrent_requests, 64);
  EXPECT_EQ(g.origins[0].max_connections, 80);
  EXPECT_EQ(g.origins[0].queue_size, 10);
  EXPECT_EQ(g.origins[0].queue_timeout, Millis(500));
  EXPECT_EQ(g.origins[0].dns_cache_time, Millis(5'000));
  EXPECT_EQ(g.origins[1].max_concurrent_requests, 0);
  EXPECT_EQ(g.origins[1].max_connections, 80);
  EXPECT_EQ(g.origins[1].queue_size, 0);
  EXPECT_EQ(g.origins[1].dns_cache_time, Millis(0));
  const VhostConfig* v = nullptr;
  for (const VhostConfig& vh : r.config->vhosts) {
    if (!vh.hostnames.empty() && vh.hostnames[0] == "media.example") v = &vh;
  }
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->routes[0].hedge_after, Millis(300));
}

TEST(OriginProtectionConfig, IntegerRetryBudgetIsAccepted) {
  const LoadResult r = load("\n[[origin_group]]\nname = \"x\"\nretry_budget = 1\n"
                            "  [[origin_group.origin]]\n  url = \"http://a\"\n");
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_DOUBLE_EQ(r.config->origin_groups[1].retry_budget, 1.0);
}

TEST(OriginProtectionConfig, InvalidValuesAreReportedWithTheirLine) {
  expectOnlyError("\n[[origin_group]]\nname = \"x\"\nretry_budget = 1.5\n"
                  "  [[origin_group.origin]]\n  url = \"http://a\"\n",
                  "origin_group[1].retry_budget", 4, "between 0 and 1");
  expectOnlyError("\n[[origin_group]]\nname = \"x\"\nretry_budget = \"20%\"\n"
                  "  [[origin_group.origin]]\n  url = \"http://a\"\n",
                  "origin_group[1].retry_budget", 4, "number");
  expectOnlyError("\n[[origin_group]]\nname = \"x\"\nretry_budget_min = -1\n"
                  "  [[origin_group.origin]]\n  url = \"http://a\"\n",
                  "origin_group[1].retry_budget_min", 4, "between 0 and");
  expectOnlyError("\n[[origin_group]]\nname = \"x\"\nretry_deadline = \"soon\"\n"
                  "  [[origin_group.origin]]\n  url = \"http://a\"\n",
                  "origin_group[1].retry_deadline", 4, "invalid duration");
  expectOnlyError("\n[[origin_group]]\nname = \"x\"\nmax_concurrent_requests = -5\n"
                  "  [[origin_group.origin]]\n  url = \"http://a\"\n",
                  "origin_group[1].max_concurrent_requests", 4, "between 0 and");
  expectOnlyError("\n[[origin_group]]\nname = \"x\"\n  [[origin_group.origin]]\n"
                  "  url = \"http://a\"\n  max_connections = \"many\"\n",
                  "origin_group[1].origin[0].max_connections", 6, "integer");
  expectOnlyError("\n[[origin_group]]\nname = \"x\"\n  [[origin_group.origin]]\n"
                  "  url = \"http://a\"\n  queue_timeout = \"0ms\"\n",
                  "origin_group[1].origin[0].queue_timeout", 6, "greater than zero");
  expectOnlyError("\n[[origin_group]]\nname = \"x\"\n  [[origin_group.origin]]\n"
                  "  url = \"http://a\"\n  queue_size = 2000000\n",
                  "origin_group[1].origin[0].queue_size", 6, "between 0 and");
  expectOnlyError("\n[[origin_group]]\nname = \"x\"\n  [[origin_group.origin]]\n"
                  "  url = \"http://a\"\n[[vhost]]\nhostnames = [\"h.example\"]\n"
                  "  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"x\"\n"
                  "  hedge_after = \"quick\"\n",
                  "vhost[1].route[0].hedge_after", 11, "invalid duration");
}

}  // namespace
}  // namespace streamedge::conf::testing
