#include "tests/support/http_client.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

namespace streamedge::testsupport {

namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool hasToken(std::string_view list, std::string_view token) {
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    if (comma == std::string_view::npos) comma = list.size();
    if (iequals(trim(list.substr(pos, comma - pos)), token)) return true;
    pos = comma + 1;
  }
  return false;
}

int remainingMs(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
}

double msSince(std::chrono::steady_clock::time_point start, std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(t - start).count();
}

}  // namespace

std::string HttpResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) return v;
  return "";
}

bool HttpResponse::hasHeader(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) return true;
  return false;
}

std::vector<std::string> HttpResponse::headerValues(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) out.push_back(v);
  return out;
}

HttpConnection::~HttpConnection() { close(); }

HttpConnection::HttpConnection(HttpConnection&& other) noexcept { *this = std::move(other); }

HttpConnection& HttpConnection::operator=(HttpConnection&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    port_ = other.port_;
    host_ = std::move(other.host_);
    buf_ = std::move(other.buf_);
    error_ = std::move(other.error_);
    eof_ = other.eof_;
    sent_at_ = other.sent_at_;
    sink_ = std::move(other.sink_);
  }
  return *this;
}

void HttpConnection::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  buf_.clear();
  eof_ = false;
}

bool HttpConnection::connect(uint16_t port, std::chrono::milliseconds timeout, std::string_view host) {
  close();
  port_ = port;
  host_ = std::string(host);
  error_.clear();
  const auto deadline = SteadyClock::now() + timeout;
  addrinfo hints;
  std::memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  std::string h = host_;
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  addrinfo* res = nullptr;
  const std::string port_str = std::to_string(port);
  if (int rc = getaddrinfo(h.c_str(), port_str.c_str(), &hints, &res); rc != 0) {
    error_ = std::string("getaddrinfo: ") + gai_strerror(rc);
    return false;
  }
  for (addrinfo* ai = res; ai != nullptr && fd_ < 0; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      error_ = std::string("socket: ") + std::strerror(errno);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = ::connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd pfd{fd, POLLOUT, 0};
      const int prc = ::poll(&pfd, 1, remainingMs(deadline));
      if (prc == 1) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        rc = err == 0 ? 0 : -1;
        errno = err;
      } else {
        if (prc == 0) errno = ETIMEDOUT;
        rc = -1;
      }
    }
    if (rc != 0) {
      error_ = "connect to " + host_ + ":" + port_str + ": " + std::strerror(errno);
      ::close(fd);
      continue;
    }
    fd_ = fd;
    error_.clear();
  }
  freeaddrinfo(res);
  return fd_ >= 0;
}

bool HttpConnection::sendRaw(std::string_view bytes, std::chrono::milliseconds timeout) {
  if (fd_ < 0) {
    error_ = "not connected";
    return false;
  }
  const auto deadline = SteadyClock::now() + timeout;
  size_t off = 0;
  // Bounded by the deadline: every round either writes or waits in poll until it.
  while (off < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd pfd{fd_, POLLOUT, 0};
      int ms = remainingMs(deadline);
      if (ms == 0 || ::poll(&pfd, 1, ms) <= 0) {
        error_ = "send timeout";
        close();
        return false;
      }
      continue;
    }
    error_ = std::string("send: ") + std::strerror(errno);
    close();
    return false;
  }
  sent_at_ = SteadyClock::now();
  return true;
}

long HttpConnection::fill(SteadyClock::time_point deadline) {
  if (fd_ < 0 || eof_) return 0;
  // Bounded by the deadline.
  for (;;) {
    pollfd pfd{fd_, POLLIN, 0};
    int ms = remainingMs(deadline);
    int rc = ::poll(&pfd, 1, ms);
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) return -2;
    char chunk[64 * 1024];
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n > 0) {
      buf_.append(chunk, static_cast<size_t>(n));
      return n;
    }
    if (n == 0) {
      eof_ = true;
      return 0;
    }
    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) {
      if (remainingMs(deadline) == 0) return -2;
      continue;
    }
    error_ = std::string("recv: ") + std::strerror(errno);
    eof_ = true;
    return -1;
  }
}

