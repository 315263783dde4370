// Route prefetch (proxy/prefetch.h) through the real binary and the simulator's live HLS and
// DASH: a new version of a live media playlist, or of a live MPD for the representations
// viewers watch, makes the edge fill the newest segments, so the first viewer's request for one
// is a hit; a CMCD nor hint does the same for the object it names.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
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

// The simulator's live DASH (/dash/manifest.mpd): 2 s segments numbered from 1 at its
// availabilityStartTime, segment n available at AST + 2n.
constexpr int64_t kSimSegmentSeconds = 2;

int64_t newestDashSegment() {
  const int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  return (now_s - testsupport::kSimDashEpochSeconds) / kSimSegmentSeconds;
}

std::string dashSegment(const std::string& rep, int64_t n) {
  return "/dash/" + rep + "/seg_" + std::to_string(n) + ".m4s";
}

class DashPrefetchScenarioTest : public PrefetchScenarioTest {
 protected:
  // Asks for the MPD until the edge fetched a new version of it from the origin (its lifetime
  // is minimumUpdatePeriod, 2 s; the text changes every 2 s), bounded: 60 × 100 ms.
  bool fetchNewMpdVersion() {
    const long before = newMpdVersions();
    for (int i = 0; i < 60; ++i) {
      HttpResponse mpd = get("/dash/manifest.mpd");
      if (mpd.status != 200) return false;
      if (newMpdVersions() > before) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }

  // Waits (bounded: 3 s) until segment `n` is no longer the newest: a version of the MPD
  // fetched after that names a newer one.
  bool waitPastSegment(int64_t n) {
    for (int i = 0; i < 60 && newestDashSegment() <= n; ++i) std::this_thread::sleep_for(50ms);
    return newestDashSegment() > n;
  }

  // Full (200) answers of the origin for the MPD: its 304s are no new version.
  long newMpdVersions() {
    return originCount("/dash/manifest.mpd") - originCount("/dash/manifest.mpd", true);
  }

  // The newest segment of `rep` the origin was asked for, newer than `after` (0: none).
  int64_t fetchedNewer(const std::string& rep, int64_t after) {
    const std::string prefix = "/dash/" + rep + "/seg_";
    int64_t newest = 0;
    for (const auto& [path, count] : testsupport::simCounts(simPort())) {
      if (path.rfind(prefix, 0) != 0 || count < 1) continue;
      const int64_t n = std::stoll(path.substr(prefix.size()));
      if (n > after) newest = std::max(newest, n);
    }
    return newest;
  }

  // The same, waiting for one up to 5 s.
  int64_t waitFetchedNewer(const std::string& rep, int64_t after) {
    for (int i = 0; i < 100; ++i) {
      if (const int64_t n = fetchedNewer(rep, after)) return n;
      std::this_thread::sleep_for(50ms);
    }
    return 0;
  }

  bool anyFetched(const std::string& rep) {
    for (const auto& [path, count] : testsupport::simCounts(simPort())) {
      if (path.rfind("/dash/" + rep + "/", 0) == 0 && count > 0) return true;
    }
    return false;
  }
};

TEST_F(DashPrefetchScenarioTest,
       NewestSegmentOfAWatchedRepresentationIsAHitAndOthersAreNotFetched) {
  start("  prefetch = true\n  prefetch_segments = 2\n");
  HttpResponse mpd = get("/dash/manifest.mpd");
  ASSERT_EQ(mpd.status, 200) << mpd.error << proxyLog();
  settle();
  // The first version: no viewer watches anything yet, so nothing is prefetched.
  EXPECT_EQ(prefetchMetric("issued"), 0) << proxyLog();
  EXPECT_FALSE(anyFetched("720p"));

  // A viewer watches 720p: it asks for one segment (a miss).
  const int64_t watched = newestDashSegment();
  HttpResponse segment = get(dashSegment("720p", watched));
  ASSERT_EQ(segment.status, 200) << segment.error;
  EXPECT_EQ(segment.header("X-Cache"), "MISS");

  // A new version of the MPD passes through: the newest 720p segments are prefetched.
  ASSERT_TRUE(waitPastSegment(watched));
  const int64_t newest_before = newestDashSegment();
  ASSERT_TRUE(fetchNewMpdVersion()) << proxyLog();
  ASSERT_GT(waitFetchedNewer("720p", watched), 0)
      << "no newer 720p segment was prefetched; issued " << prefetchMetric("issued") << ", skipped "
      << prefetchMetric("skipped") << "\n"
      << proxyLog();
  settle();  // both prefetches (newest first) reached the simulator
  const int64_t prefetched = fetchedNewer("720p", watched);
  EXPECT_GE(prefetched, newest_before) << "the newest available segment, not an older one";
  EXPECT_LE(prefetched, newestDashSegment()) << "never one that is not available yet";

  const std::string path = dashSegment("720p", prefetched);
  HttpResponse first = get(path);
  ASSERT_EQ(first.status, 200) << first.error;
  EXPECT_EQ(first.header("X-Cache"), "HIT") << first.header("Cache-Status");
  EXPECT_EQ(originCount(path), 1);
  EXPECT_EQ(originCount(dashSegment("720p", watched)), 1);
  // 360p is listed in the MPD, but nobody watches it: the origin never saw a request for it.
  EXPECT_FALSE(anyFetched("360p"));
  EXPECT_GE(prefetchMetric("issued"), 1);
  EXPECT_EQ(prefetchMetric("used"), 1);
  EXPECT_EQ(prefetchMetric("failed"), 0);
}

TEST_F(DashPrefetchScenarioTest, WithoutPrefetchTheNewestSegmentIsAMiss) {
  start("");
  ASSERT_EQ(get("/dash/manifest.mpd").status, 200) << proxyLog();
  const int64_t watched = newestDashSegment();
  ASSERT_EQ(get(dashSegment("720p", watched)).status, 200);
  ASSERT_TRUE(waitPastSegment(watched));
  ASSERT_TRUE(fetchNewMpdVersion()) << proxyLog();
  settle();
  const int64_t newest = newestDashSegment();
  ASSERT_GT(newest, watched) << "a new MPD version takes a segment duration";
  EXPECT_EQ(fetchedNewer("720p", watched), 0) << "nothing newer than the viewer's was fetched";
  const std::string path = dashSegment("720p", newest);
  HttpResponse first = get(path);
  ASSERT_EQ(first.status, 200) << first.error;
  EXPECT_EQ(first.header("X-Cache"), "MISS");
  EXPECT_EQ(originCount(path), 1);
  EXPECT_EQ(prefetchMetric("issued"), 0);
}

}  // namespace
}  // namespace streamedge::scenario
