#include "proxy/access_log.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <climits>
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

// The line is formatted on the request path (ClientConnection::onResponseDone), so it is written
// through a raw pointer into space reserved once for its worst case: no printf, no per-character
// capacity checks, no allocation once the worker's buffer has grown (metrics/README.md, "Cost on
// the hot path").
constexpr std::array<bool, 256> kNeedsEscape = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[static_cast<size_t>(c)] = true;
  t['"'] = t['\\'] = t[0x7f] = true;
  return t;
}();

class LineWriter {
 public:
  explicit LineWriter(char* at) : p_(at) {}
  char* end() const { return p_; }

  template <size_t N>
  void literal(const char (&s)[N]) {
    std::memcpy(p_, s, N - 1);
    p_ += N - 1;
  }
  void raw(std::string_view s) {
    std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }
  // A JSON string; `dash_if_empty` writes "-" for an empty value.
  void string(std::string_view s, bool dash_if_empty = false) {
    if (s.empty() && dash_if_empty) s = "-";
    *p_++ = '"';
    for (const char ch : s) {
      const auto c = static_cast<unsigned char>(ch);
      if (!kNeedsEscape[c]) {
        *p_++ = ch;
        continue;
      }
      *p_++ = '\\';
      switch (c) {
        case '"': *p_++ = '"'; break;
        case '\\': *p_++ = '\\'; break;
        case '\n': *p_++ = 'n'; break;
        case '\r': *p_++ = 'r'; break;
        case '\t': *p_++ = 't'; break;
        default: {
          static constexpr char kHex[] = "0123456789abcdef";
          const char esc[5] = {'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
          std::memcpy(p_, esc, sizeof esc);
          p_ += sizeof esc;
        }
      }
    }
    *p_++ = '"';
  }
  void integer(int64_t v) { p_ = std::to_chars(p_, p_ + 20, v).ptr; }
  // Three fixed decimals ("1.500"), from integer microseconds.
  void millis(double ms) {
    const auto us = static_cast<int64_t>(ms <= 0 ? 0 : ms * 1000.0 + 0.5);
    integer(us / 1000);
    const auto frac = static_cast<int>(us % 1000);
    p_[0] = '.';
    p_[1] = static_cast<char>('0' + frac / 100);
    p_[2] = static_cast<char>('0' + frac / 10 % 10);
    p_[3] = static_cast<char>('0' + frac % 10);
    p_ += 4;
  }
  // "2023-11-14T22:13:20.123Z". The part up to the seconds changes once a second: each thread
  // keeps the last one it formatted.
  void time(int64_t unix_ms) {
    thread_local int64_t cached_second = INT64_MIN;
    thread_local char cached[32];
    thread_local size_t cached_len = 0;
    const int64_t second = unix_ms >= 0 ? unix_ms / 1000 : (unix_ms - 999) / 1000;
    if (second != cached_second) {
      time_t secs = static_cast<time_t>(second);
      tm t{};
      gmtime_r(&secs, &t);
      const int n = std::snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d.",
                                  t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min,
                                  t.tm_sec);
      cached_len = n > 0 ? std::min(static_cast<size_t>(n), sizeof cached - 1) : 0;
      cached_second = second;
    }
    raw(std::string_view(cached, cached_len));
    const auto ms = static_cast<int>(unix_ms - second * 1000);
    p_[0] = static_cast<char>('0' + ms / 100);
    p_[1] = static_cast<char>('0' + ms / 10 % 10);
    p_[2] = static_cast<char>('0' + ms % 10);
    p_[3] = 'Z';
    p_ += 4;
  }

 private:
  char* p_;
};

}  // namespace

void formatAccessLogLine(const AccessLogEntry& e, std::string& out) {
  // Worst case: every string character escaped as \u00XX (6 bytes), "-" for empty ones, the
  // field names and numbers in kFixed.
  constexpr size_t kFixed = 320;
  const size_t strings = e.vhost.size() + e.client.size() + e.method.size() + e.path.size() +
                         e.query.size() + e.cache.size() + e.origin.size() + e.dc.size() +
                         e.tls.size();
  const size_t start = out.size();
  out.resize(start + kFixed + 6 * strings);
  LineWriter w(out.data() + start);
  w.literal("{\"time\":\"");
  w.time(e.time_unix_ms);
  w.literal("\",\"vhost\":");
  w.string(e.vhost, true);
  w.literal(",\"client\":");
  w.string(e.client);
  w.literal(",\"method\":");
  w.string(e.method);
  w.literal(",\"path\":");
  w.string(e.path);
  w.literal(",\"query\":");
  w.string(e.query);
  w.literal(",\"status\":");
  w.integer(e.status);
  w.literal(",\"bytes\":");
  w.integer(static_cast<int64_t>(e.bytes));
  w.literal(",\"duration_ms\":");
  w.millis(e.duration_ms);
  w.literal(",\"ttfb_ms\":");
  w.millis(e.ttfb_ms);
  w.literal(",\"cache\":");
  w.string(e.cache, true);
  w.literal(",\"origin\":");
  w.string(e.origin, true);
  w.literal(",\"dc\":");
  w.string(e.dc, true);
  w.literal(",\"tls\":");
  w.string(e.tls, true);
  w.literal("}\n");
  out.resize(static_cast<size_t>(w.end() - out.data()));
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
