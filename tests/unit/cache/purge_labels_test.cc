// Purge labels and purges by host, prefix and surrogate key: Surrogate-Key / Cache-Tag become one
// edge-only field that never reaches the wire; a selector matches exactly the objects it names;
// Cache::purgeMatching removes (or, soft, marks stale) exactly those, in RAM and on the SSD tier
// (also objects only on the SSD, and after a reopen from the index checkpoint); a soft purge
// makes the next lookup a revalidation; and how long a scan of many objects takes.
#include "cache/purge_labels.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

#include "cache/cache.h"
#include "cache/ssd_device.h"
#include "cache/ssd_io_engine.h"
#include "cache/ssd_store.h"

namespace streamedge::cache {
namespace {

using Kind = LookupResult::Kind;
using namespace std::chrono_literals;
using Fields = std::vector<std::pair<std::string, std::string>>;

TEST(PurgeLabels, SurrogateKeyAndCacheTagBecomeOneEdgeOnlyFieldNeverOnTheWire) {
  Fields fields = {{"Content-Type", "video/mp2t"},
                   {"Surrogate-Key", "show-42  season-3\tep-7"},
                   {"cache-tag", "ep-7,tenant-a, live"},
                   {"ETag", "\"x\""}};
  internSurrogateKeys(fields);
  ResponseHead head;
  head.status = 200;
  head.headers = fields;
  addPurgeLabels(head.headers, "tv", "/live/ep7/seg1.ts");
  head.buildWire();
  EXPECT_EQ(head.wire, "Content-Type: video/mp2t\r\nETag: \"x\"\r\n");
  const PurgeLabels labels = purgeLabelsOf(head);
  EXPECT_EQ(labels.vhost, "tv");
  EXPECT_EQ(labels.path, "/live/ep7/seg1.ts");
  EXPECT_EQ(labels.tags, "show-42 season-3 ep-7 tenant-a live");
  // A 304's keys are interned the same way (they then replace the stored ones).
  Fields none = {{"Content-Type", "a"}};
  internSurrogateKeys(none);
  EXPECT_EQ(none.size(), 1u) << "nothing added when the origin sent no keys";
}

TEST(PurgeLabels, SurrogateKeyListsAreBounded) {
  std::string many;
  for (int i = 0; i < 100; ++i) many += "k" + std::to_string(i) + " ";
  many += std::string(300, 'x');  // too long: dropped
  Fields fields = {{"Surrogate-Key", many}};
  internSurrogateKeys(fields);
  ASSERT_EQ(fields.size(), 1u);
  size_t keys = 1;
  for (char c : fields[0].second) keys += c == ' ';
  EXPECT_EQ(keys, kMaxSurrogateKeys);
  EXPECT_EQ(fields[0].second.find('x'), std::string::npos);
}

TEST(PurgeLabels, SelectorsMatchExactlyWhatTheyName) {
  PurgeSelector host{PurgeSelector::Kind::kHost, "tv", "", ""};
  EXPECT_TRUE(host.matches("tv", "/a", ""));
  EXPECT_FALSE(host.matches("tv2", "/a", ""));
  EXPECT_FALSE(host.matches("", "", "")) << "an object without labels is never selected";

  PurgeSelector prefix{PurgeSelector::Kind::kPrefix, "tv", "/live/", ""};
  EXPECT_TRUE(prefix.matches("tv", "/live/a.ts", ""));
  EXPECT_TRUE(prefix.matches("tv", "/live/", ""));
  EXPECT_FALSE(prefix.matches("tv", "/live", ""));
  EXPECT_FALSE(prefix.matches("tv", "/vod/live/a.ts", ""));
  EXPECT_FALSE(prefix.matches("radio", "/live/a.ts", "")) << "another vhost's objects stay";

  PurgeSelector tag{PurgeSelector::Kind::kTag, "", "", "ep-7"};
  EXPECT_TRUE(tag.matches("tv", "/x", "show ep-7"));
  EXPECT_TRUE(tag.matches("radio", "/x", "ep-7"));
  EXPECT_FALSE(tag.matches("tv", "/x", "ep-70 xep-7 ep-"));
  EXPECT_FALSE(tag.matches("tv", "/x", ""));
  PurgeSelector scoped{PurgeSelector::Kind::kTag, "tv", "", "ep-7"};
  EXPECT_TRUE(scoped.matches("tv", "/x", "ep-7"));
  EXPECT_FALSE(scoped.matches("radio", "/x", "ep-7"));
}

// --- the cache ------------------------------------------------------------------------------

conf::RamCacheConfig ramConfig(uint64_t size) {
  conf::RamCacheConfig c;
  c.size_bytes = size;
  c.max_object_bytes = 1 << 20;
  return c;
}

std::shared_ptr<ResponseHead> labelledHead(std::string_view vhost, std::string_view path,
                                           std::string_view tags, uint64_t length) {
  auto h = std::make_shared<ResponseHead>();
  h->status = 200;
  h->reason = "OK";
  h->headers = {{"Content-Type", "video/mp2t"}, {"ETag", "\"v1\""}};
  if (!tags.empty()) h->headers.emplace_back("Surrogate-Key", std::string(tags));
  internSurrogateKeys(h->headers);
  addPurgeLabels(h->headers, vhost, path);
  h->content_length = length;
  h->buildWire();
  return h;
}

Freshness freshFor(const Clock& clock) {
  Freshness f;
  f.response_time = clock.wallNow();
  f.lifetime = 3600s;
  f.explicit_lifetime = true;
  return f;
}

struct Obj {
  std::string vhost, path, tags;
  CacheKey key() const { return makeKey(vhost, path, ""); }
};

// Fills `o` as an origin would; true when it is now a stored, complete object.
bool fill(Cache& cache, const Clock& clock, const Obj& o, bool ssd = false) {
  LookupResult r = cache.lookup(o.key(), ssd);
  if (r.kind != Kind::kMiss || !r.fill) return false;
  const std::string body = "body of " + o.vhost + o.path;
  r.fill.publishHead(labelledHead(o.vhost, o.path, o.tags, body.size()), freshFor(clock), true,
                     true);
  r.fill.append(reinterpret_cast<const uint8_t*>(body.data()), body.size());
  return r.fill.finish();
}

const std::vector<Obj> kObjects = {
    {"tv", "/live/ch1/seg1.ts", "ch1 live"},   // 0
    {"tv", "/live/ch1/seg2.ts", "ch1 live"},   // 1
    {"tv", "/live/ch2/seg1.ts", "ch2 live"},   // 2
    {"tv", "/vod/film/seg1.ts", "film"},       // 3
    {"radio", "/live/ch1/seg1.ts", "ch1"},     // 4: same path and tag, another vhost
};

// Which of kObjects are still hits.
std::string hits(Cache& cache) {
  std::string out;
  for (const Obj& o : kObjects) out += cache.lookup(o.key()).kind == Kind::kHit ? 'H' : '-';
  return out;
}

TEST(CachePurge, PrefixTagAndHostPurgesRemoveExactlyTheirObjects) {
  ManualClock clock;
  {
    Cache cache(ramConfig(1 << 20), clock);
    for (const Obj& o : kObjects) ASSERT_TRUE(fill(cache, clock, o));
    ASSERT_EQ(hits(cache), "HHHHH");
    EXPECT_EQ(cache.purgeMatching({PurgeSelector::Kind::kPrefix, "tv", "/live/ch1/", ""}, false), 2u);
    EXPECT_EQ(hits(cache), "--HHH");
  }
  {
    Cache cache(ramConfig(1 << 20), clock);
    for (const Obj& o : kObjects) ASSERT_TRUE(fill(cache, clock, o));
    uint64_t scanned = 0;
    EXPECT_EQ(cache.purgeMatching({PurgeSelector::Kind::kTag, "", "", "ch1"}, false, &scanned), 3u);
    EXPECT_EQ(scanned, 5u);
    EXPECT_EQ(hits(cache), "--HH-");
    EXPECT_EQ(cache.purgeMatching({PurgeSelector::Kind::kTag, "", "", "ch1"}, false), 0u)
        << "nothing left to purge";
  }
  {
    Cache cache(ramConfig(1 << 20), clock);
    for (const Obj& o : kObjects) ASSERT_TRUE(fill(cache, clock, o));
    EXPECT_EQ(cache.purgeMatching({PurgeSelector::Kind::kTag, "radio", "", "ch1"}, false), 1u);
    EXPECT_EQ(hits(cache), "HHHH-");
    EXPECT_EQ(cache.purgeMatching({PurgeSelector::Kind::kHost, "tv", "", ""}, false), 4u);
    EXPECT_EQ(hits(cache), "-----");
    EXPECT_EQ(cache.stats().objects, 0u);
  }
}

TEST(CachePurge, AFillWhoseHeadArrivedIsPurgedAndNotKept) {
  ManualClock clock;
  Cache cache(ramConfig(1 << 20), clock);
  const Obj o = kObjects[0];
  LookupResult r = cache.lookup(o.key());
  ASSERT_EQ(r.kind, Kind::kMiss);
  r.fill.publishHead(labelledHead(o.vhost, o.path, o.tags, 3), freshFor(clock), true, true);
  EXPECT_EQ(cache.purgeMatching({PurgeSelector::Kind::kHost, "tv", "", ""}, false), 1u);
  r.fill.append(reinterpret_cast<const uint8_t*>("abc"), 3);
  EXPECT_TRUE(r.fill.finish());
  EXPECT_EQ(cache.lookup(o.key()).kind, Kind::kMiss) << "a purged fill must not be kept";
}

TEST(CachePurge, SoftPurgeKeepsTheObjectButTheNextLookupRevalidatesIt) {
  ManualClock clock;
  Cache cache(ramConfig(1 << 20), clock);
  for (const Obj& o : kObjects) ASSERT_TRUE(fill(cache, clock, o));
  EXPECT_EQ(cache.purgeMatching({PurgeSelector::Kind::kPrefix, "tv", "/live/", ""}, true), 3u);
  EXPECT_EQ(cache.stats().objects, 5u) << "a soft purge removes nothing";
  LookupResult r = cache.lookup(kObjects[0].key());
  ASSERT_EQ(r.kind, Kind::kStale);
  ASSERT_TRUE(r.fill) << "the caller revalidates";
  EXPECT_EQ(r.fill.stale().get(), r.object.get());
  EXPECT_EQ(cache.lookup(kObjects[3].key()).kind, Kind::kHit);
  EXPECT_EQ(cache.lookup(kObjects[4].key()).kind, Kind::kHit);
  // URL soft purge: one object marked.
  EXPECT_EQ(cache.invalidate(kObjects[3].key()), 1u);
  EXPECT_EQ(cache.lookup(kObjects[3].key()).kind, Kind::kStale);
  EXPECT_EQ(cache.invalidate(makeKey("tv", "/nothing", "")), 0u);
}

TEST(CachePurge, PurgeObjectsCountsWhatItRemoved) {
  ManualClock clock;
  Cache cache(ramConfig(1 << 20), clock);
  ASSERT_TRUE(fill(cache, clock, kObjects[0]));
  EXPECT_EQ(cache.purgeObjects(kObjects[0].key()), 1u);
  EXPECT_EQ(cache.purgeObjects(kObjects[0].key()), 0u);
  EXPECT_EQ(cache.lookup(kObjects[0].key()).kind, Kind::kMiss);
}

// How long a host/prefix scan takes: every slot of the 64 shards is looked at under its lock.
// 100k objects here (a unit test's memory); the cost is linear in the objects held.
TEST(CachePurge, ScanOfManyObjectsIsBoundedAndMeasured) {
  ManualClock clock;
  constexpr int kCount = 100'000;
  Cache cache(ramConfig(1ull << 30), clock);
  for (int i = 0; i < kCount; ++i) {
    const Obj o{i % 10 == 0 ? "radio" : "tv", "/vod/title" + std::to_string(i % 1000) + "/seg" +
                                                 std::to_string(i) + ".ts",
                "title" + std::to_string(i % 1000)};
    ASSERT_TRUE(fill(cache, clock, o)) << i;
  }
  const auto started = std::chrono::steady_clock::now();
  uint64_t scanned = 0;
  // Matches nothing: the pure scan cost.
  EXPECT_EQ(cache.purgeMatching({PurgeSelector::Kind::kPrefix, "tv", "/live/", ""}, false, &scanned), 0u);
  const double scan_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(scanned, static_cast<uint64_t>(kCount));
  const auto t2 = std::chrono::steady_clock::now();
  EXPECT_EQ(cache.purgeMatching({PurgeSelector::Kind::kHost, "radio", "", ""}, false), kCount / 10u);
  const double purge_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t2).count();
  EXPECT_EQ(cache.purgeMatching({PurgeSelector::Kind::kTag, "", "", "title7"}, false), 100u);
  std::printf("[ measured ] scan of %d objects: %.1f ms; host purge removing %d: %.1f ms\n",
              kCount, scan_ms, kCount / 10, purge_ms);
  RecordProperty("scan_ms_per_100k", std::to_string(scan_ms));
}

// --- with the SSD tier ------------------------------------------------------------------------

class CachePurgeSsd : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/streamedge-purge-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    close();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  void open() {
    FileDeviceOptions d;
    d.path = dir_ + "/store";
    d.size_bytes = 1 << 20;
    d.direct_io = false;
    d.log = [](std::string_view) {};
    auto device = FileDevice::open(d);
    ASSERT_TRUE(device.isOk()) << device.status().toString();
    SsdStoreOptions o;
    o.region_bytes = 64 * 1024;
    o.encrypt = true;
    StoreKey k;
    for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(i * 3 + 1);
    o.key = k;
    o.sync_interval = 0ms;
    o.clock = &clock_;
    o.checkpoint_path = dir_ + "/checkpoint";
    o.log = [](std::string_view) {};
    auto store = SsdStore::open(std::move(*device), o);
    ASSERT_TRUE(store.isOk()) << store.status().toString();
    store_ = std::move(*store);
    // A RAM tier far too small for the objects: with admission "fill" each is written to the
    // SSD at once, and most live only there.
    cache_ = std::make_unique<Cache>(ramConfig(4096), clock_);
    cache_->attachSsd(store_.get(), conf::SsdAdmission::kFill);
  }
  void close() {
    if (cache_) cache_->detachSsd();
    cache_.reset();
    store_.reset();
  }
  std::string onSsd() {
    std::string out;
    for (const Obj& o : kObjects) out += store_->contains(o.key()) ? 'S' : '-';
    return out;
  }

