#include "proxy/exchange.h"

#include <netinet/in.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "cache/cache_key.h"
#include "cache/freshness.h"
#include "proxy/cache_status.h"
#include "proxy/cmsd.h"
#include "proxy/fill_job.h"
#include "proxy/invalidation.h"
#include "proxy/request_fields.h"
#include "proxy/router.h"
#include "proxy/security_log.h"
#include "proxy/url_token.h"
#include "proxy/worker.h"
#include "streaming/ll_hls.h"
#include "streaming/prefetch_targets.h"

namespace streamedge::proxy {

namespace {

using Clock = std::chrono::steady_clock;

void appendUint(std::string& out, uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

// A viewer of an answer that is not kept (a windowed object) gets at most this much queued in
// its connection's output ahead of the socket; the rest waits in the fill's window (or the
// origin), and is queued as the socket drains.
constexpr size_t kWindowedOutputBytes = 256 * 1024;

constexpr size_t kMaxForwardedBody = 1 << 20;

constexpr uint64_t kUnknownEnd = BodyCursor::kUnknownEnd;

// An origin-form target without its CMCD query parameters (any case of the name): the
// viewer's CTA-5004 data stays at the edge.
std::string withoutCmcdParam(const std::string& target) {
  const size_t q = target.find('?');
  if (q == std::string::npos) return target;
  std::string out = target.substr(0, q);
  const std::string_view query = std::string_view(target).substr(q + 1);
  bool first = true;
  size_t pos = 0;
  while (pos <= query.size()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string_view::npos) amp = query.size();
    const std::string_view part = query.substr(pos, amp - pos);
    pos = amp + 1;
    if (part.empty() || cache::equalsIgnoreCase(part.substr(0, part.find('=')), "CMCD")) continue;
    out += first ? '?' : '&';
    out += part;
    first = false;
  }
  return out;
}

}  // namespace

const char* reasonPhrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

Exchange::Exchange(Worker& worker, Framing& framing, Viewer& viewer)
    : worker_(worker), framing_(framing), viewer_(viewer) {}

Exchange::~Exchange() {
  reset();
  if (hold_timer_) event_free(hold_timer_);
}

// --- Recv -----------------------------------------------------------------------------------

void Exchange::receive(const RequestHead& head, std::string_view raw, Clock::time_point started) {
  started_ = started;
  const char* const data = raw.data();
  const size_t head_len = raw.size();
  // Keep what the exchange needs; the framing's input buffer moves on.
  method_.assign(head.method);
  target_.assign(head.target);
  raw_path_.assign(head.path);
  query_.assign(head.query);
  host_.assign(head.host);
  // One pass over the fields for everything the exchange reads from them (the first line of
  // each, but every line of the list field Accept-Encoding, RFC 9110 §5.3).
  range_.clear();
  if_none_match_.clear();
  if_modified_since_.clear();
  if_range_.clear();
  accept_encoding_.reset();
  cookie_fields_.clear();
  bool have_range = false, have_inm = false, have_ims = false, have_if_range = false;
  origin_precondition_ = false;
  max_forwards_zero_ = false;
  has_peer_claim_ = false;
  peer_request_ = false;
  auto first = [](std::string& dst, bool& have, std::string_view value) {
    if (!have) dst.assign(value);
    have = true;
  };
  cmcd_ = streaming::CmcdData{};
  for (size_t i = 0; i < head.header_count; ++i) {
    const std::string_view name = head.headers[i].name;
    const std::string_view value = head.headers[i].value;
    using cache::equalsIgnoreCase;
    // CTA-5004 §2: CMCD-Request, CMCD-Object, CMCD-Status, CMCD-Session (an invalid one is
    // ignored, never an error for the viewer).
    if (name.size() > 5 && (name[0] == 'C' || name[0] == 'c') && streaming::isCmcdField(name)) {
      streaming::parseCmcdList(value, cmcd_);
    }
    switch (name.size()) {  // equal names have equal lengths: one compare at most per field
      case 5:
        if (equalsIgnoreCase(name, "Range")) first(range_, have_range, value);
        break;
      case 6:
        // Kept as places in the head (copied to raw_head_ below) for a token_auth route.
        if (equalsIgnoreCase(name, "Cookie") && value.data() >= data &&
            value.data() + value.size() <= data + head_len) {
          cookie_fields_.emplace_back(static_cast<uint32_t>(value.data() - data),
                                      static_cast<uint32_t>(value.size()));
        }
        break;
      case 12:
        if (equalsIgnoreCase(name, "Max-Forwards")) {
          uint64_t hops = 0;
          const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), hops);
          max_forwards_zero_ = ec == std::errc() && end == value.data() + value.size() && hops == 0;
        }
        break;
      case 8:
        if (equalsIgnoreCase(name, "If-Range")) {
          first(if_range_, have_if_range, value);
        } else if (equalsIgnoreCase(name, "If-Match")) {
          origin_precondition_ = true;
        }
        break;
      case 13:
        if (equalsIgnoreCase(name, "If-None-Match")) first(if_none_match_, have_inm, value);
        break;
      case 15:
        if (equalsIgnoreCase(name, "Accept-Encoding")) {
          parseAcceptEncoding(value, accept_encoding_);
        } else if (equalsIgnoreCase(name, "Streamedge-Peer") && !has_peer_claim_) {
          peer_claim_.assign(value);
          has_peer_claim_ = true;
        }
        break;
      case 17:
        if (equalsIgnoreCase(name, "If-Modified-Since")) first(if_modified_since_, have_ims, value);
        break;
      case 19:
        // RFC 9111 §4.3.2: If-Match and If-Unmodified-Since are the origin's to evaluate.
        if (equalsIgnoreCase(name, "If-Unmodified-Since")) origin_precondition_ = true;
        break;
      default:
        break;
    }
  }
  is_get_ = head.method == "GET";
  is_head_ = head.method == "HEAD";
  has_body_ = head.chunked || (head.content_length && *head.content_length > 0);
  chunked_body_ = head.chunked;
  request_body_length_ = head.content_length.value_or(0);
  expect_continue_ = head.expect_continue;
  // The head as received, for the fields a fill or pass forwards (parsed again only then): a
  // copy into reused capacity, no allocation per hit.
  raw_head_.assign(data, head_len);
}

void Exchange::run() {
  if (has_body_ && (is_get_ || is_head_)) {
    synth(400, "a GET or HEAD request must not carry a body", true);
    return;
  }
  if (chunked_body_) {
    synth(411, "chunked request bodies are not accepted; send Content-Length", true);
    return;
  }
  if (request_body_length_ > kMaxForwardedBody) {
    synth(413, "request body too large", true);
    return;
  }
  handleRequest();  // may finish the response and end the connection: nothing after it
}

