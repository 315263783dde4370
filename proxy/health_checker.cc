#include "proxy/health_checker.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "proxy/http_parser.h"
#include "proxy/origin_client.h"
#include "tls/origin_context.h"

namespace streamedge::proxy {

namespace {

using SteadyClock = std::chrono::steady_clock;

struct BevFree {
  void operator()(bufferevent* bev) const { bufferevent_free(bev); }
};
using BevPtr = std::unique_ptr<bufferevent, BevFree>;

struct EventFree {
  void operator()(event* ev) const { event_free(ev); }
};
using EventPtr = std::unique_ptr<event, EventFree>;

timeval toTimeval(std::chrono::nanoseconds d) {
  const int64_t us = std::max<int64_t>(0, d.count() / 1000);
  timeval tv;
  tv.tv_sec = static_cast<time_t>(us / 1'000'000);
  tv.tv_usec = static_cast<suseconds_t>(us % 1'000'000);
  return tv;
}

}  // namespace

struct HealthChecker::Probe {
  Probe(HealthChecker& checker, size_t group, size_t index)
      : owner(checker),
        group_index(group),
        origin_index(index),
        origin(checker.config_->origin_groups[group].origins[index]),
        check(checker.config_->origin_groups[group].health_check),
        next_(event_new(checker.base_, -1, 0, nextCb, this)),
        timeout_(event_new(checker.base_, -1, 0, timeoutCb, this)) {
    wire_ = "GET " + check.path + " HTTP/1.1\r\nHost: " +
            (check.host.empty() ? originHostField(origin) : check.host) +
            "\r\nUser-Agent: streamedge-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n";
  }

  ~Probe() { cancel(); }

  void schedule(std::chrono::nanoseconds delay) {
    const timeval tv = toTimeval(delay);
    event_add(next_.get(), &tv);
  }

  static void nextCb(evutil_socket_t, short, void* arg) { static_cast<Probe*>(arg)->begin(); }
  static void timeoutCb(evutil_socket_t, short, void* arg) {
    static_cast<Probe*>(arg)->finish(false, "timed out");
  }
  static void readCb(bufferevent*, void* arg) { static_cast<Probe*>(arg)->onReadable(); }
  static void eventCb(bufferevent*, short events, void* arg) {
    static_cast<Probe*>(arg)->onEvent(events);
  }
  void begin();
  void resolved(const std::vector<SockAddr>& addrs);
  void connectTo(const sockaddr_storage& addr, socklen_t len);
  void onReadable();
  void onEvent(short events);
  void finish(bool passed, const std::string& why);
  void cancel();

  HealthChecker& owner;
  const size_t group_index;
  const size_t origin_index;
  const conf::OriginConfig& origin;
  const conf::HealthCheckConfig& check;

