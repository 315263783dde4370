#include "streaming/prefetch_targets.h"

#include <gtest/gtest.h>

#include <string>

namespace streamedge::streaming {
namespace {

HlsMediaPlaylist parseMedia(const std::string& text) {
  Result<HlsPlaylist> parsed = parseHlsPlaylist(text);
  EXPECT_TRUE(parsed.isOk());
  return std::get<HlsMediaPlaylist>(parsed.value());
}

const char* kLive =
    "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:10\n"
    "#EXTINF:2,\nseg10.ts\n#EXTINF:2,\nseg11.ts\n#EXTINF:2,\nseg12.ts?v=1\n#EXTINF:2,\n"
    "/abs/seg13.ts\n";

TEST(PrefetchTargets, NewestNSegmentsNewestFirstResolvedAgainstThePlaylist) {
  const HlsMediaPlaylist p = parseMedia(kLive);
  const PrefetchSelection s = selectPrefetchTargets(p, "/live/ch1/index.m3u8", "edge.test", 3);
  ASSERT_EQ(s.targets.size(), 3u);
  EXPECT_EQ(s.targets[0], (PrefetchTarget{"/abs/seg13.ts", ""}));
  EXPECT_EQ(s.targets[1], (PrefetchTarget{"/live/ch1/seg12.ts", "v=1"}));
  EXPECT_EQ(s.targets[2], (PrefetchTarget{"/live/ch1/seg11.ts", ""}));
  EXPECT_EQ(s.refused, 0u);
}

TEST(PrefetchTargets, NeverMoreThanTheSegmentsThereAre) {
  const HlsMediaPlaylist p = parseMedia(kLive);
  EXPECT_EQ(selectPrefetchTargets(p, "/live/ch1/index.m3u8", "edge.test", 100).targets.size(), 4u);
  EXPECT_TRUE(selectPrefetchTargets(p, "/live/ch1/index.m3u8", "edge.test", 0).targets.empty());
}

TEST(PrefetchTargets, EndedOrVodPlaylistSelectsNothing) {
  const HlsMediaPlaylist ended = parseMedia(std::string(kLive) + "#EXT-X-ENDLIST\n");
  EXPECT_TRUE(selectPrefetchTargets(ended, "/v/index.m3u8", "edge.test", 2).targets.empty());
  const HlsMediaPlaylist vod = parseMedia(
      "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:2,\na.ts\n");
  EXPECT_TRUE(selectPrefetchTargets(vod, "/v/index.m3u8", "edge.test", 2).targets.empty());
}

TEST(PrefetchTargets, PartPreloadHintFirstByteRangeHintLeftOut) {
  const HlsMediaPlaylist p = parseMedia(
      "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-PART-INF:PART-TARGET=1.0\n"
      "#EXT-X-MEDIA-SEQUENCE:5\n#EXTINF:4,\nseg5.m4s\n"
      "#EXT-X-PART:DURATION=1.0,URI=\"seg6.0.m4s\"\n"
      "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg6.1.m4s\"\n"
      "#EXT-X-PRELOAD-HINT:TYPE=MAP,URI=\"init.mp4\"\n");
  const PrefetchSelection s = selectPrefetchTargets(p, "/ll/a/media.m3u8", "edge.test", 2);
  ASSERT_EQ(s.targets.size(), 2u);
  EXPECT_EQ(s.targets[0].path, "/ll/a/seg6.1.m4s");
  EXPECT_EQ(s.targets[1].path, "/ll/a/seg5.m4s");

  const HlsMediaPlaylist ranged = parseMedia(
      "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-PART-INF:PART-TARGET=1.0\n"
      "#EXTINF:4,\nseg0.m4s\n"
      "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"seg1.m4s\",BYTERANGE-START=100\n");
  const PrefetchSelection r = selectPrefetchTargets(ranged, "/ll/a/media.m3u8", "edge.test", 1);
  ASSERT_EQ(r.targets.size(), 1u);
  EXPECT_EQ(r.targets[0].path, "/ll/a/seg0.m4s");
}

TEST(PrefetchTargets, OtherHostsAreRefusedAndCounted) {
  const HlsMediaPlaylist p = parseMedia(
      "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nhttps://evil.test/x.ts\n"
      "#EXTINF:2,\nhttp://EDGE.test:8080/y.ts?a=b\n#EXTINF:2,\n//edge.test/z.ts\n");
  const PrefetchSelection s = selectPrefetchTargets(p, "/l/i.m3u8", "edge.test:80", 3);
  ASSERT_EQ(s.targets.size(), 2u);
  EXPECT_EQ(s.targets[0].path, "/z.ts");
  EXPECT_EQ(s.targets[1], (PrefetchTarget{"/y.ts", "a=b"}));
  EXPECT_EQ(s.refused, 1u);
}

TEST(PrefetchTargets, ResolveRefusesOtherSchemesAndEmpty) {
  PrefetchTarget t;
  EXPECT_FALSE(resolvePrefetchUri("", "/a/b.m3u8", "h", t));
  EXPECT_FALSE(resolvePrefetchUri("ftp://h/x.ts", "/a/b.m3u8", "h", t));
  EXPECT_FALSE(resolvePrefetchUri("data:,hello", "/a/b.m3u8", "h", t));
  EXPECT_FALSE(resolvePrefetchUri("//other/x.ts", "/a/b.m3u8", "h", t));
  EXPECT_FALSE(resolvePrefetchUri("x y.ts", "/a/b.m3u8", "h", t));
  ASSERT_TRUE(resolvePrefetchUri("../c/d.ts#frag", "/a/b.m3u8", "h", t));
  EXPECT_EQ(t, (PrefetchTarget{"/a/../c/d.ts", ""}));  // the caller normalises the path
  ASSERT_TRUE(resolvePrefetchUri("?n=2", "/a/b.m3u8", "h", t));
  EXPECT_EQ(t, (PrefetchTarget{"/a/b.m3u8", "n=2"}));
  ASSERT_TRUE(resolvePrefetchUri("HTTPS://[::1]:8443/v.ts", "/a/b.m3u8", "[::1]", t));
  EXPECT_EQ(t.path, "/v.ts");
}

}  // namespace
}  // namespace streamedge::streaming
