// Shared fixture for scenario tests: one origin simulator ("dc-a") and one streamedge process on
// loopback, with a config written for them. Each test uses its own path prefix.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>

#include "tests/support/http_client.h"
#include "tests/support/origin_sim.h"
#include "tests/support/process.h"

namespace streamedge::scenario {

using testsupport::Headers;
using testsupport::HttpResponse;

// A config for one origin group "main" with the simulator at `sim_port`; `route_extra` is added
// to the catch-all route, `server_extra` to [server], `ram_extra` to [cache.ram].
inline std::string scenarioConfig(uint16_t sim_port, const std::string& log_path,
                                  const std::string& route_extra = "",
                                  const std::string& ram = "64MiB",
                                  const std::string& server_extra = "",
                                  const std::string& ram_extra = "") {
  return "[server]\nworkers = 2\n" + server_extra + "\n"
         "[admin]\naddress = \"127.0.0.1:0\"\n\n"
         "[[listener]]\naddress = \"127.0.0.1:0\"\n\n"
         "[cache.ram]\nsize = \"" + ram + "\"\n" + ram_extra + "\n"
         "[log]\naccess_log = \"" + log_path + "\"\n\n"
         "[[origin_group]]\nname = \"main\"\n"
         "  [[origin_group.origin]]\n  url = \"http://127.0.0.1:" + std::to_string(sim_port) +
         "\"\n  dc = \"dc-a\"\n  priority = 1\n\n"
         "[[vhost]]\nhostnames = [\"*\"]\n"
         "  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"main\"\n" + route_extra;
}

// The value of the first sample of `metric` in a /metrics text whose line contains `labels`
// (e.g. tier="ssd"); `metric` may also be a whole series as rendered (name{labels}). -1 when
// absent.
inline double metricValue(const std::string& text, const std::string& metric,
                          const std::string& labels = "") {
  size_t pos = 0;
  while ((pos = text.find(metric, pos)) != std::string::npos) {
    const size_t eol = text.find('\n', pos);
    const std::string line = text.substr(pos, eol == std::string::npos ? std::string::npos : eol - pos);
    const bool line_start = pos == 0 || text[pos - 1] == '\n';  // not "# HELP name ..."
    pos = eol == std::string::npos ? text.size() : eol;
    if (!line_start) continue;
    const char after = line.size() > metric.size() ? line[metric.size()] : '\0';
    if (after != ' ' && after != '{') continue;  // a longer name with this prefix
    if (!labels.empty() && line.find(labels) == std::string::npos) continue;
    const size_t sp = line.rfind(' ');
    return std::stod(line.substr(sp + 1));
  }
  return -1;
}

// The value of exactly `series` (name{labels} as rendered) in a /metrics text; nullopt when no
// sample of it is there (zero-valued labelled series are not exported).
inline std::optional<double> sample(const std::string& text, const std::string& series) {
  size_t pos = 0;
  while ((pos = text.find(series + ' ', pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') {
      return std::strtod(text.c_str() + pos + series.size() + 1, nullptr);
    }
    pos += series.size();
  }
  return std::nullopt;
}

class ScenarioTest : public ::testing::Test {
 protected:
  void SetUp() override { start(""); }

  // Every test ends with a graceful stop that must exit 0 with a clean log, so that a sanitizer
  // report, a leak (LeakSanitizer turns the exit code non-zero) or a crash in the proxy fails the
  // test that caused it.
  void TearDown() override {
    if (!proxy_ || !proxy_->process.running()) {
      if (proxy_) checkLog(proxy_->process.log());
      return;
    }
    const int status = proxy_->process.stop(std::chrono::seconds(15));
    EXPECT_EQ(status, 0) << proxy_->process.logTail(80);
    checkLog(proxy_->process.log());
  }

  static void checkLog(const std::string& log) {
    for (const char* bad : {"runtime error", "Sanitizer", "LeakSanitizer", "Segmentation"}) {
      EXPECT_EQ(log.find(bad), std::string::npos) << bad << " in the proxy log:\n" << log;
    }
  }

  // (Re)starts both processes; `route_extra` goes into the catch-all route.
  void start(const std::string& route_extra, const std::string& ram = "64MiB",
             const std::string& server_extra = "", const std::string& ram_extra = "") {
    proxy_.reset();
    if (!sim_) {
      std::string error;
      sim_ = testsupport::startOriginSim({"--name", "dc-a"}, &error);
      ASSERT_TRUE(sim_) << error;
    }
    if (!dir_) dir_.emplace("streamedge-scenario");
    access_log_ = dir_->file("access.log");
    std::string error;
    proxy_ = testsupport::startStreamedge(scenarioConfig(sim_->port, access_log_, route_extra, ram, server_extra,
                                                         ram_extra),
                                          &error);
    ASSERT_TRUE(proxy_) << error;
  }

  uint16_t port() const { return proxy_->http_port; }
  uint16_t simPort() const { return sim_->port; }
  long originCount(const std::string& path, bool not_modified = false) const {
    return testsupport::simCount(sim_->port, path, not_modified);
  }
  HttpResponse get(const std::string& target, const Headers& headers = {}) {
    return testsupport::httpGet(port(), target, headers, std::chrono::seconds(15));
  }
  std::string proxyLog() const { return proxy_->process.logTail(60); }

  std::optional<testsupport::TempDir> dir_;
  std::optional<testsupport::OriginSimProcess> sim_;
  std::optional<testsupport::StreamedgeProcess> proxy_;
  std::string access_log_;
};

// Two origin simulators as data centers of group "main": "a" in dc-a (priority 1) and "b" in
// dc-b (priority 2), two workers, no access log.
struct TwoDcConfig {
  std::string group_extra;    // keys of the origin group
  std::string primary_extra;  // keys of origin "a"
  std::string route_extra;    // keys of the one route
  std::string ram_extra;      // keys of [cache.ram]
  std::string top_extra;      // tables before the origin group ([dns], ...)
  std::string primary_host = "127.0.0.1";  // a name here goes through [dns]
};

class TwoDcScenarioTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string error;
    primary_ = testsupport::startOriginSim({"--name", "dc-a"}, &error);
    ASSERT_TRUE(primary_) << error;
    secondary_ = testsupport::startOriginSim({"--name", "dc-b"}, &error);
    ASSERT_TRUE(secondary_) << error;
  }

