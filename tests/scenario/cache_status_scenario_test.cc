// Targeted cache control (RFC 9213) and Cache-Status (RFC 9211) end to end: the real binary in
// front of the origin simulator, whose hdr= knob sends any response field. Each test owns a
// path prefix; assertions are on the viewer's header fields, exact bytes and origin counters.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tests/scenario/scenario_env.h"
#include "tests/support/herd.h"

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;
using testsupport::simBody;

// Our member of a Cache-Status list: its name and parameters ("hit" → "?1").
struct CacheStatusMember {
  std::string name;
  std::map<std::string, std::string> params;
  bool has(const std::string& key) const { return params.count(key) != 0; }
  std::string get(const std::string& key) const {
    auto it = params.find(key);
    return it == params.end() ? std::string() : it->second;
  }
  long ttl() const { return std::stol(get("ttl")); }
};

std::string trimmed(std::string s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.erase(s.begin());
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.pop_back();
  return s;
}

// The last member of the Cache-Status field (the cache nearest the viewer: us). Our members
// carry no strings, so splitting on ',' and ';' is exact for them.
CacheStatusMember lastMember(const std::string& field) {
  CacheStatusMember m;
  const std::string member = trimmed(field.substr(field.rfind(',') == std::string::npos ? 0 : field.rfind(',') + 1));
  size_t pos = 0;
  bool first = true;
  while (pos <= member.size()) {
    size_t semi = member.find(';', pos);
    if (semi == std::string::npos) semi = member.size();
    const std::string part = trimmed(member.substr(pos, semi - pos));
    if (first) {
      m.name = part;
      first = false;
    } else if (!part.empty()) {
      const size_t eq = part.find('=');
      m.params[part.substr(0, eq)] = eq == std::string::npos ? "?1" : part.substr(eq + 1);
    }
    pos = semi + 1;
  }
  return m;
}

CacheStatusMember cacheStatus(const HttpResponse& r) {
  const std::vector<std::string> values = r.headerValues("Cache-Status");
  std::string joined;
  for (const std::string& v : values) joined += (joined.empty() ? "" : ", ") + v;
  return lastMember(joined);
}

std::string describe(const HttpResponse& r) { return r.raw_head; }

// ---------------------------------------------------------------- targeted cache control

TEST_F(ScenarioTest, CdnCacheControlStoresWhatCacheControlForbidsAndViewersStillGetNoStore) {
  const std::string target =
      "/obj/tcc/cdn.ts?size=2000&cc=no-store&hdr=CDN-Cache-Control%3Amax-age%3D60";
  HttpResponse first = get(target);
  ASSERT_TRUE(first.ok()) << first.error << proxyLog();
  EXPECT_EQ(first.header("X-Cache"), "MISS");
  EXPECT_EQ(first.header("Cache-Control"), "no-store") << describe(first);
  // RFC 9213 §3: passed on for CDN caches further down.
  EXPECT_EQ(first.header("CDN-Cache-Control"), "max-age=60");
  const CacheStatusMember miss = cacheStatus(first);
  EXPECT_TRUE(miss.has("stored")) << describe(first);
  EXPECT_GE(miss.ttl(), 59);
  EXPECT_LE(miss.ttl(), 60);

  HttpResponse second = get(target);
  ASSERT_TRUE(second.ok()) << second.error;
  EXPECT_EQ(second.header("X-Cache"), "HIT") << describe(second);
  EXPECT_EQ(second.header("Cache-Control"), "no-store") << describe(second);
  EXPECT_EQ(second.body, simBody("/obj/tcc/cdn.ts", 2000));
  EXPECT_EQ(originCount("/obj/tcc/cdn.ts"), 1);
}

TEST_F(ScenarioTest, OwnTargetFieldWinsAndNeverReachesTheViewer) {
  // The own target beats CDN-Cache-Control (which says no-store here) and Cache-Control.
  const std::string target =
      "/obj/tcc/own.ts?size=1500&cc=no-store&hdr=Streamedge-Cache-Control%3Amax-age%3D60"
      "&hdr=CDN-Cache-Control%3Ano-store";
  HttpResponse first = get(target);
  ASSERT_TRUE(first.ok()) << first.error << proxyLog();
  HttpResponse second = get(target);
  EXPECT_EQ(second.header("X-Cache"), "HIT") << describe(second);
  EXPECT_EQ(originCount("/obj/tcc/own.ts"), 1);
  for (const HttpResponse* r : {&first, &second}) {
    EXPECT_FALSE(r->hasHeader("Streamedge-Cache-Control")) << describe(*r);
    EXPECT_EQ(r->raw_head.find("own-cache-control"), std::string::npos) << describe(*r);
    EXPECT_EQ(r->header("Cache-Control"), "no-store");
    EXPECT_EQ(r->header("CDN-Cache-Control"), "no-store");
  }
  // A HEAD and a conditional 304 from the stored object do not leak it either.
  HttpResponse head = testsupport::httpRequest(port(), "HEAD", target);
  EXPECT_FALSE(head.hasHeader("Streamedge-Cache-Control")) << describe(head);
  HttpResponse not_modified =
      get(target, {{"If-None-Match", testsupport::simEtag("/obj/tcc/own.ts", 1500)}});
  EXPECT_EQ(not_modified.status, 304);
  EXPECT_FALSE(not_modified.hasHeader("Streamedge-Cache-Control")) << describe(not_modified);
}

