// Prefetch targets of a live DASH MPD (the DASH side of streaming/prefetch_targets.h): for each
// representation of the MPD's current period, the newest segments available now, and the
// pattern that a viewer's request for one of its segments has, so that the edge prefetches only
// the representations viewers are watching (proxy/prefetch.h keeps who watches what).
//
// Newest segments (ISO/IEC 23009-1 §5.3.9.5 and annex A):
//   SegmentTemplate with duration d (no timeline): segment n (from startNumber) is available
//     once availabilityStartTime + period start + (n - startNumber + 1) * d / timescale
//     - availabilityTimeOffset <= now; the newest `segments` such n, bounded by the period's
//     duration when it has one. Without availabilityStartTime nothing is available.
//   SegmentTimeline: the last `segments` entries of the expanded timeline (an open r = -1 on
//     the last S runs up to now).
// URLs are the media template with $RepresentationID$, $Number$, $Time$ and $Bandwidth$
// replaced, resolved against the MPD's path with resolvePrefetchUri (same host only). The
// parser does not read BaseURL, so a template is always taken relative to the MPD's own path.
// A static MPD (on demand) selects nothing.
//
// Watched pattern: the media template's fixed text around its one $Number$ or $Time$, with the
// other identifiers replaced, resolved and normalised like a viewer's path. A viewer path
// matches when it is that prefix, 1 to 20 decimal digits, then that suffix (the path part of
// the template: a query is not compared). A template with no such identifier, two of them, an
// identifier inside the query, or one whose resolved form is not a valid path has no pattern:
// its representation can never be marked watched, hence never prefetched.
// Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "streaming/dash_mpd.h"
#include "streaming/prefetch_targets.h"

namespace streamedge::streaming {

// At most this many representations of one MPD are considered (the first ones, in document
// order), so one hostile MPD cannot make the edge track or prefetch without bound.
inline constexpr size_t kMaxDashPrefetchRepresentations = 64;
// A timeline longer than this (after expansion) is not prefetched from.
inline constexpr size_t kMaxDashPrefetchTimeline = 100000;

// What a viewer's segment path looks like for one representation (see above).
struct DashSegmentPattern {
  std::string prefix;  // absolute normalised path text before the number, never empty
  std::string suffix;  // path text after it
  bool operator==(const DashSegmentPattern&) const = default;
};

struct DashRenditionTargets {
  std::string representation_id;
  std::optional<DashSegmentPattern> pattern;  // none: never marked watched
  std::vector<PrefetchTarget> newest;         // newest first
  size_t refused = 0;                         // URLs of another host or not resolvable
};

struct DashPrefetchPlan {
  // How long a viewer's segment request keeps its representation watched:
  // max(30 s, 3 × minimumUpdatePeriod), at most one hour.
  double watch_window_s = 30;
  std::vector<DashRenditionTargets> renditions;  // empty for a static MPD
};

// The plan for `mpd` served at `mpd_path` (absolute, no query) for `host`, at wall time
// `now_s` (seconds since the Unix epoch), with at most `segments` targets a representation.
DashPrefetchPlan planDashPrefetch(const DashMpd& mpd, std::string_view mpd_path,
                                  std::string_view host, size_t segments, double now_s);

// The watched pattern of a media template for one representation (nullopt: none, see above).
std::optional<DashSegmentPattern> dashSegmentPattern(std::string_view media_template,
                                                     std::string_view representation_id,
                                                     uint64_t bandwidth, std::string_view mpd_path,
                                                     std::string_view host);

// True when the normalised viewer path `path` is a segment of `pattern`.
bool matchesDashSegment(const DashSegmentPattern& pattern, std::string_view path);

}  // namespace streamedge::streaming
