// Low-latency delivery through the real binary: an LL-HLS part the origin is still producing
// (the one a preload hint names) and an LL-DASH chunked CMAF segment reach every viewer as the
// origin sends them, one origin request for all. Timings are measured and printed; assertions
// only use generous bounds (loopback, a shared CI machine).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/scenario/scenario_env.h"

namespace streamedge::scenario {
namespace {

using SteadyClock = std::chrono::steady_clock;

int64_t unixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Sleeps until `offset_ms` after the next multiple of `period_ms` of the Unix clock (the
// simulator's media clock) and returns that multiple.
int64_t waitForBoundary(int64_t period_ms, int64_t offset_ms) {
  const int64_t next = (unixMs() / period_ms + 1) * period_ms;
  std::this_thread::sleep_for(std::chrono::milliseconds(next + offset_ms - unixMs()));
  return next;
}

// When each quarter of a body arrived, in ms since `start`, read through a body sink.
struct Arrival {
  std::array<double, 4> quarter_ms{-1, -1, -1, -1};  // reached 25 %, 50 %, 75 %, 100 %
  size_t bytes = 0;
  int status = 0;
  std::string error;
};

Arrival fetchTimed(uint16_t port, const std::string& target, size_t expected, SteadyClock::time_point start) {
  Arrival a;
  testsupport::HttpConnection c;
  if (!c.connect(port)) {
    a.error = c.error();
    return a;
  }
  c.setBodySink([&](std::string_view bytes) {
    a.bytes += bytes.size();
    const double now = std::chrono::duration<double, std::milli>(SteadyClock::now() - start).count();
    for (size_t q = 0; q < 4; ++q) {
      if (a.quarter_ms[q] < 0 && a.bytes * 4 >= expected * (q + 1)) a.quarter_ms[q] = now;
    }
  });
  HttpResponse r = c.request("GET", target, {}, std::chrono::seconds(10));
  a.status = r.status;
  if (!r.ok()) a.error = r.error.empty() ? "truncated" : r.error;
  return a;
}

TEST_F(ScenarioTest, LlHlsHintedPartIsStreamedToEveryWaitingViewerAsTheOriginMakesIt) {
  // The simulator makes part i of segment s during [s*2000 + i*500, +500) ms of the Unix clock
  // and sends it chunked as it is made. Ask for a part 30 ms after it began: the one the
  // playlist's preload hint names at that moment.
  const int64_t begun = waitForBoundary(500, 30);
  const int64_t s = begun / 2000, i = (begun % 2000) / 500;
  const std::string path = "/ll/hint/part_" + std::to_string(s) + "_" + std::to_string(i) + ".m4s";
  constexpr size_t kPartBytes = 200000 / 4;
  constexpr int kViewers = 10;
  std::vector<HttpResponse> answers(kViewers);
  std::vector<std::thread> viewers;
  for (int v = 0; v < kViewers; ++v) {
    viewers.emplace_back([&, v] { answers[v] = testsupport::httpGet(port(), path, {}, std::chrono::seconds(10)); });
  }
  for (auto& t : viewers) t.join();
  for (int v = 0; v < kViewers; ++v) {
    const HttpResponse& r = answers[v];
    ASSERT_TRUE(r.ok()) << v << ": " << r.error;
    EXPECT_EQ(r.status, 200) << v;
    EXPECT_EQ(r.body, testsupport::simBody(path, kPartBytes)) << v;
    std::printf("viewer %d (%s): first byte %.1f ms, last byte %.1f ms\n", v, r.header("X-Cache").c_str(),
                r.first_byte_ms, r.last_byte_ms);
    // The first bytes came long before the part was complete (it takes ≈ 470 ms more).
    EXPECT_LT(r.first_byte_ms, r.last_byte_ms - 200) << v;
  }
  EXPECT_EQ(originCount(path), 1) << proxyLog();
}

TEST_F(ScenarioTest, LlDashChunksReachTheViewerWithinMsOfTheOriginSendingThem) {
  // Segment s of /lldash/ is made during [s*2000, s*2000 + 2000) ms and sent chunked as it is
  // made. The same segment is read straight from the simulator and through the edge at the same
  // moment; the delay is how much later each quarter of it reached the edge's viewer.
  const int64_t begun = waitForBoundary(2000, 50);
  const std::string path = "/lldash/720p/seg_" + std::to_string(begun / 2000) + ".m4s";
  constexpr size_t kBytes = 200000;
  const SteadyClock::time_point start = SteadyClock::now();
  Arrival direct, edge;
  std::thread a([&] { direct = fetchTimed(simPort(), path + "?direct=1", kBytes, start); });
  std::thread b([&] { edge = fetchTimed(port(), path, kBytes, start); });
  a.join();
  b.join();
  ASSERT_TRUE(direct.error.empty()) << direct.error;
  ASSERT_TRUE(edge.error.empty()) << edge.error << proxyLog();
  ASSERT_EQ(edge.status, 200);
  ASSERT_EQ(edge.bytes, kBytes);
  for (size_t q = 0; q < 4; ++q) {
    const double delay = edge.quarter_ms[q] - direct.quarter_ms[q];
    std::printf("LL-DASH chunk at %zu%%: origin→viewer direct %.1f ms, through the edge %.1f ms, delay %.1f ms\n",
                (q + 1) * 25, direct.quarter_ms[q], edge.quarter_ms[q], delay);
    EXPECT_LT(delay, 250) << "quarter " << q;
  }
  // The segment took its encoding time to arrive, so it came chunk by chunk, not at the end.
  EXPECT_GT(edge.quarter_ms[3] - edge.quarter_ms[0], 800);
  EXPECT_EQ(originCount(path), 2) << "one through the edge, one direct";
}

}  // namespace
}  // namespace streamedge::scenario
