// Viewer-side HTTP strictness and limits, the admin listener, the access log's privacy and the
// config check, all against the real binary.
#include <gtest/gtest.h>

#include <csignal>
#include <thread>

#include "tests/scenario/scenario_env.h"

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;

HttpResponse raw(uint16_t port, const std::string& bytes, bool* closed_after = nullptr) {
  testsupport::HttpConnection c;
  EXPECT_TRUE(c.connect(port));
  EXPECT_TRUE(c.sendRaw(bytes));
  HttpResponse r = c.readResponse(5s);
  if (closed_after) *closed_after = r.closed || c.waitForClose(2s);
  return r;
}

TEST_F(ScenarioTest, SmugglingShapedRequestsAreRefusedAndTheConnectionClosed) {
  const char* bad[] = {
      "GET /obj/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
      "GET /obj/x HTTP/1.1\r\n\r\n",
      "GET /obj/x HTTP/1.1\r\nHost: a\r\nFoo : bar\r\n\r\n",
      "GET /obj/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
      "GET /obj/x HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
      "POST /obj/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
      "GET /obj/x HTTP/1.1\nHost: a\n\n",
  };
  for (const char* request : bad) {
    bool closed = false;
    HttpResponse r = raw(port(), request, &closed);
    EXPECT_EQ(r.status / 100, 4) << request;
    EXPECT_TRUE(closed) << request;
  }
}

TEST_F(ScenarioTest, LimitsGiveClear4xx) {
  HttpResponse long_uri = get("/obj/" + std::string(9000, 'a'));
  EXPECT_EQ(long_uri.status, 414);
  HttpResponse big_head = get("/obj/x", {{"X-Big", std::string(20000, 'b')}});
  EXPECT_EQ(big_head.status, 431);
  HttpResponse post = testsupport::httpRequest(port(), "POST", "/obj/x", {}, 5s, "abc");
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.header("Allow"), "GET, HEAD");
  HttpResponse dots = get("/obj/../../etc/passwd");
  EXPECT_EQ(dots.status, 400);
}

TEST_F(ScenarioTest, KeepAliveServesManyRequestsOnOneConnection) {
  testsupport::HttpConnection c;
  ASSERT_TRUE(c.connect(port()));
  for (int i = 0; i < 20; ++i) {
    HttpResponse r = c.request("GET", "/obj/ka/k.ts?size=3000");
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_FALSE(r.closed);
    EXPECT_EQ(r.body, testsupport::simBody("/obj/ka/k.ts", 3000));
  }
  EXPECT_EQ(originCount("/obj/ka/k.ts"), 1);
}

TEST_F(ScenarioTest, PipelinedRequestsAreAnsweredInOrder) {
  testsupport::HttpConnection c;
  ASSERT_TRUE(c.connect(port()));
  ASSERT_TRUE(c.sendRaw(
      "GET /obj/pipe/1.ts?size=100 HTTP/1.1\r\nHost: a\r\n\r\n"
      "GET /obj/pipe/2.ts?size=200 HTTP/1.1\r\nHost: a\r\n\r\n"));
  HttpResponse one = c.readResponse(10s);
  HttpResponse two = c.readResponse(10s);
  EXPECT_EQ(one.body, testsupport::simBody("/obj/pipe/1.ts", 100));
  EXPECT_EQ(two.body, testsupport::simBody("/obj/pipe/2.ts", 200));
}

TEST_F(ScenarioTest, AccessLogHasAnonymisedClientAndNoTokens) {
  ASSERT_EQ(get("/obj/log/l.ts?size=10&token=secret-viewer-token&bitrate=3").status, 200);
  std::string log;
  for (int i = 0; i < 50 && log.find("/obj/log/l.ts") == std::string::npos; ++i) {
    std::this_thread::sleep_for(100ms);  // workers flush the log every 100 ms
    log = testsupport::readFile(access_log_);
  }
  ASSERT_NE(log.find("/obj/log/l.ts"), std::string::npos) << log;
  EXPECT_NE(log.find("\"client\":\"127.0.0.0\""), std::string::npos) << log;
  // The full client address never appears (the origin's default name "127.0.0.1:port" may).
  EXPECT_EQ(log.find("\"client\":\"127.0.0.1\""), std::string::npos) << log;
  EXPECT_EQ(log.find("secret-viewer-token"), std::string::npos) << log;
  EXPECT_NE(log.find("bitrate=3"), std::string::npos) << log;
}

