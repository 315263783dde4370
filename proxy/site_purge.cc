#include "proxy/site_purge.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <charconv>
#include <ctime>

#include "proxy/json_text.h"
#include "tls/origin_context.h"

namespace streamedge::proxy {

namespace {

// A peer's purge answer is one short JSON line; anything longer is not one.
constexpr size_t kMaxPeerAnswerBytes = 64 * 1024;
constexpr size_t kMaxPeerErrorBytes = 200;

const char* requestErrorName(int error) {
  switch (error) {
    case EVREQ_HTTP_TIMEOUT: return "timeout";
    case EVREQ_HTTP_EOF: return "connection failed";
    case EVREQ_HTTP_INVALID_HEADER:
    case EVREQ_HTTP_BUFFER_ERROR:
    case EVREQ_HTTP_DATA_TOO_LONG: return "bad answer";
    case EVREQ_HTTP_REQUEST_CANCEL: return "cancelled";
    default: return "connection failed";
  }
}

// The raw text of the JSON string after `"name":` in `body` (ours: no nested objects before
// it). Nullopt-like false when absent or escaped (an escaped text is not passed on half-read).
bool jsonStringField(std::string_view body, std::string_view name, std::string& out) {
  const std::string needle = "\"" + std::string(name) + "\":\"";
  const size_t at = body.find(needle);
  if (at == std::string_view::npos) return false;
  const size_t start = at + needle.size();
  const size_t end = body.find('"', start);
  if (end == std::string_view::npos) return false;
  const std::string_view text = body.substr(start, end - start);
  if (text.find('\\') != std::string_view::npos) return false;
  out.assign(text.substr(0, kMaxPeerErrorBytes));
  return true;
}

}  // namespace

int sitePurgeStatus(const PurgeResult& local, const std::vector<PeerPurgeOutcome>& peers) {
  if (local.status != 200) return 207;
  for (const PeerPurgeOutcome& p : peers) {
    if (!p.ok()) return 207;
  }
  return 200;
}

std::string sitePurgeJson(std::string_view self, const PurgeResult& local,
                          const std::vector<PeerPurgeOutcome>& peers) {
  uint64_t objects = local.status == 200 ? local.objects : 0;
  for (const PeerPurgeOutcome& p : peers) {
    if (p.ok() && p.objects > 0) objects += static_cast<uint64_t>(p.objects);
  }
  std::string_view local_json = local.json;
  while (!local_json.empty() && (local_json.back() == '\n' || local_json.back() == ' ')) {
    local_json.remove_suffix(1);
  }
  std::string out = "{\"scope\":\"site\",\"self\":" + jsonString(self) +
                    ",\"objects\":" + std::to_string(objects) + ",\"local\":";
  if (local_json.empty()) {
    out += "{\"status\":" + std::to_string(local.status) + "}";
  } else {
    out += local_json;
  }
  out += ",\"peers\":[";
  for (size_t i = 0; i < peers.size(); ++i) {
    const PeerPurgeOutcome& p = peers[i];
    if (i) out += ',';
    out += "{\"peer\":" + jsonString(p.peer);
    if (p.status != 0) out += ",\"status\":" + std::to_string(p.status);
    if (p.ok()) {
      if (p.objects >= 0) out += ",\"objects\":" + std::to_string(p.objects);
    } else {
      out += ",\"error\":" + jsonString(p.error.empty() ? "HTTP " + std::to_string(p.status)
                                                         : p.error);
    }
    out += '}';
  }
  out += "]}\n";
  return out;
}

std::string peerPurgeTarget(std::string_view query) {
  std::string target = "/purge?";
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const std::string_view name = part.substr(0, part.find('='));
    if (part.empty() || name == "scope") continue;
    target.append(part).append("&");
  }
  target += "scope=local";
  return target;
}

