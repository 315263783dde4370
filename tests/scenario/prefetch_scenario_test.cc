// Route prefetch (proxy/prefetch.h) through the real binary and the simulator's live HLS: a new
// version of a live media playlist makes the edge fill its newest segments, so the first
// viewer's request for one is a hit; a CMCD nor hint does the same for the object it names.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/scenario/scenario_env.h"

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;

// The URI of the newest segment of a media playlist (the last line not starting with '#').
std::string newestSegment(const std::string& playlist) {
  std::string last;
  size_t pos = 0;
  while (pos < playlist.size()) {
    size_t eol = playlist.find('\n', pos);
    if (eol == std::string::npos) eol = playlist.size();
    const std::string line = playlist.substr(pos, eol - pos);
    if (!line.empty() && line[0] != '#') last = line;
    pos = eol + 1;
  }
  return last;
}

class PrefetchScenarioTest : public ScenarioTest {
 protected:
  void SetUp() override {}  // each test starts the edge with its own route keys

  double prefetchMetric(const char* result) {
    const std::string text = testsupport::httpGet(proxy_->admin_port, "/metrics").body;
    return metricValue(text, "streamedge_prefetch_total", std::string("result=\"") + result + "\"");
  }

  // Waits (bounded: 5 s) until the simulator counted `want` requests for `path`.
  bool waitForOrigin(const std::string& path, long want) {
    for (int i = 0; i < 100; ++i) {
      if (originCount(path) >= want) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }

  // Time for fills the edge started in the background to reach the simulator and finish
  // (loopback, bodies of 200 KB).
  void settle() { std::this_thread::sleep_for(300ms); }
};

TEST_F(PrefetchScenarioTest, NewestLiveSegmentIsAHitForItsFirstViewerWithOneOriginFetch) {
  start("  prefetch = true\n  prefetch_segments = 2\n");
  HttpResponse playlist = get("/live/pfon/index.m3u8");
  ASSERT_EQ(playlist.status, 200) << playlist.error << proxyLog();
  const std::string segment = newestSegment(playlist.body);
  ASSERT_FALSE(segment.empty()) << playlist.body;
  const std::string path = "/live/pfon/" + segment;
  // A viewer hit on the playlist (still fresh) is not a new version: nothing more is prefetched.
  HttpResponse again = get("/live/pfon/index.m3u8");
  const bool playlist_hit = again.header("X-Cache") == "HIT";

  ASSERT_TRUE(waitForOrigin(path, 1)) << proxyLog();
  settle();
  HttpResponse first = get(path);
  ASSERT_EQ(first.status, 200) << first.error;
  EXPECT_EQ(first.header("X-Cache"), "HIT") << first.header("Cache-Status");
  EXPECT_NE(first.header("Cache-Status").find("streamedge; hit"), std::string::npos)
      << first.header("Cache-Status");
  EXPECT_EQ(originCount(path), 1);

  // Two segments of one playlist version issued; the one asked for counted used, once.
  if (playlist_hit) {
    EXPECT_EQ(prefetchMetric("issued"), 2) << proxyLog();
  }
  EXPECT_EQ(originCount("/live/pfon/index.m3u8"), playlist_hit ? 1 : 2);
  EXPECT_EQ(prefetchMetric("used"), 1);
  EXPECT_EQ(prefetchMetric("failed"), 0);
  EXPECT_EQ(get(path).header("X-Cache"), "HIT");
  EXPECT_EQ(prefetchMetric("used"), 1) << "only the first viewer request of an object counts";
}

TEST_F(PrefetchScenarioTest, WithoutPrefetchTheNewestSegmentIsAMiss) {
  start("");
  HttpResponse playlist = get("/live/pfoff/index.m3u8");
  ASSERT_EQ(playlist.status, 200) << playlist.error << proxyLog();
  const std::string path = "/live/pfoff/" + newestSegment(playlist.body);
  settle();
  EXPECT_EQ(originCount(path), 0);
  HttpResponse first = get(path);
  ASSERT_EQ(first.status, 200) << first.error;
  EXPECT_EQ(first.header("X-Cache"), "MISS");
  EXPECT_EQ(originCount(path), 1);
  EXPECT_EQ(prefetchMetric("issued"), 0);
}

TEST_F(PrefetchScenarioTest, EndedPlaylistPrefetchesNothing) {
  start("  prefetch = true\n");
  HttpResponse playlist = get("/vod/pfvod/index.m3u8");
  ASSERT_EQ(playlist.status, 200) << playlist.error << proxyLog();
  settle();
  EXPECT_EQ(originCount("/vod/pfvod/seg_9.ts"), 0);
  EXPECT_EQ(prefetchMetric("issued"), 0);
}

TEST_F(PrefetchScenarioTest, ConcurrencyPerRouteBoundsThePrefetchesOfOnePlaylist) {
  // A slow origin (every head 1 s late) keeps the first prefetch in flight while the others
  // are considered: one place, so the other two are skipped.
  start("  prefetch = true\n  prefetch_segments = 3\n  prefetch_concurrency = 1\n");
  ASSERT_TRUE(testsupport::simFaultAll(simPort(), "delay"));
  HttpResponse playlist = get("/live/pfcap/index.m3u8");
  ASSERT_EQ(playlist.status, 200) << playlist.error << proxyLog();
  settle();
  EXPECT_EQ(prefetchMetric("issued"), 1) << proxyLog();
  EXPECT_EQ(prefetchMetric("skipped"), 2);
  ASSERT_TRUE(testsupport::simFaultAll(simPort(), "off"));
  const std::string path = "/live/pfcap/" + newestSegment(playlist.body);
  // A viewer meanwhile joins the prefetch in flight: still one origin fetch.
  HttpResponse joined = get(path);
  ASSERT_EQ(joined.status, 200) << joined.error;
  EXPECT_EQ(originCount(path), 1);
  EXPECT_EQ(prefetchMetric("used"), 1);
}

TEST_F(PrefetchScenarioTest, CmcdNextObjectIsPrefetchedOnTheSameHostOnly) {
  start("  prefetch = true\n");
  // nor is relative to the request's URL (CTA-5004), URL-encoded inside the CMCD string.
  HttpResponse r = get("/obj/pfnor/seg_1.m4s",
                       {{"CMCD-Request", "nor=\"seg_2.m4s\""}});
  ASSERT_EQ(r.status, 200) << r.error << proxyLog();
  ASSERT_TRUE(waitForOrigin("/obj/pfnor/seg_2.m4s", 1)) << proxyLog();
  settle();
  HttpResponse next = get("/obj/pfnor/seg_2.m4s");
  ASSERT_EQ(next.status, 200) << next.error;
  EXPECT_EQ(next.header("X-Cache"), "HIT");
  EXPECT_EQ(originCount("/obj/pfnor/seg_2.m4s"), 1);

  // In the query parameter too (resolved up a directory); another host is never fetched
  // (skipped).
  get("/obj/pfnor/seg_2.m4s?CMCD=nor%3D%22..%252Fq%252Fseg_3.m4s%22");
  ASSERT_TRUE(waitForOrigin("/obj/q/seg_3.m4s", 1)) << proxyLog();
  get("/obj/pfnor/seg_3.m4s", {{"CMCD-Request", "nor=\"http://elsewhere.test/x.m4s\""}});
  settle();
  EXPECT_EQ(prefetchMetric("issued"), 2) << proxyLog();
  EXPECT_EQ(prefetchMetric("used"), 1);
  EXPECT_GE(prefetchMetric("skipped"), 1);
}

TEST_F(PrefetchScenarioTest, CmsdFieldsOnlyWhenTheVhostAsks) {
  start("");
  HttpResponse off = get("/live/cmsd/index.m3u8");
  ASSERT_EQ(off.status, 200) << off.error << proxyLog();
  EXPECT_EQ(off.header("CMSD-Static"), "");
  EXPECT_EQ(off.header("CMSD-Dynamic"), "");

  // The same setup with [vhost] cmsd = true.
  proxy_.reset();
  std::string config = scenarioConfig(simPort(), access_log_);
  const std::string hosts = "hostnames = [\"*\"]\n";
  const size_t at = config.find(hosts);
  ASSERT_NE(at, std::string::npos);
  config.insert(at + hosts.size(), "cmsd = true\n");
  std::string error;
  proxy_ = testsupport::startStreamedge(config, &error);
  ASSERT_TRUE(proxy_) << error;
  HttpResponse on = get("/live/cmsd/index.m3u8");
  ASSERT_EQ(on.status, 200) << on.error << proxyLog();
  EXPECT_EQ(on.header("CMSD-Static"), "ot=m");
  // Loopback has measured a round trip by now (the handshake): an estimate is there.
  const std::string dynamic = on.header("CMSD-Dynamic");
  EXPECT_EQ(dynamic.rfind("\"streamedge\";etp=", 0), 0u) << dynamic;
  EXPECT_NE(dynamic.find(";rtt="), std::string::npos) << dynamic;
  HttpResponse segment = get("/live/cmsd/seg_1.ts");
  EXPECT_EQ(segment.header("CMSD-Static"), "");
}

}  // namespace
}  // namespace streamedge::scenario
