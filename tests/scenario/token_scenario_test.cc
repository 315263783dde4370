// Signed URLs with the real binary and the origin simulator: a valid token is served (and never
// enters the key, the log or the origin's request), refused tokens get a bare 403 and never
// reach the origin or the cache, a path-segment token covers a playlist and its relative segment
// URIs, and what `streamedge token` prints is accepted.
#include <sys/stat.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "proxy/url_token.h"
#include "tests/scenario/scenario_env.h"

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;

int64_t nowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class TokenScenarioTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    // A 6 s target duration: live playlists then live the route's 2 s, not half of a 2 s
    // target. With 1 s a playlist fetched just before a second boundary could arrive with an
    // apparent age of 1 s (Date is whole seconds) and be stale at once: a HIT asserted below
    // was a MISS once in a CI run.
    sim_ = testsupport::startOriginSim({"--name", "dc-a", "--target-duration", "6"}, &error);
    ASSERT_TRUE(sim_) << error;
    key1_ = std::string(32, '\x11');
    key2_ = std::string(32, '\x22');
    key1_file_ = writeKey("k1.key", key1_);
    key2_file_ = writeKey("k2.key", key2_);
    security_log_ = dir_.file("security.log");
    access_log_ = dir_.file("access.log");
    const std::string keys = "    [[vhost.route.token_auth.key]]\n    id = \"k1\"\n    key_file = \"" +
                             key1_file_ +
                             "\"\n    [[vhost.route.token_auth.key]]\n    id = \"k2\"\n"
                             "    key_file = \"" + key2_file_ + "\"\n";
    const std::string config =
        "[server]\nworkers = 2\n\n[admin]\naddress = \"127.0.0.1:0\"\n\n"
        "[[listener]]\naddress = \"127.0.0.1:0\"\n\n"
        "[cache.ram]\nsize = \"64MiB\"\n\n"
        "[log]\naccess_log = \"" + access_log_ + "\"\nsecurity_log = \"" + security_log_ +
        "\"\n\n"
        "[[origin_group]]\nname = \"main\"\n"
        "  [[origin_group.origin]]\n  url = \"http://127.0.0.1:" + std::to_string(sim_->port) +
        "\"\n  dc = \"dc-a\"\n\n"
        "[[vhost]]\nhostnames = [\"*\"]\n"
        "  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"main\"\n"
        "  [[vhost.route]]\n  prefix = \"/live/\"\n  origin_group = \"main\"\n"
        "  [vhost.route.token_auth]\n  accept = [\"query\", \"cookie\", \"path\"]\n" + keys +
        "  [[vhost.route]]\n  prefix = \"/obj/bound/\"\n  origin_group = \"main\"\n"
        "  [vhost.route.token_auth]\n  require_client = true\n" + keys +
        "  [[vhost.route]]\n  prefix = \"/obj/pass/\"\n  origin_group = \"main\"\n"
        "  cache = \"pass\"\n  forward_cookie = true\n"
        "  [vhost.route.token_auth]\n  accept = [\"cookie\", \"path\"]\n" + keys;
    proxy_ = testsupport::startStreamedge(config, &error);
    ASSERT_TRUE(proxy_) << error;
  }

  void TearDown() override {
    if (!proxy_ || !proxy_->process.running()) return;
    EXPECT_EQ(proxy_->process.stop(15s), 0) << proxy_->process.logTail(80);
    const std::string log = proxy_->process.log();
    for (const char* bad : {"runtime error", "Sanitizer", "Segmentation"}) {
      EXPECT_EQ(log.find(bad), std::string::npos) << bad << " in the proxy log:\n" << log;
    }
  }

  std::string writeKey(const std::string& name, const std::string& secret) {
    const std::string path = dir_.file(name);
    EXPECT_TRUE(testsupport::writeFile(path, secret));
    ::chmod(path.c_str(), 0600);
    return path;
  }

  std::string mint(const std::string& prefix, int64_t ttl, const std::string& secret,
                   const std::string& key_id, const std::string& client = "") {
    proxy::MintRequest r;
    r.prefix = prefix;
    r.expires_unix = nowUnix() + ttl;
    r.key_id = key_id;
    r.client = client;
    std::string token, error;
    EXPECT_TRUE(proxy::mintToken(r, secret, token, error)) << error;
    return token;
  }

  HttpResponse get(const std::string& target, const Headers& headers = {}) {
    return testsupport::httpGet(proxy_->http_port, target, headers, 15s);
  }
  std::string metrics() { return testsupport::httpGet(proxy_->admin_port, "/metrics").body; }
  double rejections(const std::string& reason) {
    const auto v = sample(metrics(), "streamedge_token_rejections_total{vhost=\"*\",reason=\"" +
                                         reason + "\"}");
    return v ? *v : 0;
  }
  long originCount(const std::string& path) { return testsupport::simCount(sim_->port, path); }

  // The file's content once it holds `needle` (the log writers hand lines over within ~120 ms).
  std::string waitForFile(const std::string& path, const std::string& needle) {
    std::string text;
    for (int i = 0; i < 300; ++i) {
      text = testsupport::readFile(path);
      if (text.find(needle) != std::string::npos) break;
      std::this_thread::sleep_for(10ms);
    }
    return text;
  }

  testsupport::TempDir dir_{"streamedge-token"};
  std::optional<testsupport::OriginSimProcess> sim_;
  std::optional<testsupport::StreamedgeProcess> proxy_;
  std::string key1_, key2_, key1_file_, key2_file_, security_log_, access_log_;
};

