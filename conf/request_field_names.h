// The vocabulary of request field names that decides what a proxy may forward (RFC 9110 §7.6):
// which names are hop-by-hop, which the proxy writes or answers itself, which carry credentials
// or a client address. Shared by the config loader (to refuse lists that name a field that can
// never be forwarded) and proxy/request_fields.h (which applies a route's policy). Pure
// functions, thread-safe.
#pragma once

#include <string_view>

namespace streamedge::conf {

enum class RequestFieldClass {
  kEndToEnd,         // forwarded unless a route's lists remove it
  kHopByHop,         // Connection, Keep-Alive, TE, Transfer-Encoding, Upgrade, Trailer, Proxy-*
  kProxyWritten,     // Host, Content-Length, Expect: the proxy writes or answers these itself
  kAddressClaim,     // X-Forwarded-*, Forwarded, X-Real-IP, True-Client-IP: unverifiable here
  kLocallyAnswered,  // Range, If-Range and the If-* preconditions: for GET/HEAD the proxy
                     // answers them from the whole answer; other methods forward them
  kCredential,       // Cookie, Authorization: passes carry them; shared fills per route
};

// Class of a request field name (ASCII case-insensitive).
RequestFieldClass requestFieldClass(std::string_view name);

// ASCII case-insensitive equality of field names.
bool fieldNameEquals(std::string_view a, std::string_view b);

// RFC 9110 §5.1 field-name: a token (1*tchar).
bool isFieldName(std::string_view name);

}  // namespace streamedge::conf
