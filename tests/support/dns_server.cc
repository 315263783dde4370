#include "tests/support/dns_server.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/dns_struct.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace streamedge::test {
namespace {
constexpr int kTypeSrv = 33;  // evdns names no SRV constant

// RFC 2782 RDATA: priority 0, weight 10, port, then the target in wire form (uncompressed).
std::string srvRdata(const std::string& target, uint16_t port) {
  std::string rdata = {0, 0, 0, 10, static_cast<char>(port >> 8), static_cast<char>(port & 0xFF)};
  size_t start = 0;
  while (start < target.size()) {
    size_t dot = target.find('.', start);
    if (dot == std::string::npos) dot = target.size();
    rdata += static_cast<char>(dot - start);
    rdata += target.substr(start, dot - start);
    start = dot + 1;
  }
  rdata += '\0';
  return rdata;
}
}  // namespace

DnsServer::DnsServer() {
  base_ = event_base_new();
  // A UDP port whose number is free for TCP too (bounded: 50 tries).
  for (int attempt = 0; attempt < 50 && !tcp_; ++attempt) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      std::perror("dns server socket");
      std::abort();
    }
    port_ = ntohs(addr.sin_port);
    tcp_ = evconnlistener_new_bind(base_, acceptCb, this,
                                   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
                                   reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  }
  if (!tcp_) {
    std::fprintf(stderr, "dns server: no port free for both UDP and TCP\n");
    std::abort();
  }
  server_ = evdns_add_server_port_with_base(base_, fd_, 0, requestCb, this);
  // The loop looks at stop_ every 20 ms (libevent's cross-thread wake-up is not set up here).
  tick_ = event_new(base_, -1, EV_PERSIST,
                    [](evutil_socket_t, short, void* arg) {
                      auto* self = static_cast<DnsServer*>(arg);
                      if (self->stop_.load()) event_base_loopbreak(self->base_);
                    },
                    this);
  const timeval tv{0, 20 * 1000};
  event_add(tick_, &tv);
  thread_ = std::thread([this] { event_base_dispatch(base_); });
}

DnsServer::~DnsServer() {
  stop_.store(true);
  thread_.join();
  event_free(tick_);
  evconnlistener_free(tcp_);
  evdns_close_server_port(server_);
  event_base_free(base_);
  ::close(fd_);
}

void DnsServer::set(const std::string& name, std::vector<std::string> addresses, int ttl) {
  std::lock_guard lock(mu_);
  entries_[name] = Entry{std::move(addresses), ttl};
}

void DnsServer::setSrv(const std::string& name,
                       std::vector<std::pair<std::string, uint16_t>> targets, int ttl) {
  std::lock_guard lock(mu_);
  srv_[name] = SrvEntry{std::move(targets), ttl};
}

int DnsServer::questions(const std::string& name, const std::string& type) const {
  std::lock_guard lock(mu_);
  auto it = questions_.find(name + "/" + type);
  return it == questions_.end() ? 0 : it->second;
}

void DnsServer::acceptCb(evconnlistener*, int fd, sockaddr*, int, void* arg) {
  auto* self = static_cast<DnsServer*>(arg);
  bufferevent* bev = bufferevent_socket_new(self->base_, fd, BEV_OPT_CLOSE_ON_FREE);
  if (!bev) {
    ::close(fd);
    return;
  }
  bufferevent_setcb(bev, tcpReadCb, nullptr, tcpEventCb, self);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
}

void DnsServer::tcpEventCb(bufferevent* bev, short what, void*) {
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) bufferevent_free(bev);
}

void DnsServer::tcpReadCb(bufferevent* bev, void* arg) {
  auto* self = static_cast<DnsServer*>(arg);
  evbuffer* in = bufferevent_get_input(bev);
  for (;;) {
    unsigned char length[2];
    if (evbuffer_copyout(in, length, 2) != 2) return;
    const size_t n = static_cast<size_t>(length[0]) << 8 | length[1];
    if (evbuffer_get_length(in) < 2 + n) return;
    std::string query(n, '\0');
    evbuffer_drain(in, 2);
    evbuffer_remove(in, query.data(), n);
    const std::string answer = self->answerOverTcp(query);
    if (answer.empty()) {
      bufferevent_free(bev);
      return;
    }
    const unsigned char out_length[2] = {static_cast<unsigned char>(answer.size() >> 8),
                                         static_cast<unsigned char>(answer.size() & 0xFF)};
    bufferevent_write(bev, out_length, 2);
    bufferevent_write(bev, answer.data(), answer.size());
  }
}

