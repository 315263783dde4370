#include "streaming/dash_prefetch.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cache/cache_key.h"

namespace streamedge::streaming {

namespace {

constexpr double kMinWatchWindowS = 30;
constexpr double kMaxWatchWindowS = 3600;
constexpr size_t kMaxSegmentDigits = 20;  // a uint64_t
// Segment counts past this are not trusted (2^53: where a double stops counting exactly).
constexpr double kMaxSegmentCount = 9007199254740992.0;
// The parser reads availabilityTimeOffset="INF" as 1e12 s.
constexpr double kInfiniteOffsetS = 1e11;

// Where a template's $Number$ or $Time$ identifier is ([begin, end) of "$...$"), found by the
// same scan as formatSegmentUrl ("$$" is a literal dollar). Returns false for none, more than
// one, or an unterminated identifier.
bool findNumberIdentifier(std::string_view tmpl, size_t& begin, size_t& end) {
  bool found = false;
  size_t i = 0;
  while (i < tmpl.size()) {
    const size_t dollar = tmpl.find('$', i);
    if (dollar == std::string_view::npos) break;
    const size_t close = tmpl.find('$', dollar + 1);
    if (close == std::string_view::npos) return false;
    const std::string_view ident = tmpl.substr(dollar + 1, close - dollar - 1);
    const std::string_view name = ident.substr(0, ident.find('%'));
    if (name == "Number" || name == "Time") {
      if (found) return false;
      found = true;
      begin = dollar;
      end = close + 1;
    }
    i = close + 1;
  }
  return found;
}

// The period the live edge is in: the last one starting at or before `elapsed_s` (seconds
// since availabilityStartTime; without it, the last period). A period without a start follows
// the previous one when that one has a duration, else starts where it does.
const DashPeriod* currentPeriod(const DashMpd& mpd, std::optional<double> elapsed_s,
                                double& start_s) {
  const DashPeriod* current = nullptr;
  double previous_start = 0;
  std::optional<double> previous_duration;
  for (size_t i = 0; i < mpd.periods.size(); ++i) {
    const DashPeriod& p = mpd.periods[i];
    double s = 0;
    if (p.start_s) {
      s = *p.start_s;
    } else if (i > 0) {
      s = previous_start + previous_duration.value_or(0);
    }
    previous_start = s;
    previous_duration = p.duration_s;
    if (current && elapsed_s && s > *elapsed_s) break;
    current = &p;
    start_s = s;
  }
  return current;
}

// (number, time) of the newest `segments` segments of a duration-based template, newest first.
std::vector<DashSegmentRef> newestByDuration(const DashSegmentTemplate& tmpl,
                                             const DashPeriod& period, double since_period_start_s,
                                             size_t segments) {
  std::vector<DashSegmentRef> out;
  if (!tmpl.duration || *tmpl.duration == 0 || tmpl.timescale == 0) return out;
  const double ato = tmpl.availability_time_offset_s.value_or(0);
  // "INF" (every announced segment is available): without a period end there is no newest.
  if (ato >= kInfiniteOffsetS && !period.duration_s) return out;
  const double segment_s =
      static_cast<double>(*tmpl.duration) / static_cast<double>(tmpl.timescale);
  // (n - startNumber + 1) * segment_s - ato <= since_period_start_s
  double available = std::floor((since_period_start_s + ato) / segment_s);
  if (period.duration_s) {
    available = std::min(available, std::ceil(*period.duration_s / segment_s));
  }
  if (!std::isfinite(available) || available < 1 || available > kMaxSegmentCount) return out;
  const auto count = static_cast<uint64_t>(available);
  for (uint64_t i = 0; i < segments && i < count; ++i) {
    const uint64_t index = count - 1 - i;  // from startNumber
    DashSegmentRef ref;
    ref.number = tmpl.start_number + index;
    ref.time = tmpl.presentation_time_offset + index * *tmpl.duration;
    ref.duration = *tmpl.duration;
    if (ref.number < index) break;  // wrapped: a hostile startNumber
    out.push_back(ref);
  }
  return out;
}

// The last `segments` entries of a SegmentTimeline, newest first. An open r = -1 on the last S
// runs up to the live edge (`since_period_start_s`), else to the period's end.
std::vector<DashSegmentRef> newestByTimeline(const DashSegmentTemplate& tmpl,
                                             const DashPeriod& period,
                                             std::optional<double> since_period_start_s,
                                             size_t segments) {
  std::vector<DashSegmentRef> out;
  std::optional<uint64_t> end;
  const double ts = static_cast<double>(tmpl.timescale);
  std::optional<double> end_s = since_period_start_s;
  if (end_s) *end_s += tmpl.availability_time_offset_s.value_or(0);
  if (period.duration_s && (!end_s || *period.duration_s < *end_s)) end_s = period.duration_s;
  if (end_s && *end_s >= 0 && *end_s * ts < kMaxSegmentCount) {
    const auto offset = static_cast<uint64_t>(*end_s * ts);
    if (tmpl.presentation_time_offset <= UINT64_MAX - offset) {
      end = tmpl.presentation_time_offset + offset;
    }
  }
  const bool open = tmpl.timeline.back().r < 0;
  // The listed part: every S as written, the open last one (r = -1) counted once.
  DashSegmentTemplate listed = tmpl;
  if (open) listed.timeline.back().r = 0;
  Result<std::vector<DashSegmentRef>> all =
      expandTimeline(listed, std::nullopt, kMaxDashPrefetchTimeline);
  if (!all.isOk()) return out;
  std::vector<DashSegmentRef> refs = std::move(all.value());
  if (open) {
    // The open entry repeats up to the live edge, which may be years of segments after its
    // t: only its last few are expanded (the same S, moved forward by whole segments). Of
    // those, the one still being made (it ends after the edge) is not available yet.
    const DashSegmentRef first = refs.back();
    refs.pop_back();
    const size_t listed_count = refs.size();
    const uint64_t complete = end && *end > first.time ? (*end - first.time) / first.duration : 0;
    const uint64_t skip = complete > segments + 1 ? complete - segments - 1 : 0;
    if (end && *end > first.time && first.number <= UINT64_MAX - skip) {
      DashSegmentTemplate tail = tmpl;
      tail.timeline = {DashTimelineEntry{first.time + skip * first.duration, first.duration, -1}};
      tail.start_number = first.number + skip;
      Result<std::vector<DashSegmentRef>> more = expandTimeline(tail, end, segments + 4);
      if (more.isOk()) refs.insert(refs.end(), more->begin(), more->end());
    }
    while (end && refs.size() > listed_count &&
           refs.back().duration > *end - std::min(*end, refs.back().time)) {
      refs.pop_back();
    }
  }
  for (size_t i = 0; i < segments && i < refs.size(); ++i) out.push_back(refs[refs.size() - 1 - i]);
  return out;
}

}  // namespace

std::optional<DashSegmentPattern> dashSegmentPattern(std::string_view media_template,
                                                     std::string_view representation_id,
                                                     uint64_t bandwidth, std::string_view mpd_path,
                                                     std::string_view host) {
  size_t begin = 0;
  size_t end = 0;
  if (!findNumberIdentifier(media_template, begin, end)) return std::nullopt;
  // The two fixed parts are formatted on their own, so that text a representation id brings
  // in (even "$Number$") is never read as an identifier.
  Result<std::string> before =
      formatSegmentUrl(media_template.substr(0, begin), representation_id, 0, 0, bandwidth);
  Result<std::string> after =
      formatSegmentUrl(media_template.substr(end), representation_id, 0, 0, bandwidth);
  if (!before.isOk() || !after.isOk()) return std::nullopt;
  const std::string& prefix_text = before.value();
  const std::string& suffix_text = after.value();
  // A number in the query or past a fragment is not in the path a viewer asks for.
  if (prefix_text.find_first_of("?#") != std::string::npos) return std::nullopt;
  if (suffix_text.find('#') != std::string::npos) return std::nullopt;
  const std::string_view suffix_path =
      std::string_view(suffix_text).substr(0, suffix_text.find('?'));
  // Resolved and normalised as one URL with a stand-in digit: resolution only puts text in
  // front of a reference, so the number is still right before the suffix, unless
  // normalisation changed the suffix (dot segments, escapes): then there is no pattern.
  PrefetchTarget target;
  if (!resolvePrefetchUri(prefix_text + '0' + suffix_text, mpd_path, host, target)) {
    return std::nullopt;
  }
  std::string normalized;
  if (!cache::normalizePath(target.path, normalized)) return std::nullopt;
  const size_t tail = suffix_path.size() + 1;
  if (normalized.size() <= tail || normalized[normalized.size() - tail] != '0' ||
      !std::string_view(normalized).ends_with(suffix_path)) {
    return std::nullopt;
  }
  DashSegmentPattern pattern;
  pattern.prefix = normalized.substr(0, normalized.size() - tail);
  pattern.suffix.assign(suffix_path);
  return pattern;
}

bool matchesDashSegment(const DashSegmentPattern& pattern, std::string_view path) {
  if (path.size() <= pattern.prefix.size() + pattern.suffix.size()) return false;
  if (!path.starts_with(pattern.prefix) || !path.ends_with(pattern.suffix)) return false;
  const std::string_view digits = path.substr(
      pattern.prefix.size(), path.size() - pattern.prefix.size() - pattern.suffix.size());
  if (digits.size() > kMaxSegmentDigits) return false;
  return std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
}

DashPrefetchPlan planDashPrefetch(const DashMpd& mpd, std::string_view mpd_path,
                                  std::string_view host, size_t segments, double now_s) {
  DashPrefetchPlan plan;
  if (mpd.minimum_update_period_s && std::isfinite(*mpd.minimum_update_period_s)) {
    plan.watch_window_s =
        std::clamp(3 * *mpd.minimum_update_period_s, kMinWatchWindowS, kMaxWatchWindowS);
  }
  if (!mpd.dynamic) return plan;  // on demand: every segment is already what viewers fetch
  std::optional<double> elapsed_s;
  if (mpd.availability_start_time_s) elapsed_s = now_s - *mpd.availability_start_time_s;
  double period_start_s = 0;
  const DashPeriod* period = currentPeriod(mpd, elapsed_s, period_start_s);
  if (!period) return plan;
  std::optional<double> since_start_s;
  if (elapsed_s) since_start_s = *elapsed_s - period_start_s;
  for (const DashAdaptationSet& set : period->adaptation_sets) {
    for (const DashRepresentation& rep : set.representations) {
      if (plan.renditions.size() >= kMaxDashPrefetchRepresentations) return plan;
      if (!rep.segment_template || rep.segment_template->media.empty()) continue;
      const DashSegmentTemplate& tmpl = *rep.segment_template;
      DashRenditionTargets r;
      r.representation_id = rep.id;
      r.pattern = dashSegmentPattern(tmpl.media, rep.id, rep.bandwidth, mpd_path, host);
      std::vector<DashSegmentRef> refs;
      if (!tmpl.timeline.empty()) {
        refs = newestByTimeline(tmpl, *period, since_start_s, segments);
      } else if (since_start_s) {
        refs = newestByDuration(tmpl, *period, *since_start_s, segments);
      }
      for (const DashSegmentRef& ref : refs) {
        Result<std::string> url =
            formatSegmentUrl(tmpl.media, rep.id, ref.number, ref.time, rep.bandwidth);
        PrefetchTarget target;
        if (!url.isOk() || !resolvePrefetchUri(url.value(), mpd_path, host, target)) {
          ++r.refused;
          continue;
        }
        if (std::find(r.newest.begin(), r.newest.end(), target) == r.newest.end()) {
          r.newest.push_back(std::move(target));
        }
      }
      plan.renditions.push_back(std::move(r));
    }
  }
  return plan;
}

}  // namespace streamedge::streaming
