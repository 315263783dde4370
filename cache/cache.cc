#include "cache/cache.h"

#include <utility>
#include <vector>

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
      overlong_(o.overlong_) {}

FillWriter& FillWriter::operator=(FillWriter&& o) noexcept {
  if (this != &o) {
    abort();
    cache_ = std::exchange(o.cache_, nullptr);
    object_ = std::move(o.object_);
    stale_ = std::move(o.stale_);
    storable_ = o.storable_;
    too_big_ = o.too_big_;
    overlong_ = o.overlong_;
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
  if (shareable) cache_->placeFill(object_, vary, request, storable_);
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
      policy_(config.size_bytes) {
  setFillLimits(config.fill_window_bytes, config.fill_memory_bytes);
}

void Cache::setFillLimits(uint64_t window_bytes, uint64_t budget_bytes) {
  fill_window_bytes_.store(window_bytes, std::memory_order_relaxed);
  setFillMemoryBudget(budget_bytes);
}

Cache::~Cache() = default;

void Cache::attachSsd(SsdStore* store, conf::SsdAdmission admission) {
  ssd_ = store;
  ssd_admission_ = admission;
  recent_ssd_reads_ = std::make_unique<std::atomic<uint64_t>[]>(kRecentSsdReads);
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
                           const RequestFieldSource* request) {
  return lookupKey(key, ssd_allowed, key, 0, request);
}

namespace {
class NoFields final : public RequestFieldSource {
 public:
  std::span<const FieldLine> fieldLines() const override { return {}; }
};
const NoFields kNoFields;  // a request without fields
}  // namespace

LookupResult Cache::lookupKey(const CacheKey& key, bool ssd_allowed, const CacheKey& primary,
                              uint64_t variant_of, const RequestFieldSource* request) {
  ssd_allowed = ssd_allowed && ssd_ != nullptr;
  const WallTime now = clock_.wallNow();
  Shard& shard = shardFor(key);
  ObjectRef candidate;  // allocated outside the lock when a fill must start
  std::shared_ptr<const VaryNames> vary;  // the URL's marker (variant lookups)
  for (;;) {
    ObjectRef taken_back;  // just evicted, still queued for the SSD: back into RAM
    uint64_t redirect_generation = 0;
    {
      std::lock_guard<std::mutex> lock(shard.mu);
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
        vary = slot->vary->names;
        redirect_generation = slot->vary->generation;
      } else if (slot && slot->current) {
        LookupResult r;
        r.key = key;
        r.vary = vary;
        r.object = slot->current;
        if (slot->current->freshness().isFresh(now)) {
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
          r.fill = FillWriter(this, std::move(candidate), slot->current);
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
      } else if (ObjectRef queued = ssd_allowed && !candidate ? ssd_->queuedObject(key)
                                                              : ObjectRef();
                 queued && queued->freshness().isFresh(now)) {
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
        LookupResult r;
        r.key = key;
        r.vary = vary;
        r.kind = LookupResult::Kind::kMiss;
        if (ssd_allowed) {
          // The SSD index is in RAM: no I/O under the lock. Only fresh copies are worth a read.
          const std::optional<SsdEntryInfo> info = ssd_->find(key);
          // Only fresh copies, or stale ones a conditional request can refresh, are worth a
          // read.
          if (info && (now < info->fresh_until || info->revalidatable)) {
            r.kind = LookupResult::Kind::kSsd;
          }
        }
        r.object = candidate;
        r.fill = FillWriter(this, std::move(candidate), ObjectRef());
        return r;
      }
    }
    if (redirect_generation != 0) {
      // Outside the lock: the variant's key from the request's (normalised) field values.
      const CacheKey variant = variantKey(key, *vary, request ? *request : kNoFields);
      LookupResult r = lookupKey(variant, ssd_allowed, key, redirect_generation, nullptr);
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
  if (!fill) return;
  auto holder = std::make_shared<FillWriter>(std::move(fill));
  const CacheKey key = holder->object()->key();
  auto fallback = [this, holder, on_miss] {
    ssd_fallbacks_.fetch_add(1, std::memory_order_relaxed);
    if (*holder) on_miss(std::move(*holder));
  };
  if (!ssd_) return fallback();
  // If the worker's engine is destroyed first (shutdown), the callback is dropped and the
  // holder's FillWriter aborts the fill: readers see kAborted, nothing is kept.
  const bool started = ssd_->read(key, engine, [this, holder, fallback](Result<SsdHit> hit) {
    if (hit.isOk() && hit->freshness.isFresh(clock_.wallNow())) {
      ssd_hits_.fetch_add(1, std::memory_order_relaxed);
      holder->finishFromSsd(*hit, secondSsdRead(hit->key));
      return;
    }
    if (hit.isOk() && *holder &&
        (hit->head->find("ETag") || hit->head->find("Last-Modified"))) {
      // Stale, but a 304 can refresh it: the fill becomes a revalidation of the SSD copy.
      ObjectRef stale = makeCompleteObject(*hit);
      stale->setFromSsd();
      holder->stale_ = std::move(stale);
      ssd_revalidations_.fetch_add(1, std::memory_order_relaxed);
    }
    fallback();  // gone (reclaimed), damaged (dropped and logged by the store) or stale now
  });
  if (!started) fallback();
}

void Cache::offerToSsd(const ObjectRef& object, WallTime now) {
  if (!ssd_ || !object->ssdAllowed() || !object->shareable()) return;
  // A stale copy is read back only to be revalidated, which needs a validator.
  if (!object->freshness().isFresh(now) && !object->head().find("ETag") &&
      !object->head().find("Last-Modified")) {
    return;
  }
  if (object->fromSsd() && ssd_->contains(object->key())) return;  // the same bytes are there
  if (ssd_->insert(object)) ssd_admissions_.fetch_add(1, std::memory_order_relaxed);
}

bool Cache::purge(const CacheKey& key) {
  std::vector<CacheKey> variants;
  bool found = purgeKey(key, &variants);
  // Every variant the URL's marker knows, in both tiers; their fills in flight are not kept.
  for (const CacheKey& variant : variants) found = purgeKey(variant, nullptr) || found;
  return found;
}

bool Cache::purgeKey(const CacheKey& key, std::vector<CacheKey>* variants) {
  ObjectRef removed;
  bool found = false;
  {
    Shard& shard = shardFor(key);
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.slots.find(key);
    if (it != shard.slots.end()) {
      Slot& slot = it->second;
      found = static_cast<bool>(slot.current) || static_cast<bool>(slot.pending) ||
              static_cast<bool>(slot.vary);
      if (slot.pending) fills_in_flight_.fetch_sub(1, std::memory_order_relaxed);
      removed = std::move(slot.current);
      if (slot.vary) {
        if (variants) *variants = std::move(slot.vary->variants);
        vary_urls_.fetch_sub(1, std::memory_order_relaxed);
      }
      // A fill in flight goes on for its readers, but onComplete() will not find it in its
      // slot and so will not keep it.
      shard.slots.erase(it);
    }
  }
  if (removed) unlinkFromPolicy(*removed);
  // The SSD copy leaves the index (its bytes stay on the device until the region is reclaimed;
  // a durable purge needs a tombstone).
  if (ssd_ && ssd_->remove(key)) found = true;
  return found;
}

void Cache::placeFill(const ObjectRef& object, const VarySpec& vary,
                      const RequestFieldSource* request, bool storable) {
  const bool varies = vary.kind == VarySpec::Kind::kFields;
  const CacheKey key = object->key();
  CacheKey primary = key;
  uint64_t filled_under = 0;  // a variant fill: the marker generation it was looked up under
  {
    Shard& shard = shardFor(key);
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.slots.find(key);
    // Purged meanwhile, or a private fill: nothing to place.
    if (it == shard.slots.end() || it->second.pending != object) return;
    if (it->second.variant_of != 0) {
      primary = it->second.primary;
      filled_under = it->second.variant_of;
    }
  }
  const bool is_variant = filled_under != 0;
  uint64_t generation = 0;
  if (is_variant && storable) {
    // A variant fill whose marker is gone (the URL was purged) or was replaced (its answers
    // changed their Vary) is not kept, and does not set the rule again.
    bool current_marker = false;
    {
      Shard& shard = shardFor(primary);
      std::lock_guard<std::mutex> lock(shard.mu);
      auto it = shard.slots.find(primary);
      current_marker = it != shard.slots.end() && it->second.vary &&
                       it->second.vary->generation == filled_under;
    }
    if (!current_marker) {
      Shard& shard = shardFor(key);
      std::lock_guard<std::mutex> lock(shard.mu);
      auto it = shard.slots.find(key);
      if (it != shard.slots.end() && it->second.pending == object) {
        it->second.pending.reset();
        fills_in_flight_.fetch_sub(1, std::memory_order_relaxed);
        if (it->second.empty()) shard.slots.erase(it);
      }
      return;
    }
  }
  if (storable) {
    // The URL's marker follows the latest storable answer: set when it first says Vary,
    // replaced when its list changes, cleared when it no longer varies. Either change drops
    // what was stored under the old rule.
    std::unique_ptr<VaryMarker> fresh;
    if (varies) {
      fresh = std::make_unique<VaryMarker>();
      fresh->names = std::make_shared<const VaryNames>(vary.names);
      fresh->variants.reserve(max_variants_ + 1);
    }
    std::vector<CacheKey> dropped;
    ObjectRef dropped_current;
    {
      Shard& shard = shardFor(primary);
      std::lock_guard<std::mutex> lock(shard.mu);
      auto it = shard.slots.find(primary);
      Slot* slot = it == shard.slots.end() ? nullptr : &it->second;
      if (varies) {
        if (slot && slot->vary && *slot->vary->names == vary.names) {
          generation = slot->vary->generation;
        } else {
          Slot& s = slot ? *slot : shard.slots[primary];
          if (s.vary) {
            dropped = std::move(s.vary->variants);
          } else {
            vary_urls_.fetch_add(1, std::memory_order_relaxed);
          }
          // An answer stored without Vary is no longer right for every request.
          dropped_current = std::move(s.current);
          fresh->generation = next_vary_generation_.fetch_add(1, std::memory_order_relaxed);
          generation = fresh->generation;
          s.vary = std::move(fresh);
        }
      } else if (slot && slot->vary) {
        dropped = std::move(slot->vary->variants);
        slot->vary.reset();
        vary_urls_.fetch_sub(1, std::memory_order_relaxed);
        if (slot->empty()) shard.slots.erase(it);
      }
    }
    if (dropped_current) unlinkFromPolicy(*dropped_current);
    // A new marker: a copy of the URL stored on SSD before its answers varied goes too.
    if (varies && !fresh && ssd_ && object->ssdAllowed()) ssd_->remove(primary);
    dropVariants(dropped, object->ssdAllowed());
  } else if (!varies && !is_variant) {
    return;  // the common case: an answer that does not vary, filled under the URL's key
  }
  // Where the fill belongs: the variant the request it sent selects, or the URL itself.
  const CacheKey target = varies ? variantKey(primary, vary.names, request ? *request : kNoFields)
                                 : primary;
  if (target == key) {
    Shard& shard = shardFor(key);
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.slots.find(key);
    if (it != shard.slots.end() && it->second.pending == object) {
      it->second.primary = varies ? primary : CacheKey{};
      it->second.variant_of = generation;
    }
    return;
  }
  {
    Shard& shard = shardFor(key);
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.slots.find(key);
    if (it == shard.slots.end() || it->second.pending != object) return;
    it->second.pending.reset();
    if (it->second.empty()) shard.slots.erase(it);
  }
  // Nobody reads the key of a fill before its head is published (placeFill runs just before).
  object->rekey(target);
  Shard& shard = shardFor(target);
  std::lock_guard<std::mutex> lock(shard.mu);
  Slot& s = shard.slots[target];
  if (s.pending) {
    // The same variant is being filled already (its lookup came after the marker): ours goes
    // on for its readers and is not kept.
    fills_in_flight_.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  s.pending = object;
  s.pass_until = WallTime{};
  s.primary = varies ? primary : CacheKey{};
  s.variant_of = generation;
}

bool Cache::registerVariant(const CacheKey& primary, uint64_t generation, const CacheKey& variant,
                            bool ssd_allowed) {
  CacheKey victim;
  bool evict = false;
  {
    Shard& shard = shardFor(primary);
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.slots.find(primary);
    if (it == shard.slots.end() || !it->second.vary ||
        it->second.vary->generation != generation) {
      return false;  // purged, or the URL's Vary changed while this variant was filled
    }
    std::vector<CacheKey>& variants = it->second.vary->variants;
    std::erase(variants, variant);
    variants.push_back(variant);  // capacity reserved: no allocation under the lock
    if (variants.size() > max_variants_) {
      // The bound: the least recently stored variant goes (both tiers).
      victim = variants.front();
      variants.erase(variants.begin());
      evict = true;
    }
  }
  if (evict) dropVariants({victim}, ssd_allowed);
  return true;
}

void Cache::dropVariants(const std::vector<CacheKey>& variants, bool ssd_allowed) {
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
    if (ssd_ && ssd_allowed) ssd_->remove(variant);
    variants_dropped_.fetch_add(1, std::memory_order_relaxed);
  }
}

void Cache::onUncacheable(const ObjectRef& object) {
  ObjectRef dropped;
  {
    Shard& shard = shardFor(object->key());
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.slots.find(object->key());
    if (it == shard.slots.end() || it->second.pending != object) return;
    it->second.pending.reset();
    fills_in_flight_.fetch_sub(1, std::memory_order_relaxed);
    // The origin no longer allows storing: a stale predecessor must not be served either.
    dropped = std::move(it->second.current);
    it->second.pass_until = clock_.wallNow() + kHitForPassTtl;
  }
  if (dropped) unlinkFromPolicy(*dropped);
  // Only a key whose route may use the SSD tier can have a copy there.
  if (ssd_ && object->ssdAllowed()) ssd_->remove(object->key());
}

void Cache::onAbort(const ObjectRef& object) {
  Shard& shard = shardFor(object->key());
  std::lock_guard<std::mutex> lock(shard.mu);
  auto it = shard.slots.find(object->key());
  if (it == shard.slots.end() || it->second.pending != object) return;
  it->second.pending.reset();
  fills_in_flight_.fetch_sub(1, std::memory_order_relaxed);
  if (it->second.empty()) shard.slots.erase(it);
}

void Cache::onComplete(const ObjectRef& object, bool keep) {
  // Bigger than the whole tier: admitting it would only flush everything else.
  if (keep && object->body().allocatedBytes() + kObjectOverheadBytes > policy_.capacityBytes()) {
    keep = false;
  }
  if (keep || object->fromSsd()) {
    // A variant is kept only while its URL's marker is the one it was filled under; recorded
    // there first, so that a purge from now on finds it. One read from the SSD is recorded
    // too, kept in RAM or not: its copy there is a stored variant (e.g. after a restart).
    CacheKey primary;
    uint64_t generation = 0;
    {
      Shard& shard = shardFor(object->key());
      std::lock_guard<std::mutex> lock(shard.mu);
      auto it = shard.slots.find(object->key());
      if (it != shard.slots.end() && it->second.pending == object) {
        primary = it->second.primary;
        generation = it->second.variant_of;
      }
    }
    if (generation != 0 &&
        !registerVariant(primary, generation, object->key(), object->ssdAllowed())) {
      keep = false;
    }
  }
  ObjectRef replaced;
  {
    Shard& shard = shardFor(object->key());
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.slots.find(object->key());
    if (it == shard.slots.end() || it->second.pending != object) return;  // purged meanwhile
    it->second.pending.reset();
    fills_in_flight_.fetch_sub(1, std::memory_order_relaxed);
    if (keep) {
      replaced = std::exchange(it->second.current, object);
    } else if (!it->second.current && !it->second.vary) {
      shard.slots.erase(it);
    }
  }
  if (replaced) unlinkFromPolicy(*replaced);
  if (!keep) return;
  admit(object);
  if (ssd_admission_ == conf::SsdAdmission::kFill) offerToSsd(object, clock_.wallNow());
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
    {
      Shard& shard = shardFor(victim->key());
      std::lock_guard<std::mutex> lock(shard.mu);
      auto it = shard.slots.find(victim->key());
      if (it == shard.slots.end() || it->second.current != victim) continue;  // replaced
      it->second.current.reset();
      if (it->second.empty()) shard.slots.erase(it);
    }
    // Queued, not written: the SSD writer thread does the work.
    if (ssd_admission_ == conf::SsdAdmission::kEvict) offerToSsd(victim, now);
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

CacheStats Cache::stats() const {
  CacheStats s;
  {
    std::lock_guard<std::mutex> lock(policy_mu_);
    s.objects = resident_.size();
    s.bytes = policy_.usedBytes();
    s.capacity_bytes = policy_.capacityBytes();
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
  s.variants_dropped = variants_dropped_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace streamedge::cache
