// The RAM tier with the SSD tier attached, on a tiny memory device (16 KiB regions, 256 KiB):
// RAM evictions of objects whose route allows it reach the store, and only those; a miss with a
// fresh SSD copy is a kSsd fill that followers coalesce on and that readFromSsd() completes
// byte-exact; stale or damaged copies send the fill to the origin; SSD hits are not written
// again on eviction but revalidated objects are; admission "fill" writes at once; purge removes
// the SSD copy (also while its write is still queued); the idle sync puts the open region on the
// device without a flush.
#include "cache/cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <optional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cache/ssd_device.h"
#include "cache/ssd_io_engine.h"
#include "cache/ssd_store.h"

namespace streamedge::cache {
namespace {

using Kind = LookupResult::Kind;
using namespace std::chrono_literals;

constexpr uint64_t kRegion = 16 * 1024;
constexpr uint64_t kStoreBytes = 256 * 1024;  // 16 regions
constexpr size_t kBody = 2000;
// Three such objects fit in the RAM tier, a fourth evicts the oldest.
constexpr uint64_t kRamBytes = 8 * 1024;
constexpr std::string_view kMarker = "CACHE-SSD-MARKER";

CacheKey key(int i) { return makeKey("v", "/seg/" + std::to_string(i) + ".ts", ""); }

// Distinct, greppable bodies.
std::string bodyFor(int i, size_t size = kBody) {
  std::string b = std::string(kMarker) + "#" + std::to_string(i) + "#";
  while (b.size() < size) b += static_cast<char>('a' + (b.size() * 7 + i) % 26);
  b.resize(size);
  return b;
}

std::shared_ptr<ResponseHead> head200(uint64_t length, const std::string& etag = "\"v1\"") {
  auto h = std::make_shared<ResponseHead>();
  h->status = 200;
  h->reason = "OK";
  h->headers = {{"Content-Type", "video/mp2t"}};
  if (!etag.empty()) h->headers.emplace_back("ETag", etag);  // "": no validator
  h->content_length = length;
  h->buildWire();
  return h;
}

Freshness freshFor(const Clock& clock, conf::Seconds lifetime) {
  Freshness f;
  f.response_time = clock.wallNow();
  f.lifetime = lifetime;
  f.stale_if_error = 60s;
  f.explicit_lifetime = true;
  return f;
}

std::string readAll(const Body& body) {
  std::string out;
  const uint8_t* data = nullptr;
  for (uint64_t pos = 0; out.size() < (64u << 20);) {
    const size_t n = body.peek(pos, &data);
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(data), n);
    pos += n;
  }
  return out;
}

Ref<Body> bodyOf(const std::string& bytes) {
  auto body = Ref<Body>::make(std::optional<uint64_t>(bytes.size()));
  body->append(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  body->freeze();
  return body;
}

StoreKey testKey() {
  StoreKey k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(0x42 + i);
  return k;
}

class CountingWaiter : public ObjectWaiter {
 public:
  void onObjectChanged() noexcept override { calls.fetch_add(1); }
  std::atomic<int> calls{0};
};

// Once closed, holds the store's writer inside its next device write until opened (bounded:
// 5 s).
struct WriteGate {
  std::mutex mu;
  std::condition_variable cv;
  bool closed = false;
  int entered = 0;

  void close() {
    std::lock_guard<std::mutex> lock(mu);
    closed = true;
    entered = 0;
  }
  void onWrite() {
    std::unique_lock<std::mutex> lock(mu);
    ++entered;
    cv.notify_all();
    cv.wait_for(lock, 5s, [&] { return !closed; });
  }
  bool waitEntered() {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, 5s, [&] { return entered > 0; });
  }
  void open() {
    {
      std::lock_guard<std::mutex> lock(mu);
      closed = false;
    }
    cv.notify_all();
  }
};

struct TierSetup {
  uint64_t ram_bytes = kRamBytes;
  conf::SsdAdmission admission = conf::SsdAdmission::kEvict;
  bool encrypt = true;
  std::chrono::milliseconds sync_interval{0};  // deterministic unless a test wants it
  SsdObservers observers;
};

class CacheSsd : public ::testing::Test {
 protected:
  void TearDown() override {
    engine_.reset();  // pending SSD reads hold fills of the cache: before the cache
    cache_.reset();
    store_.reset();
  }

  void start(TierSetup setup = {}) {
    setup_ = setup;
    auto device = std::make_unique<MemoryDevice>(kStoreBytes);
    auto store = SsdStore::open(std::move(device), storeOptions(setup));
    ASSERT_TRUE(store.isOk()) << store.status().toString();
    store_ = std::move(*store);
    conf::RamCacheConfig ram;
    ram.size_bytes = setup.ram_bytes;
    ram.max_object_bytes = 1 << 20;
    cache_ = std::make_unique<Cache>(ram, clock_);
    cache_->attachSsd(store_.get(), setup.admission);
    auto engine = makeThreadPoolEngine(store_->device(), 1);
    ASSERT_TRUE(engine.isOk());
    engine_ = std::move(*engine);
  }

  SsdStoreOptions storeOptions(const TierSetup& setup) {
    SsdStoreOptions o;
    o.region_bytes = kRegion;
    o.encrypt = setup.encrypt;
    if (setup.encrypt) o.key = testKey();
    o.sync_interval = setup.sync_interval;
    o.clock = &clock_;
    o.log = [this](std::string_view line) {
      std::lock_guard<std::mutex> lock(log_mu_);
      log_.emplace_back(line);
    };
    o.observers = setup.observers;
    return o;
  }

