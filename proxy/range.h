// Range requests (RFC 9110 §14) and conditional requests (§13) answered from the cache.
// Pure functions, thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "conf/clock.h"

namespace streamedge::proxy {

struct RangeSpec {
  enum class Kind {
    kNone,           // no Range, an invalid one, a non-bytes unit, or several ranges: send 200
    kSingle,         // one satisfiable range: 206 [first, last]
    kUnsatisfiable,  // 416 with Content-Range: bytes */size
  };
  Kind kind = Kind::kNone;
  uint64_t first = 0;
  uint64_t last = 0;  // inclusive
};

// `size` is the full representation length. "bytes=0-99", "bytes=100-", "bytes=-500";
// a last-pos past the end is clamped; first-pos ≥ size → unsatisfiable; a suffix of 0 →
// unsatisfiable. Several ranges → kNone (we answer a full 200, which RFC 9110 allows).
RangeSpec parseRange(std::string_view header, uint64_t size);

// If-None-Match (§13.1.2) against the stored ETag, weak comparison; "*" matches any.
bool ifNoneMatchMatches(std::string_view if_none_match, std::string_view etag);

// If-Modified-Since (§13.1.3): true when the representation has not been modified since
// the date (so a 304 is due). False when either date is invalid.
bool notModifiedSince(std::string_view if_modified_since, std::string_view last_modified);

// If-Range (§13.1.5): true when the range may be applied (strong ETag match or exact date).
bool ifRangeAllows(std::string_view if_range, std::string_view etag,
                   std::string_view last_modified);

}  // namespace streamedge::proxy
