// Site-wide purge (POST /purge?...&scope=site, proxy/site_purge.h): three streamedge peers on
// 127.0.0.2, .3 and .4 in replicate-hot mode (every peer keeps its own copy), their admin
// listeners on their own hosts at one shared port, admin tokens required. A site purge on one
// peer removes every peer's copy and lists each peer's result; a stopped (SIGSTOP: timeout) or
// gone (refused) peer is listed with its error while the others purge (207); a purge that
// claims to come from a peer without a valid MAC is refused whatever token it carries, and a
// validly signed one is accepted without a token but never fanned out again (scope=site: 400).
#include <csignal>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "proxy/peer_tier.h"
#include "tests/scenario/cluster_fixture.h"

namespace streamedge::scenario {
namespace {

constexpr const char* kOpsToken = "ops-secret";  // scopes: all
constexpr const char* kOpsHash = "32323cfa9ec9d62750daad0836a4cf3d7b60d23723b7852a529667deed01669f";
constexpr const char* kPurgeTarget = "/purge?host=*&prefix=/obj/sitepurge/&scope=site";

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class ClusterPurgeScenario : public ClusterScenarioBase {
 protected:
  void SetUp() override {
    ClusterScenarioBase::SetUp();
    if (HasFatalFailure()) return;
    // One admin port free on every peer's host (they share the layout, [cluster] admin_port
    // stays at its default: the edge's own admin port).
    for (int attempt = 0; attempt < 20 && admin_port_ == 0; ++attempt) {
      const uint16_t candidate = freePort(hosts_[0]);
      bool everywhere = candidate != 0;
      for (int i = 1; i < kPeers && everywhere; ++i) everywhere = portFree(hosts_[i], candidate);
      if (everywhere) admin_port_ = candidate;
    }
    ASSERT_NE(admin_port_, 0);
    admin_headers_ = {{"Authorization", std::string("Bearer ") + kOpsToken}};
  }

  static bool portFree(const std::string& host, uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    ::inet_pton(AF_INET, host.c_str(), &a.sin_addr);
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
  }

  std::string auditPath(int i) const { return key_dir_->path() + "/audit-" + std::to_string(i) + ".log"; }

  std::string purgeConfig(int i) const {
    return config(i, {}, "mode = \"replicate-hot\"\npurge_timeout = \"1s\"\n\n"
                         "[[admin.token]]\nname = \"ops\"\nsha256 = \"" + std::string(kOpsHash) +
                         "\"\nscopes = [\"all\"]\n\n"
                         "[log]\naudit = \"" + auditPath(i) + "\"\n");
  }

  HttpResponse admin(int i, const std::string& method, const std::string& target,
                     const Headers& headers = {{"Authorization",
                                                std::string("Bearer ") + kOpsToken}}) const {
    return adminRequest(static_cast<size_t>(i), method, target, headers);
  }

  HttpResponse view(int i, const std::string& path) {
    return getFrom(hosts_[i], ports_[i], path + "?size=4000", {{"Host", "cdn.example"}});
  }

  // The peer that owns `path`: the one edge that sent no fill to a peer (the others fetched
  // it from the owner). -1 when that is not exactly one.
  int owner() {
    int found = -1, count = 0;
    for (int i = 0; i < kPeers; ++i) {
      const std::string text = admin(i, "GET", "/metrics").body;
      double ok = 0;
      for (int k = 0; k < kPeers; ++k) {
        if (k == i) continue;
        const double v = metricValue(
            text, "streamedge_peer_requests_total{peer=\"" + address(k) + "\",result=\"ok\"}");
        if (v > 0) ok += v;
      }
      if (ok == 0) {
        found = i;
        ++count;
      }
    }
    return count == 1 ? found : -1;
  }

  // Caches `path` on every peer (each asked directly; replicate-hot keeps it on each) and
  // checks that each now answers it as a hit.
  void cacheEverywhere(const std::string& path) {
    for (int i = 0; i < kPeers; ++i) {
      const HttpResponse r = view(i, path);
      ASSERT_EQ(r.status, 200) << i << " " << r.error;
      ASSERT_EQ(r.body, testsupport::simBody(path, 4000));
    }
    ASSERT_EQ(testsupport::simCount(sim_->port, path), 1);
    for (int i = 0; i < kPeers; ++i) {
      EXPECT_EQ(view(i, path).header("X-Cache"), "HIT") << "peer " << i;
    }
  }

  // purgeConfig over TLS admin listeners (writeSitePki's certificates), peers' admin
  // certificates checked against `ca` ("site-ca" or "other-ca").
  std::string tlsPurgeConfig(int i, const std::string& ca) const {
    const std::string base = key_dir_->path() + "/edge-" + std::to_string(i);
    return config(i, {}, "mode = \"replicate-hot\"\npurge_timeout = \"2s\"\nca_file = \"" +
                             key_dir_->path() + "/" + ca + ".pem\"\n\n"
                             "[[admin.certificate]]\ncert = \"" + base + ".pem\"\nkey = \"" +
                             base + ".key\"\n\n"
                             "[[admin.token]]\nname = \"ops\"\nsha256 = \"" +
                             std::string(kOpsHash) + "\"\nscopes = [\"all\"]\n");
  }

  std::string peerEntry(int k) const { return "{\"peer\":\"" + address(k) + "\""; }
};

TEST_F(ClusterPurgeScenario, SitePurgeRemovesEveryPeersCopyAndListsEachPeer) {
  startAll({purgeConfig(0), purgeConfig(1), purgeConfig(2)});
  const std::string path = "/obj/sitepurge/every.bin";
  cacheEverywhere(path);
  const int owner_peer = owner();
  ASSERT_GE(owner_peer, 0);

  const HttpResponse r = admin(0, "POST", kPurgeTarget);
  ASSERT_EQ(r.status, 200) << r.body << r.error;
  EXPECT_EQ(r.header("Content-Type"), "application/json");
  EXPECT_NE(r.body.find("\"scope\":\"site\",\"self\":\"" + address(0) + "\",\"objects\":3,"),
            std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find("\"local\":{\"kind\":\"prefix\",\"mode\":\"hard\",\"vhost\":\"*\","
                        "\"objects\":1,"),
            std::string::npos)
      << r.body;
  for (int k = 1; k < kPeers; ++k) {
    EXPECT_NE(r.body.find(peerEntry(k) + ",\"status\":200,\"objects\":1}"), std::string::npos)
        << r.body;
  }
  EXPECT_EQ(r.body.find(peerEntry(0)), std::string::npos) << "self is not among the peers";

  // Every copy is gone: the owner, asked first, fetches from the origin again; every other peer
  // misses too (and fills from the owner, so the origin sees one more request in all).
  const HttpResponse first = view(owner_peer, path);
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(first.header("X-Cache"), "MISS");
  EXPECT_EQ(testsupport::simCount(sim_->port, path), 2);
  for (int i = 0; i < kPeers; ++i) {
    if (i == owner_peer) continue;
    const HttpResponse again = view(i, path);
    EXPECT_EQ(again.status, 200);
    EXPECT_EQ(again.body, testsupport::simBody(path, 4000));
    EXPECT_EQ(again.header("X-Cache"), "MISS") << "peer " << i;
  }
  EXPECT_EQ(testsupport::simCount(sim_->port, path), 2);

  // The audit logs: the receiving edge names who asked and every peer's result; each peer logs
  // its own purge as done by the receiving edge (its peer MAC), scope local.
  const std::string audit0 = slurp(auditPath(0));
  EXPECT_NE(audit0.find("\"action\":\"site_purge\""), std::string::npos) << audit0;
  EXPECT_NE(audit0.find("\"who\":\"ops\""), std::string::npos) << audit0;
  EXPECT_NE(audit0.find(address(1) + "=ok:1"), std::string::npos) << audit0;
  EXPECT_NE(audit0.find(address(2) + "=ok:1"), std::string::npos) << audit0;
  for (int k = 1; k < kPeers; ++k) {
    const std::string audit = slurp(auditPath(k));
    EXPECT_NE(audit.find("\"who\":\"peer:" + address(0) + "\""), std::string::npos) << audit;
    EXPECT_NE(audit.find("\"action\":\"purge\""), std::string::npos) << audit;
    EXPECT_EQ(audit.find("site_purge"), std::string::npos) << "a peer never fans out: " << audit;
  }
}

TEST_F(ClusterPurgeScenario, OverTlsAdminListenersEachPeerIsVerifiedAndPurges) {
  // Every admin listener speaks TLS with a certificate for its host from the site CA: the fan-out
  // goes over TLS, each peer's certificate checked against cluster.ca_file.
  ASSERT_TRUE(writeSitePki(key_dir_->path(), hosts_));
  admin_tls_ = true;
  startAll({tlsPurgeConfig(0, "site-ca"), tlsPurgeConfig(1, "site-ca"),
            tlsPurgeConfig(2, "site-ca")});
  const std::string path = "/obj/sitepurge/over-tls.bin";
  cacheEverywhere(path);
  const int owner_peer = owner();
  ASSERT_GE(owner_peer, 0);
  const HttpResponse r = admin(0, "POST", kPurgeTarget);
  ASSERT_EQ(r.status, 200) << r.body << r.error;
  for (int k = 1; k < kPeers; ++k) {
    EXPECT_NE(r.body.find(peerEntry(k) + ",\"status\":200,\"objects\":1}"), std::string::npos)
        << r.body;
  }
  // Every copy is gone: the owner first (it fetches from the origin again), then the others.
  EXPECT_EQ(view(owner_peer, path).header("X-Cache"), "MISS");
  EXPECT_EQ(testsupport::simCount(sim_->port, path), 2);
  for (int i = 0; i < kPeers; ++i) {
    if (i == owner_peer) continue;
    const HttpResponse again = view(i, path);
    EXPECT_EQ(again.status, 200);
    EXPECT_EQ(again.header("X-Cache"), "MISS") << "peer " << i << " kept its copy";
  }
}

TEST_F(ClusterPurgeScenario, APeerAdminCertificateThatIsNotTrustedFailsItsPartOfTheSitePurge) {
  // Edge 0 checks the peers' admin certificates against a CA that signed none of them: both
  // peers are listed as failed (207), nothing is sent to them in the clear, the local purge
  // happened.
  ASSERT_TRUE(writeSitePki(key_dir_->path(), hosts_));
  admin_tls_ = true;
  startAll({tlsPurgeConfig(0, "other-ca"), tlsPurgeConfig(1, "site-ca"),
            tlsPurgeConfig(2, "site-ca")});
  const std::string path = "/obj/sitepurge/untrusted.bin";
  cacheEverywhere(path);
  const HttpResponse r = admin(0, "POST", kPurgeTarget);
  ASSERT_EQ(r.status, 207) << r.body << r.error;
  EXPECT_NE(r.body.find("\"local\":{\"kind\":\"prefix\""), std::string::npos) << r.body;
  for (int k = 1; k < kPeers; ++k) {
    EXPECT_NE(r.body.find(peerEntry(k) + ",\"error\":"), std::string::npos) << r.body;
    // Its copy is still there: a hit.
    EXPECT_EQ(view(k, path).header("X-Cache"), "HIT") << "peer " << k;
  }
}

TEST_F(ClusterPurgeScenario, AnUnansweringOrGonePeerIsListedWithItsErrorAndTheOthersPurge) {
  startAll({purgeConfig(0), purgeConfig(1), purgeConfig(2)});
  const std::string path = "/obj/sitepurge/partial.bin";
  cacheEverywhere(path);

  // Peer 2 frozen: its kernel still accepts the connection, nothing answers within
  // purge_timeout (1s).
  ASSERT_TRUE(peers_[2]->process.signal(SIGSTOP));
  const auto started = std::chrono::steady_clock::now();
  const HttpResponse frozen = admin(0, "POST", kPurgeTarget);
  const auto took = std::chrono::steady_clock::now() - started;
  ASSERT_TRUE(peers_[2]->process.signal(SIGCONT));
  EXPECT_EQ(frozen.status, 207) << frozen.body << frozen.error;
  EXPECT_NE(frozen.body.find(peerEntry(1) + ",\"status\":200,\"objects\":1}"), std::string::npos)
      << frozen.body;
  EXPECT_NE(frozen.body.find(peerEntry(2) + ",\"error\":\"timeout\"}"), std::string::npos)
      << frozen.body;
  EXPECT_GE(took, 900ms);
  EXPECT_LT(took, 5s);

  // Peer 2 gone: refused at once.
  EXPECT_EQ(peers_[2]->process.stop(), 0);
  const HttpResponse gone = admin(0, "POST", kPurgeTarget);
  EXPECT_EQ(gone.status, 207) << gone.body << gone.error;
  EXPECT_NE(gone.body.find(peerEntry(1) + ",\"status\":200,\"objects\":0}"), std::string::npos)
      << gone.body;
  EXPECT_NE(gone.body.find(peerEntry(2) + ",\"error\":\"connection failed\"}"),
            std::string::npos)
      << gone.body;
  const std::string audit0 = slurp(auditPath(0));
  EXPECT_NE(audit0.find("\"result\":\"partial\",\"status\":207"), std::string::npos) << audit0;
  EXPECT_NE(audit0.find(address(2) + "=timeout"), std::string::npos) << audit0;

  // Peer 1's copy went with the first purge: asked first, it misses.
  const HttpResponse again = view(1, path);
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(again.header("X-Cache"), "MISS");
}

TEST_F(ClusterPurgeScenario, OnlyAValidPeerMacStandsInForATokenAndAPeersPurgeIsNeverFannedOut) {
  startAll({purgeConfig(0), purgeConfig(1), purgeConfig(2)});
  const std::string path = "/obj/sitepurge/forged.bin";
  cacheEverywhere(path);
  const std::string local = "/purge?host=*&prefix=/obj/sitepurge/&scope=local";
  const std::string forged_field = "v1; from=" + address(0) + "; ts=" +
                                   std::to_string(std::time(nullptr)) + "; mac=AAAA";
  // A forged MAC, alone or with a valid token: 403.
  EXPECT_EQ(admin(1, "POST", local, {{"Streamedge-Peer", forged_field}}).status, 403);
  EXPECT_EQ(admin(1, "POST", local,
                  {{"Streamedge-Peer", forged_field},
                   {"Authorization", std::string("Bearer ") + kOpsToken}})
                .status,
            403);
  EXPECT_EQ(admin(1, "POST", local, {{"Streamedge-Peer", "x"}}).status, 403);
  // Signed with the site's secret (as a peer would) but asking to fan out again: refused, a
  // peer's purge is local only; the same purge with scope=local is accepted.
  conf::ClusterConfig site;
  site.enabled = true;
  for (int k = 0; k < kPeers; ++k) site.peers.push_back(address(k));
  site.self_index = 0;
  site.self = address(0);
  for (size_t b = 0; b < 32; ++b) site.secret += static_cast<char>((b % 16) * 0x11);
  const auto signer = proxy::PeerTier::make(site);
  ASSERT_TRUE(signer);
  const std::string host = hosts_[1] + ":" + std::to_string(admin_port_);
  const std::string again = "/purge?host=*&prefix=/obj/sitepurge/&scope=site";
  const HttpResponse loop = admin(1, "POST", again,
                                  {{"Host", host},
                                   {"Streamedge-Peer", signer->sign("POST", host, again,
                                                                    std::time(nullptr))}});
  EXPECT_EQ(loop.status, 400) << loop.body;
  EXPECT_NE(loop.body.find("local only"), std::string::npos) << loop.body;
  EXPECT_EQ(view(1, path).header("X-Cache"), "HIT");
  // Neither a MAC nor a token: 401 as ever.
  EXPECT_EQ(admin(1, "POST", local, {}).status, 401);
  // Nothing was purged: peer 1 still has its copy.
  EXPECT_EQ(view(1, path).header("X-Cache"), "HIT");
  const std::string audit = slurp(auditPath(1));
  EXPECT_NE(audit.find("peer purge: bad_mac"), std::string::npos) << audit;
  EXPECT_NE(audit.find("peer purge: malformed"), std::string::npos) << audit;
  // Refusals only (the signed scope=site one as a purge error, by the peer it came from).
  EXPECT_EQ(audit.find("\"result\":\"ok\""), std::string::npos) << audit;
  EXPECT_NE(audit.find("\"who\":\"peer:" + address(0) + "\""), std::string::npos) << audit;
  // The genuine article: the same secret over exactly this request, scope=local, no token.
  const HttpResponse genuine = admin(1, "POST", local,
                                     {{"Host", host},
                                      {"Streamedge-Peer", signer->sign("POST", host, local,
                                                                       std::time(nullptr))}});
  EXPECT_EQ(genuine.status, 200) << genuine.body;
  EXPECT_NE(genuine.body.find("\"objects\":1,"), std::string::npos) << genuine.body;
  EXPECT_EQ(view(1, path).header("X-Cache"), "MISS");
}

}  // namespace
}  // namespace streamedge::scenario