void Exchange::reject(int status, const char* detail, Clock::time_point started) {
  started_ = started;
  synth(status, detail, true);
}

// --- Route, admit, Lookup -------------------------------------------------------------------

void Exchange::handleRequest() {
  config_ = worker_.config();
  phase_ = Phase::kWaiting;

  // The listener's settings as the current config has them (a reload may change them); null
  // once a reload removed it (the connection then only finishes what it has).
  const conf::ListenerConfig* listener = worker_.listenerConfig(viewer_.listener_id);
  if (!viewer_.tls && listener && listener->redirect_https) {
    return redirectToHttps(listener->https_port);
  }
  // Routing is on the normalised path, the one the key and the fill use: a dot segment or an
  // escape cannot take a request past a route (a token-protected prefix) to another one's
  // objects.
  if (!cache::normalizePath(raw_path_, path_)) {
    worker_.counters().add(worker_.counters().bad_requests);
    std::fprintf(stderr, "streamedge: 400 bad request: invalid path\n");
    return synth(400, "invalid request path", true);
  }
  if ((has_peer_claim_ || config_->cluster.enabled) && !admitPeer()) return;
  RouteMatch match = matchRoute(*config_, host_, path_);
  path_token_.clear();
  if (match.vhost && !match.vhost->token_path_segments.empty()) takePathToken(match);
  vhost_ = match.vhost;
  route_ = match.route;
  if (!vhost_) return synth(404, "no virtual host for this Host", false);
  if (!route_) return synth(404, "no route for this path", false);

  // Admit: before the key, the cache and the origin. A refused request touches neither.
  if (route_->token_auth.enabled && !peer_request_) {
    raw_query_ = query_;
    if (!admitToken()) return;
  }
  // LL-HLS delivery directives (_HLS_msn, _HLS_part, _HLS_skip) stay in the key in canonical
  // order (cache_key.h); values a server must refuse get 400 here, before the cache or the
  // origin sees them (rfc8216bis §6.2.5.2).
  if (query_.find("MCD=") != std::string::npos || query_.find("mcd=") != std::string::npos) {
    streaming::parseCmcdQuery(query_, cmcd_);
  }
  if (cmcd_.any) countCmcd();
  directives_.reset();
  if (query_.find("_HLS_") != std::string::npos &&
      cache::classifyPath(path_) == cache::ContentKind::kPlaylist) {
    const Result<streaming::DeliveryDirectives> directives =
        streaming::parseDeliveryDirectives(query_);
    if (!directives.isOk()) return synth(400, directives.status().detail(), false);
    if (directives->any()) directives_ = directives.value();
  }
  query_ = cache::filterQuery(query_, route_->key);
  key_ = cache::makeKey(vhost_->name, path_, query_);
  viewer_fields_.reset(route_ != nullptr);

  if (!is_get_ && !is_head_) {
    // TRACE would echo the viewer's fields (cookies, credentials) back into a page: never.
    if (!route_->cache.forward_other_methods || method_ == "TRACE") {
      return synth(405, "only GET and HEAD are served here", false);
    }
    // RFC 9110 §7.6.2: OPTIONS with Max-Forwards: 0 is for this hop to answer.
    if (method_ == "OPTIONS" && max_forwards_zero_) return synth(200, "", false);
    if (request_body_length_ > 0) {
      phase_ = Phase::kReadingBody;
      return framing_.readRequestBody(request_body_length_, expect_continue_);
    }
    return startPass();
  }
  // RFC 9111 §4.3.2: If-Match and If-Unmodified-Since are for the origin, which alone knows
  // the current representation; such a request goes there, as this viewer's own.
  if (route_->cache.mode == conf::CacheMode::kPass || origin_precondition_) return startPass();
  if (directives_ && directives_->blocking() && blockingReloadStep()) return;
  if (cmcd_.nor_len > 0 && route_->prefetch && !peer_request_) prefetchCmcdNext();
  if (route_->prefetch && !peer_request_ &&
      cache::classifyPath(path_) != cache::ContentKind::kPlaylist) {
    // A segment of a live MPD's representation: that representation is watched (prefetch.h).
    worker_.shared().prefetch.renditions().viewerRequest(vhost_->name, host_, path_,
                                                         std::chrono::steady_clock::now());
  }
  lookupStep();
}

// CTA-5004 nor: the player names the object it will ask for next, relative to this request's
// URL. Prefetched like a playlist's newest segment, on this vhost only (resolvePrefetchUri
// refuses another host). An nrr range alone names a range of this same object, which this
// request fills whole anyway: nothing to do for it.
void Exchange::prefetchCmcdNext() {
  streaming::PrefetchTarget target;
  if (!streaming::resolvePrefetchUri(cmcd_.nor(), path_, host_, target)) {
    worker_.shared().prefetch.count(PrefetchResult::kSkipped);
    return;
  }
  FieldList fields;
  forwardedFields(true, fields);
  startPrefetch(worker_, config_, *vhost_, *route_, host_, {std::move(target)}, 0, fields);
}

void Exchange::countCmcd() {
  WorkerCounters& c = worker_.counters();
  const size_t slot = c.vhostSlot(worker_.shared().vhost_slots, config_, vhost_);
  c.add(c.cmcd_requests[slot]);
  if (cmcd_.bs) c.add(c.cmcd_starvation[slot]);
  if (cmcd_.br_kbps) {
    const uint64_t br = *cmcd_.br_kbps;
    const auto& bounds = metrics::kCmcdBitrateBoundsKbps;
    const size_t bucket = static_cast<size_t>(std::lower_bound(bounds.begin(), bounds.end(), br) - bounds.begin());
    c.add(c.cmcd_bitrate[slot][bucket]);
    c.add(c.cmcd_bitrate_sum_kbps[slot], br);
  }
}

cache::CacheKey Exchange::playlistUrlKey() const {
  return cache::makeKey(vhost_->name, path_, withoutDeliveryDirectives(query_));
}

