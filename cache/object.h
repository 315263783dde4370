// A cache object: an immutable response head plus a body that can be read while it is filled.
//
// The filler (one FillWriter, see cache.h) publishes the head, appends body bytes and finishes
// or aborts; any number of readers on any thread read the bytes published so far and subscribe
// an ObjectWaiter to hear of progress. States, in order:
//   kPending    no head yet (origin not answered); readers wait
//   kStreaming  head published, body growing; readers read what exists
//   kComplete   body complete and length-checked: the only state served as a hit
//   kAborted    the fill failed (no head, or body cut short / over-long); readers must close
// A published head that may not be shared (no-store, private, Set-Cookie...) is marked
// !shareable(): readers other than the filler's own viewer must fetch for themselves.
//
// Windowed objects (answers that are not being stored: pass, uncacheable, bigger than the object
// limit) keep only a bounded window of body bytes: every reader reports how far it has handed
// the body on (advance()), whole blocks that all readers have passed are released, and the
// filler pauses its origin reads while the bytes held reach the window (pauseIfWindowFull()),
// to be told through its FillListener when readers make room again or all of them have left.
// A reader that arrives after bytes were released cannot read the object (releasedBytes() > 0):
// it fetches its own.
//
// Derived representations: a complete object may carry up to kDerivedSlots representations made
// from its bytes by a higher layer (proxy/ attaches compressed copies), each an immutable head
// and body under a small slot id; the cache knows nothing of what they are. Each slot is
// published once (first writer wins) and lives and dies with the object.
//
// Thread-safety: state, head and length are published with release/acquire; the block table is
// guarded by mu_ while filling and immutable once complete; derived slots are atomic pointers
// (publish with compare-exchange, read with acquire). Objects and bodies are refcounted (Ref<>);
// a Body may be shared by two objects (a 304 revalidation keeps the bytes, new head).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "cache/cache_key.h"
#include "cache/freshness.h"
#include "cache/ref.h"
#include "cache/response_head.h"
#include "cache/s3fifo.h"

namespace streamedge::cache {

// Told that an object changed (head published, bytes appended, complete, aborted). Called on the
// filler's thread with the object's lock held: implementations must only post a wake-up to their
// own thread (no I/O, no locks of their own that readers take while calling the object).
class ObjectWaiter {
 public:
  virtual void onObjectChanged() noexcept = 0;

 protected:
  ~ObjectWaiter() = default;
};

// The filler of a windowed object, told (any thread, object lock held: post a wake-up to the
// filler's own thread and return) that its window opened again, that every reader left, or
// that its window is stuck (see CacheObject::windowPaused, abandoned).
class FillListener {
 public:
  virtual void onFillWindowChanged() noexcept = 0;

 protected:
  ~FillListener() = default;
};

// Memory held by fills in flight (body blocks of objects not yet complete, and of windowed
// objects until they are freed), process-wide, and the budget windowed fills are held to: over
// the budget, a windowed fill keeps at most one block ahead of its slowest reader.
uint64_t fillMemoryBytes();
void setFillMemoryBudget(uint64_t bytes);
uint64_t fillMemoryBudget();

// Heap hand-back. Body blocks filled from the origin come from malloc, and glibc keeps what is
// freed in its arenas until malloc_trim(): when the RAM tier turns over quickly (an SSD tier
// promoting objects whose buffers are their own mappings, evicting malloc'd ones), the freed
// blocks pile up faster than a periodic trim returns them, and the process briefly holds
// nearly twice the RAM tier. Every owned block freed is counted here; each time the count
// since the last takeFreedBodyBytes() crosses `threshold`, `notify(arg)` runs on the freeing
// thread (it should wake a thread that trims). Set once at start, before bodies are freed.
void setBodyFreeNotify(uint64_t threshold, void (*notify)(void*), void* arg);
// Bytes of owned body blocks freed since the last call (and resets the count).
uint64_t takeFreedBodyBytes();

// The body bytes: fixed-size blocks appended by one writer. Readers take contiguous runs.
class Body final : public RefCounted {
 public:
  static constexpr size_t kBlockBytes = 256 * 1024;

  // `expected` (the Content-Length, when known) sizes the first allocations exactly.
  explicit Body(std::optional<uint64_t> expected);
  // A complete, frozen body over `len` bytes at `data` that live in memory `owner` keeps alive
  // (e.g. a verified SSD read buffer): no copy. `owner_bytes` is what it costs (accounting).
  static Ref<Body> adopt(std::shared_ptr<const void> owner, const uint8_t* data, uint64_t len,
                         uint64_t owner_bytes);

