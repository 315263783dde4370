// The purge API below the admin listener: query parsing, URL → key exactly as a viewer request is
// keyed (vhost by host, route by path, the route's key policy), the vhost a HOST names, and
// runPurge on a real cache (answers, counts, 404s).
#include "proxy/purge.h"

#include <gtest/gtest.h>

#include <string>

#include "cache/purge_labels.h"
#include "cache/ssd_store.h"
#include "tests/unit/cache/ssd_test_util.h"

namespace streamedge::proxy {
namespace {

using Kind = PurgeRequest::Kind;
using namespace std::chrono_literals;

TEST(PurgeQuery, TheFourFormsAndSoft) {
  PurgeRequest r;
  std::string error;
  ASSERT_TRUE(parsePurgeQuery("url=http%3A%2F%2Fedge.example%2Fa.ts%3Fid%3D1%26x%3D2", r, error)) << error;
  EXPECT_EQ(r.kind, Kind::kUrl);
  EXPECT_EQ(r.url, "http://edge.example/a.ts?id=1&x=2");
  EXPECT_FALSE(r.soft);
  ASSERT_TRUE(parsePurgeQuery("host=edge.example&prefix=/live/&soft=1", r, error)) << error;
  EXPECT_EQ(r.kind, Kind::kPrefix);
  EXPECT_EQ(r.host, "edge.example");
  EXPECT_EQ(r.prefix, "/live/");
  EXPECT_TRUE(r.soft);
  ASSERT_TRUE(parsePurgeQuery("tag=show-42", r, error)) << error;
  EXPECT_EQ(r.kind, Kind::kTag);
  EXPECT_EQ(r.tag, "show-42");
  ASSERT_TRUE(parsePurgeQuery("tag=show-42&host=tv", r, error)) << error;
  EXPECT_EQ(r.kind, Kind::kTag);
  EXPECT_EQ(r.host, "tv");
  ASSERT_TRUE(parsePurgeQuery("host=tv&soft=0", r, error)) << error;
  EXPECT_EQ(r.kind, Kind::kHost);
  EXPECT_FALSE(r.soft);
}

TEST(PurgeQuery, AnythingElseIsRefusedWithAReason) {
  for (const char* q : {"", "prefix=/a", "url=http://a/&host=a", "tag=a&prefix=/", "host=a&host=b",
                        "host=a&soft=yes", "host=", "tag=a%2Cb", "host=a&what=1", "soft=1",
                        "host=a%20b"}) {
    PurgeRequest r;
    std::string error;
    EXPECT_FALSE(parsePurgeQuery(q, r, error)) << q;
    EXPECT_FALSE(error.empty()) << q;
  }
}

conf::Config siteConfig() {
  conf::Config c;
  conf::VhostConfig tv;
  tv.name = "tv";
  tv.hostnames = {"tv.example", "*.tv.example"};
  conf::RouteConfig api;
  api.prefix = "/api/";
  api.key.keep_params = {"id"};
  conf::RouteConfig root;
  root.prefix = "/";
  tv.routes = {api, root};
  conf::VhostConfig radio;
  radio.name = "radio";
  radio.hostnames = {"radio.example"};
  radio.routes = {root};
  c.vhosts = {tv, radio};
  return c;
}

TEST(PurgeUrl, MapsToTheKeyAViewerRequestWouldUse) {
  const conf::Config c = siteConfig();
  cache::CacheKey key;
  const conf::VhostConfig* vhost = nullptr;
  std::string error;
  ASSERT_TRUE(purgeKeyForUrl(c, "https://TV.example:443/live/./a/../seg1.ts?token=abc", key, vhost, error))
      << error;
  EXPECT_EQ(vhost->name, "tv");
  EXPECT_EQ(key, cache::makeKey("tv", "/live/seg1.ts", "")) << "token is dropped from keys";
  ASSERT_TRUE(purgeKeyForUrl(c, "http://cdn.tv.example/api/x?b=2&id=7", key, vhost, error));
  EXPECT_EQ(key, cache::makeKey("tv", "/api/x", "id=7")) << "the route keeps only id";
  ASSERT_TRUE(purgeKeyForUrl(c, "http://radio.example", key, vhost, error));
  EXPECT_EQ(key, cache::makeKey("radio", "/", ""));
  for (const char* bad : {"/live/a.ts", "ftp://tv.example/a", "http://nobody.example/a",
                          "http://user@tv.example/a", "http://tv.example/%2F"}) {
    EXPECT_FALSE(purgeKeyForUrl(c, bad, key, vhost, error)) << bad;
  }
}

TEST(PurgeHost, AVhostNameOrAHostItServes) {
  const conf::Config c = siteConfig();
  EXPECT_EQ(vhostForPurge(c, "tv")->name, "tv");
  EXPECT_EQ(vhostForPurge(c, "live.tv.example")->name, "tv");
  EXPECT_EQ(vhostForPurge(c, "RADIO.example:8080")->name, "radio");
  EXPECT_EQ(vhostForPurge(c, "nobody.example"), nullptr);
  conf::Config with_any = siteConfig();
  with_any.vhosts[1].hostnames.push_back("*");
  EXPECT_EQ(vhostForPurge(with_any, "nobody.example"), nullptr)
      << "a mistyped host never purges the catch-all vhost";
  EXPECT_EQ(vhostForPurge(with_any, "radio")->name, "radio");
  EXPECT_EQ(vhostForPurge(with_any, "tv.example")->name, "tv");
}

std::shared_ptr<cache::ResponseHead> head(std::string_view vhost, std::string_view path) {
  auto h = std::make_shared<cache::ResponseHead>();
  h->status = 200;
  h->reason = "OK";
  h->headers = {{"Surrogate-Key", "all"}};
  cache::internSurrogateKeys(h->headers);
  cache::addPurgeLabels(h->headers, vhost, path);
  h->content_length = 1;
  h->buildWire();
  return h;
}

void store(cache::Cache& cache, const Clock& clock, std::string_view vhost, std::string_view path) {
  cache::LookupResult r = cache.lookup(cache::makeKey(vhost, path, ""));
  ASSERT_EQ(r.kind, cache::LookupResult::Kind::kMiss);
  cache::Freshness f;
  f.response_time = clock.wallNow();
  f.lifetime = 3600s;
  r.fill.publishHead(head(vhost, path), f, true, true);
  r.fill.append(reinterpret_cast<const uint8_t*>("x"), 1);
  ASSERT_TRUE(r.fill.finish());
}

TEST(RunPurge, AnswersJsonWithTheObjectCountAndRefusesUnknownHosts) {
  const conf::Config c = siteConfig();
  ManualClock clock;
  conf::RamCacheConfig ram;
  ram.size_bytes = 1 << 20;
  ram.max_object_bytes = 1 << 20;
  cache::Cache cache(ram, clock);
  store(cache, clock, "tv", "/live/a.ts");
  store(cache, clock, "tv", "/live/b.ts");
  store(cache, clock, "radio", "/live/a.ts");

  PurgeRequest req;
  req.kind = Kind::kUrl;
  req.url = "http://tv.example/live/a.ts";
  PurgeResult r = runPurge(cache, c, req);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.objects, 1u);
  EXPECT_EQ(r.json.rfind("{\"kind\":\"url\",\"mode\":\"hard\",\"vhost\":\"tv\",\"objects\":1,", 0), 0u)
      << r.json;
  r = runPurge(cache, c, req);
  EXPECT_EQ(r.objects, 0u) << "already gone";

