// Routing: Host → virtual host (exact name, then the longest "*.suffix" wildcard, then "*"),
// then path → route (longest prefix; config sorted them at load time). Pure lookups over an
// immutable Config; thread-safe.
#pragma once

#include <string_view>

#include "conf/config.h"

namespace streamedge::proxy {

struct RouteMatch {
  const conf::VhostConfig* vhost = nullptr;
  const conf::RouteConfig* route = nullptr;
};

// `host` is the Host field value (name[:port], any case). Returns nulls when nothing matches.
RouteMatch matchRoute(const conf::Config& config, std::string_view host, std::string_view path);

// Host without port, lowercased into `out` (at most out_size bytes; longer names don't match).
std::string_view hostName(std::string_view host, char* out, size_t out_size);

}  // namespace streamedge::proxy