  // As adopt(), but only the first `readable` bytes are readable until extendAdopted() says
  // more are (an SSD entry verified chunk by chunk: no byte is readable before it is verified).
  static Ref<Body> adoptGrowing(std::shared_ptr<const void> owner, const uint8_t* data,
                                uint64_t len, uint64_t owner_bytes, uint64_t readable);
  // Filler only, on a body made by adoptGrowing(): bytes below `readable` (at most its length)
  // are readable from now on.
  void extendAdopted(uint64_t readable);

  // Bytes readable now (acquire).
  uint64_t length() const { return length_.load(std::memory_order_acquire); }
  // Bytes below this offset were released (windowed bodies only; a multiple of kBlockBytes).
  uint64_t releasedBytes() const { return released_.load(std::memory_order_acquire); }
  // Points `*data` at the contiguous run starting at `pos` and returns its size (0 when no byte
  // at `pos` exists yet, or it was released). The run stays valid while the Body is alive and,
  // for a windowed body, until the block is released: to keep it longer, use peekPinned.
  size_t peek(uint64_t pos, const uint8_t** data) const;
  // As peek, and pins the run's memory until unpin(*pin) (e.g. an evbuffer reference's cleanup):
  // it outlives the Body and a release of its block. `*pin` is set only when the run is not
  // empty.
  // `file`, when given, is set to where the run lies in a shared memory file (fd -1 when it is
  // heap or adopted memory), for sending by reference with sendfile (see body_arena.h).
  struct FileRun {
    int fd = -1;
    uint64_t offset = 0;
  };
  size_t peekPinned(uint64_t pos, const uint8_t** data, void** pin,
                    FileRun* file = nullptr) const;
  static void unpin(void* pin);
  // Filler only. Appends bytes; the new length is published after the copy.
  void append(const uint8_t* data, size_t len);
  // Slots in the block table (a windowed body drops released ones; for tests and accounting).
  size_t tableSlots() const {
    std::lock_guard<std::mutex> lock(mu_);
    return blocks_.size();
  }
  // Bytes allocated and still held (for accounting).
  uint64_t allocatedBytes() const { return allocated_.load(std::memory_order_relaxed); }
  // Complete and kept whole: blocks immutable, read without the lock. No effect on a windowed
  // body (its blocks keep being released).
  void freeze();
  // Filler only, before the body is complete: from now on blocks may be released.
  void setWindowed();
  // Releases every whole block below `pos` (all readers have handed those bytes on). Returns the
  // bytes no longer held. Windowed bodies only.
  uint64_t releaseBelow(uint64_t pos);

 private:
  ~Body() override;
  struct Block;
  struct Slot {
    Block* own = nullptr;  // refcounted block memory; null for adopted views and released blocks
    uint8_t* data = nullptr;
    size_t capacity = 0;
  };
  const std::optional<uint64_t> expected_;
  std::shared_ptr<const void> owner_;  // an adopted body's memory
  uint64_t adopted_len_ = 0;           // adoptGrowing(): the whole length, readable or not
  std::atomic<uint64_t> length_{0};
  std::atomic<uint64_t> allocated_{0};
  std::atomic<uint64_t> released_{0};
  std::atomic<bool> frozen_{false};  // complete: blocks_ immutable, no lock needed
  bool windowed_ = false;            // set by the filler before any release
  bool counts_as_fill_ = true;       // its blocks are counted in fillMemoryBytes()
  mutable std::mutex mu_;
  std::vector<Slot> blocks_;  // guarded by mu_ until frozen_; blocks_[0] is block base_
  size_t base_ = 0;           // guarded by mu_; windowed bodies drop released slots
  // The writer's copy of the last slot (the block being written), read without the lock.
  static constexpr size_t kNoTail = ~size_t{0};
  Slot tail_;
  size_t tail_index_ = kNoTail;
};

// A representation made from a complete object's bytes (e.g. an encoded copy): immutable.
struct DerivedRepresentation {
  // Null: deriving was tried and is not worth serving (e.g. no smaller); deliver the object.
  std::shared_ptr<const ResponseHead> head;
  Ref<Body> body;
  // What it holds in memory (body and head), for the RAM tier's accounting.
  uint64_t chargedBytes() const;
};

class CacheObject final : public RefCounted {
 public:
  static constexpr size_t kDerivedSlots = 4;

