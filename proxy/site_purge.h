// SitePurge: the fan-out of a site-wide purge (POST /purge?...&scope=site on the admin listener,
// with a [cluster]). The edge that receives it purges its own cache first (AdminActions), then
// this sends the same purge to the admin listener of every other peer of the current membership
// at once — `[cluster] admin_port` (default: this server's own admin port) on the peer's host —
// and collects one outcome per peer within `[cluster] purge_timeout`.
//
// Each request to a peer carries the query it was given with scope=local instead of scope=site
// (a peer never fans out again, whatever its membership says: no loops) and a `Streamedge-Peer`
// field signed by PeerTier::sign over "POST", the Host it sends and the target, which the peer's
// AdminActions accepts in place of an admin token for /purge only.
//
// The answer (sitePurgeJson) and its status: 200 when the local purge and every peer answered
// 200; 207 Multi-Status when any of them did not (a peer unreachable, timed out or refusing):
// the purge did happen where it could, and the body says where it did not.
//
// Over HTTPS when this edge's admin listener is TLS (the peers share the layout): each peer's
// admin certificate is verified like a peer's viewer certificate (conf::clusterPeerTlsOrigin:
// [cluster] ca_file, tls_server_name, an IP host against the certificate's IP addresses); no
// client certificate is presented (the HMAC says who asks), so a peer admin listener with
// client_ca refuses the fan-out. Peer host names are resolved by libevent's blocking resolver on
// the admin loop; numeric peers (the usual case) need none.
//
// Pure functions are thread-safe; SitePurge lives on one event_base (the admin loop).
#pragma once

#include <event2/event.h>
#include <event2/http.h>
#include <openssl/ssl.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.h"
#include "conf/units.h"
#include "proxy/admin_auth.h"
#include "proxy/peer_tier.h"
#include "proxy/purge.h"

namespace streamedge::proxy {

// What one peer answered to its part of a site purge.
struct PeerPurgeOutcome {
  std::string peer;       // the peer's name in the cluster (its viewer listener "host:port")
  int status = 0;         // the peer admin's HTTP status; 0: no answer (see error)
  int64_t objects = -1;   // a 200 answer's "objects"; < 0: none
  std::string error;      // empty when status is 200; else "timeout", "connection failed",
                          // "bad answer", "cannot connect" or the peer's own error text
  bool ok() const { return status == 200 && error.empty(); }
};

// 200 when `local` and every peer are 200, else 207.
int sitePurgeStatus(const PurgeResult& local, const std::vector<PeerPurgeOutcome>& peers);

// The answer to a site purge (one line):
//   {"scope":"site","self":"127.0.0.2:8080","objects":7,"local":{...runPurge's JSON...},
//    "peers":[{"peer":"127.0.0.3:8080","status":200,"objects":3},
//             {"peer":"127.0.0.4:8080","error":"timeout"}]}
// "objects" sums the local and the peers' 200 answers.
std::string sitePurgeJson(std::string_view self, const PurgeResult& local,
                          const std::vector<PeerPurgeOutcome>& peers);

// "/purge?" + `query` without its scope parameter, followed by "scope=local". The other
// parameters keep their bytes (their percent-encoding included) and their order.
std::string peerPurgeTarget(std::string_view query);

// Fills `out` from a peer's answer: status, and "objects" of a 200 body, or the "error" text
// of a refusal (else "HTTP <status>"); a 200 without a readable "objects" is a "bad answer".
void readPeerPurgeAnswer(int status, std::string_view body, PeerPurgeOutcome& out);

// The host part of a peer name ("10.0.0.3:8080" → "10.0.0.3", "[::1]:8080" → "::1"). False
// when `peer` has no ":port".
bool peerHostOf(std::string_view peer, std::string& host);

// The Host field value for `host` and `port` ("[::1]:9901" for IPv6).
std::string hostFieldOf(std::string_view host, uint16_t port);

// The verdict on a /purge that carries a `Streamedge-Peer` field `field` (AdminActions): allowed
// with who = "peer:<from>" when `peers` (null: no [cluster]) verifies its MAC over `method`,
// `host` (the Host field) and `target` at `now_unix`; else forbidden with the reason in `why`.
AdminAuthResult judgePeerPurge(const PeerTier* peers, std::string_view field,
                               std::string_view method, std::string_view host,
                               std::string_view target, int64_t now_unix);

class SitePurge {
 public:
  // Called once, from the event loop, with one outcome per peer (in membership order).
  using Done = std::function<void(std::vector<PeerPurgeOutcome>)>;

  // Sends the purge `query` (the admin request's, scope=site included) to every peer of `tier`
  // but this edge, each at `admin_port` on its host. `done` runs when every peer answered or
  // failed, or when `timeout` has passed (the peers still pending get "timeout"); with no other
  // peer it runs from the loop's next iteration. Null only when the loop's events cannot be
  // made. With `tls_origin`, every request goes over TLS with `tls_ctx` (the peers' client
  // context; null: every peer fails), verified as `tls_origin` says (host and port per peer).
  static std::unique_ptr<SitePurge> start(event_base* base, const PeerTier& tier,
                                          uint16_t admin_port, std::string_view query,
                                          Millis timeout, Done done, SSL_CTX* tls_ctx = nullptr,
                                          const conf::OriginConfig* tls_origin = nullptr);
  // Frees the peer connections without calling `done` (the admin loop is going away).
  ~SitePurge();
  SitePurge(const SitePurge&) = delete;
  SitePurge& operator=(const SitePurge&) = delete;

 private:
  struct Slot {
    SitePurge* owner = nullptr;
    PeerPurgeOutcome outcome;
    evhttp_connection* conn = nullptr;
    int error = -1;  // enum evhttp_request_error, from the error callback
    bool done = false;
  };
  SitePurge() = default;
  static void requestCb(evhttp_request* req, void* arg);
  static void errorCb(evhttp_request_error error, void* arg);
  static void finishCb(evutil_socket_t, short, void* arg);
  void slotDone(Slot& slot);
  void freeConnections();

  std::vector<std::unique_ptr<Slot>> slots_;
  size_t pending_ = 0;
  event* timer_ = nullptr;   // the purge_timeout
  event* finish_ = nullptr;  // activated when the last peer answered
  Done done_;
};

}  // namespace streamedge::proxy
