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

}  // namespace
}  // namespace streamedge::proxy
