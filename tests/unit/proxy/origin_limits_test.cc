// OriginLimits: slot caps that never overshoot (also under threads), hold release, waker calls,
// and the retry budget's sliding window with its per-second floor.
#include "proxy/origin_limits.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace streamedge::proxy {
namespace {

using namespace std::chrono_literals;

TEST(OriginLimits, TakeNeverExceedsTheCapAcrossThreads) {
  OriginLimits limits;
  OriginSlot* slot = limits.slot("g", "a", "dc-a");
  std::atomic<int> max_seen{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        if (!OriginSlot::tryTake(slot->in_flight, 3)) continue;
        const int v = slot->in_flight.load();
        int m = max_seen.load();
        while (v > m && !max_seen.compare_exchange_weak(m, v)) {
        }
        SlotHold hold(slot, SlotHold::Kind::kRequest);  // gives it back
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_LE(max_seen.load(), 3);
  EXPECT_EQ(slot->in_flight.load(), 0);
}

TEST(OriginLimits, ZeroCapIsUnlimitedAndSlotsAreStableByName) {
  OriginLimits limits;
  OriginSlot* a = limits.slot("g", "a", "dc-a");
  for (int i = 0; i < 5000; ++i) ASSERT_TRUE(OriginSlot::tryTake(a->connections, 0));
  EXPECT_EQ(a->connections.load(), 5000);
  EXPECT_EQ(limits.slot("g", "a", "dc-a2"), a);  // a reload that moved its dc
  EXPECT_NE(limits.slot("h", "a", "dc-a"), a);
  EXPECT_EQ(limits.slots().size(), 2u);
}

struct CountingWaker : LimitsWaker {
  void wake() override { ++wakes; }
  int wakes = 0;
};

TEST(OriginLimits, GivingBackWakesOnlyWhenSomeoneWaits) {
  OriginLimits limits;
  CountingWaker waker;
  limits.addWaker(&waker);
  OriginSlot* slot = limits.slot("g", "a", "");
  ASSERT_TRUE(OriginSlot::tryTake(slot->in_flight, 1));
  { SlotHold hold(slot, SlotHold::Kind::kRequest); }
  EXPECT_EQ(waker.wakes, 0);
  ASSERT_TRUE(OriginSlot::tryTake(slot->in_flight, 1));
  slot->waiters.fetch_add(1);
  { SlotHold hold(slot, SlotHold::Kind::kRequest); }
  EXPECT_EQ(waker.wakes, 1);
  limits.removeWaker(&waker);
  ASSERT_TRUE(OriginSlot::tryTake(slot->in_flight, 1));
  { SlotHold hold(slot, SlotHold::Kind::kRequest); }
  EXPECT_EQ(waker.wakes, 1);
}

TEST(GroupBudget, RetriesStayWithinTheFractionOfRequestsOverTheWindow) {
  GroupBudget budget;
  const auto t0 = std::chrono::steady_clock::time_point(1000s);
  for (int i = 0; i < 100; ++i) budget.noteRequest(t0);
  int allowed = 0;
  for (int i = 0; i < 50; ++i) allowed += budget.tryRetry(t0, 0.2, 0) ? 1 : 0;
  EXPECT_EQ(allowed, 20);
  EXPECT_EQ(budget.retried.load(), 20u);
  EXPECT_EQ(budget.budget_exhausted.load(), 30u);
  // Ten seconds later the window has moved past both.
  EXPECT_FALSE(budget.tryRetry(t0 + 10s, 0.2, 0));
  for (int i = 0; i < 10; ++i) budget.noteRequest(t0 + 10s);
  EXPECT_TRUE(budget.tryRetry(t0 + 10s, 0.2, 0));
  EXPECT_TRUE(budget.tryRetry(t0 + 10s, 0.2, 0));
  EXPECT_FALSE(budget.tryRetry(t0 + 10s, 0.2, 0));
}

TEST(GroupBudget, AQuietGroupMayStillRetryAtTheMinimumRate) {
  GroupBudget budget;
  const auto t0 = std::chrono::steady_clock::time_point(2000s);
  budget.noteRequest(t0);
  int allowed = 0;
  for (int i = 0; i < 100; ++i) allowed += budget.tryRetry(t0, 0.2, 3) ? 1 : 0;
  EXPECT_EQ(allowed, 30);  // 3 per second over the 10 s window
}

TEST(GroupBudget, ZeroRatioMeansNoBudget) {
  GroupBudget budget;
  const auto t0 = std::chrono::steady_clock::time_point(3000s);
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(budget.tryRetry(t0, 0, 0));
  EXPECT_EQ(budget.budget_exhausted.load(), 0u);
}

}  // namespace
}  // namespace streamedge::proxy
