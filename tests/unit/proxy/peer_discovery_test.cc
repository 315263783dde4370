// PeerDiscovery against a real DNS server on 127.0.0.1 (tests/support/dns_server.h): SRV
// targets and ports become sorted "ip:port" members; a changed answer is published with what
// it adds and removes, an unchanged one is not; failures (no records, no server) keep the last
// membership and say why; a plain name takes dns_port.
#include "proxy/peer_discovery.h"

#include <event2/event.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/dns_server.h"

namespace streamedge::proxy {
namespace {

using Members = std::vector<std::string>;

class PeerDiscoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = event_base_new();
    dns_ = std::make_unique<test::DnsServer>();
  }
  void TearDown() override {
    discovery_.reset();
    event_base_loop(base_, EVLOOP_NONBLOCK);  // cancelled lookups free themselves
    event_base_free(base_);
  }

  conf::Config config(const std::string& name, uint16_t port = 0) const {
    conf::Config c;
    c.dns.hosts_file = "";
    c.cluster.enabled = true;
    c.cluster.dns = name;
    c.cluster.dns_srv = name.front() == '_';
    c.cluster.dns_port = port;
    c.cluster.dns_interval = Millis(100);
    c.cluster.dns_server = dns_->address();
    return c;
  }

  void start(const conf::Config& c) {
    discovery_ = std::make_unique<PeerDiscovery>(
        base_, c, [this](const Members& members, const Members& added, const Members& removed) {
          published_.push_back(members);
          added_ = added;
          removed_ = removed;
        });
  }

  bool runUntil(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      event_base_loop(base_, EVLOOP_ONCE | EVLOOP_NONBLOCK);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }

  std::unique_ptr<test::DnsServer> dns_;
  event_base* base_ = nullptr;
  std::unique_ptr<PeerDiscovery> discovery_;
  std::vector<Members> published_;
  Members added_, removed_;
};

constexpr const char* kName = "_http._tcp.edge.test";

TEST_F(PeerDiscoveryTest, SrvAnswerChangesArePublishedAndFailuresKeepTheLastMembership) {
  dns_->set("a.edge.test", {"127.0.0.2"}, 1);
  dns_->set("b.edge.test", {"127.0.0.3", "::1"}, 1);
  dns_->setSrv(kName, {{"b.edge.test", 9001}, {"a.edge.test", 9000}}, 1);
  start(config(kName));
  ASSERT_TRUE(runUntil([&] { return published_.size() == 1; }));
  const Members all = {"127.0.0.2:9000", "127.0.0.3:9001", "[::1]:9001"};
  EXPECT_EQ(published_[0], all);
  EXPECT_EQ(added_, all);
  EXPECT_TRUE(removed_.empty());
  EXPECT_EQ(discovery_->lastError(), "");
  EXPECT_GT(discovery_->lastSuccessUnixMs(), 0);

  // Unchanged answers publish nothing.
  const int asked = dns_->questions(kName, "SRV");
  ASSERT_TRUE(runUntil([&] { return dns_->questions(kName, "SRV") >= asked + 3; }));
  EXPECT_EQ(published_.size(), 1u);

  // b leaves.
  dns_->setSrv(kName, {{"a.edge.test", 9000}}, 1);
  ASSERT_TRUE(runUntil([&] { return published_.size() == 2; }));
  EXPECT_EQ(published_[1], Members{"127.0.0.2:9000"});
  EXPECT_TRUE(added_.empty());
  EXPECT_EQ(removed_, (Members{"127.0.0.3:9001", "[::1]:9001"}));

  // No records: an error, the membership stays.
  dns_->setSrv(kName, {}, 1);
  ASSERT_TRUE(runUntil([&] { return !discovery_->lastError().empty(); }));
  EXPECT_EQ(discovery_->lastError(), "no SRV records");
  // A target that does not resolve and none that does: an error too.
  dns_->setSrv(kName, {{"gone.edge.test", 9000}}, 1);
  ASSERT_TRUE(runUntil([&] { return dns_->questions("gone.edge.test", "A") > 0; }));
  ASSERT_TRUE(runUntil([&] { return discovery_->lastError().find("gone.edge.test") == 0; }))
      << discovery_->lastError();
  EXPECT_EQ(discovery_->members(), Members{"127.0.0.2:9000"});
  EXPECT_EQ(published_.size(), 2u);

  // The server goes: rounds fail (refused or timed out), the membership stays.
  dns_->setSrv(kName, {{"a.edge.test", 9000}}, 1);
  ASSERT_TRUE(runUntil([&] { return discovery_->lastError().empty(); }));
  dns_.reset();
  ASSERT_TRUE(runUntil([&] { return !discovery_->lastError().empty(); }));
  EXPECT_NE(discovery_->lastError().find("SRV query"), std::string::npos)
      << discovery_->lastError();
  EXPECT_EQ(discovery_->members(), Members{"127.0.0.2:9000"});
  EXPECT_EQ(published_.size(), 2u);
  EXPECT_EQ(discovery_->changes(), 2u);
}

