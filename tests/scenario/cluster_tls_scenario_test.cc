// The cluster peer tier over TLS ([cluster] with TLS peer listeners): three streamedge processes
// on 127.0.0.2, .3 and .4, each with a plain listener for this test's viewers and a TLS listener
// that is its peer address, certificates for those addresses from one site CA. Peers fill from
// and health-check each other over HTTPS, verified against the CA; an edge that does not trust
// the peers' CA never uses them (every viewer is still served, from the origin).
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tests/scenario/cluster_fixture.h"

namespace streamedge::scenario {
namespace {

class ClusterTlsScenario : public ClusterScenarioBase {
 protected:
  void SetUp() override {
    ClusterScenarioBase::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(writeSitePki(key_dir_->path(), hosts_));
    for (int i = 0; i < kPeers; ++i) {
      viewer_ports_.push_back(freePort(hosts_[i]));
      ASSERT_NE(viewer_ports_.back(), 0);
    }
  }

  // Edge i: the test's plain viewer listener and its TLS peer listener; peers verified against
  // `ca` ("site-ca" or "other-ca").
  std::string tlsConfig(int i, const std::string& ca) const {
    const std::string dir = key_dir_->path();
    std::string list;
    for (int k = 0; k < kPeers; ++k) list += (list.empty() ? "\"" : ", \"") + address(k) + "\"";
    return "[server]\nworkers = 2\n\n[admin]\naddress = \"127.0.0.1:0\"\n\n"
           "[[listener]]\naddress = \"" + hosts_[i] + ":" + std::to_string(viewer_ports_[i]) +
           "\"\n\n"
           "[[listener]]\naddress = \"" + address(i) + "\"\n"
           "  [[listener.certificate]]\n  cert = \"" + dir + "/edge-" + std::to_string(i) +
           ".pem\"\n  key = \"" + dir + "/edge-" + std::to_string(i) + ".key\"\n\n"
           "[cache.ram]\nsize = \"64MiB\"\n\n"
           "[[origin_group]]\nname = \"main\"\n"
           "  [[origin_group.origin]]\n  url = \"http://127.0.0.1:" +
           std::to_string(sim_->port) + "\"\n\n"
           "[[vhost]]\nhostnames = [\"*\"]\n"
           "  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"main\"\n\n"
           "[cluster]\npeers = [" + list + "]\nsecret_file = \"" + key_path_ +
           "\"\nca_file = \"" + dir + "/" + ca + ".pem\"\nhealth_interval = \"300ms\"\n"
           "connect_timeout = \"500ms\"\ntimeout = \"3s\"\n";
  }

  double metric(int at, const std::string& series) const {
    return metricValue(adminRequest(static_cast<size_t>(at), "GET", "/metrics", {}).body, series);
  }

  std::vector<uint16_t> viewer_ports_;
};

TEST_F(ClusterTlsScenario, PeersFillFromEachOtherOverVerifiedTls) {
  // TLS is on without `tls = true`: each edge's own peer listener is a TLS listener.
  startAll({tlsConfig(0, "site-ca"), tlsConfig(1, "site-ca"), tlsConfig(2, "site-ca")});
  // Every edge saw every other one up: the health checks passed over verified TLS.
  for (int k = 0; k < 30; ++k) {
    const std::string path = "/obj/cluster/tls-" + std::to_string(k);
    const int at = k % kPeers;
    const HttpResponse r = getFrom(hosts_[at], viewer_ports_[at], path + "?size=30000");
    ASSERT_EQ(r.status, 200) << path << " at edge " << at << ": " << r.error;
    EXPECT_TRUE(r.body == testsupport::simBody(path, 30000)) << path;
    // Again at the next edge: still one origin fetch for the site.
    const int next = (at + 1) % kPeers;
    const HttpResponse again = getFrom(hosts_[next], viewer_ports_[next], path + "?size=30000");
    ASSERT_EQ(again.status, 200) << path << " at edge " << next << ": " << again.error;
    EXPECT_TRUE(again.body == testsupport::simBody(path, 30000)) << path;
    EXPECT_EQ(testsupport::simCount(sim_->port, path), 1) << path;
  }
  double ok = 0;
  for (int i = 0; i < kPeers; ++i) {
    for (int k = 0; k < kPeers; ++k) {
      if (k == i) continue;
      const std::string peer = "peer=\"" + address(k) + "\"";
      ok += metric(i, "streamedge_peer_requests_total{" + peer + ",result=\"ok\"}");
      for (const char* result : {"connect", "error", "timeout"}) {
        EXPECT_EQ(metric(i, "streamedge_peer_requests_total{" + peer + ",result=\"" + result +
                                "\"}"),
                  0)
            << i << " asking " << k << ": " << result;
      }
    }
  }
  // Of 60 requests, those at a non-owner went to the owner: about two thirds.
  EXPECT_GE(ok, 20) << "peer fills over TLS";
}

TEST_F(ClusterTlsScenario, AnEdgeThatDoesNotTrustThePeersCertificatesNeverUsesThem) {
  // Edge 0 verifies peers against another CA: its TLS handshakes with peers 1 and 2 fail, so
  // its health checks keep them down and its viewers are served from the origin. Edges 1 and 2
  // trust each other (and edge 0).
  startAllUnchecked({tlsConfig(0, "other-ca"), tlsConfig(1, "site-ca"), tlsConfig(2, "site-ca")});
  // The control: edges 1 and 2 verify every peer (edge 0's certificate is from the site CA
  // too) and see them all up within a few health checks (bounded: 10 s).
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  for (int i = 1; i < kPeers; ++i) {
    for (int k = 0; k < kPeers; ++k) {
      if (k == i) continue;
      const std::string up = "streamedge_peer_up{peer=\"" + address(k) + "\"}";
      while (metric(i, up) != 1 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(50ms);
      }
      EXPECT_EQ(metric(i, up), 1) << "edge " << i << " sees edge " << k;
    }
  }
  for (int k = 0; k < 12; ++k) {
    const std::string path = "/obj/cluster/untrusted-" + std::to_string(k);
    const HttpResponse r = getFrom(hosts_[0], viewer_ports_[0], path + "?size=20000");
    ASSERT_EQ(r.status, 200) << path << ": " << r.error;
    EXPECT_TRUE(r.body == testsupport::simBody(path, 20000)) << path;
    EXPECT_EQ(testsupport::simCount(sim_->port, path), 1) << path;
  }
  // Edge 0 never took a peer for up, nor got an answer from one.
  for (int k = 1; k < kPeers; ++k) {
    const std::string peer = "peer=\"" + address(k) + "\"";
    EXPECT_EQ(metric(0, "streamedge_peer_requests_total{" + peer + ",result=\"ok\"}"), 0) << k;
    EXPECT_EQ(metric(0, "streamedge_peer_up{" + peer + "}"), 0) << k;
  }
}

}  // namespace
}  // namespace streamedge::scenario
