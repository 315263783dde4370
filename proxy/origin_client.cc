// OriginClient: per-worker origin fetches over pooled keep-alive HTTP/1.1 connections.
//
// One fetch walks this path (each arrow is a libevent callback on the worker's loop):
//
//   start() ─defer─> pick origin ─> pooled connection? ──yes──> write request ─> wait head
//                          │                  └─no─> resolve (IP literal / cache / evdns)
//                          │                               ─> connect + write request ─> wait head
//                          └─ none admitted ─> onOriginFailed(kUnavailable)
//   wait head ─> 1xx: skip │ 101: attempt failed │ bad head: attempt failed
//             ─> 5xx and another origin may be tried: attempt failed (fail over)
//             ─> otherwise onOriginResponse, then body (Content-Length / chunked / until close)
//   body ─> onOriginData* ─> onOriginComplete (connection back to the pool when reusable)
//        ─> framing violation ─> onOriginFailed
//        ─> closed / reset / read timeout / below min_rate ─> resume (below), else onOriginFailed
//   attempt failed ─> record in OriginHealth, log, next origin if allowed, else onOriginFailed.
//
// Resume after the first byte (GET 200 only; proxy/origin_resume.h has the rules): the origin's
// failure is recorded in health, then the next origin of the group that has not failed during
// this fetch (priority order, health admitting) is asked for `Range: bytes=N-` with If-Match
// (strong ETag) or If-Unmodified-Since (Last-Modified), N = body bytes delivered so far. Its
// head is checked (checkResumeHead) instead of being handed on: a 206 of the same
// representation continues the body (the observer never hears of it), 5xx/404/connection
// failures try the next origin, anything else ends in onOriginFailed. At most the group's
// resume_attempts Range requests, none started after resume_deadline from the first break, whose
// connect/first-byte timers are cut to that deadline too. A pause() between origins holds the
// resumed body until resume(). One log line and one streamedge_origin_resumes_total count per
// attempt (OriginStats::resume).
//
// Failover rules (DESIGN.md "Origins", request path step 6):
//   - origins are tried in the group's vector order (sorted by priority at load time), each at
//     most once, at most 1 + group.retries attempts in all;
//   - an origin OriginHealth reports down is skipped, unless every origin of the group was down
//     when the fetch started (then all are tried in order: better a probably-failing origin than
//     a certain failure); a down origin whose hold-off has expired admits exactly one probe; a
//     recovering origin (slow_start) may decline a request to the next one (OriginHealth::admit);
//   - connect errors (including DNS), connect/first-byte timeouts, an invalid response head and a
//     5xx status fail over; a 5xx from the last possible attempt is handed to the observer as a
//     normal response (the proxy may prefer stale-if-error). 4xx are normal responses;
//   - non-idempotent methods (RFC 9110 §9.2.2) fail over only when their request cannot have
//     reached an origin (connect failed); a 5xx or a timeout after sending is final for them;
//   - a request sent on a reused idle connection that fails before any response byte (the origin
//     closed the connection while it sat in the pool) is re-sent once on a fresh connection to the
//     same origin. That retry is transparent: not an attempt, not a health failure.
//
// Origin protection (proxy/origin_limits.h): an attempt holds a request slot of its origin from
// its start until its body ends (or it fails); a new connection holds a connection slot from
// before its socket exists until it is closed (pooled connections keep theirs). At the cap, the
// fetch takes another origin of the same priority, or queues (phase kQueued, the timer armed
// with queue_timeout) on its worker; a full queue or a timeout is Code::kBusy (not an origin
// failure: no health record, no failover). Retries (attemptFailed, and a 5xx that would fail
// over) stop at the group's retry_deadline and when its retry budget refuses; the failure then
// goes to the observer as it is.
//
// Hedging (OriginRequest::hedge_after, GET only): a timer from the fetch's start; if no head
// has come by then, a second Fetch (the hedge, observed through HedgeRelay) starts at the next
// untried origin. The first head wins: the hedge's makes this fetch abandon its own attempt
// (connection closed) and relay the hedge's response; this fetch's own head destroys the hedge.
// If this fetch's attempt fails while the hedge runs, the hedge carries the fetch.
//
// Names: resolved with evdns_getaddrinfo (cached for the origin's dns_cache_time: evdns does
// not report TTLs); every address is tried on a connect error or timeout before the attempt
// fails (one attempt, one connection slot).
//
// Timeouts (per origin config): connect_timeout covers name resolution and the TCP connect;
// first_byte_timeout runs from the request fully written to the complete final response head;
// read_timeout is the longest gap between two body reads. One timer event per fetch serves all
// three (the phase says which one is armed).
//
// Backpressure: the observer may pause() the body (an answer that is not kept, whose readers
// have not taken the bytes held yet): reading stops and the read timeout with it, since the wait
// is ours, not the origin's; resume() goes on from the loop. Answers that are kept are read as
// fast as the origin sends (the object holds one copy for every reader).
//
// Framing violations (DESIGN.md "Strict HTTP/1.1"): a connection that sent more or less than it
// framed is closed, never pooled. Bytes past the end of the framed body that arrive in the same
// read are reported as onOriginFailed(kInvalid) even though the first N bytes matched: an origin
// that sends more than its Content-Length may have sent a wrong length, and a cache that cuts
// silently at the length (what evhttp does) may store a truncated object as whole. Bytes that
// arrive only after the body completed cannot be attributed any more; they find the connection
// idle in the pool, which closes it.
#include "proxy/origin_client.h"

#include "proxy/name_resolver.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <list>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "cache/response_head.h"
#include "proxy/chunked.h"
#include "proxy/http_parser.h"
#include "proxy/origin_limits.h"
#include "proxy/origin_resume.h"
#include "proxy/origin_stats.h"
#include "tls/origin_context.h"

