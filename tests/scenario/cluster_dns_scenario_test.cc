// Cluster membership from DNS ([cluster] dns): three streamedge processes on 127.0.0.2, .3 and
// .4 learn each other from the SRV records of the loopback DNS server (tests/support), whose
// targets resolve to their addresses. All agree on the owners (one origin request for an
// object asked on every peer); an answer without a peer moves that peer's keys to the others
// within the interval, without a failed viewer request; a DNS server that is gone leaves the
// last membership in place.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/scenario/cluster_fixture.h"
#include "tests/support/dns_server.h"

namespace streamedge::scenario {
namespace {

constexpr const char* kSrvName = "_http._tcp.edge.test";

class ClusterDnsScenario : public ClusterScenarioBase {
 protected:
  void SetUp() override {
    ClusterScenarioBase::SetUp();
    if (HasFatalFailure()) return;
    dns_ = std::make_unique<test::DnsServer>();
    for (int i = 0; i < kPeers; ++i) dns_->set(target(i), {hosts_[i]}, 1);
    announce({0, 1, 2});
  }

  static std::string target(int i) { return "e" + std::to_string(i) + ".edge.test"; }
  // The SRV answer lists these peers.
  void announce(const std::vector<int>& members) {
    std::vector<std::pair<std::string, uint16_t>> targets;
    for (int i : members) targets.emplace_back(target(i), ports_[i]);
    dns_->setSrv(kSrvName, std::move(targets), 1);
  }

  // No static peers: each edge is its one listener until DNS answers.
  std::string config(int i) const {
    const std::string ns = dns_->address();
    return "[server]\nworkers = 2\n\n"
           "[admin]\naddress = \"127.0.0.1:0\"\n\n"
           "[dns]\nnameservers = [\"" + ns + "\"]\nhosts_file = \"\"\n\n"
           "[[listener]]\naddress = \"" + address(i) + "\"\n\n"
           "[cache.ram]\nsize = \"64MiB\"\n\n"
           "[[origin_group]]\nname = \"main\"\n"
           "  [[origin_group.origin]]\n  url = \"http://127.0.0.1:" +
           std::to_string(sim_->port) + "\"\n\n"
           "[[vhost]]\nhostnames = [\"*\"]\n"
           "  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"main\"\n\n"
           "[cluster]\ndns = \"" + std::string(kSrvName) + "\"\ndns_server = \"" + ns +
           "\"\ndns_interval = \"500ms\"\nsecret_file = \"" + key_path_ +
           "\"\nhealth_interval = \"200ms\"\nconnect_timeout = \"500ms\"\ntimeout = \"3s\"\n";
  }

  std::string metrics(int i) const {
    return testsupport::httpGet(peers_[i]->admin_port, "/metrics").body;
  }
  std::string status(int i) const {
    return testsupport::httpGet(peers_[i]->admin_port, "/status").body;
  }

  // Waits (bounded) until edge i's ring has `members` peers and every other one is up.
  void waitMembership(int i, int members) {
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    for (;;) {
      const std::string text = metrics(i);
      size_t pos = 0, up = 0;
      while ((pos = text.find("\nstreamedge_peer_up{", pos)) != std::string::npos) {
        const size_t eol = text.find('\n', pos + 1);
        if (text.compare(eol - 2, 2, " 1") == 0) ++up;
        pos = eol;
      }
      if (metricValue(text, "streamedge_cluster_peers") == members &&
          up == static_cast<size_t>(members - 1)) {
        return;
      }
      ASSERT_LT(std::chrono::steady_clock::now(), deadline)
          << "edge " << i << "\n" << text << peers_[i]->process.logTail();
      std::this_thread::sleep_for(50ms);
    }
  }

  void startAllFromDns() {
    for (int i = 0; i < kPeers; ++i) {
      std::string error;
      auto p = testsupport::startStreamedge(config(i), &error);
      ASSERT_TRUE(p) << error;
      peers_.push_back(std::make_unique<testsupport::StreamedgeProcess>(std::move(*p)));
    }
    for (int i = 0; i < kPeers; ++i) waitMembership(i, kPeers);
  }

  // Asks for `path` on every edge `on`; each answer must be the whole object.
  int failedGets(const std::string& path, const std::vector<int>& on) const {
    int failed = 0;
    for (int i : on) {
      const HttpResponse r =
          getFrom(hosts_[i], ports_[i], path + "?size=5000", {{"Host", "cdn.example"}});
      if (r.status != 200 || r.body != testsupport::simBody(path, 5000)) ++failed;
    }
    return failed;
  }

