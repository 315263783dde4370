#include "conf/request_field_names.h"

#include "conf/http_token.h"

namespace streamedge::conf {

namespace {

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool startsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && fieldNameEquals(s.substr(0, prefix.size()), prefix);
}

bool oneOf(std::string_view name, std::initializer_list<std::string_view> names) {
  for (std::string_view n : names) {
    if (fieldNameEquals(name, n)) return true;
  }
  return false;
}

}  // namespace

bool fieldNameEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

bool isFieldName(std::string_view name) { return isToken(name); }

RequestFieldClass requestFieldClass(std::string_view name) {
  // RFC 9110 §7.6.1: Connection and the fields it lists by convention; every Proxy-* field is
  // meant for the next proxy only (§11.7: Proxy-Authorization is consumed by the proxy that
  // asked for it; Proxy-Connection is a pre-standard Connection). Trailer: a request body is
  // never forwarded chunked (the proxy frames it with Content-Length), so there are no trailers.
  if (oneOf(name, {"Connection", "Keep-Alive", "TE", "Transfer-Encoding", "Upgrade", "Trailer"}) ||
      startsWithIgnoreCase(name, "Proxy-")) {
    return RequestFieldClass::kHopByHop;
  }
  // Host: the origin's own is sent. Content-Length: the proxy frames the body it forwards.
  // Expect: 100-continue is answered by the proxy, which has the whole body before it asks.
  if (oneOf(name, {"Host", "Content-Length", "Expect"})) return RequestFieldClass::kProxyWritten;
  // At the edge these are claims the viewer wrote; only the proxy knows the address it saw.
  if (oneOf(name, {"Forwarded", "X-Real-IP", "True-Client-IP"}) ||
      startsWithIgnoreCase(name, "X-Forwarded-")) {
    return RequestFieldClass::kAddressClaim;
  }
  // If-Match and If-Unmodified-Since are not here: only the origin evaluates them (RFC 9111
  // §4.3.2), so a GET carrying one is passed with them.
  if (oneOf(name, {"Range", "If-Range", "If-None-Match", "If-Modified-Since"})) {
    return RequestFieldClass::kLocallyAnswered;
  }
  if (oneOf(name, {"Cookie", "Authorization"})) return RequestFieldClass::kCredential;
  return RequestFieldClass::kEndToEnd;
}

}  // namespace streamedge::conf
