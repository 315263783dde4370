#include "proxy/request_fields.h"

#include <netinet/in.h>

#include <charconv>
#include <string>

#include "conf/request_field_names.h"
#include "proxy/access_log.h"
#include "streaming/cmcd.h"

namespace streamedge::proxy {

namespace {

using conf::fieldNameEquals;
using conf::RequestFieldClass;

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool listed(const std::vector<std::string>& names, std::string_view name) {
  for (const std::string& n : names) {
    if (fieldNameEquals(n, name)) return true;
  }
  return false;
}

bool isGetOrHead(std::string_view method) { return method == "GET" || method == "HEAD"; }

}  // namespace

bool namedByConnection(const HeaderField* fields, size_t count, std::string_view name) {
  for (size_t i = 0; i < count; ++i) {
    if (!fieldNameEquals(fields[i].name, "Connection")) continue;
    std::string_view list = fields[i].value;
    while (!list.empty()) {
      const size_t comma = list.find(',');
      if (fieldNameEquals(trimOws(list.substr(0, comma)), name)) return true;
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
  }
  return false;
}

bool fieldForwarded(std::string_view name, const conf::RouteConfig& route,
                    const FieldContext& context) {
  const conf::RequestFieldPolicy& policy = route.fields;
  switch (conf::requestFieldClass(name)) {
    case RequestFieldClass::kHopByHop:
    case RequestFieldClass::kProxyWritten:
    case RequestFieldClass::kAddressClaim:
      return false;
    case RequestFieldClass::kLocallyAnswered:
      if (isGetOrHead(context.method)) return false;
      break;
    case RequestFieldClass::kCredential:
      // On a shared fill the answer may reach every viewer: one viewer's credentials must not
      // shape it unless the route says the origin answers every credential alike
      // (cache_authorized; RFC 9111 §3.5 is then the operator's call) or that cookies matter
      // to the origin and it marks personal answers (forward_cookie).
      if (context.shared_fill) {
        const bool authorization = fieldNameEquals(name, "Authorization");
        if (authorization ? !route.cache.cache_authorized : !policy.forward_cookie) return false;
      }
      break;
    case RequestFieldClass::kEndToEnd:
      break;
  }
  // CTA-5004 data is for this edge's metrics; the origin gets it only when the route says so.
  if (!policy.forward_cmcd && streaming::isCmcdField(name)) return false;
  if (listed(policy.strip_headers, name)) return false;
  if (!policy.forward_headers.empty() && !listed(policy.forward_headers, name)) return false;
  return true;
}

ForwardedFields selectRequestFields(const HeaderField* fields, size_t count,
                                    const conf::RouteConfig& route, const FieldContext& context,
                                    FieldList& out) {
  const conf::RequestFieldPolicy& policy = route.fields;
  // A Connection field only matters when it names something; "close" and "keep-alive" are the
  // usual values and name nothing else a request carries.
  bool has_connection = false;
  for (size_t i = 0; i < count && !has_connection; ++i) {
    has_connection = fieldNameEquals(fields[i].name, "Connection");
  }
  ForwardedFields result;
  for (size_t i = 0; i < count; ++i) {
    const HeaderField& f = fields[i];
    if (!fieldForwarded(f.name, route, context)) continue;
    if (has_connection && namedByConnection(fields, count, f.name)) continue;  // §7.6.1
    if (fieldNameEquals(f.name, "Authorization")) result.authorization = true;
    if (fieldNameEquals(f.name, "Cookie")) result.cookie = true;
    if (context.method == "OPTIONS" && fieldNameEquals(f.name, "Max-Forwards")) {
      // RFC 9110 §7.6.2: one hop fewer (a value of 0 was answered here, not forwarded).
      uint64_t hops = 0;
      const std::string_view v = trimOws(f.value);
      const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), hops);
      if (ec == std::errc() && end == v.data() + v.size() && hops > 0) {
        out.emplace_back(std::string(f.name), std::to_string(hops - 1));
        continue;
      }
    }
    out.emplace_back(std::string(f.name), std::string(f.value));
  }
  appendClientAddress(policy.forward_client_address, policy.forwarded_address, context.client,
                      out);
  return result;
}

void appendClientAddress(conf::ClientAddressForwarding mode, conf::AddressAnonymization detail,
                         const sockaddr* client, FieldList& out) {
  if (mode == conf::ClientAddressForwarding::kNone) return;
  // Only two precisions exist here; kNone would send "-", which is no address at all.
  if (detail != conf::AddressAnonymization::kFull) detail = conf::AddressAnonymization::kTruncate;
  std::string address;
  const bool ip = client && (client->sa_family == AF_INET || client->sa_family == AF_INET6);
  if (ip) anonymizeAddress(client, detail, address);
  if (mode == conf::ClientAddressForwarding::kXForwardedFor) {
    if (ip) out.emplace_back("X-Forwarded-For", std::move(address));
    return;
  }
  // RFC 7239 §4: an IPv6 address is a quoted "[...]"; §6.2: "unknown" when there is none.
  std::string value = "for=";
  if (!ip) {
    value += "unknown";
  } else if (address.find(':') != std::string::npos) {
    value += "\"[";
    value += address;
    value += "]\"";
  } else {
    value += address;
  }
  out.emplace_back("Forwarded", std::move(value));
}

}  // namespace streamedge::proxy
