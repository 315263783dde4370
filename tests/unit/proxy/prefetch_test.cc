#include "proxy/prefetch.h"

#include <gtest/gtest.h>

namespace streamedge::proxy {
namespace {

cache::CacheKey key(uint64_t n) { return cache::CacheKey{n, n * 7 + 1}; }

uint64_t countOf(PrefetchTracker& t, PrefetchResult r, PrefetchTracker::SteadyTime now) {
  return t.snapshot(now)[static_cast<size_t>(r)];
}

TEST(PrefetchTracker, ConcurrencyIsBoundedPerRouteAndFreedByTheTicket) {
  PrefetchTracker t;
  auto a = t.reserve("v\n/", 2, key(1));
  auto b = t.reserve("v\n/", 2, key(2));
  ASSERT_TRUE(a);
  ASSERT_TRUE(b);
  EXPECT_FALSE(t.reserve("v\n/", 2, key(3)));
  EXPECT_TRUE(t.reserve("v\n/live/", 1, key(3))) << "another route has its own places";
  a->cancel();
  a.reset();
  EXPECT_EQ(t.inFlight("v\n/"), 1);
  EXPECT_TRUE(t.reserve("v\n/", 2, key(3)));
  b->cancel();
}

TEST(PrefetchTracker, FirstViewerRequestCountsUsedOnce) {
  PrefetchTracker t;
  const auto now = std::chrono::steady_clock::now();
  {
    auto ticket = t.reserve("r", 4, key(1));
    t.issued(key(1), now);
    ticket->markStored();
  }
  t.viewerAsked(key(1));
  t.viewerAsked(key(1));
  t.viewerAsked(key(2));  // never prefetched
  EXPECT_EQ(countOf(t, PrefetchResult::kIssued, now), 1u);
  EXPECT_EQ(countOf(t, PrefetchResult::kUsed, now), 1u);
  EXPECT_EQ(countOf(t, PrefetchResult::kFailed, now), 0u);
  EXPECT_EQ(countOf(t, PrefetchResult::kWasted, now + std::chrono::hours(1)), 0u);
}

TEST(PrefetchTracker, UnaskedPastTheWindowIsWastedAndADroppedFillFailed) {
  PrefetchTracker t;
  const auto now = std::chrono::steady_clock::now();
  {
    auto stored = t.reserve("r", 4, key(1));
    t.issued(key(1), now);
    stored->markStored();
    auto broken = t.reserve("r", 4, key(2));
    t.issued(key(2), now);
  }  // key(2)'s fill ended without storing
  EXPECT_EQ(countOf(t, PrefetchResult::kFailed, now), 1u);
  EXPECT_EQ(countOf(t, PrefetchResult::kWasted, now + std::chrono::seconds(59)), 0u);
  EXPECT_EQ(countOf(t, PrefetchResult::kWasted, now + PrefetchTracker::kUnusedAfter), 1u);
  t.viewerAsked(key(1));  // too late: already counted wasted
  EXPECT_EQ(countOf(t, PrefetchResult::kUsed, now), 0u);
  EXPECT_EQ(t.inFlight("r"), 0);
}

TEST(PrefetchTracker, UnaskedTableStaysBounded) {
  PrefetchTracker t;
  const auto now = std::chrono::steady_clock::now();
  for (uint64_t i = 0; i < PrefetchTracker::kMaxUnused + 10; ++i) {
    auto ticket = t.reserve("r", 1, key(i));
    ASSERT_TRUE(ticket);
    t.issued(key(i), now);
    ticket->markStored();
  }
  EXPECT_EQ(countOf(t, PrefetchResult::kWasted, now), 10u);
}

// A plan as streaming::planDashPrefetch makes it for the simulator's MPD at /dash/manifest.mpd.
streaming::DashPrefetchPlan simPlan(uint64_t newest, double window_s = 30) {
  streaming::DashPrefetchPlan plan;
  plan.watch_window_s = window_s;
  for (const char* id : {"720p", "360p"}) {
    streaming::DashRenditionTargets r;
    r.representation_id = id;
    r.pattern = streaming::DashSegmentPattern{std::string("/dash/") + id + "/seg_", ".m4s"};
    for (uint64_t n = newest; n + 2 > newest && n > 0; --n) {
      r.newest.push_back({std::string("/dash/") + id + "/seg_" + std::to_string(n) + ".m4s", ""});
    }
    plan.renditions.push_back(std::move(r));
  }
  return plan;
}

TEST(WatchedRenditions, OnlyRepresentationsWithARecentViewerSegmentRequestAreWatched) {
  WatchedRenditions w;
  const auto now = std::chrono::steady_clock::now();
  w.viewerRequest("v", "edge.test", "/dash/720p/seg_9.m4s", now);  // nothing registered: no-op
  EXPECT_EQ(w.update("v", "v\n/", "edge.test", "/dash/manifest.mpd", simPlan(10), now),
            (std::vector<bool>{false, false}))
      << "a request before the MPD was known marks nothing";
  EXPECT_EQ(w.size(), 1u);

  w.viewerRequest("v", "EDGE.test:443", "/dash/720p/seg_10.m4s", now + std::chrono::seconds(1));
  // Not segments of a registered representation, or of another vhost or host.
  w.viewerRequest("v", "edge.test", "/dash/360p/init.mp4", now);
  w.viewerRequest("v", "edge.test", "/dash/360p/seg_x.m4s", now);
  w.viewerRequest("other", "edge.test", "/dash/360p/seg_10.m4s", now);
  w.viewerRequest("v", "elsewhere.test", "/dash/360p/seg_10.m4s", now);
  w.viewerRequest("v", "edge.test", "/dash2/360p/seg_10.m4s", now);
  EXPECT_EQ(w.update("v", "v\n/", "edge.test", "/dash/manifest.mpd", simPlan(11),
                     now + std::chrono::seconds(2)),
            (std::vector<bool>{true, false}));
  // Within the window (30 s from the request) it stays watched across versions; then not.
  EXPECT_EQ(w.update("v", "v\n/", "edge.test:80", "/dash/manifest.mpd", simPlan(20),
                     now + std::chrono::seconds(30)),
            (std::vector<bool>{true, false}));
  EXPECT_EQ(w.update("v", "v\n/", "edge.test", "/dash/manifest.mpd", simPlan(21),
                     now + std::chrono::seconds(32)),
            (std::vector<bool>{false, false}));
  EXPECT_EQ(w.size(), 1u) << "one MPD, registered once whatever its versions";
}

TEST(WatchedRenditions, TheWatchWindowComesFromTheMpdAndIsKeptPerMpd) {
  WatchedRenditions w;
  const auto now = std::chrono::steady_clock::now();
  w.update("v", "v\n/", "edge.test", "/dash/manifest.mpd", simPlan(10, 90), now);
  // Another MPD of the same host, another route: its own table entry.
  streaming::DashPrefetchPlan other = simPlan(10);
  other.renditions[0].pattern = streaming::DashSegmentPattern{"/b/720p/", ".m4s"};
  other.renditions[1].pattern = std::nullopt;  // a template without a usable number
  w.update("v", "v\n/b/", "edge.test", "/b/manifest.mpd", other, now);
  EXPECT_EQ(w.size(), 2u);
  w.viewerRequest("v", "edge.test", "/dash/360p/seg_10.m4s", now);
  w.viewerRequest("v", "edge.test", "/b/720p/3.m4s", now);
  EXPECT_EQ(w.update("v", "v\n/", "edge.test", "/dash/manifest.mpd", simPlan(40, 90),
                     now + std::chrono::seconds(80)),
            (std::vector<bool>{false, true}));
  EXPECT_EQ(w.update("v", "v\n/b/", "edge.test", "/b/manifest.mpd", other,
                     now + std::chrono::seconds(20)),
            (std::vector<bool>{true, false}));
  // A representation whose pattern changed starts unwatched.
  other.renditions[0].pattern = streaming::DashSegmentPattern{"/b/720p/n", ".m4s"};
  EXPECT_EQ(w.update("v", "v\n/b/", "edge.test", "/b/manifest.mpd", other,
                     now + std::chrono::seconds(21)),
            (std::vector<bool>{false, false}));
}

TEST(WatchedRenditions, TableOfMpdsStaysBounded) {
  WatchedRenditions w;
  const auto now = std::chrono::steady_clock::now();
  for (size_t i = 0; i < WatchedRenditions::kMaxMpds + 20; ++i) {
    w.update("v", "v\n/", "edge.test", "/ch" + std::to_string(i) + "/manifest.mpd", simPlan(5),
             now + std::chrono::milliseconds(i));
  }
  EXPECT_EQ(w.size(), WatchedRenditions::kMaxMpds);
  // The newest survive, and the index of the evicted ones is gone with them (no dangling
  // entries: a request for their segments is still safe).
  w.viewerRequest("v", "edge.test", "/dash/720p/seg_5.m4s", now);
  EXPECT_EQ(w.update("v", "v\n/", "edge.test", "/ch1040/manifest.mpd", simPlan(6),
                     now + std::chrono::seconds(1)),
            (std::vector<bool>{true, false}));
  // MPDs not updated for two windows (60 s here) are dropped when room is needed.
  w.update("v", "v\n/", "edge.test", "/late/manifest.mpd", simPlan(5),
           now + std::chrono::seconds(100));
  EXPECT_EQ(w.size(), 1u);
}

TEST(WatchedRenditions, DeepAndOddViewerPathsAreSafe) {
  WatchedRenditions w;
  const auto now = std::chrono::steady_clock::now();
  streaming::DashPrefetchPlan plan = simPlan(5);
  plan.renditions[0].pattern = streaming::DashSegmentPattern{"/", ""};  // "$Number$" beside the MPD
  w.update("v", "v\n/", "edge.test", "/manifest.mpd", plan, now);
  std::string deep;
  for (int i = 0; i < 100; ++i) deep += "/d";
  for (const std::string& path : {std::string(""), std::string("/"), std::string("//"), deep + "/5",
                                  std::string("no-slash"), std::string("/12x")}) {
    w.viewerRequest("v", "edge.test", path, now);
  }
  EXPECT_EQ(w.update("v", "v\n/", "edge.test", "/manifest.mpd", plan, now),
            (std::vector<bool>{false, false}));
  w.viewerRequest("v", "edge.test", "/42", now);
  EXPECT_EQ(w.update("v", "v\n/", "edge.test", "/manifest.mpd", plan, now),
            (std::vector<bool>{true, false}));
}

TEST(WatchedRenditions, WatchedTargetsInterleaveNewestFirst) {
  streaming::DashPrefetchPlan plan = simPlan(10);
  plan.renditions[1].refused = 3;
  streaming::PrefetchSelection s = selectWatchedDashTargets(plan, {true, true});
  ASSERT_EQ(s.targets.size(), 4u);
  EXPECT_EQ(s.targets[0].path, "/dash/720p/seg_10.m4s");
  EXPECT_EQ(s.targets[1].path, "/dash/360p/seg_10.m4s");
  EXPECT_EQ(s.targets[2].path, "/dash/720p/seg_9.m4s");
  EXPECT_EQ(s.targets[3].path, "/dash/360p/seg_9.m4s");
  EXPECT_EQ(s.refused, 3u);
  s = selectWatchedDashTargets(plan, {true, false});
  ASSERT_EQ(s.targets.size(), 2u);
  EXPECT_EQ(s.refused, 0u) << "an unwatched representation's URLs are not considered";
  EXPECT_TRUE(selectWatchedDashTargets(plan, {false, false}).targets.empty());
}

}  // namespace
}  // namespace streamedge::proxy
