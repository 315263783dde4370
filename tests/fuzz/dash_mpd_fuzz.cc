// libFuzzer target: the DASH MPD parser (pugixml underneath), timeline expansion, template
// formatting and the prefetch plan of a live MPD. Whatever the bytes: an MPD or an error,
// bounded work, consistent results.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "streaming/dash_mpd.h"
#include "streaming/dash_prefetch.h"
#include "streaming/freshness.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace streamedge::streaming;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto parsed = parseDashMpd(text);
  const streamedge::conf::CachePolicy policy;
  (void)streamLifetime(text, false, policy);
  if (!parsed.isOk()) {
    // The text may also be a template: formatting it never goes past its bound.
    const auto url = formatSegmentUrl(text.substr(0, 256), "rep", 7, 9, 11);
    if (url.isOk()) check(url->size() <= 8192);
    const auto pattern = dashSegmentPattern(text.substr(0, 256), "rep", 11, "/d/m.mpd", "e.test");
    if (pattern) check(!pattern->prefix.empty() && pattern->prefix.front() == '/');
    return 0;
  }
  // The prefetch plan, a while after availabilityStartTime: bounded whatever the MPD says.
  const double now_s = parsed->availability_start_time_s.value_or(0) + 1e6;
  const DashPrefetchPlan plan = planDashPrefetch(*parsed, "/d/m.mpd", "e.test", 3, now_s);
  check(plan.renditions.size() <= kMaxDashPrefetchRepresentations);
  check(plan.watch_window_s >= 30 && plan.watch_window_s <= 3600);
  check(parsed->dynamic || plan.renditions.empty());
  for (const DashRenditionTargets& r : plan.renditions) {
    check(r.newest.size() + r.refused <= 3);
    if (r.pattern) check(!r.pattern->prefix.empty() && r.pattern->prefix.front() == '/');
  }
  check(!parsed->periods.empty());
  check(!parsed->dynamic || parsed->availability_start_time_s.has_value());
  for (const DashPeriod& p : parsed->periods) {
    for (const DashAdaptationSet& s : p.adaptation_sets) {
      for (const DashRepresentation& r : s.representations) {
        check(!r.id.empty());
        if (!r.segment_template) continue;
        const DashSegmentTemplate& t = *r.segment_template;
        check(t.timescale > 0);
        if (!t.timeline.empty()) {
          const auto segs = expandTimeline(t, uint64_t{1} << 40, 1000);
          if (segs.isOk()) {
            check(segs->size() <= 1000);
            for (size_t i = 1; i < segs->size(); ++i) {
              check((*segs)[i].time >= (*segs)[i - 1].time + (*segs)[i - 1].duration);
              check((*segs)[i].number == (*segs)[i - 1].number + 1);
            }
          }
        }
        const auto url = formatSegmentUrl(t.media, r.id, t.start_number, 0, r.bandwidth);
        if (url.isOk()) check(url->size() <= 8192);
      }
    }
  }
  return 0;
}