TEST_F(ScenarioTest, AdminEndpointsAnswer) {
  const uint16_t admin = proxy_->admin_port;
  ASSERT_NE(admin, 0);
  ASSERT_EQ(get("/obj/adm/a.ts?size=10").status, 200);
  ASSERT_EQ(get("/obj/adm/a.ts?size=10").status, 200);
  HttpResponse health = testsupport::httpGet(admin, "/healthz");
  EXPECT_EQ(health.status, 200);
  HttpResponse ready = testsupport::httpGet(admin, "/readyz");
  EXPECT_EQ(ready.status, 200) << ready.body;
  HttpResponse status = testsupport::httpGet(admin, "/status");
  EXPECT_EQ(status.status, 200);
  EXPECT_NE(status.body.find("\"workers\":2"), std::string::npos) << status.body;
  HttpResponse metrics = testsupport::httpGet(admin, "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find(
                "streamedge_requests_total{vhost=\"*\",result=\"hit\",status_class=\"2xx\","
                "protocol=\"http/1.1\"} 1"),
            std::string::npos)
      << metrics.body;
  EXPECT_NE(metrics.body.find(
                "streamedge_requests_total{vhost=\"*\",result=\"miss\",status_class=\"2xx\","
                "protocol=\"http/1.1\"} 1"),
            std::string::npos);
  EXPECT_EQ(metrics.body.find("/obj/adm"), std::string::npos) << "no paths in metrics";
}

TEST_F(ScenarioTest, GracefulStopFinishesTheResponseInFlight) {
  // A slow 300 KB fill (~1.5 s) is in flight when SIGTERM arrives: the viewer still gets it whole.
  const std::string target = "/obj/stop/s.ts?size=300000&rate=200000";
  HttpResponse in_flight;
  std::thread viewer([&] { in_flight = get(target); });
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(proxy_->process.signal(SIGTERM));
  viewer.join();
  EXPECT_TRUE(in_flight.ok()) << in_flight.error;
  EXPECT_EQ(in_flight.body, testsupport::simBody("/obj/stop/s.ts", 300000));
  EXPECT_EQ(proxy_->process.wait(10s), 0) << proxyLog();
}

TEST(ConfigCheck, ValidConfigExitsZeroAndInvalidOneNamesFileLineAndKey) {
  testsupport::TempDir dir;
  const std::string good = dir.file("good.toml");
  const std::string bad = dir.file("bad.toml");
  ASSERT_TRUE(testsupport::writeFile(good, scenarioConfig(8081, "off")));
  ASSERT_TRUE(testsupport::writeFile(bad, "[server]\nworkers = \"two\"\nbogus = 1\n"));
  testsupport::ChildProcess ok;
  ASSERT_TRUE(ok.start(STREAMEDGE_BINARY, {"-t", "-c", good}));
  EXPECT_EQ(ok.wait(10s), 0) << ok.log();
  testsupport::ChildProcess fail;
  ASSERT_TRUE(fail.start(STREAMEDGE_BINARY, {"-t", "-c", bad}));
  EXPECT_EQ(fail.wait(10s), 1);
  const std::string log = fail.log();
  EXPECT_NE(log.find("bad.toml:2"), std::string::npos) << log;
  EXPECT_NE(log.find("workers"), std::string::npos) << log;
  EXPECT_NE(log.find("bad.toml:3"), std::string::npos) << log;
  EXPECT_NE(log.find("bogus"), std::string::npos) << log;
}

TEST(ConfigCheck, ExampleAndEmbeddedDefaultAreValid) {
  testsupport::ChildProcess example;
  ASSERT_TRUE(example.start(STREAMEDGE_BINARY,
                            {"-t", "-c", STREAMEDGE_SOURCE_DIR "/conf/streamedge.example.toml"}));
  // -t also opens certificates and keys; the example's live in /etc/streamedge/tls on a real
  // edge, so here those files are the only errors.
  EXPECT_EQ(example.wait(10s), 1) << example.log();
  const std::string log = example.log();
  EXPECT_NE(log.find("video.example.com.fullchain.pem: cannot open"), std::string::npos) << log;
  EXPECT_NE(log.find("streamedge: 2 error(s) in"), std::string::npos) << log;
  testsupport::ChildProcess embedded;
  ASSERT_TRUE(embedded.start(STREAMEDGE_BINARY, {"-t"}));
  EXPECT_EQ(embedded.wait(10s), 0) << embedded.log();
}

}  // namespace
}  // namespace streamedge::scenario
