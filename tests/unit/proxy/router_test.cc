#include "proxy/router.h"

#include <gtest/gtest.h>

namespace streamedge::proxy {
namespace {

conf::Config twoVhosts() {
  conf::Config c;
  conf::VhostConfig exact;
  exact.name = "exact";
  exact.hostnames = {"cdn.example.com"};
  conf::RouteConfig root;
  root.prefix = "/";
  conf::RouteConfig live;
  live.prefix = "/live/";
  exact.routes = {live, root};  // longest first, as the loader sorts them
  conf::VhostConfig wildcard;
  wildcard.name = "wild";
  wildcard.hostnames = {"*.example.com"};
  wildcard.routes = {root};
  conf::VhostConfig deeper;
  deeper.name = "deeper";
  deeper.hostnames = {"*.eu.example.com"};
  deeper.routes = {root};
  conf::VhostConfig any;
  any.name = "any";
  any.hostnames = {"*"};
  any.routes = {live};
  c.vhosts = {exact, wildcard, deeper, any};
  return c;
}

TEST(Router, ExactHostWinsAndIgnoresCaseAndPort) {
  conf::Config c = twoVhosts();
  RouteMatch m = matchRoute(c, "CDN.Example.com:8443", "/live/a.m3u8");
  ASSERT_NE(m.vhost, nullptr);
  EXPECT_EQ(m.vhost->name, "exact");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.route->prefix, "/live/");
  EXPECT_EQ(matchRoute(c, "cdn.example.com", "/vod/x.ts").route->prefix, "/");
}

TEST(Router, LongestWildcardSuffixWins) {
  conf::Config c = twoVhosts();
  EXPECT_EQ(matchRoute(c, "a.example.com", "/").vhost->name, "wild");
  EXPECT_EQ(matchRoute(c, "a.eu.example.com", "/").vhost->name, "deeper");
  EXPECT_EQ(matchRoute(c, "example.com", "/live/x").vhost->name, "any")
      << "*.example.com must not match the bare domain";
}

TEST(Router, CatchAllVhostWithoutMatchingRouteGivesNoRoute) {
  conf::Config c = twoVhosts();
  RouteMatch m = matchRoute(c, "other.org", "/vod/x.ts");
  ASSERT_NE(m.vhost, nullptr);
  EXPECT_EQ(m.vhost->name, "any");
  EXPECT_EQ(m.route, nullptr);
}

TEST(Router, NoCatchAllMeansNoVhost) {
  conf::Config c = twoVhosts();
  c.vhosts.pop_back();
  EXPECT_EQ(matchRoute(c, "other.org", "/").vhost, nullptr);
}

TEST(Router, HostNameStripsPortTrailingDotAndKeepsIpv6Brackets) {
  char buf[64];
  EXPECT_EQ(hostName("Example.COM.:80", buf, sizeof buf), "example.com");
  EXPECT_EQ(hostName("[::1]:8080", buf, sizeof buf), "[::1]");
  EXPECT_EQ(hostName("127.0.0.1", buf, sizeof buf), "127.0.0.1");
  char tiny[4];
  EXPECT_EQ(hostName("example.com", tiny, sizeof tiny), "");
}

}  // namespace
}  // namespace streamedge::proxy
