// LL-HLS delivery directives through the real binary and the simulator's low-latency mode
// (/ll/<rendition>/index.m3u8: parts, preload hints, blocking reloads held until the asked
// segment or part exists).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "tests/scenario/scenario_env.h"

namespace streamedge::scenario {
namespace {

// The newest complete segment's media sequence number of a media playlist, or -1.
long newestMsn(const std::string& playlist) {
  const size_t at = playlist.find("#EXT-X-MEDIA-SEQUENCE:");
  if (at == std::string::npos) return -1;
  const long first = std::stol(playlist.substr(at + 22));
  long segments = 0;
  for (size_t p = playlist.find("#EXTINF:"); p != std::string::npos; p = playlist.find("#EXTINF:", p + 1)) {
    ++segments;
  }
  return segments > 0 ? first + segments - 1 : -1;
}

// The part a playlist's EXT-X-PRELOAD-HINT names ("part_<s>_<i>.m4s"): {s, i}, or {-1, -1}.
std::pair<long, long> hintedPart(const std::string& playlist) {
  const std::string tag = "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part_";
  const size_t at = playlist.find(tag);
  if (at == std::string::npos) return {-1, -1};
  const size_t s = at + tag.size();
  const size_t us = playlist.find('_', s);
  if (us == std::string::npos) return {-1, -1};
  return {std::stol(playlist.substr(s, us - s)), std::stol(playlist.substr(us + 1))};
}

long long msSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t).count();
}

TEST_F(ScenarioTest, LlHlsDirectivesThatTheSpecRefusesGet400AndNeverReachTheOrigin) {
  for (const char* query : {"?_HLS_part=1", "?_HLS_msn=abc", "?_HLS_msn=5&_HLS_msn=6",
                            "?_HLS_msn=5&_HLS_skip=maybe"}) {
    HttpResponse r = get(std::string("/ll/bad/index.m3u8") + query);
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.status, 400) << query;
  }
  EXPECT_EQ(originCount("/ll/bad/index.m3u8"), 0);
}

TEST_F(ScenarioTest, LlHlsBlockingReloadsForTheNextPartCoalesceWhateverTheParameterOrder) {
  HttpResponse live = get("/ll/blk/index.m3u8");
  ASSERT_EQ(live.status, 200) << live.error << proxyLog();
  const long newest = newestMsn(live.body);
  ASSERT_GE(newest, 0) << live.body;
  const long before = originCount("/ll/blk/index.m3u8");
  ASSERT_EQ(before, 1);

  // 100 viewers wait for the part after the newest one (the hinted part: the origin holds the
  // request until it exists), asking in both parameter orders and once with a leading zero:
  // one key, one origin request. (A part further on may be more than the Part Limit ahead.)
  const auto [hint_msn, hint_part] = hintedPart(live.body);
  ASSERT_GE(hint_msn, 0) << live.body;
  const std::string msn = std::to_string(hint_msn);
  const std::string part = std::to_string(hint_part);
  const auto asked = std::chrono::steady_clock::now();
  const std::vector<std::string> targets = {
      "/ll/blk/index.m3u8?_HLS_msn=" + msn + "&_HLS_part=" + part,
      "/ll/blk/index.m3u8?_HLS_part=" + part + "&_HLS_msn=" + msn,
      "/ll/blk/index.m3u8?_HLS_part=0" + part + "&_HLS_msn=" + msn,
  };
  constexpr int kViewers = 100;
  std::vector<HttpResponse> answers(kViewers);
  std::vector<std::thread> viewers;
  for (int i = 0; i < kViewers; ++i) {
    viewers.emplace_back([&, i] {
      answers[i] = testsupport::httpGet(port(), targets[i % targets.size()], {},
                                        std::chrono::seconds(20));
    });
  }
  for (auto& t : viewers) t.join();
  std::printf("blocking reload for msn %s answered after %lld ms\n", msn.c_str(),
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         std::chrono::steady_clock::now() - asked)
                                         .count()));
  for (int i = 0; i < kViewers; ++i) {
    ASSERT_TRUE(answers[i].ok()) << i << ": " << answers[i].error;
    EXPECT_EQ(answers[i].status, 200) << i;
    // The answer holds the asked part of the segment in progress.
    EXPECT_GE(newestMsn(answers[i].body), newest) << answers[i].body;
    EXPECT_NE(answers[i].body.find("part_" + msn + "_" + part + "."), std::string::npos) << answers[i].body;
    EXPECT_EQ(answers[i].body, answers[0].body) << "every viewer gets the one answer";
  }
  EXPECT_EQ(originCount("/ll/blk/index.m3u8"), before + 1) << proxyLog();
}

