#include "streaming/dash_prefetch.h"

#include <gtest/gtest.h>

#include <string>

namespace streamedge::streaming {
namespace {

constexpr double kAst = 1704067200.0;  // 2024-01-01T00:00:00Z

DashMpd parse(const std::string& xml) {
  Result<DashMpd> r = parseDashMpd(xml);
  EXPECT_TRUE(r.isOk()) << r.status().detail();
  return r.isOk() ? r.value() : DashMpd{};
}

// A live MPD as the origin simulator serves it: 2 s segments from number 1.
std::string numberMpd(const std::string& template_extra = "", const std::string& type = "dynamic",
                      const std::string& period_start = "PT0S",
                      const std::string& media = "$RepresentationID$/seg_$Number$.m4s") {
  return "<?xml version=\"1.0\"?>\n"
         "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" type=\"" +
         type +
         "\" "
         "availabilityStartTime=\"2024-01-01T00:00:00Z\" minimumUpdatePeriod=\"PT2S\">\n"
         "  <Period id=\"1\" start=\"" +
         period_start +
         "\">\n"
         "    <AdaptationSet mimeType=\"video/mp4\">\n"
         "      <SegmentTemplate timescale=\"1\" duration=\"2\" media=\"" +
         media + "\" " + template_extra +
         "/>\n"
         "      <Representation id=\"720p\" bandwidth=\"2500000\"/>\n"
         "      <Representation id=\"360p\" bandwidth=\"800000\"/>\n"
         "    </AdaptationSet>\n"
         "  </Period>\n"
         "</MPD>\n";
}

std::vector<std::string> paths(const DashRenditionTargets& r) {
  std::vector<std::string> out;
  for (const PrefetchTarget& t : r.newest) {
    out.push_back(t.query.empty() ? t.path : t.path + "?" + t.query);
  }
  return out;
}

TEST(DashPrefetch, NumberTemplateSelectsTheNewestAvailableSegmentsOfEveryRepresentation) {
  const DashMpd mpd = parse(numberMpd("startNumber=\"1\""));
  // Segment n is available at AST + n * 2 s: at AST + 101 s, 50 is the newest.
  const DashPrefetchPlan plan =
      planDashPrefetch(mpd, "/dash/manifest.mpd", "edge.test", 3, kAst + 101);
  ASSERT_EQ(plan.renditions.size(), 2u);
  EXPECT_EQ(plan.renditions[0].representation_id, "720p");
  EXPECT_EQ(paths(plan.renditions[0]),
            (std::vector<std::string>{"/dash/720p/seg_50.m4s", "/dash/720p/seg_49.m4s",
                                      "/dash/720p/seg_48.m4s"}));
  EXPECT_EQ(paths(plan.renditions[1]).front(), "/dash/360p/seg_50.m4s");
  EXPECT_EQ(plan.renditions[0].refused, 0u);
  EXPECT_DOUBLE_EQ(plan.watch_window_s, 30.0) << "3 × minimumUpdatePeriod is less than 30 s";

  // Exactly at its availability time a segment counts; a moment before, it does not.
  EXPECT_EQ(
      paths(planDashPrefetch(mpd, "/dash/manifest.mpd", "edge.test", 1, kAst + 100).renditions[0]),
      (std::vector<std::string>{"/dash/720p/seg_50.m4s"}));
  EXPECT_EQ(
      paths(planDashPrefetch(mpd, "/dash/manifest.mpd", "edge.test", 1, kAst + 99.9).renditions[0]),
      (std::vector<std::string>{"/dash/720p/seg_49.m4s"}));
  // Before the first segment is complete, nothing is available.
  EXPECT_TRUE(planDashPrefetch(mpd, "/dash/manifest.mpd", "edge.test", 3, kAst + 1)
                  .renditions[0]
                  .newest.empty());
  EXPECT_TRUE(planDashPrefetch(mpd, "/dash/manifest.mpd", "edge.test", 3, kAst - 50)
                  .renditions[0]
                  .newest.empty());
}

TEST(DashPrefetch, StartNumberPeriodStartAndWidthAreHonoured) {
  const DashMpd mpd = parse(numberMpd("startNumber=\"10\"", "dynamic", "PT10S",
                                      "$RepresentationID$/seg_$Number%05d$.m4s"));
  // 5 s into the period: 2 segments (10 and 11) are complete.
  const DashPrefetchPlan plan =
      planDashPrefetch(mpd, "/live/ch/manifest.mpd", "edge.test", 4, kAst + 15);
  EXPECT_EQ(paths(plan.renditions[0]), (std::vector<std::string>{"/live/ch/720p/seg_00011.m4s",
                                                                 "/live/ch/720p/seg_00010.m4s"}));
}

TEST(DashPrefetch, AvailabilityTimeOffsetMakesSegmentsAvailableEarlier) {
  const DashMpd without = parse(numberMpd());
  const DashMpd with = parse(numberMpd("availabilityTimeOffset=\"1.5\""));
  // At AST + 99 s: segment 49 complete; with 1.5 s offset, 50 (due at 100 s) is announced.
  EXPECT_EQ(paths(planDashPrefetch(without, "/d/m.mpd", "edge.test", 1, kAst + 99).renditions[0]),
            (std::vector<std::string>{"/d/720p/seg_49.m4s"}));
  EXPECT_EQ(paths(planDashPrefetch(with, "/d/m.mpd", "edge.test", 1, kAst + 99).renditions[0]),
            (std::vector<std::string>{"/d/720p/seg_50.m4s"}));
  // "INF" without a period end names no newest segment (rather than one far in the future).
  const DashMpd inf = parse(numberMpd("availabilityTimeOffset=\"INF\""));
  EXPECT_TRUE(
      planDashPrefetch(inf, "/d/m.mpd", "edge.test", 1, kAst + 99).renditions[0].newest.empty());
}

TEST(DashPrefetch, SegmentTimelineSelectsItsLastEntries) {
  const std::string xml = R"(<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic"
       availabilityStartTime="2024-01-01T00:00:00Z" minimumUpdatePeriod="PT20S">
  <Period id="p0" start="PT0S">
    <AdaptationSet mimeType="video/mp4">
      <SegmentTemplate timescale="90000" startNumber="10" media="$RepresentationID$/$Time$.m4s">
        <SegmentTimeline>
          <S t="900000" d="180000" r="2"/>
          <S d="90000"/>
        </SegmentTimeline>
      </SegmentTemplate>
      <Representation id="v1" bandwidth="1"/>
      <Representation id="v2" bandwidth="2">
        <SegmentTemplate media="n/$Number$.m4s"/>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>)";
  const DashMpd mpd = parse(xml);
  const DashPrefetchPlan plan =
      planDashPrefetch(mpd, "/tl/manifest.mpd", "edge.test", 2, kAst + 1000);
  ASSERT_EQ(plan.renditions.size(), 2u);
  EXPECT_EQ(paths(plan.renditions[0]),
            (std::vector<std::string>{"/tl/v1/1440000.m4s", "/tl/v1/1260000.m4s"}));
  EXPECT_EQ(paths(plan.renditions[1]), (std::vector<std::string>{"/tl/n/13.m4s", "/tl/n/12.m4s"}));
  EXPECT_DOUBLE_EQ(plan.watch_window_s, 60.0) << "3 × minimumUpdatePeriod";
  ASSERT_TRUE(plan.renditions[0].pattern.has_value());
  EXPECT_EQ(plan.renditions[0].pattern->prefix, "/tl/v1/");
  EXPECT_EQ(plan.renditions[0].pattern->suffix, ".m4s");
}

TEST(DashPrefetch, OpenTimelineEntryRunsUpToNow) {
  const std::string xml = R"(<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic"
       availabilityStartTime="2024-01-01T00:00:00Z" minimumUpdatePeriod="PT2S">
  <Period start="PT0S"><AdaptationSet>
    <SegmentTemplate timescale="1" media="s_$Time$.m4s">
      <SegmentTimeline><S t="0" d="2" r="-1"/></SegmentTimeline>
    </SegmentTemplate>
    <Representation id="a" bandwidth="1"/>
  </AdaptationSet></Period>
</MPD>)";
  const DashMpd mpd = parse(xml);
  const DashPrefetchPlan plan = planDashPrefetch(mpd, "/o/m.mpd", "edge.test", 1, kAst + 11);
  ASSERT_EQ(plan.renditions.size(), 1u);
  // Segments [0,2) ... [8,10) end by 11 s; [10,12) does not.
  EXPECT_EQ(paths(plan.renditions[0]), (std::vector<std::string>{"/o/s_8.m4s"}));
  // Years after its t: still the newest complete segments, without expanding all before them.
  const DashPrefetchPlan later = planDashPrefetch(mpd, "/o/m.mpd", "edge.test", 2, kAst + 1e8 + 1);
  EXPECT_EQ(paths(later.renditions[0]),
            (std::vector<std::string>{"/o/s_99999998.m4s", "/o/s_99999996.m4s"}));
  // Before its first segment is complete: nothing.
  EXPECT_TRUE(
      planDashPrefetch(mpd, "/o/m.mpd", "edge.test", 2, kAst + 1).renditions[0].newest.empty());
}

