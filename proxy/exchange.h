// Exchange: one request and its response — runs the request steps for a request its framing
// (the wire format: HTTP/1.1 in ClientConnection, HTTP/2 beside it) has parsed, and delivers the
// response from a cache object by reference (no copy), while the object is still being filled
// if need be. Nothing here knows which framing carries it, or whether a connection carries one
// request at a time.
//
// The request steps (one place, one line each):
//   Recv     the framing reads and parses the head (limits and strictness → 4xx through
//            reject()); onRequest() keeps what the steps need
//   Route    normalise the path; a leading /<segment>/<token>/ of a route that accepts path
//            tokens is taken off; Host → vhost, path → route; none → 404
//   Admit    signed-URL token of a token_auth route (url_token.h) → 403; method → 405
//   Lookup   cache index: Hit | Stale | Ssd | Miss | Busy | Pass
//   Hit      deliver the complete object
//   Stale    within stale-while-revalidate: deliver stale + background revalidation;
//            else revalidate (or join the revalidation in flight) and wait
//   Ssd      not in RAM, fresh on SSD: our fill is completed by an SSD read (origin if it fails)
//   Miss     start a FillJob (the one origin fetch) and read the object as it fills
//   Busy     attach as a reader of the object being filled (COALESCED)
//   Pass     a private fill for this viewer only (uncacheable route/method/response)
//   Deliver  head (+Age, Via, X-Cache), 304/206/416 as the request asks, body by reference;
//            the identity bytes, or an encoded copy kept with the object (compression.h)
//   Synth    one error → status mapper for everything that fails before the head is sent
//   Log      one access-log line and the metrics, once the framing has sent the response
//
// Worker thread only, except onObjectChanged() (any thread; posts a wake-up to the worker).
// Owned by its framing, which outlives it; an exchange is reused for the next request on the
// same connection after reset().
//
// Calls into the framing may end the connection (and delete this exchange with it): every such
// call is the last thing a step does.
#pragma once

#include <event2/event.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cache/cache.h"
#include "conf/config.h"
#include "proxy/compression.h"
#include "proxy/fill_job.h"
#include "proxy/http_parser.h"
#include "proxy/range.h"
#include "proxy/request_fields.h"
#include "proxy/router.h"
#include "proxy/shared_state.h"
#include "streaming/cmcd.h"
#include "streaming/ll_hls.h"

namespace streamedge::proxy {

class Worker;

// The standard reason phrase of `status` ("Unknown" for one we never send).
const char* reasonPhrase(int status);

// The connection a viewer's exchanges arrive on; owned by the framing, fixed for its life except
// the log address cache.
struct Viewer {
  uint64_t connection_id = 0;  // what Worker::wake() is told
  uint64_t listener_id = 0;    // proxy/listener_table.h
  sockaddr_storage addr{};     // ss_family AF_UNSPEC when unknown
  bool tls = false;
  bool http2 = false;  // the connection speaks HTTP/2 (the `protocol` label of the metrics)
  // The anonymised client address for the logs, computed once per connection (and again only if
  // a reload changes [log] client_address).
  std::string log_client;
  std::optional<conf::AddressAnonymization> log_client_mode;

