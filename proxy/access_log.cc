#include "proxy/access_log.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace streamedge::proxy {

void anonymizeAddress(const sockaddr* addr, conf::AddressAnonymization mode, std::string& out) {
  out.clear();
  if (mode == conf::AddressAnonymization::kNone || addr == nullptr) {
    out = "-";
    return;
  }
  char buf[INET6_ADDRSTRLEN];
  if (addr->sa_family == AF_INET) {
    in_addr a = reinterpret_cast<const sockaddr_in*>(addr)->sin_addr;
    if (mode == conf::AddressAnonymization::kTruncate) {
      a.s_addr &= htonl(0xFFFFFF00u);  // keep the /24
    }
    inet_ntop(AF_INET, &a, buf, sizeof buf);
  } else if (addr->sa_family == AF_INET6) {
    in6_addr a = reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr;
    const bool v4mapped = IN6_IS_ADDR_V4MAPPED(&a);
    if (v4mapped) {
      in_addr v4;
      std::memcpy(&v4, a.s6_addr + 12, 4);
      if (mode == conf::AddressAnonymization::kTruncate) v4.s_addr &= htonl(0xFFFFFF00u);
      inet_ntop(AF_INET, &v4, buf, sizeof buf);
      out = buf;
      return;
    }
    if (mode == conf::AddressAnonymization::kTruncate) {
      std::memset(a.s6_addr + 6, 0, 10);  // keep the /48
    }
    inet_ntop(AF_INET6, &a, buf, sizeof buf);
  } else {
    out = "-";
    return;
  }
  out = buf;
}

namespace {

void appendJsonString(std::string& out, std::string_view s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char esc[8];
          std::snprintf(esc, sizeof esc, "\\u%04x", c);
          out += esc;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

void appendInt(std::string& out, int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

void appendMillis(std::string& out, double ms) {
  char buf[32];
  int n = std::snprintf(buf, sizeof buf, "%.3f", ms < 0 ? 0.0 : ms);
  out.append(buf, n > 0 ? static_cast<size_t>(n) : 0);
}

void appendTime(std::string& out, int64_t unix_ms) {
  time_t secs = static_cast<time_t>(unix_ms / 1000);
  tm t{};
  gmtime_r(&secs, &t);
  char buf[40];
  int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", t.tm_year + 1900,
                        t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                        static_cast<int>(unix_ms % 1000));
  out.append(buf, n > 0 ? static_cast<size_t>(n) : 0);
}

}  // namespace

void formatAccessLogLine(const AccessLogEntry& e, std::string& out) {
  out += "{\"time\":\"";
  appendTime(out, e.time_unix_ms);
  out += "\",\"vhost\":";
  appendJsonString(out, e.vhost.empty() ? "-" : e.vhost);
  out += ",\"client\":";
  appendJsonString(out, e.client);
  out += ",\"method\":";
  appendJsonString(out, e.method);
  out += ",\"path\":";
  appendJsonString(out, e.path);
  out += ",\"query\":";
  appendJsonString(out, e.query);
  out += ",\"status\":";
  appendInt(out, e.status);
  out += ",\"bytes\":";
  appendInt(out, static_cast<int64_t>(e.bytes));
  out += ",\"duration_ms\":";
  appendMillis(out, e.duration_ms);
  out += ",\"ttfb_ms\":";
  appendMillis(out, e.ttfb_ms);
  out += ",\"cache\":";
  appendJsonString(out, e.cache.empty() ? "-" : e.cache);
  out += ",\"origin\":";
  appendJsonString(out, e.origin.empty() ? "-" : e.origin);
  out += ",\"dc\":";
  appendJsonString(out, e.dc.empty() ? "-" : e.dc);
  out += ",\"tls\":";
  appendJsonString(out, e.tls.empty() ? "-" : e.tls);
  out += "}\n";
}

AccessLog::AccessLog(std::string target) : target_(std::move(target)) {}

AccessLog::~AccessLog() {
  std::lock_guard<std::mutex> lock(mu_);
  if (owns_fd_ && fd_ >= 0) ::close(fd_);
}

bool AccessLog::open() {
  std::lock_guard<std::mutex> lock(mu_);
  if (target_ == "off") return true;
  if (target_ == "stderr") {
    fd_ = STDERR_FILENO;
    return true;
  }
  if (target_ == "stdout") {
    fd_ = STDOUT_FILENO;
    return true;
  }
  int fd = ::open(target_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    std::fprintf(stderr, "streamedge: cannot open access log %s: %s\n", target_.c_str(),
                 std::strerror(errno));
    return false;
  }
  if (owns_fd_ && fd_ >= 0) ::close(fd_);
  fd_ = fd;
  owns_fd_ = true;
  return true;
}

void AccessLog::reopen() {
  if (target_ == "off" || target_ == "stderr" || target_ == "stdout") return;
  open();
}

void AccessLog::append(std::string_view lines) {
  std::lock_guard<std::mutex> lock(mu_);
  if (fd_ < 0) return;
  while (!lines.empty()) {
    ssize_t n = ::write(fd_, lines.data(), lines.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // a full disk must not stop serving; lines are lost
    }
    lines.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace streamedge::proxy