bool Exchange::blockingReloadStep() {
  const std::optional<LivePlaylists::Entry> newest =
      worker_.shared().live_playlists.find(playlistUrlKey());
  if (!newest) return false;  // nothing known of this stream yet: the origin decides
  const streaming::BlockingDecision decision =
      streaming::decideBlockingReload(newest->summary, *directives_);
  const WallTime now = SystemClock::instance().wallNow();
  switch (decision.action) {
    case streaming::BlockingAction::kAnswerNow: {
      // rfc8216bis §6.2.5.2: a playlist that has the asked segment or part answers the request
      // at once. Only while that stored copy is still there, the same object, and fresh.
      cache::ObjectRef object = worker_.shared().cache.peekFresh(
          newest->object_key, {vhost_->retention, vhost_->name});
      if (!object || object.get() != newest->object ||
          object->freshness().response_time != newest->response_time || !object->shareable()) {
        return false;
      }
      result_ = CacheResult::kHit;
      from_newer_playlist_ = true;
      worker_.counters().add(worker_.counters().ll_hls_answered_from_cache);
      object_ = std::move(object);
      deliverHead();
      return true;
    }
    case streaming::BlockingAction::kBadRequest: {
      // Only against a playlist no older than a target duration: one that is older may be
      // behind the stream by more than the allowance (the origin then decides).
      const auto target = std::chrono::seconds(
          std::clamp<uint64_t>(newest->summary.target_duration_s, 1, 3600));
      if (now - newest->response_time > target) return false;
      worker_.counters().add(worker_.counters().ll_hls_too_far_ahead);
      synth(400, "LL-HLS blocking reload too far ahead of the stream", false);
      return true;
    }
    case streaming::BlockingAction::kHold:
      hold_limit_ = decision.hold_limit;
      return false;
  }
  return false;
}

void Exchange::armHoldTimer() {
  if (hold_limit_.count() <= 0) return;
  if (!hold_timer_) hold_timer_ = evtimer_new(worker_.base(), &Exchange::holdTimerCb, this);
  if (!hold_timer_ || evtimer_pending(hold_timer_, nullptr)) return;
  // From the request's start: a lookup again (Vary) does not extend it.
  const auto left = std::max<Millis>(
      Millis(1), hold_limit_ - std::chrono::duration_cast<Millis>(Clock::now() - started_));
  const timeval tv{static_cast<time_t>(left.count() / 1000),
                   static_cast<suseconds_t>((left.count() % 1000) * 1000)};
  evtimer_add(hold_timer_, &tv);
}

void Exchange::cancelHoldTimer() {
  if (hold_timer_) evtimer_del(hold_timer_);
}

void Exchange::holdTimerCb(evutil_socket_t, short, void* arg) {
  static_cast<Exchange*>(arg)->onHoldExpired();
}

void Exchange::onHoldExpired() {
  if (phase_ != Phase::kWaiting || hold_limit_.count() <= 0) return;
  // rfc8216bis §6.2.5.2: a blocking request not answerable within three target durations gets
  // 503. The fill goes on for the viewers still waiting and the next ones.
  worker_.counters().add(worker_.counters().ll_hls_holds_expired);
  synth(503, "the LL-HLS segment or part asked for did not appear in time", false);
}

void Exchange::onRequestBody() {
  request_body_.resize(request_body_length_);  // the framing filled what it read
  startPass();
}

void Exchange::takePathToken(RouteMatch& match) {
  for (const std::string& segment : match.vhost->token_path_segments) {
    std::string_view token, rest;
    if (!splitPathToken(path_, segment, token, rest)) continue;
    const RouteMatch inner = matchRoute(*config_, host_, rest);
    if (!inner.route) continue;
    const conf::TokenAuthConfig& auth = inner.route->token_auth;
    if (!auth.enabled || auth.path_segment != segment ||
        std::find(auth.accept.begin(), auth.accept.end(), conf::TokenSource::kPath) ==
            auth.accept.end()) {
      continue;
    }
    // The rest is the path from here on (key, fill, log); relative URIs in a playlist served
    // under /t/<token>/ resolve under it, so the viewer's segment requests carry it too.
    path_token_.assign(token);
    path_.erase(0, static_cast<size_t>(rest.data() - path_.data()));
    match = inner;
    return;
  }
}

bool Exchange::admitToken() {
  const conf::TokenAuthConfig& auth = route_->token_auth;
  std::string_view token;
  const char* source = "-";
  bool malformed = false;
  for (const conf::TokenSource s : auth.accept) {
    switch (s) {
      case conf::TokenSource::kQuery: {
        const int found = queryToken(raw_query_, auth.query_param, token_value_);
        if (found != 0) {
          source = "query";
          malformed = found < 0;
          token = token_value_;
        }
        break;
      }
      case conf::TokenSource::kCookie: {
        int found = 0;
        for (const auto& [offset, length] : cookie_fields_) {
          if (static_cast<size_t>(offset) + length > raw_head_.size()) continue;
          std::string_view value;
          const int r = cookieToken(std::string_view(raw_head_).substr(offset, length),
                                    auth.cookie, value);
          if (r < 0) found = 2;
          if (r > 0) {
            found += 1;
            token = value;
          }
        }
        if (found != 0) {
          source = "cookie";
          malformed = found > 1;  // two cookies of that name: which one is meant?
        }
        break;
      }
      case conf::TokenSource::kPath:
        if (!path_token_.empty()) {
          source = "path";
          token = path_token_;
        }
        break;
    }
    if (source[0] != '-') break;
  }
  TokenCheck check;
  check.path = path_;
  check.client = viewer_.address();
  check.now_unix = std::chrono::duration_cast<std::chrono::seconds>(
                       SystemClock::instance().wallNow().time_since_epoch())
                       .count();
  std::string_view key_id;
  const TokenVerdict verdict =
      malformed ? TokenVerdict::kMalformed
                : verifyToken(token, auth, check, token_scratch_, &key_id);
  if (verdict == TokenVerdict::kOk) return true;

  WorkerCounters& c = worker_.counters();
  const size_t slot = c.vhostSlot(worker_.shared().vhost_slots, config_, vhost_);
  c.add(c.token_rejections[slot][static_cast<size_t>(verdict)]);
  AccessLog& security = worker_.shared().security_log;
  if (security.enabled()) {
    const conf::AddressAnonymization mode = config_->log.client_address;
    if (viewer_.log_client_mode != mode) {
      anonymizeAddress(reinterpret_cast<const sockaddr*>(&viewer_.addr), mode, viewer_.log_client);
      viewer_.log_client_mode = mode;
    }
    SecurityEvent e;
    e.time_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    e.event = "token_rejected";
    e.reason = tokenVerdictName(verdict);
    e.vhost = vhost_->name;
    e.client = viewer_.log_client;
    e.method = method_;
    e.path = path_;
    e.source = source;
    e.key_id = key_id;
    std::string line;
    formatSecurityLogLine(e, line);
    security.append(line);
  }
  // No detail for the viewer: the reason is in the security log and the metric.
  synth(403, "forbidden", false);
  return false;
}

