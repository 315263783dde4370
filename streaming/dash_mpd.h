// DASH MPDs (ISO/IEC 23009-1): a bounded parser over pugixml (a real XML parser, never a
// regex) reading what an edge needs: type static/dynamic, minimumUpdatePeriod,
// availabilityStartTime, publishTime, periods, adaptation sets, representations and their
// effective SegmentTemplate (inherited Period → AdaptationSet → Representation: media,
// initialization, timescale, duration, startNumber, availabilityTimeOffset, SegmentTimeline with
// S t/d/r, r = -1 included), plus the expansion of a timeline into segments and the
// $RepresentationID$ / $Number$ / $Time$ / $Bandwidth$ template identifiers with %0<w>d widths.
//
// Bounds: a document over kMaxMpdBytes or with more than kMaxMpdEntries periods, sets,
// representations and S elements is refused (kTooLarge); a document that is not XML, has no
// MPD root, or has an attribute of the wrong form is refused (kInvalid). pugixml does not
// process DTDs or external entities, so a hostile document cannot make it expand text or read
// files. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/status.h"

namespace streamedge::streaming {

inline constexpr size_t kMaxMpdBytes = 8u << 20;
inline constexpr size_t kMaxMpdEntries = 200000;

// One S element: t (optional: continues the previous one), d, r (repeat count; -1: until the
// next S's t, or the end of the period).
struct DashTimelineEntry {
  std::optional<uint64_t> t;
  uint64_t d = 0;
  int64_t r = 0;
};

struct DashSegmentTemplate {
  std::string media;
  std::string initialization;
  uint64_t timescale = 1;
  std::optional<uint64_t> duration;  // in timescale units (without a SegmentTimeline)
  uint64_t start_number = 1;
  uint64_t presentation_time_offset = 0;
  std::optional<double> availability_time_offset_s;
  std::vector<DashTimelineEntry> timeline;  // empty: no SegmentTimeline
};

struct DashRepresentation {
  std::string id;
  uint64_t bandwidth = 0;
  std::optional<DashSegmentTemplate> segment_template;  // effective (inherited) template
};

struct DashAdaptationSet {
  std::string content_type;  // contentType, else the mimeType's type ("video/mp4" → "video")
  std::vector<DashRepresentation> representations;
};

struct DashPeriod {
  std::string id;
  std::optional<double> start_s;
  std::optional<double> duration_s;
  std::vector<DashAdaptationSet> adaptation_sets;
};

struct DashMpd {
  bool dynamic = false;                               // type="dynamic" (default static)
  std::optional<double> minimum_update_period_s;
  std::optional<double> availability_start_time_s;    // seconds since the Unix epoch
  std::optional<double> publish_time_s;
  std::optional<double> time_shift_buffer_depth_s;
  std::optional<double> media_presentation_duration_s;
  std::vector<DashPeriod> periods;
};

// Errors: kTooLarge, kInvalid (source kUpstream).
Result<DashMpd> parseDashMpd(std::string_view xml);

// One segment of a template: its $Number$, its $Time$ and duration in timescale units.
struct DashSegmentRef {
  uint64_t number = 0;
  uint64_t time = 0;
  uint64_t duration = 0;
};

// The segments a SegmentTimeline lists, in order, at most `max_segments` (then kTooLarge).
// `period_end` (timescale units, presentation time) ends an r = -1 on the last S; without it
// such an entry is kInvalid. Numbers start at start_number. Errors: kInvalid (an empty
// timeline, an S going back in time, an open r without an end), kTooLarge.
Result<std::vector<DashSegmentRef>> expandTimeline(const DashSegmentTemplate& tmpl,
                                                   std::optional<uint64_t> period_end,
                                                   size_t max_segments);

// A template URL with its identifiers replaced (ISO/IEC 23009-1 §5.3.9.4.4): $$ → $,
// $RepresentationID$, $Number$, $Time$, $Bandwidth$, the last three with an optional %0<w>d
// width (w ≤ 32). Errors (kInvalid): an unknown identifier, an unterminated one, a width on
// $RepresentationID$, a result over 8 KiB.
Result<std::string> formatSegmentUrl(std::string_view tmpl, std::string_view representation_id,
                                     uint64_t number, uint64_t time, uint64_t bandwidth);

}  // namespace streamedge::streaming