  enum class State : uint8_t { kPending, kStreaming, kComplete, kAborted };

  explicit CacheObject(const CacheKey& key) : key_(key) { eviction_.key = key; }

  const CacheKey& key() const { return key_; }
  // Filler side, before the head is published: the cache moves a fill to the key of the
  // variant its request selects (Vary, RFC 9111 §4.1). Readers look at key() only once they
  // have seen the head (whose publication orders this write before their read).
  void rekey(const CacheKey& key) {
    key_ = key;
    eviction_.key = key;
  }
  State state() const { return state_.load(std::memory_order_acquire); }
  bool isComplete() const { return state() == State::kComplete; }
  bool hasHead() const { State s = state(); return s == State::kStreaming || s == State::kComplete; }

  // Valid once hasHead() (or after a kAborted that had a head: check headPublished()).
  const ResponseHead& head() const { return *head_; }
  const std::shared_ptr<const ResponseHead>& headRef() const { return head_; }
  bool headPublished() const { return head_published_.load(std::memory_order_acquire); }
  const Freshness& freshness() const { return freshness_; }
  bool shareable() const { return shareable_; }
  // The Content-Length the body must reach, when the origin framed it so.
  std::optional<uint64_t> expectedLength() const { return head_->content_length; }
  // The body; valid once headPublished().
  Body& body() const { return *body_; }
  const Ref<Body>& bodyRef() const { return body_; }

  // Waiters: subscribe, then re-check state (no lost wake-up). After unsubscribe returns, the
  // waiter is never called again. Idempotent. A subscribed waiter is a reader at body offset
  // `pos` (what it needs next): a windowed object never releases bytes at or after it.
  void subscribe(ObjectWaiter* w, uint64_t pos = 0);
  void unsubscribe(ObjectWaiter* w);
  // Reader `w` has handed on every byte below `pos`. Cheap no-op unless the object is windowed.
  void advance(ObjectWaiter* w, uint64_t pos);
  bool windowed() const { return windowed_.load(std::memory_order_acquire); }
  // The reader was disconnected for holding a full window while other readers waited (see
  // cutSlowestReaders); it must close its viewer.
  bool readerCut(ObjectWaiter* w);

  EvictionNode& evictionNode() { return eviction_; }

  // A few bits the delivery layer derives from the immutable head, cached here so that hits do
  // not scan the head again (0: not computed yet; racing readers store the same value).
  uint8_t deliveryFacts() const { return delivery_facts_.load(std::memory_order_relaxed); }
  void setDeliveryFacts(uint8_t facts) const {
    delivery_facts_.store(facts, std::memory_order_relaxed);
  }

  // --- derived representations (any thread) ---
  // The representation published in `slot` (< kDerivedSlots), or null. Valid while the object
  // is alive (hold an ObjectRef).
  const DerivedRepresentation* derived(size_t slot) const {
    return slot < kDerivedSlots ? derived_[slot].load(std::memory_order_acquire) : nullptr;
  }
  // Publishes `rep` in `slot` unless one is there already. Returns the published one and
  // whether it is `rep` (the first writer wins; a later writer's `rep` is dropped). Null and
  // false for a slot out of range. Only for complete objects (DCHECK'd by callers).
  std::pair<const DerivedRepresentation*, bool> publishDerived(
      size_t slot, std::unique_ptr<DerivedRepresentation> rep);
  // Bytes held by the published representations.
  uint64_t derivedBytes() const;

  // Tiering. Set by the cache before the object is published (then read-only): whether its
  // route lets it go to the SSD tier, and whether its bytes were read from that tier unchanged
  // (so eviction need not write them again).
  void setSsdAllowed(bool allowed) { ssd_allowed_ = allowed; }
  bool ssdAllowed() const { return ssd_allowed_; }
  void setFromSsd() { from_ssd_ = true; }
  bool fromSsd() const { return from_ssd_; }

  // What the fill did with the answer, for Cache-Status (RFC 9211). Set by the fill before the
  // head is published (then read-only): `storing`, the fill means to keep the object (storable,
  // shareable, not known to be too big; a body that turns out too big or broken is still
  // dropped); `not_modified`, the object is a stored one refreshed by a 304.
  void setFillOutcome(bool storing, bool not_modified) {
    storing_ = storing;
    not_modified_ = not_modified;
  }
  bool storing() const { return storing_; }
  bool notModified() const { return not_modified_; }
  // The freshness lifetime computed when the head was published. Unlike freshness().lifetime,
  // which the filler may still lower until the object is complete (setLifetime), it may be read
  // by any thread once headPublished().
  conf::Seconds headLifetime() const { return head_lifetime_; }