void Exchange::lookupStep() {
  const bool ssd_allowed = route_->storage == conf::StoragePolicy::kRamAndSsd;
  cache::LookupResult r = worker_.shared().cache.lookup(key_, ssd_allowed, &viewer_fields_,
                                                        {vhost_->retention, vhost_->name});
  vary_names_ = std::move(r.vary);
  using Kind = cache::LookupResult::Kind;
  if (r.kind == Kind::kHit || r.kind == Kind::kBusy) {
    // Served from a prefetch (stored or still filling): counted used the first time.
    worker_.shared().prefetch.viewerAsked(key_);
  }
  switch (r.kind) {
    case Kind::kHit:
      result_ = CacheResult::kHit;
      object_ = std::move(r.object);
      return deliverHead();
    case Kind::kStale: {
      stale_ = r.object;
      const WallTime now = SystemClock::instance().wallNow();
      if (stale_->freshness().withinStaleWhileRevalidate(now)) {
        if (r.fill) startFill(std::move(r.fill), false);  // background revalidation
        result_ = CacheResult::kStale;
        object_ = stale_;
        return deliverHead();
      }
      if (r.fill) {
        own_fill_ = true;
        result_ = CacheResult::kMiss;
        cache::ObjectRef pending = r.fill.object();
        startFill(std::move(r.fill), false);
        return waitOn(std::move(pending));
      }
      result_ = CacheResult::kCoalesced;
      return waitOn(std::move(r.pending));
    }
    case Kind::kMiss: {
      if (!missAllowed()) return;  // the fill is given up: followers fetch for themselves
      own_fill_ = true;
      result_ = CacheResult::kMiss;
      cache::ObjectRef object = r.fill.object();
      startFill(std::move(r.fill), false);
      return waitOn(std::move(object));
    }
    case Kind::kSsd: {
      // Our fill, completed from the SSD copy (viewers arriving meanwhile coalesce on it); if
      // the copy is gone or damaged the same fill goes to the origin.
      own_fill_ = true;
      ssd_read_ = true;
      result_ = CacheResult::kHit;
      cache::ObjectRef object = r.fill.object();
      readFromSsd(std::move(r.fill));
      return waitOn(std::move(object));
    }
    case Kind::kBusy:
      result_ = CacheResult::kCoalesced;
      return waitOn(std::move(r.object));
    case Kind::kPass:
      result_ = CacheResult::kMiss;  // the response was found uncacheable a moment ago
      return startPass();
  }
}

void Exchange::readFromSsd(cache::FillWriter fill) {
  cache::IoEngine* engine = worker_.ssdEngine();
  if (!engine) return startFill(std::move(fill), false);
  // The miss path outlives this connection (the viewer may leave): it holds what it needs.
  Worker* worker = &worker_;
  conf::ConfigPtr config = config_;
  const conf::RouteConfig* route = route_;
  auto request = std::make_shared<FillRequest>(makeFillRequest(false));
  worker_.shared().cache.readFromSsd(
      std::move(fill), *engine, [worker, config, route, request](cache::FillWriter f) {
        FillJob::start(*worker, config, *route, std::move(f), std::move(*request));
      });
}

void Exchange::startFill(cache::FillWriter fill, bool pass) {
  FillJob::start(worker_, config_, *route_, std::move(fill), makeFillRequest(pass));
}

FillRequest Exchange::makeFillRequest(bool pass) {
  FillRequest request;
  request.pass = pass;
  request.from_peer = peer_request_;
  request.host = host_;
  if (pass) {
    request.method = is_head_ ? "GET" : method_;  // HEAD: fetch and send the head only
    request.target = target_;
    if (route_->token_auth.enabled) {
      // The token was for this edge: the origin gets the path without the token segment and
      // the query without the token parameter (every other parameter as sent).
      request.target = path_;
      const std::string query = removeQueryParam(raw_query_, route_->token_auth.query_param);
      if (!query.empty()) {
        request.target += '?';
        request.target += query;
      }
    }
    if (!route_->fields.forward_cmcd) request.target = withoutCmcdParam(request.target);
    request.body = std::move(request_body_);
  } else {
    // Fills carry the normalised path and only the kept query parameters: the origin never
    // sees one viewer's token or session id, and the object is right for every viewer.
    request.target = path_;
    request.vhost = vhost_->name;  // purge labels (cache/purge_labels.h)
    // A full playlist (not a delta update) may answer later blocking reloads of its URL.
    if ((!directives_ || directives_->skip == streaming::DeliveryDirectives::Skip::kNone) &&
        cache::classifyPath(path_) == cache::ContentKind::kPlaylist) {
      request.live_playlist_url = directives_ ? playlistUrlKey() : key_;
      // Never on a peer's request: the edge that a viewer asked prefetches for its viewers.
      request.prefetch_from_playlist = route_->prefetch && !peer_request_;
    }
    request.path = path_;
    if (!query_.empty()) {
      request.target += '?';
      request.target += query_;
    }
  }
  request.request_has_authorization = forwardedFields(!pass, request.forward_headers).authorization;
  if (route_->token_auth.enabled &&
      std::find(route_->token_auth.accept.begin(), route_->token_auth.accept.end(),
                conf::TokenSource::kCookie) != route_->token_auth.accept.end()) {
    // Nor does the origin get the token cookie (the viewer's other cookies go as the route
    // says).
    for (auto& [name, value] : request.forward_headers) {
      if (cache::equalsIgnoreCase(name, "Cookie")) value = removeCookie(value, route_->token_auth.cookie);
    }
    std::erase_if(request.forward_headers, [](const auto& f) {
      return cache::equalsIgnoreCase(f.first, "Cookie") && f.second.empty();
    });
  }
  if (!pass) {
    // Vary: the origin gets the normalised values of the fields variants are chosen by, so the
    // stored answer suits every request of its variant (after the route's field policy chose
    // the rest).
    cache::setVaryFields(request.forward_headers, viewer_fields_.fieldLines(), vary_names_.get());
    // ...but never one the route keeps from the origin (privacy wins; such a field is absent
    // for variant selection too, see ViewerFields).
    FieldContext shared;
    std::erase_if(request.forward_headers, [&](const auto& f) {
      return cache::isVarySetField(f.first, vary_names_.get()) &&
             !fieldForwarded(f.first, *route_, shared);
    });
  }
  if (!isSafeMethod(method_)) request.invalidate = invalidationScope();
  return request;
}

