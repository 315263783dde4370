// Access log: one JSON line per request. Privacy by default: the client address is anonymised
// (IPv4 to /24, IPv6 to /48) unless configured otherwise, the query string is logged without
// the parameters the route drops from the key (tokens, CMCD, session ids), and no cookie,
// User-Agent or Referer is ever logged.
//
// AccessLog owns the file and is shared by all workers: append() takes a mutex and writes one
// already-formatted batch (workers buffer lines and flush every ~100 ms or 32 KiB). reopen() is
// for SIGUSR1 (logrotate). Thread-safe.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "conf/config.h"

namespace streamedge::proxy {

// Writes the client address of `addr` per `mode` into `out` (cleared first): truncate →
// "203.0.113.0" / "2001:db8:1::" ; full → the address ; none → "-".
void anonymizeAddress(const sockaddr* addr, conf::AddressAnonymization mode, std::string& out);

struct AccessLogEntry {
  int64_t time_unix_ms = 0;
  std::string_view vhost;
  std::string_view client;      // already anonymised
  std::string_view method;
  std::string_view path;        // normalised path
  std::string_view query;       // filtered query (dropped parameters removed)
  int status = 0;
  uint64_t bytes = 0;           // body bytes sent
  double duration_ms = 0;
  double ttfb_ms = 0;           // request received → first response byte queued
  std::string_view cache;       // HIT MISS STALE COALESCED PASS (or "-")
  std::string_view origin;      // origin name used, "-" when none
  std::string_view dc;
  std::string_view tls;         // "-" for plain HTTP
};

// Appends one JSON line (with '\n') for `e` to `out`.
void formatAccessLogLine(const AccessLogEntry& e, std::string& out);

class AccessLog {
 public:
  // `target`: "stderr", "stdout", "off" or a path (opened for append, created 0640).
  explicit AccessLog(std::string target);
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  bool enabled() const { return target_ != "off"; }
  // Returns false (and logs once to stderr) if the file could not be opened.
  bool open();
  void reopen();
  void append(std::string_view lines);

 private:
  std::string target_;
  std::mutex mu_;
  int fd_ = -1;          // guarded by mu_
  bool owns_fd_ = false; // guarded by mu_
};

}  // namespace streamedge::proxy
