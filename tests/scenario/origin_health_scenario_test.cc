// Origin health with two data centers (two origin_sim processes): active checks take a stopped
// primary out of rotation within fall x interval and bring it back once it answers again, a
// failing health path alone does the same (checks started by a SIGHUP reload), passive ejection
// grows its back-off and never ejects every origin of a group, and a recovered primary's share
// of new misses ramps up over slow_start. Every wait is bounded.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
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
using testsupport::HttpResponse;
using SteadyClock = std::chrono::steady_clock;

std::string labels(const char* origin, const char* dc) {
  return std::string("{group=\"main\",origin=\"") + origin + "\",dc=\"" + dc + "\"";
}

class OriginHealthScenario : public ::testing::Test {
 protected:
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

  void startSims() {
    std::string error;
    a_ = testsupport::startOriginSim({"--name", "dc-a"}, &error);
    ASSERT_TRUE(a_) << error;
    a_port_ = a_->port;
    b_ = testsupport::startOriginSim({"--name", "dc-b"}, &error);
    ASSERT_TRUE(b_) << error;
  }

  // Primary "a" (dc-a, priority 1) and secondary "b" (dc-b, priority 2); `group_extra` goes into
  // [[origin_group]] before its origins (sub-tables welcome).
  std::string config(const std::string& group_extra) const {
    return "[server]\nworkers = 2\n\n"
           "[admin]\naddress = \"127.0.0.1:0\"\n\n"
           "[[listener]]\naddress = \"127.0.0.1:0\"\n\n"
           "[log]\naccess_log = \"off\"\n\n"
           "[[origin_group]]\nname = \"main\"\n" + group_extra +
           "\n  [[origin_group.origin]]\n  name = \"a\"\n  url = \"http://127.0.0.1:" +
           std::to_string(a_port_) + "\"\n  dc = \"dc-a\"\n  priority = 1\n"
           "  connect_timeout = \"500ms\"\n"
           "  [[origin_group.origin]]\n  name = \"b\"\n  url = \"http://127.0.0.1:" +
           std::to_string(b_->port) + "\"\n  dc = \"dc-b\"\n  priority = 2\n\n"
           "[[vhost]]\nhostnames = [\"*\"]\n"
           "  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"main\"\n";
  }

  void startProxy(const std::string& group_extra) {
    std::string error;
    proxy_ = testsupport::startStreamedge(config(group_extra), &error);
    ASSERT_TRUE(proxy_) << error;
  }

  HttpResponse get(const std::string& target) {
    return testsupport::httpGet(proxy_->http_port, target, {}, 15s);
  }
  std::string admin(const std::string& path) {
    HttpResponse r = testsupport::httpGet(proxy_->admin_port, path, {}, 10s);
    EXPECT_EQ(r.status, 200) << path << ": " << r.body;
    return r.body;
  }
  double metric(const std::string& series) {
    return sample(admin("/metrics"), series).value_or(-1);
  }
  double up(const char* origin, const char* dc) {
    return metric("streamedge_origin_up" + labels(origin, dc) + "}");
  }
  double transitions(const char* origin, const char* dc, const char* to) {
    return metric("streamedge_origin_health_transitions_total" + labels(origin, dc) +
                  ",to=\"" + to + "\"}");
  }
  // Polls origin_up until it equals `want` or `limit` passes; the time it took, or nullopt.
  std::optional<std::chrono::milliseconds> waitUp(const char* origin, const char* dc, double want,
                                                  std::chrono::milliseconds limit) {
    const auto start = SteadyClock::now();
    for (int i = 0; i < 1000 && SteadyClock::now() - start < limit; ++i) {
      if (up(origin, dc) == want) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start);
      }
      std::this_thread::sleep_for(20ms);
    }
    return std::nullopt;
  }
  // The JSON object of one origin in /status ("{"group":"main","origin":"a",...}").
  std::string statusOf(const std::string& origin) {
    const std::string status = admin("/status");
    const size_t at = status.find("\"origin\":\"" + origin + "\"");
    if (at == std::string::npos) return "";
    const size_t begin = status.rfind('{', at);
    const size_t health = status.find("\"health\":{", at);
    const size_t end = health == std::string::npos ? std::string::npos : status.find('}', health);
    return end == std::string::npos ? status.substr(begin) : status.substr(begin, end + 2 - begin);
  }
  // `n` distinct misses under `prefix`; every one must be a complete 200.
  void misses(const std::string& prefix, int n) {
    for (int i = 0; i < n; ++i) {
      const std::string target = prefix + std::to_string(i) + ".ts?size=2000";
      HttpResponse r = get(target);
      ASSERT_EQ(r.status, 200) << target << " " << r.error << "\n" << proxy_->process.logTail();
      ASSERT_EQ(r.body.size(), 2000u) << target;
    }
  }
  long count(uint16_t port, const std::string& prefix, int n) {
    long total = 0;
    for (int i = 0; i < n; ++i) {
      const long c = testsupport::simCount(port, prefix + std::to_string(i) + ".ts");
      if (c > 0) total += c;
    }
    return total;
  }

  std::optional<testsupport::OriginSimProcess> a_;
  std::optional<testsupport::OriginSimProcess> b_;
  uint16_t a_port_ = 0;
  std::optional<testsupport::StreamedgeProcess> proxy_;
};

