// Cache: the sharded index (key → current object, in-flight fill) plus the RAM tier's byte
// budget and S3-FIFO eviction. lookup() decides, atomically per key, whether the caller serves a
// hit, serves or revalidates a stale object, attaches to a fill in flight, or becomes the one
// filler of a miss — so however many requests arrive on however many workers, one origin fetch
// per object happens.
//
// Thread-safety: all methods are thread-safe. The index is sharded (one mutex per shard); the
// eviction policy has its own mutex taken on admission only (hits bump a lock-free counter).
// No I/O and no allocation of body memory happen under a lock.
//
// With an SSD tier attached (attachSsd), a miss whose key has a fresh copy on SSD is reported as
// kSsd: the caller holds the one FillWriter for the key (so viewers arriving meanwhile coalesce
// on it as on any fill) and hands it to readFromSsd(), which completes it from the SSD copy or,
// when the copy turns out gone or damaged, gives it back for an origin fetch. A stale SSD copy
// that has validators (ETag, Last-Modified) is read too and handed back as the fill's stale
// object: the origin fetch is a revalidation, and a 304 keeps the SSD bytes. RAM evictions
// (or completed fills, with admission = "fill") of objects whose route allows it are queued
// for the SSD writer thread; SSD hits are admitted to RAM, where S3-FIFO keeps the hot ones.
//
// Vary (RFC 9111 §4.1, see vary.h): the slot of a URL's key (its primary key) learns, from the
// first storable answer that says Vary, the field names its answers vary on (the URL's vary
// marker) and the keys of the variants stored for it (RAM or SSD; at most max_variants, the least
// recently stored dropped beyond). A lookup of a key with a marker looks up the variant the
// request selects instead, an ordinary object under its own key (own fill, coalescing,
// freshness, eviction, SSD copy). A fill started before the marker was known is moved to the
// variant its own request selects when its head says Vary.
//
// Markers are bounded: a variant that leaves the cache for good (evicted from RAM without an SSD
// copy, reclaimed or damaged on the SSD, purged, uncacheable now) leaves its marker's list, and a
// marker with no variants and no variant fill in flight is removed with its slot. Their memory
// (an estimate per marker, vary_marker_bytes) is charged to the RAM tier's byte budget, and each
// index shard keeps at most max_vary_urls / kShards markers and half the RAM budget / kShards
// bytes of them: beyond, its least recently used marker is dropped with its variants (both tiers).
//
// Markers survive a restart through the SSD tier rather than a file of their own: every variant
// written to the SSD carries its URL's key (ssd_format.h), and the store's start-up rebuild hands
// the variants it found, with the field names of their stored Vary, to adoptSsdVariants(), which
// makes the markers again. So after a restart the variants on the SSD are found by lookups and
// removed by a purge of their URL, and what the device holds is the one source of truth (no
// second file to keep consistent with it across crashes). Variants that were only in RAM are
// gone after a restart anyway.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "cache/cache_key.h"
#include "cache/object.h"
#include "cache/purge_labels.h"
#include "cache/retention.h"
#include "cache/s3fifo.h"
#include "cache/ssd_store.h"
#include "cache/vary.h"
#include "conf/clock.h"
#include "conf/config.h"

namespace streamedge::cache {

class Cache;

// The right, and the duty, to fill one object. Move-only. Destroying a FillWriter that was not
// finish()ed aborts the fill: readers see kAborted, the index forgets the object, and a stale
// predecessor (if any) stays in place for stale-if-error.
class FillWriter {
 public:
  FillWriter() = default;
  FillWriter(FillWriter&& o) noexcept;
  FillWriter& operator=(FillWriter&& o) noexcept;
  FillWriter(const FillWriter&) = delete;
  FillWriter& operator=(const FillWriter&) = delete;
  ~FillWriter();

