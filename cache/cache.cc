#include "cache/cache.h"

#include <algorithm>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cache/body_arena.h"

namespace streamedge::cache {

namespace {
// Accounted on top of the body: the head, the index slot and the object itself.
constexpr uint64_t kObjectOverheadBytes = 512;
}  // namespace

// ---------------------------------------------------------------------------------------------
// FillWriter

FillWriter::FillWriter(FillWriter&& o) noexcept
    : cache_(std::exchange(o.cache_, nullptr)),
      object_(std::move(o.object_)),
      stale_(std::move(o.stale_)),
      storable_(o.storable_),
      too_big_(o.too_big_),
      overlong_(o.overlong_),
      retention_(o.retention_) {}

FillWriter& FillWriter::operator=(FillWriter&& o) noexcept {
  if (this != &o) {
    abort();
    cache_ = std::exchange(o.cache_, nullptr);
    object_ = std::move(o.object_);
    stale_ = std::move(o.stale_);
    storable_ = o.storable_;
    too_big_ = o.too_big_;
    overlong_ = o.overlong_;
    retention_ = o.retention_;
  }
  return *this;
}

FillWriter::~FillWriter() { abort(); }

void FillWriter::publishHead(std::shared_ptr<const ResponseHead> head, const Freshness& freshness,
                             bool storable, bool shareable, const RequestFieldSource* request) {
  if (!object_) return;
  const VarySpec vary = varyOf(*head);
  // RFC 9111 §4.1: "Vary: *" always fails to match, so the answer is for this request alone.
  if (vary.kind == VarySpec::Kind::kAny) shareable = false;
  storable_ = storable && shareable;
  const std::optional<uint64_t> expected = head->content_length;
  if (expected && *expected > cache_->maxObjectBytes()) too_big_ = true;
  // A fill the cache did not place (purged meanwhile, its variant's marker gone, the same
  // variant already filling) is not kept: Cache-Status must not say "stored", and it streams
  // through a window like any answer that is not kept.
  if (shareable && !cache_->placeFill(object_, vary, request, storable_)) storable_ = false;
  if (!shareable) cache_->onUncacheable(object_);
  object_->setFillOutcome(storable_ && !too_big_, /*not_modified=*/false);
  object_->publishHead(std::move(head), freshness, shareable, Ref<Body>::make(expected));
  // Not kept: only a window of it is held while it streams to its readers.
  if (!storable_ || too_big_) object_->makeWindowed(cache_->fillWindowBytes());
}

void FillWriter::finishNotModified(std::shared_ptr<const ResponseHead> merged_head,
                                   const Freshness& freshness) {
  if (!object_ || !stale_) return;
  object_->setFillOutcome(/*storing=*/true, /*not_modified=*/true);
  object_->publishHead(std::move(merged_head), freshness, true, stale_->bodyRef());
  object_->markComplete();
  cache_->onComplete(object_, true);
  object_.reset();
  stale_.reset();
}

bool FillWriter::append(const uint8_t* data, size_t len) {
  if (!object_ || len == 0) return !too_big_;
  const std::optional<uint64_t> expected = object_->expectedLength();
  const uint64_t have = object_->body().length();
  if (expected && have + len > *expected) {
    // More bytes than the origin framed: keep only the framed part; finish() will abort.
    overlong_ = true;
    len = static_cast<size_t>(*expected - have);
    if (len == 0) return !too_big_;
  }
  object_->append(data, len);
  if (!too_big_ && have + len > cache_->maxObjectBytes()) {
    // Grew past the object limit (no Content-Length said so up front): from here on it is
    // streamed through a window like any answer that is not kept.
    too_big_ = true;
    object_->makeWindowed(cache_->fillWindowBytes());
  }
  return !too_big_;
}

void FillWriter::setLifetime(conf::Seconds lifetime) {
  if (object_) object_->setLifetime(lifetime);
}

bool FillWriter::finish() {
  if (!object_) return false;
  if (!object_->headPublished()) {
    abort();
    return false;
  }
  const std::optional<uint64_t> expected = object_->expectedLength();
  if (overlong_ || (expected && object_->body().length() != *expected)) {
    abort();
    return false;
  }
  object_->markComplete();
  cache_->onComplete(object_, storable_ && !too_big_);
  object_.reset();
  stale_.reset();
  return true;
}

void FillWriter::finishFromSsd(const SsdHit& hit, bool promote) {
  if (!object_) return;
  object_->setFromSsd();
  object_->publishHead(hit.head, hit.freshness, /*shareable=*/true, hit.body);
  object_->markComplete();
  // Not promoted: served to the viewers waiting on this read, then dropped (the SSD keeps it).
  // Promoted: enters RAM through S3-FIFO's small queue; its eviction costs no SSD write.
  cache_->onComplete(object_, promote);
  object_.reset();
  stale_.reset();
}

void FillWriter::startFromSsd(const SsdHit& hit) {
  if (!object_) return;
  object_->setFromSsd();
  object_->publishHead(hit.head, hit.freshness, /*shareable=*/true, hit.body);
}

void FillWriter::ssdBodyGrew() {
  if (object_) object_->extendAdopted(object_->body().length());
}

void FillWriter::completeFromSsd(bool promote) {
  if (!object_) return;
  object_->markComplete();
  cache_->onComplete(object_, promote);
  object_.reset();
  stale_.reset();
}

void FillWriter::finishWithStale() {
  if (!object_ || !stale_) return;
  if (stale_->fromSsd()) object_->setFromSsd();  // the same bytes are on the SSD
  object_->publishHead(stale_->headRef(), stale_->freshness(), true,
                       stale_->bodyRef());
  object_->markComplete();
  cache_->onComplete(object_, true);
  object_.reset();
  stale_.reset();
}

void FillWriter::abortBusy() {
  if (!object_) return;
  object_->markAbortedBusy();
  cache_->onAbort(object_);
  object_.reset();
  stale_.reset();
}

void FillWriter::abort(bool timed_out) {
  if (!object_) return;
  object_->markAborted(timed_out);
  cache_->onAbort(object_);
  object_.reset();
  stale_.reset();
}

// ---------------------------------------------------------------------------------------------
// Cache

Cache::Cache(const conf::RamCacheConfig& config, const Clock& clock)
    : clock_(clock),
      max_object_bytes_(config.max_object_bytes),
      max_variants_(std::max<uint32_t>(config.max_variants, 1)),
      markers_per_shard_(std::max<size_t>((config.max_vary_urls + kShards - 1) / kShards, 1)),
      marker_bytes_per_shard_(config.size_bytes / 2 / kShards),
      ram_capacity_bytes_(config.size_bytes),
      policy_(config.size_bytes) {
  setFillLimits(config.fill_window_bytes, config.fill_memory_bytes);
  setBodyArenaEnabled(config.sendfile);
}

void Cache::setFillLimits(uint64_t window_bytes, uint64_t budget_bytes) {
  fill_window_bytes_.store(window_bytes, std::memory_order_relaxed);
  setFillMemoryBudget(budget_bytes);
}

Cache::~Cache() {
  // The store outlives the cache: it must not call back into it from here on.
  if (SsdStore* ssd = ssdStore()) ssd->unsetVariantObserver(this);
}

void Cache::detachSsd() {
  SsdStore* ssd = ssd_.exchange(nullptr, std::memory_order_acq_rel);
  if (ssd) ssd->unsetVariantObserver(this);
}

void Cache::attachSsd(SsdStore* store, conf::SsdAdmission admission) {
  ssd_admission_.store(admission, std::memory_order_relaxed);
  // Allocated once: a store attached again (after a hot upgrade that failed) finds the table
  // that lookups on other threads may be reading.
  if (!recent_ssd_reads_) recent_ssd_reads_ = std::make_unique<std::atomic<uint64_t>[]>(kRecentSsdReads);
  ssd_.store(store, std::memory_order_release);
  // Last: the store may hand over the variants its rebuild found right here.
  if (store) store->setVariantObserver(this);
}

// ---------------------------------------------------------------------------------------------
// Vary markers: locking and bookkeeping

Cache::PairLock::PairLock(Shard& a, Shard& b)
    : a_(a.mu, std::defer_lock), b_(b.mu, std::defer_lock) {
  if (&a == &b) {
    a_.lock();
  } else {
    std::lock(a_, b_);
  }
}

template <typename Fn>
void Cache::withSlot(const CacheKey& key, Fn&& fn) {
  Shard& shard = shardFor(key);
  CacheKey primary;
  {
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.slots.find(key);
    if (it == shard.slots.end() || it->second.variant_of == 0) {
      fn(it == shard.slots.end() ? nullptr : &it->second, shard, static_cast<Shard*>(nullptr));
      return;
    }
    primary = it->second.primary;
  }
  // A variant's slot: its URL's shard too. Which URL a slot belongs to changes only when a fill
  // is placed (rare); a few tries, then the locks held are used as they are.
  for (int attempt = 0;; ++attempt) {
    Shard& ps = shardFor(primary);
    PairLock lock(shard, ps);
    auto it = shard.slots.find(key);
    Slot* slot = it == shard.slots.end() ? nullptr : &it->second;
    if (slot && slot->variant_of != 0 && !(slot->primary == primary) && attempt < 3) {
      primary = slot->primary;
      continue;
    }
    fn(slot, shard, slot && slot->variant_of != 0 ? &ps : static_cast<Shard*>(nullptr));
    return;
  }
}

uint64_t Cache::varyMarkerBytes(size_t variants, const VaryNames& names) {
  // The marker, its slot in the index (hash node, key, bucket) and its names (strings, vector,
  // shared_ptr control block); each heap block with a malloc header.
  uint64_t bytes = sizeof(VaryMarker) + sizeof(Slot) + sizeof(CacheKey) + 4 * sizeof(void*) +
                   variants * sizeof(CacheKey) + sizeof(VaryNames) + 32 + 4 * 16;
  for (const std::string& n : names) bytes += sizeof(std::string) + (n.size() > 15 ? n.size() + 16 : 0);
  return bytes;
}

void Cache::chargeMarkerLocked(Shard& ps, VaryMarker& marker) {
  const uint64_t bytes = varyMarkerBytes(marker.variants.capacity(), *marker.names);
  if (bytes == marker.charged_bytes) return;
  ps.marker_bytes += bytes;
  ps.marker_bytes -= marker.charged_bytes;
  vary_marker_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  vary_marker_bytes_.fetch_sub(marker.charged_bytes, std::memory_order_relaxed);
  marker.charged_bytes = bytes;
}

void Cache::linkMarkerLocked(Shard& ps, Slot& slot, std::unique_ptr<VaryMarker> marker,
                             MarkerList& evicted) {
  VaryMarker& m = *marker;
  m.older = ps.newest;
  m.newer = nullptr;
  if (ps.newest) ps.newest->newer = &m;
  ps.newest = &m;
  if (!ps.oldest) ps.oldest = &m;
  ++ps.markers;
  vary_urls_.fetch_add(1, std::memory_order_relaxed);
  chargeMarkerLocked(ps, m);
  slot.vary = std::move(marker);
  enforceMarkerBoundsLocked(ps, &m, evicted);
}

std::unique_ptr<Cache::VaryMarker> Cache::unlinkMarkerLocked(Shard& ps, Slot& slot) {
  std::unique_ptr<VaryMarker> marker = std::move(slot.vary);
  if (!marker) return marker;
  VaryMarker& m = *marker;
  (m.newer ? m.newer->older : ps.newest) = m.older;
  (m.older ? m.older->newer : ps.oldest) = m.newer;
  m.newer = m.older = nullptr;
  --ps.markers;
  ps.marker_bytes -= m.charged_bytes;
  vary_marker_bytes_.fetch_sub(m.charged_bytes, std::memory_order_relaxed);
  m.charged_bytes = 0;
  vary_urls_.fetch_sub(1, std::memory_order_relaxed);
  return marker;
}

void Cache::touchMarkerLocked(Shard& ps, VaryMarker& m) {
  if (ps.newest == &m) return;
  // Unlink (m has a newer one: it is not the newest), then in front.
  m.newer->older = m.older;
  (m.older ? m.older->newer : ps.oldest) = m.newer;
  m.older = ps.newest;
  m.newer = nullptr;
  ps.newest->newer = &m;
  ps.newest = &m;
}

void Cache::enforceMarkerBoundsLocked(Shard& ps, const VaryMarker* keep, MarkerList& evicted) {
  while ((ps.markers > markers_per_shard_ || ps.marker_bytes > marker_bytes_per_shard_) &&
         ps.oldest && ps.oldest != keep) {
    auto it = ps.slots.find(ps.oldest->primary);
    if (it == ps.slots.end() || it->second.vary.get() != ps.oldest) break;  // cannot happen
    evicted.push_back(unlinkMarkerLocked(ps, it->second));
    if (it->second.empty()) ps.slots.erase(it);
  }
}

Cache::VaryMarker* Cache::markerLocked(Shard& ps, const CacheKey& primary, uint64_t generation) {
  auto it = ps.slots.find(primary);
  if (it == ps.slots.end() || !it->second.vary) return nullptr;
  if (generation != 0 && it->second.vary->generation != generation) return nullptr;
  return it->second.vary.get();
}

void Cache::freeIfUnusedLocked(Shard& ps, const CacheKey& primary, MarkerList& freed) {
  auto it = ps.slots.find(primary);
  if (it == ps.slots.end() || !it->second.vary) return;
  const VaryMarker& m = *it->second.vary;
  if (!m.variants.empty() || m.fills != 0) return;
  freed.push_back(unlinkMarkerLocked(ps, it->second));
  if (it->second.empty()) ps.slots.erase(it);
}

void Cache::countFillLocked(Shard& ps, const Slot& variant_slot) {
  if (variant_slot.variant_of == 0) return;
  if (VaryMarker* m = markerLocked(ps, variant_slot.primary, variant_slot.variant_of)) ++m->fills;
}

void Cache::endFillLocked(Slot& slot, Shard* ps, bool moved, MarkerList& freed) {
  slot.pending.reset();
  if (!moved) fills_in_flight_.fetch_sub(1, std::memory_order_relaxed);
  if (!ps || slot.variant_of == 0) return;
  // Counted at its start iff this marker existed then: generations are never reused, so a
  // marker that exists now existed all along.
  VaryMarker* m = markerLocked(*ps, slot.primary, slot.variant_of);
  if (!m) return;
  if (m->fills > 0) --m->fills;
  freeIfUnusedLocked(*ps, slot.primary, freed);
}

void Cache::forgetVariantLocked(Shard& ps, const CacheKey& primary, const CacheKey& variant,
                                MarkerList& freed) {
  VaryMarker* m = markerLocked(ps, primary, 0);
  if (!m) return;
  std::erase(m->variants, variant);
  freeIfUnusedLocked(ps, primary, freed);
}

void Cache::variantLeft(const CacheKey& primary, const CacheKey& variant) {
  SsdStore* const ssd = ssdStore();  // once: a hot upgrade may detach it meanwhile
  MarkerList freed;
  ObjectRef queued;  // released outside the locks
  {
    Shard& shard = shardFor(variant);
    Shard& ps = shardFor(primary);
    PairLock lock(shard, ps);
    auto it = shard.slots.find(variant);
    // Still in RAM, or a fill of it in flight (which registers it again when kept).
    if (it != shard.slots.end() && (it->second.current || it->second.pending)) return;
    // Still (or again) on the SSD, or queued for it. The store's locks come after ours.
    if (ssd && (ssd->contains(variant) || (queued = ssd->queuedObject(variant)))) return;
    forgetVariantLocked(ps, primary, variant, freed);
  }
}

void Cache::applyMarkerChargeLocked() {
  // Markers take at most half the budget (their own bound drops markers beyond it).
  const uint64_t markers = std::min(vary_marker_bytes_.load(std::memory_order_relaxed),
                                    ram_capacity_bytes_ / 2);
  policy_.setCapacity(ram_capacity_bytes_ - markers);
}

void Cache::dropMarkers(MarkerList& evicted, bool ssd, std::vector<CacheKey>* ssd_keys) {
  for (const std::unique_ptr<VaryMarker>& m : evicted) {
    if (!m) continue;
    dropVariants(m->variants, ssd);
    if (ssd_keys) ssd_keys->insert(ssd_keys->end(), m->variants.begin(), m->variants.end());
  }
  evicted.clear();
}

std::vector<CacheKey> Cache::adoptSsdVariants(std::vector<SsdVariant> variants) {
  // Grouped by URL, in the order of each URL's newest variant (oldest first, so that the
  // newest end up the most recently used markers). A URL's variants named other fields than its
  // newest (its Vary changed and the tombstones of the old rule were lost in a crash) are
  // refused; so are those beyond max_variants (the oldest).
  struct Group {
    std::shared_ptr<const VaryNames> names;
    std::vector<CacheKey> keys;
    size_t last = 0;
  };
  std::vector<CacheKey> refused;
  uint64_t dropped = 0;  // refused for a changed Vary or the per-URL bound
  std::unordered_map<CacheKey, Group, CacheKeyHash> groups;
  for (size_t i = 0; i < variants.size(); ++i) {
    const SsdVariant& v = variants[i];
    if (!v.names || v.names->empty()) {
      refused.push_back(v.key);
      continue;
    }
    Group& g = groups[v.primary];
    if (g.names && *g.names != *v.names) {
      refused.insert(refused.end(), g.keys.begin(), g.keys.end());
      dropped += g.keys.size();
      g.keys.clear();
    }
    g.names = v.names;
    std::erase(g.keys, v.key);
    g.keys.push_back(v.key);
    g.last = i;
  }
  std::vector<std::pair<size_t, CacheKey>> order;
  order.reserve(groups.size());
  for (const auto& [primary, g] : groups) order.emplace_back(g.last, primary);
  std::sort(order.begin(), order.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [last, primary] : order) {
    Group& g = groups[primary];
    if (g.keys.size() > max_variants_) {
      const size_t over = g.keys.size() - max_variants_;
      refused.insert(refused.end(), g.keys.begin(), g.keys.begin() + static_cast<ptrdiff_t>(over));
      dropped += over;
      g.keys.erase(g.keys.begin(), g.keys.begin() + static_cast<ptrdiff_t>(over));
    }
    auto fresh = std::make_unique<VaryMarker>();
    fresh->primary = primary;
    fresh->names = g.names;
    fresh->variants.reserve(max_variants_ + 1);  // merged with a marker learnt meanwhile
    MarkerList evicted;
    std::vector<CacheKey> not_kept;
    {
      Shard& ps = shardFor(primary);
      std::lock_guard<std::mutex> lock(ps.mu);
      Slot& slot = ps.slots[primary];
      if (slot.vary && *slot.vary->names != *g.names) {
        // Learnt since the start from a newer answer with another Vary: the old rule's
        // variants go.
        not_kept = std::move(g.keys);
      } else if (slot.vary) {
        // Learnt since the start with the same Vary: the SSD's variants are older than those
        // stored since; beyond the bound the oldest go.
        VaryMarker& m = *slot.vary;
        for (const CacheKey& k : g.keys) {
          if (std::find(m.variants.begin(), m.variants.end(), k) == m.variants.end()) {
            fresh->variants.push_back(k);
          }
        }
        fresh->variants.insert(fresh->variants.end(), m.variants.begin(), m.variants.end());
        while (fresh->variants.size() > max_variants_) {
          not_kept.push_back(fresh->variants.front());
          fresh->variants.erase(fresh->variants.begin());
        }
        std::swap(m.variants, fresh->variants);  // the old list is freed with `fresh`
        chargeMarkerLocked(ps, m);
      } else {
        fresh->variants = std::move(g.keys);
        fresh->generation = next_vary_generation_.fetch_add(1, std::memory_order_relaxed);
        // A copy stored under the URL's own key (from before its answers varied) stays: the
        // store found both, and the newest write decides at the next request (a marker makes
        // lookups go to the variants; the plain copy is left for reclaim).
        linkMarkerLocked(ps, slot, std::move(fresh), evicted);
      }
      if (slot.empty()) ps.slots.erase(primary);
    }
    // Not under the store's lock order: RAM copies only here; the store removes SSD ones.
    refused.insert(refused.end(), not_kept.begin(), not_kept.end());
    dropped += not_kept.size();
    dropMarkers(evicted, /*ssd=*/false, &refused);  // counted there
  }
  variants_dropped_.fetch_add(dropped, std::memory_order_relaxed);
  return refused;
}

void Cache::onSsdVariantsGone(const std::vector<SsdVariant>& variants) {
  for (const SsdVariant& v : variants) variantLeft(v.primary, v.key);
}

// An object read once from the SSD stays there: promoting every read into RAM would let a
// stream of one-time reads (a long VOD catalogue) evict the hot set and flood the SSD writer
// with the evicted objects. A second read while the first is remembered promotes it.
bool Cache::secondSsdRead(const CacheKey& key) {
  std::atomic<uint64_t>& slot = recent_ssd_reads_[key.lo & (kRecentSsdReads - 1)];
  const uint64_t tag = key.hi | 1;  // never 0, the empty slot
  if (slot.load(std::memory_order_relaxed) == tag) {
    slot.store(0, std::memory_order_relaxed);
    return true;
  }
  slot.store(tag, std::memory_order_relaxed);
  return false;
}

LookupResult Cache::lookup(const CacheKey& key, bool ssd_allowed,
                           const RequestFieldSource* request, RetentionLimit retention) {
  return lookupKey(key, ssd_allowed, key, 0, request, retention);
}

namespace {
class NoFields final : public RequestFieldSource {
 public:
  std::span<const FieldLine> fieldLines() const override { return {}; }
};
const NoFields kNoFields;  // a request without fields
}  // namespace


ObjectRef Cache::peekFresh(const CacheKey& key, RetentionLimit retention) {
  const WallTime now = clock_.wallNow();
  Shard& shard = shardFor(key);
  std::lock_guard<std::mutex> lock(shard.mu);
  auto it = shard.slots.find(key);
  if (it == shard.slots.end()) return {};
  Slot& slot = it->second;
  if (slot.vary || !slot.current) return {};
  if (pastRetention(slot.current->freshness().response_time, retention.max_age, now)) return {};
  if (!slot.current->freshAt(now)) return {};
  S3Fifo::touch(slot.current->evictionNode());
  return slot.current;
}

LookupResult Cache::lookupKey(const CacheKey& key, bool ssd_allowed, const CacheKey& primary,
                              uint64_t variant_of, const RequestFieldSource* request,
                              RetentionLimit retention) {
  SsdStore* const ssd = ssdStore();  // once: a hot upgrade may detach it meanwhile
  ssd_allowed = ssd_allowed && ssd != nullptr;
  const WallTime now = clock_.wallNow();
  Shard& shard = shardFor(key);
  ObjectRef candidate;  // allocated outside the lock when a fill must start
  std::shared_ptr<const VaryNames> vary;  // the URL's marker (variant lookups)
  // An SSD copy found past retention under the lock is tombstoned once the locks are released
  // (the store's locks are never taken under a shard lock for a removal): destroyed after them.
  struct SsdExpiry {
    Cache* cache;
    CacheKey key, primary;
    std::string_view vhost;
    bool armed = false;
    ~SsdExpiry() {
      if (armed) cache->expireSsdCopy(key, primary, vhost);
    }
  } ssd_expiry{this, key, variant_of != 0 ? primary : CacheKey{}, retention.vhost};
  int expired_passes = 0;
  for (;;) {
    ObjectRef taken_back;  // just evicted, still queued for the SSD: back into RAM
    uint64_t redirect_generation = 0;
    bool expired = false;  // the current object is past retention: removed, then looked up again
    {
      // A variant fill about to start is counted in its URL's marker: then the URL's shard is
      // locked too (the second pass only: hits take one lock).
      std::unique_lock<std::mutex> lock(shard.mu, std::defer_lock);
      std::unique_lock<std::mutex> url_lock;
      Shard* url_shard = variant_of != 0 && candidate ? &shardFor(primary) : nullptr;
      if (url_shard && url_shard != &shard) {
        url_lock = std::unique_lock<std::mutex>(url_shard->mu, std::defer_lock);
        std::lock(lock, url_lock);
      } else {
        lock.lock();
      }
      auto it = shard.slots.find(key);
      Slot* slot = it == shard.slots.end() ? nullptr : &it->second;
      // A new slot of a variant records which URL (and marker) it belongs to.
      auto makeSlot = [&]() -> Slot& {
        Slot& s = slot ? *slot : shard.slots[key];
        if (variant_of != 0 && s.variant_of == 0) {
          s.primary = primary;
          s.variant_of = variant_of;
        }
        return s;
      };
      if (variant_of == 0 && slot && slot->vary) {
        // The URL's answers vary: the request's variant is looked up instead (below).
        touchMarkerLocked(shard, *slot->vary);
        vary = slot->vary->names;
        redirect_generation = slot->vary->generation;
      } else if (slot && slot->current && expired_passes < 3 &&
                 pastRetention(slot->current->freshness().response_time, retention.max_age, now)) {
        expired = true;
      } else if (slot && slot->current) {
        LookupResult r;
        r.key = key;
        r.vary = vary;
        r.object = slot->current;
        if (slot->current->freshAt(now)) {
          S3Fifo::touch(slot->current->evictionNode());
          r.kind = LookupResult::Kind::kHit;
          return r;
        }
        r.kind = LookupResult::Kind::kStale;
        if (slot->pending) {
          r.pending = slot->pending;
          return r;
        }
        if (candidate) {
          slot->pending = candidate;
          fills_in_flight_.fetch_add(1, std::memory_order_relaxed);
          if (url_shard) countFillLocked(*url_shard, *slot);
          r.fill = FillWriter(this, std::move(candidate), slot->current);
          r.fill.retention_ = retention.max_age;
          r.pending = r.fill.object();
          return r;
        }
      } else if (slot && slot->pending) {
        LookupResult r;
        r.key = key;
        r.vary = vary;
        r.kind = LookupResult::Kind::kBusy;
        r.object = slot->pending;
        return r;
      } else if (slot && now < slot->pass_until) {
        LookupResult r;
        r.key = key;
        r.vary = vary;
        r.kind = LookupResult::Kind::kPass;
        return r;
      } else if (ObjectRef queued = ssd_allowed && !candidate ? ssd->queuedObject(key)
                                                              : ObjectRef();
                 queued && queued->freshAt(now) &&
                 !pastRetention(queued->freshness().response_time, retention.max_age, now)) {
        // Evicted a moment ago and not indexed by the SSD writer yet: a hit all the same.
        // Looked for on the first pass only (one queue lock per miss); an object queued
        // between the passes is simply a miss.
        Slot& s = makeSlot();
        s.current = queued;
        s.pass_until = WallTime{};
        taken_back = std::move(queued);
      } else if (candidate) {
        Slot& s = makeSlot();
        s.pending = candidate;
        s.pass_until = WallTime{};
        fills_in_flight_.fetch_add(1, std::memory_order_relaxed);
        if (url_shard) countFillLocked(*url_shard, s);
        LookupResult r;
        r.key = key;
        r.vary = vary;
        r.kind = LookupResult::Kind::kMiss;
        if (ssd_allowed) {
          // The SSD index is in RAM: no I/O under the lock. Only fresh copies, or stale ones a
          // conditional request can refresh, are worth a read.
          const std::optional<SsdEntryInfo> info = ssd->find(key);
          if (info && pastRetention(info->stored_at, retention.max_age, now)) {
            ssd_expiry.armed = true;  // never read: tombstoned, and this is a miss
          } else if (info && (now < info->fresh_until || info->revalidatable)) {
            r.kind = LookupResult::Kind::kSsd;
          }
        }
        r.object = candidate;
        r.fill = FillWriter(this, std::move(candidate), ObjectRef());
        r.fill.retention_ = retention.max_age;
        return r;
      }
    }
    if (expired) {
      // Outside the lock: out of RAM (and its SSD copy too, when past the limit as well), then
      // looked up again: a miss, or what a fill completed meanwhile. A bounded number of times.
      ++expired_passes;
      expireKey(key, retention.max_age, now, retention.vhost);
      continue;
    }
    if (redirect_generation != 0) {
      // Outside the lock: the variant's key from the request's (normalised) field values.
      const CacheKey variant = variantKey(key, *vary, request ? *request : kNoFields);
      LookupResult r =
          lookupKey(variant, ssd_allowed, key, redirect_generation, nullptr, retention);
      r.vary = std::move(vary);
      return r;
    }
    if (taken_back) {
      admit(taken_back);  // outside the shard lock, like every admission
      LookupResult r;
      r.key = key;
      r.vary = vary;
      r.kind = LookupResult::Kind::kHit;
      r.object = std::move(taken_back);
      return r;
    }
    candidate = ObjectRef::make(key);
    candidate->setSsdAllowed(ssd_allowed);
  }
}


void Cache::readFromSsd(FillWriter fill, IoEngine& engine, SsdMissFn on_miss) {
  SsdStore* const ssd = ssdStore();  // once: a hot upgrade may detach it meanwhile
  if (!fill) return;
  auto holder = std::make_shared<FillWriter>(std::move(fill));
  const CacheKey key = holder->object()->key();
  auto fallback = [this, holder, on_miss] {
    ssd_fallbacks_.fetch_add(1, std::memory_order_relaxed);
    if (*holder) on_miss(std::move(*holder));
  };
  if (!ssd) return fallback();
  // A chunked entry comes as soon as its first chunk is verified (SsdHit::streaming); the rest
  // is verified on the engine's later turns and reported to `progress`. What the hit was used
  // for decides what progress does: extend the fill being served, or wait for the whole body of
  // a stale copy before it may back a revalidation.
  struct Streaming {
    bool serving = false;
    bool promote = false;
    std::optional<SsdHit> stale;  // a stale streaming copy, until it is verified whole
  };
  auto streaming = std::make_shared<Streaming>();
  // If the worker's engine is destroyed first (shutdown), the callback is dropped and the
  // holder's FillWriter aborts the fill: readers see kAborted, nothing is kept.
  auto done = [this, holder, fallback, streaming](Result<SsdHit> hit) {
    if (hit.isOk() &&
        pastRetention(hit->freshness.response_time, holder->retention(), clock_.wallNow())) {
      // Past its vhost's retention (the index had a rounded time, or the limit shrank since
      // the lookup): never served, not even for a revalidation.
      const PurgeLabels labels = purgeLabelsOf(*hit->head);
      expireSsdCopy(hit->key, CacheKey{}, labels.vhost);
      return fallback();
    }
    if (hit.isOk() && !hit->invalidated && hit->freshness.isFresh(clock_.wallNow())) {
      ssd_hits_.fetch_add(1, std::memory_order_relaxed);
      if (hit->streaming) {
        streaming->serving = true;
        streaming->promote = secondSsdRead(hit->key);
        holder->startFromSsd(*hit);
        return;
      }
      holder->finishFromSsd(*hit, secondSsdRead(hit->key));
      return;
    }
    if (hit.isOk() && *holder &&
        (hit->head->find("ETag") || hit->head->find("Last-Modified"))) {
      if (hit->streaming) {
        streaming->stale = std::move(*hit);  // revalidated once verified whole (see below)
        return;
      }
      useSsdStale(*holder, *hit);
    }
    fallback();  // gone (reclaimed), damaged (dropped and logged by the store) or stale now
  };
  auto progress = [this, holder, fallback, streaming](Status st, bool finished) {
    if (streaming->serving) {
      if (!st.isOk()) {
        // A damaged chunk: the viewers have the verified bytes before it and are cut there.
        holder->abort();
        return false;
      }
      if (finished) {
        holder->completeFromSsd(streaming->promote);
        return false;
      }
      holder->ssdBodyGrew();
      return true;
    }
    if (streaming->stale) {
      if (st.isOk() && !finished) return true;
      if (st.isOk() && *holder) useSsdStale(*holder, *streaming->stale);
      streaming->stale.reset();
      fallback();
      return false;
    }
    return false;  // the hit was not used: nothing more to verify
  };
  if (!ssd->read(key, engine, std::move(done), std::move(progress))) fallback();
}

void Cache::useSsdStale(FillWriter& fill, const SsdHit& hit) {
  // Stale, but a 304 can refresh it: the fill becomes a revalidation of the SSD copy.
  ObjectRef stale = makeCompleteObject(hit);
  stale->setFromSsd();
  if (hit.invalidated) stale->markInvalidated();  // stays stale if the origin fails
  fill.stale_ = std::move(stale);
  ssd_revalidations_.fetch_add(1, std::memory_order_relaxed);
}


void Cache::offerToSsd(const ObjectRef& object, WallTime now, const CacheKey& primary) {
  SsdStore* const ssd = ssdStore();  // once: a hot upgrade may detach it meanwhile
  // A soft-purged object would be written with its old freshness and read back as fresh.
  if (!ssd || !object->ssdAllowed() || !object->shareable() || object->invalidated()) return;
  // Past its vhost's retention: not written (a lookup or the sweep removes it from RAM).
  if (retention_on_.load(std::memory_order_acquire)) {
    const std::shared_ptr<const RetentionTable> table = retentionTable();
    const std::string* vhost = object->head().find(kStoredVhostField);
    if (table && vhost &&
        pastRetention(object->freshness().response_time, table->maxAgeOf(*vhost), now)) {
      return;
    }
  }
  // A stale copy is read back only to be revalidated, which needs a validator.
  if (!object->freshness().isFresh(now) && !object->head().find("ETag") &&
      !object->head().find("Last-Modified")) {
    return;
  }
  if (object->fromSsd() && ssd->contains(object->key())) return;  // the same bytes are there
  if (ssd->insert(object, primary)) ssd_admissions_.fetch_add(1, std::memory_order_relaxed);
}

bool Cache::purge(const CacheKey& key) {
  SsdStore* const ssd = ssdStore();  // once: a hot upgrade may detach it meanwhile
  // The SSD tier first: variants its rebuild found and has not handed to adoptSsdVariants() yet
  // go with their URL (SsdStore::remove). Again in purgeKey, after the RAM copy is gone (an
  // eviction meanwhile may have queued it for the SSD).
  bool found = ssd && ssd->remove(key);
  std::vector<CacheKey> variants;
  found = purgeKey(key, &variants) || found;
  // Every variant the URL's marker knows, in both tiers; their fills in flight are not kept.
  for (const CacheKey& variant : variants) found = purgeKey(variant, nullptr) || found;
  return found;
}

size_t Cache::purgeObjects(const CacheKey& key) {
  SsdStore* const ssd = ssdStore();  // once: a hot upgrade may detach it meanwhile
  const bool on_ssd = ssd && ssd->remove(key);
  std::vector<CacheKey> variants;
  bool had_object = false;
  bool found = purgeKey(key, &variants, &had_object);
  size_t n = (on_ssd || had_object) ? 1 : 0;
  (void)found;
  for (const CacheKey& variant : variants) {
    if (purgeKey(variant, nullptr)) ++n;
  }
  return n;
}

bool Cache::invalidateKey(const CacheKey& key, std::vector<CacheKey>* variants) {
  SsdStore* const ssd = ssdStore();  // once: a hot upgrade may detach it meanwhile
  bool found = false;
  if (variants) variants->reserve(max_variants_ + 1);  // no allocation under the lock
  {
    Shard& shard = shardFor(key);
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.slots.find(key);
    if (it != shard.slots.end()) {
      Slot& slot = it->second;
      if (slot.current) {
        slot.current->markInvalidated();
        found = true;
      }
      if (slot.vary && variants) {
        for (const CacheKey& v : slot.vary->variants) {
          if (variants->size() < variants->capacity()) variants->push_back(v);
        }
      }
    }
  }
  if (ssd && ssd->invalidate(key)) found = true;
  return found;
}

size_t Cache::invalidate(const CacheKey& key) {
  std::vector<CacheKey> variants;
  size_t n = invalidateKey(key, &variants) ? 1 : 0;
  for (const CacheKey& v : variants) {
    if (invalidateKey(v, nullptr)) ++n;
  }
  return n;
}

size_t Cache::purgeMatching(const PurgeSelector& selector, bool soft, uint64_t* scanned) {
  SsdStore* const ssd = ssdStore();  // once: a hot upgrade may detach it meanwhile
  std::vector<CacheKey> keys;
  uint64_t looked_at = 0;
  for (Shard& shard : shards_) {
    // The matches are collected into room reserved before the lock is taken; a shard that
    // grew past it meanwhile is scanned again with more room.
    size_t room = 64;
    for (;;) {
      std::vector<CacheKey> found;
      found.reserve(room);
      bool overflow = false;
      size_t slots = 0;
      {
        std::lock_guard<std::mutex> lock(shard.mu);
        slots = shard.slots.size();
        for (const auto& [key, slot] : shard.slots) {
          // A fill whose head has arrived is matched too: a purge must not let it be kept.
          const CacheObject* object = slot.current ? slot.current.get()
                                      : slot.pending && slot.pending->headPublished()
                                          ? slot.pending.get()
                                          : nullptr;
          if (!object || !selector.matches(object->head())) continue;
          if (found.size() == found.capacity()) {
            overflow = true;
            break;
          }
          found.push_back(key);
        }
      }
      if (!overflow) {
        looked_at += slots;
        keys.insert(keys.end(), found.begin(), found.end());
        break;
      }
      room = std::max(room * 2, slots + 64);
    }
  }
  if (ssd) {
    std::vector<CacheKey> on_ssd = ssd->keysMatching(selector);
    keys.insert(keys.end(), on_ssd.begin(), on_ssd.end());
  }
  std::sort(keys.begin(), keys.end(), [](const CacheKey& a, const CacheKey& b) {
    return a.hi != b.hi ? a.hi < b.hi : a.lo < b.lo;
  });
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  size_t n = 0;
  for (const CacheKey& key : keys) {
    // Each key is one object (a variant has its own key and labels): no marker walk needed.
    if (soft) {
      if (invalidateKey(key, nullptr)) ++n;
    } else {
      const bool on_ssd = ssd && ssd->remove(key);
      bool had_object = false;
      purgeKey(key, nullptr, &had_object);
      if (on_ssd || had_object) ++n;
    }
  }
  if (scanned) *scanned = looked_at;
  return n;
}

bool Cache::purgeKey(const CacheKey& key, std::vector<CacheKey>* variants, bool* had_object) {
  SsdStore* const ssd = ssdStore();  // once: a hot upgrade may detach it meanwhile
  ObjectRef removed;
  bool found = false;
  MarkerList freed;  // destroyed last, outside the locks
  withSlot(key, [&](Slot* slot, Shard& shard, Shard* url_shard) {
    if (!slot) return;
    found = static_cast<bool>(slot->current) || static_cast<bool>(slot->pending) ||
            static_cast<bool>(slot->vary);
    if (had_object) *had_object = slot->current || slot->pending;
    // A fill in flight goes on for its readers, but onComplete() will not find it in its slot
    // and so will not keep it.
    if (slot->pending) endFillLocked(*slot, url_shard, /*moved=*/false, freed);
    removed = std::move(slot->current);
    if (slot->vary) {
      freed.push_back(unlinkMarkerLocked(shard, *slot));
      if (variants) *variants = std::move(freed.back()->variants);
    }
    // A variant purged on its own leaves its URL's marker.
    if (url_shard) forgetVariantLocked(*url_shard, slot->primary, key, freed);
    shard.slots.erase(key);
  });
  if (removed) unlinkFromPolicy(*removed);
  // The SSD copy leaves the index and a tombstone keeps it out after a restart (its bytes stay
  // on the device until the region is reclaimed).
  if (ssd && ssd->remove(key)) {
    found = true;
    if (had_object) *had_object = true;
  }
  return found;
}

bool Cache::placeFill(const ObjectRef& object, const VarySpec& vary,
                      const RequestFieldSource* request, bool storable) {
  SsdStore* const ssd = ssdStore();  // once: a hot upgrade may detach it meanwhile
  const bool varies = vary.kind == VarySpec::Kind::kFields;
  const CacheKey key = object->key();
  CacheKey primary = key;
  uint64_t filled_under = 0;  // a variant fill: the marker generation it was looked up under
  {
    Shard& shard = shardFor(key);
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.slots.find(key);
    // Purged meanwhile, or a private fill: nothing to place.
    if (it == shard.slots.end() || it->second.pending != object) return false;
    if (it->second.variant_of != 0) {
      primary = it->second.primary;
      filled_under = it->second.variant_of;
    }
  }
  const bool is_variant = filled_under != 0;
  uint64_t generation = 0;
  MarkerList freed;  // destroyed last, outside the locks
  if (is_variant && storable) {
    // A variant fill whose marker is gone (the URL was purged) or was replaced (its answers
    // changed their Vary) is not kept, and does not set the rule again.
    bool current_marker = false;
    {
      Shard& ps = shardFor(primary);
      std::lock_guard<std::mutex> lock(ps.mu);
      current_marker = markerLocked(ps, primary, filled_under) != nullptr;
    }
    if (!current_marker) {
      withSlot(key, [&](Slot* slot, Shard& shard, Shard* url_shard) {
        if (!slot || slot->pending != object) return;
        endFillLocked(*slot, url_shard, /*moved=*/false, freed);
        if (slot->empty()) shard.slots.erase(key);
      });
      return false;
    }
  }
  if (storable) {
    // The URL's marker follows the latest storable answer: set when it first says Vary,
    // replaced when its list changes, cleared when it no longer varies. Either change drops
    // what was stored under the old rule.
    std::unique_ptr<VaryMarker> fresh;
    if (varies) {
      fresh = std::make_unique<VaryMarker>();
      fresh->primary = primary;
      fresh->names = std::make_shared<const VaryNames>(vary.names);
      fresh->variants.reserve(std::min<size_t>(2, max_variants_ + 1));
    }
    std::vector<CacheKey> dropped;
    ObjectRef dropped_current;
    MarkerList evicted;  // over the marker bounds
    bool made = false;
    {
      Shard& ps = shardFor(primary);
      std::lock_guard<std::mutex> lock(ps.mu);
      auto it = ps.slots.find(primary);
      Slot* slot = it == ps.slots.end() ? nullptr : &it->second;
      if (varies) {
        if (slot && slot->vary && *slot->vary->names == vary.names) {
          generation = slot->vary->generation;
          touchMarkerLocked(ps, *slot->vary);
        } else {
          Slot& s = slot ? *slot : ps.slots[primary];
          if (s.vary) {
            freed.push_back(unlinkMarkerLocked(ps, s));
            dropped = std::move(freed.back()->variants);
          }
          // An answer stored without Vary is no longer right for every request.
          dropped_current = std::move(s.current);
          fresh->generation = next_vary_generation_.fetch_add(1, std::memory_order_relaxed);
          generation = fresh->generation;
          linkMarkerLocked(ps, s, std::move(fresh), evicted);
          made = true;
        }
      } else if (slot && slot->vary) {
        freed.push_back(unlinkMarkerLocked(ps, *slot));
        dropped = std::move(freed.back()->variants);
        if (slot->empty()) ps.slots.erase(it);
      }
    }
    if (dropped_current) unlinkFromPolicy(*dropped_current);
    // A new marker: a copy of the URL stored on SSD before its answers varied goes too.
    if (made && ssd && object->ssdAllowed()) ssd->remove(primary);
    dropVariants(dropped, object->ssdAllowed());
    dropMarkers(evicted, /*ssd=*/true);
  } else if (!varies && !is_variant) {
    return true;  // the common case: an answer that does not vary, filled under the URL's key
  }
  // Where the fill belongs: the variant the request it sent selects, or the URL itself.
  const CacheKey target = varies ? variantKey(primary, vary.names, request ? *request : kNoFields)
                                 : primary;
  const CacheKey new_primary = varies ? primary : CacheKey{};
  if (target == key) {
    // Only a fill that is not kept can change its marker here (generation 0): a kept one
    // found its own marker above, and another marker's names give another key.
    bool placed = false;
    withSlot(key, [&](Slot* slot, Shard&, Shard* url_shard) {
      if (!slot || slot->pending != object) return;
      placed = true;
      if (slot->primary == new_primary && slot->variant_of == generation) return;
      if (url_shard) {
        VaryMarker* m = markerLocked(*url_shard, slot->primary, slot->variant_of);
        if (m && m->fills > 0) --m->fills;
        const CacheKey old_primary = slot->primary;
        slot->variant_of = 0;  // uncounted
        freeIfUnusedLocked(*url_shard, old_primary, freed);
      }
      slot->primary = new_primary;
      slot->variant_of = generation;
      if (generation != 0 && url_shard == &shardFor(primary)) {
        countFillLocked(*url_shard, *slot);
      }
    });
    return placed;
  }
  bool moved_out = false;
  withSlot(key, [&](Slot* slot, Shard& shard, Shard* url_shard) {
    if (!slot || slot->pending != object) return;
    endFillLocked(*slot, url_shard, /*moved=*/true, freed);
    if (slot->empty()) shard.slots.erase(key);
    moved_out = true;
  });
  if (!moved_out) return false;
  // Nobody reads the key of a fill before its head is published (placeFill runs just before).
  object->rekey(target);
  Shard& shard = shardFor(target);
  Shard& ps = shardFor(primary);
  PairLock lock(shard, varies ? ps : shard);
  Slot& s = shard.slots[target];
  if (s.pending) {
    // The same variant is being filled already (its lookup came after the marker): ours goes
    // on for its readers and is not kept.
    fills_in_flight_.fetch_sub(1, std::memory_order_relaxed);
    if (varies) freeIfUnusedLocked(ps, primary, freed);
    return false;
  }
  s.pending = object;
  s.pass_until = WallTime{};
  s.primary = new_primary;
  s.variant_of = generation;
  if (varies) countFillLocked(ps, s);
  return true;
}

bool Cache::registerVariant(const CacheKey& primary, uint64_t generation, const CacheKey& variant,
                            bool ssd_allowed) {
  // A longer list when the marker's is full, allocated outside the lock; after the swap, the
  // old list, freed outside it.
  std::vector<CacheKey> spare;
  for (int attempt = 0; attempt < 8; ++attempt) {
    CacheKey victim;
    bool evict = false;
    size_t want = 0;
    {
      Shard& ps = shardFor(primary);
      std::lock_guard<std::mutex> lock(ps.mu);
      VaryMarker* m = markerLocked(ps, primary, generation);
      if (!m) return false;  // purged, or the URL's Vary changed while this variant was filled
      std::vector<CacheKey>& variants = m->variants;
      std::erase(variants, variant);
      if (variants.size() == variants.capacity()) {
        if (spare.capacity() > variants.size()) {
          spare.assign(variants.begin(), variants.end());  // within its capacity
          std::swap(variants, spare);
          chargeMarkerLocked(ps, *m);
        } else {
          want = std::min<size_t>(std::max<size_t>(2 * variants.capacity(), 2),
                                  size_t{max_variants_} + 1);
        }
      }
      if (want == 0) {
        variants.push_back(variant);
        touchMarkerLocked(ps, *m);
        if (variants.size() > max_variants_) {
          // The bound: the least recently stored variant goes (both tiers).
          victim = variants.front();
          variants.erase(variants.begin());
          evict = true;
        }
      }
    }
    if (want != 0) {
      spare.clear();
      spare.reserve(want);
      continue;
    }
    if (evict) dropVariants({victim}, ssd_allowed);
    return true;
  }
  return false;  // the marker kept changing under us: not kept
}

void Cache::dropVariants(const std::vector<CacheKey>& variants, bool ssd_allowed) {
  SsdStore* const ssd = ssdStore();  // once: a hot upgrade may detach it meanwhile
  for (const CacheKey& variant : variants) {
    ObjectRef removed;
    {
      Shard& shard = shardFor(variant);
      std::lock_guard<std::mutex> lock(shard.mu);
      auto it = shard.slots.find(variant);
      if (it != shard.slots.end()) {
        // A fill in flight for it (a revalidation) finds its marker changed, or registers it
        // again as the most recent.
        removed = std::move(it->second.current);
        if (it->second.empty()) shard.slots.erase(it);
      }
    }
    if (removed) unlinkFromPolicy(*removed);
    if (ssd && ssd_allowed) ssd->remove(variant);
    variants_dropped_.fetch_add(1, std::memory_order_relaxed);
  }
}

void Cache::sweepPassMarksLocked(Shard& shard, WallTime now, size_t budget) {
  while (budget-- > 0 && !shard.pass_marks.empty() && shard.pass_marks.front().second <= now) {
    const auto [key, until] = shard.pass_marks.front();
    shard.pass_marks.pop_front();
    auto it = shard.slots.find(key);
    // Set again since (a later mark is queued for it), or in use: not ours to erase.
    if (it == shard.slots.end() || it->second.pass_until != until) continue;
    it->second.pass_until = WallTime{};
    if (it->second.empty()) shard.slots.erase(it);
  }
}

void Cache::onUncacheable(const ObjectRef& object) {
  SsdStore* const ssd = ssdStore();  // once: a hot upgrade may detach it meanwhile
  ObjectRef dropped;
  bool found = false;
  MarkerList freed;
  const CacheKey key = object->key();
  withSlot(key, [&](Slot* slot, Shard& shard, Shard* url_shard) {
    if (!slot || slot->pending != object) return;
    found = true;
    endFillLocked(*slot, url_shard, /*moved=*/false, freed);
    // The origin no longer allows storing: a stale predecessor must not be served either.
    dropped = std::move(slot->current);
    const WallTime now = clock_.wallNow();
    slot->pass_until = now + kHitForPassTtl;
    shard.pass_marks.emplace_back(key, slot->pass_until);
    sweepPassMarksLocked(shard, now, 8);
    // A variant that may no longer be stored is gone from its URL's marker.
    if (url_shard) forgetVariantLocked(*url_shard, slot->primary, key, freed);
  });
  if (!found) return;
  if (dropped) unlinkFromPolicy(*dropped);
  // Only a key whose route may use the SSD tier can have a copy there.
  if (ssd && object->ssdAllowed()) ssd->remove(key);
}

void Cache::onAbort(const ObjectRef& object) {
  MarkerList freed;
  const CacheKey key = object->key();
  withSlot(key, [&](Slot* slot, Shard& shard, Shard* url_shard) {
    if (!slot || slot->pending != object) return;
    endFillLocked(*slot, url_shard, /*moved=*/false, freed);
    if (slot->empty()) shard.slots.erase(key);
  });
}

void Cache::onComplete(const ObjectRef& object, bool keep) {
  // Bigger than the whole tier: admitting it would only flush everything else.
  if (keep && object->body().allocatedBytes() + kObjectOverheadBytes > ram_capacity_bytes_) {
    keep = false;
  }
  const CacheKey key = object->key();
  if (keep || object->fromSsd()) {
    // A variant is kept only while its URL's marker is the one it was filled under; recorded
    // there first, so that a purge from now on finds it. One read from the SSD is recorded
    // too, kept in RAM or not: its copy there is a stored variant.
    CacheKey primary;
    uint64_t generation = 0;
    {
      Shard& shard = shardFor(key);
      std::lock_guard<std::mutex> lock(shard.mu);
      auto it = shard.slots.find(key);
      if (it != shard.slots.end() && it->second.pending == object) {
        primary = it->second.primary;
        generation = it->second.variant_of;
      }
    }
    if (generation != 0 && !registerVariant(primary, generation, key, object->ssdAllowed())) {
      keep = false;
    }
  }
  ObjectRef replaced;
  bool mine = false;
  CacheKey url;  // the URL of a variant (written with its SSD copy)
  MarkerList freed;
  withSlot(key, [&](Slot* slot, Shard& shard, Shard* url_shard) {
    if (!slot || slot->pending != object) return;  // purged meanwhile
    mine = true;
    if (slot->variant_of != 0) url = slot->primary;
    endFillLocked(*slot, url_shard, /*moved=*/false, freed);
    if (keep) {
      replaced = std::exchange(slot->current, object);
    } else if (!slot->current && !slot->vary) {
      shard.slots.erase(key);
    }
  });
  if (!mine) return;
  if (replaced) unlinkFromPolicy(*replaced);
  if (!keep) return;
  admit(object);
  if (ssd_admission_.load(std::memory_order_relaxed) == conf::SsdAdmission::kFill) offerToSsd(object, clock_.wallNow(), url);
}

void Cache::admit(const ObjectRef& object) {
  std::vector<ObjectRef> victims;
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    EvictionNode& node = object->evictionNode();
    // Derived representations attached before admission count here (attachDerived publishes
    // under policy_mu_, so each is counted once: here or there).
    node.size_bytes = object->body().allocatedBytes() + object->head().wire.size() +
                      kObjectOverheadBytes + object->derivedBytes();
    auto [it, inserted] = resident_.emplace(object->key(), object);
    if (!inserted) {
      // A different object of the same key is still linked (its unlink raced with us).
      policy_.remove(it->second->evictionNode());
      it->second = object;
    }
    policy_.insert(node);
    admissions_.fetch_add(1, std::memory_order_relaxed);
    // Vary markers are charged to the same budget (at admissions: the next one after they grew).
    applyMarkerChargeLocked();
    evictLocked(victims);
  }
  dropEvicted(victims);
}

