// Retention ([[vhost]] retention, cache/retention.h): the RAM tier over a store in a real file
// (FileDevice, the thread-pool I/O engine), with a manual clock. An object past its vhost's
// limit is a miss at lookup, even when its freshness would let it be served stale, and leaves
// both tiers; the sweep removes objects nobody asks for, from RAM and from the SSD, also after
// a restart (with and without the index checkpoint) and never those of other vhosts; an SSD
// read that finds its copy past the limit sends the fill to the origin; removals are counted
// per vhost and tier.
#include "cache/retention.h"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cache/cache.h"
#include "cache/purge_labels.h"
#include "cache/ssd_device.h"
#include "cache/ssd_io_engine.h"
#include "cache/ssd_store.h"
#include "tests/unit/cache/ssd_test_util.h"

namespace streamedge::cache {
namespace {

using Kind = LookupResult::Kind;
using namespace std::chrono_literals;

constexpr uint64_t kRegion = 16 * 1024;
constexpr uint64_t kStoreBytes = 256 * 1024;  // 16 regions
constexpr conf::Millis kLimit = 10s;          // vhost "short"; vhost "long" has none

CacheKey keyOf(const std::string& vhost, int i) {
  return makeKey(vhost, "/seg/" + std::to_string(i) + ".ts", "");
}

StoreKey testKey() {
  StoreKey k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(0x51 + i);
  return k;
}

std::string bodyFor(const std::string& vhost, int i) {
  std::string b = "RETENTION#" + vhost + "#" + std::to_string(i) + "#";
  while (b.size() < 1500) b += static_cast<char>('a' + b.size() % 26);
  return b;
}

RetentionLimit limitOf(const std::string& vhost) {
  return {vhost == "short" ? kLimit : conf::Millis{0}, vhost};
}

uint64_t expiredCount(const Cache& cache, const std::string& vhost, bool ssd) {
  for (const RetentionExpiredCount& c : cache.retentionExpired()) {
    if (c.vhost == vhost) return ssd ? c.ssd : c.ram;
  }
  return 0;
}

class Retention : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }
  void TearDown() override { close(); }

  // Opens the store on the file (rebuilding its index) and a new RAM tier over it, with the
  // table {short: 10 s} set.
  void open() {
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
    conf::RamCacheConfig ram;
    ram.size_bytes = 1 << 20;
    ram.max_object_bytes = 1 << 18;
    cache_ = std::make_unique<Cache>(ram, clock_);
    cache_->attachSsd(store_.get(), conf::SsdAdmission::kFill);  // written at once
    auto table = std::make_shared<RetentionTable>();
    table->set("short", kLimit);
    cache_->setRetention(std::move(table));
  }

  void close() {
    engine_.reset();
    cache_.reset();
    store_.reset();
  }

  // Object `i` of `vhost` through a miss, as a fill labels it (:vhost, :path); lifetime 1 h,
  // stale-if-error 1 day.
  ObjectRef store(const std::string& vhost, int i, bool ssd_allowed = true,
                  conf::Seconds lifetime = 3600s) {
    LookupResult r = cache_->lookup(keyOf(vhost, i), ssd_allowed, nullptr, limitOf(vhost));
    EXPECT_EQ(r.kind, Kind::kMiss);
    if (!r.fill) return ObjectRef();
    const std::string body = bodyFor(vhost, i);
    std::vector<std::pair<std::string, std::string>> fields = {
        {"Content-Type", "video/mp2t"}, {"ETag", "\"e\""}};
    addPurgeLabels(fields, vhost, "/seg/" + std::to_string(i) + ".ts");
    auto h = std::make_shared<ResponseHead>();
    h->status = 200;
    h->reason = "OK";
    h->headers = std::move(fields);
    h->content_length = body.size();
    h->buildWire();
    Freshness f;
    f.response_time = clock_.wallNow();
    f.lifetime = lifetime;
    f.stale_if_error = 86400s;
    f.stale_while_revalidate = 86400s;
    f.explicit_lifetime = true;
    ObjectRef object = r.object;
    r.fill.publishHead(h, f, true, true);
    r.fill.append(reinterpret_cast<const uint8_t*>(body.data()), body.size());
    EXPECT_TRUE(r.fill.finish());
    return object;
  }

