// OriginClient: one per worker. Fetches from an origin group over pooled keep-alive HTTP/1.1
// connections (bufferevents, the strict parser of http_parser.h), trying origins in priority
// order and failing over to the next on connect error, timeout or 5xx *before* the response head
// is handed to the observer. The body is streamed to the observer as it arrives. A GET body that
// breaks off afterwards (closed, reset, read timeout, slower than the group's min_rate) goes on
// from another origin of the group with a Range request guarded by the first answer's validators
// (proxy/origin_resume.h): the observer sees one continuous body. A body that cannot be resumed,
// or is longer than its framing, is reported as a failure; such a connection is never reused.
//
// Origin protection (proxy/origin_limits.h, shared by every worker's client): per origin at most
// max_concurrent_requests requests in flight and max_connections connections open; a fetch at
// the cap goes to another origin of the same priority or waits in a bounded queue, and fails
// with Code::kBusy (the proxy answers 503) when the queue is full or the wait times out. Retries
// before the first byte stop at the group's retry_deadline and retry budget. A GET with
// OriginRequest::hedge_after asks the next origin too when the first has not answered the head
// in time; the first head wins, the other request is cancelled, the observer sees one response.
// An origin name is resolved with evdns and each of its addresses is tried before the next
// origin.
//
// Thread-compatibility: everything runs on the owning worker's event loop. Origin health
// (active checks, passive ejection, recovery ramp) is shared across workers through
// OriginHealth (proxy/origin_health.h).
#pragma once

#include <event2/event.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "conf/config.h"
#include "conf/status.h"
#include "proxy/origin_health.h"
#include "proxy/origin_resume.h"
#include "tls/tls_state.h"

namespace streamedge::proxy {

struct OriginRequest {
  std::string method = "GET";   // GET or HEAD (other methods when a route forwards them)
  std::string target;           // origin-form path?query, before the origin's base_path
  std::string host;             // Host to send; empty → the origin's host[:port]
  std::vector<std::pair<std::string, std::string>> headers;  // end-to-end fields to send
  std::string body;             // for forwarded non-GET requests
  // Hedging (GET only; the route's hedge_after for playlists and MPDs): when the first origin
  // has not answered the head this long after the fetch started, the next origin of the group
  // is asked too and the first head wins (the other request is cancelled). 0 = off.
  Millis hedge_after{0};
};

// An origin response head, owned (the parser's views do not outlive the read buffer).
struct OriginResponse {
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;  // hop-by-hop fields removed
  std::optional<uint64_t> content_length;  // when framed by Content-Length
  bool has_body = true;                    // false for HEAD, 204, 304
  const conf::OriginConfig* origin = nullptr;  // which origin answered (valid with the config)
  int attempts = 1;                        // origins tried
};

class OriginObserver {
 public:
  // Exactly one of onOriginResponse (then data*, then complete or failed) or onOriginFailed.
  virtual void onOriginResponse(OriginResponse&& response) = 0;
  virtual void onOriginData(const uint8_t* data, size_t len) = 0;
  // The body is complete and matched its framing. The observer may destroy the fetch here.
  virtual void onOriginComplete() = 0;
  // No usable response from any origin tried, or the body broke after onOriginResponse and could
  // not be resumed from another origin. The observer may destroy the fetch here.
  virtual void onOriginFailed(Status status) = 0;

 protected:
  ~OriginObserver() = default;
};

class OriginFetch {
 public:
  virtual ~OriginFetch() = default;  // cancels: no callback after destruction
  // Flow control for the body: pause() stops reading the origin (no read timeout runs while
  // paused; bytes already read are kept, not delivered); resume() reads on, delivering what was
  // kept first, from the loop (never inside resume()). May be called from onOriginData. A pause
  // that falls between two origins (a mid-body resume) holds the resumed body until resume().
  virtual void pause() = 0;
  virtual void resume() = 0;
};

// The Host field of a request to `origin`: host[:port], an IPv6 literal in brackets, the
// scheme's default port left out.
std::string originHostField(const conf::OriginConfig& origin);

class OriginStats;
class OriginLimits;

class OriginClient {
 public:
  // `stats` (may be null): this worker's origin accounting; must outlive the client.
  // `limits`: the origin protection state shared by every worker's client (caps, queues, retry
  // budgets: proxy/origin_limits.h); null gives this client limits of its own.
  OriginClient(event_base* base, std::shared_ptr<OriginHealth> health,
               OriginStats* stats = nullptr, std::shared_ptr<OriginLimits> limits = nullptr);
  ~OriginClient();

  // Starts a fetch from group `group_index` of `config`. Callbacks run later on this loop, never
  // inside start(). The config must outlive the fetch.
  std::unique_ptr<OriginFetch> start(const conf::Config& config, size_t group_index,
                                     OriginRequest request, OriginObserver& observer);

  // Continues a body that broke in a fetch from another group (a peer that died mid-body): asks
  // the origins of `group_index` in order for `request` with `Range: bytes=<offset>-` guarded
  // by `validators` (the first answer's; proxy/origin_resume.h), within the group's
  // resume_attempts and resume_deadline. The observer gets no onOriginResponse: the rest of the
  // body (onOriginData), then onOriginComplete, or onOriginFailed when no origin gave a 206 of
  // the same representation. `from` (where the body broke: the log line and the dc label of
  // streamedge_origin_resumes_total) must outlive the fetch, like the config.
  std::unique_ptr<OriginFetch> continueBody(const conf::Config& config, size_t group_index,
                                            OriginRequest request,
                                            const ResumeValidators& validators, uint64_t offset,
                                            const conf::OriginConfig& from,
                                            OriginObserver& observer);

  // Closes idle pooled connections (config change, shutdown).
  void closeIdle();

  // The TLS contexts for https origins; a fetch pins the snapshot current at its start. Without
  // one (or for an origin it does not know), https attempts fail as a local error.
  void setTls(tls::TlsStatePtr tls);

  // A hosts file (hosts(5) format) consulted for origin names before DNS, read when the first
  // origin name is resolved ("" = only the system's /etc/hosts). Before any fetch.
  void setHostsFile(std::string path);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace streamedge::proxy
