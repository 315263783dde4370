// Targeted cache control (RFC 9213): which response field's directives this edge follows for
// its own storage and freshness, when the origin sends directives aimed at CDNs or at this edge
// alone beside the Cache-Control it sends to browsers. Pure functions; thread-safe.
//
// Precedence, most specific first (RFC 9213 §2.1, the "target list"):
//   1. the edge's own target field ([cache] cache_control_target, "Streamedge-Cache-Control")
//   2. CDN-Cache-Control (RFC 9213 §3)
//   3. Surrogate-Control, only with [cache] surrogate_control = true
//   4. Cache-Control (and Expires)
// The first of 1-3 that is present with a valid, non-empty value wins, and then Cache-Control
// and Expires are ignored for this cache. A targeted field that fails to parse as a Structured
// Field dictionary (RFC 8941 §3.2) is ignored as if absent.
//
// Forwarding: the own target and (when enabled) Surrogate-Control are for this edge only. The
// fill stores them under reserved names that start with ':' (never a valid field name from the
// wire), so that they still take part in a 304 update (RFC 9111 §4.3.4) and survive the SSD
// tier, while ResponseHead::buildWire() leaves them out of every viewer answer.
// CDN-Cache-Control is passed on unchanged: RFC 9213 §3 expects CDN caches to forward it for
// CDN caches further down (a viewer's browser ignores it).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cache/freshness.h"
#include "cache/response_head.h"

namespace streamedge::cache {

// Stored names of the fields this edge consumes.
inline constexpr std::string_view kStoredOwnTargetField = ":own-cache-control";
inline constexpr std::string_view kStoredSurrogateControlField = ":surrogate-control";

// Which fields this edge consumes (from [cache] in the config).
struct TargetedFields {
  std::string_view own_target;     // the configured own target field name; "" = none
  bool surrogate_control = false;  // honour (and strip) Surrogate-Control
};

// Renames, in place, the own target field and (when enabled) Surrogate-Control to their stored
// names. Call it on an origin answer's fields (a 200 and a 304 alike) before they are stored or
// merged into a stored head.
void internEdgeFields(std::vector<std::pair<std::string, std::string>>& fields,
                      const TargetedFields& targets);

enum class CacheControlSource : uint8_t { kOwnTarget, kCdnCacheControl, kSurrogateControl, kCacheControl };
const char* cacheControlSourceName(CacheControlSource source);  // "own-target", "cdn-cache-control", ...

struct SelectedCacheControl {
  CacheControl cc;  // cc.from_targeted_field is set unless source == kCacheControl
  CacheControlSource source = CacheControlSource::kCacheControl;
};

// The directives this edge follows for `head` (whose fields went through internEdgeFields).
// A stored Surrogate-Control counts only where it was interned (surrogate_control enabled when
// the answer arrived). All field lines of one name are joined (RFC 9110 §5.3).
SelectedCacheControl selectCacheControl(const ResponseHead& head);

// Parses a targeted field value (RFC 9213 §2.2): a Structured Field dictionary whose members
// are cache directives. nullopt when the value is empty or fails to parse (the field is then
// ignored). Directive values follow the types RFC 9213 §2.2 infers: the delta-seconds ones
// (max-age, s-maxage, stale-while-revalidate, stale-if-error) must be non-negative Integers
// (a Decimal or a String is not consumed: the directive is absent); public and immutable must
// be Boolean true; no-store, no-cache, private, must-revalidate and proxy-revalidate hold
// unless their value is Boolean false (a String of field names restricts the whole answer, as
// in CacheControl::parse). Parameters on members are ignored; a repeated key keeps its last
// value (RFC 8941 §4.2.2). Unknown directives are ignored.
std::optional<CacheControl> parseTargetedCacheControl(std::string_view value);

}  // namespace streamedge::cache
