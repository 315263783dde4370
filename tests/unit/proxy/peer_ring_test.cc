#include "proxy/peer_ring.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <vector>

namespace streamedge::proxy {
namespace {

cache::CacheKey keyNumber(int i) {
  return cache::makeKey("video", "/live/seg_" + std::to_string(i) + ".ts", "");
}

std::vector<PeerSpec> peers(int n) {
  std::vector<PeerSpec> out;
  for (int i = 0; i < n; ++i) out.push_back({"127.0.0." + std::to_string(i + 2) + ":8080", 1});
  return out;
}

PeerRing ring(std::vector<PeerSpec> specs) {
  auto r = PeerRing::make(std::move(specs));
  EXPECT_TRUE(r.isOk());
  return std::move(r).value();
}

TEST(PeerRingTest, BadPeerListsAreRefused) {
  EXPECT_FALSE(PeerRing::make({}).isOk());
  EXPECT_FALSE(PeerRing::make({{"", 1}}).isOk());
  EXPECT_FALSE(PeerRing::make({{"a:1", 1}, {"a:1", 1}}).isOk());
  EXPECT_FALSE(PeerRing::make({{"a:1", 0}}).isOk());
  EXPECT_FALSE(PeerRing::make({{"a:1", 1001}}).isOk());
  EXPECT_FALSE(PeerRing::make(std::vector<PeerSpec>(257, PeerSpec{"x", 1})).isOk());
  EXPECT_TRUE(PeerRing::make({{"a:1", 1000}}).isOk());
}

TEST(PeerRingTest, EdgesListingThePeersInAnotherOrderAgreeOnEveryOwner) {
  std::vector<PeerSpec> specs = peers(5);
  const PeerRing a = ring(specs);
  std::reverse(specs.begin(), specs.end());
  std::swap(specs[1], specs[3]);
  const PeerRing b = ring(specs);
  for (int i = 0; i < 5000; ++i) {
    const auto k = keyNumber(i);
    ASSERT_EQ(a.peer(a.owner(k)).address, b.peer(b.owner(k)).address) << i;
  }
}

TEST(PeerRingTest, EqualPeersOwnEqualSharesAndAWeightOfTwoOwnsTwice) {
  constexpr int kKeys = 200000;
  const PeerRing r = ring(peers(8));
  std::array<int, 8> owned{};
  for (int i = 0; i < kKeys; ++i) ++owned[r.owner(keyNumber(i))];
  for (int n : owned) EXPECT_NEAR(n, kKeys / 8, kKeys / 8 * 0.03);

  std::vector<PeerSpec> weighted = peers(3);
  weighted[0].weight = 2;  // 2 : 1 : 1
  const PeerRing w = ring(weighted);
  std::array<int, 3> shares{};
  for (int i = 0; i < kKeys; ++i) ++shares[w.owner(keyNumber(i))];
  EXPECT_NEAR(shares[0], kKeys / 2, kKeys / 2 * 0.03);
  EXPECT_NEAR(shares[1], kKeys / 4, kKeys / 4 * 0.03);
  EXPECT_NEAR(shares[2], kKeys / 4, kKeys / 4 * 0.03);
}

TEST(PeerRingTest, APeerThatLeavesMovesOnlyItsOwnKeysEachToItsNextRanked) {
  const std::vector<PeerSpec> all = peers(6);
  const PeerRing before = ring(all);
  std::vector<PeerSpec> rest = all;
  rest.erase(rest.begin() + 2);  // 127.0.0.4 dies
  const PeerRing after = ring(rest);
  int moved = 0;
  for (int i = 0; i < 30000; ++i) {
    const auto k = keyNumber(i);
    std::array<uint16_t, 2> top{};
    ASSERT_EQ(before.ranking(k, top), 2u);
    const std::string& was = before.peer(top[0]).address;
    const std::string& now = after.peer(after.owner(k)).address;
    if (was == all[2].address) {
      ++moved;
      EXPECT_EQ(now, before.peer(top[1]).address) << i;
    } else {
      EXPECT_EQ(now, was) << i;
    }
  }
  EXPECT_NEAR(moved, 30000 / 6, 30000 / 6 * 0.05);
}

TEST(PeerRingTest, APeerThatJoinsTakesOnlyTheKeysItNowOwns) {
  const PeerRing before = ring(peers(4));
  const PeerRing after = ring(peers(5));
  const std::string joined = peers(5)[4].address;
  int taken = 0;
  for (int i = 0; i < 30000; ++i) {
    const auto k = keyNumber(i);
    const std::string& now = after.peer(after.owner(k)).address;
    if (now == joined) {
      ++taken;
    } else {
      EXPECT_EQ(now, before.peer(before.owner(k)).address) << i;
    }
  }
  EXPECT_NEAR(taken, 30000 / 5, 30000 / 5 * 0.05);
}

TEST(PeerRingTest, RankingListsEveryPeerOnceOwnerFirst) {
  const PeerRing r = ring(peers(7));
  for (int i = 0; i < 500; ++i) {
    const auto k = keyNumber(i);
    std::array<uint16_t, 16> order{};
    ASSERT_EQ(r.ranking(k, order), 7u);
    EXPECT_EQ(order[0], r.owner(k));
    std::vector<uint16_t> sorted(order.begin(), order.begin() + 7);
    std::sort(sorted.begin(), sorted.end());
    for (uint16_t j = 0; j < 7; ++j) EXPECT_EQ(sorted[j], j);
  }
  std::array<uint16_t, 3> top3{};
  EXPECT_EQ(r.ranking(keyNumber(1), top3), 3u);
}

TEST(PeerRingTest, ChooseTakesTheOwnerUnlessItIsDownOrOverloaded) {
  const PeerRing r = ring(peers(4));
  const auto k = keyNumber(42);
  std::array<uint16_t, 4> order{};
  r.ranking(k, order);
  std::array<bool, 4> usable{true, true, true, true};
  std::array<uint32_t, 4> load{};
  EXPECT_EQ(r.choose(k, usable, load, 1.25, 1), order[0]);

  usable[order[0]] = false;  // the owner failed: its keys go to the next ranked
  EXPECT_EQ(r.choose(k, usable, load, 1.25, 1), order[1]);
  usable[order[0]] = true;

  load[order[0]] = 10;  // total 10, 4 usable: cap ceil(1.25 * 11 / 4) = 4
  EXPECT_EQ(r.choose(k, usable, load, 1.25, 1), order[1]);
  load[order[1]] = 5;
  load[order[0]] = 3;  // total 8: cap ceil(1.25 * 9 / 4) = 3, so 3 spills and 2 does not
  EXPECT_EQ(r.choose(k, usable, load, 1.25, 1), order[2]);  // order[1] holds 5: over the cap too
  load[order[0]] = 2;
  EXPECT_EQ(r.choose(k, usable, load, 1.25, 1), order[0]);
  load[order[1]] = 0;
  load[order[0]] = 7;  // the bound would spill it (cap ceil(1.25 * 8 / 4) = 3), the floor not
  EXPECT_EQ(r.choose(k, usable, load, 1.25, 8), order[0]);
  EXPECT_EQ(r.choose(k, usable, load, 1.25, 1), order[1]);

  usable.fill(false);
  EXPECT_EQ(r.choose(k, usable, load, 1.25, 1), -1);
}

TEST(PeerRingTest, BoundedLoadsKeepEveryPeerNearTheMeanForKeysInFlight) {
  // Keys placed one after another, each staying in flight: no peer ever passes the bound,
  // whatever the hash does with this particular set of keys.
  const PeerRing r = ring(peers(5));
  std::array<bool, 5> usable{true, true, true, true, true};
  std::array<uint32_t, 5> load{};
  constexpr double kC = 1.25;
  for (int i = 0; i < 2000; ++i) {
    const int chosen = r.choose(keyNumber(i), usable, load, kC, 1);
    ASSERT_GE(chosen, 0);
    ++load[static_cast<size_t>(chosen)];
    uint32_t total = 0;
    for (uint32_t l : load) total += l;
    for (uint32_t l : load) ASSERT_LE(l, std::ceil(kC * total / 5.0) + 1) << i;
  }
}

}  // namespace
}  // namespace streamedge::proxy