  ManualClock clock_;
  std::string dir_;
  std::unique_ptr<SsdStore> store_;
  std::unique_ptr<Cache> cache_;
};

TEST_F(CachePurgeSsd, ObjectsOnlyOnTheSsdAreFoundAfterARestartFromTheCheckpointAndStayGone) {
  ASSERT_NO_FATAL_FAILURE(open());
  for (const Obj& o : kObjects) ASSERT_TRUE(fill(*cache_, clock_, o, /*ssd=*/true));
  ASSERT_TRUE(store_->flush().isOk());
  ASSERT_EQ(onSsd(), "SSSSS");
  close();  // writes the index checkpoint
  ASSERT_TRUE(std::filesystem::exists(dir_ + "/checkpoint"));
  ASSERT_NO_FATAL_FAILURE(open());
  EXPECT_TRUE(store_->stats().checkpoint_loaded);
  ASSERT_EQ(onSsd(), "SSSSS");
  EXPECT_EQ(cache_->stats().objects, 0u) << "nothing in RAM after a restart";
  EXPECT_EQ(cache_->purgeMatching({PurgeSelector::Kind::kTag, "", "", "ch1"}, false), 3u);
  EXPECT_EQ(onSsd(), "--SS-");
  ASSERT_TRUE(store_->flush().isOk());
  // Soft: marked stale, kept; the checkpoint keeps the mark.
  EXPECT_EQ(cache_->purgeMatching({PurgeSelector::Kind::kHost, "tv", "", ""}, true), 2u);
  EXPECT_EQ(onSsd(), "--SS-");
  ASSERT_TRUE(store_->find(kObjects[2].key()));
  EXPECT_EQ(store_->find(kObjects[2].key())->fresh_until, WallTime{});
  close();
  // Restarted by a full scan (no checkpoint, as after a crash): the tombstones keep the hard
  // purge.
  std::filesystem::remove(dir_ + "/checkpoint");
  ASSERT_NO_FATAL_FAILURE(open());
  EXPECT_FALSE(store_->stats().checkpoint_loaded);
  EXPECT_EQ(onSsd(), "--SS-") << "a purged object came back after a restart";
  EXPECT_EQ(cache_->purgeMatching({PurgeSelector::Kind::kPrefix, "tv", "/vod/", ""}, false), 1u)
      << "labels rebuilt by the scan";
  EXPECT_EQ(onSsd(), "--S--");
}