void Cache::evictLocked(std::vector<ObjectRef>& victims) {
  policy_.evictUntilFits([&](EvictionNode& victim) {
    auto vit = resident_.find(victim.key);
    if (vit == resident_.end()) return;
    victims.push_back(std::move(vit->second));
    resident_.erase(vit);
  });
}

void Cache::dropEvicted(std::vector<ObjectRef>& victims) {
  // Unlink victims from the index outside the policy lock (never both locks at once).
  const WallTime now = victims.empty() ? WallTime{} : clock_.wallNow();
  for (ObjectRef& victim : victims) {
    evictions_.fetch_add(1, std::memory_order_relaxed);
    CacheKey url;  // a variant's URL
    {
      Shard& shard = shardFor(victim->key());
      std::lock_guard<std::mutex> lock(shard.mu);
      auto it = shard.slots.find(victim->key());
      if (it == shard.slots.end() || it->second.current != victim) continue;  // replaced
      if (it->second.variant_of != 0) url = it->second.primary;
      it->second.current.reset();
      if (it->second.empty()) shard.slots.erase(it);
    }
    // Queued, not written: the SSD writer thread does the work.
    if (ssd_admission_.load(std::memory_order_relaxed) == conf::SsdAdmission::kEvict) offerToSsd(victim, now, url);
    // A variant with no copy left (no SSD tier, refused, queue full) leaves its marker.
    if (!(url == CacheKey{})) variantLeft(url, victim->key());
  }
}