  std::unique_ptr<test::DnsServer> dns_;
};

TEST_F(ClusterDnsScenario, SrvMembersAgreeOnOwnersAndADroppedPeersKeysMove) {
  startAllFromDns();
  std::vector<double> changes;
  for (int i = 0; i < kPeers; ++i) {
    const std::string s = status(i);
    EXPECT_NE(s.find("\"membership\":\"dns\""), std::string::npos) << s;
    EXPECT_NE(s.find("\"last_error\":null,\"peers\""), std::string::npos) << s;  // the cluster's
    changes.push_back(metricValue(metrics(i), "streamedge_cluster_membership_changes_total"));
    EXPECT_GE(changes.back(), 1);
  }
  // Every edge agrees on the owners: 20 objects, each asked on all three, one origin request
  // each.
  for (int k = 0; k < 20; ++k) {
    const std::string path = "/obj/cluster-dns/all-" + std::to_string(k);
    EXPECT_EQ(failedGets(path, {0, 1, 2}), 0) << path;
    EXPECT_EQ(testsupport::simCount(sim_->port, path), 1) << path;
  }
  EXPECT_GT(metricValue(metrics(0), "streamedge_peer_requests_total{peer=\"" + address(2) +
                                        "\",result=\"ok\"}"),
            0);

  // Peer 2 leaves the answer (it keeps running): within the interval the other two drop it.
  announce({0, 1});
  for (int i = 0; i < 2; ++i) waitMembership(i, 2);
  for (int i = 0; i < 2; ++i) {
    const std::string text = metrics(i);
    EXPECT_EQ(metricValue(text, "streamedge_cluster_membership_changes_total"), changes[i] + 1);
    EXPECT_EQ(metricValue(text, "streamedge_peer_up{peer=\"" + address(2) + "\"}"), -1) << text;
    EXPECT_NE(peers_[i]->process.log().find("removed: " + address(2)), std::string::npos)
        << peers_[i]->process.logTail();
  }
  // Its keys now belong to the two left: asked on both, every new object is fetched once and no
  // viewer request fails.
  int failed = 0;
  for (int k = 0; k < 30; ++k) {
    const std::string path = "/obj/cluster-dns/after-" + std::to_string(k);
    failed += failedGets(path, {0, 1});
    EXPECT_EQ(testsupport::simCount(sim_->port, path), 1) << path;
  }
  EXPECT_EQ(failed, 0);
  // Peer 2 keeps itself in its own ring (an edge is always a member of its ring): its viewers
  // are still served, by whichever owner it picks (a peer's request never goes on to a peer).
  EXPECT_EQ(metricValue(metrics(2), "streamedge_cluster_peers"), 3);
  EXPECT_EQ(failedGets("/obj/cluster-dns/after-0", {2}), 0);
}

TEST_F(ClusterDnsScenario, DnsServerGoneKeepsTheLastMembership) {
  startAllFromDns();
  dns_.reset();  // nothing answers on its port any more
  // Several intervals pass: every round fails, the ring stays. A round caught between its SRV
  // answer and its targets' lookups when the server went waits for the resolver's own timeouts
  // first (seen at over 10 s under ASan), hence the bound.
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  for (int i = 0; i < kPeers; ++i) {
    for (;;) {
      const std::string s = status(i);
      if (s.find("\"last_error\":\"SRV query") != std::string::npos) break;
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << s;
      std::this_thread::sleep_for(100ms);
    }
  }
  std::this_thread::sleep_for(1200ms);
  for (int i = 0; i < kPeers; ++i) {
    const std::string text = metrics(i);
    EXPECT_EQ(metricValue(text, "streamedge_cluster_peers"), kPeers) << text;
    EXPECT_EQ(metricValue(text, "streamedge_peer_up{peer=\"" + address((i + 1) % kPeers) + "\"}"),
              1) << text;
  }
  for (int k = 0; k < 10; ++k) {
    const std::string path = "/obj/cluster-dns/gone-" + std::to_string(k);
    EXPECT_EQ(failedGets(path, {0, 1, 2}), 0) << path;
    EXPECT_EQ(testsupport::simCount(sim_->port, path), 1) << path;
  }
  // SIGHUP re-resolves (and fails again) without falling back to the static list.
  ASSERT_TRUE(peers_[0]->process.signal(SIGHUP));
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(metricValue(metrics(0), "streamedge_cluster_peers"), kPeers);
}

}  // namespace
}  // namespace streamedge::scenario