TEST(DashPrefetch, OpenTimelineEntryAfterListedOnesContinuesTheirNumbering) {
  const std::string xml = R"(<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic"
       availabilityStartTime="2024-01-01T00:00:00Z" minimumUpdatePeriod="PT2S">
  <Period start="PT0S"><AdaptationSet>
    <SegmentTemplate timescale="1" startNumber="5" media="$Number$_$RepresentationID$.m4s?t=$Time$">
      <SegmentTimeline><S t="0" d="2" r="1"/><S d="4" r="-1"/></SegmentTimeline>
    </SegmentTemplate>
    <Representation id="a" bandwidth="1"/>
  </AdaptationSet></Period>
</MPD>)";
  const DashMpd mpd = parse(xml);
  // 0 and 2 listed; then 4, 8, 12 complete by 17 s (16 is still being made).
  const DashPrefetchPlan plan = planDashPrefetch(mpd, "/o/m.mpd", "edge.test", 5, kAst + 17);
  EXPECT_EQ(paths(plan.renditions[0]),
            (std::vector<std::string>{"/o/9_a.m4s?t=12", "/o/8_a.m4s?t=8", "/o/7_a.m4s?t=4",
                                      "/o/6_a.m4s?t=2", "/o/5_a.m4s?t=0"}));
}