TEST_F(TokenScenarioTest, ValidTokenIsServedAndNeverKeyedLoggedOrForwarded) {
  const std::string t1 = mint("/live/ok/", 60, key1_, "k1");
  const HttpResponse a = get("/live/ok/index.m3u8?token=" + t1 + "&a=1");
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(a.header("X-Cache"), "MISS");
  EXPECT_NE(a.body.find("#EXTM3U"), std::string::npos);
  // Another viewer's token (another key, too) gets the same object: the token is not keyed.
  const std::string t2 = mint("/live/", 120, key2_, "k2");
  const HttpResponse b = get("/live/ok/index.m3u8?a=1&token=" + t2);
  ASSERT_EQ(b.status, 200);
  EXPECT_EQ(b.header("X-Cache"), "HIT");
  EXPECT_EQ(originCount("/live/ok/index.m3u8"), 1);
  // The open route beside it needs nothing.
  EXPECT_EQ(get("/obj/open?size=10").status, 200);

  const std::string log = waitForFile(access_log_, "/obj/open");
  EXPECT_NE(log.find("/live/ok/index.m3u8"), std::string::npos) << log;
  EXPECT_EQ(log.find(t1.substr(0, 20)), std::string::npos) << log;
  EXPECT_EQ(log.find(t2.substr(0, 20)), std::string::npos) << log;
  EXPECT_EQ(log.find("token"), std::string::npos) << log;
}

