// Invalidation after unsafe requests (RFC 9111 §4.4): a non-error answer (2xx, 3xx) to a method
// that is not known to be safe (anything but GET, HEAD, OPTIONS, TRACE; RFC 9110 §9.2.1) removes
// what the cache stores for the target URI and for the URIs in the answer's Location and
// Content-Location when they are of the same origin (scheme, host, port) as the target.
// References are resolved against the target (RFC 3986 §5.2), normalised and keyed exactly as a
// GET for them would be: the route matching their path decides which query parameters enter the
// key. Removal is Cache::purge, RAM and SSD (durable through the SSD tier's tombstones).
//
// Pure functions except invalidateAfterUnsafe (which purges); thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cache/cache.h"
#include "cache/cache_key.h"
#include "conf/config.h"

namespace streamedge::proxy {

// What an unsafe request needs to invalidate once its answer arrives.
struct InvalidationScope {
  std::string scheme = "http";  // the viewer's connection: "http" or "https"
  std::string host;             // the request's Host value (name[:port])
  std::string path;             // the target's normalised path
  std::string query;            // the target's query as sent (base for "?x" references)
  cache::CacheKey target;       // the target URI's key (vhost, path, kept query)
};

// RFC 9110 §9.2.1: GET, HEAD, OPTIONS and TRACE are safe; every other method, known or not, is
// treated as unsafe (RFC 9111 §4.4 covers methods whose safety is unknown).
bool isSafeMethod(std::string_view method);

// The key of the stored response `reference` (a Location or Content-Location value) names, when
// it resolves to the scope's origin and to a route of the same vhost. False otherwise (another
// origin, a scheme other than http/https, a path that does not normalise, no route).
bool keyForReference(const conf::Config& config, const InvalidationScope& scope,
                     std::string_view reference, cache::CacheKey& key);

// Every key a non-error answer with `response_headers` invalidates: the target's, then those of
// same-origin Location and Content-Location values (no duplicates).
std::vector<cache::CacheKey> invalidationKeys(
    const conf::Config& config, const InvalidationScope& scope,
    const std::vector<std::pair<std::string, std::string>>& response_headers);

// When `status` is 2xx or 3xx, purges every key of invalidationKeys(). Returns how many keys had
// something stored (RAM, SSD or a fill in flight, whose result is then not kept).
size_t invalidateAfterUnsafe(cache::Cache& cache, const conf::Config& config,
                             const InvalidationScope& scope, int status,
                             const std::vector<std::pair<std::string, std::string>>& response_headers);

}  // namespace streamedge::proxy