std::string DnsServer::answerOverTcp(const std::string& query) {
  // Header, then one question in uncompressed labels (what resolvers send).
  if (query.size() < 12) return "";
  size_t at = 12;
  std::string name;
  while (at < query.size() && query[at] != 0) {
    const size_t len = static_cast<unsigned char>(query[at]);
    if (len > 63 || at + 1 + len > query.size()) return "";
    if (!name.empty()) name += '.';
    for (size_t i = 0; i < len; ++i) {
      name += static_cast<char>(std::tolower(static_cast<unsigned char>(query[at + 1 + i])));
    }
    at += 1 + len;
  }
  if (at + 5 > query.size()) return "";
  const size_t question_end = at + 5;  // the root label, type, class
  const int type = static_cast<unsigned char>(query[at + 1]) << 8 |
                   static_cast<unsigned char>(query[at + 2]);
  if (type != kTypeSrv) return "";
  auto u16 = [](std::string& s, unsigned v) {
    s += static_cast<char>(v >> 8);
    s += static_cast<char>(v & 0xFF);
  };
  std::lock_guard lock(mu_);
  ++questions_[name + "/SRV/TCP"];
  auto it = srv_.find(name);
  std::string out = query.substr(0, 2);  // the id
  u16(out, it == srv_.end() ? 0x8183 : 0x8180);  // response, RD, RA; NXDOMAIN when unknown
  u16(out, 1);
  u16(out, it == srv_.end() ? 0 : static_cast<unsigned>(it->second.targets.size()));
  u16(out, 0);
  u16(out, 0);
  out += query.substr(12, question_end - 12);
  if (it == srv_.end()) return out;
  for (const auto& [target, port] : it->second.targets) {
    const std::string rdata = srvRdata(target, port);
    out += static_cast<char>(0xC0);  // the owner name: a pointer to the question's
    out += static_cast<char>(12);
    u16(out, kTypeSrv);
    u16(out, 1);
    u16(out, static_cast<unsigned>(it->second.ttl) >> 16);
    u16(out, static_cast<unsigned>(it->second.ttl) & 0xFFFF);
    u16(out, static_cast<unsigned>(rdata.size()));
    out += rdata;
  }
  return out;
}

void DnsServer::requestCb(evdns_server_request* req, void* arg) {
  static_cast<DnsServer*>(arg)->onRequest(req);
}

void DnsServer::onRequest(evdns_server_request* req) {
  std::lock_guard lock(mu_);
  int rcode = DNS_ERR_NONE;
  for (int i = 0; i < req->nquestions; ++i) {
    const evdns_server_question* q = req->questions[i];
    // evdns mixes the case of the names it asks (a defence against spoofing): compare lower.
    std::string name = q->name;
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const bool a = q->type == EVDNS_TYPE_A;
    const bool aaaa = q->type == EVDNS_TYPE_AAAA;
    if (q->type == kTypeSrv) {
      ++questions_[name + "/SRV"];
      auto it = srv_.find(name);
      if (it == srv_.end()) {
        rcode = DNS_ERR_NOTEXIST;
        continue;
      }
      for (const auto& [target, port] : it->second.targets) {
        const std::string rdata = srvRdata(target, port);
        evdns_server_request_add_reply(req, EVDNS_ANSWER_SECTION, q->name, kTypeSrv, EVDNS_CLASS_INET,
                                       it->second.ttl, static_cast<int>(rdata.size()), 0,
                                       rdata.data());
      }
      continue;
    }
    if (!a && !aaaa) continue;
    ++questions_[name + (a ? "/A" : "/AAAA")];
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      rcode = DNS_ERR_NOTEXIST;
      continue;
    }
    for (const std::string& text : it->second.addresses) {
      in_addr v4{};
      in6_addr v6{};
      if (a && inet_pton(AF_INET, text.c_str(), &v4) == 1) {
        evdns_server_request_add_a_reply(req, q->name, 1, &v4, it->second.ttl);
      } else if (aaaa && inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
        evdns_server_request_add_aaaa_reply(req, q->name, 1, &v6, it->second.ttl);
      }
    }
  }
  evdns_server_request_respond(req, rcode);
}

}  // namespace streamedge::test