  LookupResult lookup(const std::string& vhost, int i, bool ssd_allowed = true) {
    return cache_->lookup(keyOf(vhost, i), ssd_allowed, nullptr, limitOf(vhost));
  }

  // Sweeps with a small budget until a step removes nothing twice in a row (at most 200 steps).
  size_t sweepAll() {
    size_t removed = 0;
    for (int step = 0, idle = 0; step < 200 && idle < 2 * 64; ++step) {
      const size_t n = cache_->sweepRetention(16);
      removed += n;
      idle = n == 0 ? idle + 1 : 0;
    }
    return removed;
  }

  // Completes a kSsd lookup from the store: the body read, or "" when it went to the origin.
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
    if (missed || !object->isComplete()) return "";
    std::string out;
    const uint8_t* data = nullptr;
    for (uint64_t pos = 0; out.size() < (1u << 20);) {
      const size_t n = object->body().peek(pos, &data);
      if (n == 0) break;
      out.append(reinterpret_cast<const char*>(data), n);
      pos += n;
    }
    return out;
  }

  testing::TempDir dir_;
  std::string checkpoint_;  // "" = none
  ManualClock clock_;
  std::unique_ptr<SsdStore> store_;
  std::unique_ptr<Cache> cache_;
  std::unique_ptr<IoEngine> engine_;
};

TEST(RetentionTable, LimitsByVhostNameFromTheConfig) {
  conf::Config config;
  config.vhosts.resize(3);
  config.vhosts[0].name = "a";
  config.vhosts[0].retention = 30s;
  config.vhosts[1].name = "b";
  config.vhosts[2].name = "c";
  config.vhosts[2].retention = 24h;
  const RetentionTable table(config);
  EXPECT_FALSE(table.empty());
  EXPECT_EQ(table.maxAgeOf("a"), conf::Millis(30s));
  EXPECT_EQ(table.maxAgeOf("b"), conf::Millis(0));
  EXPECT_EQ(table.maxAgeOf("c"), conf::Millis(24h));
  EXPECT_EQ(table.maxAgeOf("unknown"), conf::Millis(0));
  EXPECT_TRUE(RetentionTable(conf::Config{}).empty());
  const WallTime t0 = WallTime(1000s);
  EXPECT_FALSE(pastRetention(t0, 10s, t0 + 9999ms));
  EXPECT_TRUE(pastRetention(t0, 10s, t0 + 10s));
  EXPECT_FALSE(pastRetention(t0, conf::Millis(0), t0 + 1000h));  // no limit
}

TEST_F(Retention, RamObjectPastTheLimitIsAMissNotEvenStale) {
  ASSERT_NO_FATAL_FAILURE(open());
  // Lifetime 1 s, stale-while-revalidate and stale-if-error a day: without retention it would
  // be served stale for a day.
  ObjectRef old = store("short", 1, /*ssd_allowed=*/false, 1s);
  ASSERT_TRUE(old);
  clock_.advance(9s);
  LookupResult stale = lookup("short", 1, false);
  EXPECT_EQ(stale.kind, Kind::kStale);  // within the limit: served stale
  EXPECT_EQ(stale.object.get(), old.get());
  EXPECT_EQ(stale.fill.retention(), kLimit);
  EXPECT_FALSE(stale.fill.stalePastRetention(clock_.wallNow()));
  // Its revalidation fails and the stale copy would be the answer (stale-if-error): not once
  // the limit has passed meanwhile.
  clock_.advance(1s);
  EXPECT_TRUE(stale.fill.stalePastRetention(clock_.wallNow()));
  stale.fill.abort();
  stale = LookupResult{};

  LookupResult r = lookup("short", 1, false);
  EXPECT_EQ(r.kind, Kind::kMiss);
  EXPECT_NE(r.object.get(), old.get());
  EXPECT_FALSE(r.fill.stale());  // not even a revalidation of the old bytes
  EXPECT_EQ(expiredCount(*cache_, "short", false), 1u);
  EXPECT_EQ(old->evictionNode().queue, 0);  // out of the RAM tier's accounting
}

