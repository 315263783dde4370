// A real DNS server on 127.0.0.1 (UDP, port chosen by the kernel) for tests of origin names and
// cluster membership: libevent's evdns server on its own thread. Answers A, AAAA and SRV
// questions from tables the test changes at any time (address list and TTL per name; SRV
// targets and ports per name); other names get NXDOMAIN. Counts the questions per name and type.
// Over UDP an answer longer than 512 bytes is truncated (TC, as evdns does it: cut at 512
// bytes); the same port over TCP (RFC 7766: a two-byte length before each message) answers SRV
// questions whole, counted as type "SRV/TCP".
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

struct bufferevent;
struct event;
struct event_base;
struct evconnlistener;
struct sockaddr;
struct evdns_server_port;
struct evdns_server_request;

namespace streamedge::test {

class DnsServer {
 public:
  DnsServer();
  ~DnsServer();
  DnsServer(const DnsServer&) = delete;
  DnsServer& operator=(const DnsServer&) = delete;

  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  // Replaces the answers for `name`: IPv4 and IPv6 literals (each goes to A or AAAA).
  void set(const std::string& name, std::vector<std::string> addresses, int ttl);
  // Replaces the SRV records of `name`: (target, port) each, priority 0, weight 10. An empty
  // list answers NOERROR with no records.
  void setSrv(const std::string& name, std::vector<std::pair<std::string, uint16_t>> targets,
              int ttl);
  // Questions received for `name` of `type` ("A", "AAAA" or "SRV").
  int questions(const std::string& name, const std::string& type) const;

 private:
  struct Entry {
    std::vector<std::string> addresses;
    int ttl = 0;
  };
  static void requestCb(::evdns_server_request* req, void* arg);
  void onRequest(::evdns_server_request* req);
  static void acceptCb(evconnlistener* listener, int fd, ::sockaddr* addr, int len, void* arg);
  static void tcpReadCb(bufferevent* bev, void* arg);
  static void tcpEventCb(bufferevent* bev, short what, void* arg);
  // The answer to one query received over TCP (empty: not a question we can read).
  std::string answerOverTcp(const std::string& query);

  event_base* base_ = nullptr;
  struct event* tick_ = nullptr;
  std::atomic<bool> stop_{false};
  evdns_server_port* server_ = nullptr;
  int fd_ = -1;
  evconnlistener* tcp_ = nullptr;
  uint16_t port_ = 0;
  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;
  struct SrvEntry {
    std::vector<std::pair<std::string, uint16_t>> targets;
    int ttl = 0;
  };
  std::map<std::string, SrvEntry> srv_;
  std::map<std::string, int> questions_;  // "name/type"
  std::thread thread_;
};

}  // namespace streamedge::test
