// PeerTier: the cluster peer tier of one edge ([cluster], conf/config.h). Decides which peer a
// fill goes to, signs the requests this edge sends to peers and verifies the ones it receives,
// and keeps each peer's state (down after a failure until its health check passes again, fills
// in flight for the bounded-load choice, request counts for the metrics).
//
// Upstream choice (on a local miss, with the cache's fill permit held, so the viewers of this
// edge are already coalesced on one fill): PeerRing::choose over the peers that are usable (this
// edge itself always; another peer when its health check says up and no real request failed on
// it since its last passed checks). The owner being this edge means the origin. A request that
// came from a peer is never sent to a peer again (the owner always fetches from the origin,
// whatever its own ring says), so inconsistent membership cannot make a loop.
//
// The peer request field: `Streamedge-Peer: v1; from=<addr>; ts=<unix seconds>; mac=<b64url>`
// where mac = HMAC-SHA256(secret, "streamedge-peer-v1\n" method "\n" host "\n" target "\n" ts
// "\n" from), base64url without padding. Compared in constant time; ts within max_clock_skew.
//
// Thread-safety: immutable after make() except the per-peer atomics; any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "cache/cache_key.h"
#include "conf/config.h"
#include "proxy/origin_health.h"
#include "proxy/peer_ring.h"

namespace streamedge::proxy {

inline constexpr std::string_view kPeerField = "Streamedge-Peer";

enum class PeerVerdict { kOk, kMalformed, kBadMac, kStale };
const char* peerVerdictName(PeerVerdict verdict);  // "ok", "malformed", "bad_mac", "stale"

// Outcomes of this edge's requests to one peer (streamedge_peer_requests_total{result}); the
// order is metrics::kPeerResultNames'.
enum class PeerResult : size_t { kOk = 0, kServerError, kTimeout, kConnect, kError, kCount };
const char* peerResultName(PeerResult result);  // "ok", "5xx", "timeout", "connect", "error"

// One peer's request counts. Shared by the tiers of successive configs while the peer stays a
// member, so a reload (or a membership change) does not reset the counters of kept peers.
struct PeerCounters {
  std::atomic<uint64_t> results[static_cast<size_t>(PeerResult::kCount)] = {};
};

class PeerTier {
 public:
  // Null when the config has no [cluster] (or its ring cannot be made).
  // `previous` (may be null) lends its counters to the peers that stay.
  static std::shared_ptr<PeerTier> make(const conf::ClusterConfig& cluster,
                                        const PeerTier* previous = nullptr);

  size_t size() const { return ring_.size(); }
  const std::string& address(size_t peer) const { return ring_.peer(peer).address; }
  size_t self() const { return self_; }
  bool sameMembership(const conf::ClusterConfig& cluster) const;

  // The peer to fetch `key` from: its index, or -1 for the origin (this edge owns it, or no
  // other usable peer ranks before it). `config` gives the peers' origin groups in `health`.
  int choose(const cache::CacheKey& key, const conf::Config& config, const OriginHealth& health,
             OriginHealth::TimePoint now) const;
  bool usable(size_t peer, const conf::Config& config, const OriginHealth& health,
              OriginHealth::TimePoint now) const;

  // A fill to `peer` started / ended (the loads of the bounded-load choice).
  void acquire(size_t peer);
  void release(size_t peer);
  // A real request to `peer` failed: it gets no traffic until its health check passes again.
  void markDown(size_t peer, const conf::Config& config, const OriginHealth& health,
                std::string_view why);
  uint32_t load(size_t peer) const {
    return peers_state_[peer].load.load(std::memory_order_relaxed);
  }
  void count(size_t peer, PeerResult result);
  uint64_t requests(size_t peer, PeerResult result) const;

  // The field value for a request this edge sends to a peer.
  std::string sign(std::string_view method, std::string_view host, std::string_view target,
                   int64_t unix_seconds) const;
  // Checks a received field value; `from` gets the claimed sender (for the security log).
  PeerVerdict verify(std::string_view value, std::string_view method, std::string_view host,
                     std::string_view target, int64_t now_unix, std::string& from) const;

 private:
  struct Peer {
    std::atomic<bool> failed{false};          // a real request failed...
    std::atomic<uint64_t> passes_at_fail{0};  // ...when its health check had passed this often
    std::atomic<uint32_t> load{0};
    std::shared_ptr<PeerCounters> counters;
  };
  PeerTier(PeerRing ring, const conf::ClusterConfig& cluster, const PeerTier* previous);
  std::string mac(std::string_view method, std::string_view host, std::string_view target,
                  std::string_view ts, std::string_view from) const;
  size_t groupOf(const conf::Config& config, size_t peer) const;

  PeerRing ring_;
  std::vector<std::string> config_order_;  // the config's peer list (ring indices follow it)
  size_t self_ = 0;
  std::string secret_;
  int64_t max_skew_s_ = 30;
  double load_factor_ = 1.25;
  std::unique_ptr<Peer[]> peers_state_;  // size() entries
};

// The peer tier of the current config, swapped on reload (kept when the membership and secret
// are unchanged, so peer state survives). Any thread.
class PeerTierHolder {
 public:
  std::shared_ptr<PeerTier> get() const {
    std::lock_guard<std::mutex> lock(mu_);
    return tier_;
  }
  void reconfigure(const conf::Config& config) {
    std::lock_guard<std::mutex> lock(mu_);
    if (tier_ && config.cluster.enabled && tier_->sameMembership(config.cluster)) return;
    tier_ = PeerTier::make(config.cluster, tier_.get());
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<PeerTier> tier_;
};

}  // namespace streamedge::proxy