  const sockaddr* address() const {
    return addr.ss_family == AF_UNSPEC ? nullptr : reinterpret_cast<const sockaddr*>(&addr);
  }
};

// A response head as the steps made it; the framing puts it on the wire in its own form.
struct ResponseOut {
  int status = 0;
  std::string_view reason;  // the origin's or the standard phrase (HTTP/1.1 only)
  // End-to-end fields as "Name: value\r\n" lines (Content-Length included when known); never
  // Connection, Transfer-Encoding or other connection-specific fields: those are the framing's.
  std::string_view fields;
  // A body follows through sendBody(); unknown length (HTTP/1.1: chunked, or the close for
  // HTTP/1.0) when `fields` carries no Content-Length.
  bool body_follows = false;
  bool length_known = true;
  std::string_view inline_body;  // a small body sent with the head (synthesized answers)
  bool synthesized = false;      // made here (Synth, redirect), not from an object
  bool close = false;            // the request was refused in a way that ends the connection
};

// Body bytes handed to a framing by reference: [pos, end) of `*body`. The framing advances `pos`
// as it queues bytes (references to the body's memory, pinned; never a copy).
struct BodyCursor {
  static constexpr uint64_t kUnknownEnd = ~uint64_t{0};
  cache::Body* body = nullptr;
  uint64_t pos = 0;
  uint64_t end = 0;  // exclusive; kUnknownEnd until the object completes
};

// What an exchange asks of its framing. One call per response step (head, each pump of the
// body, end), never one per body chunk.
class Framing {
 public:
  // Deliver / Synth: puts the response head on the wire (with the framing's own fields).
  virtual void sendHead(const ResponseOut& head) = 0;
  // Deliver: queues bytes from `cursor` by reference as far as they exist, advancing
  // cursor.pos; stops early once `max_queued` bytes wait ahead of the viewer (0: no bound) and
  // calls Exchange::onWritable() when the viewer took some.
  virtual void sendBody(BodyCursor& cursor, size_t max_queued) = 0;
  // The whole response is queued: calls Exchange::onResponseSent() once the viewer took it
  // (possibly from within this call).
  virtual void endResponse() = 0;
  // Admit: a forwarded request's body of `length` bytes is read into Exchange::requestBody(),
  // then Exchange::onRequestBody() is called.
  virtual void readRequestBody(uint64_t length, bool expect_continue) = 0;
  // The response cannot be completed (its fill broke off mid-body, the viewer was cut): the
  // viewer must see it broken, never short and whole. Ends the exchange (and may delete it).
  virtual void abort() = 0;
  // The TLS version of the viewer's connection (SSL_get_version), null for plain HTTP.
  virtual const char* tlsVersion() const = 0;
  // The viewer connection's socket (TCP_INFO for CMSD), -1 when there is none.
  virtual int socketFd() const = 0;

 protected:
  ~Framing() = default;
};

class Exchange final : public cache::ObjectWaiter {
 public:
  enum class Phase {
    kIdle,         // no request (the framing reads the next head)
    kReadingBody,  // a forwarded request's body
    kWaiting,      // waiting for an object's head
    kSending,      // head sent, body streaming from the object
    kFlushing,     // everything queued; waiting for the framing to send it
  };

  Exchange(Worker& worker, Framing& framing, Viewer& viewer);
  ~Exchange();
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  Phase phase() const { return phase_; }

  // Recv: a request the framing parsed (views into `raw`, the head as received; the framing may
  // reuse it once this returns). `started`: when its head was read. Keeps what the steps need;
  // run() then runs them (the framing consumes its input in between).
  void receive(const RequestHead& head, std::string_view raw,
               std::chrono::steady_clock::time_point started);
  void run();
  // Recv: a request the framing refused (`status` 4xx): answered by Synth, then the connection
  // closes.
  void reject(int status, const char* detail, std::chrono::steady_clock::time_point started);
  // Admit: the body the framing read (readRequestBody).
  std::string& requestBody() { return request_body_; }
  void onRequestBody();
  // The viewer took queued body bytes (after sendBody stopped at its bound).
  void onWritable();
  // Log: the framing sent the whole response. Afterwards the exchange is reset (kIdle).
  void onResponseSent();
  // Forgets the request (unsubscribes from its object); kIdle.
  void reset();

  // Any thread: an object this exchange reads has changed.
  void onObjectChanged() noexcept override;
  // Worker thread: handle the wake-up posted by onObjectChanged.
  void onWake();
  bool wakePending() const { return wake_pending_.load(std::memory_order_acquire); }