  explicit operator bool() const { return static_cast<bool>(object_); }
  const ObjectRef& object() const { return object_; }
  // The complete object this fill revalidates, if it is a revalidation.
  const ObjectRef& stale() const { return stale_; }
  // The retention limit of the lookup that made this fill (0: none). A stale object past it
  // must not be served, not even when the origin fails (stale-if-error).
  conf::Millis retention() const { return retention_; }
  bool stalePastRetention(WallTime now) const {
    return stale_ && pastRetention(stale_->freshness().response_time, retention_, now);
  }

  // Publishes the response head. `storable` false: the object is streamed to its readers but
  // not kept (e.g. a 503). `shareable` false (private, no-store, Set-Cookie, Authorization):
  // the object is unlinked from the index at once, a short hit-for-pass marker is left so that
  // followers do not queue behind it, and coalesced readers must fetch for themselves.
  // `request`: the request fields the fill sent the origin; when the head says Vary, the
  // object becomes the variant they select (null: no fields). A head with "Vary: *" (or a Vary
  // that cannot be read) is treated as not shareable: it matches no other request.
  void publishHead(std::shared_ptr<const ResponseHead> head, const Freshness& freshness,
                   bool storable, bool shareable, const RequestFieldSource* request = nullptr);
  // The origin answered 304 to a revalidation: the new object keeps the stale object's body and
  // gets `merged_head` (stale head updated with the 304's fields, RFC 9111 §4.3.4) and new
  // freshness; it replaces the stale object and is complete at once. Ends the fill.
  void finishNotModified(std::shared_ptr<const ResponseHead> merged_head,
                         const Freshness& freshness);
  // The origin failed (5xx, or no answer) while revalidating a stale copy read from the SSD
  // tier, within its stale-if-error window (RFC 5861 §4): the fill completes with that copy,
  // still stale (served as stale; the next request revalidates again). Ends the fill. For a
  // stale copy from RAM, abort() instead: its readers hold the stale object already.
  void finishWithStale();
  // Appends body bytes. Returns false when the object grew past the cache's max object size:
  // the fill goes on for current readers but the object will not be kept.
  bool append(const uint8_t* data, size_t len);
  // See CacheObject::setLifetime.
  void setLifetime(conf::Seconds lifetime);
  // The body is complete. If the head had a Content-Length and the body length differs, the
  // fill is aborted instead and false is returned (never kept or served as complete).
  bool finish();
  // Explicit abort (same as destruction). `timed_out`: see CacheObject::markAborted.
  void abort(bool timed_out = false);
  // Abort because the origin is at its concurrency cap (readers answer 503, not 502/504).
  void abortBusy();

 private:
  // Completes the fill with a verified copy read from the SSD tier; `promote`: keep it in RAM.
  void finishFromSsd(const SsdHit& hit, bool promote);
  // A copy from the SSD tier that is still being verified chunk by chunk (SsdHit::streaming):
  // the head and the verified bytes are published at once, readers get more as ssdBodyGrew()
  // says; completeFromSsd() when all is verified, abort() when a chunk fails (readers are cut
  // after the verified bytes, never shown a byte past them).
  void startFromSsd(const SsdHit& hit);
  void ssdBodyGrew();
  void completeFromSsd(bool promote);

  friend class Cache;
  FillWriter(Cache* cache, ObjectRef object, ObjectRef stale)
      : cache_(cache), object_(std::move(object)), stale_(std::move(stale)) {}