  // Completes `fill` as an origin would: head, body, finish.
  void finishAsOrigin(FillWriter& fill, const std::string& body, conf::Seconds lifetime = 3600s) {
    fill.publishHead(head200(body.size(), etag_), freshFor(clock_, lifetime), true, true);
    fill.append(reinterpret_cast<const uint8_t*>(body.data()), body.size());
    EXPECT_TRUE(fill.finish());
  }

  // A miss filled from the origin; returns the complete object (empty if it was no miss).
  ObjectRef fillFromOrigin(const CacheKey& k, const std::string& body, bool ssd_allowed,
                           conf::Seconds lifetime = 3600s) {
    LookupResult r = cache_->lookup(k, ssd_allowed);
    EXPECT_EQ(r.kind, Kind::kMiss);
    if (r.kind != Kind::kMiss || !r.fill) return ObjectRef();
    ObjectRef object = r.object;
    finishAsOrigin(r.fill, body, lifetime);
    EXPECT_TRUE(object->isComplete());
    return object;
  }

  // Pushes `object` out of the RAM tier with tiny objects that may not use the SSD tier (they
  // add nothing to the store). Each filler is hit twice so that S3-FIFO promotes it to main:
  // `object` leaves whether it sits in small or in main. The fillers are purged afterwards, so
  // that the tier is empty again. True once `object` is no longer resident.
  bool evict(const ObjectRef& object) {
    std::vector<CacheKey> fillers;
    for (int n = 0; n < 200 && object->evictionNode().queue != 0; ++n) {
      fillers.push_back(makeKey("v", "/filler/" + std::to_string(fillers_++), ""));
      fillFromOrigin(fillers.back(), "f", /*ssd_allowed=*/false);
      for (int hit = 0; hit < 2; ++hit) EXPECT_EQ(cache_->lookup(fillers.back()).kind, Kind::kHit);
    }
    for (const CacheKey& k : fillers) cache_->purge(k);
    return object->evictionNode().queue == 0;
  }

  // Polls the SSD reads' engine until `done()` (at most 400 rounds / 5 s).
  template <typename Pred>
  bool pollUntil(Pred done) {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    for (int n = 0; n < 400 && !done() && std::chrono::steady_clock::now() < deadline; ++n) {
      engine_->wait(10ms);
    }
    return done();
  }

  // Waits (sleeping 2 ms at a time, at most 5 s) until `done()`.
  template <typename Pred>
  static bool waitUntil(Pred done) {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(2ms);
    }
    return done();
  }

  // The device's bytes, read through the device (synchronised with the writer's I/O).
  std::vector<uint8_t> deviceBytes() {
    AlignedBuffer buf(kStoreBytes, store_->device().ioAlignment());
    EXPECT_TRUE(store_->device().read(0, buf.data(), kStoreBytes).isOk());
    return std::vector<uint8_t>(buf.data(), buf.data() + kStoreBytes);
  }

  // A second store opened on a copy of `bytes` (same key and region size).
  std::unique_ptr<SsdStore> openCopy(const std::vector<uint8_t>& bytes) {
    auto device = std::make_unique<MemoryDevice>(kStoreBytes);
    device->bytes() = bytes;
    SsdStoreOptions o = storeOptions(setup_);
    o.log = nullptr;
    o.observers = {};
    auto store = SsdStore::open(std::move(device), std::move(o));
    EXPECT_TRUE(store.isOk()) << store.status().toString();
    return store.isOk() ? std::move(*store) : nullptr;
  }

  // Flips one byte of object `i`'s body on the device (plaintext stores: found by its marker).
  void damageOnDevice(int i) {
    std::vector<uint8_t> bytes = deviceBytes();
    const std::string needle = std::string(kMarker) + "#" + std::to_string(i) + "#";
    auto it = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
    ASSERT_NE(it, bytes.end()) << "object " << i << " is not on the device";
    const uint64_t at = static_cast<uint64_t>(it - bytes.begin()) + 500;
    const uint32_t align = store_->device().ioAlignment();
    const uint64_t block = at / align * align;
    AlignedBuffer buf(align, align);
    std::memcpy(buf.data(), bytes.data() + block, align);
    buf.data()[at - block] ^= 0x01;
    ASSERT_TRUE(store_->device().write(block, buf.data(), align).isOk());
  }

  // Object `i` (kBody bytes) filled, evicted to the SSD tier and written to the device.
  ObjectRef spillToSsd(int i, conf::Seconds lifetime = 3600s) {
    ObjectRef object = fillFromOrigin(key(i), bodyFor(i), /*ssd_allowed=*/true, lifetime);
    EXPECT_TRUE(object);
    if (!object) return object;
    EXPECT_TRUE(evict(object));
    EXPECT_TRUE(store_->flush().isOk());
    EXPECT_TRUE(store_->contains(key(i)));
    return object;
  }

  // A kSsd lookup of `i` completed through readFromSsd(); returns the object now in RAM.
  // Reads object `i` back from the SSD tier through the cache; `promote`: twice, so that the
  // second read puts it in RAM (the one returned).
  ObjectRef readBack(int i, bool promote = true) {
    if (promote && !readBack(i, false)) return ObjectRef();
    LookupResult r = cache_->lookup(key(i), /*ssd_allowed=*/true);
    EXPECT_EQ(r.kind, Kind::kSsd);
    if (r.kind != Kind::kSsd) return ObjectRef();
    ObjectRef object = r.object;
    bool missed = false;
    cache_->readFromSsd(std::move(r.fill), *engine_, [&](FillWriter) { missed = true; });
    EXPECT_TRUE(pollUntil([&] { return object->isComplete() || missed; }));
    EXPECT_FALSE(missed);
    EXPECT_TRUE(object->isComplete());
    EXPECT_TRUE(object->fromSsd());
    return object;
  }

