// The cluster peer tier ([cluster]): three streamedge processes on 127.0.0.2, .3 and .4 and one
// origin simulator. A herd spread over all peers on one uncached object makes one origin
// request; a request that claims to be a peer's without a valid MAC gets 403; a killed peer's
// keys go elsewhere without a failed viewer request, also under load, and come back with it; a
// body a peer was sending when it died goes on from the origin; inconsistent membership makes no
// loop.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/scenario/cluster_fixture.h"
#include "tests/support/herd.h"

namespace streamedge::scenario {
namespace {

class ClusterScenario : public ClusterScenarioBase {};

TEST_F(ClusterScenario, HerdOverAllPeersMakesOneOriginRequestWithExactBytes) {
  startAll({config(0), config(1), config(2)});
  const std::string path = "/obj/cluster/herd.bin";
  const size_t size = 300000;
  constexpr int kHerdPerPeer = 100;
  // 300 clients: 3 x 100 at once, each peer's herd released together.
  std::vector<testsupport::HerdResult> results(kPeers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kPeers; ++i) {
    threads.emplace_back([&, i] {
      testsupport::HerdOptions o;
      o.address = hosts_[i];
      o.port = ports_[i];
      o.target = path + "?size=" + std::to_string(size) + "&delay_ms=200";
      o.host_header = "cdn.example";
      o.clients = kHerdPerPeer;
      o.expect_body_path = path;
      o.expect_body_size = size;
      results[i] = testsupport::runHerd(o);
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kPeers; ++i) {
    EXPECT_EQ(results[i].ok, kHerdPerPeer) << "peer " << i << ": " << results[i].firstError();
  }
  EXPECT_EQ(testsupport::simCount(sim_->port, path), 1);
  // Again from every peer: still one origin request (the owner keeps it).
  for (int i = 0; i < kPeers; ++i) {
    const HttpResponse r = getFrom(hosts_[i], ports_[i], path + "?size=300000&delay_ms=200",
                                   {{"Host", "cdn.example"}});
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, testsupport::simBody(path, size));
  }
  EXPECT_EQ(testsupport::simCount(sim_->port, path), 1);
  // The two edges that do not own the key fetched it from the owner (ok peer requests), the
  // owner from no peer; none failed; every peer is up on every edge.
  int edges_with_peer_fills = 0;
  for (int i = 0; i < kPeers; ++i) {
    const std::string text = testsupport::httpGet(peers_[i]->admin_port, "/metrics").body;
    for (int k = 0; k < kPeers; ++k) {
      const std::string peer = "peer=\"" + address(k) + "\"";
      if (k == i) {
        EXPECT_EQ(metricValue(text, "streamedge_peer_up{" + peer + "}"), -1) << "self is no peer";
        continue;
      }
      EXPECT_EQ(metricValue(text, "streamedge_peer_up{" + peer + "}"), 1) << i << " " << k;
      const double ok =
          metricValue(text, "streamedge_peer_requests_total{" + peer + ",result=\"ok\"}");
      EXPECT_GE(ok, 0);
      if (ok > 0) ++edges_with_peer_fills;
      for (const char* result : {"5xx", "timeout", "connect", "error"}) {
        EXPECT_EQ(metricValue(text, "streamedge_peer_requests_total{" + peer + ",result=\"" +
                                        result + "\"}"),
                  0)
            << i << " " << k << " " << result;
      }
    }
    const std::string status = testsupport::httpGet(peers_[i]->admin_port, "/status").body;
    EXPECT_NE(status.find("\"cluster\":{\"self\":\"" + address(i) + "\""), std::string::npos)
        << status;
  }
  EXPECT_EQ(edges_with_peer_fills, kPeers - 1);
}

TEST_F(ClusterScenario, PeerRequestWithoutAValidMacIsRefused) {
  startAll({config(0), config(1), config(2)});
  const std::string path = "/obj/cluster/forged.bin";
  const HttpResponse bad = getFrom(hosts_[0], ports_[0], path,
                                   {{"Streamedge-Peer", "v1; from=" + address(1) + "; ts=" +
                                     std::to_string(std::time(nullptr)) + "; mac=AAAA"}});
  EXPECT_EQ(bad.status, 403);
  const HttpResponse garbage = getFrom(hosts_[0], ports_[0], path, {{"Streamedge-Peer", "x"}});
  EXPECT_EQ(garbage.status, 403);
  EXPECT_EQ(testsupport::simCount(sim_->port, path), 0);
  // The security log is written in the background: wait for its line (bounded).
  bool logged = false;
  for (int i = 0; i < 60 && !logged; ++i) {
    logged = peers_[0]->process.log().find("\"peer_rejected\"") != std::string::npos;
    if (!logged) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(logged) << peers_[0]->process.logTail();
  // The peers' health path answers without a MAC.
  EXPECT_EQ(getFrom(hosts_[1], ports_[1], "/.well-known/streamedge/peer-health").status, 200);
}

TEST_F(ClusterScenario, KilledPeerLosesItsKeysWithoutAFailedViewerRequest) {
  startAll({config(0), config(1), config(2)});
  // Kill peer 2 abruptly; viewers of peers 0 and 1 ask for many keys, some of them owned by 2.
  ASSERT_TRUE(peers_[2]->process.signal(SIGKILL));
  peers_[2]->process.wait(5s);
  int failed = 0;
  for (int k = 0; k < 40; ++k) {
    const int at = k % 2;
    const std::string path = "/obj/cluster/kill-" + std::to_string(k);
    const HttpResponse r = getFrom(hosts_[at], ports_[at], path + "?size=5000");
    if (r.status != 200 || r.body != testsupport::simBody(path, 5000)) ++failed;
  }
  EXPECT_EQ(failed, 0);
  // Every key was fetched from the origin exactly once (by its owner among the two left, or
  // by the edge that found peer 2 down).
  long total = 0;
  for (int k = 0; k < 40; ++k) {
    const long n = testsupport::simCount(sim_->port, "/obj/cluster/kill-" + std::to_string(k));
    EXPECT_EQ(n, 1) << k;
    total += n;
  }
  EXPECT_EQ(total, 40);
  // The edges that sent peer 2 a fill counted the failure (refused: connect) and no longer use
  // it; none counted an ok answer from it.
  double failures = 0;
  for (int i = 0; i < 2; ++i) {
    const std::string text = testsupport::httpGet(peers_[i]->admin_port, "/metrics").body;
    const std::string peer = "peer=\"" + address(2) + "\"";
    EXPECT_EQ(metricValue(text, "streamedge_peer_up{" + peer + "}"), 0) << text;
    EXPECT_EQ(metricValue(text, "streamedge_peer_requests_total{" + peer + ",result=\"ok\"}"), 0);
    failures += metricValue(text, "streamedge_peer_requests_total{" + peer + ",result=\"connect\"}");
    failures += metricValue(text, "streamedge_peer_requests_total{" + peer + ",result=\"error\"}");
    const std::string status = testsupport::httpGet(peers_[i]->admin_port, "/status").body;
    EXPECT_NE(status.find("{\"peer\":\"" + address(2) + "\",\"self\":false,\"up\":false"),
              std::string::npos)
        << status;
  }
  EXPECT_GE(failures, 1);
  // The edges left stay ready: a dead peer is skipped, not a reason to leave the load balancer.
  for (int i = 0; i < 2; ++i) {
    const HttpResponse ready = testsupport::httpGet(peers_[i]->admin_port, "/readyz");
    EXPECT_EQ(ready.status, 200) << ready.body;
    EXPECT_EQ(ready.body.find("peer:"), std::string::npos) << ready.body;
  }
}

TEST_F(ClusterScenario, PeerKilledMidBodyIsContinuedFromTheOriginWithEveryByte) {
  startAll({config(0), config(1), config(2)});
  // Edge 0 fills a 100 kB object from its owner, peer 2, whose own origin fetch sends half at
  // once and the rest at 50 kB/s; peer 2 is killed in between. Edge 0 asks the origin for the
  // rest (Range from the bytes it has, If-Match the peer answer's ETag): the viewer gets every
  // byte and is never cut. Which keys peer 2 owns is found by asking (bounded: 40 keys; each
  // one it does not own costs about a second).
  constexpr size_t kSize = 100000;
  bool tested = false;
  for (int k = 0; k < 40 && !tested; ++k) {
    const std::string path = "/obj/cluster/cut-" + std::to_string(k);
    ASSERT_TRUE(testsupport::simFaultWith(sim_->port, path, "slow", "after=50000&rate=50000"));
    const double ok_before = peerOk(0, 2);
    HttpResponse r;
    std::thread viewer([&] { r = getFrom(hosts_[0], ports_[0], path + "?size=100000"); });
    bool owned = false;
    for (int i = 0; i < 20 && !owned; ++i) {
      std::this_thread::sleep_for(20ms);
      owned = peerOk(0, 2) > ok_before;  // counted when peer 2's head arrived
    }
    if (owned) {
      EXPECT_TRUE(peers_[2]->process.signal(SIGKILL));
      peers_[2]->process.wait(5s);
    }
    viewer.join();
    ASSERT_EQ(r.status, 200) << path << ": " << r.error << "\n" << peers_[0]->process.logTail();
    EXPECT_FALSE(r.truncated) << path;
    EXPECT_TRUE(r.body == testsupport::simBody(path, kSize))
        << path << ": " << r.body.size() << " bytes, not the origin's " << kSize;
    if (!owned) continue;
    tested = true;
    // The origin was asked twice: by peer 2 for the whole, by edge 0 for the rest.
    EXPECT_EQ(testsupport::simCount(sim_->port, path), 2);
    const std::vector<std::string> ranges = testsupport::simRanges(sim_->port, path);
    ASSERT_EQ(ranges.size(), 1u);
    const long long from = std::strtoll(ranges[0].c_str() + 6, nullptr, 10);
    EXPECT_EQ(ranges[0].rfind("bytes=", 0), 0u) << ranges[0];
    EXPECT_GE(from, 50000) << ranges[0];
    EXPECT_LT(from, static_cast<long long>(kSize)) << ranges[0];
    EXPECT_EQ(ranges[0].substr(ranges[0].find('|')),
              "|" + testsupport::simEtag(path, kSize) + "|") << ranges[0];
    const std::string text = testsupport::httpGet(peers_[0]->admin_port, "/metrics").body;
    const size_t at = text.find("streamedge_origin_resumes_total{group=\"main\",from_dc=\"peer\"");
    ASSERT_NE(at, std::string::npos) << text;
    const std::string line = text.substr(at, text.find('\n', at) - at);
    EXPECT_NE(line.find("outcome=\"ok\"} 1"), std::string::npos) << line;
    EXPECT_NE(peers_[0]->process.log().find("resume of " + path + " (group main) from peer " +
                                            address(2) + " (dc peer)"),
              std::string::npos)
        << peers_[0]->process.logTail();
  }
  EXPECT_TRUE(tested) << "peer 2 owned none of 40 keys";
}

TEST_F(ClusterScenario, PeerKilledUnderLoadAndBackTakesItsKeysBack) {
  startAll({config(0), config(1), config(2)});
  // Viewers of peers 0 and 1 ask for new keys all the time (one client, sequential; bounded: at
  // most 3000 requests, ~6 s) while peer 2 is killed and started again. No request may fail: a
  // fill peer 2 was streaming when it died goes on from the origin (the test above).
  using Clock = std::chrono::steady_clock;
  struct Failure {
    Clock::time_point start, end;
    std::string what;
  };
  std::mutex mu;
  std::vector<Failure> failures;
  std::atomic<bool> stop{false};
  std::atomic<int> keys{0};
  std::thread load([&] {
    for (int k = 0; k < 3000 && !stop.load(); ++k) {
      const int at = k % 2;
      const std::string path = "/obj/cluster/churn-" + std::to_string(k);
      const Clock::time_point start = Clock::now();
      const HttpResponse r = getFrom(hosts_[at], ports_[at], path + "?size=20000");
      if (r.status != 200 || r.body != testsupport::simBody(path, 20000)) {
        std::lock_guard<std::mutex> lock(mu);
        failures.push_back({start, Clock::now(),
                            path + " at edge " + std::to_string(at) + ": status " +
                                std::to_string(r.status) + ", " + std::to_string(r.body.size()) +
                                " bytes" + (r.truncated ? ", truncated" : "") +
                                (r.error.empty() ? "" : ", " + r.error)});
      }
      keys.store(k + 1);
      std::this_thread::sleep_for(2ms);
    }
  });
  std::this_thread::sleep_for(400ms);
  const Clock::time_point kill_from = Clock::now();
  const bool killed = peers_[2]->process.signal(SIGKILL);
  peers_[2]->process.wait(5s);
  const Clock::time_point kill_to = Clock::now();
  std::this_thread::sleep_for(800ms);
  std::string restart_error;
  if (killed) {
    auto p = testsupport::startStreamedge(config(2), &restart_error);
    if (p) peers_[2] = std::make_unique<testsupport::StreamedgeProcess>(std::move(*p));
  }
  if (killed && peers_[2]->process.running()) waitAllPeersUp();
  std::this_thread::sleep_for(600ms);
  stop = true;
  load.join();
  ASSERT_TRUE(killed);
  ASSERT_TRUE(peers_[2]->process.running()) << restart_error;
  EXPECT_TRUE(failures.empty()) << failures.size() << " of " << keys.load() << " failed";
  for (const Failure& f : failures) {
    const bool in_flight = f.start <= kill_to && f.end >= kill_from;
    ADD_FAILURE() << f.what << (in_flight ? " (in flight at the kill)" : "");
  }
  // One origin fetch per key, except for the fills peer 2 had in flight when it was killed
  // (the edge that asked it fetched again from the origin).
  long total = 0, twice = 0;
  for (int k = 0; k < keys.load(); ++k) {
    const long n = testsupport::simCount(sim_->port, "/obj/cluster/churn-" + std::to_string(k));
    EXPECT_GE(n, 1) << k;
    if (n > 1) ++twice;
    total += n;
  }
  EXPECT_LE(twice, 4) << total << " origin requests for " << keys.load() << " keys";
  // Back: peer 2 owns its share of new keys again (about a third of them; at least a few of 60).
  const double ok_after_return = peerOk(0, 2) + peerOk(1, 2);
  for (int k = 0; k < 60; ++k) {
    const std::string path = "/obj/cluster/back-" + std::to_string(k);
    const HttpResponse r = getFrom(hosts_[k % 2], ports_[k % 2], path + "?size=2000");
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.body, testsupport::simBody(path, 2000));
    EXPECT_EQ(testsupport::simCount(sim_->port, path), 1) << path;
  }
  const double back = peerOk(0, 2) + peerOk(1, 2) - ok_after_return;
  std::printf("churn: %d keys, %ld origin requests (%ld keys twice); back: peer 2 owns %.0f of 60\n",
              keys.load(), total, twice, back);
  EXPECT_GE(back, 6) << "peer 2 got " << back << " of 60 new keys";
  EXPECT_LE(back, 40) << "peer 2 got " << back << " of 60 new keys";
}

TEST_F(ClusterScenario, InconsistentMembershipMakesNoLoop) {
  // Peer 1 knows only itself; peers 0 and 2 know everyone. Whatever the ring says, a peer
  // request is answered from the origin, never sent on.
  startAll({config(0), config(1, {1}), config(2)});
  for (int k = 0; k < 20; ++k) {
    const std::string path = "/obj/cluster/loop-" + std::to_string(k);
    for (int i = 0; i < kPeers; ++i) {
      const HttpResponse r = getFrom(hosts_[i], ports_[i], path + "?size=2000");
      ASSERT_EQ(r.status, 200) << i << " " << path;
      EXPECT_EQ(r.body, testsupport::simBody(path, 2000));
    }
    EXPECT_LE(testsupport::simCount(sim_->port, path), 2);
  }
}

}  // namespace
}  // namespace streamedge::scenario