TEST(DashPrefetch, StaticMpdSelectsNothing) {
  const DashMpd mpd = parse(numberMpd("", "static"));
  EXPECT_TRUE(
      planDashPrefetch(mpd, "/dash/manifest.mpd", "edge.test", 3, kAst + 101).renditions.empty());
}

TEST(DashPrefetch, AnotherHostIsRefusedTheSameHostIsKept) {
  const DashMpd other = parse(numberMpd("", "dynamic", "PT0S", "http://other.test/x/$Number$.m4s"));
  const DashPrefetchPlan refused =
      planDashPrefetch(other, "/dash/manifest.mpd", "edge.test", 2, kAst + 101);
  ASSERT_EQ(refused.renditions.size(), 2u);
  EXPECT_TRUE(refused.renditions[0].newest.empty());
  EXPECT_EQ(refused.renditions[0].refused, 2u);
  EXPECT_FALSE(refused.renditions[0].pattern.has_value())
      << "another host's segments are never ours";

  const DashMpd same = parse(numberMpd(
      "", "dynamic", "PT0S", "https://EDGE.test:8443/abs/$RepresentationID$-$Number$.m4s?k=1"));
  const DashPrefetchPlan kept =
      planDashPrefetch(same, "/dash/manifest.mpd", "edge.test", 1, kAst + 101);
  EXPECT_EQ(paths(kept.renditions[0]), (std::vector<std::string>{"/abs/720p-50.m4s?k=1"}));
  ASSERT_TRUE(kept.renditions[0].pattern.has_value());
  EXPECT_EQ(kept.renditions[0].pattern->prefix, "/abs/720p-");
  EXPECT_EQ(kept.renditions[0].pattern->suffix, ".m4s");
}

TEST(DashPrefetch, NumberPatternMatchesOnlyThatRepresentationsSegments) {
  const auto p = dashSegmentPattern("$RepresentationID$/seg_$Number%05d$.m4s", "720p", 1,
                                    "/dash/manifest.mpd", "e");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(*p, (DashSegmentPattern{"/dash/720p/seg_", ".m4s"}));
  EXPECT_TRUE(matchesDashSegment(*p, "/dash/720p/seg_00042.m4s"));
  EXPECT_TRUE(matchesDashSegment(*p, "/dash/720p/seg_7.m4s"));
  EXPECT_FALSE(matchesDashSegment(*p, "/dash/360p/seg_7.m4s"));
  EXPECT_FALSE(matchesDashSegment(*p, "/dash/720p/seg_.m4s")) << "no digits";
  EXPECT_FALSE(matchesDashSegment(*p, "/dash/720p/seg_12a.m4s"));
  EXPECT_FALSE(matchesDashSegment(*p, "/dash/720p/seg_1/2.m4s"));
  EXPECT_FALSE(matchesDashSegment(*p, "/dash/720p/seg_123456789012345678901.m4s"))
      << "over 20 digits";
  EXPECT_FALSE(matchesDashSegment(*p, "/dash/720p/init.mp4"));
  EXPECT_FALSE(matchesDashSegment(*p, "/dash/720p/seg_.m4"));

  // The number may be a directory; the template's query is not compared.
  const auto dir = dashSegmentPattern("$RepresentationID$/$Time$/chunk.m4s?v=$Bandwidth$", "a", 9,
                                      "/x/m.mpd", "e");
  ASSERT_TRUE(dir.has_value());
  EXPECT_EQ(*dir, (DashSegmentPattern{"/x/a/", "/chunk.m4s"}));
  EXPECT_TRUE(matchesDashSegment(*dir, "/x/a/900000/chunk.m4s"));
  // Only the number: any all-digit name of that directory.
  const auto bare = dashSegmentPattern("$Number$", "a", 1, "/x/m.mpd", "e");
  ASSERT_TRUE(bare.has_value());
  EXPECT_EQ(*bare, (DashSegmentPattern{"/x/", ""}));
  EXPECT_TRUE(matchesDashSegment(*bare, "/x/12"));
  EXPECT_FALSE(matchesDashSegment(*bare, "/x/m.mpd"));
}

