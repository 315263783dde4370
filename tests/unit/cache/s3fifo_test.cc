#include "cache/s3fifo.h"

#include <gtest/gtest.h>

#include <memory>
#include <thread>
#include <vector>

namespace streamedge::cache {
namespace {

constexpr uint8_t kSmall = 1;
constexpr uint8_t kMain = 2;

// Owns nodes (as cache objects would) and records victims in eviction order.
class S3FifoTest : public ::testing::Test {
 protected:
  EvictionNode& node(uint64_t id, uint64_t size = 1) {
    nodes_.push_back(std::make_unique<EvictionNode>());
    EvictionNode& n = *nodes_.back();
    n.key = CacheKey{id * 7919, id};
    n.size_bytes = size;
    return n;
  }
  EvictionNode& insert(S3Fifo& p, uint64_t id, uint64_t size = 1) {
    EvictionNode& n = node(id, size);
    p.insert(n);
    return n;
  }
  void evict(S3Fifo& p) {
    p.evictUntilFits([this](EvictionNode& n) {
      EXPECT_EQ(n.queue, 0) << "victims are unlinked before the callback";
      EXPECT_EQ(n.prev, nullptr);
      EXPECT_EQ(n.next, nullptr);
      victims_.push_back(n.key.lo);
      victim_bytes_ += n.size_bytes;
    });
  }