constexpr const char* kChecks =
    "  [origin_group.health_check]\n  path = \"/healthz\"\n  interval = \"200ms\"\n"
    "  timeout = \"200ms\"\n  fall = 2\n  rise = 2\n";

TEST_F(OriginHealthScenario, StoppedPrimaryIsMarkedDownAndNewMissesGoToItAgainOnceItIsBack) {
  ASSERT_NO_FATAL_FAILURE(startSims());
  ASSERT_NO_FATAL_FAILURE(startProxy(kChecks));
  ASSERT_TRUE(waitUp("a", "dc-a", 1, 5s));
  ASSERT_NO_FATAL_FAILURE(misses("/obj/h1/before-", 3));
  EXPECT_EQ(count(a_port_, "/obj/h1/before-", 3), 3);
  EXPECT_EQ(count(b_->port, "/obj/h1/before-", 3), 0);
  EXPECT_EQ(testsupport::simCount(b_->port, "/healthz") > 0, true) << "b is checked too";

  // Stop the primary: two failed checks 200 ms apart take it out (fall x interval, plus the
  // check that was under way and the scrape).
  const size_t log_from = proxy_->process.logSize();
  a_->process.stop(5s);
  const auto down_after = waitUp("a", "dc-a", 0, 5s);
  ASSERT_TRUE(down_after) << proxy_->process.logTail();
  EXPECT_LE(down_after->count(), 1500) << "fall x interval = 400 ms";
  EXPECT_TRUE(proxy_->process.waitForLine("origin a (dc dc-a, group main) is down (active)", 2s,
                                          log_from))
      << proxy_->process.logTail();
  EXPECT_EQ(transitions("a", "dc-a", "down"), 1);
  EXPECT_EQ(up("b", "dc-b"), 1);
  std::string a = statusOf("a");
  EXPECT_NE(a.find("\"up\":false"), std::string::npos) << a;
  EXPECT_NE(a.find("\"down_reason\":\"active\""), std::string::npos) << a;
  EXPECT_NE(a.find("\"active\":\"down\""), std::string::npos) << a;
  const std::string ready = testsupport::httpGet(proxy_->admin_port, "/readyz").body;
  EXPECT_NE(ready.find("origin_group main: ok (1 of 2 origins up)"), std::string::npos) << ready;

  // Misses go to the secondary, without an attempt on the primary first.
  const double a_requests = metric("streamedge_origin_requests_total" + labels("a", "dc-a") + "}");
  ASSERT_NO_FATAL_FAILURE(misses("/obj/h1/during-", 10));
  EXPECT_EQ(count(b_->port, "/obj/h1/during-", 10), 10);
  EXPECT_EQ(metric("streamedge_origin_requests_total" + labels("a", "dc-a") + "}"), a_requests);

  // The primary comes back on the same port: two passed checks bring it back.
  std::string error;
  a_ = testsupport::startOriginSim(
      {"--name", "dc-a", "--listen", "127.0.0.1:" + std::to_string(a_port_)}, &error);
  ASSERT_TRUE(a_) << error;
  const auto up_after = waitUp("a", "dc-a", 1, 5s);
  ASSERT_TRUE(up_after) << proxy_->process.logTail();
  EXPECT_LE(up_after->count(), 1500) << "rise x interval = 400 ms";
  EXPECT_EQ(transitions("a", "dc-a", "up"), 1);
  a = statusOf("a");
  EXPECT_NE(a.find("\"active\":\"up\""), std::string::npos) << a;
  EXPECT_NE(a.find("\"down_reason\":null"), std::string::npos) << a;
  ASSERT_NO_FATAL_FAILURE(misses("/obj/h1/after-", 10));
  EXPECT_EQ(count(a_->port, "/obj/h1/after-", 10), 10);
  EXPECT_EQ(count(b_->port, "/obj/h1/after-", 10), 0);
}