TEST_F(TokenScenarioTest, RefusedTokensGetA403AndNeverReachTheOriginOrTheCache) {
  const std::string path = "/live/refused/index.m3u8";
  const std::string good = mint("/live/refused/", 60, key1_, "k1");
  // Tampered: a wider prefix (a well-formed payload of its own) in front of good's MAC.
  const std::string wider = mint("/live/", 60, key1_, "k1");
  const std::string tampered = wider.substr(0, wider.find('.')) + good.substr(good.find('.'));
  struct Case {
    std::string name, target, reason;
    Headers headers;
  };
  const std::vector<Case> cases = {
      {"expired", path + "?token=" + mint("/live/refused/", -5, key1_, "k1"), "expired", {}},
      {"tampered", path + "?token=" + tampered, "bad_signature", {}},
      {"other key under k1's id", path + "?token=" + mint("/live/refused/", 60, key2_, "k1"),
       "bad_signature", {}},
      {"wrong prefix", path + "?token=" + mint("/live/other/", 60, key1_, "k1"), "wrong_prefix",
       {}},
      {"missing", path, "missing", {}},
      {"malformed", path + "?token=not-a-token", "malformed", {}},
      {"twice", path + "?token=" + good + "&token=" + good, "malformed", {}},
      {"unknown key", path + "?token=" + mint("/live/refused/", 60, key1_, "k9"), "unknown_key",
       {}},
      {"bad cookie", path, "bad_signature", {{"Cookie", "a=1; token=" + tampered}}},
      {"wrong client", "/obj/bound/x?token=" + mint("/obj/bound/", 60, key1_, "k1", "10.9.8.7"),
       "wrong_client", {}},
      {"another prefix", "/obj/bound/x?token=" + good, "wrong_prefix", {}},
      {"unbound where required", "/obj/bound/x?token=" + mint("/obj/bound/", 60, key1_, "k1"),
       "wrong_client", {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const double before = rejections(c.reason);
    const HttpResponse r = get(c.target, c.headers);
    EXPECT_EQ(r.status, 403);
    EXPECT_EQ(r.body, "forbidden\n");  // nothing about why
    EXPECT_EQ(rejections(c.reason), before + 1);
  }
  EXPECT_EQ(originCount(path), 0);
  EXPECT_EQ(originCount("/obj/bound/x"), 0);

  // Stored by a viewer with a token, still refused to one without.
  ASSERT_EQ(get(path + "?token=" + good).status, 200);
  EXPECT_EQ(get(path + "?token=" + good).header("X-Cache"), "HIT");
  const HttpResponse refused = get(path);
  EXPECT_EQ(refused.status, 403);
  EXPECT_EQ(refused.body, "forbidden\n");
  EXPECT_EQ(originCount(path), 1);

  // Each refusal is a security log line with its reason and no token.
  const std::string sec = waitForFile(security_log_, "\"wrong_client\"");
  for (const char* reason : {"expired", "bad_signature", "wrong_prefix", "missing", "malformed",
                             "unknown_key", "wrong_client"}) {
    EXPECT_NE(sec.find("\"reason\":\"" + std::string(reason) + "\""), std::string::npos)
        << reason << "\n" << sec;
  }
  EXPECT_NE(sec.find("\"event\":\"token_rejected\""), std::string::npos);
  EXPECT_NE(sec.find("\"path\":\"/live/refused/index.m3u8\""), std::string::npos) << sec;
  EXPECT_NE(sec.find("\"source\":\"cookie\""), std::string::npos) << sec;
  EXPECT_NE(sec.find("\"client\":\"127.0.0.0\""), std::string::npos) << sec;  // anonymised
  EXPECT_EQ(sec.find(good.substr(0, 20)), std::string::npos) << sec;
  EXPECT_EQ(sec.find(tampered.substr(0, 20)), std::string::npos) << sec;
}

TEST_F(TokenScenarioTest, ClientBoundTokenAndCookieToken) {
  const HttpResponse bound =
      get("/obj/bound/c/1?size=100&token=" + mint("/obj/bound/c/", 60, key1_, "k1", "127.0.0.1"));
  EXPECT_EQ(bound.status, 200);
  const HttpResponse net =
      get("/obj/bound/c/2?size=100&token=" + mint("/obj/bound/c/", 60, key2_, "", "127.0.0.0/8"));
  EXPECT_EQ(net.status, 200);
  const HttpResponse cookie =
      get("/live/cookie/index.m3u8", {{"Cookie", "x=1; token=" + mint("/live/", 60, key2_, "k2")}});
  EXPECT_EQ(cookie.status, 200);
}

TEST_F(TokenScenarioTest, TheOriginNeverSeesTheTokenCookie) {
  // A pass forwards the viewer's cookies, but not the token's: echo=1 lists the fields the
  // origin got.
  const std::string token = mint("/obj/pass/", 60, key1_, "k1");
  const HttpResponse r =
      get("/obj/pass/echo?echo=1", {{"Cookie", "a=1; token=" + token + "; b=2"}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("a=1; b=2"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find(token.substr(0, 20)), std::string::npos) << r.body;
  // Only the token cookie: no Cookie field at all; a path token goes neither.
  const HttpResponse only = get("/t/" + token + "/obj/pass/echo?echo=1", {{"Cookie", "token=" + token}});
  ASSERT_EQ(only.status, 200) << only.body;
  EXPECT_EQ(only.body.find("ookie"), std::string::npos) << only.body;
  EXPECT_EQ(only.body.find(token.substr(0, 20)), std::string::npos) << only.body;
}

TEST_F(TokenScenarioTest, PathSegmentTokenCoversThePlaylistAndItsRelativeSegments) {
  const std::string token = mint("/live/seg/", 60, key2_, "k2");
  const std::string base = "/t/" + token + "/live/seg/";
  const HttpResponse playlist = get(base + "index.m3u8");
  ASSERT_EQ(playlist.status, 200) << playlist.body;
  // Resolve the playlist's relative segment URIs against the playlist's URL, as a player does.
  std::vector<std::string> segments;
  size_t pos = 0;
  while ((pos = playlist.body.find("\nseg_", pos)) != std::string::npos) {
    const size_t end = playlist.body.find('\n', pos + 1);
    segments.push_back(playlist.body.substr(pos + 1, end - pos - 1));
    pos = end;
  }
  ASSERT_GE(segments.size(), 2u) << playlist.body;
  for (size_t i = 0; i < 2; ++i) {
    const HttpResponse seg = get(base + segments[i]);
    EXPECT_EQ(seg.status, 200) << segments[i];
    // The origin was asked for the path without the token segment.
    EXPECT_EQ(originCount("/live/seg/" + segments[i]), 1) << segments[i];
  }
  EXPECT_EQ(originCount("/live/seg/index.m3u8"), 1);
  // The same object, keyed without the token: a query-token viewer hits it.
  EXPECT_EQ(get("/live/seg/index.m3u8?token=" + token).header("X-Cache"), "HIT");
  // The token opens its prefix only, and a bad one in the path is refused like any other.
  EXPECT_EQ(get("/t/" + token + "/live/other/index.m3u8").status, 403);
  std::string tampered = token;
  tampered[3] = tampered[3] == 'A' ? 'B' : 'A';
  EXPECT_EQ(get("/t/" + tampered + "/live/seg/index.m3u8").status, 403);
  EXPECT_EQ(originCount("/live/other/index.m3u8"), 0);
}

TEST_F(TokenScenarioTest, DotSegmentsCannotRouteAroundTheTokenCheck) {
  const std::string token = mint("/live/dot/", 60, key1_, "k1");
  ASSERT_EQ(get("/live/dot/index.m3u8?token=" + token).status, 200);
  // Through the open route's prefix, the normalised path is the protected one: refused, not a
  // hit of the stored object.
  for (const char* target :
       {"/open/../live/dot/index.m3u8", "/%6Cive/dot/index.m3u8", "//live/dot/index.m3u8"}) {
    const HttpResponse r = get(target);
    EXPECT_EQ(r.status, 403) << target << " " << r.header("X-Cache");
  }
  EXPECT_EQ(originCount("/live/dot/index.m3u8"), 1);
}

TEST_F(TokenScenarioTest, TokenSubcommandOutputIsAccepted) {
  testsupport::ChildProcess tool;
  const std::string out = dir_.file("token.out");
  ASSERT_TRUE(tool.start(STREAMEDGE_BINARY,
                         {"token", "--key-file", key2_file_, "--prefix", "/live/cli/", "--ttl",
                          "300", "--key-id", "k2"},
                         {out, {}}));
  ASSERT_EQ(tool.wait(10s).value_or(-999), 0) << tool.log();
  std::string token = testsupport::readFile(out);
  ASSERT_FALSE(token.empty());
  ASSERT_EQ(token.back(), '\n');
  token.pop_back();
  EXPECT_EQ(get("/live/cli/index.m3u8?token=" + token).status, 200);
  EXPECT_EQ(get("/t/" + token + "/live/cli/index.m3u8").status, 200);
  EXPECT_EQ(get("/live/elsewhere/index.m3u8?token=" + token).status, 403);

  // Without --key-id the proxy tries each key of the route.
  testsupport::ChildProcess anon;
  const std::string out2 = dir_.file("token2.out");
  ASSERT_TRUE(anon.start(STREAMEDGE_BINARY,
                         {"token", "--key-file", key1_file_, "--prefix", "/live/", "--ttl", "1h"},
                         {out2, {}}));
  ASSERT_EQ(anon.wait(10s).value_or(-999), 0) << anon.log();
  std::string token2 = testsupport::readFile(out2);
  ASSERT_FALSE(token2.empty());
  token2.pop_back();
  EXPECT_EQ(get("/live/cli2/index.m3u8?token=" + token2).status, 200);

  // A key every user can read is refused, with the reason.
  const std::string open_key = dir_.file("open.key");
  ASSERT_TRUE(testsupport::writeFile(open_key, std::string(64, 'a')));
  ::chmod(open_key.c_str(), 0644);
  testsupport::ChildProcess bad;
  const std::string out3 = dir_.file("token3.out");
  ASSERT_TRUE(bad.start(STREAMEDGE_BINARY,
                        {"token", "--key-file", open_key, "--prefix", "/live/", "--ttl", "60"},
                        {out3, {}}));
  EXPECT_EQ(bad.wait(10s).value_or(-999), 1);
  EXPECT_NE(testsupport::readFile(out3).find("readable by every user"), std::string::npos)
      << testsupport::readFile(out3);
}

}  // namespace
}  // namespace streamedge::scenario
