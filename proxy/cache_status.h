// Cache-Status (RFC 9211): how this edge handled a request, on every answer, beside the older
// X-Cache verdict. Pure functions: describeCacheStatus() turns what the exchange knows into the
// field's parameters, appendCacheStatusField() writes the field. Thread-safe.
//
// The value is a Structured Field list with one member, ours (RFC 9211 §2): the cache's name
// as a Token, then parameters:
//   hit                 answered from the cache without going forward (fresh)
//   fwd=<why>           went towards the origin: uri-miss (nothing stored for the URI),
//                       vary-miss (stored variants, none selected by this request), stale (a
//                       stored answer needed revalidation, or was served stale), bypass (a
//                       cache = "pass" route), method (a method the cache does not serve)
//   fwd-status=<n>      the status the origin answered the forwarded request with (304 when a
//                       revalidation refreshed the stored answer the viewer gets)
//   stored              the answer from the origin is being stored
//   ttl=<s>             remaining freshness in seconds (negative when stale), for stored answers
//   collapsed           the request waited on another request's fetch and got its answer
//   detail=<token>      fixed vocabulary only (never a URL, a key or anything of the viewer)
// Earlier caches' Cache-Status members (from the origin's answer) are kept before ours.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "proxy/shared_state.h"

namespace streamedge::proxy {

inline constexpr std::string_view kCacheStatusName = "streamedge";

// RFC 9211 §2.2 fwd values.
enum class CacheFwd : uint8_t {
  kNone,      // not forwarded
  kBypass,    // configured not to use the cache for this request
  kMethod,    // the method must go forward
  kUriMiss,   // nothing stored for the URI
  kVaryMiss,  // stored answers for the URI, none selected by this request's fields
  kMiss,      // uri-miss or vary-miss, when the two cannot be told apart
  kRequest,   // a fresh answer was selected but the request did not allow its use
  kStale,     // the selected answer was stale
  kPartial,   // a partial answer was selected, not covering the request
};
const char* cacheFwdToken(CacheFwd fwd);  // "uri-miss", ...; "" for kNone

// The parameters of our member.
struct CacheStatus {
  bool hit = false;
  CacheFwd fwd = CacheFwd::kNone;
  std::optional<int> fwd_status;
  bool stored = false;
  std::optional<int64_t> ttl_seconds;
  bool collapsed = false;
  const char* detail = nullptr;  // a static token of a fixed vocabulary, or null
};

// What the exchange knows when it sends the head.
struct CacheStatusFacts {
  CacheResult result = CacheResult::kNone;  // the X-Cache verdict
  bool pass_route = false;       // the route has cache = "pass"
  bool other_method = false;     // a method other than GET/HEAD, forwarded
  bool stale_found = false;      // the lookup found a stale stored answer for the request
  bool vary_miss = false;        // the lookup found answers for the URI, no variant matched
  bool synthesized = false;      // an error answer made here (the origin's answer is not sent)
  // From the answer object, when one is delivered:
  std::optional<int> origin_status;  // the status the origin answered this fetch with
  bool not_modified = false;     // a 304 refreshed the stored answer that is delivered
  bool stored = false;           // the fill keeps the answer
  std::optional<int64_t> ttl_seconds;  // lifetime minus current age, for stored answers
  const char* detail = nullptr;  // a static sf-token of our fixed vocabulary, or null
};

CacheStatus describeCacheStatus(const CacheStatusFacts& facts);

// Appends "Cache-Status: <name>[; param...]\r\n" to `out`. `name` must be an sf-token.
// hit excludes fwd, fwd-status, stored and collapsed (RFC 9211 §2.1: a hit did not go forward).
void appendCacheStatusField(std::string& out, std::string_view name, const CacheStatus& status);

}  // namespace streamedge::proxy