  Cache* cache_ = nullptr;
  ObjectRef object_;
  ObjectRef stale_;
  bool storable_ = true;
  bool too_big_ = false;   // over max_object_bytes: streamed to readers but not kept
  bool overlong_ = false;  // more bytes than the Content-Length: aborted at finish()
  conf::Millis retention_{0};
};

// The retention limit a lookup applies (retention.h): its vhost's. `vhost` names it in the
// metric; it only needs to live for the lookup() call.
struct RetentionLimit {
  conf::Millis max_age{0};  // 0: none
  std::string_view vhost;
};

struct LookupResult {
  enum class Kind {
    kHit,    // `object` is complete and fresh: deliver it
    kStale,  // `object` is complete but stale. `fill` set: caller revalidates. Else `pending`
             // is the revalidation in flight (wait on it, or serve stale if allowed)
    kMiss,   // nothing usable: `fill` set, caller fetches; `object` = fill.object()
    kBusy,   // `object` is being filled by someone else: attach as a reader
    kPass,   // recently found uncacheable: fetch without the cache
    kSsd,    // not in RAM, a fresh (or revalidatable) copy on SSD: `fill` set; pass it to
             // Cache::readFromSsd
  };
  Kind kind = Kind::kMiss;
  ObjectRef object;
  ObjectRef pending;
  FillWriter fill;
  // The URL's vary marker when it has one (the lookup was of the variant `key`): fills send the
  // origin these fields normalised (setVaryFields). Null otherwise.
  std::shared_ptr<const VaryNames> vary;
  CacheKey key;  // the key looked up: the URL's, or its variant's
};

struct CacheStats {
  uint64_t objects = 0;         // complete objects in the RAM tier
  uint64_t bytes = 0;           // their accounted bytes
  uint64_t capacity_bytes = 0;
  uint64_t evictions = 0;
  uint64_t admissions = 0;
  uint64_t fills_in_flight = 0;
  uint64_t index_slots = 0;     // keys the index holds (objects, fills, marks, vary markers)
  uint64_t ssd_hits = 0;          // fills completed from the SSD tier
  uint64_t ssd_fallbacks = 0;     // kSsd lookups that went to the origin after all
  uint64_t ssd_revalidations = 0; // stale SSD copies handed to the origin for revalidation
  uint64_t ssd_admissions = 0;    // objects queued for the SSD writer
  uint64_t fill_memory_bytes = 0;   // body bytes held by fills in flight (see fillMemoryBytes)
  uint64_t fill_memory_budget = 0;  // what windowed fills are held to
  uint64_t fill_window_bytes = 0;   // per windowed fill
  uint64_t vary_urls = 0;         // URLs with a vary marker now
  uint64_t vary_marker_bytes = 0; // their estimated memory (charged to the RAM tier's budget)
  uint64_t variants_dropped = 0;  // variants removed for a bound (per URL, markers) or a changed
                                  // Vary
};

class Cache final : public SsdVariantObserver {
 public:
  Cache(const conf::RamCacheConfig& config, const Clock& clock);
  ~Cache();
  Cache(const Cache&) = delete;
  Cache& operator=(const Cache&) = delete;

  // The SSD tier (owned by the caller, outliving its attachment) and when objects enter it.
  // Without it the cache is RAM only. The store hands over the variants its rebuild found (now
  // or when its background rebuild is done) and reports those that leave it. Normally before
  // any lookup; may also run while lookups run on other threads (a hot upgrade that failed
  // attaches the reopened store again).
  void attachSsd(SsdStore* store, conf::SsdAdmission admission);
  // From now on lookups, admissions and purges are RAM only and the store no longer calls back
  // (waits for a call in progress). May run while lookups run on other threads: a thread
  // that loaded the store before this call may still use it until its current operation ends,
  // so the caller destroys the store only after every such thread passed a quiescent point
  // (the proxy's workers each run a task posted after this call) and every read started on
  // it has completed.
  void detachSsd();

  // SsdVariantObserver (called by the attached store).
  std::vector<CacheKey> adoptSsdVariants(std::vector<SsdVariant> variants) override;
  void onSsdVariantsGone(const std::vector<SsdVariant>& variants) override;
  SsdStore* ssd() const { return ssdStore(); }

