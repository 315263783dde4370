#include "proxy/peer_discovery.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "proxy/dns_message.h"

namespace streamedge::proxy {
namespace {

constexpr size_t kMaxMembers = 256;  // proxy/peer_ring.h
// One SRV query waits at most this long (or the interval, when shorter): a round that times
// out keeps the last membership and the next one asks again.
constexpr Millis kSrvTimeout{3'000};

int64_t unixMillisNow() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "ip", "ip:port" or "[v6]:port" (port 53 when absent).
bool parseNameserver(const std::string& text, SockAddr& out) {
  if (ipLiteral(text, 53, out)) return true;
  std::string host;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find("]:");
    if (close == std::string::npos) return false;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos) return false;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  const int p = std::stoi(port);
  if (p <= 0 || p > 65535) return false;
  return ipLiteral(host, static_cast<uint16_t>(p), out);
}

}  // namespace

std::string srvNameserver(const std::string& configured, const std::string& resolv_conf) {
  if (!configured.empty()) return configured;
  std::ifstream in(resolv_conf);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string key;
    std::string value;
    if (words >> key >> value && key == "nameserver") return value;
  }
  return "";
}

std::string memberAddress(const SockAddr& addr) {
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.storage.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr.storage);
    inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text);
    return "[" + std::string(text) + "]:" + std::to_string(addr.port());
  }
  const auto* a = reinterpret_cast<const sockaddr_in*>(&addr.storage);
  inet_ntop(AF_INET, &a->sin_addr, text, sizeof text);
  return std::string(text) + ":" + std::to_string(addr.port());
}

// One resolution in flight: the SRV query's socket (UDP, then TCP after a truncated answer),
// then the targets' lookups.
struct PeerDiscovery::Round {
  int fd = -1;
  event* read_event = nullptr;
  bufferevent* tcp = nullptr;
  SockAddr server;             // the nameserver
  std::vector<uint8_t> query;  // the SRV query, sent again over TCP
  uint16_t id = 0;
  std::vector<uint64_t> tickets;  // resolver lookups not answered yet (0 once answered)
  size_t pending = 0;
  std::set<std::string> found;
  std::set<std::string> self_found;  // this server's own addresses (self_host_ resolved)
  std::string target_error;  // the first target that did not resolve, for the log
};

PeerDiscovery::PeerDiscovery(event_base* base, const conf::Config& config, Publish publish)
    : base_(base), publish_(std::move(publish)) {
  timer_ = evtimer_new(base_, timerCb, this);
  reconfigure(config);
}

PeerDiscovery::~PeerDiscovery() {
  if (round_) {
    // Cancelled lookups never call back (name_resolver.h).
    for (uint64_t t : round_->tickets) {
      if (t != 0 && resolver_) resolver_->cancel(t);
    }
    closeSrvSocket();
  }
  if (timer_) event_free(timer_);
}

void PeerDiscovery::reconfigure(const conf::Config& config) {
  const conf::ClusterConfig& c = config.cluster;
  std::string server = c.dns_server;
  if (server.empty() && !config.dns.nameservers.empty()) server = config.dns.nameservers.front();
  ResolverOptions options{server.empty() ? config.dns.nameservers : std::vector<std::string>{server},
                          config.dns.hosts_file};
  const bool same = c.dns == name_ && c.dns_srv == srv_ && c.dns_port == port_ &&
                    server == server_ && options.nameservers == resolver_options_.nameservers &&
                    options.hosts_file == resolver_options_.hosts_file;
  if (!same) {
    // A round of the old settings must not publish into the new ones.
    if (round_) {
      for (uint64_t t : round_->tickets) {
        if (t != 0 && resolver_) resolver_->cancel(t);
      }
      closeSrvSocket();
      round_.reset();
    }
    if (c.dns != name_ || c.dns_srv != srv_ || c.dns_port != port_) members_.clear();
    name_ = c.dns;
    srv_ = c.dns_srv;
    port_ = c.dns_port;
    server_ = server;
    resolver_options_ = options;
    resolver_ = std::make_unique<NameResolver>(base_, resolver_options_);
  }
  interval_ = c.dns_interval;
  self_ = c.self;
  self_host_.clear();
  self_port_ = 0;
  const size_t colon = self_.rfind(':');
  if (!self_.empty() && self_.front() != '[' && colon != std::string::npos) {
    std::string host = self_.substr(0, colon);
    in_addr v4{};
    if (inet_pton(AF_INET, host.c_str(), &v4) != 1) {
      self_host_ = std::move(host);
      self_port_ = static_cast<uint16_t>(std::strtoul(self_.c_str() + colon + 1, nullptr, 10));
    }
  }
  resolveNow();
}

