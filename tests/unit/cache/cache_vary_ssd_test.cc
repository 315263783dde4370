// Vary markers across a restart: the RAM tier over a store in a real file (FileDevice, the
// thread-pool I/O engine), closed and opened again. A variant written before the restart is
// found through the marker the rebuild makes; a purge of its URL then removes it from both tiers
// so that a lookup misses and a fresh reopen does not bring it back — also when the purge comes
// before the index has the markers, and with a background rebuild. Variants that leave the SSD
// (reclaim) leave their marker too.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cache/cache.h"
#include "cache/ssd_device.h"
#include "cache/ssd_io_engine.h"
#include "cache/ssd_store.h"
#include "tests/unit/cache/ssd_test_util.h"

namespace streamedge::cache {
namespace {

using Kind = LookupResult::Kind;
using Fields = std::vector<std::pair<std::string, std::string>>;
using namespace std::chrono_literals;

constexpr uint64_t kRegion = 16 * 1024;
constexpr uint64_t kStoreBytes = 256 * 1024;  // 16 regions

const CacheKey kUrl = makeKey("v", "/cors/seg_7.ts", "");

Fields originOf(const std::string& host) { return {{"Origin", "https://" + host}}; }

StoreKey testKey() {
  StoreKey k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(0x24 + i);
  return k;
}

std::string readAll(const Body& body) {
  std::string out;
  const uint8_t* data = nullptr;
  for (uint64_t pos = 0; out.size() < (1u << 20);) {
    const size_t n = body.peek(pos, &data);
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(data), n);
    pos += n;
  }
  return out;
}

class CacheVarySsd : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }
  void TearDown() override { close(); }

  // Opens the store on the file (rebuilding its index) and a new RAM tier over it.
  // `background`: the rebuild runs on the writer thread; `gate`, if set, holds it before the
  // index is filled until released.
  void open(bool background = false, std::function<void()> gate = nullptr) {
    close();
    FileDeviceOptions fo;
    fo.path = dir_.file("store");
    fo.size_bytes = kStoreBytes;
    fo.log = nullptr;
    auto device = FileDevice::open(fo);
    ASSERT_TRUE(device.isOk()) << device.status().toString();
    SsdStoreOptions o;
    o.region_bytes = kRegion;
    o.encrypt = true;
    o.key = testKey();
    o.writer_backend = conf::IoBackend::kThreads;
    o.sync_interval = 0ms;
    o.background_rebuild = background;
    o.before_rebuild_apply = std::move(gate);
    o.checkpoint_path = checkpoint_;
    o.checkpoint_interval = 0ms;
    o.clock = &clock_;
    o.log = nullptr;
    auto store = SsdStore::open(std::move(*device), std::move(o));
    ASSERT_TRUE(store.isOk()) << store.status().toString();
    store_ = std::move(*store);
    auto engine = makeThreadPoolEngine(store_->device(), 1);
    ASSERT_TRUE(engine.isOk());
    engine_ = std::move(*engine);
    if (attach_) attachCache();
  }

  void attachCache() {
    conf::RamCacheConfig ram;
    ram.size_bytes = 1 << 20;
    ram.max_object_bytes = 1 << 18;
    cache_ = std::make_unique<Cache>(ram, clock_);
    cache_->attachSsd(store_.get(), conf::SsdAdmission::kFill);
  }

  // A graceful stop: what was admitted is written.
  void close() {
    engine_.reset();
    cache_.reset();
    store_.reset();
  }

  // Stores the answer for `fields` (Vary: Origin) through a miss; returns the variant's key.
  CacheKey storeVariant(const Fields& fields, const std::string& body) {
    const FieldLineList list(fields);
    LookupResult r = cache_->lookup(kUrl, /*ssd_allowed=*/true, &list);
    EXPECT_EQ(r.kind, Kind::kMiss);
    if (!r.fill) return CacheKey{};
    auto h = std::make_shared<ResponseHead>();
    h->status = 200;
    h->reason = "OK";
    h->headers = {{"Content-Type", "video/mp2t"}, {"Vary", "Origin"}, {"ETag", "\"x\""}};
    h->content_length = body.size();
    h->buildWire();
    Freshness f;
    f.response_time = clock_.wallNow();
    f.lifetime = 3600s;
    f.explicit_lifetime = true;
    r.fill.publishHead(h, f, true, true, &list);
    r.fill.append(reinterpret_cast<const uint8_t*>(body.data()), body.size());
    EXPECT_TRUE(r.fill.finish());
    return r.object->key();
  }

  LookupResult lookup(const Fields& fields) {
    const FieldLineList list(fields);
    return cache_->lookup(kUrl, /*ssd_allowed=*/true, &list);
  }

  // Completes a kSsd lookup from the store; the body read, or "" when it went to the origin.
  std::string readThrough(LookupResult r) {
    EXPECT_EQ(r.kind, Kind::kSsd);
    if (r.kind != Kind::kSsd) return "";
    ObjectRef object = r.object;
    bool missed = false;
    cache_->readFromSsd(std::move(r.fill), *engine_, [&](FillWriter) { missed = true; });
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    for (int n = 0; n < 500 && !object->isComplete() && !missed &&
                    std::chrono::steady_clock::now() < deadline;
         ++n) {
      engine_->wait(10ms);
    }
    return missed || !object->isComplete() ? "" : readAll(object->body());
  }

  // Two variants of kUrl written to the file, then a graceful stop.
  void storeTwoVariantsAndStop() {
    attach_ = true;
    ASSERT_NO_FATAL_FAILURE(open());
    variant_a_ = storeVariant(originOf("a.example"), body_a_);
    variant_b_ = storeVariant(originOf("b.example"), body_b_);
    ASSERT_NE(variant_a_, variant_b_);
    ASSERT_TRUE(store_->flush().isOk());
    ASSERT_TRUE(store_->contains(variant_a_));
    ASSERT_TRUE(store_->contains(variant_b_));
    close();
  }

  testing::TempDir dir_;
  std::string checkpoint_;  // "" = none
  ManualClock clock_;
  bool attach_ = true;  // open() attaches a RAM tier
  CacheKey variant_a_, variant_b_;
  const std::string body_a_ = std::string(3000, 'a');
  const std::string body_b_ = std::string(3000, 'b');
  // Destroyed in reverse: engine, cache, store (see close()).
  std::unique_ptr<SsdStore> store_;
  std::unique_ptr<Cache> cache_;
  std::unique_ptr<IoEngine> engine_;
};