TEST_F(Retention, OtherVhostsAndLookupsWithoutALimitAreUntouched) {
  ASSERT_NO_FATAL_FAILURE(open());
  ObjectRef kept = store("long", 1, false);
  ObjectRef limited = store("short", 1, false);
  clock_.advance(11s);
  LookupResult r = lookup("long", 1, false);
  EXPECT_EQ(r.kind, Kind::kHit);
  EXPECT_EQ(r.object.get(), kept.get());
  EXPECT_EQ(lookup("short", 1, false).kind, Kind::kMiss);
  EXPECT_EQ(expiredCount(*cache_, "long", false), 0u);
  EXPECT_EQ(expiredCount(*cache_, "short", false), 1u);
}

TEST_F(Retention, SweepRemovesUnrequestedObjectsFromBothTiers) {
  ASSERT_NO_FATAL_FAILURE(open());
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(store("short", i));
    ASSERT_TRUE(store("long", i));
  }
  ASSERT_TRUE(store_->flush().isOk());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(store_->contains(keyOf("short", i))) << i;
  EXPECT_EQ(sweepAll(), 0u);  // nothing is past the limit yet
  clock_.advance(10s);
  // Each short object leaves RAM and the SSD: 40 removals.
  EXPECT_EQ(sweepAll(), 40u);
  EXPECT_EQ(expiredCount(*cache_, "short", false), 20u);
  EXPECT_EQ(expiredCount(*cache_, "short", true), 20u);
  EXPECT_EQ(expiredCount(*cache_, "long", false) + expiredCount(*cache_, "long", true), 0u);
  for (int i = 0; i < 20; ++i) {
    EXPECT_FALSE(store_->contains(keyOf("short", i))) << i;
    EXPECT_TRUE(store_->contains(keyOf("long", i))) << i;
    // Looked up without a limit: the sweep alone removed it, from both tiers.
    EXPECT_EQ(cache_->lookup(keyOf("short", i), true).kind, Kind::kMiss) << i;
    EXPECT_EQ(cache_->lookup(keyOf("long", i), true).kind, Kind::kHit) << i;
  }
  // And the tombstones hold after a restart.
  close();
  ASSERT_NO_FATAL_FAILURE(open());
  for (int i = 0; i < 20; ++i) {
    EXPECT_FALSE(store_->contains(keyOf("short", i))) << i;
    EXPECT_TRUE(store_->contains(keyOf("long", i))) << i;
  }
}

TEST_F(Retention, ARemovedLimitStopsTheSweep) {
  ASSERT_NO_FATAL_FAILURE(open());
  ASSERT_TRUE(store("short", 1));
  clock_.advance(11s);
  cache_->setRetention(std::make_shared<RetentionTable>());  // a reload dropped the limit
  EXPECT_EQ(sweepAll(), 0u);
  EXPECT_EQ(cache_->lookup(keyOf("short", 1), true).kind, Kind::kHit);
  cache_->setRetention(nullptr);
  EXPECT_EQ(cache_->sweepRetention(1000), 0u);
}

class RetentionRestart : public Retention, public ::testing::WithParamInterface<bool> {};