namespace streamedge::proxy {

std::string originHostField(const conf::OriginConfig& origin) {
  const bool v6 = origin.host.find(':') != std::string::npos;
  std::string host = v6 ? "[" + origin.host + "]" : origin.host;
  const bool default_port = (origin.scheme == "http" && origin.port == 80) ||
                            (origin.scheme == "https" && origin.port == 443);
  if (!default_port) host += ":" + std::to_string(origin.port);
  return host;
}

namespace {

// The detail of a failed TLS handshake (errorReason() tells it from a refused connection).
constexpr const char* kTlsFailed = "TLS handshake with the origin failed";

metrics::OriginErrorReason errorReason(const Status& status) {
  using R = metrics::OriginErrorReason;
  switch (status.code()) {
    case Code::kConnect: return status.detail() == kTlsFailed ? R::kTls : R::kConnect;
    case Code::kTimeout: return R::kTimeout;
    case Code::kClosed: return R::kClosed;
    case Code::kInvalid:
    case Code::kTooLarge: return R::kInvalidResponse;
    case Code::kUnavailable: return R::k5xx;
    default: return R::kOther;
  }
}

using SteadyClock = std::chrono::steady_clock;

// Queued fetches are retried at least this often (besides the wake-up of every release), so a
// wait never depends on one cross-thread wake-up alone.
constexpr timeval kQueuePoll{0, 50 * 1000};

// The 503s of origin protection (static details: Status never owns its text).
constexpr const char* kBusyQueueFull = "origin busy: at its concurrency cap and its queue is full";
constexpr const char* kBusyQueueTimeout = "origin busy: waited queue_timeout at its concurrency cap";

timeval toTimeval(Millis ms) {
  const int64_t v = std::max<int64_t>(0, ms.count());
  timeval tv;
  tv.tv_sec = static_cast<time_t>(v / 1000);
  tv.tv_usec = static_cast<suseconds_t>((v % 1000) * 1000);
  return tv;
}

// One stderr line per origin failure (never on success). `outcome` says what happens next.
void logOriginFailure(const conf::OriginGroupConfig& group, const conf::OriginConfig& origin,
                      const Status& status, const char* outcome) {
  std::fprintf(stderr, "streamedge: origin %s (dc %s, group %s) failed: %s; %s\n",
               origin.name.c_str(), origin.dc.empty() ? "-" : origin.dc.c_str(),
               group.name.c_str(), status.toString().c_str(), outcome);
}

// RFC 9110 §9.2.2.
bool isIdempotent(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "TRACE" ||
         method == "PUT" || method == "DELETE";
}

// Fields the caller may hand us that never go to the origin as given: hop-by-hop fields
// (RFC 9110 §7.6.1) and the ones we write ourselves (Host, Content-Length).
bool isRequestFieldWeWrite(std::string_view name) {
  static constexpr std::string_view kFields[] = {
      "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization",
      "Proxy-Authenticate", "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Host",
      "Content-Length"};
  for (std::string_view f : kFields) {
    if (cache::equalsIgnoreCase(name, f)) return true;
  }
  return false;
}

// Hop-by-hop response fields (RFC 9110 §7.6.1) plus Content-Length, which OriginResponse carries
// as content_length. Fields named by Connection are dropped separately.
bool isResponseHopByHop(std::string_view name) {
  static constexpr std::string_view kFields[] = {
      "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
      "Proxy-Authorization", "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length"};
  for (std::string_view f : kFields) {
    if (cache::equalsIgnoreCase(name, f)) return true;
  }
  return false;
}

// A field value or target we would put on the wire must not be able to end its line early.
bool hasLineBreakingByte(std::string_view s) {
  for (unsigned char c : s) {
    if ((c < 0x20 && c != '\t') || c == 0x7F) return true;
  }
  return false;
}

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool isNamedByConnection(const ResponseHeadView& head, std::string_view name) {
  for (size_t i = 0; i < head.header_count; ++i) {
    if (!cache::equalsIgnoreCase(head.headers[i].name, "Connection")) continue;
    std::string_view list = head.headers[i].value;
    while (!list.empty()) {
      const size_t comma = list.find(',');
      std::string_view token = trimOws(list.substr(0, comma));
      if (cache::equalsIgnoreCase(token, name)) return true;
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
  }
  return false;
}

// RFC 9112 §3: request line, Host first, the caller's end-to-end fields, our framing.
std::string buildRequest(const OriginRequest& request, const conf::OriginConfig& origin) {
  std::string out;
  out.reserve(256 + request.target.size() + request.body.size());
  out += request.method;
  out += ' ';
  out += origin.base_path;
  out += request.target.empty() ? std::string_view("/") : std::string_view(request.target);
  out += " HTTP/1.1\r\nHost: ";
  out += request.host.empty() ? originHostField(origin) : request.host;
  out += "\r\n";
  for (const auto& [name, value] : request.headers) {
    if (isRequestFieldWeWrite(name)) continue;
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  // RFC 9110 §8.6: a length when there is content or the method expects some.
  const bool expects_body = request.method == "POST" || request.method == "PUT" ||
                            request.method == "PATCH";
  if (!request.body.empty() || expects_body) {
    out += "Content-Length: ";
    out += std::to_string(request.body.size());
    out += "\r\n";
  }
  out += "\r\n";
  out += request.body;
  return out;
}


struct BevFree {
  void operator()(bufferevent* bev) const { bufferevent_free(bev); }
};
using BevPtr = std::unique_ptr<bufferevent, BevFree>;

struct EventFree {
  void operator()(event* ev) const { event_free(ev); }
};
using EventPtr = std::unique_ptr<event, EventFree>;

// The transport seam: wraps a connecting socket in the bufferevent the HTTP code reads and
// writes — a plain socket bufferevent for http, a connecting bufferevent_openssl for https
// (BEV_EVENT_CONNECTED then means "handshake done and the peer verified"). Deferred callbacks: no
// bufferevent callback ever runs from inside a bufferevent call of ours (connect refused at
// once, a write that fails), so the fetch state machine is only ever entered from the loop.
Result<BevPtr> openTransport(event_base* base, const conf::OriginConfig& origin, int fd,
                             SSL_CTX* tls_ctx, tls::OriginSessionSlot* session) {
  bufferevent* bev = nullptr;
  if (origin.scheme == "https") {
    if (!tls_ctx) {
      ::close(fd);
      return Status(Code::kInternal, Source::kInternal,
                    "no TLS context for this https origin");
    }
    tls::SslPtr ssl = tls::newOriginSsl(tls_ctx, origin, session);
    if (!ssl) {
      ::close(fd);
      return Status(Code::kInternal, Source::kInternal, "cannot set up TLS for the origin");
    }
    bev = bufferevent_openssl_socket_new(base, fd, ssl.get(), BUFFEREVENT_SSL_CONNECTING,
                                         BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (bev) {
      ssl.release();  // the bufferevent frees it
      // Framing decides whether a body is complete; a missing close_notify is just EOF.
      bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    }
  } else {
    bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
  }
  // libevent reads at most 16 KiB per loop iteration by default: too little for 2 MB segments.
  if (bev) bufferevent_set_max_single_read(bev, 256 * 1024);
  if (!bev) {
    ::close(fd);
    return Status(Code::kInternal, Source::kInternal, "bufferevent_socket_new failed");
  }
  return BevPtr(bev);
}

Status connectErrorStatus(int err) {
  switch (err) {
    case ECONNREFUSED: return Status(Code::kConnect, Source::kUpstream, "connection refused", true);
    case ETIMEDOUT: return Status(Code::kTimeout, Source::kUpstream, "connect timed out (kernel)", true);
    case ENETUNREACH:
    case EHOSTUNREACH: return Status(Code::kConnect, Source::kUpstream, "origin unreachable", true);
    case ECONNRESET: return Status(Code::kConnect, Source::kUpstream, "connection reset while connecting", true);
    default: return Status(Code::kConnect, Source::kUpstream, "connect failed", true);
  }
}

class Fetch;
class ClientCore;

// A pooled keep-alive connection. While idle it belongs to its Pool and its callbacks point at
// the pool (any byte or EOF closes it); while in use the fetch owns it.
struct Connection {
  SlotHold hold;  // the origin's connection slot; declared first: given back after bev closes
  BevPtr bev;
  ClientCore* core = nullptr;
  struct Pool* pool = nullptr;  // set while idle
  SockAddr peer;                // the address connected to
};

struct Pool {
  std::string key;
  std::string host;            // the origin's host: an IP literal or a name
  OriginSlot* slot = nullptr;  // the origin's shared counters (connection waiters)
  std::list<std::unique_ptr<Connection>> idle;  // back = most recently used
};

// The worker's client state: pools, name cache, live fetches. OriginClient::Impl is one of these.
class ClientCore : public LimitsWaker {
 public:
  ClientCore(event_base* base, std::shared_ptr<OriginHealth> health, OriginStats* stats,
             std::shared_ptr<OriginLimits> limits);
  ~ClientCore();

  event_base* base() const { return base_; }
  OriginHealth* health() const { return health_.get(); }
  OriginStats* stats() const { return stats_; }  // may be null
  OriginLimits& limits() { return *limits_; }

  // The shared slot of origin `o` of group `g` of `config`, and the group's budget. Cached per
  // config snapshot (checked by name, so a new config at a reused address is noticed).
  OriginSlot* slotFor(const conf::Config& config, size_t g, size_t o);
  GroupBudget* budgetFor(const conf::Config& config, size_t g);

  // Fetches waiting for a slot of their origin, in arrival order.
  std::list<Fetch*>::iterator enqueue(Fetch* f) {
    if (queue_.empty() && poll_event_) event_add(poll_event_.get(), &kQueuePoll);
    return queue_.insert(queue_.end(), f);
  }
  void dequeue(std::list<Fetch*>::iterator it) {
    queue_.erase(it);
    if (queue_.empty() && poll_event_) event_del(poll_event_.get());
  }
  // Any thread (LimitsWaker): a slot with waiters was given back somewhere.
  void wake() override { event_active(wake_event_.get(), EV_TIMEOUT, 1); }

  static std::string poolKey(size_t group, const conf::OriginConfig& origin) {
    return std::to_string(group) + '|' + origin.scheme + "://" + origin.host + ':' +
           std::to_string(origin.port);
  }

  // An idle connection that still looks open, or null.
  std::unique_ptr<Connection> takeIdle(const std::string& key);
  // Pools `conn` (or closes it when the pool is full or pooling is off).
  void release(const std::string& key, std::unique_ptr<Connection> conn,
               const conf::OriginConfig& origin);
  void closeIdle() { pools_.clear(); }
  // A new answer for origin name `host`: idle connections to addresses it no longer lists close.
  void dropMovedIdle(const std::string& host, const std::vector<SockAddr>& addrs);

  // Origin names of this loop; created with the first config's [dns] options.
  NameResolver& resolver(const conf::Config& config);
  void setHostsFile(std::string path) { hosts_file_override_ = std::move(path); }

  void setTls(tls::TlsStatePtr tls) { tls_ = std::move(tls); }
  const tls::TlsStatePtr& tls() const { return tls_; }
  // The session new TLS connections to `pool_key` try to resume (stable address).
  tls::OriginSessionSlot* sessionSlot(const std::string& pool_key) {
    return &sessions_.try_emplace(pool_key).first->second;
  }

  void add(Fetch* f) { fetches_.insert(f); }
  void remove(Fetch* f) { fetches_.erase(f); }

 private:
  static void idleReadCb(bufferevent* bev, void* arg);
  static void idleEventCb(bufferevent* bev, short events, void* arg);
  static void wakeCb(evutil_socket_t, short, void* arg);
  void dropIdle(Connection* conn);
  // Retries the queued fetches in order and closes idle connections another fetch waits for.
  void onWake();

  event_base* const base_;
  const std::shared_ptr<OriginHealth> health_;
  OriginStats* const stats_;
  const std::shared_ptr<OriginLimits> limits_;
  EventPtr wake_event_;
  EventPtr poll_event_;
  std::list<Fetch*> queue_;
  const conf::Config* slots_config_ = nullptr;
  std::vector<std::vector<OriginSlot*>> slot_table_;  // [group][origin] of slots_config_
  std::vector<GroupBudget*> budget_table_;            // [group] of slots_config_
  tls::TlsStatePtr tls_;
  // Declared before pools_: pooled SSLs point at their slot until they are freed.
  std::unordered_map<std::string, tls::OriginSessionSlot> sessions_;
  std::unordered_map<std::string, Pool> pools_;  // references stay valid across rehash
  std::unique_ptr<NameResolver> resolver_;
  std::optional<std::string> hosts_file_override_;  // tests
  std::unordered_set<Fetch*> fetches_;
};


class Fetch final : public OriginFetch {
 public:
  Fetch(ClientCore& core, const conf::Config& config, size_t group_index, OriginRequest request,
        OriginObserver& observer);
  ~Fetch() override;

  // Schedules the first step on the loop.
  void begin();
  // The client is going away: close everything, never call back.
  void detach();
  // Makes this fetch the hedge of another: it starts at origin `first` (the lowest untried),
  // never asks the origins `tried` marks, and has `attempts` attempts. Before begin().
  void makeHedge(std::vector<bool> tried, size_t attempts);
  // Makes this fetch continue a body that broke at `from` (another group's origin: a peer) after
  // `offset` bytes: its first attempt is already a resume (tryResume). Before begin().
  void makeContinuation(const ResumeValidators& validators, uint64_t offset,
                        const conf::OriginConfig& from);

  void pause() override;
  void resume() override;

  // Queued: the slot it waits for may be free now. Takes it and goes on (which may end in an
  // observer callback), or stays queued.
  void retryQueued();
  bool queued() const { return wait_ != Wait::kNone; }

 private:
  enum class Phase { kPending, kQueued, kResolving, kConnecting, kWaitingHead, kBody, kDone };
  enum class Wait : uint8_t { kNone, kRequest, kConnection };

  // The observer of this fetch's hedge: hands the hedge's answer on when it wins.
  struct HedgeRelay final : OriginObserver {
    explicit HedgeRelay(Fetch& f) : fetch(f) {}
    void onOriginResponse(OriginResponse&& response) override;
    void onOriginData(const uint8_t* data, size_t len) override;
    void onOriginComplete() override;
    void onOriginFailed(Status status) override;
    Fetch& fetch;
  };

  // Set while an observer callback runs; the destructor clears `alive` of every open guard so
  // the code below the callback knows not to touch the fetch again.
  struct Guard {
    explicit Guard(Fetch& f) : fetch(f), prev(f.guards_) { f.guards_ = this; }
    ~Guard() {
      if (alive) fetch.guards_ = prev;
    }
    Fetch& fetch;
    Guard* prev;
    bool alive = true;
  };

  static void kickCb(evutil_socket_t, short, void* arg);
  static void timerCb(evutil_socket_t, short, void* arg);
  static void rateCb(evutil_socket_t, short, void* arg);
  static void readCb(bufferevent*, void* arg);
  static void writeCb(bufferevent*, void* arg);
  static void eventCb(bufferevent*, short events, void* arg);
  static void hedgeCb(evutil_socket_t, short, void* arg);

  const conf::OriginGroupConfig& group() const { return config_.origin_groups[group_index_]; }
  const conf::OriginConfig& origin() const { return group().origins[origin_index_]; }

  // Steps. Each may end in an observer callback and must be the last thing its caller does.
  void startAttempt();
  void beginAttempt();
  void connectAttempt(bool allow_pooled);
  void useConnection(std::unique_ptr<Connection> conn);
  void resolveAndConnect();
  void resolved();  // addrs_ filled (empty: the name did not resolve)
  void connectTo(const SockAddr& addr);
  // A connect to one address of the origin failed: the next address, if any (true).
  bool tryNextAddress();
  void sendRequest();
  void onReadable();
  void parseHead();
  void processBody();
  void finishBody();
  void onConnectionEvent(short events);
  void onTimeout();
  void attemptFailed(Status status, bool record_health);
  // The body broke after onOriginResponse. `may_resume`: a break of the origin (closed, reset,
  // stalled), which another origin may make good; framing violations are not.
  void bodyFailed(Status status, bool may_resume);
  void finishFailed(Status status);

  // Origin protection (proxy/origin_limits.h).
  bool pickOrigin(size_t& out);
  // Takes a request slot of origin `index` (request_hold_); false at its cap.
  bool takeRequestSlot(size_t index);
  // Waits in the queue for `slot`; 503 when the queue is full. May end in a callback.
  void enqueue(OriginSlot* slot, Wait wait);
  void leaveQueue();
  void busyFailed(const char* detail);
  // Within 10 ms counts as passed: libevent's timers run on a coarse clock and may fire a few
  // milliseconds before the deadline they were armed for.
  bool deadlinePassed(SteadyClock::time_point now) const {
    return has_retry_deadline_ && now + std::chrono::milliseconds(10) >= retry_deadline_;
  }

  // Hedging.
  void maybeStartHedge();
  void onHedgeResponse(OriginResponse&& response);
  void onHedgeFailed(Status status);
  bool hedgeRunning() const { return hedge_ != nullptr; }
  // Ends this fetch's own attempt (the hedge answers): no callback, nothing pooled.
  void abandonOwnAttempt();

  // Resume after the first byte (proxy/origin_resume.h).
  void noteResumable(const OriginResponse& response);
  // Starts a Range request to the next usable origin; false (nothing started) when there is
  // none, no validator, no attempt left or the deadline has passed. `count_not_resumable`: a
  // refusal is counted and logged (not when the break was a failed resume attempt, already
  // counted).
  bool tryResume(bool count_not_resumable);
  void onResumeHead(const ResponseHeadView& head, size_t head_end);
  void resumeAttemptFailed(Status status, bool record_health);
  void countResume(ResumeOutcome outcome, const char* detail);
  void startRateWindow();
  void onRateTick();

  bool hasNextCandidate() const;
  bool mayFailOverAfterSend() const { return isIdempotent(request_.method); }
  void armTimer(Millis timeout);
  void cancelDns();
  void stopTimers() {
    if (timer_) event_del(timer_.get());
    if (rate_timer_) event_del(rate_timer_.get());
  }
  void closeConnection() { conn_.reset(); }
  bool deliver(const uint8_t* data, size_t len);

  ClientCore* core_;  // null once detached
  const conf::Config& config_;
  const tls::TlsStatePtr tls_;  // the contexts for https origins, pinned at start
  const size_t group_index_;
  OriginRequest request_;
  OriginObserver& observer_;
  EventPtr kick_;
  EventPtr timer_;
  EventPtr rate_timer_;            // min_rate windows of the body
  EventPtr hedge_timer_;           // hedge_after
  Guard* guards_ = nullptr;
  bool started_ = false;           // the first attempt has begun (the kick no longer starts one)

  Phase phase_ = Phase::kPending;
  Status pending_failure_;         // a failure found in start(), reported from the loop
  size_t max_attempts_ = 1;
  int attempts_ = 0;
  size_t next_origin_ = 0;         // next candidate index in the group
  std::vector<bool> tried_;        // origins this fetch asked (or skipped at their cap)
  bool all_down_ = false;          // every origin was down at start: try them all in order
  Status last_failure_{Code::kUnavailable, Source::kUpstream, "no origin available"};
  GroupBudget* budget_ = nullptr;  // the group's retry budget (shared)
  bool retry_granted_ = false;     // the budget already said yes to the retry being made
  bool has_retry_deadline_ = false;
  SteadyClock::time_point retry_deadline_{};

  // Origin protection.
  SlotHold request_hold_;          // this attempt's request slot of its origin
  SlotHold conn_hold_;             // the connection slot of a connection being opened
  Wait wait_ = Wait::kNone;
  OriginSlot* wait_slot_ = nullptr;
  std::list<Fetch*>::iterator queue_pos_{};

  // Hedging.
  bool is_hedge_ = false;
  bool hedge_started_ = false;     // at most one hedge per fetch
  bool delegated_ = false;         // the hedge carries the fetch (own attempt ended)
  bool hedge_answered_ = false;    // the hedge's head went to the observer
  HedgeRelay relay_{*this};
  std::unique_ptr<Fetch> hedge_;

  // Per attempt.
  size_t origin_index_ = 0;
  SteadyClock::time_point attempt_started_{};  // for the origin latency histogram
  std::string pool_key_;
  std::string wire_;               // the serialised request for this origin
  std::unique_ptr<Connection> conn_;
  uint64_t dns_ticket_ = 0;        // a lookup in flight (NameResolver::cancel)
  bool looked_up_ = false;         // addrs_ is this attempt's fresh answer (connectAttempt)
  std::vector<SockAddr> addrs_;    // the origin's addresses, tried in order on connect failures
  size_t addr_index_ = 0;
  bool reused_ = false;            // conn_ came from the pool
  bool stale_retry_done_ = false;  // the one transparent retry after a dead pooled connection
  bool request_sent_ = false;      // bytes may have reached the origin
  bool paused_ = false;            // body reading paused by the observer
  short deferred_events_ = 0;      // EOF/error seen while paused: handled after the kept bytes
  bool request_written_ = false;   // the whole request left our output buffer
  bool got_bytes_ = false;         // any response byte on this attempt
  size_t head_scan_from_ = 0;      // resume offset for the CRLFCRLF search

  // Body.
  BodyFraming framing_ = BodyFraming::kNone;
  uint64_t remaining_ = 0;
  bool keep_alive_ = false;
  ChunkedDecoder chunked_;
  std::vector<std::pair<const uint8_t*, size_t>> runs_;  // de-chunked runs of one read
  uint64_t delivered_ = 0;         // body bytes handed to the observer, all origins together
  std::optional<uint64_t> body_end_;  // the offset the body must end at, when known
  uint64_t rate_window_from_ = 0;  // delivered_ when the current min_rate window began

  // Resume after the first byte.
  bool resumable_ = false;         // a GET 200 with a body: may go on from another origin
  ResumeValidators validators_;    // what a resumed part must match
  std::vector<bool> failed_origins_;  // origins that failed during this fetch: not asked again
  bool resuming_ = false;          // the current attempt is a Range request, head not yet taken
  int resume_attempts_ = 0;        // Range requests started
  bool broke_ = false;             // the body broke at least once (resume_deadline_ is set)
  SteadyClock::time_point resume_deadline_{};
  size_t broke_origin_ = 0;        // the origin whose body broke last (from_dc)
  bool continuation_ = false;      // makeContinuation: the body began at another group
  const conf::OriginConfig* broke_from_ = nullptr;  // that group's origin, until a break here
};

// ---- ClientCore ---------------------------------------------------------------------------

ClientCore::ClientCore(event_base* base, std::shared_ptr<OriginHealth> health, OriginStats* stats,
                       std::shared_ptr<OriginLimits> limits)
    : base_(base),
      health_(std::move(health)),
      stats_(stats),
      limits_(limits ? std::move(limits) : std::make_shared<OriginLimits>()),
      wake_event_(event_new(base, -1, 0, wakeCb, this)),
      poll_event_(event_new(base, -1, EV_PERSIST, wakeCb, this)) {
  limits_->addWaker(this);
}

ClientCore::~ClientCore() {
  limits_->removeWaker(this);  // no wake() after this
  // Fetches that outlive their client (shutdown order) are cut off silently.
  std::unordered_set<Fetch*> fetches;
  fetches.swap(fetches_);
  for (Fetch* f : fetches) f->detach();
  queue_.clear();
  pools_.clear();
  // Pending lookups were cancelled by detach(); their contexts are freed if their callbacks
  // still run on this loop, else leak with the loop at shutdown.
}

std::unique_ptr<Connection> ClientCore::takeIdle(const std::string& key) {
  auto it = pools_.find(key);
  if (it == pools_.end()) return nullptr;
  Pool& pool = it->second;
  std::unique_ptr<Connection> found;
  while (!pool.idle.empty() && !found) {
    std::unique_ptr<Connection> conn = std::move(pool.idle.back());
    pool.idle.pop_back();
    // A FIN or stray bytes that the loop has not dispatched yet: one cheap syscall saves a
    // failed request and its retry.
    bufferevent* bev = conn->bev.get();
    if (evbuffer_get_length(bufferevent_get_input(bev)) > 0) continue;
    char byte;
    const ssize_t r = ::recv(bufferevent_getfd(bev), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) found = std::move(conn);
  }
  if (pool.idle.empty()) pools_.erase(it);
  if (found) {
    found->pool = nullptr;
    bufferevent_set_timeouts(found->bev.get(), nullptr, nullptr);
  }
  return found;
}

void ClientCore::release(const std::string& key, std::unique_ptr<Connection> conn,
                         const conf::OriginConfig& origin) {
  if (origin.max_idle_per_worker <= 0 || origin.idle_timeout.count() <= 0) return;
  // A fetch somewhere waits for a connection slot of this origin: give this one back instead.
  if (OriginSlot* slot = conn->hold.slot(); slot && slot->conn_waiters.load() > 0) return;
  // The origin's name has moved away from this connection's address.
  if (resolver_ && !resolver_->stillListed(origin.host, conn->peer)) return;
  Pool& pool = pools_[key];
  if (pool.key.empty()) pool.key = key;
  if (pool.host.empty()) pool.host = origin.host;
  if (!pool.slot) pool.slot = conn->hold.slot();
  while (pool.idle.size() >= static_cast<size_t>(origin.max_idle_per_worker)) {
    pool.idle.pop_front();  // the oldest: the likeliest to be closed by the origin soon
  }
  bufferevent* bev = conn->bev.get();
  conn->core = this;
  conn->pool = &pool;
  bufferevent_setcb(bev, idleReadCb, nullptr, idleEventCb, conn.get());
  // The read timeout is the idle timeout: it fires as BEV_EVENT_TIMEOUT|READING.
  const timeval idle = toTimeval(origin.idle_timeout);
  bufferevent_set_timeouts(bev, &idle, nullptr);
  bufferevent_disable(bev, EV_WRITE);
  bufferevent_enable(bev, EV_READ);
  pool.idle.push_back(std::move(conn));
}

void ClientCore::idleReadCb(bufferevent*, void* arg) {
  // An idle origin connection has nothing to say; whatever it is (a 408, garbage, the tail of
  // an over-long body), the connection's framing can no longer be trusted.
  auto* conn = static_cast<Connection*>(arg);
  conn->core->dropIdle(conn);
}

void ClientCore::idleEventCb(bufferevent*, short, void* arg) {
  auto* conn = static_cast<Connection*>(arg);
  conn->core->dropIdle(conn);
}

void ClientCore::dropIdle(Connection* conn) {
  Pool* pool = conn->pool;
  if (!pool) return;
  auto it = std::find_if(pool->idle.begin(), pool->idle.end(),
                         [&](const auto& c) { return c.get() == conn; });
  if (it == pool->idle.end()) return;
  pool->idle.erase(it);  // frees the bufferevent; libevent allows that inside its callback
  if (pool->idle.empty()) pools_.erase(pool->key);
}

NameResolver& ClientCore::resolver(const conf::Config& config) {
  if (!resolver_) {
    ResolverOptions options{config.dns.nameservers, config.dns.hosts_file};
    if (hosts_file_override_) options.hosts_file = *hosts_file_override_;
    resolver_ = std::make_unique<NameResolver>(base_, std::move(options));
    resolver_->setAnswerObserver(
        [this](const std::string& host, const std::vector<SockAddr>& addrs) {
          dropMovedIdle(host, addrs);
        });
  }
  return *resolver_;
}

void ClientCore::dropMovedIdle(const std::string& host, const std::vector<SockAddr>& addrs) {
  for (auto it = pools_.begin(); it != pools_.end();) {
    Pool& pool = it->second;
    if (pool.host == host) {
      pool.idle.remove_if([&](const std::unique_ptr<Connection>& c) {
        SockAddr peer = c->peer;
        peer.setPort(0);
        return std::find(addrs.begin(), addrs.end(), peer) == addrs.end();
      });
    }
    it = pool.idle.empty() ? pools_.erase(it) : std::next(it);
  }
}

OriginSlot* ClientCore::slotFor(const conf::Config& config, size_t g, size_t o) {
  const conf::OriginGroupConfig& group = config.origin_groups[g];
  const conf::OriginConfig& origin = group.origins[o];
  if (slots_config_ == &config && g < slot_table_.size() && o < slot_table_[g].size()) {
    OriginSlot* s = slot_table_[g][o];
    if (s->group == group.name && s->origin == origin.name) return s;
  }
  // Another snapshot (a reload, or an older fetch's pinned one): resolve every name once.
  slots_config_ = &config;
  slot_table_.assign(config.origin_groups.size(), {});
  budget_table_.assign(config.origin_groups.size(), nullptr);
  for (size_t gi = 0; gi < config.origin_groups.size(); ++gi) {
    const conf::OriginGroupConfig& grp = config.origin_groups[gi];
    budget_table_[gi] = limits_->budget(grp.name);
    for (const conf::OriginConfig& org : grp.origins) {
      slot_table_[gi].push_back(limits_->slot(grp.name, org.name, org.dc));
    }
  }
  return slot_table_[g][o];
}

GroupBudget* ClientCore::budgetFor(const conf::Config& config, size_t g) {
  if (config.origin_groups[g].origins.empty()) return limits_->budget(config.origin_groups[g].name);
  slotFor(config, g, 0);  // resolves the table of this snapshot
  return budget_table_[g];
}

void ClientCore::wakeCb(evutil_socket_t, short, void* arg) { static_cast<ClientCore*>(arg)->onWake(); }

void ClientCore::onWake() {
  // Idle connections of origins whose connection slots another fetch (on any worker) waits for
  // are closed: their slots go to the waiters.
  std::vector<std::string> trim;
  for (const auto& [key, pool] : pools_) {
    if (pool.slot && pool.slot->conn_waiters.load() > 0 && !pool.idle.empty()) trim.push_back(key);
  }
  for (const std::string& key : trim) {
    auto it = pools_.find(key);
    if (it == pools_.end()) continue;
    it->second.idle.pop_front();  // the oldest; gives its slot back (and wakes)
    if (it->second.idle.empty()) pools_.erase(it);
  }
  if (queue_.empty()) return;
  // A snapshot: retrying one fetch may end in callbacks that destroy others.
  std::vector<Fetch*> waiting(queue_.begin(), queue_.end());
  for (Fetch* f : waiting) {
    if (fetches_.count(f) && f->queued()) f->retryQueued();
  }
}

// ---- Fetch --------------------------------------------------------------------------------

Fetch::Fetch(ClientCore& core, const conf::Config& config, size_t group_index,
             OriginRequest request, OriginObserver& observer)
    : core_(&core),
      config_(config),
      tls_(core.tls()),
      group_index_(group_index),
      request_(std::move(request)),
      observer_(observer),
      kick_(event_new(core.base(), -1, 0, kickCb, this)),
      timer_(event_new(core.base(), -1, 0, timerCb, this)),
      rate_timer_(event_new(core.base(), -1, 0, rateCb, this)),
      hedge_timer_(event_new(core.base(), -1, 0, hedgeCb, this)) {
  core_->add(this);
  if (group_index_ >= config_.origin_groups.size()) {
    pending_failure_ = Status(Code::kInternal, Source::kInternal, "unknown origin group");
    return;
  }
  const conf::OriginGroupConfig& g = group();
  if (g.origins.empty()) {
    pending_failure_ = Status(Code::kUnavailable, Source::kUpstream, "origin group has no origins");
    return;
  }
  // Never put a byte on the wire that could end a line early (request splitting).
  bool bad = hasLineBreakingByte(request_.method) || hasLineBreakingByte(request_.target) ||
             hasLineBreakingByte(request_.host) || !isToken(request_.method) ||
             request_.target.find(' ') != std::string::npos ||
             (!request_.target.empty() && request_.target.front() != '/');
  for (const auto& [name, value] : request_.headers) {
    bad = bad || !isToken(name) || hasLineBreakingByte(value);
  }
  if (bad) {
    pending_failure_ = Status(Code::kInvalid, Source::kInternal,
                              "origin request with an invalid method, target or field");
    return;
  }
  max_attempts_ = 1 + static_cast<size_t>(std::max(0, g.retries));
  failed_origins_.assign(g.origins.size(), false);
  tried_.assign(g.origins.size(), false);
  budget_ = core_->budgetFor(config_, group_index_);
  all_down_ = true;
  if (OriginHealth* health = core_->health()) {
    const auto now = SteadyClock::now();
    for (size_t i = 0; i < g.origins.size() && all_down_; ++i) {
      if (health->isUp(group_index_, i, now)) all_down_ = false;
    }
  } else {
    all_down_ = false;
  }
}

Fetch::~Fetch() {
  for (Guard* g = guards_; g; g = g->prev) g->alive = false;
  hedge_.reset();  // cancels the hedge: its connection is closed, never pooled
  cancelDns();
  leaveQueue();
  conn_.reset();  // a half-read connection is never pooled
  request_hold_.reset();
  conn_hold_.reset();
  if (core_) core_->remove(this);
}

void Fetch::detach() {
  cancelDns();
  leaveQueue();
  conn_.reset();
  request_hold_.reset();
  conn_hold_.reset();
  kick_.reset();
  timer_.reset();
  rate_timer_.reset();
  hedge_timer_.reset();
  core_ = nullptr;
  phase_ = Phase::kDone;
}

void Fetch::makeHedge(std::vector<bool> tried, size_t attempts) {
  is_hedge_ = true;
  tried_ = std::move(tried);
  max_attempts_ = std::max<size_t>(1, attempts);
  request_.hedge_after = Millis(0);
}

void Fetch::makeContinuation(const ResumeValidators& validators, uint64_t offset,
                             const conf::OriginConfig& from) {
  continuation_ = true;
  resumable_ = true;
  validators_ = validators;
  delivered_ = offset;
  broke_ = true;
  broke_from_ = &from;
  resuming_ = true;  // a pause() before the head holds the part until resume()
  if (group_index_ < config_.origin_groups.size()) {
    resume_deadline_ = SteadyClock::now() + group().resume_deadline;
  }
}

void Fetch::begin() {
  // Callbacks never run inside start(): everything happens from the loop.
  event_active(kick_.get(), EV_TIMEOUT, 1);
}

void Fetch::pause() {
  if (delegated_) {
    if (hedge_) hedge_->pause();
    return;
  }
  if (paused_) return;
  if (resuming_) {
    // Between origins: the resumed body starts paused (the head is still read and checked).
    paused_ = true;
    return;
  }
  if (phase_ != Phase::kBody || !conn_) return;
  paused_ = true;
  bufferevent_disable(conn_->bev.get(), EV_READ);
  stopTimers();  // waiting on our readers is not the origin's fault
}

void Fetch::resume() {
  if (delegated_) {
    if (hedge_) hedge_->resume();
    return;
  }
  if (!paused_) return;
  paused_ = false;
  if (phase_ != Phase::kBody || !conn_) return;
  bufferevent_enable(conn_->bev.get(), EV_READ);
  armTimer(origin().read_timeout);
  startRateWindow();
  // Bytes read before the pause are delivered from the loop (kick), not inside this call.
  event_active(kick_.get(), EV_TIMEOUT, 1);
}

void Fetch::kickCb(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Fetch*>(arg);
  if (self->phase_ == Phase::kBody) {  // a resume: deliver what was read before the pause
    if (self->paused_) return;
    if (const short events = std::exchange(self->deferred_events_, 0)) {
      self->onConnectionEvent(events);  // delivers the kept bytes first
      return;
    }
    self->processBody();
    return;
  }
  // A kick left over from a resume() whose body broke before it ran: nothing to start.
  if (self->started_) return;
  self->started_ = true;
  if (!self->pending_failure_.isOk()) {
    self->finishFailed(self->pending_failure_);
    return;
  }
  if (self->continuation_) {
    // No first answer of its own: straight to a Range request (no hedge, no retry budget).
    if (!self->tryResume(/*count_not_resumable=*/true)) {
      self->finishFailed(Status(Code::kUnavailable, Source::kUpstream,
                                "the body could not be continued from the origin group"));
    }
    return;
  }
  const conf::OriginGroupConfig& g = self->group();
  const auto now = SteadyClock::now();
  if (!self->is_hedge_) {
    if (self->budget_) self->budget_->noteRequest(now);
    if (g.retry_deadline.count() > 0) {
      self->has_retry_deadline_ = true;
      self->retry_deadline_ = now + g.retry_deadline;
    }
    if (self->request_.hedge_after.count() > 0 && self->request_.method == "GET" &&
        g.origins.size() > 1 && self->hedge_timer_) {
      const timeval tv = toTimeval(self->request_.hedge_after);
      event_add(self->hedge_timer_.get(), &tv);
    }
  }
  self->startAttempt();
}

void Fetch::armTimer(Millis timeout) {
  if (!timer_) return;
  if (resuming_) {
    // A resume attempt's connect and first-byte waits end with the resume deadline.
    const auto left = std::chrono::duration_cast<Millis>(resume_deadline_ - SteadyClock::now());
    timeout = std::clamp(left, Millis(1), std::max(timeout, Millis(1)));
  } else if (has_retry_deadline_ && phase_ != Phase::kBody) {
    // Before the first byte, every wait ends with the fetch's retry_deadline (rounded up: the
    // timer must not fire before the deadline it stands for).
    const auto left = std::chrono::ceil<Millis>(retry_deadline_ - SteadyClock::now());
    timeout = std::clamp(left, Millis(1), std::max(timeout, Millis(1)));
  }
  const timeval tv = toTimeval(timeout);
  event_add(timer_.get(), &tv);
}

void Fetch::rateCb(evutil_socket_t, short, void* arg) { static_cast<Fetch*>(arg)->onRateTick(); }

void Fetch::startRateWindow() {
  const conf::OriginGroupConfig& g = group();
  if (!rate_timer_ || g.min_rate == 0 || phase_ != Phase::kBody || paused_) return;
  rate_window_from_ = delivered_;
  const timeval tv = toTimeval(g.min_rate_window);
  event_add(rate_timer_.get(), &tv);
}

void Fetch::onRateTick() {
  if (phase_ != Phase::kBody || paused_) return;
  const conf::OriginGroupConfig& g = group();
  // Bytes the window should have brought at min_rate (a long double: no overflow for any rate).
  const long double expected = static_cast<long double>(g.min_rate) *
                               static_cast<long double>(g.min_rate_window.count()) / 1000.0L;
  const uint64_t got = delivered_ - rate_window_from_;
  if (static_cast<long double>(got) < expected) {
    bodyFailed(Status(Code::kTimeout, Source::kUpstream, "body slower than min_rate"),
               /*may_resume=*/true);
    return;
  }
  startRateWindow();
}

void Fetch::cancelDns() {
  if (dns_ticket_ == 0 || !core_) return;
  core_->resolver(config_).cancel(dns_ticket_);
  dns_ticket_ = 0;
}

bool Fetch::hasNextCandidate() const {
  if (static_cast<size_t>(attempts_) >= max_attempts_) return false;
  const conf::OriginGroupConfig& g = group();
  OriginHealth* health = core_ ? core_->health() : nullptr;
  const auto now = SteadyClock::now();
  for (size_t i = next_origin_; i < g.origins.size(); ++i) {
    if (tried_[i]) continue;
    if (all_down_ || !health || health->isUp(group_index_, i, now)) return true;
  }
  return false;
}

bool Fetch::pickOrigin(size_t& out) {
  const conf::OriginGroupConfig& g = group();
  OriginHealth* health = core_->health();
  const auto now = SteadyClock::now();
  while (static_cast<size_t>(attempts_) < max_attempts_ && next_origin_ < g.origins.size()) {
    const size_t i = next_origin_++;
    if (tried_[i]) continue;
    if (all_down_ || !health || health->admit(group_index_, i, now)) {
      tried_[i] = true;
      out = i;
      return true;
    }
  }
  return false;
}

bool Fetch::takeRequestSlot(size_t index) {
  OriginSlot* slot = core_->slotFor(config_, group_index_, index);
  if (!OriginSlot::tryTake(slot->in_flight, group().origins[index].max_concurrent_requests)) {
    return false;
  }
  request_hold_ = SlotHold(slot, SlotHold::Kind::kRequest);
  // The high-water mark for /status (a racy max is fine: it only ever grows).
  const int now_in_flight = slot->in_flight.load(std::memory_order_relaxed);
  int seen = slot->max_in_flight_seen.load(std::memory_order_relaxed);
  while (now_in_flight > seen &&
         !slot->max_in_flight_seen.compare_exchange_weak(seen, now_in_flight,
                                                         std::memory_order_relaxed)) {
  }
  return true;
}

void Fetch::startAttempt() {
  size_t i = 0;
  if (!pickOrigin(i)) {
    finishFailed(last_failure_);
    return;
  }
  origin_index_ = i;
  if (takeRequestSlot(i)) {
    beginAttempt();
    return;
  }
  // At its cap: another origin of the same priority that is not, if there is one.
  const conf::OriginGroupConfig& g = group();
  OriginHealth* health = core_->health();
  const auto now = SteadyClock::now();
  for (size_t j = next_origin_;
       j < g.origins.size() && g.origins[j].priority == g.origins[i].priority; ++j) {
    if (tried_[j]) continue;
    if (!all_down_ && health && !health->isUp(group_index_, j, now)) continue;
    if (!takeRequestSlot(j)) continue;
    if (!all_down_ && health && !health->admit(group_index_, j, now)) {
      request_hold_.reset();  // another fetch is its half-open probe
      continue;
    }
    tried_[j] = true;
    origin_index_ = j;
    beginAttempt();
    return;
  }
  enqueue(core_->slotFor(config_, group_index_, i), Wait::kRequest);
}

void Fetch::beginAttempt() {
  const conf::OriginGroupConfig& g = group();
  ++attempts_;
  stale_retry_done_ = false;
  attempt_started_ = SteadyClock::now();
  if (OriginStats* stats = core_->stats()) stats->attempt(g, origin());
  pool_key_ = ClientCore::poolKey(group_index_, origin());
  wire_ = buildRequest(request_, origin());
  connectAttempt(/*allow_pooled=*/true);
}

void Fetch::enqueue(OriginSlot* slot, Wait wait) {
  const conf::OriginConfig& o = origin();
  if (o.queue_size <= 0 || !OriginSlot::tryTake(slot->queued, o.queue_size)) {
    slot->rejected_overflow.fetch_add(1, std::memory_order_relaxed);
    request_hold_.reset();
    if (resuming_) {
      resumeAttemptFailed(Status(Code::kBusy, Source::kUpstream, kBusyQueueFull), false);
      return;
    }
    busyFailed(kBusyQueueFull);
    return;
  }
  slot->queued_total.fetch_add(1, std::memory_order_relaxed);
  // Announce, then try once more: a slot given back in between wakes us (origin_limits.h).
  slot->waiters.fetch_add(1);
  if (wait == Wait::kConnection) slot->conn_waiters.fetch_add(1);
  wait_ = wait;
  wait_slot_ = slot;
  queue_pos_ = core_->enqueue(this);
  phase_ = Phase::kQueued;
  armTimer(o.queue_timeout);
  // Idle connections of this origin on other workers are closed for us.
  if (wait == Wait::kConnection) core_->limits().wakeAll();
  retryQueued();
}

void Fetch::leaveQueue() {
  if (wait_ == Wait::kNone) return;
  OriginSlot* slot = wait_slot_;
  if (wait_ == Wait::kConnection) slot->conn_waiters.fetch_sub(1);
  slot->waiters.fetch_sub(1);
  slot->queued.fetch_sub(1);
  if (core_) core_->dequeue(queue_pos_);
  wait_ = Wait::kNone;
  wait_slot_ = nullptr;
  if (timer_) event_del(timer_.get());
}

void Fetch::retryQueued() {
  OriginSlot* slot = wait_slot_;
  if (!slot || !core_) return;
  if (wait_ == Wait::kRequest) {
    if (!takeRequestSlot(origin_index_)) return;
    leaveQueue();
    beginAttempt();
    return;
  }
  // Waiting for a connection slot (holding a request slot).
  if (std::unique_ptr<Connection> conn = core_->takeIdle(pool_key_)) {
    leaveQueue();
    useConnection(std::move(conn));
    return;
  }
  if (!OriginSlot::tryTake(slot->connections, origin().max_connections)) return;
  conn_hold_ = SlotHold(slot, SlotHold::Kind::kConnection);
  leaveQueue();
  resolveAndConnect();
}

void Fetch::busyFailed(const char* detail) {
  // Not the origin's failure (nothing recorded in its health), and never a reason to ask
  // another origin: the 503 says "busy" to the viewer at once.
  std::fprintf(stderr, "streamedge: origin %s (dc %s, group %s): %s; answering 503\n",
               origin().name.c_str(), origin().dc.empty() ? "-" : origin().dc.c_str(),
               group().name.c_str(), detail);
  finishFailed(Status(Code::kBusy, Source::kUpstream, detail));
}

void Fetch::connectAttempt(bool allow_pooled) {
  reused_ = false;
  request_sent_ = false;
  request_written_ = false;
  got_bytes_ = false;
  head_scan_from_ = 0;
  if (allow_pooled) {
    // An origin name whose answer has expired is looked up again before a pooled connection
    // is used: if the name has moved, the idle connections to its old addresses close. The
    // answer is used once, by this attempt (never looked up twice in a row, whatever its TTL).
    if (!looked_up_) {
      std::vector<SockAddr> known;
      const conf::OriginConfig& o = origin();
      dns_ticket_ = core_->resolver(config_).resolve(
          o.host, o.port, o.dns_cache_time, known,
          [this](std::vector<SockAddr> addrs, const char*) {
            dns_ticket_ = 0;
            if (addrs.empty()) {
              attemptFailed(Status(Code::kConnect, Source::kUpstream,
                                   "origin name did not resolve", true),
                            true);
              return;
            }
            addrs_ = std::move(addrs);
            looked_up_ = true;
            connectAttempt(true);
          });
      if (dns_ticket_ != 0) {
        phase_ = Phase::kResolving;
        armTimer(o.connect_timeout);
        return;
      }
    }
    if (std::unique_ptr<Connection> conn = core_->takeIdle(pool_key_)) {
      looked_up_ = false;
      useConnection(std::move(conn));
      return;
    }
  }
  // A new connection needs a connection slot of the origin.
  OriginSlot* slot = request_hold_.slot();
  if (!slot) slot = core_->slotFor(config_, group_index_, origin_index_);
  if (!conn_hold_.held()) {
    if (!OriginSlot::tryTake(slot->connections, origin().max_connections)) {
      enqueue(slot, Wait::kConnection);
      return;
    }
    conn_hold_ = SlotHold(slot, SlotHold::Kind::kConnection);
  }
  resolveAndConnect();
}

void Fetch::useConnection(std::unique_ptr<Connection> conn) {
  conn_ = std::move(conn);
  reused_ = true;
  bufferevent* bev = conn_->bev.get();
  bufferevent_setcb(bev, readCb, writeCb, eventCb, this);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
  phase_ = Phase::kWaitingHead;
  sendRequest();
}

void Fetch::resolveAndConnect() {
  const conf::OriginConfig& o = origin();
  phase_ = Phase::kResolving;
  armTimer(o.connect_timeout);  // covers resolution and the TCP handshake
  addr_index_ = 0;
  if (std::exchange(looked_up_, false) && !addrs_.empty()) {
    connectTo(addrs_[0]);  // just looked up by connectAttempt
    return;
  }
  addrs_.clear();
  dns_ticket_ = core_->resolver(config_).resolve(
      o.host, o.port, o.dns_cache_time, addrs_,
      [this](std::vector<SockAddr> addrs, const char*) {
        dns_ticket_ = 0;
        addrs_ = std::move(addrs);
        resolved();
      });
  if (dns_ticket_ == 0) resolved();
}

void Fetch::resolved() {
  addr_index_ = 0;
  if (addrs_.empty()) {
    attemptFailed(Status(Code::kConnect, Source::kUpstream, "origin name did not resolve", true),
                  true);
    return;
  }
  connectTo(addrs_[0]);
}

bool Fetch::tryNextAddress() {
  if (reused_ || addr_index_ + 1 >= addrs_.size()) return false;
  ++addr_index_;
  closeConnection();  // the connection slot stays with the fetch (conn_hold_)
  phase_ = Phase::kResolving;
  armTimer(origin().connect_timeout);
  connectTo(addrs_[addr_index_]);
  return true;
}

void Fetch::connectTo(const SockAddr& addr) {
  const int fd = ::socket(addr.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    if (tryNextAddress()) return;  // e.g. no IPv6 on this host
    attemptFailed(Status(Code::kIo, Source::kInternal, "socket() failed"), false);
    return;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  Result<BevPtr> bev =
      openTransport(core_->base(), origin(), fd, tls_ ? tls_->originContext(origin()) : nullptr,
                    origin().scheme == "https" ? core_->sessionSlot(pool_key_) : nullptr);
  if (!bev.isOk()) {
    // A local problem (or an unsupported scheme), not the origin's fault.
    attemptFailed(bev.status(), false);
    return;
  }
  conn_ = std::make_unique<Connection>();
  conn_->bev = std::move(bev).value();
  conn_->peer = addr;
  bufferevent* b = conn_->bev.get();
  bufferevent_setcb(b, readCb, writeCb, eventCb, this);
  bufferevent_enable(b, EV_READ | EV_WRITE);
  phase_ = Phase::kConnecting;
  if (bufferevent_socket_connect(b, const_cast<sockaddr*>(addr.get()),
                                 static_cast<int>(addr.len)) < 0) {
    const int err = errno;
    if (tryNextAddress()) return;
    attemptFailed(connectErrorStatus(err), true);
    return;
  }
  // Queued now, flushed by libevent as soon as the connection is up.
  sendRequest();
}

void Fetch::sendRequest() {
  bufferevent* bev = conn_->bev.get();
  if (bufferevent_write(bev, wire_.data(), wire_.size()) < 0) {
    attemptFailed(Status(Code::kInternal, Source::kInternal, "bufferevent_write failed"), false);
    return;
  }
  if (phase_ == Phase::kWaitingHead) {
    request_sent_ = true;
    armTimer(origin().first_byte_timeout);
  }
}

void Fetch::readCb(bufferevent*, void* arg) { static_cast<Fetch*>(arg)->onReadable(); }

void Fetch::writeCb(bufferevent*, void* arg) {
  auto* self = static_cast<Fetch*>(arg);
  if (self->phase_ != Phase::kWaitingHead || self->request_written_) return;
  // The whole request left: first_byte_timeout counts from here.
  self->request_written_ = true;
  self->armTimer(self->origin().first_byte_timeout);
}

void Fetch::eventCb(bufferevent*, short events, void* arg) {
  static_cast<Fetch*>(arg)->onConnectionEvent(events);
}

void Fetch::timerCb(evutil_socket_t, short, void* arg) { static_cast<Fetch*>(arg)->onTimeout(); }

void Fetch::onConnectionEvent(short events) {
  if (events & BEV_EVENT_CONNECTED) {
    conn_->hold = std::move(conn_hold_);  // the connection carries its slot from here on
    phase_ = Phase::kWaitingHead;
    request_sent_ = true;
    armTimer(origin().first_byte_timeout);
    if (evbuffer_get_length(bufferevent_get_output(conn_->bev.get())) == 0) {
      request_written_ = true;
    }
    return;
  }
  const int err = EVUTIL_SOCKET_ERROR();
  switch (phase_) {
    case Phase::kConnecting:
      if (origin().scheme == "https") {
        // A refused certificate or a failed handshake is an origin failure with its reason in
        // the log — never a fallback to an unverified or plain connection.
        SSL* ssl = bufferevent_openssl_get_ssl(conn_->bev.get());
        std::string queued;
        while (const unsigned long e = bufferevent_get_openssl_error(conn_->bev.get())) {
          char buf[256];
          ERR_error_string_n(e, buf, sizeof buf);
          if (!queued.empty()) queued += "; ";
          queued += buf;
        }
        const bool tls_failed = !queued.empty() || (ssl && SSL_get_verify_result(ssl) != X509_V_OK);
        if (tls_failed) {
          std::fprintf(stderr, "streamedge: origin %s (%s): %s\n", origin().name.c_str(),
                       origin().url.c_str(), tls::describeHandshakeFailure(ssl, queued).c_str());
          attemptFailed(Status(Code::kConnect, Source::kUpstream, kTlsFailed, true), true);
          return;
        }
      }
      if (tryNextAddress()) return;  // another address of the same origin first
      attemptFailed(connectErrorStatus(err), true);
      return;
    case Phase::kWaitingHead: {
      // Bytes the read callback has not seen yet (deferred callbacks keep order, but be sure).
      if (evbuffer_get_length(bufferevent_get_input(conn_->bev.get())) > 0) {
        Guard guard(*this);
        parseHead();
        if (!guard.alive || phase_ != Phase::kWaitingHead) return;
      }
      if (reused_ && !got_bytes_ && !stale_retry_done_ && isIdempotent(request_.method)) {
        // The origin closed the pooled connection before it saw our request (a race with its
        // keep-alive timeout): re-send once on a fresh connection, as if nothing happened.
        stale_retry_done_ = true;
        if (OriginStats* stats = core_->stats()) stats->retry(group(), origin());
        closeConnection();
        connectAttempt(/*allow_pooled=*/false);
        return;
      }
      attemptFailed(Status(Code::kClosed, Source::kUpstream,
                           got_bytes_ ? "origin closed the connection inside the response head"
                                      : "origin closed the connection before responding",
                           true),
                    true);
      return;
    }
    case Phase::kBody: {
      {
        Guard guard(*this);
        processBody();
        if (!guard.alive || phase_ != Phase::kBody) return;
      }
      if (paused_) {
        deferred_events_ = events;  // the end (or the error) comes after the kept bytes
        return;
      }
      if (framing_ == BodyFraming::kUntilClose && (events & BEV_EVENT_EOF) &&
          !(events & BEV_EVENT_ERROR)) {
        keep_alive_ = false;
        finishBody();
        return;
      }
      bodyFailed(Status(Code::kClosed, Source::kUpstream,
                        (events & BEV_EVENT_ERROR) ? "connection reset inside the body"
                                                   : "body cut short"),
                 /*may_resume=*/true);
      return;
    }
    default:
      return;
  }
}

void Fetch::onTimeout() {
  const bool deadline = !resuming_ && deadlinePassed(SteadyClock::now());
  switch (phase_) {
    case Phase::kQueued: {
      if (wait_slot_) wait_slot_->rejected_timeout.fetch_add(1, std::memory_order_relaxed);
      leaveQueue();
      request_hold_.reset();
      if (resuming_) {
        resumeAttemptFailed(Status(Code::kBusy, Source::kUpstream, kBusyQueueTimeout), false);
        return;
      }
      busyFailed(kBusyQueueTimeout);
      return;
    }
    case Phase::kResolving:
    case Phase::kConnecting:
      if (deadline) {
        attemptFailed(Status(Code::kTimeout, Source::kUpstream,
                             "retry_deadline passed while connecting", true),
                      false);
        return;
      }
      if (phase_ == Phase::kConnecting && tryNextAddress()) return;
      attemptFailed(Status(Code::kTimeout, Source::kUpstream, "connect timed out", true), true);
      return;
    case Phase::kWaitingHead:
      if (deadline) {
        attemptFailed(Status(Code::kTimeout, Source::kUpstream,
                             "retry_deadline passed before the response head", true),
                      false);
        return;
      }
      attemptFailed(Status(Code::kTimeout, Source::kUpstream,
                           "no response head within first_byte_timeout", true),
                    true);
      return;
    case Phase::kBody:
      bodyFailed(Status(Code::kTimeout, Source::kUpstream, "body read timed out"),
                 /*may_resume=*/true);
      return;
    default:
      return;
  }
}

void Fetch::onReadable() {
  if (phase_ == Phase::kWaitingHead) {
    parseHead();
  } else if (phase_ == Phase::kBody) {
    processBody();
  }
}

void Fetch::parseHead() {
  evbuffer* in = bufferevent_get_input(conn_->bev.get());
  for (;;) {
    const size_t len = evbuffer_get_length(in);
    if (len == 0) return;
    got_bytes_ = true;
    evbuffer_ptr from;
    evbuffer_ptr_set(in, &from, head_scan_from_, EVBUFFER_PTR_SET);
    const evbuffer_ptr found = evbuffer_search(in, "\r\n\r\n", 4, &from);
    if (found.pos < 0) {
      if (len > kMaxResponseHeadBytes) {
        attemptFailed(Status(Code::kTooLarge, Source::kUpstream, "response head too large"), true);
        return;
      }
      head_scan_from_ = len >= 3 ? len - 3 : 0;
      return;
    }
    const size_t head_end = static_cast<size_t>(found.pos) + 4;
    const auto* data = reinterpret_cast<const char*>(evbuffer_pullup(in, static_cast<ev_ssize_t>(head_end)));
    ResponseHeadView head;
    ParseError err;
    if (!data || !parseResponseHead(std::string_view(data, head_end), head, err)) {
      attemptFailed(Status(Code::kInvalid, Source::kUpstream, data ? err.detail : "pullup failed"),
                    true);
      return;
    }
    if (head.status >= 100 && head.status < 200) {
      if (head.status == 101) {
        attemptFailed(Status(Code::kInvalid, Source::kUpstream,
                             "origin switched protocols (101) on a proxied request"),
                      true);
        return;
      }
      // Interim responses (RFC 9110 §15.2) are not forwarded; the final one follows.
      evbuffer_drain(in, head_end);
      head_scan_from_ = 0;
      continue;
    }

    if (resuming_) {
      onResumeHead(head, head_end);
      return;
    }
    OriginHealth* health = core_->health();
    OriginStats* stats = core_->stats();
    if (stats) stats->latency(group(), origin(), SteadyClock::now() - attempt_started_);
    if (head.status >= 500) {
      const Status failure(Code::kUnavailable, Source::kUpstream, "origin answered 5xx", true);
      if (mayFailOverAfterSend() && hedgeRunning()) {
        attemptFailed(failure, true);  // the hedge answers
        return;
      }
      bool budget_exhausted = false;
      if (mayFailOverAfterSend() && hasNextCandidate() && !deadlinePassed(SteadyClock::now())) {
        if (!budget_ || budget_->tryRetry(SteadyClock::now(), group().retry_budget,
                                          group().retry_budget_min)) {
          retry_granted_ = true;
          attemptFailed(failure, true);
          return;
        }
        budget_exhausted = true;
      }
      // The last possible attempt: the proxy decides (stale-if-error, or pass the 5xx on).
      if (health) health->recordFailure(group_index_, origin_index_, SteadyClock::now());
      if (stats) stats->error(group(), origin(), metrics::OriginErrorReason::k5xx);
      logOriginFailure(group(), origin(), failure,
                       budget_exhausted
                           ? "response delivered: the group's retry budget is exhausted"
                           : "response delivered");
    } else if (health) {
      health->recordSuccess(group_index_, origin_index_);
    }

    framing_ = responseFraming(request_.method, head);
    OriginResponse response;
    response.status = head.status;
    response.reason = std::string(head.reason);
    response.headers.reserve(head.header_count);
    bool has_connection = false;
    for (size_t i = 0; i < head.header_count && !has_connection; ++i) {
      has_connection = cache::equalsIgnoreCase(head.headers[i].name, "Connection");
    }
    for (size_t i = 0; i < head.header_count; ++i) {
      const HeaderField& f = head.headers[i];
      if (isResponseHopByHop(f.name)) continue;
      if (has_connection && isNamedByConnection(head, f.name)) continue;
      response.headers.emplace_back(std::string(f.name), std::string(f.value));
    }
    if (framing_ == BodyFraming::kContentLength) response.content_length = head.content_length;
    response.has_body = framing_ != BodyFraming::kNone;
    response.origin = &origin();
    response.attempts = attempts_;
    remaining_ = head.content_length.value_or(0);
    keep_alive_ = head.keep_alive && framing_ != BodyFraming::kUntilClose;
    evbuffer_drain(in, head_end);  // the views above are dead from here
    if (hedge_) {
      // This origin answered first: the hedge is cancelled (its connection closed).
      hedge_.reset();
      if (budget_) budget_->hedges_lost.fetch_add(1, std::memory_order_relaxed);
    }
    if (hedge_timer_) event_del(hedge_timer_.get());
    noteResumable(response);
    if (framing_ == BodyFraming::kContentLength) body_end_ = head.content_length;

    phase_ = Phase::kBody;
    armTimer(origin().read_timeout);
    startRateWindow();
    {
      Guard guard(*this);
      observer_.onOriginResponse(std::move(response));
      if (!guard.alive) return;
    }
    if (phase_ != Phase::kBody) return;
    if (framing_ == BodyFraming::kNone ||
        (framing_ == BodyFraming::kContentLength && remaining_ == 0)) {
      finishBody();
      return;
    }
    processBody();
    return;
  }
}

bool Fetch::deliver(const uint8_t* data, size_t len) {
  delivered_ += len;  // before the call: the observer may destroy us
  Guard guard(*this);
  observer_.onOriginData(data, len);
  return guard.alive;
}

void Fetch::processBody() {
  evbuffer* in = bufferevent_get_input(conn_->bev.get());
  bool progressed = false;
  while (!paused_ && evbuffer_get_length(in) > 0) {
    // The input's own chunks, handed on in place; drained once they are delivered.
    evbuffer_iovec vec[16];
    const int n = evbuffer_peek(in, -1, nullptr, vec, 16);
    size_t consumed = 0;
    bool done = false;
    for (int i = 0; i < n && !done && !paused_; ++i) {
      const auto* p = static_cast<const uint8_t*>(vec[i].iov_base);
      const size_t len = vec[i].iov_len;
      switch (framing_) {
        case BodyFraming::kContentLength: {
          const size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, len));
          if (take > 0 && !deliver(p, take)) return;
          remaining_ -= take;
          consumed += take;
          done = remaining_ == 0;
          break;
        }
        case BodyFraming::kUntilClose:
          if (!deliver(p, len)) return;
          consumed += len;
          break;
        case BodyFraming::kChunked: {
          // Collect the runs first: the decoder must not be running if the observer destroys us.
          runs_.clear();
          size_t used = 0;
          const ChunkedDecoder::Status st = chunked_.feed(
              p, len, used, [this](const uint8_t* d, size_t l) { runs_.emplace_back(d, l); });
          for (const auto& [d, l] : runs_) {
            if (!deliver(d, l)) return;
          }
          consumed += used;
          if (st == ChunkedDecoder::Status::kError) {
            evbuffer_drain(in, consumed);
            bodyFailed(Status(Code::kInvalid, Source::kUpstream, chunked_.error()),
                       /*may_resume=*/false);
            return;
          }
          done = st == ChunkedDecoder::Status::kDone;
          break;
        }
        case BodyFraming::kNone:
          done = true;
          break;
      }
    }
    evbuffer_drain(in, consumed);
    progressed = progressed || consumed > 0;
    if (done) {
      finishBody();
      return;
    }
    if (consumed == 0) break;
  }
  if (progressed && !paused_) armTimer(origin().read_timeout);
}

void Fetch::finishBody() {
  stopTimers();
  bufferevent* bev = conn_->bev.get();
  if (evbuffer_get_length(bufferevent_get_input(bev)) > 0) {
    // More than the framing said, in the same read: see the file comment.
    const Status status(Code::kInvalid, Source::kUpstream, "origin sent more than its framing");
    bodyFailed(status, /*may_resume=*/false);
    return;
  }
  if (body_end_ && delivered_ != *body_end_) {
    // A resumed part whose own framing ended elsewhere than its Content-Range said.
    bodyFailed(Status(Code::kInvalid, Source::kUpstream,
                      "resumed body ended elsewhere than its Content-Range"),
               /*may_resume=*/false);
    return;
  }
  const bool reusable = keep_alive_ && request_written_ &&
                        evbuffer_get_length(bufferevent_get_output(bev)) == 0;
  phase_ = Phase::kDone;
  if (reusable) {
    core_->release(pool_key_, std::move(conn_), origin());
  } else {
    closeConnection();
  }
  request_hold_.reset();  // after pooling: a waiter on this worker may take the connection
  observer_.onOriginComplete();  // may destroy this
}

void Fetch::bodyFailed(Status status, bool may_resume) {
  // After onOriginResponse the observer has bytes: the only way on is a Range request for the
  // rest, to another origin, of the same representation (tryResume).
  stopTimers();
  closeConnection();
  request_hold_.reset();
  if (OriginHealth* health = core_->health()) {
    health->recordFailure(group_index_, origin_index_, SteadyClock::now());
  }
  if (OriginStats* stats = core_->stats()) {
    stats->error(group(), origin(), metrics::OriginErrorReason::kBody);
  }
  failed_origins_[origin_index_] = true;
  broke_origin_ = origin_index_;
  broke_from_ = nullptr;
  if (!broke_) {
    broke_ = true;
    resume_deadline_ = SteadyClock::now() + group().resume_deadline;
  }
  logOriginFailure(group(), origin(), status,
                   may_resume && resumable_ ? "resuming the body elsewhere if possible"
                                            : "response aborted");
  if (may_resume && tryResume(/*count_not_resumable=*/true)) return;
  phase_ = Phase::kDone;
  observer_.onOriginFailed(status);  // may destroy this
}

void Fetch::noteResumable(const OriginResponse& response) {
  // Only a whole GET answer (never HEAD, never a forwarded POST), with a body, from a group
  // that resumes. An original request with Range of its own is not ours to continue.
  bool has_range = false;
  for (const auto& [name, value] : request_.headers) {
    has_range = has_range || cache::equalsIgnoreCase(name, "Range");
  }
  resumable_ = request_.method == "GET" && response.status == 200 && response.has_body &&
               !has_range && group().resume_attempts > 0;
  if (resumable_) validators_ = resumeValidatorsOf(response.headers, response.content_length);
}

bool Fetch::tryResume(bool count_not_resumable) {
  if (!resumable_) return false;
  const conf::OriginGroupConfig& g = group();
  const char* refused = nullptr;
  std::optional<size_t> next;
  const auto now = SteadyClock::now();
  if (!validators_.usable()) {
    refused = "no strong ETag or Last-Modified to guard a Range request";
  } else if (resume_attempts_ >= g.resume_attempts) {
    refused = "resume_attempts used up";
  } else if (now >= resume_deadline_) {
    refused = "resume_deadline passed";
  } else {
    OriginHealth* health = core_->health();
    // The group's order (priority), skipping every origin that failed during this fetch and
    // those at their concurrency cap (a body half sent cannot wait in a queue).
    bool busy = false;
    for (size_t i = 0; i < g.origins.size() && !next; ++i) {
      if (failed_origins_[i]) continue;
      if (health && !health->isUp(group_index_, i, now)) continue;
      if (!takeRequestSlot(i)) {
        busy = true;
        continue;
      }
      if (!health || health->admit(group_index_, i, now)) {
        next = i;
      } else {
        request_hold_.reset();
      }
    }
    if (!next) {
      refused = busy ? "every other origin of the group is at its concurrency cap"
                     : "no other origin of the group is available";
    }
  }
  if (refused) {
    if (count_not_resumable) countResume(ResumeOutcome::kNotResumable, refused);
    return false;
  }
  ++resume_attempts_;
  resuming_ = true;
  origin_index_ = *next;
  deferred_events_ = 0;
  if (kick_) event_del(kick_.get());  // a pending body kick belongs to the broken origin
  // The same request, minus any range or conditional of its own, plus ours.
  OriginRequest ranged;
  ranged.method = request_.method;
  ranged.target = request_.target;
  ranged.host = request_.host;
  for (const auto& field : request_.headers) {
    if (!isFieldReplacedOnResume(field.first)) ranged.headers.push_back(field);
  }
  for (auto& field : resumeRequestFields(validators_, delivered_)) {
    ranged.headers.push_back(std::move(field));
  }
  stale_retry_done_ = false;
  attempt_started_ = now;
  if (OriginStats* stats = core_->stats()) stats->attempt(g, origin());
  pool_key_ = ClientCore::poolKey(group_index_, origin());
  wire_ = buildRequest(ranged, origin());
  connectAttempt(/*allow_pooled=*/true);
  return true;
}

// One stderr line per resume attempt (and per break that could not be resumed).
void Fetch::countResume(ResumeOutcome outcome, const char* detail) {
  const conf::OriginGroupConfig& g = group();
  const conf::OriginConfig& from = broke_from_ ? *broke_from_ : g.origins[broke_origin_];
  const bool attempted = outcome != ResumeOutcome::kNotResumable;
  if (OriginStats* stats = core_->stats()) {
    stats->resume(g, from, attempted ? &origin() : nullptr, outcome);
  }
  const std::string_view target = request_.target;
  const std::string_view path = target.substr(0, target.find('?'));  // no tokens in the log
  auto dcOf = [](const conf::OriginConfig& o) { return o.dc.empty() ? "-" : o.dc.c_str(); };
  std::string to;
  if (attempted) to = " to " + origin().name + " (dc " + dcOf(origin()) + ")";
  std::string why;
  if (detail && *detail) why = std::string(" (") + detail + ")";
  std::fprintf(stderr, "streamedge: resume of %.*s (group %s) from %s (dc %s)%s at byte %llu: %s%s\n",
               static_cast<int>(path.size()), path.data(), g.name.c_str(), from.name.c_str(),
               dcOf(from), to.c_str(), static_cast<unsigned long long>(delivered_),
               resumeOutcomeName(outcome), why.c_str());
}

void Fetch::onResumeHead(const ResponseHeadView& head, size_t head_end) {
  OriginStats* stats = core_->stats();
  if (stats) stats->latency(group(), origin(), SteadyClock::now() - attempt_started_);
  const char* why = "";
  ContentRange range;
  const ResumeOutcome outcome = checkResumeHead(validators_, delivered_, head, &why, &range);
  if (outcome == ResumeOutcome::kFailed) {
    // This origin cannot help (5xx, 404…); another may.
    const bool server_error = head.status >= 500;
    resumeAttemptFailed(Status(server_error ? Code::kUnavailable : Code::kInvalid,
                               Source::kUpstream, why, true),
                        server_error);
    return;
  }
  // The origin answered sensibly; what it answered is about the content, not its health.
  if (OriginHealth* health = core_->health()) health->recordSuccess(group_index_, origin_index_);
  countResume(outcome, why);
  if (outcome != ResumeOutcome::kOk) {
    // Never two versions in one body: the observer's part and this one do not fit together.
    resuming_ = false;
    finishFailed(Status(Code::kInvalid, Source::kUpstream, why));
    return;
  }
  resuming_ = false;
  framing_ = responseFraming(request_.method, head);
  remaining_ = head.content_length.value_or(0);
  keep_alive_ = head.keep_alive && framing_ != BodyFraming::kUntilClose;
  chunked_ = ChunkedDecoder();
  body_end_ = range.last + 1;
  // A chunked original learns its length here; a further resume must match it.
  if (!validators_.total_length && range.complete) validators_.total_length = range.complete;
  evbuffer_drain(bufferevent_get_input(conn_->bev.get()), head_end);
  phase_ = Phase::kBody;
  if (paused_) {
    // The observer paused between origins: keep the 206's bytes in the socket until resume(),
    // and run no timer meanwhile (the first-byte one is still armed).
    bufferevent_disable(conn_->bev.get(), EV_READ);
    stopTimers();
    return;
  }
  armTimer(origin().read_timeout);
  startRateWindow();
  processBody();
}

void Fetch::resumeAttemptFailed(Status status, bool record_health) {
  stopTimers();
  cancelDns();
  leaveQueue();
  closeConnection();
  request_hold_.reset();
  conn_hold_.reset();
  if (record_health) {
    if (OriginHealth* health = core_->health()) {
      health->recordFailure(group_index_, origin_index_, SteadyClock::now());
    }
  }
  if (OriginStats* stats = core_->stats()) stats->error(group(), origin(), errorReason(status));
  failed_origins_[origin_index_] = true;
  countResume(ResumeOutcome::kFailed, status.detail());
  resuming_ = false;
  if (tryResume(/*count_not_resumable=*/false)) return;
  finishFailed(status);
}

void Fetch::attemptFailed(Status status, bool record_health) {
  looked_up_ = false;  // that answer was for this attempt's origin
  if (resuming_) {
    resumeAttemptFailed(std::move(status), record_health);
    return;
  }
  if (timer_) event_del(timer_.get());
  cancelDns();
  leaveQueue();
  closeConnection();
  request_hold_.reset();
  conn_hold_.reset();
  failed_origins_[origin_index_] = true;  // never asked again by a resume of this fetch
  if (record_health) {
    if (OriginHealth* health = core_->health()) {
      health->recordFailure(group_index_, origin_index_, SteadyClock::now());
    }
  }
  last_failure_ = status;
  if (hedge_) {
    // The hedge is already asking the next origin: it carries the fetch from here on.
    logOriginFailure(group(), origin(), status, "the hedged request carries on");
    if (OriginStats* stats = core_->stats()) stats->error(group(), origin(), errorReason(status));
    delegated_ = true;
    phase_ = Phase::kDone;
    if (hedge_timer_) event_del(hedge_timer_.get());
    return;
  }
  // A request that may have reached the origin is only re-sent elsewhere when that is safe,
  // before the fetch's retry_deadline, and while the group's retry budget allows.
  bool may_retry = hasNextCandidate() && (!request_sent_ || mayFailOverAfterSend());
  const char* outcome = "giving up";
  if (may_retry) {
    const auto now = SteadyClock::now();
    if (deadlinePassed(now)) {
      may_retry = false;
      outcome = "giving up: retry_deadline passed";
    } else if (!retry_granted_ && budget_ &&
               !budget_->tryRetry(now, group().retry_budget, group().retry_budget_min)) {
      may_retry = false;
      outcome = "giving up: the group's retry budget is exhausted";
    } else {
      outcome = "trying the next origin";
    }
  }
  retry_granted_ = false;
  logOriginFailure(group(), origin(), status, outcome);
  if (OriginStats* stats = core_->stats()) {
    stats->error(group(), origin(), errorReason(status));
    if (may_retry) stats->failover(group(), origin());
  }
  if (may_retry) {
    startAttempt();
    return;
  }
  finishFailed(status);
}

void Fetch::finishFailed(Status status) {
  stopTimers();
  cancelDns();
  leaveQueue();
  closeConnection();
  request_hold_.reset();
  conn_hold_.reset();
  if (hedge_timer_) event_del(hedge_timer_.get());
  if (hedge_) {
    hedge_.reset();
    if (budget_) budget_->hedges_lost.fetch_add(1, std::memory_order_relaxed);
  }
  phase_ = Phase::kDone;
  observer_.onOriginFailed(status);  // may destroy this
}

// ---- hedging ------------------------------------------------------------------------------

void Fetch::hedgeCb(evutil_socket_t, short, void* arg) { static_cast<Fetch*>(arg)->maybeStartHedge(); }

void Fetch::maybeStartHedge() {
  // Only while no head has come (a resume is never hedged), once per fetch.
  if (hedge_started_ || delegated_ || resuming_ || !core_) return;
  if (phase_ != Phase::kQueued && phase_ != Phase::kResolving && phase_ != Phase::kConnecting &&
      phase_ != Phase::kWaitingHead) {
    return;
  }
  const conf::OriginGroupConfig& g = group();
  OriginHealth* health = core_->health();
  const auto now = SteadyClock::now();
  if (deadlinePassed(now)) return;
  // The next origin in the group's order that this fetch has not asked.
  std::optional<size_t> next;
  for (size_t i = 0; i < g.origins.size() && !next; ++i) {
    if (tried_[i] || i == origin_index_) continue;
    if (all_down_ || !health || health->isUp(group_index_, i, now)) next = i;
  }
  if (!next) return;
  // A hedge is one more request to the other origins: it spends the retry budget.
  if (budget_ && !budget_->tryRetry(now, g.retry_budget, g.retry_budget_min)) return;
  hedge_started_ = true;
  std::vector<bool> tried = tried_;
  tried[origin_index_] = true;
  for (size_t i = 0; i < *next; ++i) tried[i] = true;  // the hedge starts at `next`
  tried_[*next] = true;  // and this fetch never fails over to it
  const size_t left = max_attempts_ > static_cast<size_t>(attempts_)
                          ? max_attempts_ - static_cast<size_t>(attempts_)
                          : 1;
  auto hedge = std::make_unique<Fetch>(*core_, config_, group_index_, request_, relay_);
  hedge->makeHedge(std::move(tried), left);
  if (budget_) budget_->hedges_started.fetch_add(1, std::memory_order_relaxed);
  hedge_ = std::move(hedge);
  hedge_->begin();
}

void Fetch::abandonOwnAttempt() {
  stopTimers();
  cancelDns();
  leaveQueue();
  closeConnection();  // mid-request: never pooled
  request_hold_.reset();
  conn_hold_.reset();
  if (hedge_timer_) event_del(hedge_timer_.get());
  if (kick_) event_del(kick_.get());
  phase_ = Phase::kDone;
  delegated_ = true;
}

void Fetch::onHedgeResponse(OriginResponse&& response) {
  if (!delegated_) abandonOwnAttempt();  // the hedge's head came first
  hedge_answered_ = true;
  if (budget_) budget_->hedges_won.fetch_add(1, std::memory_order_relaxed);
  observer_.onOriginResponse(std::move(response));  // may destroy this (and the hedge)
}

void Fetch::onHedgeFailed(Status status) {
  if (delegated_) {
    // The hedge carried the fetch (it answered, or this fetch's own attempt failed first).
    if (!hedge_answered_ && budget_) budget_->hedges_lost.fetch_add(1, std::memory_order_relaxed);
    phase_ = Phase::kDone;
    observer_.onOriginFailed(status);  // may destroy this (and the hedge)
    return;
  }
  // The hedge failed before any head; this fetch's own attempt goes on. The hedge may be
  // destroyed inside its onOriginFailed.
  if (budget_) budget_->hedges_lost.fetch_add(1, std::memory_order_relaxed);
  hedge_.reset();
}

void Fetch::HedgeRelay::onOriginResponse(OriginResponse&& response) {
  fetch.onHedgeResponse(std::move(response));
}
void Fetch::HedgeRelay::onOriginData(const uint8_t* data, size_t len) {
  fetch.observer_.onOriginData(data, len);
}
void Fetch::HedgeRelay::onOriginComplete() { fetch.observer_.onOriginComplete(); }
void Fetch::HedgeRelay::onOriginFailed(Status status) { fetch.onHedgeFailed(status); }

}  // namespace

// ---- OriginClient -------------------------------------------------------------------------

struct OriginClient::Impl final : ClientCore {
  using ClientCore::ClientCore;
};

OriginClient::OriginClient(event_base* base, std::shared_ptr<OriginHealth> health,
                           OriginStats* stats, std::shared_ptr<OriginLimits> limits)
    : impl_(std::make_unique<Impl>(base, std::move(health), stats, std::move(limits))) {}

OriginClient::~OriginClient() = default;

std::unique_ptr<OriginFetch> OriginClient::start(const conf::Config& config, size_t group_index,
                                                 OriginRequest request, OriginObserver& observer) {
  auto fetch = std::make_unique<Fetch>(*impl_, config, group_index, std::move(request), observer);
  fetch->begin();
  return fetch;
}

std::unique_ptr<OriginFetch> OriginClient::continueBody(const conf::Config& config,
                                                        size_t group_index, OriginRequest request,
                                                        const ResumeValidators& validators,
                                                        uint64_t offset,
                                                        const conf::OriginConfig& from,
                                                        OriginObserver& observer) {
  request.hedge_after = Millis(0);
  auto fetch = std::make_unique<Fetch>(*impl_, config, group_index, std::move(request), observer);
  fetch->makeContinuation(validators, offset, from);
  fetch->begin();
  return fetch;
}

void OriginClient::closeIdle() { impl_->closeIdle(); }

void OriginClient::setTls(tls::TlsStatePtr tls) { impl_->setTls(std::move(tls)); }

void OriginClient::setHostsFile(std::string path) { impl_->setHostsFile(std::move(path)); }

}  // namespace streamedge::proxy
