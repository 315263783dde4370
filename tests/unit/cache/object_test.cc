// Windowed objects (answers that are not kept): blocks every reader has passed are released, the
// filler pauses at a full window and is told when readers make room or all leave, pinned runs
// outlive their release, late readers find the start gone, slow readers are cut only while
// another waits, and the fill-memory gauge follows the blocks.
#include "cache/object.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "cache/cache.h"

namespace streamedge::cache {
namespace {

using namespace std::chrono_literals;
constexpr uint64_t kBlock = Body::kBlockBytes;

class CountingWaiter : public ObjectWaiter {
 public:
  void onObjectChanged() noexcept override { calls.fetch_add(1); }
  std::atomic<int> calls{0};
};

class CountingListener : public FillListener {
 public:
  void onFillWindowChanged() noexcept override { calls.fetch_add(1); }
  std::atomic<int> calls{0};
};

std::shared_ptr<ResponseHead> head200(std::optional<uint64_t> length) {
  auto h = std::make_shared<ResponseHead>();
  h->status = 200;
  h->reason = "OK";
  h->content_length = length;
  h->buildWire();
  return h;
}

// An object with a published head whose body will be `length` bytes, windowed at `window`.
ObjectRef windowedObject(uint64_t length, uint64_t window) {
  ObjectRef o = ObjectRef::make(makeKey("v", "/w", ""));
  o->publishHead(head200(length), Freshness{}, true, Ref<Body>::make(std::optional<uint64_t>(length)));
  o->makeWindowed(window);
  return o;
}

void appendBytes(CacheObject& o, uint64_t n, char c = 'x') {
  const std::string chunk(64 * 1024, c);
  while (n > 0) {
    const size_t k = static_cast<size_t>(std::min<uint64_t>(n, chunk.size()));
    o.append(reinterpret_cast<const uint8_t*>(chunk.data()), k);
    n -= k;
  }
}

TEST(WindowedObject, BlocksEveryReaderPassedAreReleasedAndNoOthers) {
  CountingWaiter fast, slow;
  ObjectRef o = windowedObject(8 * kBlock, 4 * kBlock);
  o->subscribe(&fast);
  o->subscribe(&slow);
  appendBytes(*o, 3 * kBlock);
  EXPECT_EQ(o->body().allocatedBytes(), 3 * kBlock);
  o->advance(&fast, 3 * kBlock);
  EXPECT_EQ(o->body().releasedBytes(), 0u) << "the slow reader still needs block 0";
  o->advance(&slow, kBlock + 10);
  EXPECT_EQ(o->body().releasedBytes(), kBlock);
  EXPECT_EQ(o->body().allocatedBytes(), 2 * kBlock);
  const uint8_t* data = nullptr;
  EXPECT_EQ(o->body().peek(0, &data), 0u) << "released bytes are never handed out";
  EXPECT_GT(o->body().peek(kBlock, &data), 0u);
  o->unsubscribe(&slow);  // leaving: the fast reader alone holds the window now
  EXPECT_EQ(o->body().releasedBytes(), 3 * kBlock);
  o->unsubscribe(&fast);
}

TEST(WindowedObject, FillerPausesAtAFullWindowAndIsToldWhenReadersMakeRoom) {
  CountingWaiter reader;
  CountingListener filler;
  ObjectRef o = windowedObject(16 * kBlock, 4 * kBlock);
  o->setFillListener(&filler);
  o->subscribe(&reader);
  appendBytes(*o, 3 * kBlock);
  EXPECT_FALSE(o->pauseIfWindowFull());
  appendBytes(*o, kBlock);
  EXPECT_TRUE(o->pauseIfWindowFull()) << "4 blocks held, window 4 blocks";
  EXPECT_TRUE(o->windowPaused());
  EXPECT_EQ(filler.calls.load(), 0);
  o->advance(&reader, kBlock / 2);  // inside block 0: nothing to release
  EXPECT_EQ(filler.calls.load(), 0);
  EXPECT_TRUE(o->windowPaused());
  o->advance(&reader, 2 * kBlock);
  EXPECT_EQ(filler.calls.load(), 1) << "room again: the filler is woken once";
  EXPECT_FALSE(o->windowPaused());
  EXPECT_FALSE(o->abandoned());
  o->setFillListener(nullptr);
  o->unsubscribe(&reader);
}

TEST(WindowedObject, LastReaderLeavingAbandonsTheFill) {
  CountingWaiter a, b;
  CountingListener filler;
  ObjectRef o = windowedObject(16 * kBlock, 4 * kBlock);
  o->setFillListener(&filler);
  o->subscribe(&a);
  o->subscribe(&b);
  appendBytes(*o, kBlock);
  o->unsubscribe(&a);
  EXPECT_FALSE(o->abandoned());
  o->unsubscribe(&b);
  EXPECT_TRUE(o->abandoned());
  EXPECT_GE(filler.calls.load(), 1);
  o->setFillListener(nullptr);
}

TEST(WindowedObject, AFillWithoutReadersIsAbandonedAsSoonAsItIsWindowed) {
  CountingListener filler;
  ObjectRef o = ObjectRef::make(makeKey("v", "/none", ""));
  o->setFillListener(&filler);
  o->publishHead(head200(100), Freshness{}, true, Ref<Body>::make(std::optional<uint64_t>(100)));
  o->makeWindowed(kBlock);
  EXPECT_TRUE(o->abandoned());
  EXPECT_EQ(filler.calls.load(), 1);
  o->setFillListener(nullptr);
}

TEST(WindowedObject, PinnedRunsOutliveTheirReleaseAndTheObject) {
  CountingWaiter reader;
  const uint8_t* data = nullptr;
  void* pin = nullptr;
  {
    ObjectRef o = windowedObject(4 * kBlock, 2 * kBlock);
    o->subscribe(&reader);
    appendBytes(*o, 2 * kBlock, 'q');
    ASSERT_EQ(o->body().peekPinned(0, &data, &pin), kBlock);
    ASSERT_NE(pin, nullptr);
    o->advance(&reader, 2 * kBlock);
    EXPECT_EQ(o->body().releasedBytes(), 2 * kBlock);
    o->unsubscribe(&reader);
  }
  // The object and its body are gone; the pinned block is still readable (ASan checks it).
  EXPECT_EQ(data[0], 'q');
  EXPECT_EQ(data[kBlock - 1], 'q');
  Body::unpin(pin);
}

TEST(WindowedObject, ALateReaderFindsTheStartGone) {
  CountingWaiter first, late;
  ObjectRef o = windowedObject(8 * kBlock, 4 * kBlock);
  o->subscribe(&first);
  appendBytes(*o, 2 * kBlock);
  o->advance(&first, 2 * kBlock);
  o->subscribe(&late);  // at 0, after the release: must not hold or read anything below
  EXPECT_EQ(o->body().releasedBytes(), 2 * kBlock);
  const uint8_t* data = nullptr;
  EXPECT_EQ(o->body().peek(0, &data), 0u);
  o->unsubscribe(&late);
  o->unsubscribe(&first);
}

TEST(WindowedObject, TheSlowestReaderIsCutOnlyWhileAnotherWaitsAtTheEnd) {
  CountingWaiter slow, fast;
  ObjectRef o = windowedObject(16 * kBlock, 4 * kBlock);
  o->subscribe(&slow);
  o->subscribe(&fast);
  appendBytes(*o, 4 * kBlock);
  ASSERT_TRUE(o->pauseIfWindowFull());
  o->advance(&fast, 2 * kBlock);
  EXPECT_EQ(o->cutSlowestReaders(), 0u) << "nobody waits at the end of what was written";
  o->advance(&fast, 4 * kBlock);
  const int before = slow.calls.load();
  EXPECT_EQ(o->cutSlowestReaders(), 1u);
  EXPECT_TRUE(o->readerCut(&slow));
  EXPECT_FALSE(o->readerCut(&fast));
  EXPECT_GT(slow.calls.load(), before) << "the cut reader is woken to close";
  o->unsubscribe(&slow);
  EXPECT_FALSE(o->windowPaused()) << "its leaving opens the window";
  o->unsubscribe(&fast);
}

TEST(WindowedObject, AnAbsurdContentLengthReservesNothingHuge) {
  // An origin may claim any length; the body must not reserve for it up front.
  CountingWaiter reader;
  ObjectRef o = windowedObject(uint64_t{1} << 62, 4 * kBlock);
  o->subscribe(&reader);
  appendBytes(*o, 2 * kBlock);
  o->advance(&reader, 2 * kBlock);
  EXPECT_EQ(o->body().releasedBytes(), 2 * kBlock);
  o->unsubscribe(&reader);
}

TEST(WindowedObject, AnEndlessStreamKeepsABoundedBlockTable) {
  // A live stream through a window runs for days: its table of blocks must not keep a slot per
  // block ever written, and the bytes read after the table shrank must still be the right ones.
  CountingWaiter reader;
  ObjectRef o = windowedObject(1000 * kBlock, 2 * kBlock);
  o->subscribe(&reader);
  size_t max_slots = 0;
  for (uint64_t block = 0; block < 1000; ++block) {
    appendBytes(*o, kBlock, static_cast<char>('a' + block % 26));
    const uint8_t* data = nullptr;
    ASSERT_EQ(o->body().peek(block * kBlock + 17, &data), kBlock - 17);
    ASSERT_EQ(data[0], static_cast<uint8_t>('a' + block % 26)) << "block " << block;
    o->advance(&reader, (block + 1) * kBlock);
    max_slots = std::max(max_slots, o->body().tableSlots());
  }
  EXPECT_LE(max_slots, 130u);
  EXPECT_EQ(o->body().length(), 1000 * kBlock);
  const uint8_t* data = nullptr;
  EXPECT_EQ(o->body().peek(10 * kBlock, &data), 0u) << "a released block is gone";
  o->unsubscribe(&reader);
}

TEST(WindowedObject, StoredObjectsAreNeverWindowedOrReleased) {
  CountingWaiter reader;
  ObjectRef o = ObjectRef::make(makeKey("v", "/kept", ""));
  o->publishHead(head200(4 * kBlock), Freshness{}, true,
                 Ref<Body>::make(std::optional<uint64_t>(4 * kBlock)));
  o->subscribe(&reader);
  appendBytes(*o, 4 * kBlock);
  o->advance(&reader, 4 * kBlock);
  EXPECT_FALSE(o->windowed());
  EXPECT_FALSE(o->pauseIfWindowFull());
  EXPECT_EQ(o->body().releasedBytes(), 0u);
  EXPECT_EQ(o->body().allocatedBytes(), 4 * kBlock);
  o->unsubscribe(&reader);
}

TEST(FillMemory, TheGaugeCountsFillingBodiesUntilCompleteOrReleased) {
  const uint64_t base = fillMemoryBytes();
  CountingWaiter reader;
  {
    ObjectRef kept = ObjectRef::make(makeKey("v", "/k", ""));
    kept->publishHead(head200(2 * kBlock), Freshness{}, true,
                      Ref<Body>::make(std::optional<uint64_t>(2 * kBlock)));
    appendBytes(*kept, 2 * kBlock);
    EXPECT_EQ(fillMemoryBytes(), base + 2 * kBlock);
    kept->markComplete();
    EXPECT_EQ(fillMemoryBytes(), base) << "complete: the bytes are the cache's now";

    ObjectRef w = windowedObject(8 * kBlock, 4 * kBlock);
    w->subscribe(&reader);
    appendBytes(*w, 3 * kBlock);
    EXPECT_EQ(fillMemoryBytes(), base + 3 * kBlock);
    w->advance(&reader, 2 * kBlock);
    EXPECT_EQ(fillMemoryBytes(), base + kBlock);
    w->unsubscribe(&reader);
  }
  EXPECT_EQ(fillMemoryBytes(), base) << "freed with the objects";
}

TEST(FillMemory, OverTheBudgetWindowsShrinkToTheMinimum) {
  const uint64_t budget = fillMemoryBudget();
  CountingWaiter reader;
  ObjectRef o = windowedObject(16 * kBlock, 8 * kBlock);
  o->subscribe(&reader);
  appendBytes(*o, 3 * kBlock);
  EXPECT_FALSE(o->pauseIfWindowFull());
  setFillMemoryBudget(kBlock);  // already over it
  EXPECT_TRUE(o->pauseIfWindowFull()) << "two blocks is the most a fill holds over the budget";
  setFillMemoryBudget(budget);
  o->unsubscribe(&reader);
}

TEST(FillWriter, AnswersThatAreNotKeptAreWindowedAndKeptOnesAreNot) {
  ManualClock clock;
  conf::RamCacheConfig config;
  config.size_bytes = 64 << 20;
  config.max_object_bytes = 2 * kBlock;
  config.fill_window_bytes = 4 * kBlock;
  Cache cache(config, clock);
  {
    LookupResult r = cache.lookup(makeKey("v", "/kept", ""));
    r.fill.publishHead(head200(kBlock), Freshness{}, /*storable=*/true, /*shareable=*/true);
    EXPECT_FALSE(r.fill.object()->windowed());
  }
  {
    LookupResult r = cache.lookup(makeKey("v", "/uncacheable", ""));
    r.fill.publishHead(head200(kBlock), Freshness{}, /*storable=*/false, /*shareable=*/true);
    EXPECT_TRUE(r.fill.object()->windowed());
  }
  {
    LookupResult r = cache.lookup(makeKey("v", "/declared-too-big", ""));
    r.fill.publishHead(head200(3 * kBlock), Freshness{}, true, true);
    EXPECT_TRUE(r.fill.object()->windowed());
  }
  {
    // No Content-Length: windowed from the moment it grows past the object limit.
    CountingWaiter reader;
    LookupResult r = cache.lookup(makeKey("v", "/grows-too-big", ""));
    r.fill.publishHead(head200(std::nullopt), Freshness{}, true, true);
    ObjectRef o = r.fill.object();
    o->subscribe(&reader);
    const std::string chunk(kBlock, 'g');
    EXPECT_TRUE(r.fill.append(reinterpret_cast<const uint8_t*>(chunk.data()), chunk.size()));
    EXPECT_FALSE(o->windowed());
    r.fill.append(reinterpret_cast<const uint8_t*>(chunk.data()), chunk.size());
    EXPECT_FALSE(r.fill.append(reinterpret_cast<const uint8_t*>(chunk.data()), chunk.size()));
    EXPECT_TRUE(o->windowed());
    o->advance(&reader, 3 * kBlock);
    EXPECT_EQ(o->body().releasedBytes(), 3 * kBlock);
    o->unsubscribe(&reader);
  }
}


// ---- derived representations ----------------------------------------------------------------

std::unique_ptr<DerivedRepresentation> derivedOf(const std::string& text) {
  auto rep = std::make_unique<DerivedRepresentation>();
  auto owner = std::make_shared<std::string>(text);
  const auto* data = reinterpret_cast<const uint8_t*>(owner->data());
  rep->body = Body::adopt(owner, data, owner->size(), owner->size());
  rep->head = head200(text.size());
  return rep;
}

ObjectRef completeObject(const std::string& path, const std::string& text) {
  ObjectRef o = ObjectRef::make(makeKey("v", path, ""));
  o->publishHead(head200(text.size()), Freshness{}, true,
                 Ref<Body>::make(std::optional<uint64_t>(text.size())));
  o->append(reinterpret_cast<const uint8_t*>(text.data()), text.size());
  o->markComplete();
  return o;
}

TEST(CacheObjectDerived, FirstPublishWinsAndLaterOnesAreDropped) {
  ObjectRef o = completeObject("/d", "identity bytes");
  EXPECT_EQ(o->derived(0), nullptr);
  auto [first, first_won] = o->publishDerived(0, derivedOf("first"));
  ASSERT_TRUE(first_won);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(o->derived(0), first);
  auto [again, again_won] = o->publishDerived(0, derivedOf("second"));
  EXPECT_FALSE(again_won);
  EXPECT_EQ(again, first) << "the loser is handed the winner";
  EXPECT_EQ(first->body->length(), 5u);
  // Other slots are independent; out-of-range slots publish nothing.
  EXPECT_EQ(o->derived(1), nullptr);
  EXPECT_TRUE(o->publishDerived(1, derivedOf("other")).second);
  EXPECT_EQ(o->publishDerived(CacheObject::kDerivedSlots, derivedOf("x")).first, nullptr);
  EXPECT_EQ(o->derived(CacheObject::kDerivedSlots), nullptr);
  EXPECT_EQ(o->derivedBytes(), first->chargedBytes() + o->derived(1)->chargedBytes());
}

TEST(CacheObjectDerived, ARepresentationWithoutHeadIsKeptAsTheAnswer) {
  // "Tried, not worth it" is published like any other, so that nobody tries again.
  ObjectRef o = completeObject("/n", "abc");
  auto rep = std::make_unique<DerivedRepresentation>();
  EXPECT_TRUE(o->publishDerived(2, std::move(rep)).second);
  ASSERT_NE(o->derived(2), nullptr);
  EXPECT_EQ(o->derived(2)->head, nullptr);
}

TEST(CacheObjectDerived, ConcurrentPublishersAgreeOnOneWinner) {
  for (int round = 0; round < 50; ++round) {
    ObjectRef o = completeObject("/race", "identity");
    constexpr int kThreads = 4;
    std::atomic<int> winners{0};
    std::atomic<int> ready{0};
    std::vector<const DerivedRepresentation*> seen(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        auto rep = derivedOf("from thread " + std::to_string(t));
        ready.fetch_add(1);
        while (ready.load() < kThreads) std::this_thread::yield();  // bounded: all start
        auto [now_there, won] = o->publishDerived(0, std::move(rep));
        if (won) winners.fetch_add(1);
        seen[t] = now_there;
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(winners.load(), 1);
    for (const DerivedRepresentation* r : seen) EXPECT_EQ(r, o->derived(0));
  }
}

TEST(CacheObjectDerived, EncodedBytesHeldByASocketOutliveTheObject) {
  // A viewer's evbuffer pins the run it references; the object (and its representation) may
  // be evicted meanwhile.
  ObjectRef o = completeObject("/pin", "identity");
  const DerivedRepresentation* rep = o->publishDerived(0, derivedOf("encoded!")).first;
  const uint8_t* data = nullptr;
  void* pin = nullptr;
  ASSERT_EQ(rep->body->peekPinned(0, &data, &pin), 8u);
  o.reset();  // the object, its representation and its Ref<Body> are gone
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(data), 8), "encoded!");
  Body::unpin(pin);
}

}  // namespace
}  // namespace streamedge::cache