TEST(DashPrefetch, OddAndHostileTemplatesHaveNoPatternOrAHarmlessOne) {
  auto pattern = [](std::string_view tmpl, std::string_view id = "r") {
    return dashSegmentPattern(tmpl, id, 1, "/dash/manifest.mpd", "edge.test");
  };
  EXPECT_FALSE(pattern("static.m4s")) << "no number: never a segment of a live rendition";
  EXPECT_FALSE(pattern("$Number$_$Time$.m4s")) << "two numbers";
  EXPECT_FALSE(pattern("seg.m4s?n=$Number$")) << "the number in the query";
  EXPECT_FALSE(pattern("seg_$Number")) << "unterminated";
  EXPECT_FALSE(pattern("$Foo$/seg_$Number$.m4s")) << "unknown identifier";
  EXPECT_FALSE(pattern("$RepresentationID%02d$/$Number$.m4s")) << "a width on the id";
  EXPECT_FALSE(pattern("../../../../x/$Number$.m4s")) << "above the root";
  EXPECT_FALSE(pattern("seg_$Number$/../x.m4s")) << "normalisation would move the number";
  EXPECT_FALSE(pattern("seg_$Number$.m4s#f")) << "a fragment";
  EXPECT_FALSE(pattern("//other.test/$Number$.m4s")) << "another host";
  EXPECT_FALSE(pattern("seg_$Number$ x.m4s")) << "a space is no URL";
  EXPECT_FALSE(pattern("")) << "empty";
  // "$$" is a literal dollar; an id bringing identifiers along is text, not a template.
  EXPECT_EQ(pattern("$$$Number$.m4s"), (DashSegmentPattern{"/dash/$", ".m4s"}));
  EXPECT_EQ(pattern("$RepresentationID$/$Number$.m4s", "a$Number$"),
            (DashSegmentPattern{"/dash/a$Number$/", ".m4s"}));
  // Dot segments before the number are normalised away, as in a viewer's path.
  EXPECT_EQ(pattern("./v/../w/$Number$.m4s"), (DashSegmentPattern{"/dash/w/", ".m4s"}));
  const std::string huge(9000, 'a');
  EXPECT_FALSE(pattern(huge + "$Number$"));
}

TEST(DashPrefetch, RepresentationsPerMpdAreBounded) {
  std::string xml =
      "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" type=\"dynamic\" "
      "availabilityStartTime=\"2024-01-01T00:00:00Z\"><Period start=\"PT0S\"><AdaptationSet>"
      "<SegmentTemplate timescale=\"1\" duration=\"2\" media=\"$RepresentationID$/$Number$.m4s\"/>";
  for (int i = 0; i < 200; ++i) {
    xml += "<Representation id=\"r" + std::to_string(i) + "\" bandwidth=\"1\"/>";
  }
  xml += "</AdaptationSet></Period></MPD>";
  const DashPrefetchPlan plan = planDashPrefetch(parse(xml), "/m.mpd", "e", 1, kAst + 100);
  EXPECT_EQ(plan.renditions.size(), kMaxDashPrefetchRepresentations);
}

TEST(DashPrefetch, TheCurrentPeriodIsTheLastOneStartedAndHugeUpdatePeriodsAreCapped) {
  const std::string xml = R"(<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic"
       availabilityStartTime="2024-01-01T00:00:00Z" minimumUpdatePeriod="PT100000S">
  <Period id="a" start="PT0S"><AdaptationSet>
    <SegmentTemplate timescale="1" duration="2" media="a_$Number$.m4s"/>
    <Representation id="x" bandwidth="1"/></AdaptationSet></Period>
  <Period id="b" start="PT100S"><AdaptationSet>
    <SegmentTemplate timescale="1" duration="2" media="b_$Number$.m4s"/>
    <Representation id="x" bandwidth="1"/></AdaptationSet></Period>
  <Period id="c" start="PT1000S"><AdaptationSet>
    <SegmentTemplate timescale="1" duration="2" media="c_$Number$.m4s"/>
    <Representation id="x" bandwidth="1"/></AdaptationSet></Period>
</MPD>)";
  const DashPrefetchPlan plan = planDashPrefetch(parse(xml), "/p/m.mpd", "e", 1, kAst + 110);
  ASSERT_EQ(plan.renditions.size(), 1u);
  EXPECT_EQ(paths(plan.renditions[0]), (std::vector<std::string>{"/p/b_5.m4s"}));
  EXPECT_DOUBLE_EQ(plan.watch_window_s, 3600.0);
}

}  // namespace
}  // namespace streamedge::streaming