TEST_F(ScenarioTest, TargetedFieldThatDoesNotParseIsIgnored) {
  // "Max-Age" is not a Structured Field key (lower case only): the field is ignored and
  // Cache-Control: no-store decides. The own target is still never forwarded.
  const std::string target =
      "/obj/tcc/bad.ts?size=800&cc=no-store&hdr=Streamedge-Cache-Control%3AMax-Age%3D60"
      "&hdr=CDN-Cache-Control%3Amax-age%3D60%2C";
  HttpResponse first = get(target);
  ASSERT_TRUE(first.ok()) << first.error << proxyLog();
  EXPECT_FALSE(first.hasHeader("Streamedge-Cache-Control"));
  EXPECT_FALSE(cacheStatus(first).has("stored")) << describe(first);
  HttpResponse second = get(target);
  EXPECT_EQ(second.header("X-Cache"), "MISS") << describe(second);
  EXPECT_EQ(originCount("/obj/tcc/bad.ts"), 2);
}

TEST_F(ScenarioTest, A304RefreshUsesTheTargetedFieldToo) {
  // Stored for 1 s by CDN-Cache-Control against Cache-Control: no-store; the revalidation's 304
  // carries the same fields and must refresh it with the same precedence (else no-store would
  // make it a default-TTL object, or the next request a miss).
  const std::string target =
      "/obj/tcc/reval.ts?size=900&cc=no-store&hdr=CDN-Cache-Control%3Amax-age%3D1";
  ASSERT_EQ(get(target).header("X-Cache"), "MISS") << proxyLog();
  std::this_thread::sleep_for(2100ms);
  HttpResponse revalidated = get(target);
  ASSERT_TRUE(revalidated.ok()) << revalidated.error;
  EXPECT_EQ(revalidated.body, simBody("/obj/tcc/reval.ts", 900));
  EXPECT_EQ(revalidated.header("Cache-Control"), "no-store");
  const CacheStatusMember cs = cacheStatus(revalidated);
  EXPECT_EQ(cs.get("fwd"), "stale") << describe(revalidated);
  EXPECT_EQ(cs.get("fwd-status"), "304") << describe(revalidated);
  EXPECT_LE(cs.ttl(), 1);
  EXPECT_EQ(originCount("/obj/tcc/reval.ts", /*not_modified=*/true), 1);
  HttpResponse hit = get(target);
  EXPECT_EQ(hit.header("X-Cache"), "HIT") << describe(hit);
}

TEST_F(ScenarioTest, ConfiguredTargetNameAndSurrogateControlFollowTheConfig) {
  start("", "64MiB",
        "[cache]\ncache_control_target = \"Acme-Cache-Control\"\nsurrogate_control = true\n");
  // Surrogate-Control (enabled) beats Cache-Control and is consumed here.
  const std::string sc = "/obj/tcc/sc.ts?size=700&cc=no-store&hdr=Surrogate-Control%3Amax-age%3D60";
  HttpResponse a = get(sc);
  ASSERT_TRUE(a.ok()) << a.error << proxyLog();
  EXPECT_FALSE(a.hasHeader("Surrogate-Control")) << describe(a);
  EXPECT_EQ(get(sc).header("X-Cache"), "HIT");
  // CDN-Cache-Control beats Surrogate-Control.
  const std::string cdn = "/obj/tcc/cdn-over-sc.ts?size=700&hdr=Surrogate-Control%3Amax-age%3D60"
                          "&hdr=CDN-Cache-Control%3Ano-store";
  ASSERT_TRUE(get(cdn).ok());
  EXPECT_EQ(get(cdn).header("X-Cache"), "MISS");
  // The configured name is the own target; the default name is now someone else's field.
  const std::string acme = "/obj/tcc/acme.ts?size=700&cc=no-store&hdr=Acme-Cache-Control%3Amax-age%3D60"
                           "&hdr=Streamedge-Cache-Control%3Amax-age%3D5";
  HttpResponse b = get(acme);
  ASSERT_TRUE(b.ok()) << b.error;
  EXPECT_FALSE(b.hasHeader("Acme-Cache-Control")) << describe(b);
  EXPECT_EQ(b.header("Streamedge-Cache-Control"), "max-age=5");
  HttpResponse b2 = get(acme);
  EXPECT_EQ(b2.header("X-Cache"), "HIT");
  EXPECT_GE(cacheStatus(b2).ttl(), 55) << describe(b2);  // 60 s from Acme, not 5 s
}