  bool logged(const std::string& text) {
    std::lock_guard<std::mutex> lock(log_mu_);
    for (const std::string& l : log_) {
      if (l.find(text) != std::string::npos) return true;
    }
    return false;
  }

  ManualClock clock_;
  std::string etag_ = "\"v1\"";  // the origin's ETag; "" for none
  TierSetup setup_;
  std::mutex log_mu_;
  std::vector<std::string> log_;  // guarded by log_mu_
  int fillers_ = 0;
  // Destroyed in reverse: engine, cache, store (see TearDown).
  std::unique_ptr<SsdStore> store_;
  std::unique_ptr<Cache> cache_;
  std::unique_ptr<IoEngine> engine_;
};

TEST_F(CacheSsd, RamEvictionsOfAllowedObjectsReachTheStore) {
  ASSERT_NO_FATAL_FAILURE(start());
  std::vector<ObjectRef> objects;
  for (int i = 0; i < 8; ++i) objects.push_back(fillFromOrigin(key(i), bodyFor(i), true));
  const CacheStats cs = cache_->stats();
  ASSERT_GE(cs.evictions, 4u);
  EXPECT_EQ(cs.ssd_admissions, cs.evictions);  // queued at eviction time, synchronously
  EXPECT_EQ(store_->stats().inserts_queued, cs.evictions);
  ASSERT_TRUE(store_->flush().isOk());
  EXPECT_EQ(store_->stats().objects_written, cs.evictions);
  for (int i = 0; i < 8; ++i) {
    const bool resident = objects[i]->evictionNode().queue != 0;
    // Evicted ⇔ on SSD (admission "evict": resident objects are not written).
    EXPECT_NE(resident, store_->contains(key(i))) << i;
  }
  EXPECT_TRUE(store_->contains(key(0)));  // the oldest one-hit object left first
  EXPECT_FALSE(store_->contains(key(7)));
  // And it reads back byte-exact from the store.
  auto hit = store_->readSync(key(0), *engine_);
  ASSERT_TRUE(hit.isOk());
  EXPECT_EQ(readAll(*hit->body), bodyFor(0));
  EXPECT_EQ(*hit->head->find("etag"), "\"v1\"");
}

TEST_F(CacheSsd, ObjectsWhoseRouteForbidsTheSsdNeverReachIt) {
  ASSERT_NO_FATAL_FAILURE(start());
  for (int i = 0; i < 8; ++i) fillFromOrigin(key(i), bodyFor(i), /*ssd_allowed=*/false);
  EXPECT_GE(cache_->stats().evictions, 4u);
  EXPECT_EQ(cache_->stats().ssd_admissions, 0u);
  ASSERT_TRUE(store_->flush().isOk());
  EXPECT_EQ(store_->stats().objects_written, 0u);
  EXPECT_EQ(store_->stats().inserts_queued, 0u);
  EXPECT_EQ(store_->stats().objects, 0u);
}

TEST_F(CacheSsd, ARouteWithoutSsdDoesNotReadAnSsdCopy) {
  ASSERT_NO_FATAL_FAILURE(start());
  spillToSsd(1);
  LookupResult r = cache_->lookup(key(1), /*ssd_allowed=*/false);
  EXPECT_EQ(r.kind, Kind::kMiss);
  EXPECT_EQ(store_->stats().lookups, 0u);
}

TEST_F(CacheSsd, SsdCopyFillsAMissCoalescedAndByteExact) {
  ASSERT_NO_FATAL_FAILURE(start());
  spillToSsd(1);
  LookupResult first = cache_->lookup(key(1), true);
  ASSERT_EQ(first.kind, Kind::kSsd);
  ASSERT_TRUE(first.fill);
  EXPECT_EQ(first.object.get(), first.fill.object().get());
  // While the SSD read is pending, followers attach to the same fill: one read per object.
  LookupResult second = cache_->lookup(key(1), true);
  ASSERT_EQ(second.kind, Kind::kBusy);
  EXPECT_EQ(second.object.get(), first.object.get());
  EXPECT_FALSE(second.fill);
  CountingWaiter waiter;
  second.object->subscribe(&waiter);
  EXPECT_EQ(cache_->stats().fills_in_flight, 1u);

  bool missed = false;
  cache_->readFromSsd(std::move(first.fill), *engine_, [&](FillWriter) { missed = true; });
  ASSERT_TRUE(pollUntil([&] { return second.object->isComplete() || missed; }));
  second.object->unsubscribe(&waiter);
  EXPECT_FALSE(missed);
  EXPECT_GE(waiter.calls.load(), 1);
  EXPECT_TRUE(second.object->isComplete());
  EXPECT_TRUE(second.object->fromSsd());
  EXPECT_EQ(readAll(second.object->body()), bodyFor(1));
  EXPECT_EQ(second.object->head().status, 200);
  EXPECT_EQ(*second.object->head().find("etag"), "\"v1\"");
  EXPECT_EQ(second.object->head().content_length, kBody);

  // A first read is not promoted (one-time reads must not evict the RAM tier's hot set): the
  // next lookup reads the SSD again, and that second read promotes the object into RAM.
  const uint64_t ram_objects = cache_->stats().objects;
  LookupResult again = cache_->lookup(key(1), true);
  ASSERT_EQ(again.kind, Kind::kSsd);
  EXPECT_NE(again.object.get(), second.object.get());
  ObjectRef promoted = again.object;
  cache_->readFromSsd(std::move(again.fill), *engine_, [&](FillWriter) { missed = true; });
  ASSERT_TRUE(pollUntil([&] { return promoted->isComplete() || missed; }));
  EXPECT_FALSE(missed);
  EXPECT_EQ(cache_->stats().objects, ram_objects + 1);

  // Back in RAM: the next lookup is a plain hit on that object.
  LookupResult hit = cache_->lookup(key(1), true);
  ASSERT_EQ(hit.kind, Kind::kHit);
  EXPECT_EQ(hit.object.get(), promoted.get());
  const CacheStats cs = cache_->stats();
  EXPECT_EQ(cs.ssd_hits, 2u);
  EXPECT_EQ(cs.ssd_fallbacks, 0u);
  EXPECT_EQ(cs.fills_in_flight, 0u);
  EXPECT_EQ(store_->stats().lookups, 2u);
}

