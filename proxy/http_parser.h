// Strict HTTP/1.1 message-head parser (RFC 9112) for viewer requests and origin responses.
//
// The caller finds the end of the head (the first CRLFCRLF) in its input buffer and hands the
// whole head, contiguous, to parse*Head(); the result holds string_views into that memory, so it
// is valid only while the memory is. Everything an edge cache must refuse to avoid request
// smuggling and cache poisoning is refused here (see DESIGN.md "Strict HTTP/1.1"):
//   - bare CR or bare LF as a line end, obs-fold (a line starting with SP/HTAB)
//   - whitespace between a field name and its colon; an empty or non-token field name
//   - CTLs (NUL included) in a field value, DEL included; non-token method
//   - more than one Host (requests), an HTTP/1.1 request without Host, an invalid Host
//   - Content-Length that is not 1*DIGIT, overflows, or appears twice with any value
//     (a comma list "5, 5" is refused too), Content-Length together with Transfer-Encoding
//   - Transfer-Encoding other than exactly "chunked" (codings before it are refused: we do not
//     decode them), or Transfer-Encoding in an HTTP/1.0 message
//   - a request target that is not origin-form (absolute-form accepted for GET/HEAD when the
//     authority matches Host is NOT supported: refused), a version other than HTTP/1.0 / 1.1
// Pure functions, thread-safe, no allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace streamedge::proxy {

struct HeaderField {
  std::string_view name;
  std::string_view value;  // leading/trailing OWS removed
};

inline constexpr size_t kMaxHeaderFields = 128;
// parseResponseHead() refuses a response head larger than this (an origin's head is small).
inline constexpr size_t kMaxResponseHeadBytes = 64 * 1024;

struct ParseError {
  int status = 400;            // 400, 414, 431, 501, 505 for requests; 502 for responses
  const char* detail = "";     // static text for the log
};

struct RequestHead {
  std::string_view method;
  std::string_view target;  // as sent (origin-form)
  std::string_view path;    // target up to '?'
  std::string_view query;   // after '?', without it; empty when none
  bool has_query = false;
  int version_minor = 1;    // HTTP/1.<minor>
  HeaderField headers[kMaxHeaderFields];
  size_t header_count = 0;

  std::string_view host;    // Host field value (authority: name[:port]); empty for HTTP/1.0 without Host
  std::optional<uint64_t> content_length;
  bool chunked = false;
  bool keep_alive = true;   // HTTP/1.1 default unless "Connection: close"; 1.0 needs keep-alive
  bool expect_continue = false;
  size_t head_bytes = 0;    // bytes of the head including the final CRLFCRLF

  // First value of a field (case-insensitive); empty view when absent. found=false then.
  std::string_view find(std::string_view name, bool* found = nullptr) const;
};

struct ResponseHeadView {
  int status = 0;
  std::string_view reason;
  int version_minor = 1;
  HeaderField headers[kMaxHeaderFields];
  size_t header_count = 0;
  std::optional<uint64_t> content_length;
  bool chunked = false;
  bool keep_alive = true;
  size_t head_bytes = 0;

  std::string_view find(std::string_view name, bool* found = nullptr) const;
};

struct RequestLimits {
  size_t max_head_bytes = 16 * 1024;
  size_t max_uri_bytes = 8 * 1024;
};

// Offset just past the first "\r\n\r\n" in data, or 0 when there is none yet.
size_t findHeadEnd(std::string_view data);

// Parses a complete request head (`data` may extend past it; head_bytes says where it ends).
// Leading empty lines (RFC 9112 §2.2) are skipped. Returns false and fills `err` on any
// violation: 414 for a target over max_uri_bytes, 431 for a head over max_head_bytes or too many
// fields, 505 for an unsupported version, 501 for an unsupported Transfer-Encoding, else 400.
bool parseRequestHead(std::string_view data, const RequestLimits& limits, RequestHead& out,
                      ParseError& err);

// Parses a complete response head from an origin. err.status is always 502 on failure.
bool parseResponseHead(std::string_view data, ResponseHeadView& out, ParseError& err);

// Body framing of a response (RFC 9112 §6.3) to a request with `request_method`.
enum class BodyFraming {
  kNone,           // HEAD, 1xx, 204, 304: no body whatever the fields say
  kContentLength,  // exactly content_length bytes
  kChunked,
  kUntilClose,     // neither: read until the origin closes (the connection is not reusable)
};
BodyFraming responseFraming(std::string_view request_method, const ResponseHeadView& head);

// 1*DIGIT without sign or overflow (Content-Length, Range positions). False otherwise.
bool parseDecimal(std::string_view digits, uint64_t& out);

// True if `token` is a valid RFC 9110 token (field names, methods).
bool isToken(std::string_view token);

}  // namespace streamedge::proxy
