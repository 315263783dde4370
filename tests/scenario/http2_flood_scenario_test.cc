// HTTP/2 floods against the real binary (tests/support/h2_flood.py writes raw frames over TLS):
// rapid reset, thousands of streams opened and reset, CONTINUATION without END_HEADERS, an
// HPACK bomb, SETTINGS and PING floods, a zero-window holder and a connection that never sends a
// request. The offending connection gets GOAWAY (or its stream a reset), the limit counts in
// streamedge_http2_abuse_total{kind}, a normal viewer on another connection of the same worker
// is answered whole while the floods run, and the proxy's RSS stays bounded. Waits are bounded
// by the clients themselves (15 s for a flood, 20 s for a viewer); no timing is asserted beyond
// those generous bounds.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/scenario/scenario_env.h"
#include "tests/support/http_client.h"
#include "tests/support/origin_sim.h"
#include "tests/support/process.h"
#include "tls/self_signed.h"

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;

constexpr int kEnhanceYourCalm = 0xb;  // RFC 9113 §7
constexpr int kCancel = 0x8;

std::string field(const std::string& line, const std::string& name) {
  const std::string key = name + "=";
  size_t at = line.find(" " + key);
  if (at == std::string::npos) {
    if (line.compare(0, key.size(), key) != 0) return "";
    at = 0;
  } else {
    at += 1;
  }
  at += key.size();
  const size_t end = line.find_first_of(" \n", at);
  return line.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

std::string run(const std::string& command) {
  std::string out;
  if (FILE* p = ::popen(command.c_str(), "r")) {
    char buf[4096];
    size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    ::pclose(p);
  }
  return out;
}

// VmRSS of `pid` in KiB; -1 when unreadable.
long rssKiB(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

class Http2FloodScenarioTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tls::CertificateSpec ca_spec;
    ca_spec.common_name = "streamedge h2 flood ca";
    ca_spec.is_ca = true;
    ca_ = tls::generateCertificate(ca_spec);
    ASSERT_EQ(tls::writePem(dir_.file("ca.pem"), dir_.file("ca.key"), ca_.cert.get(), ca_.key.get()), "");
    tls::CertificateSpec leaf;
    leaf.common_name = "localhost";
    leaf.dns_names = {"localhost"};
    leaf.ip_addresses = {"127.0.0.1"};
    leaf.issuer_cert = ca_.cert.get();
    leaf.issuer_key = ca_.key.get();
    tls::GeneratedCertificate g = tls::generateCertificate(leaf);
    ASSERT_EQ(g.error, "");
    ASSERT_EQ(tls::writePem(dir_.file("leaf.pem"), dir_.file("leaf.key"), g.cert.get(), g.key.get(),
                            {ca_.cert.get()}),
              "");
    std::string error;
    sim_ = testsupport::startOriginSim({"--name", "h2-flood-origin"}, &error);
    ASSERT_TRUE(sim_) << error;
    // One worker: the floods and the viewer share its loop.
    const std::string config =
        "[server]\nworkers = 1\nheader_timeout = \"2s\"\nhttp2_zero_window_timeout = \"1s\"\n"
        "[admin]\naddress = \"127.0.0.1:0\"\n[log]\naccess_log = \"off\"\n"
        "[[listener]]\naddress = \"127.0.0.1:0\"\n"
        "[[listener]]\naddress = \"127.0.0.1:0\"\n"
        "  [[listener.certificate]]\n  cert = \"" + dir_.file("leaf.pem") + "\"\n  key = \"" +
        dir_.file("leaf.key") + "\"\n"
        "[[origin_group]]\nname = \"main\"\n  [[origin_group.origin]]\n  url = \"http://127.0.0.1:" +
        std::to_string(sim_->port) + "\"\n"
        "[[vhost]]\nhostnames = [\"*\"]\n  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"main\"\n";
    proxy_ = testsupport::startStreamedge(config, &error);
    ASSERT_TRUE(proxy_) << error;
    https_port_ = proxy_->port("https");
    ASSERT_NE(https_port_, 0) << proxy_->process.logTail();
  }

  void TearDown() override {
    if (proxy_ && proxy_->process.running()) {
      const std::string log = proxy_->process.logTail(80);
      for (const char* bad : {"runtime error", "Sanitizer", "Segmentation"}) {
        EXPECT_EQ(log.find(bad), std::string::npos) << log;
      }
      EXPECT_EQ(proxy_->process.stop(15s), 0) << proxy_->process.logTail(80);
    }
  }

  std::string flood(const std::string& mode, const std::string& path = "/obj/h2-flood") {
    return run("timeout 30 /usr/bin/python3 " STREAMEDGE_SOURCE_DIR "/tests/support/h2_flood.py " +
               std::to_string(https_port_) + " " + dir_.file("ca.pem") + " " + mode + " '" +
               path + "' 2>&1");
  }

  // A normal viewer on its own connection: status and body length of one GET.
  std::string view(const std::string& path) {
    return run("timeout 30 /usr/bin/python3 " STREAMEDGE_SOURCE_DIR "/tests/support/h2_client.py " +
               std::to_string(https_port_) + " " + dir_.file("ca.pem") + " '" + path + "' 2>&1");
  }

  double abuse(const std::string& kind) {
    const std::string text = testsupport::httpGet(proxy_->admin_port, "/metrics").body;
    return sample(text, "streamedge_http2_abuse_total{kind=\"" + kind + "\"}").value_or(-1);
  }

  // Three connections run `mode` at once while a viewer fetches a cached object three times on
  // another; each flood connection must end with GOAWAY `code` and `kind` must count.
  void floodWhileViewing(const std::string& mode, const std::string& kind) {
    const std::string object = "/obj/h2-viewer?size=200000";
    const std::string warm = view(object);
    ASSERT_NE(warm.find("status=200 length=200000"), std::string::npos) << warm;
    const long rss_before = rssKiB(proxy_->process.pid());
    ASSERT_GT(rss_before, 0);

    std::vector<std::string> outs(3);
    std::vector<std::thread> floods;
    for (size_t i = 0; i < outs.size(); ++i) {
      floods.emplace_back([this, &outs, &mode, i] { outs[i] = flood(mode); });
    }
    for (int i = 0; i < 3; ++i) {
      const std::string v = view(object);
      EXPECT_NE(v.find("status=200 length=200000"), std::string::npos) << "viewer " << i << ": " << v;
    }
    for (std::thread& t : floods) t.join();
    for (const std::string& out : outs) {
      EXPECT_EQ(field(out, "goaway"), std::to_string(kEnhanceYourCalm))
          << mode << ": " << out << proxy_->process.logTail(20);
    }
    EXPECT_GE(abuse(kind), 3) << mode;
    // The edge still answers afterwards, and held no flood in memory.
    const std::string after = view(object);
    EXPECT_NE(after.find("status=200 length=200000"), std::string::npos) << after;
    const long rss_after = rssKiB(proxy_->process.pid());
    EXPECT_LT(rss_after, rss_before + 128 * 1024) << "RSS KiB before " << rss_before << " after "
                                                  << rss_after;
    EXPECT_LT(rss_after, 1024 * 1024);
  }

  testsupport::TempDir dir_{"streamedge-h2-flood"};
  tls::GeneratedCertificate ca_;
  std::optional<testsupport::OriginSimProcess> sim_;
  std::optional<testsupport::StreamedgeProcess> proxy_;
  uint16_t https_port_ = 0;
};

