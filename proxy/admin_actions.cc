#include "proxy/admin_actions.h"

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/keyvalq_struct.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "conf/config_loader.h"
#include "proxy/security_log.h"

namespace streamedge::proxy {

namespace {

int64_t unixMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const char* methodName(evhttp_cmd_type cmd) {
  switch (cmd) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    default: return "OTHER";
  }
}

// The admin client's address (full: admin clients are operators, and the audit log is where
// who did what must be answerable).
std::string clientOf(evhttp_request* req) {
  evhttp_connection* conn = evhttp_request_get_connection(req);
  if (!conn) return "-";
  char* addr = nullptr;  // libevent 2.1 takes char** (owned by the connection)
  uint16_t port = 0;
  evhttp_connection_get_peer(conn, &addr, &port);
  return addr ? std::string(addr) : std::string("-");
}

// SSL ex_data slot holding a heap tls::TlsStatePtr: the snapshot an admin connection's SSL was
// made from, released with the SSL (so a reload never frees contexts a handshake still uses).
void freePinnedState(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<tls::TlsStatePtr*>(ptr);
}
int pinnedStateIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, freePinnedState);
  return index;
}

// The SSL of the request's connection; null for plain HTTP.
SSL* sslOf(evhttp_request* req) {
  evhttp_connection* conn = evhttp_request_get_connection(req);
  bufferevent* bev = conn ? evhttp_connection_get_bufferevent(conn) : nullptr;
  return bev ? bufferevent_openssl_get_ssl(bev) : nullptr;
}

// "cert:<subject CN>" of a verified client certificate ("" when none was presented).
std::string clientCertificateName(SSL* ssl) {
  if (!ssl) return "";
  X509* peer = SSL_get0_peer_certificate(ssl);
  if (!peer || SSL_get_verify_result(ssl) != X509_V_OK) return "";
  char cn[256] = {0};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn) <= 0) {
    return "cert:-";
  }
  return std::string("cert:") + cn;
}

}  // namespace

void AdminActions::setTls(const tls::TlsStatePtr& state) {
  if (state && state->admin()) tls_ = state;
}

bufferevent* AdminActions::newConnectionCb(event_base* base, void* arg) {
  auto* self = static_cast<AdminActions*>(arg);
  SSL* ssl = self->tls_ ? SSL_new(self->tls_->admin()->defaultContext()) : nullptr;
  if (ssl) {
    SSL_set_ex_data(ssl, pinnedStateIndex(), new tls::TlsStatePtr(self->tls_));
    bufferevent* bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                      BEV_OPT_CLOSE_ON_FREE);
    if (bev) {
      bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
      return bev;
    }
    SSL_free(ssl);
  }
  // Out of memory: evhttp then makes a plain bufferevent, and authorize() refuses every request
  // that arrives on it.
  std::fprintf(stderr, "streamedge: admin: cannot set up TLS for a connection\n");
  return nullptr;
}

AdminActions::AdminActions(const conf::AdminConfig& admin, std::string audit_path)
    : auth_(admin), audit_(std::move(audit_path)) {}

void AdminActions::reply(evhttp_request* req, int code, const char* reason,
                         const std::string& body, const char* content_type) {
  evkeyvalq* out = evhttp_request_get_output_headers(req);
  evhttp_remove_header(out, "Content-Type");
  evhttp_add_header(out, "Content-Type", content_type);
  evbuffer* buf = evbuffer_new();
  evbuffer_add(buf, body.data(), body.size());
  evhttp_send_reply(req, code, reason, buf);
  evbuffer_free(buf);
}