TEST_F(ScenarioTest, SurrogateControlIsPassedOnAndIgnoredByDefault) {
  const std::string target = "/obj/tcc/sc-off.ts?size=600&cc=no-store&hdr=Surrogate-Control%3Amax-age%3D60";
  HttpResponse a = get(target);
  ASSERT_TRUE(a.ok()) << a.error << proxyLog();
  EXPECT_EQ(a.header("Surrogate-Control"), "max-age=60");
  EXPECT_EQ(get(target).header("X-Cache"), "MISS");
  EXPECT_EQ(originCount("/obj/tcc/sc-off.ts"), 2);
}

// ---------------------------------------------------------------- Cache-Status

TEST_F(ScenarioTest, CacheStatusOnMissHitAndUncacheableAnswers) {
  HttpResponse miss = get("/obj/cs/a.ts?size=1000&cc=max-age%3D300");
  ASSERT_TRUE(miss.ok()) << miss.error << proxyLog();
  EXPECT_EQ(miss.headerValues("Cache-Status").size(), 1u) << describe(miss);
  const CacheStatusMember m = cacheStatus(miss);
  EXPECT_EQ(m.name, "streamedge");
  EXPECT_EQ(m.get("fwd"), "uri-miss") << describe(miss);
  EXPECT_EQ(m.get("fwd-status"), "200");
  EXPECT_TRUE(m.has("stored"));
  EXPECT_FALSE(m.has("hit") || m.has("collapsed"));
  EXPECT_GE(m.ttl(), 299);
  EXPECT_LE(m.ttl(), 300);
  EXPECT_EQ(miss.header("X-Cache"), "MISS");  // kept for existing dashboards

  HttpResponse hit = get("/obj/cs/a.ts?size=1000&cc=max-age%3D300");
  const CacheStatusMember h = cacheStatus(hit);
  EXPECT_TRUE(h.has("hit")) << describe(hit);
  EXPECT_FALSE(h.has("fwd") || h.has("fwd-status") || h.has("stored"));
  EXPECT_GE(h.ttl(), 298);
  EXPECT_EQ(hit.header("X-Cache"), "HIT");
  // A 206 and a 304 answered from the stored object are hits too.
  EXPECT_TRUE(cacheStatus(get("/obj/cs/a.ts?size=1000&cc=max-age%3D300", {{"Range", "bytes=0-9"}}))
                  .has("hit"));
  EXPECT_TRUE(cacheStatus(get("/obj/cs/a.ts?size=1000&cc=max-age%3D300",
                              {{"If-None-Match", testsupport::simEtag("/obj/cs/a.ts", 1000)}}))
                  .has("hit"));

  HttpResponse nostore = get("/obj/cs/ns.ts?size=100&cc=no-store");
  const CacheStatusMember n = cacheStatus(nostore);
  EXPECT_EQ(n.get("fwd"), "uri-miss") << describe(nostore);
  EXPECT_EQ(n.get("fwd-status"), "200");
  EXPECT_FALSE(n.has("stored") || n.has("ttl")) << describe(nostore);

  ASSERT_TRUE(testsupport::simFault(simPort(), "/obj/cs/err.ts", "503", 1));
  HttpResponse error = get("/obj/cs/err.ts?size=100");
  EXPECT_EQ(error.status, 503);
  EXPECT_EQ(cacheStatus(error).get("fwd-status"), "503") << describe(error);
  EXPECT_FALSE(cacheStatus(error).has("stored"));
}