TEST_F(CacheSsd, SsdCopyIsReadFromTheDeviceOnceTheRegionMovedOn) {
  ASSERT_NO_FATAL_FAILURE(start());
  spillToSsd(1);
  spillToSsd(2);  // opens the next region: object 1 is only on the device now
  ObjectRef object = readBack(1, /*promote=*/false);
  ASSERT_TRUE(object);
  EXPECT_EQ(readAll(object->body()), bodyFor(1));
  EXPECT_EQ(store_->stats().reads_from_device, 1u);
  EXPECT_EQ(store_->stats().corrupt, 0u);
}

TEST_F(CacheSsd, StaleSsdCopyWithoutValidatorsIsAMiss) {
  ASSERT_NO_FATAL_FAILURE(start());
  etag_.clear();
  spillToSsd(1, /*lifetime=*/60s);
  clock_.advance(61s);
  LookupResult r = cache_->lookup(key(1), true);
  EXPECT_EQ(r.kind, Kind::kMiss);
  EXPECT_TRUE(r.fill);
  EXPECT_EQ(store_->stats().lookups, 0u);  // not even read
}

TEST_F(CacheSsd, StaleSsdCopyWithAnEtagIsRevalidatedAndA304KeepsItsBytes) {
  ASSERT_NO_FATAL_FAILURE(start());
  spillToSsd(1, /*lifetime=*/60s);
  clock_.advance(61s);
  LookupResult r = cache_->lookup(key(1), true);
  ASSERT_EQ(r.kind, Kind::kSsd);
  ObjectRef object = r.object;
  FillWriter origin;
  cache_->readFromSsd(std::move(r.fill), *engine_, [&](FillWriter f) { origin = std::move(f); });
  ASSERT_TRUE(pollUntil([&] { return static_cast<bool>(origin); }));
  // The fill comes back as a revalidation of the SSD copy: the origin is asked conditionally.
  ASSERT_TRUE(origin.stale());
  EXPECT_TRUE(origin.stale()->fromSsd());
  EXPECT_EQ(*origin.stale()->head().find("etag"), "\"v1\"");
  EXPECT_EQ(readAll(origin.stale()->body()), bodyFor(1));
  EXPECT_EQ(cache_->stats().ssd_revalidations, 1u);
  EXPECT_EQ(cache_->stats().ssd_hits, 0u);

  origin.finishNotModified(head200(kBody), freshFor(clock_, 3600s));
  ASSERT_TRUE(object->isComplete());
  EXPECT_TRUE(object->freshness().isFresh(clock_.wallNow()));
  EXPECT_EQ(readAll(object->body()), bodyFor(1));
  EXPECT_FALSE(object->fromSsd());  // new freshness: worth writing again when evicted
  LookupResult hit = cache_->lookup(key(1), true);
  ASSERT_EQ(hit.kind, Kind::kHit);
  EXPECT_EQ(hit.object.get(), object.get());

  // Evicted, the refreshed copy replaces the stale one on the SSD.
  const uint64_t written = store_->stats().objects_written;
  ASSERT_TRUE(evict(object));
  ASSERT_TRUE(store_->flush().isOk());
  EXPECT_EQ(store_->stats().objects_written, written + 1);
  const std::optional<SsdEntryInfo> info = store_->find(key(1));
  ASSERT_TRUE(info);
  EXPECT_GT(info->fresh_until, clock_.wallNow());
}

TEST_F(CacheSsd, AFailedRevalidationWithinStaleIfErrorServesTheSsdCopyStale) {
  ASSERT_NO_FATAL_FAILURE(start());
  spillToSsd(1, /*lifetime=*/60s);  // stale-if-error 60 s
  clock_.advance(61s);
  LookupResult r = cache_->lookup(key(1), true);
  ASSERT_EQ(r.kind, Kind::kSsd);
  ObjectRef object = r.object;
  LookupResult follower = cache_->lookup(key(1), true);
  ASSERT_EQ(follower.kind, Kind::kBusy);  // coalesced on the same fill
  FillWriter origin;
  cache_->readFromSsd(std::move(r.fill), *engine_, [&](FillWriter f) { origin = std::move(f); });
  ASSERT_TRUE(pollUntil([&] { return static_cast<bool>(origin); }));
  ASSERT_TRUE(origin.stale());
  origin.finishWithStale();  // what the fill job does on a 5xx or a dead origin
  ASSERT_TRUE(object->isComplete());
  EXPECT_TRUE(object->fromSsd());
  EXPECT_FALSE(object->freshness().isFresh(clock_.wallNow()));
  EXPECT_TRUE(object->freshness().withinStaleIfError(clock_.wallNow()));
  EXPECT_EQ(readAll(object->body()), bodyFor(1));
  EXPECT_EQ(follower.object.get(), object.get());
  // Now a stale object in RAM: the next request revalidates it like any other.
  LookupResult next = cache_->lookup(key(1), true);
  ASSERT_EQ(next.kind, Kind::kStale);
  EXPECT_TRUE(next.fill);
  EXPECT_EQ(next.object.get(), object.get());
}