bool AdminActions::authorize(evhttp_request* req, const std::string& path, std::string& who,
                             const PeerTier* peers, bool* by_peer) {
  if (by_peer) *by_peer = false;
  SSL* ssl = sslOf(req);
  if (tls_ && !ssl) {
    // Only when TLS could not be set up for the connection (newConnectionCb): never served.
    reply(req, 400, "Bad Request", "TLS required\n", "text/plain; charset=utf-8");
    return false;
  }
  const evkeyvalq* in = evhttp_request_get_input_headers(req);
  if (path == "/purge") {
    if (const char* field = evhttp_find_header(in, std::string(kPeerField).c_str())) {
      // A peer's share of a site purge: its MAC over what it sent stands in for a token.
      const char* host = evhttp_find_header(in, "Host");
      const char* target = evhttp_request_get_uri(req);
      const AdminAuthResult r =
          judgePeerPurge(peers, field, methodName(evhttp_request_get_command(req)),
                         host ? host : "", target ? target : "", unixMillis() / 1000);
      if (r.decision == AdminAuthResult::Decision::kAllowed) {
        who = r.who;
        if (by_peer) *by_peer = true;
        return true;
      }
      refuse(req, path, r, "peer_rejected");
      return false;
    }
  }
  const char* authorization = evhttp_find_header(in, "Authorization");
  const AdminAuthResult r = auth_.check(authorization, scopeForPath(path));
  if (r.decision == AdminAuthResult::Decision::kAllowed) {
    who = r.who;
    // No token configured but a verified client certificate ([admin] client_ca): the audit
    // log names the certificate.
    if (auth_.open()) {
      std::string cert = clientCertificateName(ssl);
      if (!cert.empty()) who = std::move(cert);
    }
    return true;
  }
  const bool forbidden = r.decision == AdminAuthResult::Decision::kForbidden;
  refuse(req, path, r, forbidden ? "missing_scope" : authorization ? "unknown_token" : "no_token");
  return false;
}

void AdminActions::refuse(evhttp_request* req, const std::string& path, const AdminAuthResult& r,
                          const char* security_reason) {
  const bool forbidden = r.decision == AdminAuthResult::Decision::kForbidden;
  (forbidden ? refused_forbidden_ : refused_unauthenticated_).fetch_add(1, std::memory_order_relaxed);
  const std::string client = clientOf(req);
  const char* method = methodName(evhttp_request_get_command(req));
  AuditEvent e;
  e.time_unix_ms = unixMillis();
  e.who = r.who;
  e.client = client;
  e.action = "refused";
  e.method = method;
  e.path = path;
  e.result = "refused";
  e.status = r.httpStatus();
  e.detail = r.why;
  audit_.record(e);
  if (security_ && security_->enabled()) {
    std::string anonymized = "-";
    evhttp_connection* conn = evhttp_request_get_connection(req);
    if (const sockaddr* addr = conn ? evhttp_connection_get_addr(conn) : nullptr) {
      anonymizeAddress(addr, security_client_mode_, anonymized);
    }
    SecurityEvent se;
    se.time_unix_ms = e.time_unix_ms;
    se.event = "admin_refused";
    se.reason = security_reason;
    se.client = anonymized;
    se.method = method;
    se.path = path;
    se.source = "admin";
    se.key_id = r.who;  // the token's name when it was known (403)
    std::string line;
    formatSecurityLogLine(se, line);
    security_->append(line);
  }
  // The error log names no token either: who (if known), from where, why.
  std::fprintf(stderr, "streamedge: admin: %d %s %s from %s: %s%s%s\n", e.status, method,
               path.c_str(), client.c_str(), r.why.c_str(), r.who.empty() ? "" : ", token ",
               r.who.c_str());
  if (!forbidden) {
    evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                      "Bearer realm=\"streamedge-admin\"");
    reply(req, 401, "Unauthorized", "bearer token required\n", "text/plain; charset=utf-8");
  } else {
    reply(req, 403, "Forbidden", "this token may not do that\n", "text/plain; charset=utf-8");
  }
}

