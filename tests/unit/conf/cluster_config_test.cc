// [cluster]: the peers, which of them is this server, the shared key file, the mode and the
// timeouts; one error per bad value with file:line; no [cluster] = a lone server.
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

class ClusterConfigTest : public PeerKeyTest {
 protected:
  // A [cluster] whose peers include kBase's listener 127.0.0.1:8080.
  std::string cluster(const std::string& extra = "") const {
    return "[cluster]\npeers = [\"127.0.0.2:8080\", \"127.0.0.1:8080\", \"peer-c.site:8080\"]\n"
           "secret_file = \"" + key_ + "\"\n" + extra;
  }
};

TEST_F(ClusterConfigTest, AbsentMeansALoneServer) {
  const LoadResult r = load("");
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_FALSE(r.config->cluster.enabled);
  EXPECT_TRUE(r.config->cluster.peers.empty());
  ASSERT_EQ(r.config->origin_groups.size(), 1u);  // no peer groups
}

TEST_F(ClusterConfigTest, PeersSelfKeyAndDefaults) {
  const LoadResult r = load(cluster());
  ASSERT_TRUE(r.ok()) << describe(r);
  const ClusterConfig& c = r.config->cluster;
  EXPECT_TRUE(c.enabled);
  ASSERT_EQ(c.peers.size(), 3u);
  EXPECT_EQ(c.peers[2], "peer-c.site:8080");
  EXPECT_EQ(c.self_index, 1u);  // recognised by the listener 127.0.0.1:8080
  EXPECT_EQ(c.self, "127.0.0.1:8080");
  EXPECT_EQ(c.secret, std::string(31, '\0') + "\x2a");
  EXPECT_EQ(c.mode, ClusterMode::kStaySmall);
  EXPECT_EQ(c.connect_timeout.count(), 1000);
  EXPECT_EQ(c.timeout.count(), 5000);
  EXPECT_EQ(c.health_interval.count(), 2000);
  EXPECT_EQ(c.max_clock_skew.count(), 30000);
  // The two other peers are origin groups of one origin each, after the configured group.
  ASSERT_EQ(r.config->origin_groups.size(), 3u);
  ASSERT_EQ(c.peer_group.size(), 3u);
  EXPECT_EQ(c.peer_group[1], SIZE_MAX);
  const OriginGroupConfig& g = r.config->origin_groups[c.peer_group[2]];
  EXPECT_EQ(g.name, "peer:peer-c.site:8080");
  ASSERT_EQ(g.origins.size(), 1u);
  EXPECT_EQ(g.origins[0].host, "peer-c.site");
  EXPECT_EQ(g.origins[0].port, 8080);
  EXPECT_TRUE(g.health_check.enabled);
  EXPECT_EQ(g.health_check.path, kPeerHealthPath);
  EXPECT_EQ(g.health_check.interval.count(), 2000);
  EXPECT_EQ(g.retries, 0);
  EXPECT_EQ(r.config->origin_groups[c.peer_group[0]].name, "peer:127.0.0.2:8080");
  // Routes still name the configured group only.
  EXPECT_EQ(r.config->vhosts[0].routes[0].origin_group_index, 0u);
}

TEST_F(ClusterConfigTest, EveryKeyIsRead) {
  const LoadResult r = load(cluster("mode = \"replicate-hot\"\nconnect_timeout = \"300ms\"\n"
                                    "timeout = \"2s\"\nhealth_interval = \"500ms\"\n"
                                    "max_clock_skew = \"10s\"\nload_factor = 1.5\n"
                                    "self = \"PEER-C.site:8080\"\n"));
  ASSERT_TRUE(r.ok()) << describe(r);
  const ClusterConfig& c = r.config->cluster;
  EXPECT_EQ(c.mode, ClusterMode::kReplicateHot);
  EXPECT_EQ(c.connect_timeout.count(), 300);
  EXPECT_EQ(c.timeout.count(), 2000);
  EXPECT_EQ(c.health_interval.count(), 500);
  EXPECT_EQ(c.max_clock_skew.count(), 10000);
  EXPECT_DOUBLE_EQ(c.load_factor, 1.5);
  EXPECT_EQ(c.self_index, 2u);  // `self` wins over the listener match
  EXPECT_EQ(c.peer_group[2], SIZE_MAX);
  const OriginGroupConfig& g = r.config->origin_groups[c.peer_group[1]];
  EXPECT_EQ(g.origins[0].connect_timeout.count(), 300);
  EXPECT_EQ(g.origins[0].first_byte_timeout.count(), 2000);
  EXPECT_EQ(g.health_check.timeout.count(), 500);
}