// The SSD copy's response time survives a restart: in the head blob (scan) and in the index
// checkpoint (version 3).
TEST_P(RetentionRestart, SsdCopiesExpireAfterARestart) {
  if (GetParam()) checkpoint_ = dir_.file("store.checkpoint");
  ASSERT_NO_FATAL_FAILURE(open());
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(store("short", i));
    ASSERT_TRUE(store("long", i));
  }
  ASSERT_TRUE(store_->flush().isOk());
  close();  // graceful: writes the checkpoint when there is one

  clock_.advance(5s);
  ASSERT_NO_FATAL_FAILURE(open());
  EXPECT_EQ(store_->stats().checkpoint_loaded, GetParam());
  ASSERT_TRUE(store_->contains(keyOf("short", 0)));
  const std::optional<SsdEntryInfo> info = store_->find(keyOf("short", 0));
  ASSERT_TRUE(info);
  EXPECT_LE(clock_.wallNow() - info->stored_at, 6s);
  EXPECT_GE(clock_.wallNow() - info->stored_at, 5s);
  // Within the limit: read from the SSD, byte-exact.
  EXPECT_EQ(readThrough(lookup("short", 0)), bodyFor("short", 0));

  clock_.advance(5s);
  // Past it: a lookup does not read the copy (a miss) and tombstones it...
  LookupResult r = lookup("short", 1);
  EXPECT_EQ(r.kind, Kind::kMiss);
  EXPECT_FALSE(store_->contains(keyOf("short", 1)));
  EXPECT_EQ(expiredCount(*cache_, "short", true), 1u);
  r = LookupResult{};
  // ...and the sweep removes the rest (object 0 from RAM too, where its read put it).
  EXPECT_EQ(sweepAll(), 3u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_FALSE(store_->contains(keyOf("short", i))) << i;
    EXPECT_TRUE(store_->contains(keyOf("long", i))) << i;
  }
  close();
  ASSERT_NO_FATAL_FAILURE(open());
  for (int i = 0; i < 4; ++i) {
    EXPECT_FALSE(store_->contains(keyOf("short", i))) << i;
    EXPECT_TRUE(store_->contains(keyOf("long", i))) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Checkpoint, RetentionRestart, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? std::string("WithCheckpoint") : std::string("Scan");
                         });

TEST_F(Retention, AnSsdReadThatFindsItsCopyPastTheLimitGoesToTheOrigin) {
  ASSERT_NO_FATAL_FAILURE(open());
  ASSERT_TRUE(store("short", 1));
  ASSERT_TRUE(store_->flush().isOk());
  close();
  ASSERT_NO_FATAL_FAILURE(open());  // the object is only on the SSD now
  ASSERT_TRUE(store_->contains(keyOf("short", 1)));
  clock_.advance(9s);
  LookupResult r = lookup("short", 1);
  ASSERT_EQ(r.kind, Kind::kSsd);
  clock_.advance(2s);  // the limit passes while the read is under way
  EXPECT_EQ(readThrough(std::move(r)), "");
  EXPECT_FALSE(store_->contains(keyOf("short", 1)));
  EXPECT_EQ(expiredCount(*cache_, "short", true), 1u);
}

TEST_F(Retention, ObjectsPastTheLimitAreNotWrittenToTheSsd) {
  ASSERT_NO_FATAL_FAILURE(open());
  // Admission at eviction time: a RAM-only cache over the same store, with eviction admission.
  conf::RamCacheConfig ram;
  ram.size_bytes = 8 * 1024;  // about three objects
  ram.max_object_bytes = 1 << 18;
  cache_ = std::make_unique<Cache>(ram, clock_);
  cache_->attachSsd(store_.get(), conf::SsdAdmission::kEvict);
  auto table = std::make_shared<RetentionTable>();
  table->set("short", kLimit);
  cache_->setRetention(std::move(table));
  ASSERT_TRUE(store("short", 1));
  clock_.advance(11s);
  // Fresh objects of the other vhost push it out of RAM: it is dropped, not written.
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(store("long", i));
  ASSERT_GE(cache_->stats().evictions, 1u);
  ASSERT_TRUE(store_->flush().isOk());
  EXPECT_FALSE(store_->contains(keyOf("short", 1)));
  EXPECT_TRUE(store_->contains(keyOf("long", 0)));
}

}  // namespace
}  // namespace streamedge::cache