TEST_F(OriginHealthScenario, ReloadStartsChecksAndAFailingHealthPathAloneTakesTheOriginOut) {
  ASSERT_NO_FATAL_FAILURE(startSims());
  ASSERT_NO_FATAL_FAILURE(startProxy(""));
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(testsupport::simCount(a_port_, "/healthz"), 0) << "no [health_check]: no checks";
  EXPECT_NE(statusOf("a").find("\"active\":\"off\""), std::string::npos) << statusOf("a");

  // The health path fails (the content still works); checks start with the reload.
  ASSERT_TRUE(testsupport::simFault(a_port_, "/healthz", "503", 1000));
  ASSERT_TRUE(proxy_->rewriteConfig(config(kChecks)));
  const size_t log_from = proxy_->process.logSize();
  ASSERT_TRUE(proxy_->process.signal(SIGHUP));
  ASSERT_TRUE(proxy_->process.waitForLine("reloaded", 10s, log_from)) << proxy_->process.logTail();
  ASSERT_TRUE(waitUp("a", "dc-a", 0, 5s)) << proxy_->process.logTail();
  EXPECT_TRUE(proxy_->process.waitForLine("last: status 503", 2s, log_from))
      << proxy_->process.logTail();
  ASSERT_NO_FATAL_FAILURE(misses("/obj/h2/down-", 5));
  EXPECT_EQ(count(b_->port, "/obj/h2/down-", 5), 5);
  EXPECT_EQ(count(a_port_, "/obj/h2/down-", 5), 0);

  // Health passes again → up; misses return to the primary.
  ASSERT_TRUE(testsupport::simReset(a_port_, /*faults=*/true));
  ASSERT_TRUE(waitUp("a", "dc-a", 1, 5s)) << proxy_->process.logTail();
  ASSERT_NO_FATAL_FAILURE(misses("/obj/h2/up-", 5));
  EXPECT_EQ(count(a_port_, "/obj/h2/up-", 5), 5);

  // A reload without the table stops the checks.
  ASSERT_TRUE(proxy_->rewriteConfig(config("")));
  const size_t reload_from = proxy_->process.logSize();
  ASSERT_TRUE(proxy_->process.signal(SIGHUP));
  ASSERT_TRUE(proxy_->process.waitForLine("reloaded", 10s, reload_from));
  std::this_thread::sleep_for(100ms);
  const long checks = testsupport::simCount(a_port_, "/healthz");
  std::this_thread::sleep_for(600ms);
  EXPECT_EQ(testsupport::simCount(a_port_, "/healthz"), checks);
}

