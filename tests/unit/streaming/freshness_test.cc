// Freshness from the stream: each rule of streaming/freshness.h, and how cache::computeFreshness
// combines it with the origin's headers (the stricter wins).
#include "streaming/freshness.h"

#include <gtest/gtest.h>

#include <string>

#include "cache/freshness.h"

namespace streamedge::streaming {
namespace {

using conf::Seconds;

constexpr const char* kLive =
    "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:6,\na.ts\n#EXTINF:6,\nb.ts\n";
constexpr const char* kLowLatency =
    "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXT-X-PART-INF:PART-TARGET=3.0\n"
    "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES\n#EXTINF:4,\na.m4s\n"
    "#EXT-X-PART:DURATION=3.0,URI=\"p\"\n";
constexpr const char* kEnded = "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6,\na.ts\n#EXT-X-ENDLIST\n";
constexpr const char* kDynamicMpd =
    "<?xml version=\"1.0\"?>\n<MPD type=\"dynamic\" availabilityStartTime=\"2024-01-01T00:00:00Z\" "
    "minimumUpdatePeriod=\"PT5S\"><Period/></MPD>";
constexpr const char* kStaticMpd = "<MPD type=\"static\"><Period/></MPD>";

class StreamFreshnessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    policy_.playlist_ttl = Seconds(30);
    policy_.ended_playlist_ttl = Seconds(7200);
  }
  // The lifetime an object gets with these origin fields and body.
  Seconds lifetime(const char* body, std::vector<std::pair<std::string, std::string>> fields = {},
                   bool blocking = false) {
    cache::ResponseHead head;
    head.status = 200;
    head.headers = std::move(fields);
    const cache::CacheControl cc =
        cache::CacheControl::parse(head.find("Cache-Control") ? *head.find("Cache-Control") : "");
    const WallTime now = WallTime(std::chrono::seconds(1'700'000'000));
    return cache::computeFreshness(head, cc, now, now, cache::ContentKind::kPlaylist, policy_,
                                   streamLifetime(body, blocking, policy_))
        .lifetime;
  }
  conf::CachePolicy policy_;
};

TEST_F(StreamFreshnessTest, LivePlaylistLivesHalfItsTargetDuration) {
  const auto s = streamLifetime(kLive, false, policy_);
  ASSERT_TRUE(s.has_value());
  EXPECT_STREQ(s->rule, "hls-live");
  EXPECT_EQ(lifetime(kLive), Seconds(3));
  // The route's playlist_ttl still bounds it.
  policy_.playlist_ttl = Seconds(2);
  EXPECT_EQ(lifetime(kLive), Seconds(2));
}

TEST_F(StreamFreshnessTest, LowLatencyPlaylistLivesHalfItsPartTargetAtLeastOneSecond) {
  EXPECT_STREQ(streamLifetime(kLowLatency, false, policy_)->rule, "hls-live-parts");
  EXPECT_EQ(lifetime(kLowLatency), Seconds(1));  // 1.5 s, in whole seconds
  const std::string tiny = std::string(kLowLatency).replace(std::string(kLowLatency).find("3.0"), 3, "0.2");
  EXPECT_EQ(lifetime(tiny.c_str()), Seconds(1));
}

TEST_F(StreamFreshnessTest, BlockingReloadAnswerLivesSixTargetDurations) {
  EXPECT_STREQ(streamLifetime(kLowLatency, true, policy_)->rule, "hls-blocking");
  EXPECT_EQ(lifetime(kLowLatency, {}, /*blocking=*/true), Seconds(24));
  EXPECT_EQ(lifetime(kLive, {}, /*blocking=*/true), Seconds(36));  // beyond playlist_ttl
}

TEST_F(StreamFreshnessTest, EndedPlaylistAndStaticMpdLiveLong) {
  EXPECT_EQ(lifetime(kEnded), Seconds(7200));
  EXPECT_EQ(lifetime("#EXTM3U\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-TARGETDURATION:6\n"), Seconds(7200));
  EXPECT_EQ(lifetime(kStaticMpd), Seconds(7200));
  EXPECT_STREQ(streamLifetime(kStaticMpd, false, policy_)->rule, "mpd-static");
}

TEST_F(StreamFreshnessTest, DynamicMpdLivesItsMinimumUpdatePeriod) {
  EXPECT_EQ(lifetime(kDynamicMpd), Seconds(5));
  policy_.playlist_ttl = Seconds(2);
  EXPECT_EQ(lifetime(kDynamicMpd), Seconds(5));  // the MPD says how long it stays true
  // Without a minimumUpdatePeriod (or with 0) the route default applies.
  EXPECT_EQ(lifetime("<MPD type=\"dynamic\" availabilityStartTime=\"2024-01-01T00:00:00Z\"><Period/></MPD>"),
            Seconds(2));
  EXPECT_EQ(lifetime("<MPD type=\"dynamic\" availabilityStartTime=\"2024-01-01T00:00:00Z\" "
                     "minimumUpdatePeriod=\"PT0S\"><Period/></MPD>"),
            Seconds(2));
}

TEST_F(StreamFreshnessTest, StricterOriginHeadersWin) {
  EXPECT_EQ(lifetime(kLive, {{"Cache-Control", "max-age=1"}}), Seconds(1));
  EXPECT_EQ(lifetime(kLive, {{"Cache-Control", "max-age=600"}}), Seconds(3));
  EXPECT_EQ(lifetime(kEnded, {{"Cache-Control", "max-age=60"}}), Seconds(60));
  EXPECT_EQ(lifetime(kDynamicMpd, {{"Cache-Control", "s-maxage=0"}}), Seconds(0));
  EXPECT_EQ(lifetime(kLowLatency, {{"Cache-Control", "max-age=10"}}, true), Seconds(10));
}

TEST_F(StreamFreshnessTest, MasterPlaylistsAndGarbageFallBackToTheRouteDefault) {
  EXPECT_FALSE(streamLifetime("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n", false, policy_));
  EXPECT_FALSE(streamLifetime("#EXTM3U\n#EXT-X-TARGETDURATION:x\n", false, policy_));
  EXPECT_FALSE(streamLifetime("<MPD", false, policy_));
  EXPECT_FALSE(streamLifetime("", false, policy_));
  EXPECT_FALSE(streamLifetime("\x00\x01garbage", false, policy_));
  EXPECT_EQ(lifetime("#EXTM3U\n#EXT-X-TARGETDURATION:x\n"), Seconds(30));
  EXPECT_EQ(lifetime("#EXTM3U\n#EXT-X-TARGETDURATION:0\n"), Seconds(30));
}

}  // namespace
}  // namespace streamedge::streaming
