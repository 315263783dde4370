// Request fields on origin requests: which of a viewer's request fields go to the origin on a
// cache fill or a pass (RFC 9110 §7.6), under the route's RequestFieldPolicy, and the client
// address field the route may ask for (RFC 7239, or X-Forwarded-For).
//
//   never      hop-by-hop fields (Connection, the fields it names, Keep-Alive, TE,
//              Transfer-Encoding, Upgrade, Trailer, Proxy-*), Host, Content-Length, Expect, and
//              the viewer's own address claims (X-Forwarded-*, Forwarded, X-Real-IP,
//              True-Client-IP)
//   GET/HEAD   not Range, If-Range and the If-* preconditions: the proxy answers them itself
//              from the whole answer (a revalidation fill adds its own validators)
//   shared     a cache fill whose object other viewers may get: Authorization only when the route
//              sets cache_authorized, Cookie only with forward_cookie
//   pass       an answer for this viewer alone: Cookie and Authorization go as sent
//   lists      then strip_headers removes, and a non-empty forward_headers keeps only its names
//   address    last, X-Forwarded-For or Forwarded with the connection's address (truncated to
//              /24 or /48 unless forwarded_address = "full") when the route asks for one
//
// The result is the one list an origin request carries (FillRequest::forward_headers); Vary
// selection must use it too (what the origin saw), not the viewer's raw fields.
// Pure functions, thread-safe; allocation only for the output.
#pragma once

#include <sys/socket.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "conf/config.h"
#include "proxy/http_parser.h"

namespace streamedge::proxy {

using FieldList = std::vector<std::pair<std::string, std::string>>;

struct FieldContext {
  std::string_view method = "GET";  // the viewer's method
  bool shared_fill = true;          // a cache fill (vs a pass, which is this viewer's own)
  const sockaddr* client = nullptr; // the connection's peer; null: unknown
};

struct ForwardedFields {
  bool authorization = false;  // Authorization is among the forwarded fields
  bool cookie = false;         // Cookie is
};

// Whether a field named `name` goes to the origin under `route`'s policy (every rule above but
// a Connection field naming it, which needs the whole request).
bool fieldForwarded(std::string_view name, const conf::RouteConfig& route,
                    const FieldContext& context);

// Appends to `out` the fields of `fields[0..count)` that go to the origin under `route`'s
// policy, in their order, then the client address field the route asks for.
ForwardedFields selectRequestFields(const HeaderField* fields, size_t count,
                                    const conf::RouteConfig& route, const FieldContext& context,
                                    FieldList& out);

// True when a Connection field among `fields` lists `name` (RFC 9110 §7.6.1).
bool namedByConnection(const HeaderField* fields, size_t count, std::string_view name);

// Appends the client address field for `mode` (nothing for kNone): "X-Forwarded-For: 203.0.113.0"
// or "Forwarded: for=203.0.113.0" / for="[2001:db8:1::]" (RFC 7239 §4, §6; "unknown" when the
// address is not IP). `detail`: kTruncate or kFull.
void appendClientAddress(conf::ClientAddressForwarding mode, conf::AddressAnonymization detail,
                         const sockaddr* client, FieldList& out);

}  // namespace streamedge::proxy