ForwardedFields Exchange::forwardedFields(bool shared_fill, FieldList& out) const {
  // Parsed again from the kept head (it passed the same parser before): only fills and passes
  // pay for the field list, never hits.
  RequestLimits limits;
  limits.max_head_bytes = raw_head_.size();
  limits.max_uri_bytes = raw_head_.size();
  RequestHead head;
  ParseError err;
  if (!parseRequestHead(raw_head_, limits, head, err)) return {};
  FieldContext context;
  context.method = method_;
  context.shared_fill = shared_fill;
  context.client = viewer_.address();
  return selectRequestFields(head.headers, head.header_count, *route_, context, out);
}

InvalidationScope Exchange::invalidationScope() const {
  InvalidationScope scope;
  scope.scheme = viewer_.tls ? "https" : "http";
  scope.host = host_;
  scope.path = path_;
  const size_t q = target_.find('?');
  if (q != std::string::npos) scope.query = target_.substr(q + 1);
  scope.target = key_;
  return scope;
}

bool Exchange::missAllowed() {
  if (peer_request_) return true;  // the peer's own viewers were counted there
  const conf::OriginGroupConfig& group = config_->origin_groups[route_->origin_group_index];
  if (group.client_miss_rate <= 0 || !viewer_.address()) return true;
  if (worker_.shared().client_misses.take(group.name, viewer_.address(),
                                          group.client_miss_rate, group.client_miss_burst)) {
    return true;
  }
  synth(429, "too many requests that miss the cache from this client; try again shortly", false);
  return false;
}

void Exchange::startPass() {
  if (!missAllowed()) return;
  passed_ = true;
  own_fill_ = true;
  if (result_ == CacheResult::kNone || result_ == CacheResult::kCoalesced) {
    result_ = (route_ && route_->cache.mode == conf::CacheMode::kPass) || (!is_get_ && !is_head_)
                  ? CacheResult::kPass
                  : CacheResult::kMiss;
  }
  if (result_ == CacheResult::kHit) result_ = CacheResult::kMiss;
  cache::FillWriter fill = worker_.shared().cache.privateFill(key_);
  cache::ObjectRef object = fill.object();
  startFill(std::move(fill), true);
  waitOn(std::move(object));
}

void Exchange::waitOn(cache::ObjectRef object) {
  phase_ = Phase::kWaiting;
  object_ = std::move(object);
  object_->subscribe(this);
  subscribed_ = true;
  armHoldTimer();
  onObjectProgress();  // subscribe, then look: no lost wake-up
}

void Exchange::onObjectChanged() noexcept {
  if (!wake_pending_.exchange(true, std::memory_order_acq_rel)) worker_.wake(viewer_.connection_id);
}

void Exchange::onWake() {
  wake_pending_.store(false, std::memory_order_release);
  if (object_ && (phase_ == Phase::kWaiting || phase_ == Phase::kSending)) onObjectProgress();
}

void Exchange::onObjectProgress() {
  using State = cache::CacheObject::State;
  const State st = object_->state();
  if (subscribed_ && object_->readerCut(this)) {
    // This viewer held a shared fill's full window while others waited (fill_stall_timeout).
    std::fprintf(stderr, "streamedge: viewer too slow for a shared fill that is not kept; "
                 "closing its connection\n");
    return framing_.abort();
  }
  if (phase_ == Phase::kWaiting) {
    if (st == State::kPending) return;
    if (st == State::kAborted && !object_->headPublished()) {
      const bool timed_out = object_->abortedByTimeout();
      const WallTime now = SystemClock::instance().wallNow();
      if (stale_ && stale_->freshness().withinStaleIfError(now) &&
          !cache::pastRetention(stale_->freshness().response_time, vhost_->retention, now)) {
        // RFC 5861 §4: the origin failed; the stale copy answers.
        object_->unsubscribe(this);
        subscribed_ = false;
        object_ = stale_;
        result_ = CacheResult::kStale;
        return deliverHead();
      }
      if (object_->abortedBusy()) {
        // Origin protection: the origin is at its concurrency cap and the wait overflowed or
        // timed out. Not an origin failure; the viewer may try again shortly.
        return synth(503, "the origin is busy (too many requests in flight); try again shortly",
                     false);
      }
      return synth(timed_out ? 504 : 502,
                   timed_out ? "the origin did not answer in time" : "the origin failed", false);
    }
    if (st == State::kAborted && !own_fill_ && object_->windowed()) {
      // Another viewer's answer that is not kept, stopped (its readers left just before we
      // joined, or it broke): nothing was sent yet, so fetch our own.
      object_->unsubscribe(this);
      subscribed_ = false;
      object_.reset();
      return startPass();
    }
    if (st == State::kAborted) {
      // Aborted after its head: nothing trustworthy to send.
      return synth(502, "the origin response broke off", false);
    }
    // The SSD copy was gone, damaged or revalidated and the origin filled (or refreshed) the
    // object instead: a miss. Still stale: the origin failed and stale-if-error answers.
    if (ssd_read_ && !object_->fromSsd()) result_ = CacheResult::kMiss;
    if (ssd_read_ && object_->fromSsd() && object_->isComplete() &&
        !object_->freshness().isFresh(SystemClock::instance().wallNow())) {
      result_ = CacheResult::kStale;
    }
    if (joinedAnotherVariant()) return lookupAgain();
    if (!own_fill_ && !is_head_ && object_->body().releasedBytes() > 0) {
      // An answer that is not kept, already streamed past its start to other viewers: fetch
      // our own (its first bytes are gone).
      object_->unsubscribe(this);
      subscribed_ = false;
      object_.reset();
      return startPass();
    }
    if (!object_->shareable() && !own_fill_) {
      // Someone else's private answer: fetch our own (never another viewer's response).
      object_->unsubscribe(this);
      subscribed_ = false;
      object_.reset();
      if (passed_) return synth(502, "origin response not shareable", false);
      return startPass();
    }
    if (awaitWholeForEncoding()) return;  // woken again as it fills
    return deliverHead();
  }
  if (phase_ == Phase::kSending) pump();
}

// Vary (RFC 9111 §4.1): a viewer that joined a fill before its answer was known must not read
// it when the answer varies and the fill turned out to be another request's variant (the cache
// moved it to the key of the variant the filler's request selects).
bool Exchange::joinedAnotherVariant() const {
  if (own_fill_ || !object_->headPublished()) return false;
  const cache::VarySpec vary = cache::varyOf(object_->head());
  // "*" (kAny) makes the answer not shareable: handled as any private answer.
  if (vary.kind != cache::VarySpec::Kind::kFields) return false;
  return cache::variantKey(key_, vary.names, viewer_fields_) != object_->key();
}