void PeerDiscovery::resolveNow() {
  if (round_) return;
  evtimer_del(timer_);
  startRound();
}

void PeerDiscovery::timerCb(int, short, void* arg) {
  auto* self = static_cast<PeerDiscovery*>(arg);
  if (!self->round_) self->startRound();
}

void PeerDiscovery::schedule() {
  const timeval tv{static_cast<time_t>(interval_.count() / 1000),
                   static_cast<suseconds_t>((interval_.count() % 1000) * 1000)};
  evtimer_add(timer_, &tv);
}

void PeerDiscovery::startRound() {
  round_ = std::make_unique<Round>();
  last_resolve_unix_ms_ = unixMillisNow();
  if (srv_) {
    sendSrvQuery();
    return;
  }
  resolveTargets({{name_, port_}});
}

void PeerDiscovery::sendSrvQuery() {
  const std::string server = srvNameserver(server_, "/etc/resolv.conf");
  SockAddr to;
  if (server.empty() || !parseNameserver(server, to)) {
    return finishRound(server.empty() ? "no nameserver (cluster.dns_server, [dns] nameservers or "
                                        "/etc/resolv.conf)"
                                      : "the nameserver is not an IP address");
  }
  Round& r = *round_;
  evutil_secure_rng_get_bytes(&r.id, sizeof r.id);
  std::vector<uint8_t>& query = r.query;
  if (!dns::buildQuery(r.id, name_, dns::kTypeSrv, query)) return finishRound("invalid name");
  r.server = to;
  r.fd = ::socket(to.storage.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  // connect(): the kernel then drops datagrams from any other address (an off-path answer
  // must also guess the port and the random id).
  if (r.fd < 0 || ::connect(r.fd, to.get(), to.len) != 0 ||
      ::send(r.fd, query.data(), query.size(), 0) != static_cast<ssize_t>(query.size())) {
    closeSrvSocket();
    return finishRound("cannot send the SRV query");
  }
  r.read_event = event_new(base_, r.fd, EV_READ | EV_PERSIST, srvReadCb, this);
  const Millis wait = std::min(kSrvTimeout, interval_);
  const timeval tv{static_cast<time_t>(wait.count() / 1000),
                   static_cast<suseconds_t>((wait.count() % 1000) * 1000)};
  event_add(r.read_event, &tv);
}

void PeerDiscovery::closeSrvSocket() {
  if (!round_) return;
  if (round_->tcp) {
    bufferevent_free(round_->tcp);
    round_->tcp = nullptr;
  }
  if (round_->read_event) {
    event_free(round_->read_event);
    round_->read_event = nullptr;
  }
  if (round_->fd >= 0) {
    ::close(round_->fd);
    round_->fd = -1;
  }
}

void PeerDiscovery::srvReadCb(int, short what, void* arg) {
  static_cast<PeerDiscovery*>(arg)->onSrvAnswer(what);
}

void PeerDiscovery::onSrvAnswer(short what) {
  if (what & EV_TIMEOUT) {
    closeSrvSocket();
    return finishRound("SRV query timed out");
  }
  uint8_t buffer[dns::kMaxUdpPayload];
  const ssize_t n = ::recv(round_->fd, buffer, sizeof buffer, 0);
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return;
    closeSrvSocket();
    return finishRound("SRV query failed (nameserver unreachable)");
  }
  dns::Answer answer;
  const char* error = dns::parseAnswer(std::span<const uint8_t>(buffer, static_cast<size_t>(n)),
                                       round_->id, name_, dns::kTypeSrv, answer);
  if (error) return;  // not the answer (wrong id, malformed): wait on until the timeout
  closeSrvSocket();
  // Truncated (more targets than a datagram holds, e.g. a large Service): the same question
  // over TCP (RFC 7766), within the same round.
  if (answer.truncated && answer.rcode == 0) return sendSrvQueryTcp();
  onSrvMessage(answer);
}

