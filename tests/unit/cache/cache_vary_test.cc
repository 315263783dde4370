// Vary in the cache index (RFC 9111 §4.1): variants of one URL kept apart under their own keys,
// the vary marker learnt from the first answer that says Vary, "Vary: *" never stored, the
// per-URL bound, purge of every variant, and fills that coalesced on another variant. Markers
// are bounded: freed when their last variant leaves the cache and no fill is in flight, and the
// least recently used ones dropped (with their variants) beyond max_vary_urls.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "cache/cache.h"

namespace streamedge::cache {
namespace {

using Kind = LookupResult::Kind;
using Fields = std::vector<std::pair<std::string, std::string>>;
using namespace std::chrono_literals;

conf::RamCacheConfig ramConfig(uint32_t max_variants = 16, uint64_t size_bytes = 1 << 20) {
  conf::RamCacheConfig c;
  c.size_bytes = size_bytes;
  c.max_object_bytes = std::min<uint64_t>(1 << 18, size_bytes);
  c.max_variants = max_variants;
  return c;
}

const CacheKey kUrl = makeKey("v", "/cors/seg_1.ts", "");

Fields originField(const std::string& origin) { return {{"Origin", origin}}; }

std::shared_ptr<ResponseHead> head(std::string_view vary, size_t length) {
  auto h = std::make_shared<ResponseHead>();
  h->status = 200;
  h->reason = "OK";
  h->headers = {{"Content-Type", "video/mp2t"}};
  if (!vary.empty()) h->headers.emplace_back("Vary", std::string(vary));
  h->content_length = length;
  h->buildWire();
  return h;
}

Freshness fresh(const Clock& clock) {
  Freshness f;
  f.response_time = clock.wallNow();
  f.lifetime = 60s;
  return f;
}

std::string bytesOf(const CacheObject& object) {
  const uint8_t* data = nullptr;
  const size_t n = object.body().peek(0, &data);
  return std::string(reinterpret_cast<const char*>(data), n);
}

LookupResult lookup(Cache& cache, const Fields& fields) {
  const FieldLineList list(fields);
  return cache.lookup(kUrl, false, &list);
}

// Completes `fill` with an answer that says `vary`, as a fill that sent `sent` would.
void complete(const ManualClock& clock, FillWriter& fill, std::string_view vary, const Fields& sent,
              const std::string& body) {
  const FieldLineList list(sent);
  fill.publishHead(head(vary, body.size()), fresh(clock), true, true, &list);
  fill.append(reinterpret_cast<const uint8_t*>(body.data()), body.size());
  ASSERT_TRUE(fill.finish());
}

// Stores the answer for `fields` through a miss: asserts the lookup was one.
void store(const ManualClock& clock, Cache& cache, const Fields& fields, const std::string& body,
           std::string_view vary = "Origin") {
  LookupResult r = lookup(cache, fields);
  ASSERT_EQ(r.kind, Kind::kMiss);
  complete(clock, r.fill, vary, fields, body);
}

TEST(CacheVary, EachOriginGetsItsOwnVariantAndSecondRequestsAreHits) {
  ManualClock clock;
  Cache cache(ramConfig(), clock);
  store(clock, cache, originField("https://a.example"), "body-a");
  EXPECT_EQ(cache.stats().vary_urls, 1u);

  LookupResult a = lookup(cache, originField("https://A.example:443"));  // same, normalised
  ASSERT_EQ(a.kind, Kind::kHit);
  EXPECT_EQ(bytesOf(*a.object), "body-a");
  ASSERT_TRUE(a.vary);
  EXPECT_EQ(*a.vary, VaryNames{"origin"});
  EXPECT_NE(a.key, kUrl);

  LookupResult b = lookup(cache, originField("https://b.example"));
  ASSERT_EQ(b.kind, Kind::kMiss);  // another variant: never the other Origin's bytes
  EXPECT_NE(b.key, a.key);
  complete(clock, b.fill, "Origin", originField("https://b.example"), "body-b");

  LookupResult none = lookup(cache, {});
  EXPECT_EQ(none.kind, Kind::kMiss);  // no Origin at all is a variant of its own

  LookupResult a2 = lookup(cache, originField("https://a.example"));
  LookupResult b2 = lookup(cache, originField("https://b.example"));
  ASSERT_EQ(a2.kind, Kind::kHit);
  ASSERT_EQ(b2.kind, Kind::kHit);
  EXPECT_EQ(bytesOf(*a2.object), "body-a");
  EXPECT_EQ(bytesOf(*b2.object), "body-b");
}

TEST(CacheVary, AnAnswerWithoutVaryServesEveryRequest) {
  ManualClock clock;
  Cache cache(ramConfig(), clock);
  store(clock, cache, originField("https://a.example"), "plain", "");
  LookupResult b = lookup(cache, originField("https://b.example"));
  ASSERT_EQ(b.kind, Kind::kHit);
  EXPECT_EQ(b.key, kUrl);
  EXPECT_FALSE(b.vary);
  EXPECT_EQ(cache.stats().vary_urls, 0u);
}

TEST(CacheVary, VaryStarIsNeverStoredNorShared) {
  ManualClock clock;
  Cache cache(ramConfig(), clock);
  LookupResult r = lookup(cache, {});
  ASSERT_EQ(r.kind, Kind::kMiss);
  LookupResult follower = lookup(cache, {});
  ASSERT_EQ(follower.kind, Kind::kBusy);
  complete(clock, r.fill, "Accept, *", {}, "star");
  EXPECT_FALSE(follower.object->shareable());  // the follower fetches for itself
  EXPECT_EQ(lookup(cache, {}).kind, Kind::kPass);
  EXPECT_EQ(cache.stats().objects, 0u);
}

TEST(CacheVary, BoundDropsTheLeastRecentlyStoredVariant) {
  ManualClock clock;
  Cache cache(ramConfig(/*max_variants=*/2), clock);
  store(clock, cache, originField("https://a.example"), "a");
  store(clock, cache, originField("https://b.example"), "b");
  store(clock, cache, originField("https://c.example"), "c");
  EXPECT_EQ(cache.stats().variants_dropped, 1u);
  EXPECT_EQ(cache.stats().objects, 2u);
  EXPECT_EQ(lookup(cache, originField("https://b.example")).kind, Kind::kHit);
  EXPECT_EQ(lookup(cache, originField("https://c.example")).kind, Kind::kHit);
  EXPECT_EQ(lookup(cache, originField("https://a.example")).kind, Kind::kMiss);
}

TEST(CacheVary, PurgeRemovesEveryVariantAndTheMarker) {
  ManualClock clock;
  Cache cache(ramConfig(), clock);
  store(clock, cache, originField("https://a.example"), "a");
  store(clock, cache, originField("https://b.example"), "b");
  LookupResult in_flight = lookup(cache, originField("https://c.example"));
  ASSERT_EQ(in_flight.kind, Kind::kMiss);

  EXPECT_TRUE(cache.purge(kUrl));
  EXPECT_EQ(cache.stats().objects, 0u);
  EXPECT_EQ(cache.stats().vary_urls, 0u);
  // The fill in flight when the URL was purged is not kept either.
  complete(clock, in_flight.fill, "Origin", originField("https://c.example"), "c");
  EXPECT_EQ(cache.stats().objects, 0u);
  // The marker is gone: the next request is a miss under the URL's own key, learning it again.
  LookupResult again = lookup(cache, originField("https://c.example"));
  ASSERT_EQ(again.kind, Kind::kMiss);
  EXPECT_EQ(again.key, kUrl);
}

TEST(CacheVary, CoalescedReaderOfAnotherVariantLooksUpItsOwn) {
  ManualClock clock;
  Cache cache(ramConfig(), clock);
  const Fields a = originField("https://a.example");
  const Fields b = originField("https://b.example");
  LookupResult filler = lookup(cache, a);
  ASSERT_EQ(filler.kind, Kind::kMiss);
  LookupResult reader_b = lookup(cache, b);  // the answer's Vary is not known yet
  LookupResult reader_a = lookup(cache, a);
  ASSERT_EQ(reader_b.kind, Kind::kBusy);
  ASSERT_EQ(reader_b.object.get(), filler.object.get());

  const FieldLineList sent(a);
  filler.fill.publishHead(head("Origin", 1), fresh(clock), true, true, &sent);
  // The fill now belongs to the filler's variant; each reader compares its own.
  const VarySpec vary = varyOf(filler.object->head());
  const FieldLineList fields_a(a), fields_b(b);
  EXPECT_EQ(variantKey(kUrl, vary.names, fields_a), reader_a.object->key());
  EXPECT_NE(variantKey(kUrl, vary.names, fields_b), reader_b.object->key());

  // Looking up again, B is a miss of its own variant (never A's fill)...
  LookupResult b_again = lookup(cache, b);
  ASSERT_EQ(b_again.kind, Kind::kMiss);
  EXPECT_NE(b_again.object.get(), filler.object.get());
  // ...and a new A viewer coalesces on A's fill, now under A's variant.
  LookupResult a_late = lookup(cache, a);
  ASSERT_EQ(a_late.kind, Kind::kBusy);
  EXPECT_EQ(a_late.object.get(), filler.object.get());

  filler.fill.append(reinterpret_cast<const uint8_t*>("A"), 1);
  ASSERT_TRUE(filler.fill.finish());
  complete(clock, b_again.fill, "Origin", b, "B");
  EXPECT_EQ(bytesOf(*lookup(cache, a).object), "A");
  EXPECT_EQ(bytesOf(*lookup(cache, b).object), "B");
}

TEST(CacheVary, AChangedVaryListReplacesTheMarkerAndDropsOldVariants) {
  ManualClock clock;
  Cache cache(ramConfig(), clock);
  const Fields a_gzip = {{"Origin", "https://a.example"}, {"Accept-Encoding", "gzip"}};
  const Fields b_gzip = {{"Origin", "https://b.example"}, {"Accept-Encoding", "gzip"}};
  store(clock, cache, a_gzip, "a");
  store(clock, cache, b_gzip, "b");
  // A stale-free refill of B's variant whose answer now varies on Accept-Encoding only.
  ASSERT_TRUE(cache.purge(lookup(cache, b_gzip).key));
  LookupResult r = lookup(cache, b_gzip);
  ASSERT_EQ(r.kind, Kind::kMiss);
  complete(clock, r.fill, "Accept-Encoding", b_gzip, "gz");
  EXPECT_GE(cache.stats().variants_dropped, 1u);
  // Origin no longer matters: A's request is served the gzip variant.
  LookupResult a = lookup(cache, a_gzip);
  ASSERT_EQ(a.kind, Kind::kHit);
  EXPECT_EQ(bytesOf(*a.object), "gz");
  ASSERT_TRUE(a.vary);
  EXPECT_EQ(*a.vary, VaryNames{"accept-encoding"});
}

TEST(CacheVary, AVariantFilledUnderAnOldMarkerIsNotKept) {
  ManualClock clock;
  Cache cache(ramConfig(), clock);
  const Fields a = originField("https://a.example");
  const Fields b = originField("https://b.example");
  store(clock, cache, a, "a");
  LookupResult late = lookup(cache, b);  // B's variant, under the Origin marker
  ASSERT_EQ(late.kind, Kind::kMiss);
  const FieldLineList sent_b(b);
  late.fill.publishHead(head("Origin", 1), fresh(clock), true, true, &sent_b);
  // Meanwhile a refill of A's variant says the answers vary on Accept-Encoding now.
  ASSERT_TRUE(cache.purge(lookup(cache, a).key));
  store(clock, cache, a, "ae", "Accept-Encoding");
  late.fill.append(reinterpret_cast<const uint8_t*>("b"), 1);
  ASSERT_TRUE(late.fill.finish());  // complete for its readers...
  EXPECT_EQ(cache.stats().objects, 1u);  // ...but not kept
  LookupResult r = lookup(cache, b);
  ASSERT_EQ(r.kind, Kind::kHit);  // B maps to the Accept-Encoding variant it shares with A
  EXPECT_EQ(bytesOf(*r.object), "ae");
  EXPECT_EQ(cache.stats().fills_in_flight, 0u);
}

TEST(CacheVary, AVariantFillInFlightWhenItsUrlIsPurgedIsNotKept) {
  ManualClock clock;
  Cache cache(ramConfig(), clock);
  const Fields a = originField("https://a.example");
  const Fields b = originField("https://b.example");
  store(clock, cache, a, "a");
  LookupResult late = lookup(cache, b);
  ASSERT_EQ(late.kind, Kind::kMiss);
  // The URL is purged and its next answer does not vary: stored under the URL's key.
  ASSERT_TRUE(cache.purge(kUrl));
  store(clock, cache, a, "plain", "");
  // The late answer still says Vary: Origin, but it was filled under the purged marker.
  complete(clock, late.fill, "Origin", b, "b");
  EXPECT_EQ(cache.stats().vary_urls, 0u);
  EXPECT_EQ(cache.stats().objects, 1u);
  EXPECT_EQ(cache.stats().fills_in_flight, 0u);
  LookupResult r = lookup(cache, b);
  ASSERT_EQ(r.kind, Kind::kHit);
  EXPECT_EQ(bytesOf(*r.object), "plain");
}

TEST(CacheVary, AnAnswerThatStopsVaryingClearsTheMarker) {
  ManualClock clock;
  Cache cache(ramConfig(), clock);
  const Fields a = originField("https://a.example");
  const Fields b = originField("https://b.example");
  store(clock, cache, a, "a");
  store(clock, cache, b, "b", "");  // B's variant fill, answered without Vary
  EXPECT_EQ(cache.stats().vary_urls, 0u);
  LookupResult r = lookup(cache, a);
  ASSERT_EQ(r.kind, Kind::kHit);
  EXPECT_EQ(r.key, kUrl);
  EXPECT_EQ(bytesOf(*r.object), "b");
  EXPECT_EQ(cache.stats().objects, 1u);
}

// Finding 1: a marker must not outlive what it describes.

TEST(CacheVaryMarkers, AMarkerIsFreedWhenItsLastVariantIsEvictedWithoutAnSsdCopy) {
  ManualClock clock;
  // Room for two 4 KiB objects and the marker: a third object evicts the variant.
  Cache cache(ramConfig(16, 12 * 1024), clock);
  store(clock, cache, originField("https://a.example"), std::string(4000, 'a'));
  ASSERT_EQ(cache.stats().vary_urls, 1u);
  EXPECT_GT(cache.stats().vary_marker_bytes, 0u);
  for (int i = 0; i < 8 && cache.stats().vary_urls != 0; ++i) {
    const CacheKey other = makeKey("v", "/other/" + std::to_string(i), "");
    LookupResult r = cache.lookup(other);
    ASSERT_EQ(r.kind, Kind::kMiss);
    complete(clock, r.fill, "", {}, std::string(4000, 'o'));
  }
  EXPECT_EQ(cache.stats().vary_urls, 0u);
  EXPECT_EQ(cache.stats().vary_marker_bytes, 0u);
  LookupResult again = lookup(cache, originField("https://a.example"));
  EXPECT_EQ(again.kind, Kind::kMiss);
  EXPECT_EQ(again.key, kUrl);  // no marker left: learnt again from the next answer
}

TEST(CacheVaryMarkers, AMarkerWhoseOnlyFillAbortsIsFreed) {
  ManualClock clock;
  Cache cache(ramConfig(), clock);
  LookupResult r = lookup(cache, originField("https://a.example"));
  ASSERT_EQ(r.kind, Kind::kMiss);
  const auto sent_fields = originField("https://a.example");
  const FieldLineList sent(sent_fields);
  r.fill.publishHead(head("Origin", 10), fresh(clock), true, true, &sent);
  EXPECT_EQ(cache.stats().vary_urls, 1u);  // learnt from the head
  r.fill.abort();                          // the body never came
  EXPECT_EQ(cache.stats().vary_urls, 0u);
  EXPECT_EQ(cache.stats().fills_in_flight, 0u);
}

TEST(CacheVaryMarkers, AMarkerStaysWhileAVariantFillIsInFlight) {
  ManualClock clock;
  Cache cache(ramConfig(), clock);
  store(clock, cache, originField("https://a.example"), "a");
  LookupResult b = lookup(cache, originField("https://b.example"));
  ASSERT_EQ(b.kind, Kind::kMiss);
  // The only stored variant goes; B's fill is still in flight under the marker.
  ASSERT_TRUE(cache.purge(lookup(cache, originField("https://a.example")).key));
  EXPECT_EQ(cache.stats().vary_urls, 1u);
  complete(clock, b.fill, "Origin", originField("https://b.example"), "b");
  LookupResult b2 = lookup(cache, originField("https://b.example"));
  ASSERT_EQ(b2.kind, Kind::kHit);  // kept: its marker was still there
  EXPECT_EQ(bytesOf(*b2.object), "b");
  ASSERT_TRUE(cache.purge(b2.key));  // the last variant, no fill in flight: the marker goes
  EXPECT_EQ(cache.stats().vary_urls, 0u);
}

TEST(CacheVaryMarkers, AVariantThatBecomesUncacheableLeavesItsMarker) {
  ManualClock clock;
  Cache cache(ramConfig(), clock);
  store(clock, cache, originField("https://a.example"), "a");
  clock.advance(120s);  // stale
  LookupResult r = lookup(cache, originField("https://a.example"));
  ASSERT_EQ(r.kind, Kind::kStale);
  ASSERT_TRUE(r.fill);
  const auto sent_fields = originField("https://a.example");
  const FieldLineList sent(sent_fields);
  r.fill.publishHead(head("Origin", 1), fresh(clock), /*storable=*/false, /*shareable=*/false,
                     &sent);
  r.fill.append(reinterpret_cast<const uint8_t*>("x"), 1);
  r.fill.finish();
  EXPECT_EQ(cache.stats().objects, 0u);
  EXPECT_EQ(cache.stats().vary_urls, 0u);
}

// Keys of `count` URLs whose slots share one index shard (so that a per-shard bound applies).
std::vector<CacheKey> urlsInOneShard(size_t count) {
  std::vector<CacheKey> keys;
  const CacheKey first = makeKey("v", "/shard/0.ts", "");
  keys.push_back(first);
  for (int i = 1; i < 100000 && keys.size() < count; ++i) {
    const CacheKey k = makeKey("v", "/shard/" + std::to_string(i) + ".ts", "");
    if ((k.lo & 63) == (first.lo & 63)) keys.push_back(k);
  }
  return keys;
}

TEST(CacheVaryMarkers, TheCapDropsTheLeastRecentlyUsedMarkerWithItsVariants) {
  ManualClock clock;
  conf::RamCacheConfig config = ramConfig();
  config.max_vary_urls = 2 * 64;  // two markers per index shard
  Cache cache(config, clock);
  const std::vector<CacheKey> urls = urlsInOneShard(3);
  ASSERT_EQ(urls.size(), 3u);
  const Fields a = originField("https://a.example");
  const FieldLineList fields(a);
  auto storeAt = [&](const CacheKey& url, const std::string& body) {
    LookupResult r = cache.lookup(url, false, &fields);
    ASSERT_EQ(r.kind, Kind::kMiss);
    complete(clock, r.fill, "Origin", a, body);
  };
  storeAt(urls[0], "zero");
  storeAt(urls[1], "one");
  ASSERT_EQ(cache.stats().vary_urls, 2u);
  EXPECT_EQ(cache.lookup(urls[0], false, &fields).kind, Kind::kHit);  // urls[1] is now the LRU
  storeAt(urls[2], "two");
  EXPECT_EQ(cache.stats().vary_urls, 2u);
  EXPECT_EQ(cache.stats().variants_dropped, 1u);  // urls[1]'s variant went with its marker
  EXPECT_EQ(cache.stats().objects, 2u);
  LookupResult dropped = cache.lookup(urls[1], false, &fields);
  EXPECT_EQ(dropped.kind, Kind::kMiss);
  EXPECT_EQ(dropped.key, urls[1]);  // the marker is gone, not just the variant
  dropped.fill.abort();
  EXPECT_EQ(bytesOf(*cache.lookup(urls[0], false, &fields).object), "zero");
  EXPECT_EQ(bytesOf(*cache.lookup(urls[2], false, &fields).object), "two");
}

TEST(CacheVaryMarkers, MarkersAreChargedToTheRamBudget) {
  ManualClock clock;
  Cache cache(ramConfig(), clock);
  const CacheStats before = cache.stats();
  store(clock, cache, originField("https://a.example"), "a");
  const CacheStats with = cache.stats();
  EXPECT_EQ(with.vary_urls, 1u);
  EXPECT_GE(with.vary_marker_bytes, Cache::varyMarkerBytes(1, VaryNames{"origin"}));
  EXPECT_EQ(with.capacity_bytes, before.capacity_bytes);
  ASSERT_TRUE(cache.purge(kUrl));
  EXPECT_EQ(cache.stats().vary_marker_bytes, 0u);
}

}  // namespace
}  // namespace streamedge::cache
