// Origin names to addresses, asynchronously, on one event loop (a worker's, or the main
// thread's for health checks). Never blocks and never runs a callback inside resolve().
//
//   resolve(host) ──IP literal──────────────────────────────> addresses now
//        │ ──cached, younger than min(TTL, max_ttl)──────────> addresses now
//        │ ──in the hosts file (evdns_getaddrinfo on a base
//        │   with no nameservers: answers at once or not)───> addresses now (kept max_ttl)
//        └──> A and AAAA queries in parallel (evdns_base_resolve_ipv4/ipv6, which report the
//             answer's TTL); callers asking for the same name meanwhile join the same query.
//             Both answers in → addresses (AAAA and A interleaved, at most 8) kept for the
//             smaller TTL of the two, capped by the caller's max_ttl.
//
// A TTL of 0, or max_ttl 0, is not cached. A name that does not resolve is not cached either
// (the next connection asks again). The nameservers are /etc/resolv.conf's unless the config
// names its own ([dns] nameservers).
//
// Lifetime: evdns runs its callbacks on the loop, also after a cancel, so each query's context
// belongs to its callbacks; the resolver only detaches from it (cancel, destructor).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "conf/clock.h"
#include "conf/units.h"

struct event_base;
struct evdns_base;

namespace streamedge::proxy {

struct SockAddr {
  sockaddr_storage storage{};
  socklen_t len = 0;
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  uint16_t port() const;
  void setPort(uint16_t port);
  bool operator==(const SockAddr& o) const;
};

// `host` as an IPv4 or IPv6 literal (no brackets) with `port`; false when it is a name.
bool ipLiteral(const std::string& host, uint16_t port, SockAddr& out);

struct ResolverOptions {
  std::vector<std::string> nameservers;  // "ip", "ip:port", "[v6]:port"; empty = resolv.conf
  std::string hosts_file = "/etc/hosts";  // "" = none
};

class NameResolver {
 public:
  // At most this many addresses of one name are kept and tried.
  static constexpr size_t kMaxAddresses = 8;

  // `addrs` empty: the name did not resolve (`why` says how).
  using Done = std::function<void(std::vector<SockAddr> addrs, const char* why)>;

  NameResolver(event_base* base, ResolverOptions options);
  ~NameResolver();
  NameResolver(const NameResolver&) = delete;
  NameResolver& operator=(const NameResolver&) = delete;

  // Answers known now (literal, cache, hosts file): fills `out` with `port` set and returns 0.
  // Otherwise starts or joins a lookup and returns a ticket; `done` runs later on the loop,
  // unless cancel(ticket) came first. `max_ttl` caps how long an answer is reused.
  uint64_t resolve(const std::string& host, uint16_t port, Millis max_ttl,
                   std::vector<SockAddr>& out, Done done);
  void cancel(uint64_t ticket);

  // False when the latest answer for `host` does not list `addr` (port ignored): the name has
  // moved away from it. True for a literal, an unknown name or a listed address.
  bool stillListed(const std::string& host, const SockAddr& addr) const;

  // Called with every answer that has addresses (port 0), before its waiters.
  using AnswerObserver = std::function<void(const std::string& host,
                                            const std::vector<SockAddr>& addrs)>;
  void setAnswerObserver(AnswerObserver observer) { observer_ = std::move(observer); }

  // DNS queries sent (A and AAAA count one each), for tests and /status.
  uint64_t queriesSent() const { return queries_sent_; }

  struct Query;  // name_resolver.cc

 private:
  struct Waiter {
    uint64_t ticket;  // 0 once cancelled
    uint16_t port;
    Done done;
  };
  friend struct Query;
  bool fromHostsFile(const std::string& host, std::vector<SockAddr>& out);
  // A fresh cached answer for `host` under `max_ttl` into `out` (port 0); drops a dead one.
  bool fromCache(const std::string& host, Millis max_ttl, std::vector<SockAddr>& out);
  Query* startQuery(const std::string& host);  // with no waiter yet
  evdns_base* dns();
  void finished(Query* q);  // both answers in: cache, then call the waiters

  event_base* const base_;
  const ResolverOptions options_;
  evdns_base* dns_ = nullptr;    // nameservers; created on first use
  evdns_base* hosts_ = nullptr;  // hosts file only (no nameservers)
  bool setup_done_ = false;
  struct Cached {
    std::vector<SockAddr> addrs;  // port 0
    MonoTime received;
    Millis ttl{0};
  };
  std::unordered_map<std::string, Cached> cache_;
  std::unordered_map<std::string, Query*> queries_;  // in flight, by name
  AnswerObserver observer_;
  std::vector<Waiter>* finishing_ = nullptr;  // the waiters being called back now
  uint64_t next_ticket_ = 1;
  uint64_t queries_sent_ = 0;
};

}  // namespace streamedge::proxy