  // `ssd_allowed`: the route's storage policy lets this key use the SSD tier (read and write);
  // false never touches it. `request`: the request's fields, read only when the URL's answers
  // vary (null: a request without fields).
  // `retention`: the vhost's limit; an object (RAM or SSD, or queued for the SSD) past it is
  // removed from both tiers and the lookup goes on as if it had not been there (a miss).
  LookupResult lookup(const CacheKey& key, bool ssd_allowed = false,
                      const RequestFieldSource* request = nullptr, RetentionLimit retention = {});
  // The stored object for `key` when it is complete, fresh and within `retention`, else null;
  // never starts a fill, never reads the SSD tier, never looks through a vary marker (null for a
  // URL whose answers vary). For answering a request from another key's object (an LL-HLS
  // blocking reload answered by a newer playlist of the same URL).
  ObjectRef peekFresh(const CacheKey& key, RetentionLimit retention = {});
  // Completes a kSsd lookup's fill from the SSD tier through `engine` (the calling worker's;
  // the outcome arrives from its poll()). When the copy is gone, damaged (logged and dropped by
  // the store) or stale, `on_miss` gets the fill back, on this thread, to fetch from origin;
  // a stale copy with validators comes with it as fill.stale() (a revalidation).
  using SsdMissFn = std::function<void(FillWriter)>;
  void readFromSsd(FillWriter fill, IoEngine& engine, SsdMissFn on_miss);
  // Removes the object for `key` (current and hit-for-pass marker) and, when the URL's answers
  // vary, every variant known (both tiers) and the marker. In-flight fills go on but their
  // result is not kept. Returns true when something was removed.
  bool purge(const CacheKey& key);
  // purge(), counting the objects removed: the URL's own (RAM, SSD or a fill in flight) and
  // each of its variants, once each whatever the tiers held.
  size_t purgeObjects(const CacheKey& key);
  // Soft purge of `key` and, when the URL's answers vary, of every variant known: the stored
  // copies (RAM and SSD) stay but are stale from now on, so the next request revalidates them
  // (a conditional request when they have validators, else a full fetch). Returns how many
  // objects were marked.
  size_t invalidate(const CacheKey& key);
  // Purges (hard, or soft with `soft`) every stored object whose purge labels `selector`
  // matches: objects in RAM (and fills whose head has arrived), and on the SSD tier. Scans the
  // index shard by shard (each under its lock, no allocation under it) and the SSD index;
  // returns how many objects were removed or marked. `scanned` (optional): RAM slots looked at.
  size_t purgeMatching(const PurgeSelector& selector, bool soft, uint64_t* scanned = nullptr);

  // Publishes a derived representation of the complete `object` in `slot` (first writer wins,
  // see CacheObject::publishDerived) and charges what it holds to the RAM tier while the object
  // is resident there (it may evict; counted once, whether the object is admitted before or
  // after). Returns the representation now in the slot (ours or the earlier one); null for a
  // slot out of range.
  const DerivedRepresentation* attachDerived(const ObjectRef& object, size_t slot,
                                             std::unique_ptr<DerivedRepresentation> rep);

  // A fill that is never visible to lookups (pass requests): same streaming and abort rules.
  FillWriter privateFill(const CacheKey& key);

  // Retention limits by vhost (retention.h), for what lookups cannot judge: objects nobody asks
  // for (sweepRetention) and writes to the SSD tier. Any thread; a reload sets the new table.
  void setRetention(std::shared_ptr<const RetentionTable> table);
  // One step of the retention sweep: looks at about `budget` RAM index slots and `budget` SSD
  // index entries from where the previous step stopped, and removes the objects whose vhost
  // (their :vhost purge label) is past its limit in the table: from RAM, and tombstoned on the
  // SSD. Returns how many copies it removed (one per tier). Any thread, one at a time (a mutex serialises
  // callers); does nothing without a table that has limits.
  size_t sweepRetention(size_t budget);
  // Objects removed for retention so far, per vhost and tier (lookups, SSD reads, sweeps).
  std::vector<RetentionExpiredCount> retentionExpired() const;

  CacheStats stats() const;
  uint64_t maxObjectBytes() const { return max_object_bytes_; }
  // Answers that are not kept (pass, uncacheable, over the object limit) stream through a window
  // of `window_bytes` per fill; windowed fills shrink to the minimum while the memory held by all
  // fills is over `budget_bytes`. Any thread (a reload changes them for fills that start later).
  void setFillLimits(uint64_t window_bytes, uint64_t budget_bytes);
  uint64_t fillWindowBytes() const { return fill_window_bytes_.load(std::memory_order_relaxed); }
  uint32_t maxVariants() const { return max_variants_; }
  // Estimated memory of one vary marker with room for `variants` keys and these names.
  static uint64_t varyMarkerBytes(size_t variants, const VaryNames& names);
  const Clock& clock() const { return clock_; }