HttpResponse HttpConnection::readResponse(std::chrono::milliseconds timeout, bool head_request) {
  HttpResponse r;
  const auto deadline = SteadyClock::now() + timeout;
  auto fail_closed = [&](const char* what, bool truncated) {
    r.closed = true;
    r.truncated = truncated;
    r.error = what;
    if (!error_.empty()) r.error += " (" + error_ + ")";
    close();
  };
  auto fail_timeout = [&](const char* what) {
    r.timed_out = true;
    r.error = what;
    close();
  };
  if (fd_ < 0) {
    r.error = error_.empty() ? "not connected" : error_;
    return r;
  }

  // The head; 1xx interim responses (other than 101) are skipped (RFC 9110 §15.2).
  size_t head_end = 0;
  for (int interim = 0; interim < 100; ++interim) {
    size_t pos = buf_.find("\r\n\r\n");
    while (pos == std::string::npos) {
      long n = fill(deadline);
      if (n == -2) {
        fail_timeout("timeout waiting for the response head");
        return r;
      }
      if (n <= 0) {
        fail_closed(buf_.empty() ? "connection closed before a response" : "connection closed inside the head",
                    !buf_.empty());
        return r;
      }
      pos = buf_.find("\r\n\r\n");
    }
    head_end = pos + 4;
    r = HttpResponse{};
    r.raw_head = buf_.substr(0, head_end);
    std::string_view head = r.raw_head;
    size_t eol = head.find("\r\n");
    std::string_view status_line = head.substr(0, eol);
    size_t sp1 = status_line.find(' ');
    if (sp1 == std::string_view::npos || status_line.substr(0, 5) != "HTTP/") {
      r.error = "bad status line";
      close();
      return r;
    }
    r.version = std::string(status_line.substr(0, sp1));
    std::string_view rest = status_line.substr(sp1 + 1);
    size_t sp2 = rest.find(' ');
    std::string_view code = rest.substr(0, sp2);
    if (code.size() != 3 || !std::all_of(code.begin(), code.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      r.error = "bad status code";
      close();
      return r;
    }
    r.status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
    r.reason = sp2 == std::string_view::npos ? "" : std::string(rest.substr(sp2 + 1));
    size_t p = eol + 2;
    while (p < head.size()) {
      size_t next = head.find("\r\n", p);
      if (next == std::string_view::npos || next == p) break;
      std::string_view field = head.substr(p, next - p);
      p = next + 2;
      size_t colon = field.find(':');
      if (colon == std::string_view::npos) continue;
      r.headers.emplace_back(std::string(field.substr(0, colon)), std::string(trim(field.substr(colon + 1))));
    }
    if (r.status >= 100 && r.status < 200 && r.status != 101) {
      buf_.erase(0, head_end);
      continue;
    }
    break;
  }
  buf_.erase(0, head_end);
  const auto head_time = SteadyClock::now();

  const std::string connection = r.header("connection");
  bool close_after = hasToken(connection, "close") || (r.version == "HTTP/1.0" && !hasToken(connection, "keep-alive"));

  // Framing, RFC 9112 §6.3.
  enum class Framing { kNone, kLength, kChunked, kUntilClose } framing = Framing::kUntilClose;
  uint64_t length = 0;
  if (head_request || (r.status >= 100 && r.status < 200) || r.status == 204 || r.status == 304) {
    framing = Framing::kNone;
  } else if (r.hasHeader("transfer-encoding")) {
    std::string te = r.header("transfer-encoding");
    std::string_view last = trim(std::string_view(te).substr(te.rfind(',') == std::string::npos ? 0 : te.rfind(',') + 1));
    framing = iequals(last, "chunked") ? Framing::kChunked : Framing::kUntilClose;
  } else if (r.hasHeader("content-length")) {
    std::vector<std::string> values = r.headerValues("content-length");
    for (const std::string& v : values) {
      if (v.empty() || v.size() > 19 || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
          v != values[0]) {
        r.error = "bad or conflicting Content-Length";
        close();
        return r;
      }
    }
    length = std::stoull(values[0]);
    framing = Framing::kLength;
  }

  auto emit = [&](std::string_view data) {
    r.body_bytes += data.size();
    if (sink_) {
      sink_(data);
    } else {
      r.body.append(data);
    }
  };
  bool got_first = false;
  auto note_body = [&]() {
    if (!got_first) {
      got_first = true;
      r.first_byte_ms = msSince(sent_at_, SteadyClock::now());
    }
  };
  if (!buf_.empty() && framing != Framing::kNone) {
    got_first = true;
    r.first_byte_ms = msSince(sent_at_, head_time);
  }
  // Ensures buf_ holds at least n bytes; false on close/timeout (r updated).
  auto need = [&](size_t n) -> bool {
    while (buf_.size() < n) {
      long got = fill(deadline);
      if (got == -2) {
        fail_timeout("timeout inside the body");
        return false;
      }
      if (got <= 0) {
        fail_closed("connection closed inside the body", true);
        return false;
      }
      note_body();
    }
    return true;
  };

  switch (framing) {
    case Framing::kNone:
      r.first_byte_ms = r.last_byte_ms = msSince(sent_at_, head_time);
      break;
    case Framing::kLength: {
      if (length == 0) r.first_byte_ms = msSince(sent_at_, head_time);
      uint64_t left = length;
      // Bounded by the deadline: every round consumes received bytes or waits in fill().
      for (;;) {
        const size_t take = static_cast<size_t>(std::min<uint64_t>(left, buf_.size()));
        if (take > 0) {
          emit(std::string_view(buf_).substr(0, take));
          buf_.erase(0, take);
          left -= take;
        }
        if (left == 0) break;
        // What did arrive stays in the body, for the test to inspect.
        if (!need(1)) return r;
      }
      break;
    }
    case Framing::kChunked: {
      // Bounded: every chunk consumes input; the deadline bounds the waits.
      for (;;) {
        size_t eol = buf_.find("\r\n");
        while (eol == std::string::npos) {
          if (buf_.size() > 4096) {
            r.error = "chunk size line too long";
            close();
            return r;
          }
          if (!need(buf_.size() + 1)) return r;
          eol = buf_.find("\r\n");
        }
        std::string_view line = std::string_view(buf_).substr(0, eol);
        line = line.substr(0, line.find(';'));
        line = trim(line);
        uint64_t size = 0;
        if (line.empty() || line.size() > 15) {
          r.error = "bad chunk size";
          close();
          return r;
        }
        for (char c : line) {
          const int v = c >= '0' && c <= '9'   ? c - '0'
                        : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                               : -1;
          if (v < 0) {
            r.error = "bad chunk size";
            close();
            return r;
          }
          size = size * 16 + static_cast<uint64_t>(v);
        }
        buf_.erase(0, eol + 2);
        if (size == 0) {
          // Trailer section up to the empty line.
          for (int t = 0; t < 1000; ++t) {
            size_t e = buf_.find("\r\n");
            while (e == std::string::npos) {
              if (!need(buf_.size() + 1)) return r;
              e = buf_.find("\r\n");
            }
            buf_.erase(0, e + 2);
            if (e == 0) break;
          }
          break;
        }
        if (!need(static_cast<size_t>(size) + 2)) return r;
        emit(std::string_view(buf_).substr(0, static_cast<size_t>(size)));
        if (buf_.compare(static_cast<size_t>(size), 2, "\r\n") != 0) {
          r.error = "chunk data not followed by CRLF";
          close();
          return r;
        }
        buf_.erase(0, static_cast<size_t>(size) + 2);
      }
      break;
    }
    case Framing::kUntilClose: {
      // Bounded by the deadline.
      for (;;) {
        emit(buf_);
        buf_.clear();
        long got = fill(deadline);
        if (got == -2) {
          fail_timeout("timeout inside a close-delimited body");
          return r;
        }
        if (got <= 0) break;
        note_body();
      }
      r.closed = true;
      if (!error_.empty()) r.error = error_;  // a reset is not a clean end
      close_after = true;
      break;
    }
  }
  r.last_byte_ms = msSince(sent_at_, SteadyClock::now());
  if (r.first_byte_ms < 0) r.first_byte_ms = r.last_byte_ms;

  // Did the server already close? Look without waiting when nothing else is buffered.
  if (!r.closed && fd_ >= 0 && buf_.empty()) {
    pollfd pfd{fd_, POLLIN, 0};
    if (::poll(&pfd, 1, 0) == 1) {
      char c;
      ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) r.closed = true;
    }
  }
  if (r.closed || close_after) close();
  return r;
}