  req = PurgeRequest{};
  req.kind = Kind::kPrefix;
  req.host = "tv.example";
  req.prefix = "/live/";
  req.soft = true;
  r = runPurge(cache, c, req);
  EXPECT_EQ(r.objects, 1u);
  EXPECT_NE(r.json.find("\"mode\":\"soft\""), std::string::npos) << r.json;

  req = PurgeRequest{};
  req.kind = Kind::kTag;
  req.tag = "all";
  r = runPurge(cache, c, req);
  EXPECT_EQ(r.objects, 2u);
  EXPECT_NE(r.json.find("\"vhost\":null"), std::string::npos) << r.json;

  req = PurgeRequest{};
  req.kind = Kind::kHost;
  req.host = "nobody.example";
  r = runPurge(cache, c, req);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.json, "{\"error\":\"no virtual host for nobody.example\"}\n");
  EXPECT_EQ(purgeErrorJson("a \"b\"\n"), "{\"error\":\"a \\\"b\\\"\\u000a\"}\n");
}

TEST(RunPurge, AHardPurgeOfAWholeVhostDestroysItsSsdDataKey) {
  const conf::Config c = siteConfig();
  ManualClock clock;
  cache::testing::TempDir dir;
  ASSERT_TRUE(dir.ok());
  cache::SsdStoreOptions o;
  o.region_bytes = 16 * 1024;
  o.encrypt = true;
  o.key = cache::StoreKey{};
  o.key->fill(0x5a);
  o.keyring_path = dir.file("store.keys");
  o.log = nullptr;
  o.clock = &clock;
  auto opened = cache::SsdStore::open(std::make_unique<cache::MemoryDevice>(256 * 1024), o);
  ASSERT_TRUE(opened.isOk()) << opened.status().toString();
  std::unique_ptr<cache::SsdStore> ssd = std::move(*opened);
  conf::RamCacheConfig ram;
  ram.size_bytes = 1 << 20;
  ram.max_object_bytes = 1 << 20;
  cache::Cache cache(ram, clock);
  cache.attachSsd(ssd.get(), conf::SsdAdmission::kFill);
  for (const char* vhost : {"tv", "radio"}) {
    auto body = cache::Ref<cache::Body>::make(std::optional<uint64_t>(1));
    body->append(reinterpret_cast<const uint8_t*>("x"), 1);
    body->freeze();
    cache::Freshness f;
    f.response_time = clock.wallNow();
    f.lifetime = 3600s;
    ASSERT_TRUE(ssd->insert(cache::makeKey(vhost, "/live/a.ts", ""), head(vhost, "/live/a.ts"), f, body));
  }
  ASSERT_TRUE(ssd->flush().isOk());
  ASSERT_EQ(ssd->keyring()->vhosts().size(), 2u);

  PurgeRequest req;
  req.kind = Kind::kHost;
  req.host = "tv";
  req.soft = true;  // a soft purge keeps the key: the objects are only stale
  PurgeResult r = runPurge(cache, c, req);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.json.find("data_key"), std::string::npos) << r.json;
  EXPECT_EQ(ssd->keyring()->vhosts().size(), 2u);

  req.soft = false;
  r = runPurge(cache, c, req);
  EXPECT_EQ(r.status, 200) << r.json;
  EXPECT_EQ(r.objects, 1u);
  EXPECT_TRUE(r.data_key_destroyed);
  EXPECT_NE(r.json.find(",\"objects\":1,\"data_key_destroyed\":true,"), std::string::npos) << r.json;
  ASSERT_EQ(ssd->keyring()->vhosts().size(), 1u);
  EXPECT_EQ(ssd->keyring()->vhosts()[0].first, "radio");
  EXPECT_EQ(ssd->stats().data_keys_destroyed, 1u);
  // Again: nothing left to destroy.
  r = runPurge(cache, c, req);
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.json.find("\"data_key_destroyed\":false"), std::string::npos) << r.json;
  // Other purge forms never touch the keyring.
  req = PurgeRequest{};
  req.kind = Kind::kPrefix;
  req.host = "radio";
  req.prefix = "/live/";
  r = runPurge(cache, c, req);
  EXPECT_EQ(r.objects, 1u);
  EXPECT_EQ(r.json.find("data_key"), std::string::npos) << r.json;
  EXPECT_EQ(ssd->keyring()->vhosts().size(), 1u);
  cache.detachSsd();
}

}  // namespace
}  // namespace streamedge::proxy