TEST_F(CacheSsd, CopyThatTurnsStaleDuringTheReadGoesToTheOrigin) {
  ASSERT_NO_FATAL_FAILURE(start());
  spillToSsd(1, /*lifetime=*/60s);
  clock_.advance(59s);
  LookupResult r = cache_->lookup(key(1), true);
  ASSERT_EQ(r.kind, Kind::kSsd);
  ObjectRef object = r.object;
  clock_.advance(2s);
  FillWriter origin;
  cache_->readFromSsd(std::move(r.fill), *engine_, [&](FillWriter f) { origin = std::move(f); });
  ASSERT_TRUE(pollUntil([&] { return static_cast<bool>(origin); }));
  EXPECT_EQ(origin.object().get(), object.get());
  EXPECT_EQ(cache_->stats().ssd_fallbacks, 1u);
  EXPECT_EQ(cache_->stats().ssd_hits, 0u);
  EXPECT_TRUE(origin.stale());  // it has an ETag: the origin fetch is a revalidation
  finishAsOrigin(origin, "new bytes from the origin");
  EXPECT_FALSE(object->fromSsd());
  LookupResult hit = cache_->lookup(key(1), true);
  ASSERT_EQ(hit.kind, Kind::kHit);
  EXPECT_EQ(readAll(hit.object->body()), "new bytes from the origin");
}

TEST_F(CacheSsd, DamagedCopyFallsBackToTheOriginAndLeavesTheIndex) {
  TierSetup s;
  s.encrypt = false;  // so that the test finds the body on the device
  ASSERT_NO_FATAL_FAILURE(start(s));
  spillToSsd(1);
  spillToSsd(2);  // object 1 is read from the device, not the region buffer
  damageOnDevice(1);

  LookupResult r = cache_->lookup(key(1), true);
  ASSERT_EQ(r.kind, Kind::kSsd);
  LookupResult follower = cache_->lookup(key(1), true);
  ASSERT_EQ(follower.kind, Kind::kBusy);
  FillWriter origin;
  int misses = 0;
  cache_->readFromSsd(std::move(r.fill), *engine_, [&](FillWriter f) {
    ++misses;
    origin = std::move(f);
  });
  ASSERT_TRUE(pollUntil([&] { return misses > 0; }));
  EXPECT_EQ(misses, 1);
  ASSERT_TRUE(origin);
  EXPECT_EQ(origin.object().get(), follower.object.get());
  // Not a byte of the damaged copy was published; the follower still waits, for the origin.
  EXPECT_EQ(follower.object->state(), CacheObject::State::kPending);
  EXPECT_FALSE(store_->contains(key(1)));
  EXPECT_EQ(store_->stats().corrupt, 1u);
  EXPECT_TRUE(logged("damaged object"));
  const CacheStats cs = cache_->stats();
  EXPECT_EQ(cs.ssd_fallbacks, 1u);
  EXPECT_EQ(cs.ssd_hits, 0u);

  const std::string fresh = bodyFor(100);
  finishAsOrigin(origin, fresh);
  EXPECT_TRUE(follower.object->isComplete());
  EXPECT_FALSE(follower.object->fromSsd());
  EXPECT_EQ(readAll(follower.object->body()), fresh);
  LookupResult hit = cache_->lookup(key(1), true);
  ASSERT_EQ(hit.kind, Kind::kHit);
  EXPECT_EQ(readAll(hit.object->body()), fresh);
  EXPECT_EQ(cache_->stats().fills_in_flight, 0u);
  // Object 2 was not touched by the damage.
  EXPECT_TRUE(store_->contains(key(2)));
}

TEST_F(CacheSsd, DroppedEngineAbortsTheSsdFillAndTheKeyIsNotStuck) {
  ASSERT_NO_FATAL_FAILURE(start());
  spillToSsd(1);
  LookupResult r = cache_->lookup(key(1), true);
  ASSERT_EQ(r.kind, Kind::kSsd);
  LookupResult follower = cache_->lookup(key(1), true);
  ASSERT_EQ(follower.kind, Kind::kBusy);
  bool missed = false;
  cache_->readFromSsd(std::move(r.fill), *engine_, [&](FillWriter) { missed = true; });
  engine_.reset();  // worker shutdown before the completion was polled
  EXPECT_FALSE(missed);
  EXPECT_EQ(follower.object->state(), CacheObject::State::kAborted);
  EXPECT_EQ(cache_->stats().fills_in_flight, 0u);
  auto engine = makeThreadPoolEngine(store_->device(), 1);
  ASSERT_TRUE(engine.isOk());
  engine_ = std::move(*engine);
  ObjectRef object = readBack(1);
  ASSERT_TRUE(object);
  EXPECT_EQ(readAll(object->body()), bodyFor(1));
}

