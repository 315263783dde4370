// libFuzzer target: strict HTTP/1.1 request-head parser. Beyond "no crash, no sanitizer report",
// it checks that a success is internally consistent: the head ends inside the input, every view
// points into it, no refused byte made it into a view, framing fields are never contradictory,
// and the result does not depend on bytes after the head or on a looser limit.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "proxy/http_parser.h"

namespace {

using streamedge::proxy::ParseError;
using streamedge::proxy::RequestHead;
using streamedge::proxy::RequestLimits;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

bool inside(std::string_view v, std::string_view in) {
  return v.empty() || (v.data() >= in.data() && v.data() + v.size() <= in.data() + in.size());
}

bool noLineBreakOrNul(std::string_view v) {
  for (char c : v) {
    if (c == '\r' || c == '\n' || c == '\0') return false;
  }
  return true;
}

void checkHead(const RequestHead& h, std::string_view in, const RequestLimits& limits) {
  check(h.head_bytes >= 16 && h.head_bytes <= in.size());  // "G / HTTP/1.0\r\n\r\n"
  check(h.head_bytes <= limits.max_head_bytes);
  const std::string_view head = in.substr(0, h.head_bytes);
  check(head.substr(head.size() - 4) == "\r\n\r\n");
  const size_t end = streamedge::proxy::findHeadEnd(in);
  check(end != 0 && end <= h.head_bytes);
  for (std::string_view v : {h.method, h.target, h.path, h.query, h.host}) check(inside(v, head));
  check(streamedge::proxy::isToken(h.method));
  check(!h.target.empty() && h.target.front() == '/' && h.target.size() <= limits.max_uri_bytes);
  check(h.path.data() == h.target.data());
  check(h.has_query ? h.path.size() + 1 + h.query.size() == h.target.size()
                    : h.path.size() == h.target.size() && h.query.empty());
  check(h.version_minor == 0 || h.version_minor == 1);
  check(h.version_minor == 0 || !h.host.empty());
  check(h.header_count <= streamedge::proxy::kMaxHeaderFields);
  for (size_t i = 0; i < h.header_count; ++i) {
    check(inside(h.headers[i].name, head) && inside(h.headers[i].value, head));
    check(streamedge::proxy::isToken(h.headers[i].name));
    check(noLineBreakOrNul(h.headers[i].value));
    const std::string_view v = h.headers[i].value;
    check(v.empty() || (v.front() != ' ' && v.front() != '\t'));
    check(v.empty() || (v.back() != ' ' && v.back() != '\t'));
  }
  check(!(h.chunked && h.content_length.has_value()));
  check(!(h.chunked && h.version_minor == 0));
  check(!(h.expect_continue && h.version_minor == 0));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  auto head = std::make_unique<RequestHead>();
  auto again = std::make_unique<RequestHead>();
  ParseError err;

  RequestLimits loose;  // defaults
  const bool ok = streamedge::proxy::parseRequestHead(in, loose, *head, err);
  if (!ok) {
    check(err.detail != nullptr && err.detail[0] != '\0');
    check(err.status == 400 || err.status == 414 || err.status == 431 || err.status == 501 ||
          err.status == 505);
  } else {
    checkHead(*head, in, loose);
    // Only the head decides: parsing exactly the head gives the same result.
    ParseError err2;
    check(streamedge::proxy::parseRequestHead(in.substr(0, head->head_bytes), loose, *again, err2));
    check(again->head_bytes == head->head_bytes && again->header_count == head->header_count);
    check(again->content_length == head->content_length && again->chunked == head->chunked &&
          again->keep_alive == head->keep_alive && again->host == head->host);
  }

  // Tight limits: success there implies success with the loose ones, and the same head.
  RequestLimits tight;
  tight.max_head_bytes = 256;
  tight.max_uri_bytes = 64;
  ParseError err3;
  if (streamedge::proxy::parseRequestHead(in, tight, *again, err3)) {
    checkHead(*again, in, tight);
    check(ok && again->head_bytes == head->head_bytes);
  } else {
    check(err3.detail != nullptr && err3.detail[0] != '\0');
  }
  return 0;
}
