// The purge API with the real binary (2 workers) and the origin simulator: purges by URL, path
// prefix, surrogate key and whole vhost remove exactly their objects (the others stay hits, on
// every worker), a soft purge makes the next request a conditional one, Surrogate-Key never
// reaches a viewer, admin tokens with scopes refuse with 401/403 and every refusal and purge is
// in the audit log, and with an SSD store purged objects stay misses after a restart.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "tests/scenario/scenario_env.h"

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;

constexpr const char* kOpsToken = "ops-secret";  // scopes: all
constexpr const char* kOpsHash = "32323cfa9ec9d62750daad0836a4cf3d7b60d23723b7852a529667deed01669f";
constexpr const char* kScrapeToken = "scrape-secret";  // scopes: metrics
constexpr const char* kScrapeHash =
    "46ef8859b3e163a8ccb7f75865d2257be81249606a80c9dca854d49669eb5f2b";

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class PurgeScenarioTest : public ScenarioTest {
 protected:
  void SetUp() override {
    std::string error;
    sim_ = testsupport::startOriginSim({"--name", "dc-a"}, &error);
    ASSERT_TRUE(sim_) << error;
    dir_.emplace("streamedge-purge");
    audit_ = dir_->file("audit.log");
    store_ = dir_->file("store");
  }

  std::string config(bool ssd) const {
    std::string c =
        "[server]\nworkers = 2\n\n"
        "[admin]\naddress = \"127.0.0.1:0\"\n"
        "[[admin.token]]\nname = \"ops\"\nsha256 = \"" + std::string(kOpsHash) +
        "\"\nscopes = [\"all\"]\n"
        "[[admin.token]]\nname = \"scraper\"\nsha256 = \"" + std::string(kScrapeHash) +
        "\"\nscopes = [\"metrics\"]\n\n"
        "[[listener]]\naddress = \"127.0.0.1:0\"\n\n"
        "[cache.ram]\nsize = \"64MiB\"\n\n"
        "[log]\naccess_log = \"off\"\naudit = \"" + audit_ + "\"\n\n"
        "[[origin_group]]\nname = \"main\"\n"
        "  [[origin_group.origin]]\n  url = \"http://127.0.0.1:" + std::to_string(simPort()) +
        "\"\n  dc = \"dc-a\"\n\n"
        "[[vhost]]\nname = \"tv\"\nhostnames = [\"tv.example\"]\n"
        "  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"main\"\n\n"
        "[[vhost]]\nname = \"radio\"\nhostnames = [\"*\"]\n"
        "  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"main\"\n";
    if (ssd) {
      c += "\n[cache.ssd]\npath = \"" + store_ +
           "\"\nsize = \"16MiB\"\nregion_size = \"1MiB\"\nencrypt = false\nadmission = \"fill\"\n";
    }
    return c;
  }

  void startProxy(bool ssd = false) {
    proxy_.reset();
    std::string error;
    proxy_ = testsupport::startStreamedge(config(ssd), &error);
    ASSERT_TRUE(proxy_) << error;
    if (!ssd) return;
    std::string status;
    for (int attempt = 0; attempt < 200; ++attempt) {  // ≤ 10 s for the index rebuild
      status = admin("GET", "/status").body;
      if (status.find("\"rebuilding\":false") != std::string::npos) return;
      std::this_thread::sleep_for(50ms);
    }
    FAIL() << "the SSD index was not rebuilt within 10 s: " << status;
  }

  HttpResponse admin(const std::string& method, const std::string& target,
                     const char* token = kOpsToken) {
    Headers h;
    if (token) h.emplace_back("Authorization", std::string("Bearer ") + token);
    return testsupport::httpRequest(proxy_->admin_port, method, target, h, 15s);
  }
  HttpResponse purge(const std::string& query, const char* token = kOpsToken) {
    return admin("POST", "/purge?" + query, token);
  }
  HttpResponse getOn(const std::string& host, const std::string& target) {
    return get(target, {{"Host", host}});
  }
  // X-Cache of `target` on `host`, asked `times` times on fresh connections (so on both
  // workers): "HIT" when every answer was a hit, else the first other value.
  std::string cacheState(const std::string& host, const std::string& target, int times = 6) {
    std::string state = "HIT";
    for (int i = 0; i < times; ++i) {
      const HttpResponse r = getOn(host, target);
      EXPECT_EQ(r.status, 200) << r.error;
      const std::string x = r.header("X-Cache");
      if (x != "HIT" && state == "HIT") state = x;
    }
    return state;
  }

  std::string audit_;
  std::string store_;
};