  std::vector<std::unique_ptr<EvictionNode>> nodes_;
  std::vector<uint64_t> victims_;
  uint64_t victim_bytes_ = 0;
};

TEST_F(S3FifoTest, OneHitScanDoesNotEvictAHotObject) {
  S3Fifo p(100);
  EvictionNode& hot = insert(p, 1);
  S3Fifo::touch(hot);
  S3Fifo::touch(hot);
  evict(p);
  for (uint64_t id = 1000; id < 2000; ++id) {
    insert(p, id);
    evict(p);
    ASSERT_LE(p.usedBytes(), p.capacityBytes());
  }
  EXPECT_NE(hot.queue, 0) << "the hot object was evicted by a scan";
  EXPECT_EQ(hot.queue, kMain);
  EXPECT_EQ(victims_.size(), 1001u - 100u);
  for (uint64_t v : victims_) EXPECT_NE(v, 1u);
}

TEST_F(S3FifoTest, NewObjectsEnterSmallAndGhostHitsEnterMain) {
  S3Fifo p(4);
  EvictionNode& a = insert(p, 1);
  EXPECT_EQ(a.queue, kSmall);
  for (uint64_t id = 2; id <= 5; ++id) insert(p, id);
  evict(p);
  ASSERT_EQ(victims_, std::vector<uint64_t>{1});  // oldest one-hit object leaves first
  EXPECT_EQ(p.ghostCount(), 1u);

  // The same key fetched again (a new object for it) goes straight to main.
  EvictionNode& again = insert(p, 1);
  EXPECT_EQ(again.queue, kMain);
  EXPECT_EQ(p.ghostCount(), 0u) << "a ghost entry is consumed by its return";
  EXPECT_EQ(p.mainBytes(), 1u);
}

TEST_F(S3FifoTest, SmallObjectHitTwiceIsPromotedWithItsFrequencyReset) {
  S3Fifo p(2);
  EvictionNode& a = insert(p, 1);
  insert(p, 2);
  S3Fifo::touch(a);
  S3Fifo::touch(a);
  insert(p, 3);
  evict(p);
  EXPECT_EQ(a.queue, kMain);
  EXPECT_EQ(a.freq.load(), 0);
  EXPECT_EQ(victims_, std::vector<uint64_t>{2});
}

TEST_F(S3FifoTest, SmallObjectHitOnceIsStillEvicted) {
  // freq > 1 is the promotion threshold: one hit is what a one-hit wonder gets from its own
  // player retrying. The ghost brings it back to main if it is asked for again.
  S3Fifo p(1);
  EvictionNode& a = insert(p, 1);
  S3Fifo::touch(a);
  insert(p, 2);
  evict(p);
  EXPECT_EQ(victims_, std::vector<uint64_t>{1});
}

TEST_F(S3FifoTest, MainGivesHitObjectsAnotherRound) {
  S3Fifo p(3);
  insert(p, 1);
  insert(p, 2);
  insert(p, 3);
  p.setCapacity(0);
  evict(p);  // all three to the ghost FIFO
  ASSERT_EQ(victims_.size(), 3u);
  victims_.clear();
  p.setCapacity(3);
  EvictionNode& x = insert(p, 1);
  EvictionNode& y = insert(p, 2);
  EvictionNode& z = insert(p, 3);
  ASSERT_EQ(x.queue, kMain);
  ASSERT_EQ(y.queue, kMain);
  ASSERT_EQ(z.queue, kMain);
  S3Fifo::touch(x);  // x is the oldest but was hit
  p.setCapacity(2);
  evict(p);
  EXPECT_EQ(victims_, std::vector<uint64_t>{2});
  EXPECT_EQ(x.queue, kMain);
  EXPECT_EQ(x.freq.load(), 0) << "the second round costs one frequency point";
}

TEST_F(S3FifoTest, SmallKeepsItsShareWhileMainIsFull) {
  // Main objects are only evicted once small holds no more than 10% of the budget.
  S3Fifo p(100);
  std::vector<EvictionNode*> hot;
  for (uint64_t id = 1; id <= 50; ++id) {
    EvictionNode& n = insert(p, id);
    S3Fifo::touch(n);
    S3Fifo::touch(n);
    hot.push_back(&n);
  }
  for (uint64_t id = 1000; id < 1500; ++id) {
    insert(p, id);
    evict(p);
  }
  for (EvictionNode* n : hot) EXPECT_EQ(n->queue, kMain);
  EXPECT_EQ(p.mainBytes(), 50u);
  EXPECT_EQ(p.smallBytes(), 50u);
}

TEST_F(S3FifoTest, BytesAreAccountedPerQueue) {
  S3Fifo p(1000);
  EvictionNode& a = insert(p, 1, 100);
  insert(p, 2, 250);
  EXPECT_EQ(p.smallBytes(), 350u);
  EXPECT_EQ(p.mainBytes(), 0u);
  EXPECT_EQ(p.usedBytes(), 350u);
  p.remove(a);
  EXPECT_EQ(p.usedBytes(), 250u);

  insert(p, 3, 700);
  insert(p, 4, 100);
  EXPECT_EQ(p.usedBytes(), 1050u);
  evict(p);
  EXPECT_LE(p.usedBytes(), 1000u);
  EXPECT_EQ(p.usedBytes() + victim_bytes_, 1050u);
  EXPECT_EQ(p.smallBytes() + p.mainBytes(), p.usedBytes());
}

TEST_F(S3FifoTest, RemoveUnlinksFromEitherQueueWithoutAGhost) {
  S3Fifo p(10);
  // Put key 2 in the ghost FIFO so that its next object lands in main.
  insert(p, 2, 4);
  p.setCapacity(0);
  evict(p);
  ASSERT_EQ(p.ghostCount(), 1u);
  p.setCapacity(10);
  EvictionNode& m = insert(p, 2, 4);
  ASSERT_EQ(m.queue, kMain);
  EvictionNode& s = insert(p, 1, 3);
  ASSERT_EQ(s.queue, kSmall);
  EXPECT_EQ(p.usedBytes(), 7u);

  p.remove(m);
  EXPECT_EQ(m.queue, 0);
  EXPECT_EQ(p.mainBytes(), 0u);
  p.remove(m);  // no-op when not linked
  EXPECT_EQ(p.mainBytes(), 0u);
  p.remove(s);
  EXPECT_EQ(p.smallBytes(), 0u);
  EXPECT_EQ(p.usedBytes(), 0u);
  EXPECT_EQ(p.ghostCount(), 0u) << "a purge is not an eviction";
  // A purged key is not remembered: its next object starts in small.
  EXPECT_EQ(insert(p, 1, 3).queue, kSmall);
}

TEST_F(S3FifoTest, RemovedNodeIsNeverReportedAsVictim) {
  S3Fifo p(3);
  EvictionNode& a = insert(p, 1);
  insert(p, 2);
  insert(p, 3);
  p.remove(a);
  p.setCapacity(0);
  evict(p);
  EXPECT_EQ(victims_, (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(p.usedBytes(), 0u);
}

TEST_F(S3FifoTest, ObjectLargerThanCapacityIsEvictedAtOnce) {
  S3Fifo p(10);
  insert(p, 1, 100);
  evict(p);
  EXPECT_EQ(victims_, std::vector<uint64_t>{1});
  EXPECT_EQ(p.usedBytes(), 0u);
}

TEST_F(S3FifoTest, GhostFifoIsBounded) {
  S3Fifo p(10);
  for (uint64_t id = 1; id <= 20000; ++id) {
    insert(p, id);
    evict(p);
  }
  EXPECT_GE(p.ghostCount(), 4000u);
  EXPECT_LE(p.ghostCount(), 4096u);
  // The oldest victims were forgotten: they come back through small.
  EXPECT_EQ(insert(p, 1).queue, kSmall);
  // The newest are remembered.
  EXPECT_EQ(insert(p, 19990).queue, kMain);
}

TEST_F(S3FifoTest, ReinsertingALinkedNodeDoesNotDoubleCount) {
  S3Fifo p(100);
  EvictionNode& a = insert(p, 1, 10);
  p.insert(a);
  EXPECT_EQ(p.usedBytes(), 10u);
  p.remove(a);
  EXPECT_EQ(p.usedBytes(), 0u);
}

TEST(S3FifoTouch, FrequencySaturatesAtThreeUnderConcurrentHits) {
  EvictionNode n;
  for (int i = 0; i < 10; ++i) S3Fifo::touch(n);
  EXPECT_EQ(n.freq.load(), 3);

  EvictionNode m;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&m] {
      for (int i = 0; i < 10000; ++i) S3Fifo::touch(m);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(m.freq.load(), 3);
}

}  // namespace
}  // namespace streamedge::cache
