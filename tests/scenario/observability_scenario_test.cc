// Observability with the real binary: exact metric counts after a known request sequence,
// promtool and a real Prometheus server reading /metrics, /healthz and /readyz turning non-200
// for a stuck worker loop and for dead origins, the admin bearer token, and an access log that
// names no viewer (no full address, no token) and follows logrotate (rename + SIGUSR1).
//
// Each test starts its own origin simulator and streamedge with a config written for it. The
// promtool/Prometheus tests skip only when those binaries are missing (scripts/test.sh installs
// Debian's prometheus package, so CI never skips).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <optional>
#include <string>
#include <thread>

#include "tests/scenario/scenario_env.h"
#include "tests/support/http_client.h"
#include "tests/support/origin_sim.h"
#include "tests/support/process.h"

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;
using testsupport::Headers;
using testsupport::HttpResponse;

constexpr const char* kAdminToken = "adm1n-s3cret-t0ken";

struct ObsOptions {
  std::string admin_extra;  // lines added to [admin]
};

// `group_extra`: lines added to [[origin_group]] before its origin.
std::string obsConfig(uint16_t sim_port, const std::string& log_path, const ObsOptions& o,
                      const std::string& group_extra = "") {
  return "[server]\nworkers = 2\n\n"
         "[admin]\naddress = \"127.0.0.1:0\"\n" + o.admin_extra + "\n"
         "[[listener]]\naddress = \"127.0.0.1:0\"\n\n"
         "[cache.ram]\nsize = \"64MiB\"\n\n"
         "[log]\naccess_log = \"" + log_path + "\"\n\n"
         "[[origin_group]]\nname = \"main\"\n" + group_extra +
         "  [[origin_group.origin]]\n  name = \"sim-a\"\n  url = \"http://127.0.0.1:" +
         std::to_string(sim_port) + "\"\n  dc = \"dc-a\"\n  priority = 1\n\n"
         "[[vhost]]\nname = \"video\"\nhostnames = [\"*\"]\n"
         "  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"main\"\n";
}

// The full path of `name` in $PATH, or "".
std::string findExecutable(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    const std::string candidate = dirs.substr(start, end - start) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return "";
}

// A loopback port that was free a moment ago (for servers that cannot report port 0 back).
uint16_t freePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

class ObservabilityTest : public ::testing::Test {
 protected:
  // A graceful stop that exits 0 with a clean log (sanitizer reports fail the test that caused them).
  void TearDown() override {
    if (!proxy_) return;
    if (proxy_->process.running()) {
      EXPECT_EQ(proxy_->process.stop(15s), 0) << proxy_->process.logTail(60);
    }
    const std::string log = proxy_->process.log();
    for (const char* bad : {"runtime error", "Sanitizer", "LeakSanitizer", "Segmentation"}) {
      EXPECT_EQ(log.find(bad), std::string::npos) << bad << " in the proxy log:\n" << log;
    }
  }

  void start(const ObsOptions& options = {}) {
    std::string error;
    sim_ = testsupport::startOriginSim({"--name", "dc-a"}, &error);
    ASSERT_TRUE(sim_) << error;
    dir_.emplace("streamedge-obs");
    access_log_ = dir_->file("access.log");
    proxy_ = testsupport::startStreamedge(obsConfig(sim_->port, access_log_, options, group_extra_),
                                          &error);
    ASSERT_TRUE(proxy_) << error;
    admin_headers_.clear();
    if (options.admin_extra.find("bearer_token") != std::string::npos) {
      admin_headers_.emplace_back("Authorization", std::string("Bearer ") + kAdminToken);
    }
  }