const DerivedRepresentation* Cache::attachDerived(const ObjectRef& object, size_t slot,
                                                  std::unique_ptr<DerivedRepresentation> rep) {
  if (!object) return nullptr;
  std::vector<ObjectRef> victims;
  const DerivedRepresentation* published = nullptr;
  {
    // Under the policy lock so that admit() either sees this representation or runs before
    // it, and its bytes are charged exactly once. Rare: once per object and slot.
    std::lock_guard<std::mutex> lock(policy_mu_);
    auto [now_there, won] = object->publishDerived(slot, std::move(rep));
    published = now_there;
    if (!won) return published;
    auto it = resident_.find(object->key());
    if (it == resident_.end() || it->second != object) return published;  // not (yet) in RAM
    EvictionNode& node = object->evictionNode();
    policy_.resize(node, node.size_bytes + published->chargedBytes());
    evictLocked(victims);
  }
  dropEvicted(victims);
  return published;
}

void Cache::unlinkFromPolicy(CacheObject& object) {
  std::lock_guard<std::mutex> lock(policy_mu_);
  auto it = resident_.find(object.key());
  if (it == resident_.end() || it->second.get() != &object) return;
  policy_.remove(object.evictionNode());
  resident_.erase(it);
}

FillWriter Cache::privateFill(const CacheKey& key) {
  // Never linked into a slot: onComplete/onAbort find no slot holding it and do nothing.
  return FillWriter(this, ObjectRef::make(key), ObjectRef());
}

