// A blocking HTTP/1.1 test client over real sockets, with poll() timeouts on every wait. It reads
// what a server really sent (Content-Length, chunked or close-delimited bodies; no body for HEAD,
// 1xx, 204 and 304), reports truncation and server closes instead of hiding them, and times the
// first and last body byte. sendRaw() + readResponse() send hand-made bytes for malformed-request
// tests.
//
// Thread-safety: an HttpConnection is used by one thread at a time; separate connections are
// independent. Ownership: the connection owns its socket and closes it on destruction.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace streamedge::testsupport {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpResponse {
  int status = 0;                 // 0 when no status line arrived
  std::string version;            // "HTTP/1.1"
  std::string reason;
  Headers headers;                // in arrival order, names as sent
  std::string body;               // de-chunked (empty when a body sink consumed it)
  size_t body_bytes = 0;          // body bytes received (de-chunked), sink or not
  std::string raw_head;           // the head bytes as received, through the empty line
  bool closed = false;            // the server closed the connection (during or after this response)
  bool truncated = false;         // closed before the body's framing was satisfied
  bool timed_out = false;         // the deadline passed first
  std::string error;              // connect/send/parse/timeout failure; empty when the exchange worked
  double first_byte_ms = -1;      // from request sent to the first body byte (to the head's end if no body)
  double last_byte_ms = -1;       // from request sent to the last body byte

  // First value of the header (case-insensitive name), or "" when absent.
  std::string header(std::string_view name) const;
  bool hasHeader(std::string_view name) const;
  // Every value of a repeated header, in order.
  std::vector<std::string> headerValues(std::string_view name) const;
  // A complete response arrived: no error, not truncated.
  bool ok() const { return error.empty() && !truncated && status != 0; }
};

class HttpConnection {
 public:
  HttpConnection() = default;
  ~HttpConnection();
  HttpConnection(HttpConnection&& other) noexcept;
  HttpConnection& operator=(HttpConnection&& other) noexcept;
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  // Connects to host ("127.0.0.1", "::1", "localhost") and port. Returns false with `error()` set.
  bool connect(uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(5),
               std::string_view host = "127.0.0.1");
  bool isOpen() const { return fd_ >= 0; }
  void close();
  int fd() const { return fd_; }
  const std::string& error() const { return error_; }

  // Sends one request and reads its response. Adds "Host: <host>:<port>" unless `headers` has a
  // Host (to send none, pass {"Host", ""} — an empty Host value is omitted), and Content-Length
  // when `body` is not empty. Connects first when not connected. Closes the socket after a
  // response that said "Connection: close", was close-delimited or failed, so the next request
  // reconnects — check `closed` to see whether the server ended the connection.
  HttpResponse request(std::string_view method, std::string_view target, const Headers& headers = {},
                       std::chrono::milliseconds timeout = std::chrono::seconds(10),
                       std::string_view body = {});

  // Writes bytes as they are. Returns false (and closes) on a send error or timeout.
  bool sendRaw(std::string_view bytes, std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Reads one response (skipping 1xx interim responses). `head_request` means no body follows.
  // Timings count from the last sendRaw()/request() send.
  HttpResponse readResponse(std::chrono::milliseconds timeout = std::chrono::seconds(10),
                            bool head_request = false);
  // True when the peer has closed (or reset) the connection and no unread bytes remain; waits up
  // to `timeout` for that to happen.
  bool waitForClose(std::chrono::milliseconds timeout);

  // When set, body bytes are passed to `sink` as they arrive instead of being kept in
  // HttpResponse::body (for large bodies and many clients). Cleared with an empty function.
  void setBodySink(std::function<void(std::string_view)> sink) { sink_ = std::move(sink); }

 private:
  using SteadyClock = std::chrono::steady_clock;
  // Reads more bytes into buf_ before `deadline`. Returns >0 bytes read, 0 on EOF, -1 on error,
  // -2 on timeout.
  long fill(SteadyClock::time_point deadline);

  int fd_ = -1;
  uint16_t port_ = 0;
  std::string host_;
  std::string buf_;        // received, not yet consumed bytes
  std::string error_;
  bool eof_ = false;
  SteadyClock::time_point sent_at_{};
  std::function<void(std::string_view)> sink_;
};

// One request on a fresh connection to 127.0.0.1:port.
HttpResponse httpGet(uint16_t port, std::string_view target, const Headers& headers = {},
                     std::chrono::milliseconds timeout = std::chrono::seconds(10));
HttpResponse httpRequest(uint16_t port, std::string_view method, std::string_view target,
                         const Headers& headers = {},
                         std::chrono::milliseconds timeout = std::chrono::seconds(10),
                         std::string_view body = {});

}  // namespace streamedge::testsupport