 private:
  void handleRequest();                      // Route, admit, Lookup
  // Route: takes a path token (/<segment>/<token>/rest) off path_ when the route of the rest
  // accepts it there; `match` becomes that route's.
  void takePathToken(RouteMatch& match);
  // Admit: the route's token_auth. False when the request was refused (403 sent, counted and
  // written to the security log).
  bool admitToken();
  // [cluster] (proxy/exchange_peer.cc): answers the peers' health checks and verifies a
  // request that claims to come from a peer (403 and a security-log line when it does not
  // verify). False when the request was answered here.
  bool admitPeer();
  void lookupStep();                         // Lookup (again, after a Vary mismatch)
  // Lookup, LL-HLS blocking reload (_HLS_msn) of a live playlist the edge knows
  // (proxy/live_playlists.h): answered at once from the newest stored playlist when it has the
  // asked segment or part (HIT), 400 when the request is too far ahead of it; otherwise sets
  // the hold bound and returns false (the ordinary lookup follows).
  bool blockingReloadStep();
  cache::CacheKey playlistUrlKey() const;   // key_ without the delivery directives
  // The hold bound of a blocking reload that waits for its fill: 503 at hold_limit_.
  void armHoldTimer();
  void cancelHoldTimer();
  static void holdTimerCb(evutil_socket_t, short, void* arg);
  void onHoldExpired();
  void startFill(cache::FillWriter fill, bool pass);
  FillRequest makeFillRequest(bool pass);
  // The viewer's fields an origin request carries (proxy/request_fields.h), into `out`.
  ForwardedFields forwardedFields(bool shared_fill, FieldList& out) const;
  // Prefetches the object the request's CMCD nor names (route prefetch on).
  void prefetchCmcdNext();
  InvalidationScope invalidationScope() const;  // for an unsafe method's fill
  void readFromSsd(cache::FillWriter fill);  // Lookup found a fresh SSD copy
  void startPass();
  // The client's miss budget ([origin_group] client_miss_rate) allows one more origin request;
  // otherwise answers 429 and returns false.
  bool missAllowed();                          // Pass
  void waitOn(cache::ObjectRef object);      // Busy / Miss: read the object as it fills
  void onObjectProgress();
  bool joinedAnotherVariant() const;         // Busy: the fill's answer is another variant
  void lookupAgain();
  void deliverHead();                        // Deliver
  // Compression (proxy/compression.h). Whether to keep waiting for the whole object before
  // delivering, so that it can be encoded; and which representation deliverHead() sends
  // (sets rep_ and vary_accept_encoding_; encodes and attaches the copy when it is missing).
  bool awaitWholeForEncoding();
  void chooseRepresentation();
  void countEncodedAnswer();  // metrics of an encoded answer with a body
  void sendHeadAndBody(ResponseOut& head, bool send_body, bool complete);
  void pump();
  void finishBody();
  void synth(int status, const char* detail, bool close);  // Synth
  void logExchange();                        // Log
  void unsubscribe();
  // Via, X-Cache, Cache-Status. `synthesized`: an error answer made here.
  void appendDeliveryFields(bool synthesized = false);
  void appendCacheStatus(bool synthesized);
  // Hands the head (its fields out_, unless set) to the framing and records the time to first
  // byte.
  void writeHead(ResponseOut& head);
  void appendHsts();
  void redirectToHttps(uint16_t https_port);  // plain listener with redirect_https

  // const after construction
  Worker& worker_;
  Framing& framing_;
  Viewer& viewer_;

  std::atomic<bool> wake_pending_{false};
  Phase phase_ = Phase::kIdle;