// Looks up again, now under this viewer's variant; a second mismatch fetches for itself.
void Exchange::lookupAgain() {
  object_->unsubscribe(this);
  subscribed_ = false;
  object_.reset();
  stale_.reset();
  if (vary_retried_) return startPass();
  vary_retried_ = true;
  lookupStep();
}

std::span<const cache::FieldLine> Exchange::ViewerFields::fieldLines() const {
  if (!parsed_) {
    parsed_ = true;
    fields_.clear();
    lines_.clear();
    // Only varying URLs ask, so only they pay for the list.
    if (routed_) owner_.forwardedFields(true, fields_);
    for (const auto& [name, value] : fields_) lines_.push_back({name, value});
  }
  return lines_;
}

// --- Deliver --------------------------------------------------------------------------------

void Exchange::appendHsts() {
  // RFC 6797 §7.2: only over secure transport; a plain-HTTP STS header is ignored anyway.
  if (viewer_.tls && vhost_ && !vhost_->hsts.empty()) {
    out_ += "Strict-Transport-Security: ";
    out_ += vhost_->hsts;
    out_ += "\r\n";
  }
}

// 301 to the same host and target on the HTTPS port (RFC 9110 §15.4.2). The Host header was
// checked by the parser; its port, if any, is replaced.
void Exchange::redirectToHttps(uint16_t https_port) {
  std::string_view host = host_;
  if (host.empty()) return synth(400, "a Host header is required", true);
  const size_t bracket = host.rfind(']');
  const size_t colon = host.rfind(':');
  if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
    host = host.substr(0, colon);
  }
  const uint16_t port = https_port;
  status_ = 301;
  out_.clear();
  out_ += "Location: https://";
  out_ += host;
  if (port != 443) {
    out_ += ':';
    appendUint(out_, port);
  }
  out_ += target_.empty() || target_.front() != '/' ? std::string_view("/") : std::string_view(target_);
  out_ += "\r\nContent-Length: 0\r\nCache-Control: max-age=3600\r\nVia: 1.1 streamedge\r\n"
          "Cache-Status: streamedge\r\n";
  ResponseOut response;
  response.status = 301;
  response.reason = reasonPhrase(301);
  response.synthesized = true;
  writeHead(response);
  finishBody();
}

void Exchange::writeHead(ResponseOut& head) {
  if (head.fields.empty()) head.fields = out_;
  framing_.sendHead(head);
  ttfb_ms_ = std::chrono::duration<double, std::milli>(Clock::now() - started_).count();
}

void Exchange::appendDeliveryFields(bool synthesized) {
  appendHsts();
  out_ += "Via: 1.1 streamedge\r\nX-Cache: ";
  out_ += cacheResultName(result_);
  out_ += "\r\n";
  appendCacheStatus(synthesized);
  // CMSD (CTA-5006) when the vhost asks: about this object and this viewer's connection.
  if (!synthesized && vhost_ && vhost_->cmsd) appendCmsdFields(path_, framing_.socketFd(), out_);
}

// RFC 9211, from what this exchange did; the wording lives in proxy/cache_status.cc.
void Exchange::appendCacheStatus(bool synthesized) {
  CacheStatusFacts facts;
  facts.result = result_;
  facts.pass_route = route_ && route_->cache.mode == conf::CacheMode::kPass;
  facts.other_method = !is_get_ && !is_head_;
  facts.stale_found = static_cast<bool>(stale_);
  facts.synthesized = synthesized;
  // The URL has stored answers that vary (its marker selected a variant) and this one missed.
  facts.vary_miss = vary_names_ != nullptr && result_ == CacheResult::kMiss;
  // A blocking reload answered by a newer stored playlist than its own key holds.
  if (from_newer_playlist_) facts.detail = "ll-hls-newer-playlist";
  if (!synthesized && object_ && object_->headPublished()) {
    facts.origin_status = object_->head().status;
    facts.not_modified = object_->notModified();
    facts.stored = object_->storing();
    const cache::Freshness& freshness = object_->freshness();
    // The lifetime is final once complete; until then the one the head was published with.
    const conf::Seconds lifetime =
        object_->isComplete() ? freshness.lifetime : object_->headLifetime();
    int64_t ttl = (lifetime - freshness.currentAge(SystemClock::instance().wallNow())).count();
    if (freshness.no_cache) ttl = std::min<int64_t>(ttl, 0);  // never fresh without revalidation
    facts.ttl_seconds = ttl;
  }
  appendCacheStatusField(out_, kCacheStatusName, describeCacheStatus(facts));
}

