// The cluster's part of admitting a request (Exchange::admitPeer): the peers' health checks and
// the verification of requests that claim to come from a peer (proxy/peer_tier.h).
#include <chrono>
#include <cstdio>

#include "proxy/exchange.h"
#include "proxy/peer_tier.h"
#include "proxy/security_log.h"
#include "proxy/worker.h"

namespace streamedge::proxy {

bool Exchange::admitPeer() {
  if (config_->cluster.enabled && !has_peer_claim_ && path_ == conf::kPeerHealthPath &&
      (is_get_ || is_head_)) {
    synth(200, "ok", false);
    return false;
  }
  if (!has_peer_claim_) return true;
  const std::shared_ptr<PeerTier> tier = worker_.shared().peers.get();
  std::string from;
  PeerVerdict verdict = PeerVerdict::kMalformed;
  const auto now = std::chrono::system_clock::now();
  if (tier) {
    const int64_t now_unix =
        std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    verdict = tier->verify(peer_claim_, method_, host_, target_, now_unix, from);
  }
  if (verdict == PeerVerdict::kOk) {
    peer_request_ = true;
    return true;
  }
  SecurityEvent e;
  e.time_unix_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  e.event = "peer_rejected";
  e.reason = tier ? peerVerdictName(verdict) : "no_cluster";
  e.vhost = "-";
  e.client = viewer_.log_client;
  e.method = method_;
  e.path = path_;
  e.source = "peer";
  e.key_id = from;  // the claimed sender
  std::string line;
  formatSecurityLogLine(e, line);
  worker_.shared().security_log.append(line);
  synth(403, "forbidden", false);
  return false;
}

}  // namespace streamedge::proxy