// ---------------------------------------------------------------------------------------------
// Retention

void Cache::setRetention(std::shared_ptr<const RetentionTable> table) {
  const bool on = table && !table->empty();
  std::lock_guard<std::mutex> lock(retention_mu_);
  retention_ = std::move(table);
  retention_on_.store(on, std::memory_order_release);
}

std::shared_ptr<const RetentionTable> Cache::retentionTable() const {
  std::lock_guard<std::mutex> lock(retention_mu_);
  return retention_;
}

void Cache::countExpired(std::string_view vhost, bool ssd) {
  std::lock_guard<std::mutex> lock(expired_mu_);
  auto it = expired_.find(vhost);
  if (it == expired_.end()) {
    it = expired_.emplace(std::string(vhost), RetentionExpiredCount{}).first;
    it->second.vhost = it->first;
  }
  ++(ssd ? it->second.ssd : it->second.ram);
}

std::vector<RetentionExpiredCount> Cache::retentionExpired() const {
  std::lock_guard<std::mutex> lock(expired_mu_);
  std::vector<RetentionExpiredCount> out;
  out.reserve(expired_.size());
  for (const auto& [vhost, count] : expired_) out.push_back(count);
  return out;
}

void Cache::expireSsdCopy(const CacheKey& key, const CacheKey& primary, std::string_view vhost) {
  SsdStore* const ssd = ssdStore();  // once: a hot upgrade may detach it meanwhile
  if (!ssd || !ssd->remove(key)) return;
  countExpired(vhost, /*ssd=*/true);
  // A variant with no copy left leaves its URL's marker.
  if (!(primary == CacheKey{})) variantLeft(primary, key);
}

