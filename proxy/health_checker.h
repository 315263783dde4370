// HealthChecker: active health checks of every origin whose group has [origin_group.health_check],
// run on the main thread's loop. Each check is one real HTTP/1.1 request on a fresh connection
// (plain or TLS with the origin's client context from tls/, the name resolved with evdns):
//   GET <path> HTTP/1.1 / Host: <health_check.host or the origin's host[:port]> /
//   Connection: close
// read up to the complete response head (the strict parser of http_parser.h; the body is not
// read). It passes when the status is within expected_status before `timeout` (which covers
// resolution, connect, TLS handshake and the head); anything else fails: refused, reset, TLS
// failure, a head the parser refuses, another status, the timeout. Outcomes go to
// OriginHealth::recordCheck, which applies fall/rise and logs and counts transitions.
// Checks of one origin start every `interval` (the first at once) and never overlap. The
// origin URL's path is not prefixed: `path` is the path on the origin server as written.
//
// Thread-safety: main thread only. Ownership: the checker keeps its config snapshot, TLS
// contexts and the OriginHealth alive; destroying it cancels every check (no callback after),
// which is how a reload (a new checker for the new config) and a graceful stop end them.
#pragma once

#include <event2/event.h>

#include <memory>
#include <vector>

#include "conf/config.h"
#include "proxy/name_resolver.h"
#include "proxy/origin_health.h"
#include "tls/tls_state.h"


namespace streamedge::proxy {

class HealthChecker {
 public:
  HealthChecker(event_base* base, conf::ConfigPtr config, tls::TlsStatePtr tls,
                std::shared_ptr<OriginHealth> health);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Origins checked (every origin of every group with [health_check]).
  size_t checkedOrigins() const { return probes_.size(); }

  struct Probe;  // one origin's checks (health_checker.cc)

 private:
  friend struct Probe;
  NameResolver& resolver();  // created on first use (an origin given by name)

  event_base* const base_;
  const conf::ConfigPtr config_;
  const tls::TlsStatePtr tls_;
  const std::shared_ptr<OriginHealth> health_;
  std::unique_ptr<NameResolver> resolver_;  // before probes_: outlives their lookups
  std::vector<std::unique_ptr<Probe>> probes_;  // declared last: destroyed first
};

}  // namespace streamedge::proxy