// Objects: (host, target). The query asks the simulator for the surrogate keys.
const std::string kA = "/obj/purge/live/a.ts?size=2000&hdr=Surrogate-Key:show-1%20live";
const std::string kB = "/obj/purge/live/b.ts?size=2000&hdr=Cache-Tag:show-2,live";
const std::string kC = "/obj/purge/vod/c.ts?size=2000&hdr=Surrogate-Key:show-1";

TEST_F(PurgeScenarioTest, EachPurgeFormRemovesExactlyItsObjectsOnEveryWorker) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  const std::vector<std::pair<std::string, std::string>> objects = {
      {"tv.example", kA}, {"tv.example", kB}, {"tv.example", kC}, {"radio.example", kA}};
  for (const auto& [host, target] : objects) {
    const HttpResponse r = getOn(host, target);
    ASSERT_EQ(r.status, 200) << r.error;
    EXPECT_EQ(r.header("X-Cache"), "MISS");
    // Never to a viewer, neither on the fill nor on hits.
    EXPECT_EQ(r.header("Surrogate-Key"), "") << r.raw_head;
    EXPECT_EQ(r.header("Cache-Tag"), "") << r.raw_head;
    EXPECT_EQ(r.raw_head.find(":surrogate-keys"), std::string::npos) << r.raw_head;
    EXPECT_EQ(r.raw_head.find(":vhost"), std::string::npos) << r.raw_head;
    EXPECT_EQ(cacheState(host, target), "HIT");
  }
  const HttpResponse hit = getOn("tv.example", kA);
  EXPECT_EQ(hit.raw_head.find("show-1"), std::string::npos) << hit.raw_head;

  // By URL (percent-encoded, with its query): b on tv only.
  HttpResponse p = purge("url=http%3A%2F%2Ftv.example%2Fobj%2Fpurge%2Flive%2Fb.ts%3Fsize%3D2000%26hdr%3DCache-Tag%3Ashow-2%2Clive");
  ASSERT_EQ(p.status, 200) << p.body;
  EXPECT_EQ(p.header("Content-Type"), "application/json");
  EXPECT_NE(p.body.find("\"kind\":\"url\",\"mode\":\"hard\",\"vhost\":\"tv\",\"objects\":1,"),
            std::string::npos) << p.body;
  EXPECT_EQ(cacheState("tv.example", kB, 1), "MISS");
  EXPECT_EQ(cacheState("tv.example", kB), "HIT") << "filled again, once";
  EXPECT_EQ(cacheState("tv.example", kA), "HIT");
  EXPECT_EQ(cacheState("tv.example", kC), "HIT");
  EXPECT_EQ(cacheState("radio.example", kA), "HIT");

  // By prefix on tv: a and b (radio's a, same path, stays).
  p = purge("host=tv.example&prefix=/obj/purge/live/");
  ASSERT_EQ(p.status, 200) << p.body;
  EXPECT_NE(p.body.find("\"objects\":2,"), std::string::npos) << p.body;
  EXPECT_EQ(cacheState("radio.example", kA), "HIT");
  EXPECT_EQ(cacheState("tv.example", kC), "HIT");
  EXPECT_EQ(cacheState("tv.example", kA, 1), "MISS");
  EXPECT_EQ(cacheState("tv.example", kB, 1), "MISS");

  // By surrogate key: show-1 is on tv's a and c and on radio's a.
  const long origin_c = originCount("/obj/purge/vod/c.ts");
  p = purge("tag=show-1");
  ASSERT_EQ(p.status, 200) << p.body;
  EXPECT_NE(p.body.find("\"objects\":3,"), std::string::npos) << p.body;
  EXPECT_EQ(cacheState("tv.example", kB), "HIT") << "show-2 stays";
  EXPECT_EQ(cacheState("tv.example", kC, 1), "MISS");
  EXPECT_EQ(originCount("/obj/purge/vod/c.ts"), origin_c + 1);

  // The whole radio vhost (a customer leaving): its one object; tv's stay.
  EXPECT_EQ(cacheState("radio.example", kA, 1), "MISS");
  p = purge("host=radio");
  ASSERT_EQ(p.status, 200) << p.body;
  EXPECT_NE(p.body.find("\"vhost\":\"radio\",\"objects\":1,"), std::string::npos) << p.body;
  EXPECT_EQ(cacheState("radio.example", kA, 1), "MISS");
  EXPECT_EQ(cacheState("tv.example", kB), "HIT");
  EXPECT_EQ(cacheState("tv.example", kC), "HIT");

  EXPECT_EQ(purge("host=nobody.invalid").status, 404);
  EXPECT_EQ(purge("prefix=/obj/").status, 400);
  EXPECT_EQ(admin("GET", "/purge?host=tv").status, 405);
  const std::string m = admin("GET", "/metrics").body;
  EXPECT_EQ(sample(m, "streamedge_purges_total{kind=\"prefix\",result=\"ok\"}"), 1.0) << m;
  EXPECT_EQ(sample(m, "streamedge_purges_total{kind=\"host\",result=\"error\"}"), 1.0);
  EXPECT_EQ(sample(m, "streamedge_purged_objects_total{kind=\"tag\",mode=\"hard\"}"), 3.0);
}