TEST_F(Http2FloodScenarioTest, RapidResetGetsGoawayWhileAViewerIsServed) {
  floodWhileViewing("rapid_reset", "rapid_reset");
}

TEST_F(Http2FloodScenarioTest, ThousandsOfStreamsOpenedAndResetGetGoaway) {
  floodWhileViewing("open_reset", "rapid_reset");
}

TEST_F(Http2FloodScenarioTest, ContinuationWithoutEndHeadersGetsGoaway) {
  floodWhileViewing("continuation", "continuation");
}

TEST_F(Http2FloodScenarioTest, HpackBombGetsGoaway) {
  floodWhileViewing("hpack_bomb", "header_list");
}

TEST_F(Http2FloodScenarioTest, SettingsFloodGetsGoaway) {
  floodWhileViewing("settings", "settings_flood");
}

TEST_F(Http2FloodScenarioTest, PingFloodGetsGoaway) {
  floodWhileViewing("ping", "ping_flood");
}

TEST_F(Http2FloodScenarioTest, ZeroWindowHolderIsResetAndOthersAreServed) {
  const std::string out = flood("zero_window", "/obj/h2-zero?size=300000");
  EXPECT_EQ(field(out, "rst"), std::to_string(kCancel)) << out;
  EXPECT_GE(abuse("zero_window"), 1);
  const std::string v = view("/obj/h2-zero?size=300000");
  EXPECT_NE(v.find("status=200 length=300000"), std::string::npos) << v;
}

TEST_F(Http2FloodScenarioTest, AConnectionWithoutARequestIsClosedAtTheHeaderTimeout) {
  // PINGs now and then (within budget) do not keep it open: header_timeout is 2 s.
  const std::string out = flood("silent");
  EXPECT_EQ(field(out, "goaway"), "0") << out;  // NO_ERROR: a timeout, not an attack
  EXPECT_GE(abuse("header_timeout"), 1);
}

}  // namespace
}  // namespace streamedge::scenario
