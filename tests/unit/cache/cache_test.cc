// The cache index, the fill writer and the object state machine: one fill per key, readers of
// a filling object, abort semantics, revalidation, hit-for-pass, eviction under a byte budget.
#include "cache/cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "cache/body_arena.h"

namespace streamedge::cache {
namespace {

using Kind = LookupResult::Kind;
using namespace std::chrono_literals;

conf::RamCacheConfig ramConfig(uint64_t size, uint64_t max_object = 1 << 20) {
  conf::RamCacheConfig c;
  c.size_bytes = size;
  c.max_object_bytes = max_object;
  return c;
}

std::shared_ptr<ResponseHead> head200(std::optional<uint64_t> length) {
  auto h = std::make_shared<ResponseHead>();
  h->status = 200;
  h->reason = "OK";
  h->headers = {{"Content-Type", "video/mp2t"}, {"ETag", "\"v1\""}};
  h->content_length = length;
  h->buildWire();
  return h;
}

Freshness freshFor(const Clock& clock, conf::Seconds lifetime) {
  Freshness f;
  f.response_time = clock.wallNow();
  f.lifetime = lifetime;
  f.stale_if_error = 60s;
  return f;
}

CacheKey key(const std::string& path) { return makeKey("v", path, ""); }

std::string readAll(const CacheObject& object) {
  std::string out;
  const uint8_t* data = nullptr;
  uint64_t pos = 0;
  for (int i = 0; i < 10000; ++i) {
    size_t n = object.body().peek(pos, &data);
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(data), n);
    pos += n;
  }
  return out;
}

class CountingWaiter : public ObjectWaiter {
 public:
  void onObjectChanged() noexcept override { calls.fetch_add(1); }
  std::atomic<int> calls{0};
};

TEST(Cache, FirstLookupIsMissThenConcurrentLookupsAreBusyOnTheSameObject) {
  ManualClock clock;
  Cache cache(ramConfig(1 << 20), clock);
  LookupResult miss = cache.lookup(key("/a.ts"));
  ASSERT_EQ(miss.kind, Kind::kMiss);
  ASSERT_TRUE(miss.fill);
  LookupResult busy = cache.lookup(key("/a.ts"));
  EXPECT_EQ(busy.kind, Kind::kBusy);
  EXPECT_EQ(busy.object.get(), miss.object.get());
  EXPECT_FALSE(busy.fill);
}

TEST(Cache, CompleteFillBecomesAHitWithTheExactBytes) {
  ManualClock clock;
  Cache cache(ramConfig(1 << 20), clock);
  LookupResult miss = cache.lookup(key("/a.ts"));
  const std::string body(300000, 'x');  // spans two blocks
  miss.fill.publishHead(head200(body.size()), freshFor(clock, 60s), true, true);
  miss.fill.append(reinterpret_cast<const uint8_t*>(body.data()), 1000);
  miss.fill.append(reinterpret_cast<const uint8_t*>(body.data()) + 1000, body.size() - 1000);
  ASSERT_TRUE(miss.fill.finish());
  LookupResult hit = cache.lookup(key("/a.ts"));
  ASSERT_EQ(hit.kind, Kind::kHit);
  EXPECT_TRUE(hit.object->isComplete());
  EXPECT_EQ(readAll(*hit.object), body);
  EXPECT_EQ(cache.stats().objects, 1u);
}

TEST(Cache, ReadersSeeBytesWhileTheObjectFills) {
  ManualClock clock;
  Cache cache(ramConfig(1 << 20), clock);
  LookupResult miss = cache.lookup(key("/s.ts"));
  LookupResult reader = cache.lookup(key("/s.ts"));
  CountingWaiter waiter;
  reader.object->subscribe(&waiter);
  miss.fill.publishHead(head200(10), freshFor(clock, 60s), true, true);
  miss.fill.append(reinterpret_cast<const uint8_t*>("hello"), 5);
  EXPECT_EQ(reader.object->state(), CacheObject::State::kStreaming);
  EXPECT_EQ(readAll(*reader.object), "hello");
  EXPECT_GE(waiter.calls.load(), 2);  // head + bytes
  miss.fill.append(reinterpret_cast<const uint8_t*>("world"), 5);
  ASSERT_TRUE(miss.fill.finish());
  EXPECT_EQ(readAll(*reader.object), "helloworld");
  EXPECT_TRUE(reader.object->isComplete());
  reader.object->unsubscribe(&waiter);
}

TEST(Cache, WriterDropWakesReadersAsAbortedAndForgetsTheObject) {
  ManualClock clock;
  Cache cache(ramConfig(1 << 20), clock);
  LookupResult reader;
  CountingWaiter waiter;
  {
    LookupResult miss = cache.lookup(key("/cut.ts"));
    reader = cache.lookup(key("/cut.ts"));
    reader.object->subscribe(&waiter);
    miss.fill.publishHead(head200(100), freshFor(clock, 60s), true, true);
    miss.fill.append(reinterpret_cast<const uint8_t*>("part"), 4);
  }  // the fill is dropped without finish()
  EXPECT_EQ(reader.object->state(), CacheObject::State::kAborted);
  EXPECT_GE(waiter.calls.load(), 3);
  reader.object->unsubscribe(&waiter);
  LookupResult again = cache.lookup(key("/cut.ts"));
  EXPECT_EQ(again.kind, Kind::kMiss) << "an aborted object is never served";
}

TEST(Cache, ShortBodyIsNeverKeptAsComplete) {
  ManualClock clock;
  Cache cache(ramConfig(1 << 20), clock);
  LookupResult miss = cache.lookup(key("/short.ts"));
  ObjectRef object = miss.object;
  miss.fill.publishHead(head200(10), freshFor(clock, 60s), true, true);
  miss.fill.append(reinterpret_cast<const uint8_t*>("12345"), 5);
  EXPECT_FALSE(miss.fill.finish());
  EXPECT_EQ(object->state(), CacheObject::State::kAborted);
  EXPECT_EQ(cache.lookup(key("/short.ts")).kind, Kind::kMiss);
}

TEST(Cache, OverlongBodyIsCutAtItsFramingAndAborted) {
  ManualClock clock;
  Cache cache(ramConfig(1 << 20), clock);
  LookupResult miss = cache.lookup(key("/long.ts"));
  ObjectRef object = miss.object;
  miss.fill.publishHead(head200(4), freshFor(clock, 60s), true, true);
  miss.fill.append(reinterpret_cast<const uint8_t*>("123456"), 6);
  EXPECT_EQ(object->body().length(), 4u);
  EXPECT_FALSE(miss.fill.finish());
  EXPECT_EQ(object->state(), CacheObject::State::kAborted);
  EXPECT_EQ(cache.lookup(key("/long.ts")).kind, Kind::kMiss);
}

TEST(Cache, UnknownLengthBodyCompletesAtFinish) {
  ManualClock clock;
  Cache cache(ramConfig(1 << 20), clock);
  LookupResult miss = cache.lookup(key("/chunked.m3u8"));
  miss.fill.publishHead(head200(std::nullopt), freshFor(clock, 60s), true, true);
  miss.fill.append(reinterpret_cast<const uint8_t*>("#EXTM3U\n"), 8);
  ASSERT_TRUE(miss.fill.finish());
  LookupResult hit = cache.lookup(key("/chunked.m3u8"));
  ASSERT_EQ(hit.kind, Kind::kHit);
  EXPECT_EQ(readAll(*hit.object), "#EXTM3U\n");
}

TEST(Cache, NotShareableResponseLeavesHitForPassAndDropsTheSlot) {
  ManualClock clock;
  Cache cache(ramConfig(1 << 20), clock);
  LookupResult miss = cache.lookup(key("/private"));
  LookupResult coalesced = cache.lookup(key("/private"));
  miss.fill.publishHead(head200(2), freshFor(clock, 60s), false, false);
  EXPECT_FALSE(coalesced.object->shareable()) << "coalesced readers must fetch for themselves";
  EXPECT_EQ(cache.lookup(key("/private")).kind, Kind::kPass);
  miss.fill.append(reinterpret_cast<const uint8_t*>("ok"), 2);
  EXPECT_TRUE(miss.fill.finish());
  EXPECT_EQ(cache.lookup(key("/private")).kind, Kind::kPass);
  clock.advance(Cache::kHitForPassTtl + 1s);
  EXPECT_EQ(cache.lookup(key("/private")).kind, Kind::kMiss);
}

TEST(Cache, ExpiredHitForPassMarksOfURLsNeverAskedAgainLeaveNothingBehind) {
  ManualClock clock;
  Cache cache(ramConfig(1 << 20), clock);
  auto markUncacheable = [&](const std::string& path) {
    LookupResult miss = cache.lookup(key(path));
    miss.fill.publishHead(head200(2), freshFor(clock, 60s), false, false);
    miss.fill.append(reinterpret_cast<const uint8_t*>("ok"), 2);
    EXPECT_TRUE(miss.fill.finish());
  };
  for (int i = 0; i < 2000; ++i) markUncacheable("/once-" + std::to_string(i));
  EXPECT_EQ(cache.stats().index_slots, 2000u);
  clock.advance(Cache::kHitForPassTtl + 1s);
  // Later marks sweep the expired ones of their shard (a few per mark): the index does not
  // keep a slot per URL ever refused.
  for (int i = 0; i < 2000; ++i) markUncacheable("/later-" + std::to_string(i));
  EXPECT_EQ(cache.stats().index_slots, 2000u);
  // The live marks stay.
  EXPECT_EQ(cache.lookup(key("/later-0")).kind, Kind::kPass);
  EXPECT_EQ(cache.lookup(key("/once-0")).kind, Kind::kMiss);
}

TEST(Cache, StorableFalseStreamsButIsNotKept) {
  ManualClock clock;
  Cache cache(ramConfig(1 << 20), clock);
  LookupResult miss = cache.lookup(key("/err"));
  auto h = head200(3);
  miss.fill.publishHead(h, freshFor(clock, 60s), false, true);
  EXPECT_EQ(cache.lookup(key("/err")).kind, Kind::kBusy) << "followers share the in-flight answer";
  miss.fill.append(reinterpret_cast<const uint8_t*>("err"), 3);
  EXPECT_TRUE(miss.fill.finish());
  EXPECT_EQ(cache.lookup(key("/err")).kind, Kind::kMiss);
}

TEST(Cache, StaleObjectGivesOneRevalidationPermit) {
  ManualClock clock;
  Cache cache(ramConfig(1 << 20), clock);
  LookupResult miss = cache.lookup(key("/p.m3u8"));
  miss.fill.publishHead(head200(4), freshFor(clock, 2s), true, true);
  miss.fill.append(reinterpret_cast<const uint8_t*>("v1v1"), 4);
  ASSERT_TRUE(miss.fill.finish());
  clock.advance(3s);
  LookupResult first = cache.lookup(key("/p.m3u8"));
  ASSERT_EQ(first.kind, Kind::kStale);
  ASSERT_TRUE(first.fill);
  EXPECT_EQ(first.fill.stale().get(), first.object.get());
  LookupResult second = cache.lookup(key("/p.m3u8"));
  ASSERT_EQ(second.kind, Kind::kStale);
  EXPECT_FALSE(second.fill) << "only one revalidation at a time";
  EXPECT_EQ(second.pending.get(), first.fill.object().get());

  // 304: the new object keeps the stored bytes, gets new freshness, and replaces the stale one.
  first.fill.finishNotModified(head200(4), freshFor(clock, 10s));
  LookupResult hit = cache.lookup(key("/p.m3u8"));
  ASSERT_EQ(hit.kind, Kind::kHit);
  EXPECT_EQ(readAll(*hit.object), "v1v1");
  EXPECT_NE(hit.object.get(), first.object.get());
  EXPECT_EQ(cache.stats().objects, 1u);
}

TEST(Cache, FailedRevalidationKeepsTheStaleObjectForStaleIfError) {
  ManualClock clock;
  Cache cache(ramConfig(1 << 20), clock);
  LookupResult miss = cache.lookup(key("/p.m3u8"));
  miss.fill.publishHead(head200(2), freshFor(clock, 2s), true, true);
  miss.fill.append(reinterpret_cast<const uint8_t*>("v1"), 2);
  ASSERT_TRUE(miss.fill.finish());
  clock.advance(3s);
  {
    LookupResult reval = cache.lookup(key("/p.m3u8"));
    ASSERT_TRUE(reval.fill);
    reval.fill.abort();
  }
  LookupResult again = cache.lookup(key("/p.m3u8"));
  ASSERT_EQ(again.kind, Kind::kStale);
  EXPECT_TRUE(again.object->freshness().withinStaleIfError(clock.wallNow()));
  EXPECT_EQ(readAll(*again.object), "v1");
}

TEST(Cache, PurgeRemovesTheObjectAndAnInFlightFillIsNotKept) {
  ManualClock clock;
  Cache cache(ramConfig(1 << 20), clock);
  LookupResult miss = cache.lookup(key("/x.ts"));
  miss.fill.publishHead(head200(1), freshFor(clock, 60s), true, true);
  miss.fill.append(reinterpret_cast<const uint8_t*>("x"), 1);
  ASSERT_TRUE(miss.fill.finish());
  EXPECT_TRUE(cache.purge(key("/x.ts")));
  EXPECT_EQ(cache.stats().objects, 0u);

  LookupResult refill = cache.lookup(key("/x.ts"));
  ASSERT_EQ(refill.kind, Kind::kMiss);
  EXPECT_TRUE(cache.purge(key("/x.ts")));
  refill.fill.publishHead(head200(1), freshFor(clock, 60s), true, true);
  refill.fill.append(reinterpret_cast<const uint8_t*>("y"), 1);
  EXPECT_TRUE(refill.fill.finish());
  LookupResult after = cache.lookup(key("/x.ts"));
  EXPECT_EQ(after.kind, Kind::kMiss);
  EXPECT_EQ(cache.stats().fills_in_flight, 1u);  // only the lookup just above
  after.fill.abort();
  EXPECT_EQ(cache.stats().fills_in_flight, 0u);
}

TEST(Cache, ByteBudgetEvictsAndAHotObjectSurvivesAScan) {
  ManualClock clock;
  const uint64_t object_size = 10000;
  Cache cache(ramConfig(20 * object_size), clock);
  const std::string body(object_size, 'b');
  auto fill = [&](const std::string& path) {
    LookupResult r = cache.lookup(key(path));
    if (r.kind != Kind::kMiss) return r.kind;
    r.fill.publishHead(head200(body.size()), freshFor(clock, 600s), true, true);
    r.fill.append(reinterpret_cast<const uint8_t*>(body.data()), body.size());
    EXPECT_TRUE(r.fill.finish());
    return Kind::kMiss;
  };
  fill("/hot.ts");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(cache.lookup(key("/hot.ts")).kind, Kind::kHit);
  for (int i = 0; i < 200; ++i) fill("/scan/" + std::to_string(i) + ".ts");
  CacheStats stats = cache.stats();
  EXPECT_LE(stats.bytes, stats.capacity_bytes);
  EXPECT_GT(stats.evictions, 150u);
  EXPECT_EQ(cache.lookup(key("/hot.ts")).kind, Kind::kHit) << "one-hit scan evicted the hot object";
}

TEST(Cache, ObjectOverMaxSizeIsStreamedButNotKept) {
  ManualClock clock;
  Cache cache(ramConfig(1 << 20, 100), clock);
  LookupResult miss = cache.lookup(key("/big.mp4"));
  const std::string body(500, 'z');
  miss.fill.publishHead(head200(body.size()), freshFor(clock, 60s), true, true);
  EXPECT_FALSE(miss.fill.append(reinterpret_cast<const uint8_t*>(body.data()), body.size()));
  EXPECT_TRUE(miss.fill.finish());
  EXPECT_EQ(cache.lookup(key("/big.mp4")).kind, Kind::kMiss);
}

TEST(Cache, ConcurrentLookupsFromManyThreadsYieldExactlyOneFill) {
  ManualClock clock;
  Cache cache(ramConfig(1 << 20), clock);
  constexpr int kThreads = 8;
  std::atomic<int> misses{0};
  std::atomic<int> ready{0};
  std::vector<LookupResult> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ready.fetch_add(1);
      for (int spin = 0; spin < 1000000 && ready.load() < kThreads; ++spin) std::this_thread::yield();
      results[t] = cache.lookup(key("/herd.ts"));
      if (results[t].kind == Kind::kMiss) misses.fetch_add(1);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(misses.load(), 1);
  for (auto& r : results) {
    if (r.kind == Kind::kMiss) {
      r.fill.publishHead(head200(1), freshFor(clock, 60s), true, true);
      r.fill.append(reinterpret_cast<const uint8_t*>("h"), 1);
      EXPECT_TRUE(r.fill.finish());
    }
  }
  for (auto& r : results) EXPECT_TRUE(r.object->isComplete());
}

TEST(Cache, EvictedObjectStaysReadableWhilePinned) {
  ManualClock clock;
  Cache cache(ramConfig(15000), clock);
  const std::string body(10000, 'p');
  LookupResult a = cache.lookup(key("/pinned.ts"));
  a.fill.publishHead(head200(body.size()), freshFor(clock, 60s), true, true);
  a.fill.append(reinterpret_cast<const uint8_t*>(body.data()), body.size());
  ASSERT_TRUE(a.fill.finish());
  ObjectRef pinned = cache.lookup(key("/pinned.ts")).object;
  for (int i = 0; i < 5; ++i) {
    LookupResult r = cache.lookup(key("/other" + std::to_string(i)));
    r.fill.publishHead(head200(body.size()), freshFor(clock, 60s), true, true);
    r.fill.append(reinterpret_cast<const uint8_t*>(body.data()), body.size());
    ASSERT_TRUE(r.fill.finish());
  }
  EXPECT_NE(cache.lookup(key("/pinned.ts")).kind, Kind::kHit);
  EXPECT_EQ(readAll(*pinned), body) << "an evicted object must stay valid for its readers";
}

TEST(Body, AdoptedMemoryIsServedInBlockRunsWithoutACopyAndReleasedWithTheBody) {
  // 2.5 blocks of distinct bytes in memory the body does not own.
  const size_t len = Body::kBlockBytes * 5 / 2;
  auto memory = std::make_shared<std::vector<uint8_t>>(len + 100);
  for (size_t i = 0; i < memory->size(); ++i) (*memory)[i] = static_cast<uint8_t>(i * 7 + 3);
  const uint8_t* data = memory->data() + 100;
  std::weak_ptr<std::vector<uint8_t>> watch = memory;
  {
    Ref<Body> body = Body::adopt(memory, data, len, memory->size());
    memory.reset();  // the body keeps it alive
    ASSERT_FALSE(watch.expired());
    EXPECT_EQ(body->length(), len);
    EXPECT_EQ(body->allocatedBytes(), len + 100);
    uint64_t pos = 0;
    std::vector<size_t> runs;
    while (pos < len) {
      const uint8_t* run = nullptr;
      const size_t n = body->peek(pos, &run);
      ASSERT_GT(n, 0u);
      EXPECT_EQ(run, data + pos);  // the adopted bytes themselves
      runs.push_back(n);
      pos += n;
    }
    EXPECT_EQ(runs, (std::vector<size_t>{Body::kBlockBytes, Body::kBlockBytes, Body::kBlockBytes / 2}));
    const uint8_t* run = nullptr;
    EXPECT_EQ(body->peek(Body::kBlockBytes + 10, &run), Body::kBlockBytes - 10);
    EXPECT_EQ(run, data + Body::kBlockBytes + 10);
    EXPECT_EQ(body->peek(len, &run), 0u);
  }
  EXPECT_TRUE(watch.expired());
}

TEST(Body, FreedOwnedBlocksAreCountedAndWakeTheTrimOncePerThreshold) {
  // Heap blocks: the count is of memory given back to malloc. Any Cache made earlier in this
  // process enabled the shared-memory arena ([cache.ram] sendfile), whose blocks go back to it.
  const bool arena_was = bodyArenaEnabled();
  setBodyArenaEnabled(false);
  int notified = 0;
  setBodyFreeNotify(
      3 * Body::kBlockBytes, [](void* arg) { ++*static_cast<int*>(arg); }, &notified);
  takeFreedBodyBytes();
  const std::vector<uint8_t> bytes(Body::kBlockBytes, 0x42);
  const auto makeBody = [&](size_t blocks) {
    Ref<Body> body = Ref<Body>::make(std::optional<uint64_t>(blocks * Body::kBlockBytes));
    for (size_t b = 0; b < blocks; ++b) body->append(bytes.data(), bytes.size());
    return body;
  };
  makeBody(2);  // freed at once: 2 blocks, under the threshold
  EXPECT_EQ(notified, 0);
  makeBody(2);  // 4 blocks: crossed once
  EXPECT_EQ(notified, 1);
  makeBody(1);  // still above: no second wake-up until the trim takes the count
  EXPECT_EQ(notified, 1);
  {
    // Adopted memory goes back with its owner, not to malloc: not counted.
    auto memory = std::make_shared<std::vector<uint8_t>>(4 * Body::kBlockBytes);
    Body::adopt(memory, memory->data(), memory->size(), memory->size());
  }
  EXPECT_EQ(takeFreedBodyBytes(), 5 * Body::kBlockBytes);
  makeBody(3);  // counting from zero again
  EXPECT_EQ(notified, 2);
  setBodyFreeNotify(0, nullptr, nullptr);
  makeBody(4);
  EXPECT_EQ(notified, 2);
  takeFreedBodyBytes();
  setBodyArenaEnabled(arena_was);
}


// ---- derived representations ----------------------------------------------------------------

std::unique_ptr<DerivedRepresentation> derivedBytes(size_t n) {
  auto rep = std::make_unique<DerivedRepresentation>();
  auto owner = std::make_shared<std::string>(n, 'z');
  const auto* data = reinterpret_cast<const uint8_t*>(owner->data());
  rep->body = Body::adopt(owner, data, owner->size(), owner->size());
  rep->head = head200(n);
  return rep;
}

ObjectRef fillComplete(Cache& cache, const Clock& clock, const std::string& path, size_t size) {
  LookupResult miss = cache.lookup(key(path));
  EXPECT_EQ(miss.kind, Kind::kMiss);
  const std::string body(size, 'b');
  miss.fill.publishHead(head200(body.size()), freshFor(clock, 60s), true, true);
  miss.fill.append(reinterpret_cast<const uint8_t*>(body.data()), body.size());
  ObjectRef object = miss.fill.object();
  EXPECT_TRUE(miss.fill.finish());
  return object;
}

TEST(Cache, DerivedRepresentationIsChargedToTheRamTierOnce) {
  ManualClock clock;
  Cache cache(ramConfig(1 << 20), clock);
  ObjectRef object = fillComplete(cache, clock, "/p.mpd", 10000);
  const uint64_t before = cache.stats().bytes;
  const DerivedRepresentation* rep = cache.attachDerived(object, 0, derivedBytes(3000));
  ASSERT_NE(rep, nullptr);
  EXPECT_EQ(cache.stats().bytes, before + rep->chargedBytes());
  // A second writer loses: nothing more is charged, and it gets the first one.
  EXPECT_EQ(cache.attachDerived(object, 0, derivedBytes(3000)), rep);
  EXPECT_EQ(cache.stats().bytes, before + rep->chargedBytes());
  // Purged: the tier no longer counts the object nor its representation.
  EXPECT_TRUE(cache.purge(key("/p.mpd")));
  EXPECT_EQ(cache.stats().bytes, 0u);
  EXPECT_EQ(object->derived(0), rep) << "held by the reader that still has the object";
}

TEST(Cache, DerivedRepresentationAttachedBeforeAdmissionCountsAtAdmission) {
  ManualClock clock;
  Cache cache(ramConfig(1 << 20), clock);
  LookupResult miss = cache.lookup(key("/early.m3u8"));
  const std::string body(5000, 'b');
  miss.fill.publishHead(head200(body.size()), freshFor(clock, 60s), true, true);
  miss.fill.append(reinterpret_cast<const uint8_t*>(body.data()), body.size());
  ObjectRef object = miss.fill.object();
  // Complete for readers, not yet admitted (another worker's viewer may encode in between).
  object->markComplete();
  const DerivedRepresentation* rep = cache.attachDerived(object, 1, derivedBytes(2000));
  ASSERT_NE(rep, nullptr);
  EXPECT_EQ(cache.stats().bytes, 0u) << "not resident yet: not charged yet";
  ASSERT_TRUE(miss.fill.finish());
  const uint64_t with = cache.stats().bytes;
  EXPECT_GE(with, body.size() + rep->chargedBytes());
  EXPECT_EQ(cache.attachDerived(object, 1, derivedBytes(2000)), rep);
  EXPECT_EQ(cache.stats().bytes, with) << "counted once";
}

TEST(Cache, DerivedRepresentationCanEvictToStayWithinTheBudget) {
  ManualClock clock;
  Cache cache(ramConfig(64 * 1024), clock);
  fillComplete(cache, clock, "/old.ts", 20000);
  fillComplete(cache, clock, "/older.ts", 20000);
  ObjectRef object = fillComplete(cache, clock, "/big.mpd", 20000);
  ASSERT_LE(cache.stats().bytes, 64u * 1024);
  cache.attachDerived(object, 0, derivedBytes(15000));
  EXPECT_LE(cache.stats().bytes, 64u * 1024) << "the budget holds with the encoded copy";
  EXPECT_GE(cache.stats().evictions, 1u);
}

}  // namespace
}  // namespace streamedge::cache