void PeerDiscovery::sendSrvQueryTcp() {
  Round& r = *round_;
  // Deferred callbacks: a connect that fails at once reports from the loop, not from in here.
  r.tcp = bufferevent_socket_new(base_, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
  if (!r.tcp) return finishRound("cannot query over TCP");
  bufferevent_setcb(r.tcp, srvTcpReadCb, nullptr, srvTcpEventCb, this);
  const Millis wait = std::min(kSrvTimeout, interval_);
  const timeval tv{static_cast<time_t>(wait.count() / 1000),
                   static_cast<suseconds_t>((wait.count() % 1000) * 1000)};
  bufferevent_set_timeouts(r.tcp, &tv, &tv);
  // Reading stops at one whole message: a server cannot make us buffer more.
  bufferevent_setwatermark(r.tcp, EV_READ, 0, 2 + dns::kMaxTcpMessage);
  const uint8_t length[2] = {static_cast<uint8_t>(r.query.size() >> 8),
                             static_cast<uint8_t>(r.query.size() & 0xFF)};
  bufferevent_write(r.tcp, length, sizeof length);
  bufferevent_write(r.tcp, r.query.data(), r.query.size());
  bufferevent_enable(r.tcp, EV_READ | EV_WRITE);
  if (bufferevent_socket_connect(r.tcp, r.server.get(), static_cast<int>(r.server.len)) != 0) {
    closeSrvSocket();
    return finishRound("SRV answer truncated and the nameserver cannot be reached over TCP");
  }
}

void PeerDiscovery::srvTcpReadCb(bufferevent*, void* arg) {
  auto* self = static_cast<PeerDiscovery*>(arg);
  Round& r = *self->round_;
  evbuffer* in = bufferevent_get_input(r.tcp);
  uint8_t length[2];
  if (evbuffer_copyout(in, length, sizeof length) != sizeof length) return;
  const size_t n = static_cast<size_t>(length[0]) << 8 | length[1];
  if (evbuffer_get_length(in) < sizeof length + n) return;  // more to come
  std::vector<uint8_t> message(n);
  evbuffer_drain(in, sizeof length);
  evbuffer_remove(in, message.data(), n);
  self->closeSrvSocket();
  dns::Answer answer;
  if (const char* error =
          dns::parseAnswer(message, r.id, self->name_, dns::kTypeSrv, answer)) {
    return self->finishRound((std::string("SRV answer over TCP unusable: ") + error).c_str());
  }
  if (answer.truncated) return self->finishRound("SRV answer truncated over TCP");
  self->onSrvMessage(answer);
}

void PeerDiscovery::srvTcpEventCb(bufferevent*, short what, void* arg) {
  auto* self = static_cast<PeerDiscovery*>(arg);
  if (what & BEV_EVENT_CONNECTED) return;
  self->closeSrvSocket();
  self->finishRound((what & BEV_EVENT_TIMEOUT) ? "SRV query over TCP timed out"
                                               : "SRV query over TCP failed (closed or refused)");
}

void PeerDiscovery::onSrvMessage(const dns::Answer& answer) {
  if (answer.rcode == dns::kRcodeNxDomain) return finishRound("SRV name does not exist");
  if (answer.rcode != 0) return finishRound("SRV query failed (nameserver error)");
  if (answer.srv.empty()) return finishRound("no SRV records");
  std::vector<std::pair<std::string, uint16_t>> targets;
  for (const dns::SrvRecord& srv : answer.srv) {
    // RFC 2782: target "." means the service is decidedly not available there.
    if (srv.target.empty() || srv.port == 0) continue;
    targets.emplace_back(srv.target, srv.port);
  }
  if (targets.empty()) return finishRound("no usable SRV records");
  resolveTargets(std::move(targets));
}

void PeerDiscovery::resolveTargets(std::vector<std::pair<std::string, uint16_t>> targets) {
  Round& r = *round_;
  std::sort(targets.begin(), targets.end());
  targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
  if (targets.size() > kMaxMembers) targets.resize(kMaxMembers);
  // The last lookup, when this server is named by a host name: its own addresses.
  const size_t self_lookup = targets.size();
  if (!self_host_.empty()) targets.emplace_back(self_host_, self_port_);
  r.pending = targets.size();
  r.tickets.assign(targets.size(), 0);
  for (size_t i = 0; i < targets.size(); ++i) {
    const std::string host = targets[i].first;
    const bool self_addresses = !self_host_.empty() && i == self_lookup;
    std::vector<SockAddr> now;
    // Max TTL 0: never cached by the resolver, every round asks again.
    const uint64_t ticket = resolver_->resolve(
        host, targets[i].second, Millis(0), now,
        [this, i, host, self_addresses](std::vector<SockAddr> addrs, const char* why) {
          round_->tickets[i] = 0;
          if (self_addresses) {
            for (const SockAddr& a : addrs) round_->self_found.insert(memberAddress(a));
            targetDone();
            return;
          }
          if (addrs.empty() && round_->target_error.empty()) {
            round_->target_error = host + ": " + (why ? why : "no address");
          }
          for (const SockAddr& a : addrs) round_->found.insert(memberAddress(a));
          targetDone();
        });
    if (ticket == 0) {
      for (const SockAddr& a : now) {
        (self_addresses ? r.self_found : r.found).insert(memberAddress(a));
      }
      --r.pending;
    } else {
      r.tickets[i] = ticket;
    }
  }
  if (r.pending == 0) finishRound(nullptr);
}

void PeerDiscovery::targetDone() {
  if (--round_->pending == 0) finishRound(nullptr);
}

void PeerDiscovery::finishRound(const char* error) {
  std::unique_ptr<Round> round = std::move(round_);
  std::string why = error ? error : "";
  if (why.empty() && round->found.empty()) {
    why = round->target_error.empty() ? "no address" : round->target_error;
  }
  schedule();
  if (!why.empty()) {
    if (why != last_error_) {
      std::fprintf(stderr, "streamedge: cluster: DNS %s: %s; the membership stays (%zu members)\n",
                   name_.c_str(), why.c_str(), members_.size());
    }
    last_error_ = why;
    return;
  }
  last_error_.clear();
  last_success_unix_ms_ = unixMillisNow();
  // A member at one of this server's own addresses is this server, under its config name.
  std::set<std::string> found;
  for (const std::string& member : round->found) {
    found.insert(round->self_found.count(member) != 0 ? self_ : member);
  }
  std::vector<std::string> next(found.begin(), found.end());  // sorted
  if (next.size() > kMaxMembers) next.resize(kMaxMembers);
  if (next == members_) return;
  std::vector<std::string> added;
  std::vector<std::string> removed;
  std::set_difference(next.begin(), next.end(), members_.begin(), members_.end(),
                      std::back_inserter(added));
  std::set_difference(members_.begin(), members_.end(), next.begin(), next.end(),
                      std::back_inserter(removed));
  members_ = std::move(next);
  ++changes_;
  publish_(members_, added, removed);
}

}  // namespace streamedge::proxy