TEST_F(CacheSsd, SsdHitsAreNotWrittenAgainButRevalidatedObjectsAre) {
  ASSERT_NO_FATAL_FAILURE(start());
  spillToSsd(1);
  EXPECT_EQ(store_->stats().objects_written, 1u);
  EXPECT_EQ(cache_->stats().ssd_admissions, 1u);

  // Read from SSD, evicted again: the same bytes are on SSD, no second write.
  ObjectRef from_ssd = readBack(1);
  ASSERT_TRUE(from_ssd);
  ASSERT_TRUE(evict(from_ssd));
  ASSERT_TRUE(store_->flush().isOk());
  EXPECT_EQ(cache_->stats().ssd_admissions, 1u);
  EXPECT_EQ(store_->stats().objects_written, 1u);
  EXPECT_TRUE(store_->contains(key(1)));

  // Read again, then stale in RAM and revalidated (304): new freshness and head, same body.
  from_ssd = readBack(1);
  ASSERT_TRUE(from_ssd);
  clock_.advance(3601s);
  LookupResult reval = cache_->lookup(key(1), true);
  ASSERT_EQ(reval.kind, Kind::kStale);
  ASSERT_TRUE(reval.fill);
  EXPECT_EQ(reval.fill.stale().get(), from_ssd.get());
  ObjectRef revalidated = reval.fill.object();
  reval.fill.finishNotModified(head200(kBody, "\"v2\""), freshFor(clock_, 3600s));
  ASSERT_TRUE(revalidated->isComplete());
  EXPECT_FALSE(revalidated->fromSsd());
  ASSERT_EQ(cache_->lookup(key(1), true).kind, Kind::kHit);
  ASSERT_TRUE(evict(revalidated));
  ASSERT_TRUE(store_->flush().isOk());
  EXPECT_EQ(cache_->stats().ssd_admissions, 2u);
  EXPECT_EQ(store_->stats().objects_written, 2u);

  // The SSD copy is now the revalidated one: fresh, with the new head and the same bytes.
  ObjectRef again = readBack(1);
  ASSERT_TRUE(again);
  EXPECT_EQ(*again->head().find("etag"), "\"v2\"");
  EXPECT_EQ(readAll(again->body()), bodyFor(1));
  EXPECT_TRUE(again->freshness().isFresh(clock_.wallNow()));
  EXPECT_EQ(cache_->stats().ssd_hits, 6u);  // three read-backs of two reads each
}

TEST_F(CacheSsd, AdmissionFillWritesWhenTheFillCompletes) {
  TierSetup s;
  s.admission = conf::SsdAdmission::kFill;
  ASSERT_NO_FATAL_FAILURE(start(s));
  ObjectRef object = fillFromOrigin(key(1), bodyFor(1), true);
  ASSERT_TRUE(object);
  EXPECT_EQ(cache_->stats().evictions, 0u);
  EXPECT_EQ(cache_->stats().ssd_admissions, 1u);
  ASSERT_TRUE(store_->flush().isOk());
  EXPECT_EQ(store_->stats().objects_written, 1u);
  EXPECT_TRUE(store_->contains(key(1)));
  EXPECT_EQ(cache_->lookup(key(1), true).kind, Kind::kHit);  // still served from RAM
  auto hit = store_->readSync(key(1), *engine_);
  ASSERT_TRUE(hit.isOk());
  EXPECT_EQ(readAll(*hit->body), bodyFor(1));
  // Its eviction writes nothing more.
  ASSERT_TRUE(evict(object));
  ASSERT_TRUE(store_->flush().isOk());
  EXPECT_EQ(cache_->stats().ssd_admissions, 1u);
  EXPECT_EQ(store_->stats().objects_written, 1u);
  // Unshareable or forbidden objects are not written at fill time either.
  fillFromOrigin(key(2), bodyFor(2), /*ssd_allowed=*/false);
  ASSERT_TRUE(store_->flush().isOk());
  EXPECT_EQ(store_->stats().objects_written, 1u);
  EXPECT_FALSE(store_->contains(key(2)));
}

TEST_F(CacheSsd, PurgeRemovesTheSsdCopy) {
  ASSERT_NO_FATAL_FAILURE(start());
  spillToSsd(1);
  EXPECT_TRUE(cache_->purge(key(1)));  // only on SSD: still found and removed
  EXPECT_FALSE(store_->contains(key(1)));
  LookupResult r = cache_->lookup(key(1), true);
  EXPECT_EQ(r.kind, Kind::kMiss);
  EXPECT_FALSE(cache_->purge(makeKey("v", "/never.ts", "")));
}

TEST_F(CacheSsd, PurgeRemovesBothCopies) {
  TierSetup s;
  s.admission = conf::SsdAdmission::kFill;
  ASSERT_NO_FATAL_FAILURE(start(s));
  fillFromOrigin(key(1), bodyFor(1), true);
  ASSERT_TRUE(store_->flush().isOk());
  ASSERT_TRUE(store_->contains(key(1)));
  EXPECT_TRUE(cache_->purge(key(1)));
  EXPECT_FALSE(store_->contains(key(1)));
  EXPECT_EQ(cache_->stats().objects, 0u);
  EXPECT_EQ(cache_->lookup(key(1), true).kind, Kind::kMiss);
}

