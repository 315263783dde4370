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
// Thread-safety: state, head and length are published with release/acquire; the block table is
// guarded by mu_ while filling and immutable once complete. Objects and bodies are refcounted
// (Ref<>); a Body may be shared by two objects (a 304 revalidation keeps the bytes, new head).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
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

  // Bytes readable now (acquire).
  uint64_t length() const { return length_.load(std::memory_order_acquire); }
  // Points `*data` at the contiguous run starting at `pos` and returns its size (0 when no byte
  // at `pos` exists yet). The run stays valid while the Body is alive.
  size_t peek(uint64_t pos, const uint8_t** data) const;
  // Filler only. Appends bytes; the new length is published after the copy.
  void append(const uint8_t* data, size_t len);
  // Bytes allocated (for accounting).
  uint64_t allocatedBytes() const { return allocated_.load(std::memory_order_relaxed); }
  void freeze() { frozen_.store(true, std::memory_order_release); }

 private:
  ~Body() override;
  struct Block {
    std::unique_ptr<uint8_t[]> own;  // null for an adopted body's blocks
    uint8_t* data = nullptr;
    size_t capacity = 0;
  };
  const std::optional<uint64_t> expected_;
  std::shared_ptr<const void> owner_;  // an adopted body's memory
  std::atomic<uint64_t> length_{0};
  std::atomic<uint64_t> allocated_{0};
  std::atomic<bool> frozen_{false};  // complete: blocks_ immutable, no lock needed
  mutable std::mutex mu_;
  std::vector<Block> blocks_;  // guarded by mu_ until frozen_
};

class CacheObject final : public RefCounted {
 public:
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
  // waiter is never called again. Idempotent.
  void subscribe(ObjectWaiter* w);
  void unsubscribe(ObjectWaiter* w);

  EvictionNode& evictionNode() { return eviction_; }

  // Tiering. Set by the cache before the object is published (then read-only): whether its
  // route lets it go to the SSD tier, and whether its bytes were read from that tier unchanged
  // (so eviction need not write them again).
  void setSsdAllowed(bool allowed) { ssd_allowed_ = allowed; }
  bool ssdAllowed() const { return ssd_allowed_; }
  void setFromSsd() { from_ssd_ = true; }
  bool fromSsd() const { return from_ssd_; }

  // --- filler side (used by FillWriter and the cache) ---
  void publishHead(std::shared_ptr<const ResponseHead> head, const Freshness& f, bool shareable,
                   Ref<Body> body);
  void append(const uint8_t* data, size_t len);
  // Replaces the freshness lifetime computed at head time (e.g. capped by the playlist target
  // duration found in the body). Filler only, before markComplete(); only lookups read the
  // lifetime, and they look at complete objects only (other fields may be read while streaming).
  void setLifetime(conf::Seconds lifetime) { freshness_.lifetime = lifetime; }
  void markComplete();
  // `timed_out`: the origin did not answer in time (readers answer 504 rather than 502).
  void markAborted(bool timed_out = false);
  bool abortedByTimeout() const { return timed_out_.load(std::memory_order_acquire); }

 private:
  ~CacheObject() override = default;
  void notifyLocked();

  CacheKey key_;  // changed only by rekey(), before the head is published
  std::atomic<State> state_{State::kPending};
  std::atomic<bool> head_published_{false};
  std::atomic<bool> timed_out_{false};
  // Written once by the filler before head_published_/state_ release; then read-only.
  std::shared_ptr<const ResponseHead> head_;
  Freshness freshness_;
  bool shareable_ = true;
  bool ssd_allowed_ = false;
  bool from_ssd_ = false;
  Ref<Body> body_;
  EvictionNode eviction_;  // owned by the cache's policy, under its lock

  std::mutex mu_;
  std::vector<ObjectWaiter*> waiters_;  // guarded by mu_
};

using ObjectRef = Ref<CacheObject>;

}  // namespace streamedge::cache