  uint16_t port() const { return proxy_->http_port; }
  uint16_t adminPort() const { return proxy_->admin_port; }
  HttpResponse get(const std::string& target, const Headers& headers = {}) {
    return testsupport::httpGet(port(), target, headers, 15s);
  }
  HttpResponse admin(const std::string& path) {
    return testsupport::httpGet(adminPort(), path, admin_headers_, 10s);
  }
  std::string metrics() {
    HttpResponse r = admin("/metrics");
    EXPECT_EQ(r.status, 200) << r.body;
    return r.body;
  }  // /metrics once `series` reads `value`: a response is counted just after its last byte is
  // written, so a client can read it before the proxy has accounted it. At most 5 s.
  std::string metricsOnce(const std::string& series, double value) {
    std::string m;
    for (int i = 0; i < 100; ++i) {
      m = metrics();
      if (sample(m, series) == value) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return m;
  }

  // Waits until the access log holds `needle` (workers flush every 100 ms).
  std::string waitForLog(const std::string& path, const std::string& needle) {
    std::string log;
    for (int i = 0; i < 50; ++i) {
      log = testsupport::readFile(path);
      if (log.find(needle) != std::string::npos) break;
      std::this_thread::sleep_for(100ms);
    }
    return log;
  }

  std::optional<testsupport::OriginSimProcess> sim_;
  std::optional<testsupport::TempDir> dir_;
  std::optional<testsupport::StreamedgeProcess> proxy_;
  std::string access_log_;
  std::string group_extra_;  // lines added to [[origin_group]] before its origin
  Headers admin_headers_;
};

// The known sequence every exact-count assertion below refers to: a miss, two hits, a slow miss
// with a coalesced reader, and an origin 500.
struct Sequence {
  uint64_t body_bytes = 0;
};

Sequence runKnownSequence(ObservabilityTest& t, uint16_t port, uint16_t sim_port) {
  Sequence seq;
  auto count = [&](const HttpResponse& r) { seq.body_bytes += r.body_bytes; };
  HttpResponse miss = testsupport::httpGet(port, "/obj/obs/a.ts?size=1000", {}, 15s);
  EXPECT_EQ(miss.header("X-Cache"), "MISS");
  count(miss);
  for (int i = 0; i < 2; ++i) {
    HttpResponse hit = testsupport::httpGet(port, "/obj/obs/a.ts?size=1000", {}, 15s);
    EXPECT_EQ(hit.header("X-Cache"), "HIT");
    count(hit);
  }
  // 200 KB at 400 KB/s: the second viewer arrives while the first one's fill is in flight.
  const std::string slow = "/obj/obs/slow.ts?size=200000&rate=400000";
  HttpResponse first;
  std::thread filler([&] { first = testsupport::httpGet(port, slow, {}, 15s); });
  std::this_thread::sleep_for(150ms);
  HttpResponse second = testsupport::httpGet(port, slow, {}, 15s);
  filler.join();
  // One of them filled, the other read the fill in flight (normally in this order).
  const std::string caches = first.header("X-Cache") + "+" + second.header("X-Cache");
  EXPECT_TRUE(caches == "MISS+COALESCED" || caches == "COALESCED+MISS") << caches;
  EXPECT_EQ(first.body.size(), 200000u);
  EXPECT_EQ(second.body.size(), 200000u);
  count(first);
  count(second);
  EXPECT_TRUE(testsupport::simFault(sim_port, "/obj/obs/fail.ts", "500", 1));
  HttpResponse failed = testsupport::httpGet(port, "/obj/obs/fail.ts?size=10", {}, 15s);
  EXPECT_EQ(failed.status, 500);
  count(failed);
  (void)t;
  return seq;
}

TEST_F(ObservabilityTest, MetricsCountAKnownSequenceExactly) {
  ASSERT_NO_FATAL_FAILURE(start());
  const Sequence seq = runKnownSequence(*this, port(), sim_->port);
  const std::string m = metricsOnce("streamedge_responses_total{status_class=\"5xx\"}", 1.0);
  auto req = [&](const char* result, const char* cls) {
    return sample(m, std::string("streamedge_requests_total{vhost=\"video\",result=\"") + result +
                         "\",status_class=\"" + cls + "\",protocol=\"http/1.1\"}");
  };
  EXPECT_EQ(req("miss", "2xx"), 2.0) << m;
  EXPECT_EQ(req("hit", "2xx"), 2.0);
  EXPECT_EQ(req("coalesced", "2xx"), 1.0);
  EXPECT_EQ(req("miss", "5xx"), 1.0);
  EXPECT_EQ(req("stale", "2xx"), std::nullopt) << "zero series are not exported";
  EXPECT_EQ(sample(m, "streamedge_responses_total{status_class=\"2xx\"}"), 5.0);
  EXPECT_EQ(sample(m, "streamedge_responses_total{status_class=\"5xx\"}"), 1.0);
  EXPECT_EQ(sample(m, "streamedge_response_body_bytes_total{vhost=\"video\"}"),
            static_cast<double>(seq.body_bytes));
  EXPECT_EQ(sample(m, "streamedge_request_duration_seconds_count{result=\"hit\"}"), 2.0);
  EXPECT_EQ(sample(m, "streamedge_request_duration_seconds_count{result=\"miss\"}"), 3.0);
  EXPECT_EQ(sample(m, "streamedge_time_to_first_byte_seconds_count{result=\"coalesced\"}"), 1.0);
  // The slow object took ~0.5 s: above 250 ms, within 2.5 s.
  EXPECT_EQ(sample(m, "streamedge_request_duration_seconds_bucket{result=\"coalesced\",le=\"0.1\"}"), 0.0);
  EXPECT_EQ(sample(m, "streamedge_request_duration_seconds_bucket{result=\"coalesced\",le=\"2.5\"}"), 1.0);

  const std::string origin = "{group=\"main\",origin=\"sim-a\",dc=\"dc-a\"}";
  EXPECT_EQ(sample(m, "streamedge_origin_requests_total" + origin), 3.0) << m;
  // The armed 500: one error, with its reason.
  const std::string origin_labels = origin.substr(0, origin.size() - 1);
  EXPECT_EQ(sample(m, "streamedge_origin_errors_total" + origin_labels + ",reason=\"5xx\"}"), 1.0);
  EXPECT_EQ(sample(m, "streamedge_origin_errors_total" + origin_labels + ",reason=\"connect\"}"), 0.0);
  EXPECT_EQ(sample(m, "streamedge_origin_failovers_total" + origin), 0.0);
  EXPECT_EQ(sample(m, "streamedge_origin_response_seconds_count" + origin), 3.0);
  EXPECT_EQ(sample(m, "streamedge_origin_up" + origin), 1.0);
  EXPECT_EQ(sample(m, "streamedge_origin_fetches_total"), 3.0);
  EXPECT_EQ(sample(m, "streamedge_cache_objects{tier=\"ram\"}"), 2.0);
  EXPECT_EQ(sample(m, "streamedge_config_reloads_total{result=\"ok\"}"), 0.0);
  EXPECT_EQ(sample(m, "streamedge_workers"), 2.0);
  EXPECT_TRUE(sample(m, "streamedge_connections_active{listener=\"127.0.0.1:0\"}").has_value()) << m;
  EXPECT_GT(sample(m, "process_start_time_seconds").value_or(0), 1.7e9);
  EXPECT_NE(m.find("streamedge_build_info{version=\""), std::string::npos);
  EXPECT_EQ(m.find("/obj/obs"), std::string::npos) << "no paths in labels";
  EXPECT_EQ(m.find("127.0.0.1:" + std::to_string(sim_->port)), std::string::npos)
      << "origins are labelled by their config name";

  // SIGHUP with the same config: a good reload is counted and timestamped.
  const size_t from = proxy_->process.logSize();
  ASSERT_TRUE(proxy_->process.signal(SIGHUP));
  ASSERT_TRUE(proxy_->process.waitForLine("reloaded", 10s, from)) << proxy_->process.logTail();
  const std::string after = metrics();
  EXPECT_EQ(sample(after, "streamedge_config_reloads_total{result=\"ok\"}"), 1.0);
  EXPECT_GE(sample(after, "streamedge_config_last_reload_success_timestamp_seconds").value_or(0),
            sample(after, "process_start_time_seconds").value_or(1e18));
  EXPECT_EQ(sample(after, "streamedge_config_last_reload_successful"), 1.0);
  // An invalid config: counted as failed, and the gauge alerts key on drops to 0.
  ASSERT_TRUE(proxy_->rewriteConfig("[server]\nworkers = \"two\"\n"));
  const size_t from_bad = proxy_->process.logSize();
  ASSERT_TRUE(proxy_->process.signal(SIGHUP));
  ASSERT_TRUE(proxy_->process.waitForLine("failed", 10s, from_bad)) << proxy_->process.logTail();
  const std::string bad = metrics();
  EXPECT_EQ(sample(bad, "streamedge_config_reloads_total{result=\"failed\"}"), 1.0) << bad;
  EXPECT_EQ(sample(bad, "streamedge_config_last_reload_successful"), 0.0);
  EXPECT_EQ(sample(bad, "streamedge_worker_heartbeat_age_seconds{worker=\"1\"}").value_or(99) < 1.0,
            true);

  // The access log names the origin that filled a miss, and none for a hit.
  const std::string log = waitForLog(access_log_, "fail.ts");
  EXPECT_NE(log.find("\"path\":\"/obj/obs/a.ts\",\"query\":\"size=1000\",\"status\":200,"
                     "\"bytes\":1000"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("\"cache\":\"MISS\",\"origin\":\"sim-a\",\"dc\":\"dc-a\",\"tls\":\"-\""),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("\"cache\":\"HIT\",\"origin\":\"-\",\"dc\":\"-\""), std::string::npos) << log;
  EXPECT_NE(log.find("\"cache\":\"COALESCED\",\"origin\":\"sim-a\""), std::string::npos) << log;
}

TEST_F(ObservabilityTest, PromtoolAcceptsTheExposition) {
  const std::string promtool = findExecutable("promtool");
  if (promtool.empty()) GTEST_SKIP() << "promtool not installed (Debian package prometheus)";
  ASSERT_NO_FATAL_FAILURE(start());
  runKnownSequence(*this, port(), sim_->port);
  testsupport::TempDir dir("streamedge-promtool");
  const std::string file = dir.file("metrics.txt");
  ASSERT_TRUE(testsupport::writeFile(file, metrics()));
  testsupport::ChildProcess check;
  ASSERT_TRUE(check.start("/bin/sh", {"-c", "exec \"$0\" check metrics < \"$1\"", promtool, file}));
  const std::optional<int> status = check.wait(30s);
  EXPECT_EQ(status, 0) << check.log();
}

TEST_F(ObservabilityTest, PrometheusScrapesTheAdminListener) {
  const std::string prometheus = findExecutable("prometheus");
  if (prometheus.empty()) GTEST_SKIP() << "prometheus not installed (Debian package prometheus)";
  ASSERT_NO_FATAL_FAILURE(start({"bearer_token = \"" + std::string(kAdminToken) + "\"\n"}));
  runKnownSequence(*this, port(), sim_->port);

  testsupport::TempDir dir("streamedge-prometheus");
  const std::string config = dir.file("prometheus.yml");
  ASSERT_TRUE(testsupport::writeFile(
      config, "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
              "scrape_configs:\n  - job_name: streamedge\n    scrape_interval: 1s\n"
              "    authorization:\n      credentials: " + std::string(kAdminToken) + "\n"
              "    static_configs:\n      - targets: ['127.0.0.1:" + std::to_string(adminPort()) +
              "']\n"));
  const uint16_t prom_port = freePort();
  ASSERT_NE(prom_port, 0);
  testsupport::ChildProcess server;
  ASSERT_TRUE(server.start(prometheus,
                           {"--config.file=" + config, "--storage.tsdb.path=" + dir.file("data"),
                            "--web.listen-address=127.0.0.1:" + std::to_string(prom_port),
                            "--log.level=warn"}));

  // Bounded polling: Prometheus needs a few scrapes before the series are queryable.
  auto query = [&](const std::string& promql) -> std::optional<double> {
    HttpResponse r = testsupport::httpGet(
        prom_port, "/api/v1/query?query=" + testsupport::urlEncode(promql), {}, 5s);
    if (r.status != 200) return std::nullopt;
    const size_t v = r.body.find("\"value\":[");
    if (v == std::string::npos) return std::nullopt;
    const size_t quote = r.body.find(",\"", v);
    if (quote == std::string::npos) return std::nullopt;
    return std::strtod(r.body.c_str() + quote + 2, nullptr);
  };
  std::optional<double> requests;
  std::optional<double> up;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < deadline) {
    requests = query("sum(streamedge_requests_total{job=\"streamedge\",vhost=\"video\"})");
    up = query("streamedge_origin_up{group=\"main\",origin=\"sim-a\",dc=\"dc-a\"}");
    if (requests == 6.0 && up == 1.0) break;
    ASSERT_TRUE(server.running()) << server.log();
    std::this_thread::sleep_for(500ms);
  }
  EXPECT_EQ(requests, 6.0) << server.logTail();
  EXPECT_EQ(up, 1.0);
  EXPECT_EQ(query("up{job=\"streamedge\"}"), 1.0) << "the scrape itself succeeded";

  // Every dashboard query parses and runs against real data (template variables filled in).
  const std::string dashboard =
      testsupport::readFile(STREAMEDGE_SOURCE_DIR "/metrics/grafana-dashboard.json");
  size_t pos = 0;
  int checked = 0;
  while ((pos = dashboard.find("\"expr\": \"", pos)) != std::string::npos) {
    pos += 9;
    std::string expr;
    for (; pos < dashboard.size() && dashboard[pos] != '"'; ++pos) {
      if (dashboard[pos] == '\\' && pos + 1 < dashboard.size()) ++pos;  // JSON escape
      expr += dashboard[pos];
    }
    for (const auto& [var, value] : {std::pair<std::string, std::string>{"$__rate_interval", "1m"},
                                     {"$instance", ".*"}, {"$vhost", ".*"}}) {
      for (size_t at; (at = expr.find(var)) != std::string::npos;) expr.replace(at, var.size(), value);
    }
    HttpResponse r = testsupport::httpGet(
        prom_port, "/api/v1/query?query=" + testsupport::urlEncode(expr), {}, 5s);
    EXPECT_EQ(r.status, 200) << expr << "\n" << r.body;
    EXPECT_NE(r.body.find("\"status\":\"success\""), std::string::npos) << expr << "\n" << r.body;
    ++checked;
  }
  EXPECT_GT(checked, 30);
  server.stop(10s);
}

TEST_F(ObservabilityTest, HealthzFailsWhileAWorkerLoopIsBlocked) {
  ASSERT_NO_FATAL_FAILURE(start({"health_stall_bound = \"1s\"\ndebug_endpoints = true\n"}));
  ASSERT_EQ(admin("/healthz").status, 200);
  HttpResponse block = testsupport::httpRequest(adminPort(), "POST",
                                                "/debug/block-worker?ms=3000&worker=1", {}, 5s);
  ASSERT_EQ(block.status, 202) << block.body;
  HttpResponse health;
  for (int i = 0; i < 25; ++i) {
    health = admin("/healthz");
    if (health.status != 200) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(health.status, 503) << health.body;
  EXPECT_NE(health.body.find("worker 1"), std::string::npos) << health.body;
  // The loop runs again once the block ends: healthy again.
  for (int i = 0; i < 50; ++i) {
    health = admin("/healthz");
    if (health.status == 200) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(health.status, 200) << health.body;
}

TEST_F(ObservabilityTest, DebugEndpointsAreOffByDefault) {
  ASSERT_NO_FATAL_FAILURE(start());
  HttpResponse block = testsupport::httpRequest(adminPort(), "POST",
                                                "/debug/block-worker?ms=3000&worker=0", {}, 5s);
  EXPECT_EQ(block.status, 404);
  EXPECT_EQ(admin("/healthz").status, 200);
}

TEST_F(ObservabilityTest, ReadyzFailsWhenEveryOriginOfAGroupIsDown) {
  group_extra_ =
      "  [origin_group.health_check]\n  path = \"/healthz\"\n  interval = \"200ms\"\n  fall = 2\n";
  ASSERT_NO_FATAL_FAILURE(start());
  HttpResponse ready = admin("/readyz");
  EXPECT_EQ(ready.status, 200) << ready.body;
  EXPECT_NE(ready.body.find("listeners: ok"), std::string::npos) << ready.body;
  ASSERT_TRUE(testsupport::simFaultAll(sim_->port, "500"));
  // Passive signals never take a group's last origin out; its failing health checks do.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(get("/obj/down/" + std::to_string(i) + ".ts?size=10").status, 500);
  }
  for (int i = 0; i < 100 && admin("/readyz").status == 200; ++i) std::this_thread::sleep_for(50ms);
  ready = admin("/readyz");
  EXPECT_EQ(ready.status, 503) << ready.body;
  EXPECT_NE(ready.body.find("origin_group main: FAILED (0 of 1 origins up)"), std::string::npos)
      << ready.body;
  EXPECT_NE(ready.body.find("config: ok"), std::string::npos) << ready.body;
  const std::string m = metrics();
  EXPECT_EQ(sample(m, "streamedge_origin_up{group=\"main\",origin=\"sim-a\",dc=\"dc-a\"}"), 0.0) << m;
  EXPECT_EQ(sample(m, "streamedge_origin_errors_total{group=\"main\",origin=\"sim-a\",dc=\"dc-a\","
                        "reason=\"5xx\"}"),
            3.0);
  HttpResponse status = admin("/status");
  EXPECT_NE(status.body.find("\"ready\":false"), std::string::npos) << status.body;
  EXPECT_NE(status.body.find("\"origin\":\"sim-a\",\"dc\":\"dc-a\",\"priority\":1,\"up\":false"),
            std::string::npos)
      << status.body;
  ASSERT_TRUE(testsupport::simFaultAll(sim_->port, "off"));
}

TEST_F(ObservabilityTest, BearerTokenIsEnforcedAndNeverLogged) {
  ASSERT_NO_FATAL_FAILURE(start({"bearer_token = \"" + std::string(kAdminToken) + "\"\n"}));
  // Liveness and readiness probes stay open; everything else needs the token.
  for (const char* path : {"/healthz", "/readyz"}) {
    EXPECT_EQ(testsupport::httpGet(adminPort(), path).status, 200) << path;
  }
  for (const char* path : {"/metrics", "/status"}) {
    EXPECT_EQ(testsupport::httpGet(adminPort(), path).status, 401) << path;
    EXPECT_EQ(testsupport::httpGet(adminPort(), path, {{"Authorization", "Bearer wrong"}}).status, 401)
        << path;
    EXPECT_EQ(testsupport::httpGet(adminPort(), path,
                                   {{"Authorization", std::string("Bearer ") + kAdminToken + "x"}})
                  .status,
              401)
        << path;
    EXPECT_EQ(admin(path).status, 200) << path;
  }
  // Viewer requests carrying secrets: a signed-URL token in the query and credentials.
  ASSERT_EQ(get("/obj/tok/t.ts?size=10&token=viewer-s3cret&bitrate=3",
                {{"Authorization", std::string("Bearer ") + kAdminToken}, {"Cookie", "sid=c00kie"}})
                .status,
            200);
  const std::string log = waitForLog(access_log_, "/obj/tok/t.ts");
  ASSERT_NE(log.find("/obj/tok/t.ts"), std::string::npos) << log;
  EXPECT_NE(log.find("\"client\":\"127.0.0.0\""), std::string::npos) << log;
  EXPECT_EQ(log.find("127.0.0.1"), std::string::npos) << log;
  EXPECT_EQ(log.find("viewer-s3cret"), std::string::npos) << log;
  EXPECT_EQ(log.find(kAdminToken), std::string::npos) << log;
  EXPECT_EQ(log.find("c00kie"), std::string::npos) << log;
  EXPECT_EQ(proxy_->process.log().find(kAdminToken), std::string::npos) << "not in stderr either";
}

TEST_F(ObservabilityTest, Sigusr1ReopensTheAccessLogAfterRotation) {
  ASSERT_NO_FATAL_FAILURE(start());
  ASSERT_EQ(get("/obj/rot/before.ts?size=10").status, 200);
  ASSERT_NE(waitForLog(access_log_, "before.ts").find("before.ts"), std::string::npos);
  const std::string rotated = access_log_ + ".1";
  ASSERT_EQ(std::rename(access_log_.c_str(), rotated.c_str()), 0) << std::strerror(errno);
  const size_t from = proxy_->process.logSize();
  ASSERT_TRUE(proxy_->process.signal(SIGUSR1));
  ASSERT_TRUE(proxy_->process.waitForLine("access log reopened", 10s, from))
      << proxy_->process.logTail();
  ASSERT_EQ(get("/obj/rot/after.ts?size=10").status, 200);
  const std::string fresh = waitForLog(access_log_, "after.ts");
  EXPECT_NE(fresh.find("after.ts"), std::string::npos) << "new file: " << fresh;
  EXPECT_EQ(fresh.find("before.ts"), std::string::npos) << fresh;
  const std::string old = testsupport::readFile(rotated);
  EXPECT_NE(old.find("before.ts"), std::string::npos) << old;
  EXPECT_EQ(old.find("after.ts"), std::string::npos) << old;
}

TEST(ObservabilityTls, AccessLogNamesTheTlsVersion) {
  const std::string openssl = findExecutable("openssl");
  const std::string curl = findExecutable("curl");
  if (openssl.empty() || curl.empty()) GTEST_SKIP() << "openssl or curl not installed";
  testsupport::TempDir dir("streamedge-obs-tls");
  testsupport::ChildProcess gen;
  ASSERT_TRUE(gen.start(openssl, {"req", "-x509", "-newkey", "ec", "-pkeyopt",
                                  "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                                  "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                                  "-keyout", dir.file("key.pem"), "-out", dir.file("cert.pem")}));
  ASSERT_EQ(gen.wait(30s), 0) << gen.log();
  std::string error;
  auto sim = testsupport::startOriginSim({"--name", "dc-a"}, &error);
  ASSERT_TRUE(sim) << error;
  const std::string log_path = dir.file("access.log");
  const std::string config =
      "[server]\nworkers = 1\n\n[admin]\naddress = \"127.0.0.1:0\"\n\n"
      // A plain listener too: the process harness waits for an "http" one.
      "[[listener]]\naddress = \"127.0.0.1:0\"\n\n"
      "[[listener]]\naddress = \"127.0.0.1:0\"\n"
      "  [[listener.certificate]]\n  cert = \"" + dir.file("cert.pem") + "\"\n  key = \"" +
      dir.file("key.pem") + "\"\n\n"
      "[log]\naccess_log = \"" + log_path + "\"\n\n"
      "[[origin_group]]\nname = \"main\"\n"
      "  [[origin_group.origin]]\n  url = \"http://127.0.0.1:" + std::to_string(sim->port) +
      "\"\n  dc = \"dc-a\"\n\n"
      "[[vhost]]\nhostnames = [\"*\"]\n"
      "  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"main\"\n";
  auto proxy = testsupport::startStreamedge(config, &error);
  ASSERT_TRUE(proxy) << error;
  const uint16_t https = proxy->port("https");
  ASSERT_NE(https, 0) << proxy->process.logTail();
  testsupport::ChildProcess client;
  ASSERT_TRUE(client.start(curl, {"-sS", "-o", "/dev/null", "-w", "%{http_code}\n", "--cacert",
                                  dir.file("cert.pem"), "--tlsv1.3", "--resolve",
                                  "localhost:" + std::to_string(https) + ":127.0.0.1",
                                  "https://localhost:" + std::to_string(https) +
                                      "/obj/tls/a.ts?size=10"}));
  ASSERT_EQ(client.wait(30s), 0) << client.log();
  EXPECT_NE(client.log().find("200"), std::string::npos) << client.log();
  std::string log;
  for (int i = 0; i < 50 && log.find("/obj/tls/a.ts") == std::string::npos; ++i) {
    std::this_thread::sleep_for(100ms);
    log = testsupport::readFile(log_path);
  }
  EXPECT_NE(log.find("\"tls\":\"1.3\""), std::string::npos) << log;
  // A client that gives up during the handshake is counted as a failed handshake.
  {
    testsupport::HttpConnection garbage;
    ASSERT_TRUE(garbage.connect(https));
    ASSERT_TRUE(garbage.sendRaw("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));  // not a ClientHello
    garbage.waitForClose(5s);
  }
  const testsupport::HttpResponse metrics = testsupport::httpGet(proxy->admin_port, "/metrics");
  EXPECT_NE(metrics.body.find("streamedge_tls_handshakes_total{version=\"1.3\",result=\"ok\"} 1"),
            std::string::npos)
      << metrics.body;
  EXPECT_NE(metrics.body.find("streamedge_tls_handshakes_total{version=\"unknown\",result=\"failed\"} 1"),
            std::string::npos)
      << metrics.body;
  EXPECT_EQ(proxy->process.stop(15s), 0) << proxy->process.logTail();
}

// notAfter of `cert_pem` in Unix seconds, read by the openssl command line (not by our code);
// nullopt when it cannot be read.
std::optional<double> opensslNotAfter(const std::string& openssl, const std::string& cert_pem) {
  testsupport::ChildProcess x509;
  if (!x509.start(openssl, {"x509", "-noout", "-enddate", "-in", cert_pem})) return std::nullopt;
  if (x509.wait(30s) != 0) return std::nullopt;
  const std::string out = x509.log();  // "notAfter=Mar  5 09:10:11 2027 GMT"
  const size_t at = out.find("notAfter=");
  if (at == std::string::npos) return std::nullopt;
  tm t{};
  if (!strptime(out.c_str() + at + 9, "%b %d %H:%M:%S %Y GMT", &t)) return std::nullopt;
  return static_cast<double>(timegm(&t));
}

TEST(ObservabilityTls, CertificateExpiryGaugeIsTheServedCertificatesNotAfterAndFollowsReload) {
  const std::string openssl = findExecutable("openssl");
  if (openssl.empty()) GTEST_SKIP() << "openssl not installed";
  testsupport::TempDir dir("streamedge-obs-cert");
  auto makeCert = [&](const char* days) {
    testsupport::ChildProcess gen;
    ASSERT_TRUE(gen.start(openssl, {"req", "-x509", "-newkey", "ec", "-pkeyopt",
                                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", days,
                                    "-subj", "/CN=localhost", "-addext",
                                    "subjectAltName=DNS:localhost", "-keyout", dir.file("key.pem"),
                                    "-out", dir.file("cert.pem")}));
    ASSERT_EQ(gen.wait(30s), 0) << gen.log();
  };
  ASSERT_NO_FATAL_FAILURE(makeCert("5"));
  const std::optional<double> first = opensslNotAfter(openssl, dir.file("cert.pem"));
  ASSERT_TRUE(first);
  std::string error;
  auto sim = testsupport::startOriginSim({"--name", "dc-a"}, &error);
  ASSERT_TRUE(sim) << error;
  const std::string config =
      "[server]\nworkers = 1\n\n[admin]\naddress = \"127.0.0.1:0\"\n\n"
      "[[listener]]\naddress = \"127.0.0.1:0\"\n\n"
      "[[listener]]\naddress = \"127.0.0.1:0\"\n"
      "  [[listener.certificate]]\n  cert = \"" + dir.file("cert.pem") + "\"\n  key = \"" +
      dir.file("key.pem") + "\"\n\n"
      "[log]\naccess_log = \"off\"\n\n"
      "[[origin_group]]\nname = \"main\"\n"
      "  [[origin_group.origin]]\n  url = \"http://127.0.0.1:" + std::to_string(sim->port) +
      "\"\n\n"
      "[[vhost]]\nhostnames = [\"*\"]\n"
      "  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"main\"\n";
  auto proxy = testsupport::startStreamedge(config, &error);
  ASSERT_TRUE(proxy) << error;
  // The second listener repeats the first's address (port 0), so its label is "#1"-suffixed,
  // as in streamedge_connections_active; the certificate is named by its configured path.
  const std::string series = "streamedge_tls_certificate_expiry_timestamp_seconds{listener=\"127.0.0.1:0#1\","
                             "certificate=\"" + dir.file("cert.pem") + "\"}";
  std::string m = testsupport::httpGet(proxy->admin_port, "/metrics").body;
  EXPECT_EQ(sample(m, series), *first) << m;
  EXPECT_EQ(m.find("streamedge_tls_certificate_expiry_timestamp_seconds{listener=\"127.0.0.1:0\""),
            std::string::npos)
      << "the plain listener serves no certificate\n" << m;

  // A renewed certificate in place + SIGHUP: the gauge follows the running certificate.
  ASSERT_NO_FATAL_FAILURE(makeCert("90"));
  const std::optional<double> renewed = opensslNotAfter(openssl, dir.file("cert.pem"));
  ASSERT_TRUE(renewed);
  ASSERT_GT(*renewed, *first + 80 * 86400);
  const size_t from = proxy->process.logSize();
  ASSERT_TRUE(proxy->process.signal(SIGHUP));
  ASSERT_TRUE(proxy->process.waitForLine("reloaded", 10s, from)) << proxy->process.logTail();
  m = testsupport::httpGet(proxy->admin_port, "/metrics").body;
  EXPECT_EQ(sample(m, series), *renewed) << m;
  EXPECT_EQ(proxy->process.stop(15s), 0) << proxy->process.logTail();
}

TEST(ObservabilityFiles, AlertRulesPassPromtoolCheckAndTheirUnitTests) {
  const std::string promtool = findExecutable("promtool");
  if (promtool.empty()) GTEST_SKIP() << "promtool not installed (Debian package prometheus)";
  const std::string dir = std::string(STREAMEDGE_SOURCE_DIR) + "/metrics";
  testsupport::ChildProcess check;
  ASSERT_TRUE(check.start(promtool, {"check", "rules", dir + "/alerts.yml"}));
  EXPECT_EQ(check.wait(60s), 0) << check.log();
  testsupport::ChildProcess unit;
  ASSERT_TRUE(unit.start(promtool, {"test", "rules", dir + "/alerts_test.yml"}));
  EXPECT_EQ(unit.wait(60s), 0) << unit.log();
}

TEST(ObservabilityFiles, DashboardQueriesOnlyExposedMetricFamilies) {
  // Every streamedge_* name the dashboard and the alerts use must be one the binary exposes
  // (a renamed metric would silently blank a panel).
  const std::string dir = std::string(STREAMEDGE_SOURCE_DIR) + "/metrics";
  const std::string exposition = testsupport::readFile(STREAMEDGE_SOURCE_DIR "/metrics/exposition.cc");
  ASSERT_FALSE(exposition.empty());
  for (const char* file : {"grafana-dashboard.json", "alerts.yml"}) {
    const std::string text = testsupport::readFile(dir + "/" + file);
    ASSERT_FALSE(text.empty()) << file;
    size_t pos = 0;
    while ((pos = text.find("streamedge_", pos)) != std::string::npos) {
      size_t end = pos;
      while (end < text.size() && (std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '_')) {
        ++end;
      }
      std::string name = text.substr(pos, end - pos);
      for (const char* suffix : {"_bucket", "_count", "_sum"}) {
        const std::string sfx = suffix;
        if (name.size() > sfx.size() && name.compare(name.size() - sfx.size(), sfx.size(), sfx) == 0 &&
            exposition.find("\"" + name + "\"") == std::string::npos) {
          name.resize(name.size() - sfx.size());
        }
      }
      EXPECT_NE(exposition.find("\"" + name + "\""), std::string::npos) << name << " in " << file;
      pos = end;
    }
  }
}

TEST(ObservabilityFailover, FailoverIsCountedOnTheOriginThatFailed) {
  // Origin "dead" (priority 1) refuses connections; "sim-b" (priority 2) answers.
  std::string error;
  auto sim = testsupport::startOriginSim({"--name", "dc-b"}, &error);
  ASSERT_TRUE(sim) << error;
  const uint16_t dead_port = freePort();
  ASSERT_NE(dead_port, 0);
  const std::string config =
      "[server]\nworkers = 1\n\n[admin]\naddress = \"127.0.0.1:0\"\n\n"
      "[[listener]]\naddress = \"127.0.0.1:0\"\n\n[log]\naccess_log = \"off\"\n\n"
      "[[origin_group]]\nname = \"main\"\n"
      "  [[origin_group.origin]]\n  name = \"dead\"\n  url = \"http://127.0.0.1:" +
      std::to_string(dead_port) + "\"\n  dc = \"dc-a\"\n  priority = 1\n"
      "  [[origin_group.origin]]\n  name = \"sim-b\"\n  url = \"http://127.0.0.1:" +
      std::to_string(sim->port) + "\"\n  dc = \"dc-b\"\n  priority = 2\n\n"
      "[[vhost]]\nhostnames = [\"*\"]\n"
      "  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"main\"\n";
  auto proxy = testsupport::startStreamedge(config, &error);
  ASSERT_TRUE(proxy) << error;
  HttpResponse r = testsupport::httpGet(proxy->http_port, "/obj/fo/a.ts?size=100", {}, 15s);
  EXPECT_EQ(r.status, 200);
  // Counted just after the last byte is written (see metricsOnce): read once it shows.
  std::string m;
  for (int i = 0; i < 100; ++i) {
    m = testsupport::httpGet(proxy->admin_port, "/metrics").body;
    if (sample(m, "streamedge_requests_total{vhost=\"*\",result=\"miss\",status_class=\"2xx\","
                  "protocol=\"http/1.1\"}") == 1.0 &&
        sample(m, "streamedge_origin_fetches_total") == 1.0) {
      break;
    }
    std::this_thread::sleep_for(50ms);
  }
  const std::string dead = "{group=\"main\",origin=\"dead\",dc=\"dc-a\"}";
  const std::string live = "{group=\"main\",origin=\"sim-b\",dc=\"dc-b\"}";
  EXPECT_EQ(sample(m, "streamedge_origin_requests_total" + dead), 1.0) << m;
  // Nothing listens there: a refused connection.
  const std::string dead_labels = dead.substr(0, dead.size() - 1);
  EXPECT_EQ(sample(m, "streamedge_origin_errors_total" + dead_labels + ",reason=\"connect\"}"), 1.0);
  EXPECT_EQ(sample(m, "streamedge_origin_failovers_total" + dead), 1.0);
  EXPECT_EQ(sample(m, "streamedge_origin_response_seconds_count" + dead), 0.0);
  EXPECT_EQ(sample(m, "streamedge_origin_requests_total" + live), 1.0);
  const std::string live_labels = live.substr(0, live.size() - 1);
  for (const char* reason : {"connect", "tls", "timeout", "closed", "invalid_response", "5xx", "body", "other"}) {
    EXPECT_EQ(sample(m, "streamedge_origin_errors_total" + live_labels + ",reason=\"" + reason + "\"}"),
              0.0)
        << reason;
  }
  EXPECT_EQ(sample(m, "streamedge_origin_failovers_total" + live), 0.0);
  EXPECT_EQ(sample(m, "streamedge_origin_fetches_total"), 1.0);
  // A vhost without a name is labelled by its first hostname.
  EXPECT_EQ(sample(m, "streamedge_requests_total{vhost=\"*\",result=\"miss\",status_class=\"2xx\","
                      "protocol=\"http/1.1\"}"),
            1.0);
  EXPECT_EQ(proxy->process.stop(15s), 0) << proxy->process.logTail();
}

}  // namespace
}  // namespace streamedge::scenario