TEST_F(CacheVarySsd, AVariantWrittenBeforeARestartIsFoundAndAPurgeRemovesItForGood) {
  ASSERT_NO_FATAL_FAILURE(storeTwoVariantsAndStop());

  ASSERT_NO_FATAL_FAILURE(open());
  EXPECT_EQ(store_->stats().rebuilt_variants, 2u);
  EXPECT_EQ(cache_->stats().vary_urls, 1u);  // the marker, made from the rebuilt variants
  LookupResult b = lookup(originOf("b.example"));
  EXPECT_EQ(b.key, variant_b_);  // no origin fetch to learn the Vary first
  ASSERT_TRUE(b.vary);
  EXPECT_EQ(*b.vary, VaryNames{"origin"});
  EXPECT_EQ(readThrough(std::move(b)), body_b_);

  EXPECT_TRUE(cache_->purge(kUrl));
  EXPECT_FALSE(store_->contains(variant_a_));  // never looked up since the restart: gone too
  EXPECT_FALSE(store_->contains(variant_b_));
  EXPECT_EQ(cache_->stats().vary_urls, 0u);
  LookupResult a = lookup(originOf("a.example"));
  EXPECT_EQ(a.kind, Kind::kMiss);  // under the URL's own key: nothing left to find
  EXPECT_EQ(a.key, kUrl);
  a.fill.abort();
  ASSERT_TRUE(store_->flush().isOk());  // the tombstones on the device
  close();

  ASSERT_NO_FATAL_FAILURE(open());
  EXPECT_FALSE(store_->contains(variant_a_)) << "a purged variant came back after a restart";
  EXPECT_FALSE(store_->contains(variant_b_)) << "a purged variant came back after a restart";
  EXPECT_EQ(store_->stats().rebuilt_variants, 0u);
  EXPECT_EQ(cache_->stats().vary_urls, 0u);
  EXPECT_EQ(lookup(originOf("a.example")).kind, Kind::kMiss);
}