 private:
  EventPtr next_;
  EventPtr timeout_;
  BevPtr bev_;
  uint64_t dns_ticket_ = 0;  // a lookup in flight
  std::string wire_;
  bool in_flight_ = false;
  bool connected_ = false;
  SteadyClock::time_point started_{};
};

void HealthChecker::Probe::begin() {
  if (in_flight_) return;
  in_flight_ = true;
  connected_ = false;
  started_ = SteadyClock::now();
  const timeval tv = toTimeval(check.timeout);
  event_add(timeout_.get(), &tv);
  std::vector<SockAddr> addrs;
  dns_ticket_ = owner.resolver().resolve(
      origin.host, origin.port, origin.dns_cache_time, addrs,
      [this](std::vector<SockAddr> answer, const char*) {
        dns_ticket_ = 0;
        resolved(answer);
      });
  if (dns_ticket_ == 0) resolved(addrs);
}

// The first address of the name is checked (the fetches try the others on connect errors).
void HealthChecker::Probe::resolved(const std::vector<SockAddr>& addrs) {
  if (addrs.empty()) {
    finish(false, "origin name did not resolve");
    return;
  }
  connectTo(addrs[0].storage, addrs[0].len);
}

void HealthChecker::Probe::connectTo(const sockaddr_storage& addr, socklen_t len) {
  const int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    finish(false, "socket() failed");
    return;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  bufferevent* bev = nullptr;
  if (origin.scheme == "https") {
    SSL_CTX* ctx = owner.tls_ ? owner.tls_->originContext(origin) : nullptr;
    tls::SslPtr ssl = ctx ? tls::newOriginSsl(ctx, origin, nullptr) : nullptr;
    if (!ssl) {
      ::close(fd);
      finish(false, "no TLS context for this https origin");
      return;
    }
    bev = bufferevent_openssl_socket_new(owner.base_, fd, ssl.get(), BUFFEREVENT_SSL_CONNECTING,
                                         BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (bev) {
      ssl.release();  // the bufferevent frees it
      bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    }
  } else {
    bev = bufferevent_socket_new(owner.base_, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
  }
  if (!bev) {
    ::close(fd);
    finish(false, "bufferevent_socket_new failed");
    return;
  }
  bev_.reset(bev);
  bufferevent_setcb(bev, readCb, nullptr, eventCb, this);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
  if (bufferevent_socket_connect(bev, reinterpret_cast<const sockaddr*>(&addr),
                                 static_cast<int>(len)) < 0) {
    finish(false, std::string("connect failed: ") + std::strerror(errno));
    return;
  }
  bufferevent_write(bev, wire_.data(), wire_.size());  // flushed once connected
}

void HealthChecker::Probe::onReadable() {
  evbuffer* in = bufferevent_get_input(bev_.get());
  for (;;) {
    const size_t len = evbuffer_get_length(in);
    const evbuffer_ptr found = evbuffer_search(in, "\r\n\r\n", 4, nullptr);
    if (found.pos < 0) {
      if (len > kMaxResponseHeadBytes) finish(false, "response head too large");
      return;
    }
    const size_t head_end = static_cast<size_t>(found.pos) + 4;
    const auto* data =
        reinterpret_cast<const char*>(evbuffer_pullup(in, static_cast<ev_ssize_t>(head_end)));
    ResponseHeadView head;
    ParseError err;
    if (!data || !parseResponseHead(std::string_view(data, head_end), head, err)) {
      finish(false, std::string("invalid response head: ") + (data ? err.detail : "pullup failed"));
      return;
    }
    if (head.status >= 100 && head.status < 200) {  // interim (RFC 9110 §15.2): the final follows
      evbuffer_drain(in, head_end);
      continue;
    }
    if (head.status < check.expected_status_min || head.status > check.expected_status_max) {
      finish(false, "status " + std::to_string(head.status));
      return;
    }
    finish(true, "");
    return;
  }
}

void HealthChecker::Probe::onEvent(short events) {
  if (events & BEV_EVENT_CONNECTED) {
    connected_ = true;
    return;
  }
  if (!connected_ && origin.scheme == "https" && bev_) {
    std::string queued;
    while (const unsigned long e = bufferevent_get_openssl_error(bev_.get())) {
      char buf[256];
      ERR_error_string_n(e, buf, sizeof buf);
      if (!queued.empty()) queued += "; ";
      queued += buf;
    }
    SSL* ssl = bufferevent_openssl_get_ssl(bev_.get());
    if (!queued.empty() || (ssl && SSL_get_verify_result(ssl) != X509_V_OK)) {
      finish(false, "TLS: " + tls::describeHandshakeFailure(ssl, queued));
      return;
    }
  }
  if (bev_ && evbuffer_get_length(bufferevent_get_input(bev_.get())) > 0) {
    onReadable();  // a head that arrived with the close
    if (!in_flight_) return;
  }
  const int err = EVUTIL_SOCKET_ERROR();
  if (!connected_) {
    finish(false, std::string("connect failed: ") +
                      (err ? evutil_socket_error_to_string(err) : "connection closed"));
    return;
  }
  finish(false, (events & BEV_EVENT_ERROR) ? "connection reset before the response head"
                                           : "connection closed before the response head");
}

void HealthChecker::Probe::finish(bool passed, const std::string& why) {
  if (!in_flight_) return;
  cancel();
  const auto now = SteadyClock::now();
  owner.health_->recordCheck(group_index, origin_index, passed, now, why);
  // The next check starts one interval after this one started (at once if that has passed).
  schedule(std::max<std::chrono::nanoseconds>(std::chrono::nanoseconds(0),
                                              started_ + check.interval - now));
}

void HealthChecker::Probe::cancel() {
  in_flight_ = false;
  if (timeout_) event_del(timeout_.get());
  if (dns_ticket_ != 0) {
    owner.resolver().cancel(dns_ticket_);
    dns_ticket_ = 0;
  }
  bev_.reset();
}

HealthChecker::HealthChecker(event_base* base, conf::ConfigPtr config, tls::TlsStatePtr tls,
                             std::shared_ptr<OriginHealth> health)
    : base_(base), config_(std::move(config)), tls_(std::move(tls)), health_(std::move(health)) {
  for (size_t g = 0; g < config_->origin_groups.size(); ++g) {
    const conf::OriginGroupConfig& group = config_->origin_groups[g];
    if (!group.health_check.enabled) continue;
    for (size_t o = 0; o < group.origins.size(); ++o) {
      probes_.push_back(std::make_unique<Probe>(*this, g, o));
      probes_.back()->schedule(std::chrono::nanoseconds(0));
    }
  }
}

HealthChecker::~HealthChecker() {
  probes_.clear();  // cancels lookups before the resolver goes
}

NameResolver& HealthChecker::resolver() {
  if (!resolver_) {
    resolver_ = std::make_unique<NameResolver>(
        base_, ResolverOptions{config_->dns.nameservers, config_->dns.hosts_file});
  }
  return *resolver_;
}

}  // namespace streamedge::proxy
