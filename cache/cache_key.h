// Cache keys: xxh3-128 over the virtual host name, the normalised path and the query parameters
// the route's key policy keeps. Player-specific parameters (CMCD, tokens, session ids) never
// enter the key. Pure functions, thread-safe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "conf/config.h"

namespace streamedge::cache {

struct CacheKey {
  uint64_t hi = 0;
  uint64_t lo = 0;
  bool operator==(const CacheKey&) const = default;
  std::string toHex() const;  // 32 hex digits, for logs and /status (never a URL)
};

struct CacheKeyHash {
  size_t operator()(const CacheKey& k) const noexcept { return static_cast<size_t>(k.lo ^ (k.hi * 0x9E3779B97F4A7C15ull)); }
};

// RFC 3986 §6.2.2 normalisation of an origin-form path (no query): percent-encodings of
// unreserved characters decoded, other percent-encodings upper-cased, "." and ".." segments
// removed (§5.2.4), runs of "/" collapsed. Returns false (and leaves `out` unspecified) when the
// path is not a valid absolute path: does not start with "/", a bad %-escape, an encoded NUL
// or "/" ("%00", "%2F" are rejected to keep one object per name), or a ".." escaping the root.
bool normalizePath(std::string_view path, std::string& out);

// The LL-HLS delivery directives (draft-pantos-hls-rfc8216bis §6.2.5), in canonical order. A
// blocking reload's answer depends on them, so they are kept in the key and sent to the origin
// whatever the route's keep_params or ignore_query say (drop_params can still drop them), last
// and in this order, so that equal blocking requests share one key and one origin request.
inline constexpr std::array<std::string_view, 3> kLlHlsDirectives = {"_HLS_msn", "_HLS_part",
                                                                     "_HLS_skip"};

// The query parameters kept by `policy`, in their original order, joined with "&", followed by
// the LL-HLS delivery directives in canonical order (decimal values without leading zeros).
// Parameter names are compared case-sensitively, except that drop_params entries match
// case-insensitively (CMCD, cmcd). Used both for the key and for the access log (dropped
// parameters never logged), and as the query of cache fills.
std::string filterQuery(std::string_view query, const conf::KeyPolicy& policy);

// Key over (vhost name, normalised path, filtered query). `vhost` is the configured vhost name,
// so aliases of one vhost share objects.
CacheKey makeKey(std::string_view vhost, std::string_view normalized_path,
                 std::string_view filtered_query);

}  // namespace streamedge::cache

template <>
struct std::hash<streamedge::cache::CacheKey> : streamedge::cache::CacheKeyHash {};