void Exchange::deliverHead() {
  cancelHoldTimer();
  chooseRepresentation();
  const cache::ResponseHead& head = rep_ ? *rep_->head : object_->head();
  const cache::Freshness& freshness = object_->freshness();
  const bool complete = object_->isComplete();
  std::optional<uint64_t> total = rep_ ? rep_->head->content_length : object_->expectedLength();
  if (!total && complete) total = object_->body().length();

  out_.clear();
  body_.pos = 0;
  body_.end = total ? *total : kUnknownEnd;
  status_ = head.status;
  ResponseOut response;
  bool send_body = !is_head_;

  // Conditionals and Range are answered here from the whole 200, also for a forwarded GET or
  // HEAD (they were not forwarded); never for other methods.
  if (head.status == 200 && (is_get_ || is_head_)) {
    const std::string* etag = head.find("ETag");
    const std::string* last_modified = head.find("Last-Modified");
    // RFC 9110 §13.2.2: If-None-Match first; If-Modified-Since only without it.
    bool not_modified = false;
    if (!if_none_match_.empty()) {
      not_modified = etag && ifNoneMatchMatches(if_none_match_, *etag);
    } else if (!if_modified_since_.empty() && last_modified) {
      not_modified = notModifiedSince(if_modified_since_, *last_modified);
    }
    if (not_modified) {
      status_ = 304;
      for (const auto& [name, value] : head.headers) {
        // §15.4.5: the fields a 200 would have carried that describe the representation.
        for (std::string_view keep : {"ETag", "Cache-Control", "Expires", "Last-Modified",
                                      "Date", "Vary", "Content-Location"}) {
          if (cache::equalsIgnoreCase(name, keep)) {
            out_ += name;
            out_ += ": ";
            out_ += value;
            out_ += "\r\n";
          }
        }
      }
      if (vary_accept_encoding_) out_ += "Vary: Accept-Encoding\r\n";
      out_ += "Age: ";
      appendUint(out_, static_cast<uint64_t>(freshness.currentAge(SystemClock::instance().wallNow()).count()));
      out_ += "\r\n";
      appendDeliveryFields();
      response.status = 304;
      response.reason = reasonPhrase(304);
      writeHead(response);
      return finishBody();
    }
    if (!range_.empty() && total &&
        (if_range_.empty() || ifRangeAllows(if_range_, etag ? *etag : std::string_view(),
                                            last_modified ? *last_modified : std::string_view()))) {
      RangeSpec spec = parseRange(range_, *total);
      if (spec.kind == RangeSpec::Kind::kUnsatisfiable) {
        status_ = 416;
        out_ += "Content-Range: bytes */";
        appendUint(out_, *total);
        out_ += "\r\nContent-Length: 0\r\n";
        appendDeliveryFields();
        response.status = 416;
        response.reason = reasonPhrase(416);
        writeHead(response);
        return finishBody();
      }
      if (spec.kind == RangeSpec::Kind::kSingle) {
        status_ = 206;
        out_ += head.wire;
        out_ += "Content-Range: bytes ";
        appendUint(out_, spec.first);
        out_ += '-';
        appendUint(out_, spec.last);
        out_ += '/';
        appendUint(out_, *total);
        out_ += "\r\nContent-Length: ";
        appendUint(out_, spec.last - spec.first + 1);
        if (vary_accept_encoding_) out_ += "\r\nVary: Accept-Encoding";
        out_ += "\r\nAge: ";
        appendUint(out_, static_cast<uint64_t>(freshness.currentAge(SystemClock::instance().wallNow()).count()));
        out_ += "\r\n";
        appendDeliveryFields();
        body_.pos = spec.first;
        body_.end = spec.last + 1;
        response.status = 206;
        response.reason = reasonPhrase(206);
        return sendHeadAndBody(response, send_body, complete);
      }
    }
  }

  response.status = head.status;
  response.reason = head.reason;
  out_ += head.wire;
  if (head.status == 204 || head.status == 304 || head.status < 200) {
    send_body = false;
    body_.end = 0;
  } else if (total) {
    out_ += "Content-Length: ";
    appendUint(out_, *total);
    out_ += "\r\n";
    // Ranges address the identity bytes (a Range request is answered from them): not
    // advertised on an encoded answer.
    if (head.status == 200 && !rep_) out_ += "Accept-Ranges: bytes\r\n";
  } else {
    response.length_known = false;  // the framing delimits the body
  }
  if (vary_accept_encoding_) out_ += "Vary: Accept-Encoding\r\n";
  out_ += "Age: ";
  appendUint(out_, static_cast<uint64_t>(freshness.currentAge(SystemClock::instance().wallNow()).count()));
  out_ += "\r\n";
  appendDeliveryFields();
  if (rep_ && send_body) countEncodedAnswer();
  sendHeadAndBody(response, send_body, complete);
}

void Exchange::countEncodedAnswer() {
  WorkerCounters& c = worker_.counters();
  const size_t slot = codingSlot(rep_coding_);
  c.add(c.compressed_responses[slot]);
  const uint64_t identity = object_->body().length();
  const uint64_t encoded = rep_->body->length();
  if (identity > encoded) c.add(c.compression_saved_bytes[slot], identity - encoded);
}

bool Exchange::awaitWholeForEncoding() {
  if (!route_ || route_->compress.codings.empty() || object_->isComplete()) return false;
  const cache::Body& body = object_->body();
  if (body.releasedBytes() > 0) return false;
  const std::optional<uint64_t> expected = object_->expectedLength();
  const EncodingChoice choice = chooseEncoding(route_->compress, object_->head(), expected,
                                               is_get_ || is_head_, !range_.empty(),
                                               accept_encoding_);
  if (!choice.coding) return false;
  // Wait while it may still be encoded: an answer of unknown length may grow past the route's
  // limit (then it streams as it is). An answer that is not kept holds its bytes for this
  // viewer from the start: wait only while that stays below the smallest fill window, so the
  // origin is never paused on our account.
  uint64_t limit = route_->compress.max_size;
  if (object_->windowed()) limit = std::min<uint64_t>(limit, 2 * cache::Body::kBlockBytes - 1);
  return expected.value_or(body.length()) <= limit;
}

void Exchange::chooseRepresentation() {
  rep_ = nullptr;
  vary_accept_encoding_ = false;
  if (!route_ || route_->compress.codings.empty()) return;
  const bool complete = object_->isComplete();
  std::optional<uint64_t> length = object_->expectedLength();
  if (!length && complete) length = object_->body().length();
  uint8_t facts = object_->deliveryFacts();
  if (facts == 0) {
    facts = compressionFacts(object_->head());
    object_->setDeliveryFacts(facts);
  }
  const EncodingChoice choice = chooseEncoding(route_->compress, facts, length,
                                               is_get_ || is_head_, !range_.empty(),
                                               accept_encoding_);
  vary_accept_encoding_ = choice.vary;
  if (!choice.coding || !complete || object_->body().releasedBytes() > 0) return;
  // Made once per object and coding, by the first viewer who needs it (on its worker; a
  // viewer on another worker racing it makes its own and drops it), then shared by reference.
  const size_t slot = codingSlot(*choice.coding);
  const cache::DerivedRepresentation* rep = object_->derived(slot);
  if (!rep) {
    const auto start = Clock::now();
    std::unique_ptr<cache::DerivedRepresentation> made =
        encodeRepresentation(*object_, *choice.coding);
    WorkerCounters& c = worker_.counters();
    c.add(c.compression_encodings[slot]);
    c.add(c.compression_encode_ns[slot],
          static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    Clock::now() - start).count()));
    rep = worker_.shared().cache.attachDerived(object_, slot, std::move(made));
  }
  if (!rep || !rep->head) return;  // not worth it for this object: identity
  rep_ = rep;
  rep_coding_ = *choice.coding;
  if (subscribed_) {  // a complete object: the encoded answer needs no wake-ups
    object_->unsubscribe(this);
    subscribed_ = false;
  }
}

void Exchange::sendHeadAndBody(ResponseOut& head, bool send_body, bool complete) {
  head.body_follows = send_body && body_.pos < body_.end;
  writeHead(head);
  if (!head.body_follows) {
    unsubscribe();
    return finishBody();
  }
  phase_ = Phase::kSending;
  body_start_ = body_.pos;
  body_started_ = true;
  if (!subscribed_ && !complete) {
    object_->subscribe(this, body_.pos);
    subscribed_ = true;
  }
  pump();
}