  // The request in progress (reset between requests; strings keep their capacity).
  conf::ConfigPtr config_;
  const conf::VhostConfig* vhost_ = nullptr;
  const conf::RouteConfig* route_ = nullptr;
  std::string method_, target_, raw_path_, path_, query_, host_;
  // Signed URLs (routes with token_auth only): the query before filtering, the token taken
  // off the path, the Cookie fields' places in raw_head_, and scratch for decoding.
  std::string raw_query_, path_token_, token_value_, token_scratch_;
  std::vector<std::pair<uint32_t, uint32_t>> cookie_fields_;  // (offset, length) in raw_head_
  std::string range_, if_none_match_, if_modified_since_, if_range_;
  AcceptEncoding accept_encoding_;
  // The request head as received, kept (in a buffer reused across requests) so that fills and
  // passes can forward the viewer's fields without copying them on every hit.
  std::string raw_head_;
  // Cluster: the Streamedge-Peer field, if any, and whether it verified (a peer's request: no
  // token check, no miss budget, never sent to another peer).
  std::string peer_claim_;
  bool has_peer_claim_ = false;
  bool peer_request_ = false;
  // The viewer's request fields as the cache sees them (Vary), parsed from raw_head_ on first
  // use: only URLs whose answers vary ask.
  class ViewerFields final : public cache::RequestFieldSource {
   public:
    explicit ViewerFields(const Exchange& owner) : owner_(owner) {}
    // Exactly the fields a shared fill of this request sends the origin (forwardedFields): a
    // field the route keeps from the origin, or one a Connection field names, cannot select a
    // variant (the origin never saw it), and the client address field the route adds does.
    std::span<const cache::FieldLine> fieldLines() const override;
    void reset(bool routed) {
      parsed_ = false;
      routed_ = routed;
    }

   private:
    const Exchange& owner_;
    bool routed_ = false;
    mutable FieldList fields_;                     // capacity reused
    mutable std::vector<cache::FieldLine> lines_;  // views into fields_
    mutable bool parsed_ = false;
  };
  ViewerFields viewer_fields_{*this};
  std::shared_ptr<const cache::VaryNames> vary_names_;  // the URL's, when its answers vary
  bool vary_retried_ = false;  // looked up again after joining another variant's fill
  std::string request_body_;
  uint64_t request_body_length_ = 0;
  bool is_get_ = false, is_head_ = false;
  bool origin_precondition_ = false;  // If-Match / If-Unmodified-Since: only the origin answers
  bool max_forwards_zero_ = false;    // "Max-Forwards: 0" (answered here for OPTIONS)
  bool expect_continue_ = false;
  bool has_body_ = false, chunked_body_ = false;
  // LL-HLS delivery directives of a playlist request (validated before keying).
  std::optional<streaming::DeliveryDirectives> directives_;
  Millis hold_limit_{0};        // a blocking reload waits at most this long for its fill (0: none)
  event* hold_timer_ = nullptr;  // created on first use, freed with the exchange
  bool from_newer_playlist_ = false;  // a blocking reload answered by the URL's newest playlist
  // CMCD the player sent (query parameter and CMCD-* fields): aggregate metrics only.
  streaming::CmcdData cmcd_;
  void countCmcd();
  cache::CacheKey key_;
  cache::ObjectRef object_;   // delivered or awaited
  cache::ObjectRef stale_;    // fallback for stale-if-error
  // The encoded representation delivered instead of object_'s identity bytes (owned by
  // object_, alive while it is held); null for identity.
  const cache::DerivedRepresentation* rep_ = nullptr;
  conf::ContentCoding rep_coding_ = conf::ContentCoding::kGzip;  // rep_'s
  bool vary_accept_encoding_ = false;  // an identity answer that adds Vary: Accept-Encoding
  bool subscribed_ = false;
  bool own_fill_ = false;     // this request started the fill it reads
  bool ssd_read_ = false;     // ...from an SSD copy (a hit, unless the origin had to fill it)
  bool passed_ = false;       // already fell back to a private fetch once
  CacheResult result_ = CacheResult::kNone;
  int status_ = 0;
  BodyCursor body_;           // what the framing sends next
  uint64_t body_start_ = 0;   // body_.pos when the body began (bytes sent = pos - start)
  bool body_started_ = false;
  std::chrono::steady_clock::time_point started_{};
  double ttfb_ms_ = 0;
  std::string out_;           // scratch for the response head's fields
};

}  // namespace streamedge::proxy