HttpResponse HttpConnection::request(std::string_view method, std::string_view target, const Headers& headers,
                                     std::chrono::milliseconds timeout, std::string_view body) {
  const auto start = SteadyClock::now();
  if (fd_ < 0) {
    if (port_ == 0) {
      HttpResponse r;
      r.error = "not connected";
      return r;
    }
    if (!connect(port_, timeout, host_)) {
      HttpResponse r;
      r.error = error_;
      return r;
    }
  }
  std::string req;
  req.reserve(256 + body.size());
  req.append(method).append(" ").append(target).append(" HTTP/1.1\r\n");
  bool has_host = false;
  bool has_length = false;
  for (const auto& [k, v] : headers) {
    if (iequals(k, "host")) {
      has_host = true;
      if (v.empty()) continue;
    }
    if (iequals(k, "content-length") || iequals(k, "transfer-encoding")) has_length = true;
    req.append(k).append(": ").append(v).append("\r\n");
  }
  if (!has_host) {
    const bool v6 = host_.find(':') != std::string::npos && host_.front() != '[';
    req.append("Host: ").append(v6 ? "[" + host_ + "]" : host_).append(":").append(std::to_string(port_)).append("\r\n");
  }
  if (!body.empty() && !has_length) req.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  req.append("\r\n");
  req.append(body);
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(timeout - (SteadyClock::now() - start));
  if (!sendRaw(req, std::max(left, std::chrono::milliseconds(1)))) {
    HttpResponse r;
    r.error = error_;
    r.closed = true;
    return r;
  }
  const auto left2 = std::chrono::duration_cast<std::chrono::milliseconds>(timeout - (SteadyClock::now() - start));
  return readResponse(std::max(left2, std::chrono::milliseconds(1)), method == "HEAD");
}

bool HttpConnection::waitForClose(std::chrono::milliseconds timeout) {
  if (fd_ < 0) return true;
  const auto deadline = SteadyClock::now() + timeout;
  // Bounded by the deadline.
  for (;;) {
    buf_.clear();
    long n = fill(deadline);
    if (n == -2) return false;
    if (n <= 0) {
      close();
      return true;
    }
  }
}

HttpResponse httpRequest(uint16_t port, std::string_view method, std::string_view target, const Headers& headers,
                         std::chrono::milliseconds timeout, std::string_view body) {
  HttpConnection c;
  if (!c.connect(port, timeout)) {
    HttpResponse r;
    r.error = c.error();
    return r;
  }
  return c.request(method, target, headers, timeout, body);
}

HttpResponse httpGet(uint16_t port, std::string_view target, const Headers& headers, std::chrono::milliseconds timeout) {
  return httpRequest(port, "GET", target, headers, timeout);
}

}  // namespace streamedge::testsupport