TEST_F(PurgeScenarioTest, SiteScopeWithoutAClusterIsRefusedAndPurgesNothing) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  ASSERT_EQ(getOn("tv.example", kA).status, 200);
  ASSERT_EQ(cacheState("tv.example", kA), "HIT");
  // A lone server has no site: refused before anything is purged here.
  const HttpResponse p = purge("host=tv&prefix=/obj/purge/&scope=site");
  EXPECT_EQ(p.status, 400) << p.body;
  EXPECT_NE(p.body.find("scope=site needs a [cluster]"), std::string::npos) << p.body;
  EXPECT_EQ(cacheState("tv.example", kA), "HIT");
  EXPECT_EQ(purge("host=tv&prefix=/obj/purge/&scope=everywhere").status, 400);
  // scope=local is the plain purge.
  const HttpResponse local = purge("host=tv&prefix=/obj/purge/&scope=local");
  EXPECT_EQ(local.status, 200) << local.body;
  EXPECT_NE(local.body.find("\"objects\":1,"), std::string::npos) << local.body;
  EXPECT_EQ(cacheState("tv.example", kA, 1), "MISS");
}

TEST_F(PurgeScenarioTest, SoftPurgeKeepsTheObjectAndTheNextRequestRevalidatesIt) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  const std::string target = "/obj/soft/x.ts?size=3000&hdr=Surrogate-Key:soft-1";
  const std::string path = "/obj/soft/x.ts";
  ASSERT_EQ(getOn("tv.example", target).status, 200);
  ASSERT_EQ(cacheState("tv.example", target), "HIT");
  ASSERT_EQ(originCount(path), 1);
  HttpResponse p = purge("tag=soft-1&host=tv&soft=1");
  ASSERT_EQ(p.status, 200) << p.body;
  EXPECT_NE(p.body.find("\"kind\":\"tag\",\"mode\":\"soft\",\"vhost\":\"tv\",\"objects\":1,"),
            std::string::npos) << p.body;
  const HttpResponse r = getOn("tv.example", target);
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body, testsupport::simBody(path, 3000));
  EXPECT_EQ(originCount(path), 2);
  EXPECT_EQ(originCount(path, /*not_modified=*/true), 1) << "a conditional request, answered 304";
  EXPECT_EQ(cacheState("tv.example", target), "HIT") << "fresh again after the 304";
  EXPECT_EQ(originCount(path), 2);
}

