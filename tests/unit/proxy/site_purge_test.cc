// The site purge's pure parts: the answer's status and JSON from the local result and the peers'
// outcomes, how a peer's answer is read, the target sent to peers (always scope=local), and
// which peer purges are accepted (a valid peer MAC over exactly what was sent; nothing else).
#include "proxy/site_purge.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace streamedge::proxy {
namespace {

PurgeResult localOk(uint64_t objects) {
  PurgeResult r;
  r.status = 200;
  r.objects = objects;
  r.json = "{\"kind\":\"prefix\",\"mode\":\"hard\",\"vhost\":\"tv\",\"objects\":" +
           std::to_string(objects) + ",\"duration_ms\":0.1}\n";
  return r;
}

PeerPurgeOutcome peerOk(const std::string& peer, int64_t objects) {
  PeerPurgeOutcome p;
  p.peer = peer;
  p.status = 200;
  p.objects = objects;
  return p;
}

PeerPurgeOutcome peerFailed(const std::string& peer, int status, const std::string& error) {
  PeerPurgeOutcome p;
  p.peer = peer;
  p.status = status;
  p.error = error;
  return p;
}

TEST(SitePurgeAnswer, AllPurgedIs200WithEveryPeerAndTheSum) {
  const std::vector<PeerPurgeOutcome> peers = {peerOk("127.0.0.3:8080", 3),
                                               peerOk("127.0.0.4:8080", 0)};
  EXPECT_EQ(sitePurgeStatus(localOk(2), peers), 200);
  EXPECT_EQ(sitePurgeJson("127.0.0.2:8080", localOk(2), peers),
            "{\"scope\":\"site\",\"self\":\"127.0.0.2:8080\",\"objects\":5,"
            "\"local\":{\"kind\":\"prefix\",\"mode\":\"hard\",\"vhost\":\"tv\",\"objects\":2,"
            "\"duration_ms\":0.1},"
            "\"peers\":[{\"peer\":\"127.0.0.3:8080\",\"status\":200,\"objects\":3},"
            "{\"peer\":\"127.0.0.4:8080\",\"status\":200,\"objects\":0}]}\n");
  // A lone member: nothing to fan out to, still a site answer.
  EXPECT_EQ(sitePurgeStatus(localOk(1), {}), 200);
  const std::string lone = sitePurgeJson("a:1", localOk(1), {});
  EXPECT_EQ(lone.substr(lone.size() - 13), ",\"peers\":[]}\n") << lone;
}

TEST(SitePurgeAnswer, AnyFailedPartIs207AndNamesItsError) {
  const std::vector<PeerPurgeOutcome> peers = {peerOk("127.0.0.3:8080", 3),
                                               peerFailed("127.0.0.4:8080", 0, "timeout"),
                                               peerFailed("[::1]:8080", 403, "")};
  EXPECT_EQ(sitePurgeStatus(localOk(2), peers), 207);
  const std::string json = sitePurgeJson("127.0.0.2:8080", localOk(2), peers);
  EXPECT_NE(json.find("\"objects\":5,"), std::string::npos) << json;  // failed peers add none
  EXPECT_NE(json.find("{\"peer\":\"127.0.0.4:8080\",\"error\":\"timeout\"}"), std::string::npos)
      << json;
  EXPECT_NE(json.find("{\"peer\":\"[::1]:8080\",\"status\":403,\"error\":\"HTTP 403\"}"),
            std::string::npos)
      << json;
  // The local part failing (the keyring file, 500) is a partial purge too, even if every peer
  // purged.
  PurgeResult local = localOk(0);
  local.status = 500;
  local.json = "{\"error\":\"keyring\"}\n";
  EXPECT_EQ(sitePurgeStatus(local, {peerOk("127.0.0.3:8080", 1)}), 207);
  const std::string partial = sitePurgeJson("s:1", local, {peerOk("127.0.0.3:8080", 1)});
  EXPECT_NE(partial.find("\"objects\":1,\"local\":{\"error\":\"keyring\"}"), std::string::npos)
      << partial;
  // A 200 with an error (an answer that could not be read) is no success either.
  EXPECT_EQ(sitePurgeStatus(localOk(0), {peerFailed("p:1", 200, "bad answer")}), 207);
}

TEST(SitePurgeAnswer, APeerAnswerIsReadForItsObjectsOrItsError) {
  PeerPurgeOutcome p;
  readPeerPurgeAnswer(200, "{\"kind\":\"url\",\"mode\":\"hard\",\"vhost\":\"tv\",\"objects\":7,"
                           "\"duration_ms\":0.2}\n", p);
  EXPECT_TRUE(p.ok());
  EXPECT_EQ(p.objects, 7);
  readPeerPurgeAnswer(200, "{\"kind\":\"url\"}", p);
  EXPECT_FALSE(p.ok());
  EXPECT_EQ(p.error, "bad answer");
  readPeerPurgeAnswer(200, "{\"objects\":-3}", p);
  EXPECT_EQ(p.error, "bad answer");
  readPeerPurgeAnswer(404, "{\"error\":\"no vhost named \\\"x\\\"\"}\n", p);  // escaped: not passed on
  EXPECT_EQ(p.status, 404);
  EXPECT_EQ(p.error, "HTTP 404");
  readPeerPurgeAnswer(400, "{\"error\":\"scope must be local or site\"}\n", p);
  EXPECT_EQ(p.error, "scope must be local or site");
  readPeerPurgeAnswer(403, "this token may not do that\n", p);
  EXPECT_EQ(p.error, "HTTP 403");
  EXPECT_EQ(p.objects, -1);
}

TEST(SitePurgeTarget, PeersGetTheSameQueryWithScopeLocal) {
  EXPECT_EQ(peerPurgeTarget("host=tv&prefix=/live/&scope=site"),
            "/purge?host=tv&prefix=/live/&scope=local");
  EXPECT_EQ(peerPurgeTarget("scope=site&url=http%3A%2F%2Ftv.example%2Fa.ts%3Fx%3D1&soft=1"),
            "/purge?url=http%3A%2F%2Ftv.example%2Fa.ts%3Fx%3D1&soft=1&scope=local");
  // A scope given twice, or empty parts, never reach a peer.
  EXPECT_EQ(peerPurgeTarget("tag=a&&scope=site&scope=site"), "/purge?tag=a&scope=local");
  PurgeRequest r;
  std::string error;
  ASSERT_TRUE(parsePurgeQuery(peerPurgeTarget("tag=show-1&scope=site").substr(7), r, error))
      << error;
  EXPECT_EQ(r.scope, PurgeRequest::Scope::kLocal);
  ASSERT_TRUE(parsePurgeQuery("tag=show-1&scope=site", r, error)) << error;
  EXPECT_EQ(r.scope, PurgeRequest::Scope::kSite);
  EXPECT_FALSE(parsePurgeQuery("tag=show-1&scope=world", r, error));
  EXPECT_FALSE(parsePurgeQuery("tag=show-1&scope=", r, error));
  EXPECT_FALSE(parsePurgeQuery("tag=show-1&scope=local&scope=site", r, error));
}

TEST(SitePurgeTarget, PeerHostsAndHostFields) {
  std::string host;
  ASSERT_TRUE(peerHostOf("10.0.0.3:8080", host));
  EXPECT_EQ(host, "10.0.0.3");
  ASSERT_TRUE(peerHostOf("[::1]:8080", host));
  EXPECT_EQ(host, "::1");
  ASSERT_TRUE(peerHostOf("edge-2.example:80", host));
  EXPECT_EQ(host, "edge-2.example");
  EXPECT_FALSE(peerHostOf("no-port", host));
  EXPECT_FALSE(peerHostOf("[::1:80", host));
  EXPECT_EQ(hostFieldOf("10.0.0.3", 9901), "10.0.0.3:9901");
  EXPECT_EQ(hostFieldOf("::1", 9901), "[::1]:9901");
}

conf::ClusterConfig cluster(size_t self, std::string secret = std::string(32, 'k')) {
  conf::ClusterConfig c;
  c.enabled = true;
  c.peers = {"127.0.0.2:8080", "127.0.0.3:8080", "127.0.0.4:8080"};
  c.self_index = self;
  c.self = c.peers[self];
  c.secret = std::move(secret);
  return c;
}

TEST(PeerPurgeAuth, OnlyAValidPeerMacOverWhatWasSentIsAccepted) {
  auto sender = PeerTier::make(cluster(0));
  auto receiver = PeerTier::make(cluster(1));
  ASSERT_TRUE(sender && receiver);
  const int64_t now = 1'700'000'000;
  const std::string target = peerPurgeTarget("host=tv&prefix=/a/&scope=site");
  const std::string field = sender->sign("POST", "127.0.0.3:9901", target, now);
  const AdminAuthResult ok =
      judgePeerPurge(receiver.get(), field, "POST", "127.0.0.3:9901", target, now + 2);
  EXPECT_EQ(ok.decision, AdminAuthResult::Decision::kAllowed);
  EXPECT_EQ(ok.who, "peer:127.0.0.2:8080");

  using D = AdminAuthResult::Decision;
  // The same MAC on another target (the scope turned back into site, another prefix).
  EXPECT_EQ(judgePeerPurge(receiver.get(), field, "POST", "127.0.0.3:9901",
                           "/purge?host=tv&prefix=/a/&scope=site", now).decision,
            D::kForbidden);
  EXPECT_EQ(judgePeerPurge(receiver.get(), field, "POST", "127.0.0.3:9901",
                           "/purge?host=tv&prefix=/&scope=local", now).decision,
            D::kForbidden);
  // Another Host or method.
  EXPECT_EQ(judgePeerPurge(receiver.get(), field, "POST", "127.0.0.4:9901", target, now).decision,
            D::kForbidden);
  EXPECT_EQ(judgePeerPurge(receiver.get(), field, "GET", "127.0.0.3:9901", target, now).decision,
            D::kForbidden);
  // Replayed after the skew bound.
  const AdminAuthResult stale =
      judgePeerPurge(receiver.get(), field, "POST", "127.0.0.3:9901", target, now + 31);
  EXPECT_EQ(stale.decision, D::kForbidden);
  EXPECT_EQ(stale.why, "peer purge: stale");
  // A forged MAC, garbage, another site's secret.
  std::string forged = field;
  forged.replace(forged.find("mac=") + 4, 4, "AAAA");
  const AdminAuthResult bad =
      judgePeerPurge(receiver.get(), forged, "POST", "127.0.0.3:9901", target, now);
  EXPECT_EQ(bad.decision, D::kForbidden);
  EXPECT_EQ(bad.why, "peer purge: bad_mac");
  EXPECT_EQ(bad.httpStatus(), 403);
  EXPECT_EQ(judgePeerPurge(receiver.get(), "x", "POST", "127.0.0.3:9901", target, now).decision,
            D::kForbidden);
  auto other_site = PeerTier::make(cluster(1, std::string(32, 'z')));
  EXPECT_EQ(judgePeerPurge(other_site.get(), field, "POST", "127.0.0.3:9901", target, now).decision,
            D::kForbidden);
  // No [cluster] here: no peer purge at all.
  const AdminAuthResult lone = judgePeerPurge(nullptr, field, "POST", "127.0.0.3:9901", target, now);
  EXPECT_EQ(lone.decision, D::kForbidden);
  EXPECT_EQ(lone.why, "peer purge without [cluster]");
}

}  // namespace
}  // namespace streamedge::proxy
