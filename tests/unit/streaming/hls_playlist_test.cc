#include "streaming/hls_playlist.h"

#include <gtest/gtest.h>

#include <string>
#include <variant>

namespace streamedge::streaming {
namespace {

constexpr const char* kLowLatency =
    "#EXTM3U\n"
    "#EXT-X-VERSION:9\n"
    "#EXT-X-TARGETDURATION:4\n"
    "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.5,CAN-SKIP-UNTIL=24.0\n"
    "#EXT-X-PART-INF:PART-TARGET=0.5\n"
    "#EXT-X-MEDIA-SEQUENCE:100\n"
    "#EXT-X-MAP:URI=\"init.mp4\"\n"
    "#EXTINF:4.000,\n"
    "seg_100.m4s\n"
    "#EXT-X-PART:DURATION=0.5,URI=\"part_101_0.m4s\",INDEPENDENT=YES\n"
    "#EXT-X-PART:DURATION=0.5,URI=\"part_101_1.m4s\"\n"
    "#EXTINF:4.000,\n"
    "seg_101.m4s\n"
    "#EXT-X-PART:DURATION=0.5,URI=\"part_102_0.m4s\",INDEPENDENT=YES\n"
    "#EXT-X-PART:DURATION=0.5,URI=\"part_102_1.m4s\",GAP=YES\n"
    "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part_102_2.m4s\"\n"
    "#EXT-X-RENDITION-REPORT:URI=\"../360p/index.m3u8\",LAST-MSN=102,LAST-PART=1\n";

HlsMediaPlaylist media(std::string_view text) {
  Result<HlsPlaylist> r = parseHlsPlaylist(text);
  EXPECT_TRUE(r.isOk()) << r.status().detail();
  if (!r.isOk()) return {};
  EXPECT_TRUE(std::holds_alternative<HlsMediaPlaylist>(*r));
  return std::get<HlsMediaPlaylist>(std::move(r).value());
}

TEST(HlsPlaylist, ReadsALowLatencyMediaPlaylist) {
  const HlsMediaPlaylist p = media(kLowLatency);
  EXPECT_EQ(p.target_duration_s, 4u);
  EXPECT_EQ(p.media_sequence, 100u);
  ASSERT_TRUE(p.part_target_s.has_value());
  EXPECT_DOUBLE_EQ(*p.part_target_s, 0.5);
  EXPECT_TRUE(p.server_control.can_block_reload);
  EXPECT_DOUBLE_EQ(p.server_control.part_hold_back_s.value_or(0), 1.5);
  EXPECT_DOUBLE_EQ(p.server_control.can_skip_until_s.value_or(0), 24.0);
  ASSERT_EQ(p.segments.size(), 2u);
  EXPECT_EQ(p.segments[0].msn, 100u);
  EXPECT_EQ(p.segments[0].uri, "seg_100.m4s");
  EXPECT_TRUE(p.segments[0].parts.empty());
  EXPECT_EQ(p.segments[1].msn, 101u);
  ASSERT_EQ(p.segments[1].parts.size(), 2u);
  EXPECT_EQ(p.segments[1].parts[0].uri, "part_101_0.m4s");
  EXPECT_TRUE(p.segments[1].parts[0].independent);
  EXPECT_FALSE(p.segments[1].parts[1].independent);
  ASSERT_EQ(p.trailing_parts.size(), 2u);
  EXPECT_TRUE(p.trailing_parts[1].gap);
  ASSERT_EQ(p.preload_hints.size(), 1u);
  EXPECT_EQ(p.preload_hints[0].type, HlsPreloadHint::Type::kPart);
  EXPECT_EQ(p.preload_hints[0].uri, "part_102_2.m4s");
  EXPECT_EQ(p.lastMsn(), 101u);
  EXPECT_EQ(p.nextMsn(), 102u);
  EXPECT_TRUE(p.live());
}

TEST(HlsPlaylist, ContainsAnswersWhatABlockingReloadWaitsFor) {
  const HlsMediaPlaylist p = media(kLowLatency);
  EXPECT_TRUE(p.contains(100, std::nullopt));
  EXPECT_TRUE(p.contains(101, std::nullopt));
  EXPECT_TRUE(p.contains(101, 7));  // a complete segment has all of its parts
  EXPECT_FALSE(p.contains(102, std::nullopt));  // still being produced
  EXPECT_TRUE(p.contains(102, 0));
  EXPECT_TRUE(p.contains(102, 1));
  EXPECT_FALSE(p.contains(102, 2));  // only hinted
  EXPECT_FALSE(p.contains(103, 0));
  EXPECT_TRUE(p.contains(5, std::nullopt));  // long gone: nothing to wait for
}

TEST(HlsPlaylist, DeltaUpdateNumbersSegmentsAfterTheSkippedOnes) {
  const HlsMediaPlaylist p = media(
      "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-SERVER-CONTROL:CAN-SKIP-UNTIL=12\n"
      "#EXT-X-MEDIA-SEQUENCE:50\n#EXT-X-SKIP:SKIPPED-SEGMENTS=10\n"
      "#EXTINF:2,\nseg_60.ts\n#EXTINF:2,\nseg_61.ts\n");
  EXPECT_EQ(p.skipped_segments, 10u);
  ASSERT_EQ(p.segments.size(), 2u);
  EXPECT_EQ(p.segments[0].msn, 60u);
  EXPECT_EQ(p.lastMsn(), 61u);
}

TEST(HlsPlaylist, EndedAndVodPlaylistsAreNotLive) {
  EXPECT_FALSE(media("#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\na.ts\n#EXT-X-ENDLIST\n").live());
  EXPECT_FALSE(media("#EXTM3U\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:6\n").live());
  EXPECT_TRUE(media("#EXTM3U\n#EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-TARGETDURATION:6\n").live());
  // CRLF line ends, blank lines and comments are fine.
  const HlsMediaPlaylist crlf = media("#EXTM3U\r\n\r\n# a comment\r\n#EXT-X-TARGETDURATION:6\r\n"
                                      "#EXTINF:5.5,title\r\nhttp://cdn/a.ts\r\n");
  ASSERT_EQ(crlf.segments.size(), 1u);
  EXPECT_EQ(crlf.segments[0].uri, "http://cdn/a.ts");
  EXPECT_DOUBLE_EQ(crlf.segments[0].duration_s, 5.5);
}

TEST(HlsPlaylist, ReadsAMasterPlaylist) {
  Result<HlsPlaylist> r = parseHlsPlaylist(
      "#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n"
      "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aud\",NAME=\"English\",DEFAULT=YES,URI=\"audio/en.m3u8\"\n"
      "#EXT-X-MEDIA:TYPE=CLOSED-CAPTIONS,GROUP-ID=\"cc\",NAME=\"CC1\",INSTREAM-ID=\"CC1\"\n"
      "#EXT-X-STREAM-INF:BANDWIDTH=2500000,RESOLUTION=1280x720,CODECS=\"avc1.64001f,mp4a.40.2\",AUDIO=\"aud\"\n"
      "720p/index.m3u8\n"
      "#EXT-X-STREAM-INF:BANDWIDTH=800000\n"
      "360p/index.m3u8\n"
      "#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,URI=\"iframes.m3u8\"\n");
  ASSERT_TRUE(r.isOk()) << r.status().detail();
  const auto& m = std::get<HlsMasterPlaylist>(*r);
  ASSERT_EQ(m.variants.size(), 2u);
  EXPECT_EQ(m.variants[0].uri, "720p/index.m3u8");
  EXPECT_EQ(m.variants[0].bandwidth, 2500000u);
  EXPECT_EQ(m.variants[1].uri, "360p/index.m3u8");
  ASSERT_EQ(m.renditions.size(), 3u);
  EXPECT_EQ(m.renditions[0].uri, "audio/en.m3u8");
  EXPECT_EQ(m.renditions[1].uri, "");
  EXPECT_EQ(m.renditions[2].type, "I-FRAME");
  EXPECT_EQ(m.renditions[2].uri, "iframes.m3u8");
}

TEST(HlsPlaylist, RefusesMalformedAndTruncatedInput) {
  const char* bad[] = {
      "",
      "not a playlist",
      "\xEF\xBB\xBF#EXTM3U\n#EXT-X-TARGETDURATION:6\n",  // a BOM
      "#EXTM3U\n",                                          // no target duration, no variants
      "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-TARGETDURATION:6\n",
      "#EXTM3U\n#EXT-X-TARGETDURATION:-6\n",
      "#EXTM3U\n#EXT-X-TARGETDURATION:6.5\n",
      "#EXTM3U\n#EXT-X-TARGETDURATION:99999999999999999999999\n",
      "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\n",  // cut before the URI
      "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6\na.ts\n",  // no comma
      "#EXTM3U\n#EXT-X-TARGETDURATION:6\nseg.ts\n",         // a URI without EXTINF
      "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-PART:DURATION=1\n",  // part without URI
      "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-PART:URI=\"p\",DURATION=x\n",
      "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-PART:URI=\"p,DURATION=1\n",  // unterminated quote
      "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-PART:URI=\"p\",URI=\"q\",DURATION=1\n",
      "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-PART-INF:PART-TARGET=0\n",
      "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=MAYBE\n",
      "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-PRELOAD-HINT:TYPE=SEGMENT,URI=\"x\"\n",
      "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\na.ts\n#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n",
      "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n",                 // variant without URI
      "#EXTM3U\n#EXT-X-STREAM-INF:RESOLUTION=1x1\nv.m3u8\n",     // no BANDWIDTH
      "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n#EXT-X-TARGETDURATION:6\n",  // mixed
      "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\na\x01.ts\n",  // control character
      "#EXTM3U\n#EXTM3U\n#EXT-X-TARGETDURATION:6\n",
  };
  for (const char* text : bad) {
    const Result<HlsPlaylist> r = parseHlsPlaylist(text);
    EXPECT_FALSE(r.isOk()) << text;
    if (!r.isOk()) {
      EXPECT_EQ(r.status().code(), Code::kInvalid) << text;
    }
  }
}

TEST(HlsPlaylist, BoundsSizeAndEntries) {
  std::string big = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n";
  big.append(kMaxPlaylistBytes, '#');
  EXPECT_EQ(parseHlsPlaylist(big).status().code(), Code::kTooLarge);

  std::string many = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n";
  for (size_t i = 0; i <= kMaxPlaylistEntries; ++i) many += "#EXT-X-PART:DURATION=1,URI=\"p\"\n";
  ASSERT_LT(many.size(), kMaxPlaylistBytes);
  EXPECT_EQ(parseHlsPlaylist(many).status().code(), Code::kTooLarge);
}

TEST(HlsPlaylist, UnknownTagsAreIgnored) {
  const HlsMediaPlaylist p = media(
      "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-FUTURE-TAG:WHATEVER=1\n#EXT-X-DISCONTINUITY\n"
      "#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:00Z\n#EXTINF:6,\na.ts\n");
  EXPECT_EQ(p.segments.size(), 1u);
}

}  // namespace
}  // namespace streamedge::streaming
