// Server, cluster membership from DNS ([cluster] dns): the hook between PeerDiscovery and the
// published config. A new membership is a config like the running one with other peers
// (conf::setClusterPeers), published the way a reload publishes it: origin health follows the
// new peer groups (kept peers keep their state), the peer tier is rebuilt with the previous one
// (kept peers keep their counters, new ones wait for their health checks), health checks
// restart, and every worker gets the snapshot.
#include <cstdio>

#include "conf/config_loader.h"
#include "proxy/json_text.h"
#include "proxy/server.h"

namespace streamedge::proxy {

namespace {

std::string joined(const std::vector<std::string>& list) {
  std::string out;
  for (const std::string& s : list) out += (out.empty() ? "" : " ") + s;
  return out.empty() ? "-" : out;
}

}  // namespace

void Server::syncPeerDiscovery() {
  if (stopping_ || !config_->cluster.enabled || config_->cluster.dns.empty()) {
    peer_discovery_.reset();
    return;
  }
  if (peer_discovery_) {
    peer_discovery_->reconfigure(*config_);  // settings, and a round now
    return;
  }
  peer_discovery_ = std::make_unique<PeerDiscovery>(
      base_, *config_,
      [this](const std::vector<std::string>& members, const std::vector<std::string>& added,
             const std::vector<std::string>& removed) {
        applyMembership(members, added, removed);
      });
}

conf::ConfigPtr Server::withDiscoveredPeers(conf::ConfigPtr loaded) const {
  if (!peer_discovery_ || peer_discovery_->members().empty() || !loaded->cluster.enabled ||
      loaded->cluster.dns != config_->cluster.dns) {
    return loaded;
  }
  auto next = std::make_shared<conf::Config>(*loaded);
  conf::setClusterPeers(*next, peer_discovery_->members());
  return next;
}

void Server::applyMembership(const std::vector<std::string>& members,
                             const std::vector<std::string>& added,
                             const std::vector<std::string>& removed) {
  auto next = std::make_shared<conf::Config>(*config_);
  conf::setClusterPeers(*next, members);
  std::fprintf(stderr,
               "streamedge: cluster: membership from DNS %s: %zu peers (added: %s; removed: %s)\n",
               config_->cluster.dns.c_str(), next->cluster.peers.size(), joined(added).c_str(),
               joined(removed).c_str());
  // This server is always a member (setClusterPeers adds it): an answer that only differs by
  // leaving it out gives the same ring.
  if (next->cluster.peers == config_->cluster.peers) return;
  ++membership_changes_;
  config_ = next;
  health_checker_.reset();
  shared_->health->reconfigure(*config_);
  shared_->peers.reconfigure(*config_);
  if (!stopping_) {
    health_checker_ = std::make_unique<HealthChecker>(base_, config_, tls_, shared_->health);
  }
  for (const std::unique_ptr<Worker>& worker : workers_) {
    Worker* w = worker.get();
    conf::ConfigPtr snapshot = config_;
    w->post([w, snapshot] { w->setConfig(snapshot); });
  }
}

std::string Server::membershipStatusJson() const {
  if (!peer_discovery_) return ",\"membership\":\"static\"";
  const PeerDiscovery& d = *peer_discovery_;
  std::string out = ",\"membership\":\"dns\",\"dns\":" + jsonString(config_->cluster.dns) +
                    ",\"dns_members\":" + std::to_string(d.members().size()) +
                    ",\"last_resolve_unix_ms\":" + std::to_string(d.lastResolveUnixMs()) +
                    ",\"last_success_unix_ms\":" + std::to_string(d.lastSuccessUnixMs()) +
                    ",\"last_error\":";
  out += d.lastError().empty() ? "null" : jsonString(d.lastError());
  return out;
}

}  // namespace streamedge::proxy