TEST_F(CacheVarySsd, VariantsComeBackFromTheIndexCheckpointWithTheirVaryNames) {
  checkpoint_ = dir_.file("store.checkpoint");
  ASSERT_NO_FATAL_FAILURE(storeTwoVariantsAndStop());

  ASSERT_NO_FATAL_FAILURE(open());
  EXPECT_TRUE(store_->stats().checkpoint_loaded);
  EXPECT_EQ(store_->stats().rebuilt_variants, 2u);
  EXPECT_EQ(cache_->stats().vary_urls, 1u);
  LookupResult b = lookup(originOf("b.example"));
  EXPECT_EQ(b.key, variant_b_);
  ASSERT_TRUE(b.vary);
  EXPECT_EQ(*b.vary, VaryNames{"origin"});
  EXPECT_EQ(readThrough(std::move(b)), body_b_);

  EXPECT_TRUE(cache_->purge(kUrl));
  ASSERT_TRUE(store_->flush().isOk());
  close();
  ASSERT_NO_FATAL_FAILURE(open());
  EXPECT_TRUE(store_->stats().checkpoint_loaded);
  EXPECT_FALSE(store_->contains(variant_a_)) << "a purged variant came back from the checkpoint";
  EXPECT_FALSE(store_->contains(variant_b_)) << "a purged variant came back from the checkpoint";
  EXPECT_EQ(cache_->stats().vary_urls, 0u);
}

TEST_F(CacheVarySsd, APurgeBeforeTheIndexHasTheMarkersRemovesTheVariantsToo) {
  ASSERT_NO_FATAL_FAILURE(storeTwoVariantsAndStop());
  attach_ = false;
  ASSERT_NO_FATAL_FAILURE(open());  // rebuilt, no RAM tier to hand the variants to yet
  ASSERT_TRUE(store_->contains(variant_a_));
  EXPECT_TRUE(store_->remove(kUrl));  // what Cache::purge asks the store first
  EXPECT_FALSE(store_->contains(variant_a_));
  EXPECT_FALSE(store_->contains(variant_b_));
  attachCache();
  EXPECT_EQ(cache_->stats().vary_urls, 0u);
  ASSERT_TRUE(store_->flush().isOk());
  close();
  attach_ = true;
  ASSERT_NO_FATAL_FAILURE(open());
  EXPECT_FALSE(store_->contains(variant_a_));
  EXPECT_FALSE(store_->contains(variant_b_));
  EXPECT_EQ(cache_->stats().vary_urls, 0u);
}

TEST_F(CacheVarySsd, ABackgroundRebuildHandsTheMarkersOverWhenItIsDone) {
  ASSERT_NO_FATAL_FAILURE(storeTwoVariantsAndStop());
  // The rebuild waits before filling the index until the RAM tier is attached.
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  auto gate = [&] {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, 5s, [&] { return release; });
  };
  ASSERT_NO_FATAL_FAILURE(open(/*background=*/true, gate));
  EXPECT_EQ(cache_->stats().vary_urls, 0u);  // not rebuilt yet: misses, never wrong answers
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!store_->ready() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(2ms);
  }
  ASSERT_TRUE(store_->ready());
  EXPECT_EQ(cache_->stats().vary_urls, 1u);
  EXPECT_EQ(readThrough(lookup(originOf("a.example"))), body_a_);
  EXPECT_TRUE(cache_->purge(kUrl));
  EXPECT_FALSE(store_->contains(variant_b_));
}

