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

  // 20 viewers wait for part 0 of the segment after the one in progress (the origin holds the
  // request until it exists), asking in both parameter orders and once with a leading zero:
  // one key, one origin request.
  const std::string msn = std::to_string(newest + 2);
  const auto asked = std::chrono::steady_clock::now();
  const std::vector<std::string> targets = {
      "/ll/blk/index.m3u8?_HLS_msn=" + msn + "&_HLS_part=0",
      "/ll/blk/index.m3u8?_HLS_part=0&_HLS_msn=" + msn,
      "/ll/blk/index.m3u8?_HLS_part=00&_HLS_msn=" + msn,
  };
  constexpr int kViewers = 20;
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
    // The answer holds the asked part: segment `msn` is at least in progress.
    EXPECT_GE(newestMsn(answers[i].body), newest + 1) << answers[i].body;
    EXPECT_NE(answers[i].body.find("part_" + msn + "_0."), std::string::npos) << answers[i].body;
    EXPECT_EQ(answers[i].body, answers[0].body) << "every viewer gets the one answer";
  }
  EXPECT_EQ(originCount("/ll/blk/index.m3u8"), before + 1) << proxyLog();
}

}  // namespace
}  // namespace streamedge::scenario