  static constexpr conf::Seconds kHitForPassTtl{10};

 private:
  friend class FillWriter;
  // A URL whose answers vary: on its primary key's slot.
  struct VaryMarker {
    CacheKey primary;
    std::shared_ptr<const VaryNames> names;
    uint64_t generation = 0;  // unique per marker: a variant fill registers with its own only
    // Variants stored (in RAM or on SSD), least recently stored first. Grown (up to
    // max_variants + 1) outside the shard lock: no allocation under it.
    std::vector<CacheKey> variants;
    // Variant fills in flight that will register here (counted while the marker exists).
    uint32_t fills = 0;
    uint64_t charged_bytes = 0;  // what this marker adds to vary_marker_bytes_
    // The shard's markers by use, guarded by the shard's mutex.
    VaryMarker* newer = nullptr;
    VaryMarker* older = nullptr;
  };
  struct Slot {
    ObjectRef current;   // complete (fresh or stale)
    ObjectRef pending;   // being filled
    WallTime pass_until{};
    std::unique_ptr<VaryMarker> vary;  // primary key of a URL whose answers vary
    // A variant's slot: its URL's primary key and the marker generation it belongs to (0: not
    // a variant).
    CacheKey primary{};
    uint64_t variant_of = 0;
    bool empty() const { return !current && !pending && pass_until == WallTime{} && !vary; }
  };
  static constexpr size_t kShards = 64;
  struct Shard {
    std::mutex mu;
    std::unordered_map<CacheKey, Slot, CacheKeyHash> slots;  // guarded by mu
    // The vary markers of this shard's slots, most recently used first. Guarded by mu.
    VaryMarker* newest = nullptr;
    VaryMarker* oldest = nullptr;
    size_t markers = 0;
    uint64_t marker_bytes = 0;
    // Hit-for-pass marks in the order they were set (all live kHitForPassTtl, so also in the
    // order they expire): a slot left holding only an expired mark is erased when later marks
    // are set, so URLs that were uncacheable once and never asked again leave nothing behind.
    std::deque<std::pair<CacheKey, WallTime>> pass_marks;  // guarded by mu
  };
  // Erases slots whose only content is an expired hit-for-pass mark (at most `budget` of the
  // oldest marks looked at). `shard`.mu held.
  static void sweepPassMarksLocked(Shard& shard, WallTime now, size_t budget);
  Shard& shardFor(const CacheKey& key) { return shards_[key.lo & (kShards - 1)]; }
  using MarkerList = std::vector<std::unique_ptr<VaryMarker>>;  // freed outside the locks
  // Locks two shards (once when they are the same), in a deadlock-free order. The only place
  // where two shard locks are held: a variant's slot and its URL's.
  class PairLock {
   public:
    PairLock(Shard& a, Shard& b);

   private:
    std::unique_lock<std::mutex> a_;
    std::unique_lock<std::mutex> b_;
  };
  // Calls fn(Slot* slot, Shard& shard, Shard* url_shard) with `key`'s shard locked and, when its
  // slot is a variant's, its URL's shard too (url_shard; else null). `slot` is null when
  // absent; fn may erase it.
  template <typename Fn>
  void withSlot(const CacheKey& key, Fn&& fn);

