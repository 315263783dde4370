// AdminActions: what the admin listener does beyond reading state — the token check with
// scopes (admin_auth.h), the purge API (purge.h), the audit log (audit_log.h) and their
// counters — kept out of Server so that its admin handler only asks two questions: may this
// request go on (authorize), and is it a purge (handlePurge).
//
// Main thread only (the admin listener's loop), except the counters, which are atomics read by
// the metrics scrape (also on the main thread today).
#pragma once

#include <event2/bufferevent.h>
#include <event2/http.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <string>

#include "cache/cache.h"
#include "conf/config.h"
#include "metrics/exposition.h"
#include "proxy/access_log.h"
#include "proxy/admin_auth.h"
#include "proxy/audit_log.h"
#include "proxy/peer_tier.h"
#include "proxy/purge.h"
#include "proxy/site_purge.h"
#include "tls/tls_state.h"

namespace streamedge::proxy {

class AdminActions {
 public:
  // `audit_path`: [log] audit ("" = off); takes effect at start only (as the access log).
  AdminActions(const conf::AdminConfig& admin, std::string audit_path);

  // Opens the audit log. False when it cannot be opened (the process should not start).
  bool open() { return audit_.open(); }
  // SIGUSR1: reopen the audit log.
  void reopenLog() { audit_.reopen(); }
  // A reload: the tokens of the new config from now on.
  void setConfig(const conf::AdminConfig& admin) { auth_ = AdminAuth(admin); }

  // [log] security_log: refused admin requests also go there ("event":"admin_refused"), the
  // client address anonymised as `mode` says. Null: not there. Called at start and on reload.
  void setSecurityLog(AccessLog* log, conf::AddressAnonymization mode) {
    security_ = log;
    security_client_mode_ = mode;
  }

  // TLS on the admin listener ([admin] certificates): the snapshot whose admin contexts new
  // connections handshake with. Called at start (before the listener accepts) and after every
  // reload; a snapshot without admin contexts is ignored (whether the listener speaks TLS is
  // fixed at start: it never falls back to plain HTTP).
  void setTls(const tls::TlsStatePtr& state);
  bool tls() const { return tls_ != nullptr; }
  // evhttp_set_bevcb callback (arg: this): an accepting bufferevent_openssl on the current
  // admin contexts; the SSL pins its TlsState snapshot until it is freed.
  static bufferevent* newConnectionCb(event_base* base, void* arg);

  // Checks the request's token against the scope `path` needs. Allowed: returns true and sets
  // `who` (the token's name). Refused: answers 401 (with WWW-Authenticate) or 403 itself,
  // writes the audit line, counts it, and returns false.
  // A /purge carrying a `Streamedge-Peer` field is judged by that field alone (a site purge
  // fanned out by a peer, site_purge.h): allowed when `peers` verifies its MAC over the method,
  // Host and target (who = "peer:<from>", *by_peer = true), else 403 whatever token it has; a
  // claimed peer that fails is refused, never let through as anonymous.
  bool authorize(evhttp_request* req, const std::string& path, std::string& who,
                 const PeerTier* peers = nullptr, bool* by_peer = nullptr);

  // What a site purge needs beside the cache: the admin loop, the current peer tier (null
  // without [cluster]) and whether the request was authorised by a peer's MAC.
  struct SiteContext {
    event_base* base = nullptr;
    std::shared_ptr<PeerTier> peers;
    bool by_peer = false;
  };
  // POST /purge?...: runs it on `cache` with `config`'s routing, answers JSON, writes the audit
  // line and counts it. Other methods: 405. With scope=site the answer waits for the peers
  // (site_purge.h; 200 or 207); 400 without a [cluster] or from a peer (a peer's purge is
  // never fanned out again), 501 on a TLS admin listener (the fan-out speaks plain HTTP).
  void handlePurge(evhttp_request* req, const std::string& who, cache::Cache& cache,
                   const conf::Config& config, const SiteContext& site);

  // The port the admin listener is bound to (the peers' admin port unless [cluster] admin_port
  // says otherwise). Called at start.
  void setOwnAdminPort(uint16_t port) { own_admin_port_ = port; }
  // Drops the site purges still waiting for peers, unanswered (before the admin evhttp and its
  // loop are freed).
  void stopSitePurges() { site_purges_.clear(); }

  // Counters for /metrics.
  void fillSnapshot(metrics::Snapshot& snap) const;
  const AdminAuth& auth() const { return auth_; }

 private:
  void reply(evhttp_request* req, int code, const char* reason, const std::string& body,
             const char* content_type);
  // Answers a refused request (401/403), audits, counts and logs it.
  void refuse(evhttp_request* req, const std::string& path, const AdminAuthResult& r,
              const char* security_reason);
  // Fans `request` (already run here, `local`) out to the peers; answers when they did.
  void startSitePurge(evhttp_request* req, const std::string& who, const std::string& client,
                      const PurgeRequest& request, const PurgeResult& local,
                      const conf::Config& config, const SiteContext& site, std::string_view query);

  AdminAuth auth_;
  tls::TlsStatePtr tls_;  // null: plain HTTP
  AccessLog* security_ = nullptr;
  conf::AddressAnonymization security_client_mode_{};
  AuditLog audit_;
  uint16_t own_admin_port_ = 0;
  // Site purges waiting for their peers (each removes itself when it answered).
  std::list<std::unique_ptr<SitePurge>> site_purges_;
  // Purges by kind (url, prefix, tag, host) and result (ok, error).
  std::array<std::array<std::atomic<uint64_t>, 2>, kPurgeKinds> purges_{};
  // Objects removed (hard) or marked stale (soft), by kind.
  std::array<std::array<std::atomic<uint64_t>, 2>, kPurgeKinds> purged_objects_{};
  std::atomic<uint64_t> refused_unauthenticated_{0};
  std::atomic<uint64_t> refused_forbidden_{0};
};

}  // namespace streamedge::proxy
