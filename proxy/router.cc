#include "proxy/router.h"

#include <cctype>

namespace streamedge::proxy {

std::string_view hostName(std::string_view host, char* out, size_t out_size) {
  // Strip ":port"; an IPv6 literal keeps its brackets ("[::1]:8080" → "[::1]").
  size_t end = host.size();
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    end = close == std::string_view::npos ? host.size() : close + 1;
  } else if (size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    end = colon;
  }
  if (end > 0 && host[end - 1] == '.') --end;  // "example.com." is "example.com"
  if (end > out_size) return {};
  for (size_t i = 0; i < end; ++i) {
    out[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(host[i])));
  }
  return {out, end};
}

namespace {

const conf::VhostConfig* matchVhost(const conf::Config& config, std::string_view name) {
  const conf::VhostConfig* wildcard = nullptr;
  size_t wildcard_len = 0;
  const conf::VhostConfig* any = nullptr;
  for (const conf::VhostConfig& vhost : config.vhosts) {
    for (const std::string& pattern : vhost.hostnames) {
      if (pattern == "*") {
        if (!any) any = &vhost;
      } else if (pattern.size() > 2 && pattern[0] == '*' && pattern[1] == '.') {
        // "*.example.com" matches "a.example.com" and "a.b.example.com", not "example.com".
        std::string_view suffix = std::string_view(pattern).substr(1);
        if (name.size() > suffix.size() && name.ends_with(suffix) &&
            suffix.size() > wildcard_len) {
          wildcard = &vhost;
          wildcard_len = suffix.size();
        }
      } else if (name == pattern) {
        return &vhost;
      }
    }
  }
  return wildcard ? wildcard : any;
}

}  // namespace

RouteMatch matchRoute(const conf::Config& config, std::string_view host, std::string_view path) {
  char buf[256];
  std::string_view name = hostName(host, buf, sizeof buf);
  RouteMatch m;
  m.vhost = matchVhost(config, name);
  if (!m.vhost) return m;
  for (const conf::RouteConfig& route : m.vhost->routes) {  // longest prefix first
    if (path.starts_with(route.prefix)) {
      m.route = &route;
      break;
    }
  }
  return m;
}

}  // namespace streamedge::proxy