  // Marker bookkeeping; the URL's shard `ps` locked.
  void linkMarkerLocked(Shard& ps, Slot& slot, std::unique_ptr<VaryMarker> marker,
                        MarkerList& evicted);
  std::unique_ptr<VaryMarker> unlinkMarkerLocked(Shard& ps, Slot& slot);
  static void touchMarkerLocked(Shard& ps, VaryMarker& marker);
  void chargeMarkerLocked(Shard& ps, VaryMarker& marker);
  // Drops the least recently used markers of `ps` (never `keep`) while over its bounds.
  void enforceMarkerBoundsLocked(Shard& ps, const VaryMarker* keep, MarkerList& evicted);
  // The marker of `primary` when it is `generation` (any generation for 0); else null.
  static VaryMarker* markerLocked(Shard& ps, const CacheKey& primary, uint64_t generation);
  // Removes `primary`'s marker (and its slot, if then empty) when it has no variants and no
  // fills in flight.
  void freeIfUnusedLocked(Shard& ps, const CacheKey& primary, MarkerList& freed);
  // Variant fill accounting; both the variant's and the URL's shard locked (`ps` the URL's).
  void countFillLocked(Shard& ps, const Slot& variant_slot);
  // The slot's fill ended or moved away: pending cleared (fills_in_flight_ too unless `moved`).
  void endFillLocked(Slot& slot, Shard* ps, bool moved, MarkerList& freed);
  // `variant` left the cache for good: out of its URL's marker (removed if then unused).
  void forgetVariantLocked(Shard& ps, const CacheKey& primary, const CacheKey& variant,
                           MarkerList& freed);
  // `variant` of `primary` left a tier: forgotten unless it is still in RAM, being filled, on
  // the SSD or queued for it.
  void variantLeft(const CacheKey& primary, const CacheKey& variant);
  // Charges vary_marker_bytes_ to the policy (policy_mu_ held).
  void applyMarkerChargeLocked();

  // lookup() of one key. `variant_of` != 0: `key` is a variant of `primary` under that marker
  // generation. Else, when `key` has a vary marker, the variant `request` selects is looked up.
  LookupResult lookupKey(const CacheKey& key, bool ssd_allowed, const CacheKey& primary,
                         uint64_t variant_of, const RequestFieldSource* request,
                         RetentionLimit retention);
  // Retention: removes `key`'s RAM object when it is (still) past `max_age` at `now`, and its
  // SSD copy when that is past it too; counted under `vhost` (the object's label when empty).
  // Returns how many copies were removed (RAM, SSD). No lock held.
  size_t expireKey(const CacheKey& key, conf::Millis max_age, WallTime now, std::string_view vhost);
  // Retention: tombstones `key`'s SSD copy (`primary`: its URL's key when it is a variant) and
  // counts it under `vhost`. No lock held.
  void expireSsdCopy(const CacheKey& key, const CacheKey& primary, std::string_view vhost);
  void countExpired(std::string_view vhost, bool ssd);
  std::shared_ptr<const RetentionTable> retentionTable() const;
  // purge() of one key; `variants` (optional): receives the variants of its marker.
  // `had_object` (optional): whether a stored object or a fill was there (not just a marker).
  bool purgeKey(const CacheKey& key, std::vector<CacheKey>* variants, bool* had_object = nullptr);
  // Soft purge of one key (both tiers); `variants` (optional): receives its marker's variants.
  bool invalidateKey(const CacheKey& key, std::vector<CacheKey>* variants);