void readPeerPurgeAnswer(int status, std::string_view body, PeerPurgeOutcome& out) {
  out.status = status;
  out.objects = -1;
  out.error.clear();
  if (status == 200) {
    constexpr std::string_view kObjects = "\"objects\":";
    const size_t at = body.find(kObjects);
    int64_t n = -1;
    if (at != std::string_view::npos) {
      const char* begin = body.data() + at + kObjects.size();
      const auto [end, ec] = std::from_chars(begin, body.data() + body.size(), n);
      if (ec != std::errc() || end == begin || n < 0) n = -1;
    }
    if (n < 0) {
      out.error = "bad answer";
      return;
    }
    out.objects = n;
    return;
  }
  if (!jsonStringField(body, "error", out.error) || out.error.empty()) {
    out.error = "HTTP " + std::to_string(status);
  }
}

bool peerHostOf(std::string_view peer, std::string& host) {
  const size_t colon = peer.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view h = peer.substr(0, colon);
  if (h.front() == '[') {
    if (h.size() < 3 || h.back() != ']') return false;
    h = h.substr(1, h.size() - 2);
  }
  host.assign(h);
  return true;
}

std::string hostFieldOf(std::string_view host, uint16_t port) {
  std::string out;
  if (host.find(':') != std::string_view::npos) {
    out.append("[").append(host).append("]");
  } else {
    out.append(host);
  }
  out.append(":").append(std::to_string(port));
  return out;
}

AdminAuthResult judgePeerPurge(const PeerTier* peers, std::string_view field,
                               std::string_view method, std::string_view host,
                               std::string_view target, int64_t now_unix) {
  AdminAuthResult r;
  if (!peers) {
    r.decision = AdminAuthResult::Decision::kForbidden;
    r.why = "peer purge without [cluster]";
    return r;
  }
  std::string from;
  const PeerVerdict v = peers->verify(field, method, host, target, now_unix, from);
  if (v != PeerVerdict::kOk) {
    r.decision = AdminAuthResult::Decision::kForbidden;
    r.why = std::string("peer purge: ") + peerVerdictName(v);
    return r;
  }
  r.who = "peer:" + from;
  return r;
}

std::unique_ptr<SitePurge> SitePurge::start(event_base* base, const PeerTier& tier,
                                            uint16_t admin_port, std::string_view query,
                                            Millis timeout, Done done, SSL_CTX* tls_ctx,
                                            const conf::OriginConfig* tls_origin) {
  std::unique_ptr<SitePurge> sp(new SitePurge());
  sp->done_ = std::move(done);
  sp->timer_ = evtimer_new(base, finishCb, sp.get());
  sp->finish_ = event_new(base, -1, 0, finishCb, sp.get());
  if (!sp->timer_ || !sp->finish_) return nullptr;
  const std::string target = peerPurgeTarget(query);
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>(timeout.count() % 1000 * 1000);
  for (size_t i = 0; i < tier.size(); ++i) {
    if (i == tier.self()) continue;
    auto slot = std::make_unique<Slot>();
    slot->owner = sp.get();
    slot->outcome.peer = tier.address(i);
    Slot& s = *slot;
    sp->slots_.push_back(std::move(slot));
    std::string host;
    if (!peerHostOf(s.outcome.peer, host)) {
      s.outcome.error = "cannot connect";
      s.done = true;
      continue;
    }
    if (tls_origin && !tls_ctx) {
      s.outcome.error = "no TLS context for the peers";  // cannot happen: TlsState builds it
      s.done = true;
      continue;
    }
    if (tls_ctx && tls_origin) {
      conf::OriginConfig o = *tls_origin;
      o.host = host;
      o.port = admin_port;
      tls::SslPtr ssl = tls::newOriginSsl(tls_ctx, o, nullptr);
      bufferevent* bev =
          ssl ? bufferevent_openssl_socket_new(base, -1, ssl.get(), BUFFEREVENT_SSL_CONNECTING,
                                               BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS)
              : nullptr;
      if (bev) {
        ssl.release();  // the bufferevent owns it
        // An answer with Connection: close may end without close_notify: its framing decides.
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
        s.conn = evhttp_connection_base_bufferevent_new(base, nullptr, bev, host.c_str(),
                                                        admin_port);
        if (!s.conn) bufferevent_free(bev);
      }
    } else {
      s.conn = evhttp_connection_base_new(base, nullptr, host.c_str(), admin_port);
    }
    evhttp_request* req = s.conn ? evhttp_request_new(requestCb, &s) : nullptr;
    if (!req) {
      s.outcome.error = "cannot connect";
      s.done = true;
      continue;
    }
    evhttp_connection_set_timeout_tv(s.conn, &tv);
    evhttp_connection_set_retries(s.conn, 0);
    evhttp_connection_set_max_body_size(s.conn, kMaxPeerAnswerBytes);
    evhttp_request_set_error_cb(req, errorCb);
    const std::string host_field = hostFieldOf(host, admin_port);
    evkeyvalq* headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Host", host_field.c_str());
    evhttp_add_header(headers, "Connection", "close");
    const std::string mac = tier.sign("POST", host_field, target, now);
    evhttp_add_header(headers, std::string(kPeerField).c_str(), mac.c_str());
    // Counted before: a connect that fails at once calls requestCb from inside. On failure
    // evhttp_make_request frees the request itself.
    ++sp->pending_;
    if (evhttp_make_request(s.conn, req, EVHTTP_REQ_POST, target.c_str()) != 0 && !s.done) {
      s.outcome.error = "cannot connect";
      s.done = true;
      --sp->pending_;
    }
  }
  if (sp->pending_ == 0) {
    event_active(sp->finish_, 0, 0);
  } else {
    evtimer_add(sp->timer_, &tv);
  }
  return sp;
}

