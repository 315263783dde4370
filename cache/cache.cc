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
                             bool storable, bool shareable) {
  if (!object_) return;
  storable_ = storable && shareable;
  const std::optional<uint64_t> expected = head->content_length;
  if (expected && *expected > cache_->maxObjectBytes()) too_big_ = true;
  if (!shareable) cache_->onUncacheable(object_);
  object_->publishHead(std::move(head), freshness, shareable, Ref<Body>::make(expected));
  // Not kept: only a window of it is held while it streams to its readers.
  if (!storable_ || too_big_) object_->makeWindowed(cache_->fillWindowBytes());
}

void FillWriter::finishNotModified(std::shared_ptr<const ResponseHead> merged_head,
                                   const Freshness& freshness) {
  if (!object_ || !stale_) return;
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
    : clock_(clock), max_object_bytes_(config.max_object_bytes), policy_(config.size_bytes) {
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

LookupResult Cache::lookup(const CacheKey& key, bool ssd_allowed) {
  ssd_allowed = ssd_allowed && ssd_ != nullptr;
  const WallTime now = clock_.wallNow();
  Shard& shard = shardFor(key);
  ObjectRef candidate;  // allocated outside the lock when a fill must start
  for (;;) {
    ObjectRef taken_back;  // just evicted, still queued for the SSD: back into RAM
    {
      std::lock_guard<std::mutex> lock(shard.mu);
      auto it = shard.slots.find(key);
      Slot* slot = it == shard.slots.end() ? nullptr : &it->second;
      if (slot && slot->current) {
        LookupResult r;
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
        r.kind = LookupResult::Kind::kBusy;
        r.object = slot->pending;
        return r;
      } else if (slot && now < slot->pass_until) {
        LookupResult r;
        r.kind = LookupResult::Kind::kPass;
        return r;
      } else if (ObjectRef queued = ssd_allowed && !candidate ? ssd_->queuedObject(key)
                                                              : ObjectRef();
                 queued && queued->freshness().isFresh(now)) {
        // Evicted a moment ago and not indexed by the SSD writer yet: a hit all the same.
        // Looked for on the first pass only (one queue lock per miss); an object queued
        // between the passes is simply a miss.
        Slot& s = slot ? *slot : shard.slots[key];
        s.current = queued;
        s.pass_until = WallTime{};
        taken_back = std::move(queued);
      } else if (candidate) {
        Slot& s = slot ? *slot : shard.slots[key];
        s.pending = candidate;
        s.pass_until = WallTime{};
        fills_in_flight_.fetch_add(1, std::memory_order_relaxed);
        LookupResult r;
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
    if (taken_back) {
      admit(taken_back);  // outside the shard lock, like every admission
      LookupResult r;
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
  ObjectRef removed;
  bool found = false;
  {
    Shard& shard = shardFor(key);
    std::lock_guard<std::mutex> lock(shard.mu);
    auto it = shard.slots.find(key);
    if (it != shard.slots.end()) {
      found = static_cast<bool>(it->second.current) || static_cast<bool>(it->second.pending);
      if (it->second.pending) fills_in_flight_.fetch_sub(1, std::memory_order_relaxed);
      removed = std::move(it->second.current);
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
  if (!it->second.current && it->second.pass_until == WallTime{}) shard.slots.erase(it);
}

void Cache::onComplete(const ObjectRef& object, bool keep) {
  // Bigger than the whole tier: admitting it would only flush everything else.
  if (keep && object->body().allocatedBytes() + kObjectOverheadBytes > policy_.capacityBytes()) {
    keep = false;
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
    } else if (!it->second.current) {
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
      if (!it->second.pending && it->second.pass_until == WallTime{}) shard.slots.erase(it);
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
  return s;
}

}  // namespace streamedge::cache