namespace streamedge::cache {
namespace {

TEST(CachePeekFresh, ReturnsOnlyAStoredFreshObjectAndNeverStartsAFill) {
  ManualClock clock;
  Cache cache(ramConfig(1 << 20), clock);
  EXPECT_FALSE(cache.peekFresh(key("/p.m3u8")));
  // A peek of nothing leaves nothing behind: the next lookup is an ordinary miss.
  LookupResult miss = cache.lookup(key("/p.m3u8"));
  ASSERT_EQ(miss.kind, Kind::kMiss);
  EXPECT_FALSE(cache.peekFresh(key("/p.m3u8"))) << "a fill in flight is not a stored object";
  miss.fill.publishHead(head200(2), freshFor(clock, 2s), true, true);
  miss.fill.append(reinterpret_cast<const uint8_t*>("ok"), 2);
  ASSERT_TRUE(miss.fill.finish());
  ObjectRef peeked = cache.peekFresh(key("/p.m3u8"));
  ASSERT_TRUE(peeked);
  EXPECT_EQ(peeked.get(), miss.object.get());
  clock.advance(3s);
  EXPECT_FALSE(cache.peekFresh(key("/p.m3u8"))) << "stale";
  EXPECT_EQ(cache.lookup(key("/p.m3u8")).kind, Kind::kStale);
}

TEST(CachePeekFresh, HonoursRetentionAndPurge) {
  ManualClock clock;
  Cache cache(ramConfig(1 << 20), clock);
  LookupResult miss = cache.lookup(key("/r.m3u8"));
  miss.fill.publishHead(head200(2), freshFor(clock, 60s), true, true);
  miss.fill.append(reinterpret_cast<const uint8_t*>("ok"), 2);
  ASSERT_TRUE(miss.fill.finish());
  clock.advance(10s);
  EXPECT_TRUE(cache.peekFresh(key("/r.m3u8"), {conf::Millis(20000), "v"}));
  EXPECT_FALSE(cache.peekFresh(key("/r.m3u8"), {conf::Millis(5000), "v"}));
  ASSERT_TRUE(cache.purge(key("/r.m3u8")));
  EXPECT_FALSE(cache.peekFresh(key("/r.m3u8")));
}

}  // namespace
}  // namespace streamedge::cache