size_t Cache::expireKey(const CacheKey& key, conf::Millis max_age, WallTime now,
                        std::string_view vhost) {
  ObjectRef removed;
  CacheKey url;  // a variant's URL
  withSlot(key, [&](Slot* slot, Shard& shard, Shard*) {
    // Checked again under the lock: a fill may have replaced the object meanwhile.
    if (!slot || !slot->current ||
        !pastRetention(slot->current->freshness().response_time, max_age, now)) {
      return;
    }
    if (slot->variant_of != 0) url = slot->primary;
    removed = std::move(slot->current);
    // A revalidation in flight (slot->pending) goes on: a 304 makes a new object.
    if (slot->empty()) shard.slots.erase(key);
  });
  if (!removed) return 0;
  size_t copies = 1;
  unlinkFromPolicy(*removed);
  std::string label;
  if (vhost.empty()) {
    if (const std::string* v = removed->head().find(kStoredVhostField)) label = *v;
    vhost = label;
  }
  countExpired(vhost, /*ssd=*/false);
  // The SSD copy is the same object or an older one; removed when past the limit too.
  if (SsdStore* const ssd = ssdStore()) {
    const std::optional<SsdEntryInfo> info = ssd->find(key);
    if (info && pastRetention(info->stored_at, max_age, now) && ssd->remove(key)) {
      countExpired(vhost, /*ssd=*/true);
      ++copies;
    }
  }
  if (!(url == CacheKey{})) variantLeft(url, key);
  return copies;
}