TEST_F(ScenarioTest, CacheStatusOnStaleAndRevalidatedAnswers) {
  const std::string swr = "/obj/cs/swr.ts?size=500&cc=max-age%3D1%2C%20stale-while-revalidate%3D30";
  const std::string reval = "/obj/cs/reval.ts?size=500&cc=max-age%3D1";
  ASSERT_EQ(get(swr).header("X-Cache"), "MISS") << proxyLog();
  ASSERT_EQ(get(reval).header("X-Cache"), "MISS");
  std::this_thread::sleep_for(2100ms);

  HttpResponse stale = get(swr);
  EXPECT_EQ(stale.header("X-Cache"), "STALE");
  const CacheStatusMember s = cacheStatus(stale);
  EXPECT_EQ(s.get("fwd"), "stale") << describe(stale);
  EXPECT_LT(s.ttl(), 0) << describe(stale);
  EXPECT_FALSE(s.has("hit") || s.has("stored"));

  HttpResponse revalidated = get(reval);
  EXPECT_EQ(revalidated.header("X-Cache"), "MISS");
  const CacheStatusMember r = cacheStatus(revalidated);
  EXPECT_EQ(r.get("fwd"), "stale") << describe(revalidated);
  EXPECT_EQ(r.get("fwd-status"), "304");
  EXPECT_TRUE(r.has("stored"));
  EXPECT_GE(r.ttl(), 0);

  // stale-if-error: the origin fails, the stored answer is served stale.
  const std::string sie = "/obj/cs/sie.ts?size=500&cc=max-age%3D1%2C%20stale-if-error%3D60";
  ASSERT_EQ(get(sie).header("X-Cache"), "MISS");
  std::this_thread::sleep_for(2100ms);
  ASSERT_TRUE(testsupport::simFault(simPort(), "/obj/cs/sie.ts", "500", 10));
  HttpResponse fallback = get(sie);
  EXPECT_EQ(fallback.header("X-Cache"), "STALE");
  EXPECT_EQ(cacheStatus(fallback).get("fwd"), "stale") << describe(fallback);
  EXPECT_LT(cacheStatus(fallback).ttl(), 0);
}

TEST_F(ScenarioTest, CacheStatusOnCoalescedAnswers) {
  // 20 viewers at once on an object the origin takes ~1 s to send: one fetch, the rest wait
  // on it (collapsed) — or, arriving after it completed, hit.
  const std::string path = "/obj/cs/herd.ts";
  testsupport::HerdOptions options;
  options.port = port();
  options.target = path + "?size=200000&rate=200000";
  options.clients = 20;
  options.expect_body_path = path;
  options.expect_body_size = 200000;
  const testsupport::HerdResult herd = testsupport::runHerd(options);
  ASSERT_EQ(herd.ok, options.clients) << herd.firstError() << proxyLog();
  EXPECT_EQ(originCount(path), 1);
  int misses = 0, collapsed = 0;
  for (const testsupport::HerdClientResult& c : herd.results) {
    const CacheStatusMember cs = lastMember(c.cache_status);
    EXPECT_EQ(cs.name, "streamedge") << c.cache_status;
    if (c.x_cache == "MISS") {
      ++misses;
      EXPECT_FALSE(cs.has("collapsed")) << c.cache_status;
      EXPECT_EQ(cs.get("fwd"), "uri-miss") << c.cache_status;
    } else if (c.x_cache == "COALESCED") {
      ++collapsed;
      EXPECT_TRUE(cs.has("collapsed")) << c.cache_status;
      EXPECT_EQ(cs.get("fwd"), "uri-miss") << c.cache_status;
      EXPECT_EQ(cs.get("fwd-status"), "200") << c.cache_status;
      EXPECT_TRUE(cs.has("stored")) << c.cache_status;
    } else {
      EXPECT_EQ(c.x_cache, "HIT");
      EXPECT_TRUE(cs.has("hit")) << c.cache_status;
    }
  }
  EXPECT_EQ(misses, 1);
  EXPECT_GE(collapsed, 1);
}

TEST_F(ScenarioTest, CacheStatusOnPassAndRefusedAnswers) {
  start("  forward_other_methods = true\n"
        "\n  [[vhost.route]]\n  prefix = \"/obj/cs-pass/\"\n  origin_group = \"main\"\n"
        "  cache = \"pass\"\n");
  HttpResponse pass = get("/obj/cs-pass/x?size=100&cc=max-age%3D60");
  ASSERT_TRUE(pass.ok()) << pass.error << proxyLog();
  EXPECT_EQ(pass.header("X-Cache"), "PASS");
  const CacheStatusMember p = cacheStatus(pass);
  EXPECT_EQ(p.get("fwd"), "bypass") << describe(pass);
  EXPECT_EQ(p.get("fwd-status"), "200");
  EXPECT_FALSE(p.has("stored") || p.has("ttl") || p.has("hit"));

  HttpResponse post = testsupport::httpRequest(port(), "POST", "/obj/cs/post?size=10", {}, 10s, "x");
  EXPECT_EQ(post.header("X-Cache"), "PASS");
  EXPECT_EQ(cacheStatus(post).get("fwd"), "method") << describe(post);
  EXPECT_EQ(cacheStatus(post).get("fwd-status"), "405");  // the simulator refuses POST itself

  // Refused here before any lookup: the cache's name alone.
  start("");
  HttpResponse refused = testsupport::httpRequest(port(), "DELETE", "/obj/cs/d", {}, 10s);
  EXPECT_EQ(refused.status, 405);
  EXPECT_EQ(refused.header("Cache-Status"), "streamedge") << describe(refused);
}

}  // namespace
}  // namespace streamedge::scenario
