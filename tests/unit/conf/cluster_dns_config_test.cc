// [cluster] membership from DNS: dns (SRV or A/AAAA name), dns_port, dns_interval, dns_server;
// `peers` becomes the optional fallback, this server is always a member; setClusterPeers
// rebuilds the peers' origin groups as loading would.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "conf/config_loader.h"
#include "tests/unit/conf/config_test_base.h"

namespace streamedge::conf {
namespace {

using namespace streamedge::conf::testing;

class ClusterDnsConfigTest : public PeerKeyTest {
 protected:
  // A [cluster] with the secret and `lines` (the secret is line 2 of the extra text).
  std::string cluster(const std::string& lines) const {
    return "[cluster]\nsecret_file = \"" + key_ + "\"\n" + lines;
  }
};

TEST_F(ClusterDnsConfigTest, SrvNameWithoutPeersMakesThisServerTheOnlyMember) {
  const LoadResult r = load(cluster("dns = \"_HTTP._tcp.edge.ns.svc.cluster.local.\"\n"));
  ASSERT_TRUE(r.ok()) << describe(r);
  const ClusterConfig& c = r.config->cluster;
  EXPECT_EQ(c.dns, "_http._tcp.edge.ns.svc.cluster.local");
  EXPECT_TRUE(c.dns_srv);
  EXPECT_EQ(c.dns_interval.count(), 10'000);
  EXPECT_TRUE(c.dns_server.empty());
  ASSERT_EQ(c.peers.size(), 1u);  // from the one listener
  EXPECT_EQ(c.self, "127.0.0.1:8080");
  EXPECT_EQ(r.config->origin_groups.size(), 1u);  // no other peer, no peer group
}

TEST_F(ClusterDnsConfigTest, PlainNameNeedsDnsPort) {
  const LoadResult r = load(cluster("dns = \"edge.ns.svc\"\ndns_port = 8080\n"
                                    "dns_interval = \"2s\"\ndns_server = \"127.0.0.1:5353\"\n"));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_FALSE(r.config->cluster.dns_srv);
  EXPECT_EQ(r.config->cluster.dns_port, 8080);
  EXPECT_EQ(r.config->cluster.dns_interval.count(), 2000);
  EXPECT_EQ(r.config->cluster.dns_server, "127.0.0.1:5353");
  expectOnlyError(cluster("dns = \"edge.ns.svc\"\n"), "cluster.dns_port", 3, "carry no port");
}

TEST_F(ClusterDnsConfigTest, BadValuesNameTheirLine) {
  expectOnlyError(cluster("dns = \"bad name!\"\n"), "cluster.dns", 3, "not a DNS name");
  expectOnlyError(cluster("dns = \"_x._tcp.a\"\ndns_port = 80\n"), "cluster.dns_port", 4,
                  "SRV");
  expectOnlyError(cluster("dns = \"_x._tcp.a\"\ndns_server = \"ns.example\"\n"),
                  "cluster.dns_server", 4, "invalid nameserver");
  expectOnlyError(cluster("peers = [\"127.0.0.1:8080\"]\ndns_interval = \"5s\"\n"),
                  "cluster.dns_interval", 4, "needs cluster.dns");
  expectOnlyError(cluster("dns = \"_x._tcp.a\"\ndns_interval = \"0s\"\n"),
                  "cluster.dns_interval", 4, "");
}

TEST_F(ClusterDnsConfigTest, StaticPeersAreTheFallbackAndSelfMayBeOutsideThem) {
  const LoadResult r = load(cluster("dns = \"_x._tcp.a\"\npeers = [\"127.0.0.2:8080\"]\n"
                                    "self = \"127.0.0.1:8080\"\n"));
  ASSERT_TRUE(r.ok()) << describe(r);
  const ClusterConfig& c = r.config->cluster;
  ASSERT_EQ(c.peers.size(), 2u);
  EXPECT_EQ(c.peers[c.self_index], "127.0.0.1:8080");
  ASSERT_EQ(r.config->origin_groups.size(), 2u);
  EXPECT_EQ(r.config->origin_groups[1].name, "peer:127.0.0.2:8080");
}

TEST_F(ClusterDnsConfigTest, SeveralListenersWithoutPeersNeedSelf) {
  const std::string text = "[[listener]]\naddress = \"127.0.0.9:9090\"\n" +
                           cluster("dns = \"_x._tcp.a\"\n");
  const LoadResult r = load(text);
  ASSERT_FALSE(r.ok());
  bool found = false;
  for (const ConfigError& e : r.errors) found |= e.key == "cluster.self";
  EXPECT_TRUE(found) << describe(r);
}

TEST_F(ClusterDnsConfigTest, SetClusterPeersRebuildsPeerGroupsAndKeepsSelf) {
  const LoadResult r = load(cluster("dns = \"_x._tcp.a\"\npeers = [\"127.0.0.2:8080\", "
                                    "\"127.0.0.1:8080\", \"127.0.0.3:8080\"]\n"));
  ASSERT_TRUE(r.ok()) << describe(r);
  Config c = *r.config;
  ASSERT_EQ(c.origin_groups.size(), 3u);
  setClusterPeers(c, {"127.0.0.4:8080", "127.0.0.5:8080"});  // this server left out
  ASSERT_EQ(c.cluster.peers.size(), 3u);
  EXPECT_EQ(c.cluster.peers[c.cluster.self_index], "127.0.0.1:8080");
  ASSERT_EQ(c.origin_groups.size(), 3u);  // "main" + two peers; the old peer groups gone
  EXPECT_EQ(c.origin_groups[0].name, "main");
  EXPECT_EQ(c.origin_groups[c.cluster.peer_group[0]].name, "peer:127.0.0.4:8080");
  EXPECT_EQ(c.origin_groups[c.cluster.peer_group[1]].name, "peer:127.0.0.5:8080");
  EXPECT_EQ(c.cluster.peer_group[c.cluster.self_index], SIZE_MAX);
  // Same as a config loaded with that list.
  setClusterPeers(c, {"127.0.0.1:8080"});
  EXPECT_EQ(c.origin_groups.size(), 1u);
  EXPECT_EQ(c.cluster.peers.size(), 1u);
}

}  // namespace
}  // namespace streamedge::conf