// Vary: each variant is an ordinary object under its own key on the SSD tier too; a variant
// that left RAM is read back for its own requests only; a purge of the URL removes them all.
TEST_F(CacheSsd, VariantsLiveUnderTheirOwnKeysAndAPurgeOfTheUrlRemovesThemAll) {
  TierSetup s;
  s.admission = conf::SsdAdmission::kFill;
  ASSERT_NO_FATAL_FAILURE(start(s));
  const CacheKey url = key(7);
  auto vary_head = [](size_t length) {
    auto h = head200(length);
    h->headers.emplace_back("Vary", "Origin");
    h->buildWire();
    return h;
  };
  std::vector<CacheKey> variants;
  ObjectRef first;
  for (int i = 0; i < 2; ++i) {
    const std::vector<std::pair<std::string, std::string>> origin = {
        {"Origin", "https://" + std::to_string(i) + ".example"}};
    const FieldLineList fields(origin);
    LookupResult r = cache_->lookup(url, true, &fields);
    ASSERT_EQ(r.kind, Kind::kMiss);
    const std::string body = bodyFor(70 + i);
    r.fill.publishHead(vary_head(body.size()), freshFor(clock_, 3600s), true, true, &fields);
    r.fill.append(reinterpret_cast<const uint8_t*>(body.data()), body.size());
    ASSERT_TRUE(r.fill.finish());
    variants.push_back(r.object->key());
    if (i == 0) first = r.object;
  }
  ASSERT_NE(variants[0], variants[1]);
  ASSERT_TRUE(store_->flush().isOk());
  EXPECT_TRUE(store_->contains(variants[0]));
  EXPECT_TRUE(store_->contains(variants[1]));
  EXPECT_FALSE(store_->contains(url));

  // Out of RAM, variant 0 is read back from the SSD for its own Origin, byte-exact.
  ASSERT_TRUE(evict(first));
  const std::vector<std::pair<std::string, std::string>> origin0 = {{"Origin", "https://0.example"}};
  const FieldLineList fields0(origin0);
  LookupResult r = cache_->lookup(url, true, &fields0);
  ASSERT_EQ(r.kind, Kind::kSsd);
  EXPECT_EQ(r.key, variants[0]);
  ObjectRef object = r.object;
  bool missed = false;
  cache_->readFromSsd(std::move(r.fill), *engine_, [&](FillWriter) { missed = true; });
  ASSERT_TRUE(pollUntil([&] { return object->isComplete() || missed; }));
  EXPECT_FALSE(missed);
  EXPECT_EQ(readAll(object->body()), bodyFor(70));

  EXPECT_TRUE(cache_->purge(url));
  EXPECT_FALSE(store_->contains(variants[0]));
  EXPECT_FALSE(store_->contains(variants[1]));
  EXPECT_EQ(cache_->stats().objects, 0u);
  EXPECT_EQ(cache_->lookup(url, true, &fields0).kind, Kind::kMiss);
}

// A second RAM tier over the same running store (no rebuild, so nothing hands it the marker;
// a real restart does, see cache_vary_ssd_test.cc) learns the marker from the first answer;
// from then on the variants already on the SSD are found, and each one read is known to a
// purge of the URL.
TEST_F(CacheSsd, AfterARestartTheVaryMarkerIsLearntAgainAndOldVariantsAreFound) {
  TierSetup s;
  s.admission = conf::SsdAdmission::kFill;
  ASSERT_NO_FATAL_FAILURE(start(s));
  const CacheKey url = key(8);
  using Fields = std::vector<std::pair<std::string, std::string>>;
  const Fields origin0 = {{"Origin", "https://0.example"}};
  const Fields origin1 = {{"Origin", "https://1.example"}};
  auto fillVariant = [&](Cache& cache, const Fields& origin, const std::string& body) {
    const FieldLineList fields(origin);
    LookupResult r = cache.lookup(url, true, &fields);
    EXPECT_EQ(r.kind, Kind::kMiss);
    if (!r.fill) return CacheKey{};
    auto h = head200(body.size());
    h->headers.emplace_back("Vary", "Origin");
    h->buildWire();
    r.fill.publishHead(h, freshFor(clock_, 3600s), true, true, &fields);
    r.fill.append(reinterpret_cast<const uint8_t*>(body.data()), body.size());
    EXPECT_TRUE(r.fill.finish());
    return r.object->key();
  };
  fillVariant(*cache_, origin0, bodyFor(80));
  const CacheKey v1 = fillVariant(*cache_, origin1, bodyFor(81));
  ASSERT_TRUE(store_->flush().isOk());
  ASSERT_TRUE(store_->contains(v1));

  conf::RamCacheConfig ram;
  ram.size_bytes = kRamBytes;
  ram.max_object_bytes = 1 << 20;
  Cache restarted(ram, clock_);
  restarted.attachSsd(store_.get(), s.admission);
  fillVariant(restarted, origin0, bodyFor(90));  // a miss under the URL's key: learns the marker
  const FieldLineList fields1(origin1);
  LookupResult r = restarted.lookup(url, true, &fields1);
  ASSERT_EQ(r.kind, Kind::kSsd);  // the variant stored before the restart
  EXPECT_EQ(r.key, v1);
  ObjectRef object = r.object;
  bool missed = false;
  restarted.readFromSsd(std::move(r.fill), *engine_, [&](FillWriter) { missed = true; });
  ASSERT_TRUE(pollUntil([&] { return object->isComplete() || missed; }));
  EXPECT_FALSE(missed);
  EXPECT_EQ(readAll(object->body()), bodyFor(81));
  EXPECT_TRUE(restarted.purge(url));
  EXPECT_FALSE(store_->contains(v1));
}