TEST_F(ClusterConfigTest, ErrorsNameTheirLine) {
  expectOnlyError("[cluster]\nsecret_file = \"" + key_ + "\"\n", "cluster.peers", 1,
                  "missing required key");
  expectOnlyError("[cluster]\npeers = [\"127.0.0.1:8080\"]\n", "cluster.secret_file", 1,
                  "missing required key");
  expectOnlyError("[cluster]\nsecret_file = \"" + key_ + "\"\npeers = [\"127.0.0.1:8080\",\n"
                  "  \"127.0.0.1:8080\"]\n", "cluster.peers[1]", 4, "listed twice");
  expectOnlyError("[cluster]\nsecret_file = \"" + key_ + "\"\npeers = [\"127.0.0.1:8080\",\n"
                  "  \"bad host:1\"]\n", "cluster.peers[1]", 4, "neither");
  expectOnlyError("[cluster]\nsecret_file = \"" + key_ + "\"\npeers = [\"127.0.0.1:8080\",\n"
                  "  \"10.0.0.1\"]\n", "cluster.peers[1]", 4, "host:port");
  expectOnlyError("[cluster]\nsecret_file = \"" + key_ + "\"\n\npeers = [\"127.0.0.9:8080\"]\n",
                  "cluster.peers", 4, "none of the peers");
  expectOnlyError(cluster("mode = \"big\"\n"), "cluster.mode", 4, "\"stay-small\"");
  expectOnlyError(cluster("self = \"10.9.9.9:80\"\n"), "cluster.self", 4, "not among the peers");
  expectOnlyError(cluster("timeout = \"0s\"\n"), "cluster.timeout", 4, "");
  expectOnlyError("[cluster]\npeers = [\"127.0.0.1:8080\"]\nsecret_file = \"" + dir_ +
                      "/missing.key\"\n", "cluster.secret_file", 3, "missing.key");
}

TEST_F(ClusterConfigTest, SitePurgeTimeoutAndAdminPort) {
  LoadResult r = load(cluster());
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->cluster.purge_timeout.count(), 5000);
  EXPECT_EQ(r.config->cluster.admin_port, 0);  // this server's own admin port
  r = load(cluster("purge_timeout = \"1500ms\"\nadmin_port = 9911\n"));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->cluster.purge_timeout.count(), 1500);
  EXPECT_EQ(r.config->cluster.admin_port, 9911);
  expectOnlyError(cluster("purge_timeout = \"10s\"\n"), "cluster.purge_timeout", 4, "at most 9s");
  expectOnlyError(cluster("purge_timeout = 0\n"), "cluster.purge_timeout", 4, "");
  expectOnlyError(cluster("admin_port = 0\n"), "cluster.admin_port", 4, "between 1 and 65535");
  expectOnlyError(cluster("admin_port = 70000\n"), "cluster.admin_port", 4, "between 1 and 65535");
}

TEST_F(ClusterConfigTest, PeersOverTlsFollowThisServersPeerListener) {
  // Plain peer listener: plain peers; tls = true on it is an error.
  LoadResult r = load(cluster());
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_FALSE(r.config->cluster.tls);
  EXPECT_EQ(r.config->origin_groups[r.config->cluster.peer_group[0]].origins[0].scheme, "http");
  expectOnlyError(cluster("tls = true\n"), "cluster.tls", 4, "is a plain listener");
  expectOnlyError(cluster("ca_file = \"/etc/ssl/site-ca.pem\"\n"), "cluster.ca_file", 4,
                  "needs cluster.tls");
  // A TLS peer listener: peers over HTTPS by default, verified with ca_file for
  // tls_server_name; tls = false on it is an error.
  const std::string tls_listener =
      "[[listener]]\naddress = \"127.0.0.5:8443\"\n  [[listener.certificate]]\n"
      "  cert = \"/etc/streamedge/edge.pem\"\n  key = \"/etc/streamedge/edge.key\"\n";
  const std::string peers = "[cluster]\npeers = [\"127.0.0.5:8443\", \"127.0.0.6:8443\"]\n"
                            "secret_file = \"" + key_ + "\"\n";
  r = load(tls_listener + peers + "ca_file = \"/etc/ssl/site-ca.pem\"\n"
           "tls_server_name = \"edge.site\"\n");
  ASSERT_TRUE(r.ok()) << describe(r);
  const ClusterConfig& c = r.config->cluster;
  EXPECT_TRUE(c.tls);
  EXPECT_EQ(c.self, "127.0.0.5:8443");
  const OriginConfig& o = r.config->origin_groups[c.peer_group[1]].origins[0];
  EXPECT_EQ(o.scheme, "https");
  EXPECT_EQ(o.host, "127.0.0.6");
  EXPECT_EQ(o.port, 8443);
  EXPECT_TRUE(o.tls_verify);
  EXPECT_EQ(o.ca_file, "/etc/ssl/site-ca.pem");
  EXPECT_EQ(o.tls_server_name, "edge.site");
  expectOnlyError(tls_listener + peers + "tls = false\n", "cluster.tls", 9, "is a TLS listener");
  // Peers set later (DNS membership) get the same settings.
  auto next = std::make_shared<Config>(*r.config);
  setClusterPeers(*next, {"127.0.0.5:8443", "127.0.0.7:8443"});
  const OriginConfig& added = next->origin_groups[next->cluster.peer_group[1]].origins[0];
  EXPECT_EQ(added.scheme, "https");
  EXPECT_EQ(added.host, "127.0.0.7");
  EXPECT_EQ(added.ca_file, "/etc/ssl/site-ca.pem");
}

}  // namespace
}  // namespace streamedge::conf
