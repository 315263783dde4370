#include "tls/tls_state.h"

#include "conf/config_loader.h"
#include "tls/origin_context.h"

namespace streamedge::tls {

TlsState::Build TlsState::build(const conf::Config& config, const TlsState* previous,
                                std::time_t now) {
  Build out;
  auto state = std::make_shared<TlsState>();
  for (size_t i = 0; i < config.listeners.size(); ++i) {
    const conf::ListenerConfig& l = config.listeners[i];
    state->listener_addresses_.push_back(l.address);
    if (l.certificates.empty()) {
      state->listeners_.push_back(nullptr);
      continue;
    }
    std::shared_ptr<TicketKeyRing> ring;
    if (previous) {
      for (size_t p = 0; p < previous->listeners_.size(); ++p) {
        if (previous->listeners_[p] && previous->listener_addresses_[p] == l.address) {
          ring = previous->listeners_[p]->tickets();
        }
      }
    }
    ListenerContexts::Build b = ListenerContexts::build(l, std::move(ring), now);
    const std::string where = "listener[" + std::to_string(i) + "] (" + l.address + "): ";
    for (const std::string& w : b.warnings) out.warnings.push_back(where + w);
    for (const std::string& e : b.errors) out.errors.push_back(where + e);
    state->listeners_.push_back(std::move(b.contexts));
  }
  if (!config.admin.certificates.empty() && !config.admin.address.empty()) {
    // The admin listener: a TLS listener with the default protocol settings, its own session
    // id context and ticket keys (kept across reloads), and client_ca when set.
    conf::ListenerConfig admin;
    admin.address = "admin " + config.admin.address;
    admin.certificates = config.admin.certificates;
    admin.client_ca = config.admin.client_ca;
    admin.http2 = false;  // evhttp: HTTP/1.1 only
    std::shared_ptr<TicketKeyRing> ring = previous && previous->admin_ ? previous->admin_->tickets() : nullptr;
    ListenerContexts::Build b = ListenerContexts::build(admin, std::move(ring), now);
    const std::string where = "admin (" + config.admin.address + "): ";
    for (const std::string& w : b.warnings) out.warnings.push_back(where + w);
    for (const std::string& e : b.errors) out.errors.push_back(where + e);
    state->admin_ = std::move(b.contexts);
  }
  auto addOrigin = [&](const conf::OriginConfig& origin, const std::string& where) {
    if (origin.scheme != "https") return;
    const std::string key = originContextKey(origin);
    if (state->origins_.count(key)) return;
    OriginContextBuild b = buildOriginContext(origin);
    if (!b.error.empty()) {
      out.errors.push_back(where + " (" + origin.name + "): " + b.error);
      return;
    }
    if (!origin.tls_verify) {
      out.warnings.push_back("origin " + origin.name + ": tls_verify = false: the origin's "
                             "certificate is not checked; anyone on the path can impersonate it");
    }
    state->origins_.emplace(key, std::move(b.ctx));
  };
  if (conf::clusterUsesTls(config)) {
    // The peers' client context (conf::setClusterPeers gives every peer these settings; site
    // purges use it for the peers' TLS admin listeners), also before DNS has named any peer:
    // memberships published later find it here.
    addOrigin(conf::clusterPeerTlsOrigin(config.cluster), "cluster");
  }
  for (size_t g = 0; g < config.origin_groups.size(); ++g) {
    const conf::OriginGroupConfig& group = config.origin_groups[g];
    for (size_t o = 0; o < group.origins.size(); ++o) {
      addOrigin(group.origins[o],
                "origin_group[" + std::to_string(g) + "].origin[" + std::to_string(o) + "]");
    }
  }
  if (out.errors.empty()) out.state = std::move(state);
  return out;
}

SSL_CTX* TlsState::originContext(const conf::OriginConfig& origin) const {
  if (origin.scheme != "https") return nullptr;
  auto it = origins_.find(originContextKey(origin));
  return it == origins_.end() ? nullptr : it->second.get();
}

std::vector<TlsState::ListenerCertificate> TlsState::listenerCertificates() const {
  std::vector<ListenerCertificate> out;
  for (size_t i = 0; i < listeners_.size(); ++i) {
    if (!listeners_[i]) continue;
    for (const ServedCertificate& c : listeners_[i]->certificates()) out.push_back({i, c});
  }
  return out;
}

}  // namespace streamedge::tls
