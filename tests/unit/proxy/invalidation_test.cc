// Invalidation after unsafe requests (RFC 9111 §4.4): which keys an answer's Location and
// Content-Location name, and that only non-error answers remove anything.
#include "proxy/invalidation.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace streamedge::proxy {
namespace {

using namespace std::chrono_literals;
using Headers = std::vector<std::pair<std::string, std::string>>;

conf::Config siteConfig() {
  conf::Config c;
  conf::VhostConfig site;
  site.name = "site";
  site.hostnames = {"edge.example", "alias.example"};
  conf::RouteConfig api;
  api.prefix = "/api/";
  api.key.keep_params = {"id"};
  conf::RouteConfig root;
  root.prefix = "/";
  site.routes = {api, root};  // longest prefix first, as the loader sorts them
  conf::VhostConfig other;
  other.name = "other";
  other.hostnames = {"other.example"};
  other.routes = {root};
  conf::VhostConfig any;
  any.name = "any";
  any.hostnames = {"*"};
  any.routes = {root};
  c.vhosts = {site, other, any};
  return c;
}

InvalidationScope scopeFor(std::string host, std::string path, std::string scheme = "http") {
  InvalidationScope s;
  s.scheme = std::move(scheme);
  s.host = std::move(host);
  s.path = std::move(path);
  s.target = cache::makeKey("site", s.path, "");
  return s;
}

// The key a GET for `path` and filtered `query` on vhost "site" would use.
cache::CacheKey siteKey(std::string_view path, std::string_view query = "") {
  return cache::makeKey("site", path, query);
}

std::optional<cache::CacheKey> keyOf(const conf::Config& c, const InvalidationScope& s,
                                     std::string_view ref) {
  cache::CacheKey k;
  if (!keyForReference(c, s, ref, k)) return std::nullopt;
  return k;
}

TEST(Invalidation, OnlyGetHeadOptionsAndTraceAreSafe) {
  for (const char* m : {"GET", "HEAD", "OPTIONS", "TRACE"}) EXPECT_TRUE(isSafeMethod(m)) << m;
  for (const char* m : {"POST", "PUT", "DELETE", "PATCH", "PURGE", "MKCOL", "get"}) {
    EXPECT_FALSE(isSafeMethod(m)) << m;
  }
}

TEST(Invalidation, ReferencesResolveAgainstTheTargetLikeRfc3986) {
  const conf::Config c = siteConfig();
  const InvalidationScope s = scopeFor("edge.example", "/vod/a/post.json");
  EXPECT_EQ(keyOf(c, s, "/vod/b/x.ts"), siteKey("/vod/b/x.ts"));
  EXPECT_EQ(keyOf(c, s, "x.ts"), siteKey("/vod/a/x.ts"));
  EXPECT_EQ(keyOf(c, s, "./x.ts"), siteKey("/vod/a/x.ts"));
  EXPECT_EQ(keyOf(c, s, "../b/x.ts"), siteKey("/vod/b/x.ts"));
  EXPECT_EQ(keyOf(c, s, "x.ts?v=2#part"), siteKey("/vod/a/x.ts", "v=2"));
  EXPECT_EQ(keyOf(c, s, "?v=3"), siteKey("/vod/a/post.json", "v=3"));
  // Normalised the way a GET's path is (escapes of unreserved characters, dot segments).
  EXPECT_EQ(keyOf(c, s, "/vod/%7euser/./x.ts"), siteKey("/vod/~user/x.ts"));
}

TEST(Invalidation, AbsoluteReferencesCountOnlyOnTheTargetsOrigin) {
  const conf::Config c = siteConfig();
  const InvalidationScope s = scopeFor("Edge.Example", "/vod/post");
  EXPECT_EQ(keyOf(c, s, "http://edge.example/vod/x.ts"), siteKey("/vod/x.ts"));
  EXPECT_EQ(keyOf(c, s, "HTTP://EDGE.EXAMPLE:80/vod/x.ts"), siteKey("/vod/x.ts"));
  EXPECT_EQ(keyOf(c, s, "//edge.example/vod/x.ts"), siteKey("/vod/x.ts"));
  EXPECT_EQ(keyOf(c, s, "http://edge.example"), siteKey("/"));
  // Another host (even an alias of the same vhost), port or scheme is another origin.
  EXPECT_FALSE(keyOf(c, s, "http://other.example/vod/x.ts"));
  EXPECT_FALSE(keyOf(c, s, "http://alias.example/vod/x.ts"));
  EXPECT_FALSE(keyOf(c, s, "http://edge.example:8080/vod/x.ts"));
  EXPECT_FALSE(keyOf(c, s, "https://edge.example/vod/x.ts"));
  EXPECT_FALSE(keyOf(c, s, "http://user@edge.example/vod/x.ts"));
  EXPECT_FALSE(keyOf(c, s, "mailto:ops@edge.example"));

  const InvalidationScope tls = scopeFor("edge.example:8443", "/vod/post", "https");
  EXPECT_EQ(keyOf(c, tls, "https://edge.example:8443/vod/x.ts"), siteKey("/vod/x.ts"));
  EXPECT_FALSE(keyOf(c, tls, "https://edge.example/vod/x.ts"));  // port 443 ≠ 8443
  const InvalidationScope v6 = scopeFor("[2001:db8::1]:8080", "/vod/post");
  EXPECT_EQ(keyOf(c, v6, "http://[2001:DB8::1]:8080/vod/x.ts"),
            cache::makeKey("any", "/vod/x.ts", ""));
  EXPECT_FALSE(keyOf(c, v6, "http://[2001:db8::2]:8080/vod/x.ts"));
}

TEST(Invalidation, TheRouteOfTheReferencedPathDecidesTheKeptQuery) {
  const conf::Config c = siteConfig();
  const InvalidationScope s = scopeFor("edge.example", "/vod/post");
  // /api/ keeps only "id"; / drops the built-in player parameters (token, CMCD, ...).
  EXPECT_EQ(keyOf(c, s, "/api/item?x=1&id=7&token=t"), siteKey("/api/item", "id=7"));
  EXPECT_EQ(keyOf(c, s, "/vod/x.ts?token=t&q=1"), siteKey("/vod/x.ts", "q=1"));
}

TEST(Invalidation, UnusableReferencesInvalidateNothing) {
  const conf::Config c = siteConfig();
  const InvalidationScope s = scopeFor("edge.example", "/vod/post");
  for (const char* ref : {"", "/../../etc", "/a b", "/a%2Fb", "http:///x", "http://edge.example:99999/x"}) {
    EXPECT_FALSE(keyOf(c, s, ref)) << ref;
  }
}

TEST(Invalidation, KeysAreTheTargetThenLocationAndContentLocationOnce) {
  const conf::Config c = siteConfig();
  const InvalidationScope s = scopeFor("edge.example", "/vod/post");
  const Headers answer = {{"Content-Type", "text/plain"},
                          {"location", "/vod/new.ts"},
                          {"Content-Location", "/vod/post"},  // the target: not twice
                          {"Location", "http://other.example/x"},
                          {"Content-Location", "latest.ts"}};
  const std::vector<cache::CacheKey> keys = invalidationKeys(c, s, answer);
  EXPECT_EQ(keys, (std::vector<cache::CacheKey>{s.target, siteKey("/vod/new.ts"),
                                                siteKey("/vod/latest.ts")}));
}

// A stored, complete object under `key`.
void store(cache::Cache& cache, const cache::CacheKey& key, const Clock& clock) {
  cache::LookupResult miss = cache.lookup(key);
  ASSERT_EQ(miss.kind, cache::LookupResult::Kind::kMiss);
  auto head = std::make_shared<cache::ResponseHead>();
  head->status = 200;
  head->reason = "OK";
  head->content_length = 2;
  head->buildWire();
  cache::Freshness f;
  f.response_time = clock.wallNow();
  f.lifetime = 60s;
  miss.fill.publishHead(head, f, true, true);
  miss.fill.append(reinterpret_cast<const uint8_t*>("ok"), 2);
  ASSERT_TRUE(miss.fill.finish());
  ASSERT_EQ(cache.lookup(key).kind, cache::LookupResult::Kind::kHit);
}

TEST(Invalidation, OnlyNonErrorAnswersRemoveTheStoredResponses) {
  const conf::Config c = siteConfig();
  ManualClock clock;
  conf::RamCacheConfig ram;
  ram.size_bytes = 1 << 20;
  cache::Cache cache(ram, clock);
  const InvalidationScope s = scopeFor("edge.example", "/vod/post");
  const cache::CacheKey located = siteKey("/vod/new.ts");
  const cache::CacheKey unrelated = siteKey("/vod/other.ts");
  store(cache, s.target, clock);
  store(cache, located, clock);
  store(cache, unrelated, clock);
  const Headers answer = {{"Location", "/vod/new.ts"}};

  for (int status : {100, 400, 404, 409, 500, 503}) {
    EXPECT_EQ(invalidateAfterUnsafe(cache, c, s, status, answer), 0u) << status;
  }
  EXPECT_EQ(cache.lookup(s.target).kind, cache::LookupResult::Kind::kHit);
  EXPECT_EQ(cache.lookup(located).kind, cache::LookupResult::Kind::kHit);

  EXPECT_EQ(invalidateAfterUnsafe(cache, c, s, 201, answer), 2u);
  EXPECT_EQ(cache.lookup(s.target).kind, cache::LookupResult::Kind::kMiss);
  EXPECT_EQ(cache.lookup(located).kind, cache::LookupResult::Kind::kMiss);
  EXPECT_EQ(cache.lookup(unrelated).kind, cache::LookupResult::Kind::kHit);
}

TEST(Invalidation, ARedirectAnswerInvalidatesToo) {
  const conf::Config c = siteConfig();
  ManualClock clock;
  conf::RamCacheConfig ram;
  ram.size_bytes = 1 << 20;
  cache::Cache cache(ram, clock);
  const InvalidationScope s = scopeFor("edge.example", "/vod/post");
  store(cache, s.target, clock);
  EXPECT_EQ(invalidateAfterUnsafe(cache, c, s, 303, {{"Location", "/vod/done"}}), 1u);
  EXPECT_EQ(cache.lookup(s.target).kind, cache::LookupResult::Kind::kMiss);
}

}  // namespace
}  // namespace streamedge::proxy
