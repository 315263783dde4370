#include "proxy/name_resolver.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>

namespace streamedge::proxy {

uint16_t SockAddr::port() const {
  if (storage.ss_family == AF_INET) {
    return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
  }
  if (storage.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
  }
  return 0;
}

void SockAddr::setPort(uint16_t port) {
  if (storage.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&storage)->sin_port = htons(port);
  } else if (storage.ss_family == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port = htons(port);
  }
}

bool SockAddr::operator==(const SockAddr& o) const {
  return len == o.len && std::memcmp(&storage, &o.storage, len) == 0;
}

bool ipLiteral(const std::string& host, uint16_t port, SockAddr& out) {
  out = SockAddr{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out.storage);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    out.len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    out.len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

namespace {

// A hosts-file answer does not expire by itself: max_ttl alone bounds its reuse.
constexpr Millis kHostsTtl = std::chrono::hours(24 * 365);

void addUnique(std::vector<SockAddr>& list, const SockAddr& a) {
  if (list.size() < NameResolver::kMaxAddresses &&
      std::find(list.begin(), list.end(), a) == list.end()) {
    list.push_back(a);
  }
}

std::vector<SockAddr> withPort(std::vector<SockAddr> addrs, uint16_t port) {
  for (SockAddr& a : addrs) a.setPort(port);
  return addrs;
}

// One evdns_getaddrinfo on the hosts-only base. It answers at once (hosts entry, "localhost")
// or starts a request that can never be answered (the base has no nameserver), which is
// cancelled; its callback then runs later on the loop and frees this.
struct HostsProbe {
  bool abandoned = false;
  bool answered = false;
  std::vector<SockAddr> addrs;

  static void cb(int result, evutil_addrinfo* res, void* arg) {
    auto* self = static_cast<HostsProbe*>(arg);
    if (result == 0) {
      for (evutil_addrinfo* ai = res; ai; ai = ai->ai_next) {
        if (!ai->ai_addr || ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
        SockAddr a;
        std::memcpy(&a.storage, ai->ai_addr, ai->ai_addrlen);
        a.len = static_cast<socklen_t>(ai->ai_addrlen);
        addUnique(self->addrs, a);
      }
    }
    if (res) evutil_freeaddrinfo(res);
    self->answered = true;
    if (self->abandoned) delete self;
  }
};

}  // namespace

struct NameResolver::Query {
  NameResolver* owner = nullptr;  // null once the resolver is gone
  std::string host;
  evdns_request* a = nullptr;     // in flight until its callback ran
  evdns_request* aaaa = nullptr;
  int pending = 2;
  std::vector<SockAddr> v4, v6;
  int ttl = std::numeric_limits<int>::max();  // smallest TTL of the answers with addresses
  const char* why = nullptr;
  std::vector<Waiter> waiters;

  static void v4Cb(int result, char type, int count, int ttl, void* addresses, void* arg) {
    auto* q = static_cast<Query*>(arg);
    q->a = nullptr;
    q->answer(result, type, count, ttl, addresses);
  }
  static void v6Cb(int result, char type, int count, int ttl, void* addresses, void* arg) {
    auto* q = static_cast<Query*>(arg);
    q->aaaa = nullptr;
    q->answer(result, type, count, ttl, addresses);
  }

  void answer(int result, char type, int count, int answer_ttl, void* addresses) {
    if (result == DNS_ERR_NONE && count > 0 && addresses) {
      if (type == DNS_IPv4_A) {
        const auto* in = static_cast<const in_addr*>(addresses);
        for (int i = 0; i < count; ++i) {
          SockAddr s;
          auto* sin = reinterpret_cast<sockaddr_in*>(&s.storage);
          sin->sin_family = AF_INET;
          sin->sin_addr = in[i];
          s.len = sizeof(sockaddr_in);
          addUnique(v4, s);
        }
      } else if (type == DNS_IPv6_AAAA) {
        const auto* in6 = static_cast<const in6_addr*>(addresses);
        for (int i = 0; i < count; ++i) {
          SockAddr s;
          auto* sin6 = reinterpret_cast<sockaddr_in6*>(&s.storage);
          sin6->sin6_family = AF_INET6;
          sin6->sin6_addr = in6[i];
          s.len = sizeof(sockaddr_in6);
          addUnique(v6, s);
        }
      }
      ttl = std::min(ttl, std::max(answer_ttl, 0));
    } else if (result != DNS_ERR_NONE && result != DNS_ERR_NODATA && !why) {
      why = evdns_err_to_string(result);
    }
    if (--pending > 0) return;
    if (owner) owner->finished(this);
    delete this;
  }
};

NameResolver::NameResolver(event_base* base, ResolverOptions options)
    : base_(base), options_(std::move(options)) {}

NameResolver::~NameResolver() {
  for (auto& [host, q] : queries_) {
    q->owner = nullptr;  // its callbacks run later (cancelled) and free it
    if (q->a) evdns_cancel_request(dns_, q->a);
    if (q->aaaa) evdns_cancel_request(dns_, q->aaaa);
  }
  queries_.clear();
  if (dns_) evdns_base_free(dns_, 0);
  if (hosts_) evdns_base_free(hosts_, 0);
}

evdns_base* NameResolver::dns() {
  if (setup_done_) return dns_;
  setup_done_ = true;
  if (options_.nameservers.empty()) {
    // Reads /etc/resolv.conf once, on the first name that is not in the hosts file.
    dns_ = evdns_base_new(base_, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                     EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    return dns_;
  }
  dns_ = evdns_base_new(base_, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
  if (!dns_) return nullptr;
  for (const std::string& ns : options_.nameservers) {
    if (evdns_base_nameserver_ip_add(dns_, ns.c_str()) != 0) {
      std::fprintf(stderr, "streamedge: cannot use nameserver %s for origin names\n", ns.c_str());
    }
  }
  return dns_;
}

bool NameResolver::fromHostsFile(const std::string& host, std::vector<SockAddr>& out) {
  if (!hosts_) {
    hosts_ = evdns_base_new(base_, 0);  // no nameservers: answers from the hosts file only
    if (!hosts_) return false;
    if (!options_.hosts_file.empty() &&
        evdns_base_load_hosts(hosts_, options_.hosts_file.c_str()) != 0) {
      std::fprintf(stderr, "streamedge: cannot read hosts file %s for origin names\n",
                   options_.hosts_file.c_str());
    }
  }
  evutil_addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  auto* probe = new HostsProbe;
  evdns_getaddrinfo_request* req = evdns_getaddrinfo(hosts_, host.c_str(), nullptr, &hints,
                                                     &HostsProbe::cb, probe);
  if (!probe->answered) {
    probe->abandoned = true;  // the cancelled request's callback frees it
    if (req) evdns_getaddrinfo_cancel(req);
    return false;
  }
  out = std::move(probe->addrs);
  delete probe;
  return !out.empty();
}

bool NameResolver::fromCache(const std::string& host, Millis max_ttl,
                             std::vector<SockAddr>& out) {
  auto it = cache_.find(host);
  if (it == cache_.end()) return false;
  const auto now = std::chrono::steady_clock::now();
  if (now < it->second.received + std::min(it->second.ttl, max_ttl)) {
    out = it->second.addrs;
    return true;
  }
  if (now >= it->second.received + it->second.ttl) cache_.erase(it);
  return false;
}

uint64_t NameResolver::resolve(const std::string& host, uint16_t port, Millis max_ttl,
                               std::vector<SockAddr>& out, Done done) {
  out.clear();
  SockAddr literal;
  if (ipLiteral(host, port, literal)) {
    out.push_back(literal);
    return 0;
  }
  std::vector<SockAddr> known;
  if (fromCache(host, max_ttl, known)) {
    out = withPort(std::move(known), port);
    return 0;
  }
  if (fromHostsFile(host, known)) {
    // Kept like an answer whose TTL is max_ttl (the file is read once).
    if (max_ttl.count() > 0) cache_[host] = Cached{known, std::chrono::steady_clock::now(), kHostsTtl};
    out = withPort(std::move(known), port);
    return 0;
  }
  const uint64_t ticket = next_ticket_++;
  Query* q = nullptr;
  if (auto it = queries_.find(host); it != queries_.end()) {
    q = it->second;
  } else {
    q = startQuery(host);
  }
  q->waiters.push_back({ticket, port, std::move(done)});
  return ticket;
}

bool NameResolver::stillListed(const std::string& host, const SockAddr& addr) const {
  auto it = cache_.find(host);
  if (it == cache_.end()) return true;
  SockAddr bare = addr;
  bare.setPort(0);
  const auto& addrs = it->second.addrs;
  return std::find(addrs.begin(), addrs.end(), bare) != addrs.end();
}

NameResolver::Query* NameResolver::startQuery(const std::string& host) {
  evdns_base* dns_base = dns();
  auto* q = new Query;
  q->owner = this;
  q->host = host;
  queries_.emplace(host, q);
  if (dns_base) {
    q->a = evdns_base_resolve_ipv4(dns_base, host.c_str(), 0, &Query::v4Cb, q);
    q->aaaa = evdns_base_resolve_ipv6(dns_base, host.c_str(), 0, &Query::v6Cb, q);
    queries_sent_ += (q->a != nullptr) + (q->aaaa != nullptr);
  }
  // A request that could not be made never calls back.
  q->pending = (q->a != nullptr) + (q->aaaa != nullptr);
  if (q->pending == 0) {
    // Answered on the loop like any other failure, never inside resolve().
    q->why = dns_base ? "DNS query could not be sent" : "evdns_base_new failed";
    q->pending = 1;
    event_base_once(base_, -1, EV_TIMEOUT,
                    [](evutil_socket_t, short, void* arg) {
                      static_cast<Query*>(arg)->answer(DNS_ERR_UNKNOWN, 0, 0, 0, nullptr);
                    },
                    q, nullptr);
  }
  return q;
}

void NameResolver::cancel(uint64_t ticket) {
  if (ticket == 0) return;
  const auto match = [&](const Waiter& w) { return w.ticket == ticket; };
  if (finishing_) {
    auto it = std::find_if(finishing_->begin(), finishing_->end(), match);
    if (it != finishing_->end()) {
      it->ticket = 0;  // not called back
      return;
    }
  }
  for (auto& [host, q] : queries_) {
    auto it = std::find_if(q->waiters.begin(), q->waiters.end(), match);
    if (it != q->waiters.end()) {
      q->waiters.erase(it);  // the query goes on: its answer is cached for the next connection
      return;
    }
  }
}

void NameResolver::finished(Query* q) {
  queries_.erase(q->host);
  std::vector<SockAddr> addrs;
  for (size_t i = 0; i < std::max(q->v4.size(), q->v6.size()); ++i) {
    if (i < q->v6.size()) addUnique(addrs, q->v6[i]);
    if (i < q->v4.size()) addUnique(addrs, q->v4[i]);
  }
  if (!addrs.empty() && q->ttl > 0) {
    cache_[q->host] = Cached{addrs, std::chrono::steady_clock::now(), Millis(int64_t{q->ttl} * 1000)};
  }
  if (!addrs.empty() && observer_) observer_(q->host, addrs);
  const char* why = addrs.empty() ? (q->why ? q->why : "the name has no address") : nullptr;
  // A callback may start or cancel other lookups: the waiters leave the query first.
  std::vector<Waiter> waiters = std::move(q->waiters);
  finishing_ = &waiters;
  for (Waiter& w : waiters) {
    if (w.ticket == 0) continue;
    w.ticket = 0;
    w.done(withPort(addrs, w.port), why);
  }
  finishing_ = nullptr;
}

}  // namespace streamedge::proxy