size_t Cache::sweepRetention(size_t budget) {
  if (!retention_on_.load(std::memory_order_acquire) || budget == 0) return 0;
  const std::shared_ptr<const RetentionTable> table = retentionTable();
  if (!table || table->empty()) return 0;
  std::lock_guard<std::mutex> sweep(sweep_mu_);
  const WallTime now = clock_.wallNow();
  struct Found {
    CacheKey key;
    conf::Millis max_age;
  };
  std::vector<Found> expired;
  size_t looked_at = 0;
  // Every shard at most once per step; within a shard, buckets from where the last step
  // stopped (a rehash meanwhile only makes some slots wait for the next pass).
  for (size_t n = 0; n < kShards && looked_at < budget; ++n) {
    Shard& shard = shards_[sweep_shard_];
    std::vector<Found> found;
    found.reserve(budget - looked_at);  // no allocation under the shard lock
    bool shard_done = false;
    {
      std::lock_guard<std::mutex> lock(shard.mu);
      const size_t buckets = shard.slots.bucket_count();
      while (sweep_bucket_ < buckets && looked_at < budget) {
        for (auto it = shard.slots.begin(sweep_bucket_); it != shard.slots.end(sweep_bucket_);
             ++it) {
          ++looked_at;
          const ObjectRef& object = it->second.current;
          if (!object || found.size() == found.capacity()) continue;
          const std::string* vhost = object->head().find(kStoredVhostField);
          if (!vhost) continue;  // judged by lookups only
          const conf::Millis max_age = table->maxAgeOf(*vhost);
          if (pastRetention(object->freshness().response_time, max_age, now)) {
            found.push_back({it->first, max_age});
          }
        }
        ++sweep_bucket_;
        ++looked_at;
      }
      shard_done = sweep_bucket_ >= buckets;
    }
    expired.insert(expired.end(), found.begin(), found.end());
    if (!shard_done) break;
    sweep_bucket_ = 0;
    sweep_shard_ = (sweep_shard_ + 1) % kShards;
  }
  size_t removed = 0;
  for (const Found& f : expired) removed += expireKey(f.key, f.max_age, now, {});
  // Objects only on the SSD (or whose RAM copy is newer).
  if (SsdStore* const ssd = ssdStore()) {
    for (const SsdExpired& e : ssd->expiredEntries(*table, now, budget)) {
      const std::string_view vhost = e.labels ? std::string_view(e.labels->vhost) : "";
      // Checked again: a newer copy may have been written since the index was looked at.
      const std::optional<SsdEntryInfo> info = ssd->find(e.key);
      if (!info || !pastRetention(info->stored_at, table->maxAgeOf(vhost), now)) continue;
      if (ssd->remove(e.key)) {
        countExpired(vhost, /*ssd=*/true);
        ++removed;
        if (!(e.primary == CacheKey{})) variantLeft(e.primary, e.key);
      }
    }
  }
  return removed;
}

