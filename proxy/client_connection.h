// ClientConnection: one viewer connection on one worker — reads HTTP/1.1 requests with the strict
// parser, runs each through the request steps, and delivers the response from a cache object
// by reference (no copy), while the object is still being filled if need be.
//
// The request steps (one place, one line each):
//   Recv     read and parse the head; limits and strictness → 4xx (Synth)
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
//   Log      one access-log line, then the next request on the connection or close
//
// Worker thread only, except onObjectChanged() (any thread; posts a wake-up to the worker).
#pragma once

#include <event2/bufferevent.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
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
#include "tls/tls_state.h"

namespace streamedge::proxy {

class Worker;

class ClientConnection final : public cache::ObjectWaiter {
 public:
  // Takes ownership of `bev` (a socket bufferevent, or an accepting bufferevent_openssl for a
  // TLS listener, made by the worker). `tls`: the TLS snapshot the connection's SSL was made
  // from, pinned for the connection's life (its callbacks refer to it); null for plain HTTP.
  // `listener_id` / `metric_slot`: the listener it came in on (proxy/listener_table.h).
  ClientConnection(Worker& worker, uint64_t id, bufferevent* bev, const sockaddr* addr,
                   int socklen, uint64_t listener_id, size_t metric_slot, tls::TlsStatePtr tls);
  ~ClientConnection();
  ClientConnection(const ClientConnection&) = delete;
  ClientConnection& operator=(const ClientConnection&) = delete;

  bool start();
  uint64_t id() const { return id_; }
  // Between two requests on a keep-alive connection (graceful stop closes these).
  bool idle() const { return state_ == State::kReadingHead; }
  // Closes the connection now if it is idle; otherwise after the current response.
  void closeWhenIdle();
  // Closes the connection now, busy or not (its listener's drain deadline passed). Deletes this.
  void closeAtDeadline() { closeNow(); }
  uint64_t listenerId() const { return listener_id_; }

  // Any thread: an object this connection reads has changed.
  void onObjectChanged() noexcept override;
  // Worker thread: handle the wake-up posted by onObjectChanged.
  void onWake();

 private:
  enum class State {
    kReadingHead,  // waiting for (the rest of) a request head
    kReadingBody,  // a forwarded request's body
    kWaiting,      // waiting for an object's head
    kSending,      // head sent, body streaming from the object
    kFlushing,     // everything queued; waiting for the socket to take it
  };

  static void readCb(bufferevent* bev, void* arg);
  static void writeCb(bufferevent* bev, void* arg);
  static void eventCb(bufferevent* bev, short what, void* arg);

  void onRead();
  void onWriteDrained();
  void onEvent(short what);

  void parseRequest();                       // Recv
  void handleRequest();                      // Route, admit, Lookup
  // Route: takes a path token (/<segment>/<token>/rest) off path_ when the route of the rest
  // accepts it there; `match` becomes that route's.
  void takePathToken(RouteMatch& match);
  // Admit: the route's token_auth. False when the request was refused (403 sent, counted and
  // written to the security log).
  bool admitToken();
  void lookupStep();                         // Lookup (again, after a Vary mismatch)
  void startFill(cache::FillWriter fill, bool pass);
  FillRequest makeFillRequest(bool pass);
  // The viewer's fields an origin request carries (proxy/request_fields.h), into `out`.
  ForwardedFields forwardedFields(bool shared_fill, FieldList& out) const;
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
  void sendHeadAndBody(bool send_body, bool complete);
  void pump();
  void finishBody();
  void synth(int status, const char* detail, bool close);  // Synth
  void onResponseDone();                     // Log, then next request or close
  void closeNow();
  void resetExchange();
  void setReadTimeout(std::chrono::milliseconds t);
  void appendStatusLine(int status, std::string_view reason);
  // Via, X-Cache, Cache-Status, Connection. `synthesized`: an error answer made here.
  void appendDeliveryFields(bool synthesized = false);
  void appendCacheStatus(bool synthesized);
  void writeHead();  // queues out_ (the response head) and records the time to first byte
  void appendHsts();
  void redirectToHttps(uint16_t https_port);  // plain listener with redirect_https

  // const after construction
  Worker& worker_;
  const uint64_t id_;
  const uint64_t listener_id_;
  const size_t metric_slot_;  // in connections_active_by_listener
  sockaddr_storage client_addr_{};
  bufferevent* bev_ = nullptr;
  const tls::TlsStatePtr tls_;  // non-null: TLS connection (never write to the fd directly)

  std::atomic<bool> wake_pending_{false};
  State state_ = State::kReadingHead;
  bool close_after_response_ = false;
  bool handshake_done_ = false;  // TLS: counted as ok or failed once
  bool closing_ = false;

  // The exchange in progress (reset between requests; strings keep their capacity).
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
  // The viewer's request fields as the cache sees them (Vary), parsed from raw_head_ on first
  // use: only URLs whose answers vary ask.
  class ViewerFields final : public cache::RequestFieldSource {
   public:
    explicit ViewerFields(const ClientConnection& owner) : owner_(owner) {}
    // Exactly the fields a shared fill of this request sends the origin (forwardedFields): a
    // field the route keeps from the origin, or one a Connection field names, cannot select a
    // variant (the origin never saw it), and the client address field the route adds does.
    std::span<const cache::FieldLine> fieldLines() const override;
    void reset(bool routed) {
      parsed_ = false;
      routed_ = routed;
    }

   private:
    const ClientConnection& owner_;
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
  bool origin_precondition_ = false;
  bool max_forwards_zero_ = false;    // "Max-Forwards: 0" (answered here for OPTIONS)  // If-Match / If-Unmodified-Since: only the origin answers
  bool keep_alive_ = true;
  bool expect_continue_ = false;
  int version_minor_ = 1;
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
  uint64_t body_pos_ = 0;
  uint64_t body_end_ = 0;     // exclusive; kUnknownEnd until the object completes
  bool chunked_out_ = false;
  uint64_t bytes_sent_ = 0;
  bool counted_active_ = false;  // start() counted this connection as active
  // The anonymised client address for the access log, computed once per connection (and again
  // only if a reload changes [log] client_address).
  std::string log_client_;
  std::optional<conf::AddressAnonymization> log_client_mode_;
  std::chrono::steady_clock::time_point started_{};
  double ttfb_ms_ = 0;
  std::string out_;           // scratch for the response head
  int write_depth_ = 0;       // responses finished inside one callback (pipelining)
  static constexpr int kMaxWriteDepth = 16;

  static constexpr uint64_t kUnknownEnd = ~uint64_t{0};
};

}  // namespace streamedge::proxy