TEST_F(CacheSsd, PurgeWhileTheSsdWriteIsQueuedDoesNotResurrectTheObject) {
  auto gate = std::make_shared<WriteGate>();
  TierSetup s;
  s.observers.write = [gate](std::chrono::nanoseconds) { gate->onWrite(); };
  ASSERT_NO_FATAL_FAILURE(start(s));
  spillToSsd(2);  // region 0 written while the gate is open
  // Hold the writer in the device write of the next region, so that the next admission waits
  // in the queue.
  gate->close();
  ASSERT_TRUE(store_->insert(key(3), head200(kBody), freshFor(clock_, 3600s), bodyOf(bodyFor(3))));
  std::thread flusher([&] { EXPECT_TRUE(store_->flush().isOk()); });
  const bool entered = gate->waitEntered();
  if (entered) {
    ObjectRef object = fillFromOrigin(key(1), bodyFor(1), true);
    EXPECT_TRUE(evict(object));
    EXPECT_EQ(cache_->stats().ssd_admissions, 2u);  // queued behind the blocked write
    EXPECT_TRUE(cache_->purge(key(1)));
  }
  gate->open();
  flusher.join();
  ASSERT_TRUE(entered);
  ASSERT_TRUE(store_->flush().isOk());
  EXPECT_FALSE(store_->contains(key(1))) << "a purged object came back from the SSD tier";
  EXPECT_EQ(cache_->lookup(key(1), true).kind, Kind::kMiss);
  EXPECT_TRUE(store_->contains(key(2)));
  EXPECT_TRUE(store_->contains(key(3)));
}

TEST_F(CacheSsd, AnObjectEvictedButStillQueuedForTheSsdIsTakenBackAsAHit) {
  auto gate = std::make_shared<WriteGate>();
  TierSetup s;
  s.observers.write = [gate](std::chrono::nanoseconds) { gate->onWrite(); };
  ASSERT_NO_FATAL_FAILURE(start(s));
  spillToSsd(2);
  gate->close();  // the writer blocks in its next device write; admissions wait in the queue
  ASSERT_TRUE(store_->insert(key(3), head200(kBody), freshFor(clock_, 3600s), bodyOf(bodyFor(3))));
  std::thread flusher([&] { EXPECT_TRUE(store_->flush().isOk()); });
  const bool entered = gate->waitEntered();
  LookupResult again;
  ObjectRef object;
  if (entered) {
    object = fillFromOrigin(key(1), bodyFor(1), true);
    EXPECT_TRUE(evict(object));
    EXPECT_FALSE(store_->contains(key(1)));  // not indexed yet: only queued
    again = cache_->lookup(key(1), true);
  }
  gate->open();
  flusher.join();
  ASSERT_TRUE(entered);
  // Not a miss (no origin fetch in the window between eviction and the SSD write): the very
  // object, complete, back in RAM.
  EXPECT_EQ(again.kind, Kind::kHit);
  EXPECT_EQ(again.object.get(), object.get());
  EXPECT_FALSE(again.fill);
  EXPECT_EQ(cache_->lookup(key(1), true).kind, Kind::kHit);
  EXPECT_EQ(readAll(again.object->body()), bodyFor(1));
  ASSERT_TRUE(store_->flush().isOk());
  EXPECT_TRUE(store_->contains(key(1)));  // and its SSD write went ahead
}

TEST_F(CacheSsd, IdleSyncPutsTheOpenRegionOnTheDeviceWithoutAFlush) {
  TierSetup s;
  s.admission = conf::SsdAdmission::kFill;
  s.sync_interval = 50ms;
  ASSERT_NO_FATAL_FAILURE(start(s));
  fillFromOrigin(key(1), bodyFor(1), true);
  ASSERT_TRUE(waitUntil([&] { return store_->stats().region_syncs >= 1; }));
  EXPECT_EQ(store_->stats().regions_written, 0u);  // the region stays open
  {
    // What a crash now would leave: the device as it is, before the store is closed.
    std::unique_ptr<SsdStore> copy = openCopy(deviceBytes());
    ASSERT_TRUE(copy);
    EXPECT_EQ(copy->stats().rebuilt_objects, 1u);
    auto engine = makeThreadPoolEngine(copy->device(), 1);
    ASSERT_TRUE(engine.isOk());
    auto hit = copy->readSync(key(1), **engine);
    ASSERT_TRUE(hit.isOk()) << hit.status().toString();
    EXPECT_EQ(readAll(*hit->body), bodyFor(1));
  }
  // More objects in the same open region: synced again, the whole used part each time.
  fillFromOrigin(key(2), bodyFor(2), true);
  ASSERT_TRUE(waitUntil([&] { return store_->stats().region_syncs >= 2; }));
  std::unique_ptr<SsdStore> copy = openCopy(deviceBytes());
  ASSERT_TRUE(copy);
  EXPECT_EQ(copy->stats().rebuilt_objects, 2u);
  EXPECT_TRUE(copy->contains(key(1)));
  EXPECT_TRUE(copy->contains(key(2)));
  EXPECT_EQ(store_->stats().write_errors, 0u);
}

TEST_F(CacheSsd, WithoutIdleSyncTheOpenRegionIsNotOnTheDevice) {
  // The control for the test above: the same steps with sync_interval = 0.
  TierSetup s;
  s.admission = conf::SsdAdmission::kFill;
  ASSERT_NO_FATAL_FAILURE(start(s));
  fillFromOrigin(key(1), bodyFor(1), true);
  ASSERT_TRUE(waitUntil([&] { return store_->stats().objects_written >= 1; }));
  EXPECT_TRUE(store_->contains(key(1)));
  std::unique_ptr<SsdStore> copy = openCopy(deviceBytes());
  ASSERT_TRUE(copy);
  EXPECT_EQ(copy->stats().rebuilt_objects, 0u);
  EXPECT_EQ(store_->stats().region_syncs, 0u);
}

}  // namespace
}  // namespace streamedge::cache