void Exchange::pump() {
  using State = cache::CacheObject::State;
  const State st = object_->state();  // before reading the length: a complete length is final
  cache::Body& body = rep_ ? *rep_->body : object_->body();
  // A body of unknown length ends where the complete object does.
  if (st == State::kComplete && body_.end == kUnknownEnd) body_.end = body.length();
  body_.body = &body;
  const bool windowed = object_->windowed();
  framing_.sendBody(body_, windowed ? kWindowedOutputBytes : 0);
  // The window may move on past what this viewer has queued.
  if (windowed && subscribed_) object_->advance(this, body_.pos);
  if (body_.pos >= body_.end) {
    unsubscribe();
    return finishBody();
  }
  if (st == State::kAborted) {
    // The fill broke off: the viewer sees a truncated body, never a short one presented as
    // whole.
    std::fprintf(stderr, "streamedge: fill aborted mid-body; closing the viewer connection\n");
    return framing_.abort();
  }
  if (st == State::kComplete && body_.pos >= body.length()) {
    // Complete but shorter than its framing: cannot happen (the fill would have aborted).
    // (A windowed answer whose viewer output is full just waits for onWritable, complete or
    // not.)
    return framing_.abort();
  }
}

void Exchange::onWritable() {
  if (phase_ == Phase::kSending && object_) pump();
}

void Exchange::finishBody() {
  phase_ = Phase::kFlushing;
  framing_.endResponse();  // may call onResponseSent() and end the connection
}

// --- Synth ----------------------------------------------------------------------------------

void Exchange::synth(int status, const char* detail, bool close) {
  cancelHoldTimer();
  unsubscribe();
  status_ = status;
  out_.clear();
  std::string_view body = detail;
  out_ += "Content-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\n";
  if (status == 503 || status == 429) out_ += "Retry-After: 1\r\n";  // RFC 9110 §10.2.3
  if (status == 405 || (status == 200 && method_ == "OPTIONS")) {
    out_ += route_ && route_->cache.forward_other_methods
                ? "Allow: GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE\r\n"
                : "Allow: GET, HEAD\r\n";
  }
  out_ += "Content-Length: ";
  appendUint(out_, body.size() + 1);
  out_ += "\r\n";
  if (result_ == CacheResult::kNone) {
    out_ += "Via: 1.1 streamedge\r\nCache-Status: streamedge\r\n";
  } else {
    appendDeliveryFields(/*synthesized=*/true);
  }
  ResponseOut response;
  response.status = status;
  response.reason = reasonPhrase(status);
  response.synthesized = true;
  response.close = close;
  const size_t fields_end = out_.size();
  if (!is_head_) {
    out_ += body;
    out_ += '\n';
  }
  // One buffer for both (no allocation): the fields, then the body.
  response.fields = std::string_view(out_).substr(0, fields_end);
  response.inline_body = std::string_view(out_).substr(fields_end);
  writeHead(response);
  finishBody();
}

// --- Log ------------------------------------------------------------------------------------

void Exchange::onResponseSent() {
  logExchange();
  reset();
}

void Exchange::logExchange() {
  // Account: per-worker cells only (DESIGN.md "Threads"), summed at scrape time.
  const auto duration = Clock::now() - started_;
  const uint64_t bytes_sent = body_started_ ? body_.pos - body_start_ : 0;
  WorkerCounters& c = worker_.counters();
  const size_t vhost_slot = c.vhostSlot(worker_.shared().vhost_slots, config_, vhost_);
  const size_t result = static_cast<size_t>(result_);
  const size_t status_class = status_ >= 100 && status_ < 600 ? static_cast<size_t>(status_ / 100) : 0;
  c.add(c.requests[viewer_.http2 ? 1 : 0][vhost_slot][result][status_class]);
  c.add(c.response_bytes[vhost_slot], bytes_sent);
  c.duration[result].observe(duration);
  c.ttfb[result].observe(std::chrono::nanoseconds(static_cast<int64_t>(ttfb_ms_ * 1e6)));

  if (worker_.shared().access_log.enabled()) {
    AccessLogEntry e;
    e.time_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    const conf::AddressAnonymization mode =
        config_ ? config_->log.client_address : worker_.config()->log.client_address;
    if (viewer_.log_client_mode != mode) {
      anonymizeAddress(reinterpret_cast<const sockaddr*>(&viewer_.addr), mode, viewer_.log_client);
      viewer_.log_client_mode = mode;
    }
    e.vhost = vhost_ ? std::string_view(vhost_->name) : std::string_view("-");
    e.client = viewer_.log_client;
    e.method = method_;
    // Before routing succeeded the path is unchecked; log it only once normalised.
    e.path = path_.empty() ? std::string_view("-") : std::string_view(path_);
    e.query = route_ ? std::string_view(query_) : std::string_view();
    e.status = status_;
    e.bytes = bytes_sent;
    e.duration_ms = std::chrono::duration<double, std::milli>(duration).count();
    e.ttfb_ms = ttfb_ms_;
    e.cache = cacheResultName(result_);
    if (viewer_.tls) e.tls = tlsVersionLabel(tlsVersionSlot(framing_.tlsVersion()));  // "1.3"
    // The origin that filled what was delivered; a hit or a stale copy used none now.
    if (object_ && result_ != CacheResult::kHit && result_ != CacheResult::kStale &&
        object_->headPublished()) {
      e.origin = object_->head().filled_by_origin;
      e.dc = object_->head().filled_by_dc;
    }
    worker_.logLine(e);
  }
}

void Exchange::unsubscribe() {
  if (subscribed_ && object_) object_->unsubscribe(this);
  subscribed_ = false;
}

void Exchange::reset() {
  cancelHoldTimer();
  hold_limit_ = Millis(0);
  from_newer_playlist_ = false;
  directives_.reset();
  unsubscribe();
  phase_ = Phase::kIdle;
  object_.reset();
  rep_ = nullptr;
  vary_accept_encoding_ = false;
  stale_.reset();
  config_.reset();
  vhost_ = nullptr;
  route_ = nullptr;
  method_.clear();
  path_.clear();
  query_.clear();
  is_get_ = is_head_ = false;
  own_fill_ = false;
  ssd_read_ = false;
  viewer_fields_.reset(false);
  vary_names_.reset();
  vary_retried_ = false;
  passed_ = false;
  result_ = CacheResult::kNone;
  status_ = 0;
  body_ = BodyCursor{};
  body_start_ = 0;
  body_started_ = false;
  ttfb_ms_ = 0;
  request_body_.clear();
  request_body_length_ = 0;
}

}  // namespace streamedge::proxy