CacheStats Cache::stats() const {
  CacheStats s;
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    s.objects = resident_.size();
    s.bytes = policy_.usedBytes();
    s.capacity_bytes = ram_capacity_bytes_;
  }
  for (const Shard& shard : shards_) {
    std::lock_guard<std::mutex> lock(const_cast<std::mutex&>(shard.mu));
    s.index_slots += shard.slots.size();
  }
  s.evictions = evictions_.load(std::memory_order_relaxed);
  s.admissions = admissions_.load(std::memory_order_relaxed);
  s.fills_in_flight = fills_in_flight_.load(std::memory_order_relaxed);
  s.ssd_hits = ssd_hits_.load(std::memory_order_relaxed);
  s.ssd_fallbacks = ssd_fallbacks_.load(std::memory_order_relaxed);
  s.ssd_revalidations = ssd_revalidations_.load(std::memory_order_relaxed);
  s.ssd_admissions = ssd_admissions_.load(std::memory_order_relaxed);
  s.fill_memory_bytes = fillMemoryBytes();
  s.fill_memory_budget = fillMemoryBudget();
  s.fill_window_bytes = fillWindowBytes();
  s.vary_urls = vary_urls_.load(std::memory_order_relaxed);
  s.vary_marker_bytes = vary_marker_bytes_.load(std::memory_order_relaxed);
  s.variants_dropped = variants_dropped_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace streamedge::cache