TEST_F(PeerDiscoveryTest, ATruncatedSrvAnswerIsAskedAgainOverTcp) {
  // 30 targets: far more than the 512 bytes the server answers over UDP, so that answer comes
  // truncated; the whole set comes over TCP in the same round.
  std::vector<std::pair<std::string, uint16_t>> targets;
  Members expected;
  for (int i = 0; i < 30; ++i) {
    const std::string host = "edge-" + std::to_string(i) + ".peers.edge.test";
    const std::string ip = "127.1.0." + std::to_string(i + 1);
    dns_->set(host, {ip}, 1);
    targets.emplace_back(host, 8080);
    expected.push_back(ip + ":8080");
  }
  std::sort(expected.begin(), expected.end());
  dns_->setSrv(kName, targets, 1);
  start(config(kName));
  ASSERT_TRUE(runUntil([&] { return published_.size() == 1; })) << discovery_->lastError();
  EXPECT_EQ(published_[0], expected);
  EXPECT_GE(dns_->questions(kName, "SRV"), 1);
  EXPECT_GE(dns_->questions(kName, "SRV/TCP"), 1);
  EXPECT_EQ(discovery_->lastError(), "");
}

TEST_F(PeerDiscoveryTest, PlainNameTakesDnsPort) {
  dns_->set("edge.test", {"127.0.0.4", "127.0.0.3"}, 1);
  start(config("edge.test", 8080));
  ASSERT_TRUE(runUntil([&] { return published_.size() == 1; }));
  EXPECT_EQ(published_[0], (Members{"127.0.0.3:8080", "127.0.0.4:8080"}));
  EXPECT_EQ(dns_->questions("edge.test", "SRV"), 0);
}

TEST_F(PeerDiscoveryTest, AMemberAtThisServersOwnAddressIsPublishedUnderItsConfigName) {
  // As a pod of a StatefulSet names itself (cluster.self = its DNS name) while the Service's
  // SRV targets resolve to addresses: its own address must not become a second member.
  dns_->set("a.edge.test", {"127.0.0.2"}, 1);
  dns_->set("b.edge.test", {"127.0.0.3"}, 1);
  dns_->set("me.edge.test", {"127.0.0.3"}, 1);
  dns_->setSrv(kName, {{"a.edge.test", 9000}, {"b.edge.test", 9000}}, 1);
  conf::Config c = config(kName);
  c.cluster.self = "me.edge.test:9000";
  start(c);
  ASSERT_TRUE(runUntil([&] { return published_.size() == 1; }));
  EXPECT_EQ(published_[0], (Members{"127.0.0.2:9000", "me.edge.test:9000"}));
  EXPECT_GT(dns_->questions("me.edge.test", "A"), 0);
  // Its address on another port is another server.
  dns_->setSrv(kName, {{"a.edge.test", 9000}, {"b.edge.test", 9001}}, 1);
  ASSERT_TRUE(runUntil([&] { return published_.size() == 2; }));
  EXPECT_EQ(published_[1], (Members{"127.0.0.2:9000", "127.0.0.3:9001"}));
}

TEST_F(PeerDiscoveryTest, NameserverFromConfigElseResolvConf) {
  EXPECT_EQ(srvNameserver("10.0.0.1:53", "/nonexistent"), "10.0.0.1:53");
  char path[] = "/tmp/streamedge-resolv-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string text = "# comment\nsearch svc.cluster.local\nnameserver 10.96.0.10\n"
                           "nameserver 10.96.0.11\n";
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
  EXPECT_EQ(srvNameserver("", path), "10.96.0.10");
  ::unlink(path);
  EXPECT_EQ(srvNameserver("", "/nonexistent"), "");
}

}  // namespace
}  // namespace streamedge::proxy
