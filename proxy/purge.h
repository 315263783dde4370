// The purge API of the admin listener (POST /purge): parsing its query, mapping it onto the cache
// exactly as viewer requests are mapped, and running it on the shared cache (every worker sees
// the result at once; both tiers, SSD removals durable through tombstones).
//
//   url=URL              the stored object for URL (http or https, absolute) and every variant
//                        of it: the vhost by its host, the route by its path, the key by the
//                        route's key policy — as a GET for URL would be keyed
//   host=HOST&prefix=P   every object of HOST's vhost whose normalised path starts with P
//   tag=KEY[&host=HOST]  every object whose origin answer named KEY in Surrogate-Key or
//                        Cache-Tag (of HOST's vhost only, when host is given)
//   host=HOST            every object of HOST's vhost (a customer leaving); hard, with SSD
//                        encryption and a keyring, it also destroys the vhost's SSD data key
//                        (crypto-shredding, cache/ssd_keyring.h) before it answers
//   soft=1               soft purge: mark stale (revalidated at the next request), keep
//   scope=site           with [cluster]: also on every other peer of the site, in parallel
//                        (proxy/site_purge.h); scope=local (the default) is this edge only
//
// HOST is a configured vhost name or a host name its hostnames match (as a Host field would,
// except that the "*" catch-all is named by its vhost name only).
// Query values are percent-decoded: a url with its own query must be percent-encoded
// (curl -G --data-urlencode "url=...").
//
// Pure functions except runPurge (which changes the cache); thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "cache/cache.h"
#include "conf/config.h"

namespace streamedge::proxy {

struct PurgeRequest {
  enum class Kind : uint8_t { kUrl, kPrefix, kTag, kHost };
  enum class Scope : uint8_t { kLocal, kSite };
  Kind kind = Kind::kUrl;
  Scope scope = Scope::kLocal;
  bool soft = false;
  std::string url;
  std::string host;
  std::string prefix;
  std::string tag;
};

inline constexpr size_t kPurgeKinds = 4;
// "url", "prefix", "tag", "host" (the `kind` label of the purge metrics).
const char* purgeKindName(PurgeRequest::Kind kind);

// Parses the query string of POST /purge (without the '?'). False with a one-line `error` for
// a query that is not one of the forms above (unknown or repeated parameters, none of url, host,
// tag, url together with another form, a soft value other than 0/1/true/false, a scope other
// than local/site, empty values).
bool parsePurgeQuery(std::string_view query, PurgeRequest& out, std::string& error);

// The vhost HOST names: a vhost whose configured name is HOST, else the vhost a request with
// "Host: HOST" would be routed to when one of its hostnames names HOST (exactly or by
// "*.suffix"; the "*" catch-all is reached by its vhost name only). Null when none.
const conf::VhostConfig* vhostForPurge(const conf::Config& config, std::string_view host);

// The cache key a GET for `url` would use, and its vhost. False with `error` when the URL is not
// absolute http(s), its path does not normalise, or no vhost/route matches it.
bool purgeKeyForUrl(const conf::Config& config, std::string_view url, cache::CacheKey& key,
                    const conf::VhostConfig*& vhost, std::string& error);

struct PurgeResult {
  int status = 200;          // 200; 400 bad request; 404 no such vhost / route
  uint64_t objects = 0;      // removed (hard) or marked stale (soft)
  uint64_t scanned = 0;      // RAM index slots looked at (prefix, tag, host)
  double duration_ms = 0;
  std::string vhost;         // the vhost name the purge applied to ("" for a global tag purge)
  bool data_key_destroyed = false;  // a hard host purge destroyed the vhost's SSD data key
  std::string error;         // status != 200
  std::string json;          // the answer's body
};

// {"error":"<error>"} with a newline (the body of a refused purge).
std::string purgeErrorJson(std::string_view error);

// Runs `request` on `cache` (the caller parsed it) and builds the JSON answer:
//   {"kind":"prefix","mode":"hard","vhost":"tv","objects":12,"duration_ms":0.4}
// or {"error":"..."} with status 400/404. A hard purge of a whole vhost adds
// "data_key_destroyed" (true when the vhost had an SSD data key, now destroyed); 500 when the
// keyring file could not be rewritten (the objects are purged and the key is gone from memory,
// but its wrapped copy is still in the file: retry the purge).
PurgeResult runPurge(cache::Cache& cache, const conf::Config& config, const PurgeRequest& request);

}  // namespace streamedge::proxy
