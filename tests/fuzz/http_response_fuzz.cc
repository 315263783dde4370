// libFuzzer target: strict HTTP/1.1 response-head parser and response framing. A success must be
// consistent (views inside the input, status in range, no contradictory framing) and every
// failure must be a 502 with a reason.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "proxy/http_parser.h"

namespace {

using streamedge::proxy::BodyFraming;
using streamedge::proxy::ParseError;
using streamedge::proxy::ResponseHeadView;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

bool inside(std::string_view v, std::string_view in) {
  return v.empty() || (v.data() >= in.data() && v.data() + v.size() <= in.data() + in.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  auto head = std::make_unique<ResponseHeadView>();
  ParseError err;
  if (!streamedge::proxy::parseResponseHead(in, *head, err)) {
    check(err.status == 502 && err.detail != nullptr && err.detail[0] != '\0');
    return 0;
  }
  const ResponseHeadView& h = *head;
  check(h.head_bytes >= 16 && h.head_bytes <= in.size());  // "HTTP/1.1 200\r\n\r\n"
  check(h.head_bytes <= streamedge::proxy::kMaxResponseHeadBytes);
  const std::string_view hv = in.substr(0, h.head_bytes);
  check(hv.substr(hv.size() - 4) == "\r\n\r\n");
  check(streamedge::proxy::findHeadEnd(in) == h.head_bytes);  // no empty lines before a status line
  check(h.status >= 100 && h.status <= 599);
  check(h.version_minor == 0 || h.version_minor == 1);
  check(inside(h.reason, hv));
  for (char c : h.reason) check(c != '\r' && c != '\n' && c != '\0');
  check(h.header_count <= streamedge::proxy::kMaxHeaderFields);
  for (size_t i = 0; i < h.header_count; ++i) {
    check(inside(h.headers[i].name, hv) && inside(h.headers[i].value, hv));
    check(streamedge::proxy::isToken(h.headers[i].name));
    for (char c : h.headers[i].value) check(c != '\r' && c != '\n' && c != '\0' && c != 0x7F);
  }
  check(!(h.chunked && h.content_length.has_value()));
  check(!(h.chunked && h.version_minor == 0));

  const BodyFraming get = streamedge::proxy::responseFraming("GET", h);
  check(streamedge::proxy::responseFraming("HEAD", h) == BodyFraming::kNone);
  const bool bodiless = h.status < 200 || h.status == 204 || h.status == 304;
  if (bodiless) check(get == BodyFraming::kNone);
  if (!bodiless) {
    check(get != BodyFraming::kNone);
    check((get == BodyFraming::kChunked) == h.chunked);
    check((get == BodyFraming::kContentLength) == h.content_length.has_value());
  }

  // Bytes after the head do not change the result.
  auto again = std::make_unique<ResponseHeadView>();
  ParseError err2;
  check(streamedge::proxy::parseResponseHead(hv, *again, err2));
  check(again->head_bytes == h.head_bytes && again->status == h.status &&
        again->content_length == h.content_length && again->chunked == h.chunked &&
        again->keep_alive == h.keep_alive && again->header_count == h.header_count);
  return 0;
}
