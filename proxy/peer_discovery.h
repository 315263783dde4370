// PeerDiscovery: the cluster's membership from DNS ([cluster] dns, conf/config.h), e.g. a
// Kubernetes headless Service. Every dns_interval (and on resolveNow(), at SIGHUP) it asks:
//
//   SRV name ("_http._tcp.edge.ns.svc.cluster.local") ──own UDP query, proxy/dns_message.h──>
//     (truncated: the same query over TCP) ──> targets + ports
//     ──NameResolver (evdns) A/AAAA of each target──> "ip:port" members
//   plain name ──NameResolver A/AAAA──> "ip:dns_port" members
//
// A round that yields at least one member gives the new membership: sorted canonical
// "host:port" ("[v6]:port" for IPv6), at most 256. When it differs from the last one, `publish`
// runs with it (the server then publishes a config with those peers, conf::setClusterPeers).
// A failed round (timeout, SERVFAIL, NXDOMAIN, no records, no target resolving) changes
// nothing: the last good membership stays, and before the first answer the config's static
// peers do. evdns has no SRV helper nor a raw query API, hence the small UDP query of our own
// (libevent's evdns_base_resolve_* know only A, AAAA and PTR).
//
// Main thread only (its loop). `publish` runs on the loop, or inside reconfigure() /
// resolveNow() when the round needs no query (names that are IP literals).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "conf/config.h"
#include "proxy/dns_message.h"
#include "proxy/name_resolver.h"

struct bufferevent;
struct event;
struct event_base;

namespace streamedge::proxy {

class PeerDiscovery {
 public:
  // A new membership (sorted, not empty), and the peers it adds and removes.
  using Publish = std::function<void(const std::vector<std::string>& members,
                                     const std::vector<std::string>& added,
                                     const std::vector<std::string>& removed)>;

  // `config.cluster.dns` must be set. The first round starts at once.
  PeerDiscovery(event_base* base, const conf::Config& config, Publish publish);
  ~PeerDiscovery();
  PeerDiscovery(const PeerDiscovery&) = delete;
  PeerDiscovery& operator=(const PeerDiscovery&) = delete;

  // A reloaded config: new settings, and a round now (the answer may have changed meanwhile).
  // A changed name or server forgets the last membership.
  void reconfigure(const conf::Config& config);
  // A round now, unless one is in flight.
  void resolveNow();

  // The last good membership; empty before the first answer.
  const std::vector<std::string>& members() const { return members_; }
  int64_t lastResolveUnixMs() const { return last_resolve_unix_ms_; }  // 0: none yet
  int64_t lastSuccessUnixMs() const { return last_success_unix_ms_; }
  const std::string& lastError() const { return last_error_; }  // "" when the last round worked
  uint64_t changes() const { return changes_; }                 // memberships published

 private:
  struct Round;
  static void timerCb(int, short, void* arg);
  static void srvReadCb(int fd, short what, void* arg);
  static void srvTcpReadCb(bufferevent* bev, void* arg);
  static void srvTcpEventCb(bufferevent* bev, short what, void* arg);
  void startRound();
  void sendSrvQuery();
  void onSrvAnswer(short what);
  void sendSrvQueryTcp();
  void onSrvMessage(const dns::Answer& answer);
  void resolveTargets(std::vector<std::pair<std::string, uint16_t>> targets);
  void targetDone();
  void finishRound(const char* error);
  void schedule();
  void closeSrvSocket();

  event_base* const base_;
  Publish publish_;
  std::string name_;
  bool srv_ = false;
  uint16_t port_ = 0;
  // This server as the config names it (cluster.self), and when that is a host name, the
  // host and port to resolve each round: a member whose address is one of its addresses is
  // this server and is published under the config's name, so that the ring has it once and
  // every edge of the site (each naming itself, e.g. by its pod's DNS name) ranks the same
  // members.
  std::string self_;
  std::string self_host_;
  uint16_t self_port_ = 0;
  Millis interval_{10'000};
  std::string server_;  // nameserver of the SRV query, "ip" / "ip:port" / "[v6]:port"
  ResolverOptions resolver_options_;
  std::unique_ptr<NameResolver> resolver_;

  event* timer_ = nullptr;
  std::unique_ptr<Round> round_;  // in flight, or null

  std::vector<std::string> members_;
  int64_t last_resolve_unix_ms_ = 0;
  int64_t last_success_unix_ms_ = 0;
  std::string last_error_;
  uint64_t changes_ = 0;
};

// "ip:port" of the SRV queries' nameserver: `configured` (cluster.dns_server or the first
// [dns] nameserver) when set, else the first nameserver of `resolv_conf`. Empty when none.
std::string srvNameserver(const std::string& configured, const std::string& resolv_conf);

// The canonical member text of an address: "a.b.c.d:port" or "[v6]:port".
std::string memberAddress(const SockAddr& addr);

}  // namespace streamedge::proxy
