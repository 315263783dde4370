#include "proxy/invalidation.h"

#include <algorithm>

#include "cache/response_head.h"
#include "proxy/router.h"

namespace streamedge::proxy {

namespace {

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// An authority's host (lowercased, IPv6 brackets kept, a trailing dot dropped) and its port, the
// scheme's default when absent. False for userinfo, an empty host or a bad port.
bool splitAuthority(std::string_view authority, std::string_view scheme, std::string& host,
                    unsigned& port) {
  if (authority.find('@') != std::string_view::npos) return false;
  std::string_view name = authority;
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return false;
    name = authority.substr(0, close + 1);
    std::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      port_text = rest.substr(1);
    }
  } else if (const size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    name = authority.substr(0, colon);
    port_text = authority.substr(colon + 1);
  }
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty()) return false;
  host.clear();
  for (char c : name) host += lower(c);
  port = scheme == "https" ? 443 : 80;
  if (!port_text.empty()) {  // RFC 3986 §3.2.3: an empty port is the default
    unsigned v = 0;
    for (char c : port_text) {
      if (c < '0' || c > '9' || v > 65535) return false;
      v = v * 10 + static_cast<unsigned>(c - '0');
    }
    if (v == 0 || v > 65535) return false;
    port = v;
  }
  return true;
}

// The scheme of an absolute URI ("HTTP://x" → "http"), or empty for a relative reference
// (RFC 3986 §3.1, §4.2: a colon before any '/', '?' or '#').
std::string schemeOf(std::string_view ref) {
  const size_t colon = ref.find(':');
  if (colon == std::string_view::npos || colon == 0) return {};
  const size_t delim = ref.find_first_of("/?#");
  if (delim != std::string_view::npos && delim < colon) return {};
  std::string scheme;
  for (size_t i = 0; i < colon; ++i) {
    const char c = ref[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (i > 0 && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'));
    if (!ok) return {};
    scheme += lower(c);
  }
  return scheme;
}

bool hasBadByte(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u <= 0x20 || u == 0x7F;
  });
}

}  // namespace

bool isSafeMethod(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "TRACE";
}

bool keyForReference(const conf::Config& config, const InvalidationScope& scope,
                     std::string_view reference, cache::CacheKey& key) {
  // Field values have no surrounding whitespace (the parser trims it); one inside is no URI.
  if (reference.empty() || hasBadByte(reference)) return false;
  if (const size_t hash = reference.find('#'); hash != std::string_view::npos) {
    reference = reference.substr(0, hash);  // a fragment names no other resource
  }
  std::string_view rest = reference;
  const std::string scheme = schemeOf(rest);
  if (!scheme.empty()) {
    // RFC 9111 §4.4: only URIs of the target's origin; a scheme change is another origin.
    if (scheme != scope.scheme) return false;
    rest.remove_prefix(scheme.size() + 1);
    if (!rest.starts_with("//")) return false;
  }
  std::string path;
  std::string_view query;
  bool has_query = false;
  if (rest.starts_with("//")) {
    rest.remove_prefix(2);
    const size_t end = rest.find_first_of("/?");
    std::string ref_host, own_host;
    unsigned ref_port = 0, own_port = 0;
    if (!splitAuthority(rest.substr(0, end), scope.scheme, ref_host, ref_port) ||
        !splitAuthority(scope.host, scope.scheme, own_host, own_port) || ref_host != own_host ||
        ref_port != own_port) {
      return false;
    }
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
    if (rest.empty() || rest.front() == '?') {
      path = "/";  // RFC 3986 §6.2.3: an empty path is "/" for http(s)
    }
  }
  const size_t q = rest.find('?');
  std::string_view ref_path = rest.substr(0, q);
  if (q != std::string_view::npos) {
    query = rest.substr(q + 1);
    has_query = true;
  }
  if (!path.empty()) {
    // authority with no path
  } else if (ref_path.starts_with("/")) {
    path.assign(ref_path);
  } else if (ref_path.empty()) {
    // RFC 3986 §5.2.2: an empty path keeps the base path, and the base query unless one is given.
    path = scope.path;
    if (!has_query) query = scope.query;
  } else {
    // §5.2.3 merge: the base path up to its last "/", then the reference; dot segments go below.
    const size_t slash = scope.path.rfind('/');
    path = scope.path.substr(0, slash == std::string::npos ? 0 : slash + 1);
    if (path.empty()) path = "/";
    path += ref_path;
  }
  std::string normalized;
  if (!cache::normalizePath(path, normalized)) return false;
  // The same vhost (the host is the request's) and the route a GET for this path would take.
  const RouteMatch match = matchRoute(config, scope.host, normalized);
  if (!match.vhost || !match.route) return false;
  key = cache::makeKey(match.vhost->name, normalized, cache::filterQuery(query, match.route->key));
  return true;
}

std::vector<cache::CacheKey> invalidationKeys(
    const conf::Config& config, const InvalidationScope& scope,
    const std::vector<std::pair<std::string, std::string>>& response_headers) {
  std::vector<cache::CacheKey> keys{scope.target};
  for (const auto& [name, value] : response_headers) {
    if (!cache::equalsIgnoreCase(name, "Location") &&
        !cache::equalsIgnoreCase(name, "Content-Location")) {
      continue;
    }
    cache::CacheKey key;
    if (keyForReference(config, scope, value, key) &&
        std::find(keys.begin(), keys.end(), key) == keys.end()) {
      keys.push_back(key);
    }
  }
  return keys;
}

size_t invalidateAfterUnsafe(cache::Cache& cache, const conf::Config& config,
                             const InvalidationScope& scope, int status,
                             const std::vector<std::pair<std::string, std::string>>& response_headers) {
  // §4.4: "non-error status code": 2xx and 3xx. A 1xx never reaches here (the origin client
  // skips interim answers); 4xx and 5xx changed nothing the cache can rely on.
  if (status < 200 || status >= 400) return 0;
  size_t found = 0;
  for (const cache::CacheKey& key : invalidationKeys(config, scope, response_headers)) {
    if (cache.purge(key)) ++found;
  }
  return found;
}

}  // namespace streamedge::proxy