TEST_F(PurgeScenarioTest, TokensWithoutTheScopeAreRefusedAndEverythingIsAudited) {
  ASSERT_NO_FATAL_FAILURE(startProxy());
  EXPECT_EQ(admin("GET", "/healthz", nullptr).status, 200) << "probes stay open";
  EXPECT_EQ(admin("GET", "/readyz", nullptr).status, 200);
  EXPECT_EQ(admin("GET", "/metrics", kScrapeToken).status, 200);
  EXPECT_EQ(admin("GET", "/status", kScrapeToken).status, 403);
  const HttpResponse none = purge("host=tv", nullptr);
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.header("WWW-Authenticate").rfind("Bearer", 0), 0u);
  EXPECT_EQ(purge("host=tv", "wrong-token").status, 401);
  EXPECT_EQ(purge("host=tv", kScrapeToken).status, 403);
  EXPECT_EQ(purge("host=tv").status, 200);

  const std::string m = admin("GET", "/metrics", kScrapeToken).body;
  EXPECT_EQ(sample(m, "streamedge_admin_requests_refused_total{reason=\"unauthenticated\"}"), 2.0) << m;
  EXPECT_EQ(sample(m, "streamedge_admin_requests_refused_total{reason=\"forbidden\"}"), 2.0) << m;

  std::string audit;
  for (int i = 0; i < 50 && audit.find("\"action\":\"purge\"") == std::string::npos; ++i) {
    audit = slurp(audit_);  // written before the answer; a bounded wait all the same
    std::this_thread::sleep_for(20ms);
  }
  std::istringstream lines(audit);
  std::vector<std::string> v;
  for (std::string line; std::getline(lines, line);) v.push_back(line);
  ASSERT_EQ(v.size(), 5u) << audit;
  EXPECT_NE(v[0].find("\"who\":\"scraper\",\"client\":\"127.0.0.1\",\"action\":\"refused\",\"method\":\"GET\",\"path\":\"/status\",\"result\":\"refused\",\"status\":403"), std::string::npos) << v[0];
  EXPECT_NE(v[1].find("\"who\":\"-\""), std::string::npos) << v[1];
  EXPECT_NE(v[1].find("\"status\":401,\"detail\":\"no token\""), std::string::npos) << v[1];
  EXPECT_NE(v[2].find("\"detail\":\"unknown token\""), std::string::npos) << v[2];
  EXPECT_NE(v[3].find("\"who\":\"scraper\""), std::string::npos) << v[3];
  EXPECT_NE(v[3].find("\"detail\":\"missing scope purge\""), std::string::npos) << v[3];
  EXPECT_NE(v[4].find("\"who\":\"ops\""), std::string::npos) << v[4];
  EXPECT_NE(v[4].find("\"action\":\"purge\",\"method\":\"POST\",\"path\":\"/purge\",\"kind\":\"host\",\"mode\":\"hard\",\"host\":\"tv\",\"vhost\":\"tv\",\"result\":\"ok\",\"status\":200,\"objects\":0"), std::string::npos) << v[4];
  // And in the security log ([log] security_log, stderr by default): the reason, the token's
  // name when it was known, the client anonymised like the access log's.
  for (const std::string line :
       {R"({"event":"admin_refused","reason":"missing_scope","vhost":"-","client":"127.0.0.0",)"
        R"("method":"GET","path":"/status","source":"admin","key_id":"scraper"})",
        R"({"event":"admin_refused","reason":"no_token","vhost":"-","client":"127.0.0.0",)"
        R"("method":"POST","path":"/purge","source":"admin","key_id":"-"})",
        R"("event":"admin_refused","reason":"unknown_token")",
        R"("reason":"missing_scope","vhost":"-","client":"127.0.0.0","method":"POST")"}) {
    const std::string needle = line.front() == '{' ? line.substr(1) : line;
    EXPECT_TRUE(proxy_->process.waitForLine(needle, 5s, 0)) << needle << "\n" << proxyLog();
  }
  for (const char* secret : {kOpsToken, kScrapeToken, "wrong-token", kOpsHash}) {
    EXPECT_EQ(audit.find(secret), std::string::npos) << "a token in the audit log";
    EXPECT_EQ(proxy_->process.log().find(secret), std::string::npos) << "a token in the log";
  }
}

TEST_F(PurgeScenarioTest, PurgedObjectsStayMissesAfterARestartWithAnSsdStore) {
  ASSERT_NO_FATAL_FAILURE(startProxy(/*ssd=*/true));
  const std::string keep = "/obj/ssd/keep/k.ts?size=5000&hdr=Surrogate-Key:k";
  const std::string gone1 = "/obj/ssd/gone/g1.ts?size=5000&hdr=Surrogate-Key:g";
  const std::string gone2 = "/obj/ssd/other/g2.ts?size=5000&hdr=Surrogate-Key:g";
  for (const std::string& t : {keep, gone1, gone2}) ASSERT_EQ(getOn("tv.example", t).status, 200);
  // admission "fill": on the SSD once the writer had them; wait for the index to hold all three.
  double on_ssd = 0;
  for (int i = 0; i < 100 && on_ssd < 3; ++i) {
    on_ssd = metricValue(admin("GET", "/metrics").body, "streamedge_cache_objects", "tier=\"ssd\"");
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_GE(on_ssd, 3) << proxyLog();
  HttpResponse p = purge("tag=g");
  ASSERT_EQ(p.status, 200) << p.body;
  EXPECT_NE(p.body.find("\"objects\":2,"), std::string::npos) << p.body;
  std::this_thread::sleep_for(1500ms);  // the writer's idle sync puts the tombstones on the device
  ASSERT_EQ(proxy_->process.stop(15s), 0) << proxyLog();
  ASSERT_NO_FATAL_FAILURE(startProxy(/*ssd=*/true));
  const long g1 = originCount("/obj/ssd/gone/g1.ts");
  const long k = originCount("/obj/ssd/keep/k.ts");
  EXPECT_EQ(getOn("tv.example", keep).header("X-Cache"), "HIT") << "kept on the SSD";
  EXPECT_EQ(originCount("/obj/ssd/keep/k.ts"), k);
  EXPECT_EQ(getOn("tv.example", gone1).header("X-Cache"), "MISS") << "a purged object came back";
  EXPECT_EQ(originCount("/obj/ssd/gone/g1.ts"), g1 + 1);
  // And the labels survived the restart: a purge by prefix still finds the kept object.
  p = purge("host=tv&prefix=/obj/ssd/keep/");
  EXPECT_NE(p.body.find("\"objects\":1,"), std::string::npos) << p.body;
  EXPECT_EQ(getOn("tv.example", keep).header("X-Cache"), "MISS");
}

}  // namespace
}  // namespace streamedge::scenario