namespace {

// The audit parameters of a parsed purge and its local result.
void purgeAuditParams(const PurgeRequest& request, const PurgeResult& result, AuditEvent& e) {
  e.params.emplace_back("kind", purgeKindName(request.kind));
  e.params.emplace_back("mode", request.soft ? "soft" : "hard");
  if (request.scope == PurgeRequest::Scope::kSite) e.params.emplace_back("scope", "site");
  if (!request.url.empty()) e.params.emplace_back("url", request.url);
  if (!request.host.empty()) e.params.emplace_back("host", request.host);
  if (!request.prefix.empty()) e.params.emplace_back("prefix", request.prefix);
  if (!request.tag.empty()) e.params.emplace_back("tag", request.tag);
  if (!result.vhost.empty()) e.params.emplace_back("vhost", result.vhost);
  if (result.data_key_destroyed) e.params.emplace_back("data_key", "destroyed");
}

const char* reasonOf(int status) {
  switch (status) {
    case 200: return "OK";
    case 207: return "Multi-Status";
    case 404: return "Not Found";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    default: return "Bad Request";
  }
}

}  // namespace

void AdminActions::handlePurge(evhttp_request* req, const std::string& who, cache::Cache& cache,
                               const conf::Config& config, const SiteContext& site) {
  const char* method = methodName(evhttp_request_get_command(req));
  if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
    reply(req, 405, "Method Not Allowed", "{\"error\":\"POST only\"}\n", "application/json");
    return;
  }
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
  const char* q = uri ? evhttp_uri_get_query(uri) : nullptr;
  PurgeRequest request;
  std::string error;
  PurgeResult result;
  bool parsed = parsePurgeQuery(q ? q : "", request, error);
  const bool site_scope = parsed && request.scope == PurgeRequest::Scope::kSite;
  if (site_scope && (site.by_peer || !site.peers)) {
    // Refused before anything is purged: the caller learns the whole purge did not happen.
    parsed = false;
    result.status = 400;
    result.error = site.by_peer ? "a peer's purge is local only (scope=local)"
                                : "scope=site needs a [cluster]";
    result.json = purgeErrorJson(result.error);
  } else if (!parsed) {
    result.status = 400;
    result.error = error;
    result.json = purgeErrorJson(error);
  } else {
    result = runPurge(cache, config, request);
  }
  const size_t kind = static_cast<size_t>(request.kind);
  const bool ok = result.status == 200;
  if (parsed) {
    purges_[kind][ok ? 0 : 1].fetch_add(1, std::memory_order_relaxed);
    if (ok) {
      purged_objects_[kind][request.soft ? 1 : 0].fetch_add(result.objects,
                                                           std::memory_order_relaxed);
    }
  }
  const std::string client = clientOf(req);
  AuditEvent e;
  e.time_unix_ms = unixMillis();
  e.who = who;
  e.client = client;
  e.action = "purge";
  e.method = method;
  e.path = "/purge";
  if (parsed) {
    purgeAuditParams(request, result, e);
  } else if (q) {
    e.params.emplace_back("query", q);
  }
  e.result = ok ? "ok" : "error";
  e.status = result.status;
  e.objects = ok ? static_cast<int64_t>(result.objects) : -1;
  e.detail = result.error;
  audit_.record(e);
  std::fprintf(stderr, "streamedge: admin: purge %s by %s from %s: %d, %llu objects in %.1f ms\n",
               parsed ? purgeKindName(request.kind) : "(bad request)", who.c_str(),
               client.c_str(), result.status, static_cast<unsigned long long>(result.objects),
               result.duration_ms);
  // A site purge goes on to the peers unless the request itself was wrong here (400, 404: the
  // peers share the config and would answer the same).
  if (parsed && site_scope && result.status != 400 && result.status != 404) {
    return startSitePurge(req, who, client, request, result, config, site, q ? q : "");
  }
  reply(req, result.status, reasonOf(result.status), result.json, "application/json");
}