TEST_F(CacheVarySsd, WhileAnsweringFromTheCheckpointVariantsAreFoundAndAPurgeRemovesThem) {
  checkpoint_ = dir_.file("store.checkpoint");
  ASSERT_NO_FATAL_FAILURE(storeTwoVariantsAndStop());
  // The rebuild is held once lookups are answered from the checkpoint, before its entries go
  // into the index: the markers are handed over already.
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  auto gate = [&] {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, 5s, [&] { return release; });
  };
  ASSERT_NO_FATAL_FAILURE(open(/*background=*/true, gate));
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!store_->stats().serving_from_checkpoint && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(2ms);
  }
  ASSERT_TRUE(store_->stats().serving_from_checkpoint);
  EXPECT_FALSE(store_->ready());
  EXPECT_EQ(cache_->stats().vary_urls, 1u);
  LookupResult b = lookup(originOf("b.example"));
  EXPECT_EQ(b.key, variant_b_);  // no origin fetch to learn the Vary first
  EXPECT_EQ(readThrough(std::move(b)), body_b_);
  EXPECT_TRUE(cache_->purge(kUrl));
  EXPECT_FALSE(store_->contains(variant_a_));
  EXPECT_FALSE(store_->contains(variant_b_));
  EXPECT_EQ(lookup(originOf("a.example")).kind, Kind::kMiss);
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  while (!store_->ready() && std::chrono::steady_clock::now() < deadline + 5s) {
    std::this_thread::sleep_for(2ms);
  }
  ASSERT_TRUE(store_->ready());
  EXPECT_FALSE(store_->contains(variant_a_)) << "a purged variant came into the index";
  EXPECT_FALSE(store_->contains(variant_b_)) << "a purged variant came into the index";
  EXPECT_EQ(cache_->stats().vary_urls, 0u);
}

TEST_F(CacheVarySsd, AVariantReclaimedFromTheSsdLeavesItsMarker) {
  ASSERT_NO_FATAL_FAILURE(storeTwoVariantsAndStop());
  ASSERT_NO_FATAL_FAILURE(open());
  ASSERT_EQ(cache_->stats().vary_urls, 1u);
  // Other objects fill the ring until the variants' region is reused.
  const std::string filler(3000, 'f');
  for (int i = 0; i < 120 && (store_->contains(variant_a_) || store_->contains(variant_b_)); ++i) {
    auto h = std::make_shared<ResponseHead>();
    h->status = 200;
    h->content_length = filler.size();
    h->buildWire();
    auto body = Ref<Body>::make(std::optional<uint64_t>(filler.size()));
    body->append(reinterpret_cast<const uint8_t*>(filler.data()), filler.size());
    body->freeze();
    Freshness f;
    f.response_time = clock_.wallNow();
    f.lifetime = 3600s;
    ASSERT_TRUE(store_->insert(makeKey("v", "/filler/" + std::to_string(i), ""), h, f, body));
    if (i % 4 == 3) {
      ASSERT_TRUE(store_->flush().isOk());
    }
  }
  ASSERT_TRUE(store_->flush().isOk());
  ASSERT_FALSE(store_->contains(variant_a_));
  ASSERT_FALSE(store_->contains(variant_b_));
  EXPECT_EQ(cache_->stats().vary_urls, 0u);  // no variant left anywhere: the marker is freed
  EXPECT_EQ(cache_->stats().vary_marker_bytes, 0u);
  LookupResult r = lookup(originOf("a.example"));
  EXPECT_EQ(r.kind, Kind::kMiss);
  EXPECT_EQ(r.key, kUrl);
}

}  // namespace
}  // namespace streamedge::cache