TEST_F(OriginHealthScenario, PassiveEjectionBacksOffAndNeverEjectsEveryOrigin) {
  ASSERT_NO_FATAL_FAILURE(startSims());
  ASSERT_NO_FATAL_FAILURE(startProxy(
      "  [origin_group.outlier_detection]\n  consecutive_failures = 3\n"
      "  base_ejection_time = \"1s\"\n  max_ejection_time = \"3s\"\n"));
  // The primary answers 500 to everything: each miss fails over to the secondary (the viewer
  // sees a 200), and the third failure ejects the primary for 1 s.
  ASSERT_TRUE(testsupport::simFaultAll(a_port_, "500"));
  ASSERT_NO_FATAL_FAILURE(misses("/obj/h3/a-", 3));
  EXPECT_EQ(up("a", "dc-a"), 0);
  std::string a = statusOf("a");
  EXPECT_NE(a.find("\"down_reason\":\"passive\""), std::string::npos) << a;
  EXPECT_NE(a.find("\"passive\":\"ejected\""), std::string::npos) << a;
  EXPECT_NE(a.find("\"backoff_ms\":1000"), std::string::npos) << a;
  ASSERT_NO_FATAL_FAILURE(misses("/obj/h3/skip-", 3));
  EXPECT_EQ(count(a_port_, "/obj/h3/skip-", 3), 0) << "ejected: not tried";

  // After the back-off one probe goes to the primary; it fails, and the back-off doubles.
  std::this_thread::sleep_for(1100ms);
  ASSERT_NO_FATAL_FAILURE(misses("/obj/h3/probe-", 3));
  EXPECT_EQ(count(a_port_, "/obj/h3/probe-", 3), 1);
  a = statusOf("a");
  EXPECT_NE(a.find("\"backoff_ms\":2000"), std::string::npos) << a;
  EXPECT_NE(a.find("\"ejections\":2"), std::string::npos) << a;
  EXPECT_EQ(metric("streamedge_origin_ejections_total" + labels("a", "dc-a") + "}"), 2);
  EXPECT_EQ(transitions("a", "dc-a", "down"), 1) << "one way down, however many ejections";

  // The secondary fails too: passive signals never eject the last eligible origin.
  ASSERT_TRUE(testsupport::simFaultAll(b_->port, "500"));
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(get("/obj/h3/both-" + std::to_string(i) + ".ts?size=10").status, 500);
  }
  EXPECT_EQ(up("b", "dc-b"), 1);
  EXPECT_NE(statusOf("b").find("\"ejections_refused\":1"), std::string::npos) << statusOf("b");
  EXPECT_NE(proxy_->process.log().find("origin b (dc dc-b, group main) not ejected"),
            std::string::npos);

  // Both recover; after its back-off the primary's probe succeeds and it is back.
  ASSERT_TRUE(testsupport::simFaultAll(b_->port, "off"));
  ASSERT_TRUE(testsupport::simFaultAll(a_port_, "off"));
  std::this_thread::sleep_for(2100ms);
  ASSERT_NO_FATAL_FAILURE(misses("/obj/h3/back-", 4));
  EXPECT_EQ(count(a_port_, "/obj/h3/back-", 4), 4);
  EXPECT_EQ(up("a", "dc-a"), 1);
  EXPECT_EQ(transitions("a", "dc-a", "up"), 1);
}

TEST_F(OriginHealthScenario, RecoveredPrimaryRampsUpOverSlowStart) {
  ASSERT_NO_FATAL_FAILURE(startSims());
  ASSERT_NO_FATAL_FAILURE(startProxy(std::string("slow_start = \"3s\"\n") + kChecks));
  ASSERT_TRUE(testsupport::simFault(a_port_, "/healthz", "503", 1000));
  ASSERT_TRUE(waitUp("a", "dc-a", 0, 5s));
  ASSERT_TRUE(testsupport::simReset(a_port_, /*faults=*/true));
  ASSERT_TRUE(waitUp("a", "dc-a", 1, 5s));
  // Right after recovery the primary takes a small share (10 % growing to 100 % over 3 s); the
  // secondary the rest.
  ASSERT_NO_FATAL_FAILURE(misses("/obj/h4/early-", 20));
  const long early_a = count(a_port_, "/obj/h4/early-", 20);
  const long early_b = count(b_->port, "/obj/h4/early-", 20);
  EXPECT_EQ(early_a + early_b, 20);
  EXPECT_GE(early_b, 5) << "the secondary takes most requests early in the ramp";
  EXPECT_NE(proxy_->process.log().find("ramping up (slow_start)"), std::string::npos);
  // After slow_start the primary takes everything again.
  std::this_thread::sleep_for(3s);
  ASSERT_NO_FATAL_FAILURE(misses("/obj/h4/late-", 10));
  EXPECT_EQ(count(a_port_, "/obj/h4/late-", 10), 10);
  EXPECT_NE(statusOf("a").find("\"ramp_percent\":100"), std::string::npos) << statusOf("a");
}

}  // namespace
}  // namespace streamedge::scenario