void AdminActions::startSitePurge(evhttp_request* req, const std::string& who,
                                  const std::string& client, const PurgeRequest& request,
                                  const PurgeResult& local, const conf::Config& config,
                                  const SiteContext& site, std::string_view query) {
  const PeerTier& tier = *site.peers;
  const std::string self = tier.address(tier.self());
  const uint16_t port = config.cluster.admin_port ? config.cluster.admin_port : own_admin_port_;
  const auto started = std::chrono::steady_clock::now();
  const auto it = site_purges_.emplace(site_purges_.end());
  auto done = [this, it, req, who, client, request, local, self,
               started](std::vector<PeerPurgeOutcome> peers) {
    const int status = sitePurgeStatus(local, peers);
    const std::string json = sitePurgeJson(self, local, peers);
    // One audit line for the fan-out: who, which peers and what each answered.
    std::string summary;
    int64_t objects = local.status == 200 ? static_cast<int64_t>(local.objects) : 0;
    for (const PeerPurgeOutcome& p : peers) {
      if (!summary.empty()) summary += ",";
      summary += p.peer + "=";
      if (p.ok()) {
        summary += "ok:" + std::to_string(p.objects);
        objects += std::max<int64_t>(0, p.objects);
      } else {
        summary += (p.status ? std::to_string(p.status) + ":" : std::string()) + p.error;
      }
    }
    AuditEvent e;
    e.time_unix_ms = unixMillis();
    e.who = who;
    e.client = client;
    e.action = "site_purge";
    e.method = "POST";
    e.path = "/purge";
    purgeAuditParams(request, local, e);
    e.params.emplace_back("peers", summary);
    e.result = status == 200 ? "ok" : "partial";
    e.status = status;
    e.objects = objects;
    audit_.record(e);
    const double ms = std::chrono::duration<double, std::milli>(
                          std::chrono::steady_clock::now() - started)
                          .count();
    std::fprintf(stderr, "streamedge: admin: site purge by %s from %s: %d, %lld objects, %s "
                 "in %.1f ms\n", who.c_str(), client.c_str(), status,
                 static_cast<long long>(objects), summary.empty() ? "no other peer" : summary.c_str(),
                 ms);
    reply(req, status, reasonOf(status), json, "application/json");
    site_purges_.erase(it);  // destroys the SitePurge: last
  };
  // A TLS admin listener: the peers' are TLS too, asked with the peers' client context.
  const conf::OriginConfig tls_origin = conf::clusterPeerTlsOrigin(config.cluster);
  SSL_CTX* tls_ctx = tls_ ? tls_->originContext(tls_origin) : nullptr;
  *it = SitePurge::start(site.base, tier, port, query, config.cluster.purge_timeout,
                         std::move(done), tls_ctx, tls_ ? &tls_origin : nullptr);
  if (!*it) {
    site_purges_.erase(it);
    reply(req, 500, "Internal Server Error", purgeErrorJson("cannot start the site purge"),
          "application/json");
  }
}

void AdminActions::fillSnapshot(metrics::Snapshot& snap) const {
  for (size_t k = 0; k < kPurgeKinds; ++k) {
    const char* kind = purgeKindName(static_cast<PurgeRequest::Kind>(k));
    snap.purges.push_back({kind, "ok", purges_[k][0].load(std::memory_order_relaxed)});
    snap.purges.push_back({kind, "error", purges_[k][1].load(std::memory_order_relaxed)});
    snap.purged_objects.push_back({kind, "hard", purged_objects_[k][0].load(std::memory_order_relaxed)});
    snap.purged_objects.push_back({kind, "soft", purged_objects_[k][1].load(std::memory_order_relaxed)});
  }
  snap.admin_refused_unauthenticated = refused_unauthenticated_.load(std::memory_order_relaxed);
  snap.admin_refused_forbidden = refused_forbidden_.load(std::memory_order_relaxed);
  snap.audit_log_failed_lines = audit_.failedLines();
}

}  // namespace streamedge::proxy