  // FillWriter callbacks.
  // The head of `object`'s fill is about to be published (shareable): puts the fill in the slot
  // of the variant its request selects (or of the URL when the answer does not vary), and, for
  // a storable answer, sets, replaces or clears the URL's vary marker. False when the fill is
  // in no slot afterwards (purged meanwhile, its marker gone, its variant filling already):
  // then it is not kept.
  bool placeFill(const ObjectRef& object, const VarySpec& vary, const RequestFieldSource* request,
                 bool storable);
  // A variant completed and is kept: records it in its URL's marker (when that is still
  // `generation`); returns false when the marker is gone or changed (then it is not kept).
  bool registerVariant(const CacheKey& primary, uint64_t generation, const CacheKey& variant,
                       bool ssd_allowed);
  // Removes stored variants (both tiers; `ssd_allowed`: whether they may have an SSD copy).
  void dropVariants(const std::vector<CacheKey>& variants, bool ssd_allowed);
  // The variants of markers dropped for the bounds (`ssd`: also from the SSD tier).
  void dropMarkers(MarkerList& evicted, bool ssd, std::vector<CacheKey>* ssd_keys = nullptr);
  void onUncacheable(const ObjectRef& object);
  void onComplete(const ObjectRef& object, bool keep);
  void onAbort(const ObjectRef& object);
  void admit(const ObjectRef& object);
  // Unlinks objects the policy evicted (policy_mu_ not held) and offers them to the SSD tier.
  void dropEvicted(std::vector<ObjectRef>& victims);
  // Collects the policy's victims until it fits. policy_mu_ held.
  void evictLocked(std::vector<ObjectRef>& victims);
  // Queues `object` for the SSD tier when the route allows it and it is worth keeping.
  // `primary`: the URL's key when the object is a variant (written with it), else zero.
  void offerToSsd(const ObjectRef& object, WallTime now, const CacheKey& primary);
  // A stale copy read from the SSD tier, verified whole, backs `fill` as its revalidation.
  void useSsdStale(FillWriter& fill, const SsdHit& hit);
  // Promotion filter: true on the second SSD read of `key` within the filter's memory (a
  // direct-mapped table of recently read keys; a collision forgets, never promotes wrongly).
  bool secondSsdRead(const CacheKey& key);
  void unlinkFromPolicy(CacheObject& object);

  const Clock& clock_;
  const uint64_t max_object_bytes_;
  const uint32_t max_variants_;
  const size_t markers_per_shard_;       // max_vary_urls / kShards, rounded up
  const uint64_t marker_bytes_per_shard_;  // half the RAM budget / kShards
  const uint64_t ram_capacity_bytes_;
  std::array<Shard, kShards> shards_;

  mutable std::mutex policy_mu_;
  S3Fifo policy_;  // guarded by policy_mu_
  std::unordered_map<CacheKey, ObjectRef, CacheKeyHash> resident_;  // guarded by policy_mu_

  // The attached store: set by attachSsd, cleared by detachSsd, loaded once per operation
  // (ssdStore()). Written rarely (start, hot upgrade): an uncontended read on the hot path.
  std::atomic<SsdStore*> ssd_{nullptr};
  SsdStore* ssdStore() const { return ssd_.load(std::memory_order_acquire); }
  static constexpr size_t kRecentSsdReads = 1 << 16;
  std::unique_ptr<std::atomic<uint64_t>[]> recent_ssd_reads_;  // key.hi by key.lo slot; made once
  std::atomic<conf::SsdAdmission> ssd_admission_{conf::SsdAdmission::kEvict};

  // Retention (retention.h).
  mutable std::mutex retention_mu_;
  std::shared_ptr<const RetentionTable> retention_;  // guarded by retention_mu_
  std::atomic<bool> retention_on_{false};            // retention_ has limits
  std::mutex sweep_mu_;                              // one sweep step at a time
  size_t sweep_shard_ = 0;                           // guarded by sweep_mu_
  size_t sweep_bucket_ = 0;                          // guarded by sweep_mu_
  mutable std::mutex expired_mu_;
  std::map<std::string, RetentionExpiredCount, std::less<>> expired_;  // guarded by expired_mu_

  std::atomic<uint64_t> evictions_{0};
  std::atomic<uint64_t> ssd_hits_{0};
  std::atomic<uint64_t> ssd_fallbacks_{0};
  std::atomic<uint64_t> ssd_revalidations_{0};
  std::atomic<uint64_t> ssd_admissions_{0};
  std::atomic<uint64_t> admissions_{0};
  std::atomic<uint64_t> fills_in_flight_{0};
  std::atomic<uint64_t> fill_window_bytes_{0};
  std::atomic<uint64_t> next_vary_generation_{1};
  std::atomic<uint64_t> vary_urls_{0};
  std::atomic<uint64_t> vary_marker_bytes_{0};
  std::atomic<uint64_t> variants_dropped_{0};
};

}  // namespace streamedge::cache