TEST_F(CachePurgeSsd, ASoftPurgedSsdCopyIsReadAsAStaleRevalidation) {
  ASSERT_NO_FATAL_FAILURE(open());
  const Obj& o = kObjects[3];
  ASSERT_TRUE(fill(*cache_, clock_, o, true));
  ASSERT_TRUE(store_->flush().isOk());
  close();
  ASSERT_NO_FATAL_FAILURE(open());  // only on the SSD now
  EXPECT_EQ(cache_->invalidate(o.key()), 1u);
  LookupResult r = cache_->lookup(o.key(), true);
  ASSERT_EQ(r.kind, Kind::kSsd) << "stale with validators: read to be revalidated";
  auto engine = makeThreadPoolEngine(store_->device(), 1);
  ASSERT_TRUE(engine.isOk());
  bool handed_back = false;
  bool had_stale = false;
  cache_->readFromSsd(std::move(r.fill), **engine, [&](FillWriter f) {
    handed_back = true;
    had_stale = static_cast<bool>(f.stale());
    if (f.stale()) {
      EXPECT_TRUE(f.stale()->invalidated());
    }
    f.abort();
  });
  for (int i = 0; i < 400 && !handed_back; ++i) (*engine)->wait(10ms);
  EXPECT_TRUE(handed_back) << "a soft-purged copy is never served as fresh";
  EXPECT_TRUE(had_stale) << "it comes back as the stale object of a revalidation";
  (*engine).reset();
}

}  // namespace
}  // namespace streamedge::cache