  void TearDown() override {
    if (!proxy_ || !proxy_->process.running()) return;
    const int status = proxy_->process.stop(std::chrono::seconds(15));
    EXPECT_EQ(status, 0) << proxy_->process.logTail(80);
    const std::string log = proxy_->process.log();
    for (const char* bad : {"runtime error", "Sanitizer", "Segmentation"}) {
      EXPECT_EQ(log.find(bad), std::string::npos)
          << bad << " in the proxy log:\n" << log.substr(0, 4000);
    }
  }

  void startProxy(const TwoDcConfig& c = {}) {
    const std::string config =
        "[server]\nworkers = 2\n\n[admin]\naddress = \"127.0.0.1:0\"\n\n"
        "[[listener]]\naddress = \"127.0.0.1:0\"\nbacklog = 4096\n\n"
        "[cache.ram]\nsize = \"256MiB\"\n" + c.ram_extra + "\n"
        "[log]\naccess_log = \"off\"\n\n" + c.top_extra + "\n"
        "[[origin_group]]\nname = \"main\"\n" + c.group_extra +
        "  [[origin_group.origin]]\n  name = \"a\"\n  url = \"http://" + c.primary_host + ":" +
        std::to_string(primary_->port) + "\"\n  dc = \"dc-a\"\n  priority = 1\n" + c.primary_extra +
        "  [[origin_group.origin]]\n  name = \"b\"\n  url = \"http://127.0.0.1:" +
        std::to_string(secondary_->port) + "\"\n  dc = \"dc-b\"\n  priority = 2\n\n"
        "[[vhost]]\nhostnames = [\"*\"]\n"
        "  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"main\"\n" + c.route_extra;
    std::string error;
    proxy_ = testsupport::startStreamedge(config, &error);
    ASSERT_TRUE(proxy_) << error;
  }

  std::string metrics() { return testsupport::httpGet(proxy_->admin_port, "/metrics").body; }
  std::string log() const { return proxy_->process.logTail(60); }

  std::optional<testsupport::OriginSimProcess> primary_;
  std::optional<testsupport::OriginSimProcess> secondary_;
  std::optional<testsupport::StreamedgeProcess> proxy_;
};

}  // namespace streamedge::scenario
