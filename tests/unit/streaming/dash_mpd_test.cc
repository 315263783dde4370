#include "streaming/dash_mpd.h"

#include <gtest/gtest.h>

#include <string>

namespace streamedge::streaming {
namespace {

constexpr const char* kLive = R"(<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic"
     availabilityStartTime="2024-01-01T00:00:00Z" publishTime="2024-01-01T01:00:00.5Z"
     minimumUpdatePeriod="PT2S" timeShiftBufferDepth="PT1M" minBufferTime="PT4S">
  <Period id="p0" start="PT0S">
    <AdaptationSet mimeType="video/mp4">
      <SegmentTemplate timescale="90000" startNumber="10" media="$RepresentationID$/seg_$Number%05d$.m4s"
                       initialization="$RepresentationID$/init.mp4" availabilityTimeOffset="1.5">
        <SegmentTimeline>
          <S t="900000" d="180000" r="2"/>
          <S d="90000"/>
          <S t="1800000" d="180000" r="-1"/>
        </SegmentTimeline>
      </SegmentTemplate>
      <Representation id="720p" bandwidth="2500000"/>
      <Representation id="360p" bandwidth="800000">
        <SegmentTemplate media="low/$Time$.m4s"/>
      </Representation>
    </AdaptationSet>
    <AdaptationSet contentType="audio">
      <Representation id="en" bandwidth="128000">
        <SegmentTemplate timescale="48000" duration="96000" media="a/$Number$.m4s"/>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>
)";

TEST(DashMpd, ReadsADynamicMpdWithInheritedTemplates) {
  const Result<DashMpd> r = parseDashMpd(kLive);
  ASSERT_TRUE(r.isOk()) << r.status().detail();
  const DashMpd& m = *r;
  EXPECT_TRUE(m.dynamic);
  EXPECT_DOUBLE_EQ(m.minimum_update_period_s.value_or(-1), 2.0);
  EXPECT_DOUBLE_EQ(m.availability_start_time_s.value_or(-1), 1704067200.0);
  EXPECT_DOUBLE_EQ(m.publish_time_s.value_or(-1), 1704067200.0 + 3600.5);
  EXPECT_DOUBLE_EQ(m.time_shift_buffer_depth_s.value_or(-1), 60.0);
  ASSERT_EQ(m.periods.size(), 1u);
  const DashPeriod& p = m.periods[0];
  EXPECT_EQ(p.id, "p0");
  ASSERT_EQ(p.adaptation_sets.size(), 2u);
  EXPECT_EQ(p.adaptation_sets[0].content_type, "video");
  EXPECT_EQ(p.adaptation_sets[1].content_type, "audio");
  const DashRepresentation& hi = p.adaptation_sets[0].representations[0];
  ASSERT_TRUE(hi.segment_template.has_value());
  EXPECT_EQ(hi.segment_template->timescale, 90000u);
  EXPECT_EQ(hi.segment_template->start_number, 10u);
  EXPECT_DOUBLE_EQ(hi.segment_template->availability_time_offset_s.value_or(0), 1.5);
  EXPECT_EQ(hi.segment_template->timeline.size(), 3u);
  EXPECT_EQ(hi.segment_template->timeline[2].r, -1);
  // The representation's own template overrides media only; the rest is inherited.
  const DashRepresentation& lo = p.adaptation_sets[0].representations[1];
  EXPECT_EQ(lo.segment_template->media, "low/$Time$.m4s");
  EXPECT_EQ(lo.segment_template->initialization, "$RepresentationID$/init.mp4");
  EXPECT_EQ(lo.segment_template->timeline.size(), 3u);
  const DashRepresentation& audio = p.adaptation_sets[1].representations[0];
  EXPECT_EQ(audio.segment_template->duration, 96000u);
  EXPECT_TRUE(audio.segment_template->timeline.empty());
}

TEST(DashMpd, ExpandsTimelinesIncludingOpenRepeats) {
  const Result<DashMpd> r = parseDashMpd(kLive);
  ASSERT_TRUE(r.isOk());
  const DashSegmentTemplate& t = *r->periods[0].adaptation_sets[0].representations[0].segment_template;
  // The last S repeats until the period end: 1800000 + 3 * 180000.
  const auto segs = expandTimeline(t, 1800000 + 3 * 180000, 100);
  ASSERT_TRUE(segs.isOk()) << segs.status().detail();
  ASSERT_EQ(segs->size(), 3u + 1u + 3u);
  EXPECT_EQ((*segs)[0].number, 10u);
  EXPECT_EQ((*segs)[0].time, 900000u);
  EXPECT_EQ((*segs)[2].time, 900000u + 2 * 180000);
  EXPECT_EQ((*segs)[3].time, 1440000u);  // continues from the previous S
  EXPECT_EQ((*segs)[3].duration, 90000u);
  EXPECT_EQ((*segs)[4].time, 1800000u);  // jumps to its own t
  EXPECT_EQ((*segs)[6].number, 16u);
  // Without a period end an open repeat cannot be expanded; a limit is a limit.
  EXPECT_EQ(expandTimeline(t, std::nullopt, 100).status().code(), Code::kInvalid);
  EXPECT_EQ(expandTimeline(t, 1800000 + 3 * 180000, 5).status().code(), Code::kTooLarge);
  // r = -1 followed by another S runs up to that S's t.
  DashSegmentTemplate open;
  open.timeline = {{0, 10, -1}, {100, 5, 0}};
  const auto up_to = expandTimeline(open, std::nullopt, 100);
  ASSERT_TRUE(up_to.isOk());
  EXPECT_EQ(up_to->size(), 11u);
  EXPECT_EQ(up_to->back().time, 100u);
}

TEST(DashMpd, FormatsTemplateIdentifiers) {
  EXPECT_EQ(formatSegmentUrl("$RepresentationID$/seg_$Number%05d$.m4s", "720p", 42, 0, 0).value(),
            "720p/seg_00042.m4s");
  EXPECT_EQ(formatSegmentUrl("t/$Time$-$Bandwidth%03d$.m4s", "x", 0, 1234567890123, 5).value(),
            "t/1234567890123-005.m4s");
  EXPECT_EQ(formatSegmentUrl("a$$b$Number$", "x", 7, 0, 0).value(), "a$b7");
  EXPECT_EQ(formatSegmentUrl("$Number%02d$", "x", 12345, 0, 0).value(), "12345");  // width is a minimum
  for (const char* bad : {"$Number", "$Unknown$", "$RepresentationID%05d$", "$Number%5d$",
                          "$Number%0xd$", "$Number%099d$"}) {
    EXPECT_FALSE(formatSegmentUrl(bad, "x", 1, 1, 1).isOk()) << bad;
  }
}

TEST(DashMpd, StaticIsTheDefaultType) {
  const Result<DashMpd> r = parseDashMpd(
      "<MPD mediaPresentationDuration=\"PT1H2M3.5S\"><Period><AdaptationSet>"
      "<Representation id=\"a\" bandwidth=\"1\"/></AdaptationSet></Period></MPD>");
  ASSERT_TRUE(r.isOk()) << r.status().detail();
  EXPECT_FALSE(r->dynamic);
  EXPECT_DOUBLE_EQ(r->media_presentation_duration_s.value_or(0), 3723.5);
}

TEST(DashMpd, RefusesGarbageAndHostileDocuments) {
  const char* bad[] = {
      "",
      "not xml",
      "<MPD",                                              // truncated
      "<NotMPD><Period/></NotMPD>",
      "<MPD type=\"live\"><Period/></MPD>",
      "<MPD type=\"dynamic\"><Period/></MPD>",            // dynamic without availabilityStartTime
      "<MPD minimumUpdatePeriod=\"2 seconds\"><Period/></MPD>",
      "<MPD minimumUpdatePeriod=\"P1Y\"><Period/></MPD>",  // years have no fixed length
      "<MPD><Period/><Period start=\"-PT1S\"/></MPD>",
      "<MPD></MPD>",                                       // no period
      "<MPD><Period><AdaptationSet><Representation bandwidth=\"1\"/></AdaptationSet></Period></MPD>",
      "<MPD><Period><AdaptationSet><Representation id=\"a b\" bandwidth=\"1\"/></AdaptationSet></Period></MPD>",
      "<MPD><Period><SegmentTemplate timescale=\"0\"/></Period></MPD>",
      "<MPD><Period><SegmentTemplate><SegmentTimeline><S t=\"0\"/></SegmentTimeline></SegmentTemplate></Period></MPD>",
      "<MPD><Period><SegmentTemplate><SegmentTimeline><S d=\"1\" r=\"-2\"/></SegmentTimeline></SegmentTemplate></Period></MPD>",
      "<MPD><Period></MPD>",                               // not well-formed
  };
  for (const char* text : bad) EXPECT_FALSE(parseDashMpd(text).isOk()) << text;

  // An entity expansion attack: pugixml processes no DTD, so entities stay unexpanded text.
  const Result<DashMpd> entities = parseDashMpd(
      "<?xml version=\"1.0\"?><!DOCTYPE m [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]>"
      "<MPD><Period><AdaptationSet><Representation id=\"&b;\" bandwidth=\"1\"/></AdaptationSet>"
      "</Period></MPD>");
  ASSERT_TRUE(entities.isOk()) << entities.status().detail();
  EXPECT_EQ(entities->periods[0].adaptation_sets[0].representations[0].id, "&b;");

  std::string big = "<MPD>";
  big.append(kMaxMpdBytes, ' ');
  big += "</MPD>";
  EXPECT_EQ(parseDashMpd(big).status().code(), Code::kTooLarge);

  std::string many = "<MPD><Period><SegmentTemplate><SegmentTimeline>";
  for (size_t i = 0; i <= kMaxMpdEntries; ++i) many += "<S d=\"1\"/>";
  many += "</SegmentTimeline></SegmentTemplate></Period></MPD>";
  ASSERT_LT(many.size(), kMaxMpdBytes);
  EXPECT_EQ(parseDashMpd(many).status().code(), Code::kTooLarge);
}

}  // namespace
}  // namespace streamedge::streaming
