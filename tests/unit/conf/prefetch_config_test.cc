// The keys of route prefetch (prefetch, prefetch_segments, prefetch_concurrency) and [vhost]
// cmsd: defaults, values and file:line errors.
#include <gtest/gtest.h>

#include "tests/unit/conf/config_test_base.h"

namespace streamedge::conf::testing {
namespace {

TEST(PrefetchConfig, OffByDefaultWithTwoSegmentsAndFourAtOnce) {
  const LoadResult r = load("");
  ASSERT_TRUE(r.ok()) << describe(r);
  const RouteConfig& route = r.config->vhosts[0].routes[0];
  EXPECT_FALSE(route.prefetch);
  EXPECT_EQ(route.prefetch_segments, 2);
  EXPECT_EQ(route.prefetch_concurrency, 4);
  EXPECT_FALSE(r.config->vhosts[0].cmsd);
}

TEST(PrefetchConfig, ValuesArePerRouteAndCmsdPerVhost) {
  const LoadResult r = load(R"(
[[vhost]]
hostnames = ["media.example"]
cmsd = true
  [[vhost.route]]
  prefix = "/live/"
  origin_group = "main"
  prefetch = true
  prefetch_segments = 3
  prefetch_concurrency = 8
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"
)");
  ASSERT_TRUE(r.ok()) << describe(r);
  const VhostConfig& v = r.config->vhosts[1];
  EXPECT_TRUE(v.cmsd);
  ASSERT_EQ(v.routes.size(), 2u);
  EXPECT_EQ(v.routes[0].prefix, "/live/");  // longest prefix first
  EXPECT_TRUE(v.routes[0].prefetch);
  EXPECT_EQ(v.routes[0].prefetch_segments, 3);
  EXPECT_EQ(v.routes[0].prefetch_concurrency, 8);
  EXPECT_FALSE(v.routes[1].prefetch);
}

TEST(PrefetchConfig, OutOfRangeCountsAreErrorsWithTheirLine) {
  expectOnlyError("  prefetch_segments = 0\n", "vhost[0].route[0].prefetch_segments", 1, "");
  expectOnlyError("  prefetch_concurrency = 65\n", "vhost[0].route[0].prefetch_concurrency", 1, "");
  expectOnlyError("  prefetch = \"yes\"\n", "vhost[0].route[0].prefetch", 1, "");
}

}  // namespace
}  // namespace streamedge::conf::testing