SitePurge::~SitePurge() {
  freeConnections();
  if (timer_) event_free(timer_);
  if (finish_) event_free(finish_);
}

void SitePurge::freeConnections() {
  // evhttp_connection_free drops a request still in flight without calling its callbacks.
  for (auto& slot : slots_) {
    if (slot->conn) evhttp_connection_free(slot->conn);
    slot->conn = nullptr;
  }
}

void SitePurge::errorCb(evhttp_request_error error, void* arg) {
  static_cast<Slot*>(arg)->error = error;
}

void SitePurge::requestCb(evhttp_request* req, void* arg) {
  Slot& slot = *static_cast<Slot*>(arg);
  if (slot.done) return;
  const int status = req ? evhttp_request_get_response_code(req) : 0;
  if (status <= 0) {
    slot.outcome.error = requestErrorName(slot.error);
  } else {
    evbuffer* in = evhttp_request_get_input_buffer(req);
    const size_t n = std::min(evbuffer_get_length(in), kMaxPeerAnswerBytes);
    std::string body(n, '\0');
    evbuffer_copyout(in, body.data(), n);
    readPeerPurgeAnswer(status, body, slot.outcome);
  }
  slot.owner->slotDone(slot);
}

void SitePurge::slotDone(Slot& slot) {
  slot.done = true;
  // The connection is freed later, from finishCb: never from inside its own callback.
  if (--pending_ == 0) event_active(finish_, 0, 0);
}

void SitePurge::finishCb(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<SitePurge*>(arg);
  if (!self->done_) return;
  event_del(self->timer_);
  event_del(self->finish_);
  for (auto& slot : self->slots_) {
    if (!slot->done) {
      slot->done = true;
      slot->outcome.error = "timeout";
    }
  }
  self->freeConnections();
  std::vector<PeerPurgeOutcome> outcomes;
  outcomes.reserve(self->slots_.size());
  for (auto& slot : self->slots_) outcomes.push_back(std::move(slot->outcome));
  // `done` may destroy this SitePurge (its owner drops it): nothing of it is used after.
  Done done = std::move(self->done_);
  self->done_ = nullptr;
  done(std::move(outcomes));
}

}  // namespace streamedge::proxy