TEST_F(ScenarioTest, LlHlsBlockingReloadForWhatAStoredPlaylistHasIsAnsweredFromTheCache) {
  HttpResponse live = get("/ll/hit/index.m3u8");
  ASSERT_EQ(live.status, 200) << live.error << proxyLog();
  const long newest = newestMsn(live.body);
  ASSERT_GE(newest, 1) << live.body;
  ASSERT_EQ(originCount("/ll/hit/index.m3u8"), 1);

  // Segments and parts the stored plain playlist already has, asked while it is fresh (it
  // lives half a part target, at least 1 s): answered from it at once, as hits.
  const std::string n = std::to_string(newest);
  for (const std::string& q : {"_HLS_msn=" + n, "_HLS_msn=" + n + "&_HLS_part=1",
                               "_HLS_msn=" + std::to_string(newest - 1) + "&_HLS_part=0",
                               "_HLS_part=0&_HLS_msn=" + n + "&_HLS_skip=YES"}) {
    const auto asked = std::chrono::steady_clock::now();
    HttpResponse r = get("/ll/hit/index.m3u8?" + q);
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.status, 200) << q;
    EXPECT_EQ(r.header("X-Cache"), "HIT") << q;
    EXPECT_NE(r.header("Cache-Status").find("streamedge; hit"), std::string::npos) << r.header("Cache-Status");
    EXPECT_NE(r.header("Cache-Status").find("detail=ll-hls-newer-playlist"), std::string::npos)
        << r.header("Cache-Status");
    EXPECT_EQ(r.body, live.body) << q;
    EXPECT_LT(msSince(asked), 500) << q << ": answered at once";
  }
  // Too far ahead of the stream (more than two segments past the newest complete one): 400 here.
  HttpResponse ahead = get("/ll/hit/index.m3u8?_HLS_msn=" + std::to_string(newest + 3));
  EXPECT_EQ(ahead.status, 400) << ahead.body;
  EXPECT_EQ(originCount("/ll/hit/index.m3u8"), 1) << "no extra origin request" << proxyLog();

  const std::string text = testsupport::httpGet(proxy_->admin_port, "/metrics").body;
  EXPECT_EQ(sample(text, "streamedge_ll_hls_blocking_reloads_total{outcome=\"answered_from_cache\"}"), 4);
  EXPECT_EQ(sample(text, "streamedge_ll_hls_blocking_reloads_total{outcome=\"too_far_ahead\"}"), 1);
}

TEST_F(ScenarioTest, LlHlsBlockingReloadHeldPastThreeTargetDurationsGets503AndTheFillGoesOn) {
  HttpResponse live = get("/ll/hold/index.m3u8");
  ASSERT_EQ(live.status, 200) << live.error << proxyLog();
  const auto [msn, part] = hintedPart(live.body);
  ASSERT_GE(msn, 0) << live.body;
  // The origin's next answer for this playlist comes 8.5 s late (a slow packager): longer than
  // the hold bound of three target durations (6 s), shorter than the origin timeout (10 s).
  HttpResponse armed = testsupport::httpGet(
      simPort(), "/_sim/fault?path=/ll/hold/index.m3u8&mode=delay&after=8500&count=1");
  ASSERT_EQ(armed.status, 200) << armed.body;
  const std::string target = "/ll/hold/index.m3u8?_HLS_msn=" + std::to_string(msn) +
                             "&_HLS_part=" + std::to_string(part);
  const auto asked = std::chrono::steady_clock::now();
  HttpResponse held = get(target);
  const long long waited = msSince(asked);
  std::printf("blocking reload held %lld ms, then %d\n", waited, held.status);
  ASSERT_TRUE(held.ok()) << held.error;
  EXPECT_EQ(held.status, 503) << held.body;
  EXPECT_EQ(held.header("Retry-After"), "1");
  EXPECT_GE(waited, 5800);
  EXPECT_LT(waited, 8400) << "answered at the bound, not when the origin answered";

  // The fill went on: once the origin answered, the same request is a hit, and the origin saw
  // the blocking request once.
  HttpResponse later;
  for (int i = 0; i < 40; ++i) {  // at most 8 s
    later = get(target);
    if (later.status == 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(later.status, 200) << later.body;
  EXPECT_NE(later.body.find("part_" + std::to_string(msn) + "_" + std::to_string(part) + "."),
            std::string::npos);
  EXPECT_EQ(originCount("/ll/hold/index.m3u8"), 2) << proxyLog();
}

}  // namespace
}  // namespace streamedge::scenario