  // Soft purge: from now on the object is stale whatever its freshness says (lookups revalidate
  // it; delivery of a stale object follows the usual rules). Any thread; never undone (a 304
  // makes a new object).
  void markInvalidated() { invalidated_.store(true, std::memory_order_release); }
  bool invalidated() const { return invalidated_.load(std::memory_order_acquire); }
  // Fresh at `now` and not soft-purged.
  bool freshAt(WallTime now) const { return !invalidated() && freshness_.isFresh(now); }

  // --- filler side (used by FillWriter and the cache) ---
  void publishHead(std::shared_ptr<const ResponseHead> head, const Freshness& f, bool shareable,
                   Ref<Body> body);
  void append(const uint8_t* data, size_t len);
  // An adopted growing body (Body::adoptGrowing) has more readable bytes: wakes the readers.
  void extendAdopted(uint64_t readable);
  // Replaces the freshness lifetime computed at head time (e.g. capped by the playlist target
  // duration found in the body). Filler only, before markComplete(); only lookups read the
  // lifetime, and they look at complete objects only (other fields may be read while streaming).
  void setLifetime(conf::Seconds lifetime) { freshness_.lifetime = lifetime; }
  void markComplete();
  // `timed_out`: the origin did not answer in time (readers answer 504 rather than 502).
  void markAborted(bool timed_out = false);
  bool abortedByTimeout() const { return timed_out_.load(std::memory_order_acquire); }
  // Aborted because the origin was at its concurrency cap (readers answer 503).
  void markAbortedBusy();
  bool abortedBusy() const { return busy_.load(std::memory_order_acquire); }

  // --- windowed fills (filler side) ---
  // From now on at most `window_bytes` of body are held ahead of the slowest reader. Filler
  // thread, after publishHead.
  void makeWindowed(uint64_t window_bytes);
  // The filler's listener (null to remove; after that returns it is never called again).
  void setFillListener(FillListener* listener);
  // True when the bytes held reached the window: the filler must stop reading its origin until
  // told that the window opened (windowPaused() false again). Atomic with the readers' advance:
  // no wake-up is lost.
  bool pauseIfWindowFull();
  bool windowPaused();
  // A windowed object still filling that no reader reads any more: the filler may stop.
  bool abandoned();
  // The window is full and at least one reader waits at the end of what was written: the
  // readers holding the window's start are cut (readerCut() true, woken). Returns how many.
  size_t cutSlowestReaders();

 private:
  ~CacheObject() override;
  void notifyLocked();
  // Windowed: releases what every reader passed, wakes a paused filler with room, tells the
  // filler when no reader is left. mu_ held.
  void updateWindowLocked();
  uint64_t heldBytes() const;

  CacheKey key_;  // changed only by rekey(), before the head is published
  std::atomic<State> state_{State::kPending};
  std::atomic<bool> head_published_{false};
  std::atomic<bool> timed_out_{false};
  std::atomic<bool> busy_{false};
  std::atomic<bool> invalidated_{false};
  // Written once by the filler before head_published_/state_ release; then read-only.
  std::shared_ptr<const ResponseHead> head_;
  Freshness freshness_;
  bool shareable_ = true;
  bool storing_ = false;
  bool not_modified_ = false;
  conf::Seconds head_lifetime_{0};
  bool ssd_allowed_ = false;
  bool from_ssd_ = false;
  Ref<Body> body_;
  EvictionNode eviction_;  // owned by the cache's policy, under its lock

  std::atomic<bool> windowed_{false};
  mutable std::atomic<uint8_t> delivery_facts_{0};
  std::atomic<DerivedRepresentation*> derived_[kDerivedSlots] = {};  // owned; set once each

  struct Reader {
    ObjectWaiter* waiter;
    uint64_t pos;
    bool cut;
  };
  std::mutex mu_;
  std::vector<Reader> waiters_;  // guarded by mu_
  // Windowed fills, guarded by mu_.
  uint64_t window_bytes_ = 0;
  bool window_paused_ = false;
  uint64_t pause_limit_ = 0;  // the window the fill paused at (smaller over the fill budget)
  FillListener* fill_listener_ = nullptr;
};

using ObjectRef = Ref<CacheObject>;

}  // namespace streamedge::cache
