#include "cache/object.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "cache/body_arena.h"

namespace streamedge::cache {

namespace {
std::atomic<uint64_t> g_freed_body_bytes{0};
std::atomic<uint64_t> g_free_notify_threshold{0};
std::atomic<void (*)(void*)> g_free_notify{nullptr};
std::atomic<void*> g_free_notify_arg{nullptr};
std::atomic<uint64_t> g_fill_bytes{0};
std::atomic<uint64_t> g_fill_budget{~uint64_t{0}};

// Owned block memory is handed to the kernel's heap trim in batches (see setBodyFreeNotify).
void countFreed(uint64_t n) {
  const uint64_t before = g_freed_body_bytes.fetch_add(n, std::memory_order_relaxed);
  const uint64_t threshold = g_free_notify_threshold.load(std::memory_order_acquire);
  if (threshold != 0 && before < threshold && before + n >= threshold) {
    if (void (*notify)(void*) = g_free_notify.load(std::memory_order_relaxed)) {
      notify(g_free_notify_arg.load(std::memory_order_relaxed));
    }
  }
}

// Pins of adopted bodies are the Body pointer with the low bit set; block pins are the block.
constexpr uintptr_t kBodyPinTag = 1;
}  // namespace

void setBodyFreeNotify(uint64_t threshold, void (*notify)(void*), void* arg) {
  g_free_notify_arg.store(arg, std::memory_order_relaxed);
  g_free_notify.store(notify, std::memory_order_relaxed);
  g_free_notify_threshold.store(threshold, std::memory_order_release);
}

uint64_t takeFreedBodyBytes() { return g_freed_body_bytes.exchange(0, std::memory_order_relaxed); }

uint64_t fillMemoryBytes() { return g_fill_bytes.load(std::memory_order_relaxed); }
void setFillMemoryBudget(uint64_t bytes) { g_fill_budget.store(bytes, std::memory_order_relaxed); }
uint64_t fillMemoryBudget() { return g_fill_budget.load(std::memory_order_relaxed); }

// ---------------------------------------------------------------------------------------------
// Body

// A block of body memory with its own count: the Body holds one reference until the block is
// released (windowed) or the Body dies; each evbuffer reference to its bytes holds another, so
// a released block's bytes stay valid until the socket took them.
struct Body::Block {
  std::atomic<uint32_t> refs{1};
  uint32_t capacity = 0;
  uint8_t* data = nullptr;
  ArenaBlock arena;  // arena.fd < 0: heap memory right behind this header

  static Block* make(size_t capacity) {
    if (capacity == kBlockBytes && bodyArenaEnabled()) {
      ArenaBlock a;
      if (bodyArena().allocate(&a)) {
        Block* b = new Block();
        b->capacity = static_cast<uint32_t>(capacity);
        b->data = a.data;
        b->arena = a;
        return b;
      }
    }
    void* mem = ::operator new(sizeof(Block) + capacity);
    Block* b = new (mem) Block();
    b->capacity = static_cast<uint32_t>(capacity);
    b->data = reinterpret_cast<uint8_t*>(b + 1);
    return b;
  }
  void retain() { refs.fetch_add(1, std::memory_order_relaxed); }
  void release() {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    if (arena.fd >= 0) {
      bodyArena().free(arena);  // back to the kernel at once: no heap trim to wait for
      delete this;
      return;
    }
    const uint64_t n = capacity;
    this->~Block();
    ::operator delete(static_cast<void*>(this));
    countFreed(n);
  }
};

Body::~Body() {
  if (counts_as_fill_) {
    g_fill_bytes.fetch_sub(allocated_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
  for (Slot& slot : blocks_) {
    if (slot.own) slot.own->release();
  }
}

Body::Body(std::optional<uint64_t> expected) : expected_(expected) {
  // Sized up front for ordinary objects only: a Content-Length the origin sends is not a promise
  // (a huge one would reserve memory for a body that streams through a window, or fail).
  constexpr uint64_t kMaxReservedBlocks = 256;  // 64 MiB of body
  if (expected_) {
    blocks_.reserve(static_cast<size_t>(
        std::min<uint64_t>((*expected_ + kBlockBytes - 1) / kBlockBytes, kMaxReservedBlocks)));
  }
}

size_t Body::peek(uint64_t pos, const uint8_t** data) const {
  return peekPinned(pos, data, nullptr);
}

size_t Body::peekPinned(uint64_t pos, const uint8_t** data, void** pin, FileRun* file) const {
  const uint64_t len = length();  // acquire: bytes below len are written and visible
  if (pos >= len) return 0;
  const size_t index = pos / kBlockBytes;
  const size_t offset = pos % kBlockBytes;
  const uint8_t* block;
  const Block* own;
  if (frozen_.load(std::memory_order_acquire)) {
    const Slot& slot = blocks_[index];
    block = slot.data;
    own = slot.own;
    if (pin) {
      if (slot.own) {
        slot.own->retain();
        *pin = slot.own;
      } else {
        retain();
        *pin = reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(this) | kBodyPinTag);
      }
    }
  } else {
    // The vector may be reallocated by append() and blocks released by readers; the block
    // memory itself never moves and lives on while pinned.
    std::lock_guard<std::mutex> lock(mu_);
    if (index < base_) return 0;  // released and dropped from the table: too late
    const Slot& slot = blocks_[index - base_];
    block = slot.data;
    own = slot.own;
    if (!block) return 0;  // released: this reader came too late
    if (pin) {
      slot.own->retain();  // a filling body's blocks are all owned
      *pin = slot.own;
    }
  }
  *data = block + offset;
  if (file) {
    *file = FileRun{};
    if (own && own->arena.fd >= 0) *file = FileRun{own->arena.fd, own->arena.offset + offset};
  }
  const uint64_t block_end = std::min<uint64_t>(len, (index + 1) * uint64_t{kBlockBytes});
  return static_cast<size_t>(block_end - pos);
}

void Body::unpin(void* pin) {
  const auto bits = reinterpret_cast<uintptr_t>(pin);
  if (bits & kBodyPinTag) {
    reinterpret_cast<const Body*>(bits & ~kBodyPinTag)->release();
  } else {
    static_cast<Block*>(pin)->release();
  }
}

Ref<Body> Body::adopt(std::shared_ptr<const void> owner, const uint8_t* data, uint64_t len,
                      uint64_t owner_bytes) {
  Ref<Body> body = Ref<Body>::make(std::optional<uint64_t>(len));
  body->owner_ = std::move(owner);
  body->counts_as_fill_ = false;
  // Views of kBlockBytes each, so that peek()'s block arithmetic holds unchanged.
  for (uint64_t pos = 0; pos < len; pos += kBlockBytes) {
    Slot slot;
    slot.data = const_cast<uint8_t*>(data + pos);  // never written: the body is frozen
    slot.capacity = static_cast<size_t>(std::min<uint64_t>(kBlockBytes, len - pos));
    body->blocks_.push_back(slot);
  }
  body->allocated_.store(owner_bytes, std::memory_order_relaxed);
  body->length_.store(len, std::memory_order_release);
  body->freeze();
  return body;
}

Ref<Body> Body::adoptGrowing(std::shared_ptr<const void> owner, const uint8_t* data,
                            uint64_t len, uint64_t owner_bytes, uint64_t readable) {
  // The view table is complete and immutable from the start (frozen: peek reads it without the
  // lock); only the published length grows.
  Ref<Body> body = adopt(std::move(owner), data, len, owner_bytes);
  body->adopted_len_ = len;
  body->length_.store(std::min(readable, len), std::memory_order_release);
  return body;
}

void Body::extendAdopted(uint64_t readable) {
  const uint64_t now = length_.load(std::memory_order_relaxed);
  const uint64_t next = std::min(readable, adopted_len_);
  if (next > now) length_.store(next, std::memory_order_release);
}

void Body::freeze() {
  if (windowed_) return;
  if (counts_as_fill_) {
    // Complete: from now on these bytes are the cache's (or freed with the object), not a fill's.
    counts_as_fill_ = false;
    g_fill_bytes.fetch_sub(allocated_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
  frozen_.store(true, std::memory_order_release);
}

void Body::setWindowed() { windowed_ = true; }

uint64_t Body::releaseBelow(uint64_t pos) {
  if (!windowed_) return 0;
  const uint64_t target = pos / kBlockBytes * kBlockBytes;
  std::vector<Block*> dropped;
  uint64_t freed = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t from = released_.load(std::memory_order_relaxed);
    if (target <= from) return 0;
    for (size_t i = from / kBlockBytes; i < target / kBlockBytes && i < base_ + blocks_.size(); ++i) {
      Slot& slot = blocks_[i - base_];
      if (!slot.own) continue;
      freed += slot.capacity;
      dropped.push_back(slot.own);
      slot.own = nullptr;
      slot.data = nullptr;
    }
    released_.store(target, std::memory_order_release);
    // An endless stream through a window must not grow the table by a slot per block: the
    // released slots at its front are dropped once there are enough of them to be worth a move.
    const size_t dead = std::min<size_t>(target / kBlockBytes - base_, blocks_.size());
    if (dead >= 64 && dead * 2 >= blocks_.size()) {
      blocks_.erase(blocks_.begin(), blocks_.begin() + static_cast<ptrdiff_t>(dead));
      base_ += dead;
    }
    allocated_.fetch_sub(freed, std::memory_order_relaxed);
    if (counts_as_fill_) g_fill_bytes.fetch_sub(freed, std::memory_order_relaxed);
  }
  for (Block* b : dropped) b->release();
  return freed;
}

void Body::append(const uint8_t* data, size_t len) {
  uint64_t pos = length_.load(std::memory_order_relaxed);
  while (len > 0) {
    const size_t index = pos / kBlockBytes;
    const size_t offset = pos % kBlockBytes;
    if (index == tail_index_ + 1 || tail_index_ == kNoTail) {
      if (offset != 0) std::abort();  // appends are sequential: a filler bug
      // Size the block exactly when the total is known, so a 2 KB playlist costs 2 KB. The
      // filler never appends past the expected length (FillWriter cuts and aborts first).
      size_t capacity = kBlockBytes;
      if (expected_ && *expected_ > pos) {
        capacity = static_cast<size_t>(std::min<uint64_t>(kBlockBytes, *expected_ - pos));
      }
      Block* block = Block::make(capacity);
      std::lock_guard<std::mutex> lock(mu_);
      blocks_.push_back(Slot{block, block->data, capacity});
      tail_ = blocks_.back();
      tail_index_ = index;
      allocated_.fetch_add(capacity, std::memory_order_relaxed);
      if (counts_as_fill_) g_fill_bytes.fetch_add(capacity, std::memory_order_relaxed);
    }
    // Only the writer adds blocks and only whole blocks below every reader are released (never
    // the one being written): the writer's own copy of the tail slot needs no lock.
    const Slot& slot = tail_;
    if (index != tail_index_ || offset >= slot.capacity || !slot.data) {
      std::abort();  // past the expected length: a filler bug
    }
    const size_t n = std::min(len, slot.capacity - offset);
    std::memcpy(slot.data + offset, data, n);
    pos += n;
    data += n;
    len -= n;
    length_.store(pos, std::memory_order_release);
  }
}

// ---------------------------------------------------------------------------------------------
// CacheObject

uint64_t DerivedRepresentation::chargedBytes() const {
  uint64_t n = sizeof(DerivedRepresentation);
  if (head) n += sizeof(ResponseHead) + head->wire.size();
  if (body) n += body->allocatedBytes();
  return n;
}

CacheObject::~CacheObject() {
  for (auto& slot : derived_) delete slot.load(std::memory_order_acquire);
}

std::pair<const DerivedRepresentation*, bool> CacheObject::publishDerived(
    size_t slot, std::unique_ptr<DerivedRepresentation> rep) {
  if (slot >= kDerivedSlots || !rep) return {nullptr, false};
  DerivedRepresentation* expected = nullptr;
  if (derived_[slot].compare_exchange_strong(expected, rep.get(), std::memory_order_acq_rel,
                                             std::memory_order_acquire)) {
    return {rep.release(), true};
  }
  return {expected, false};  // an earlier writer won; `rep` is freed here
}

uint64_t CacheObject::derivedBytes() const {
  uint64_t n = 0;
  for (const auto& slot : derived_) {
    if (const DerivedRepresentation* rep = slot.load(std::memory_order_acquire)) {
      n += rep->chargedBytes();
    }
  }
  return n;
}

void CacheObject::subscribe(ObjectWaiter* w, uint64_t pos) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const Reader& r : waiters_) {
    if (r.waiter == w) return;
  }
  waiters_.push_back(Reader{w, pos, false});
}

void CacheObject::unsubscribe(ObjectWaiter* w) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find_if(waiters_.begin(), waiters_.end(),
                         [w](const Reader& r) { return r.waiter == w; });
  if (it == waiters_.end()) return;
  *it = waiters_.back();
  waiters_.pop_back();
  if (windowed()) updateWindowLocked();
}

void CacheObject::advance(ObjectWaiter* w, uint64_t pos) {
  if (!windowed()) return;
  std::lock_guard<std::mutex> lock(mu_);
  for (Reader& r : waiters_) {
    if (r.waiter != w) continue;
    if (pos <= r.pos) return;
    r.pos = pos;
    updateWindowLocked();
    return;
  }
}

bool CacheObject::readerCut(ObjectWaiter* w) {
  if (!windowed()) return false;
  std::lock_guard<std::mutex> lock(mu_);
  for (const Reader& r : waiters_) {
    if (r.waiter == w) return r.cut;
  }
  return false;
}

uint64_t CacheObject::heldBytes() const {
  return body_->length() - body_->releasedBytes();
}

void CacheObject::updateWindowLocked() {
  if (!body_) return;
  if (waiters_.empty()) {
    // Nobody reads what the fill would fetch: tell the filler (it may stop).
    if (fill_listener_ && state() != State::kComplete) fill_listener_->onFillWindowChanged();
    return;
  }
  uint64_t low = ~uint64_t{0};
  for (const Reader& r : waiters_) low = std::min(low, r.pos);
  body_->releaseBelow(std::min(low, body_->length()));
  if (window_paused_ && heldBytes() < pause_limit_) {
    window_paused_ = false;
    if (fill_listener_) fill_listener_->onFillWindowChanged();
  }
}

void CacheObject::makeWindowed(uint64_t window_bytes) {
  if (!body_) return;
  // At least two blocks, so that a reader inside one block never stops the filler in the next.
  window_bytes = std::max<uint64_t>(window_bytes, 2 * Body::kBlockBytes);
  body_->setWindowed();
  std::lock_guard<std::mutex> lock(mu_);
  window_bytes_ = window_bytes;
  windowed_.store(true, std::memory_order_release);
  updateWindowLocked();
}

void CacheObject::setFillListener(FillListener* listener) {
  std::lock_guard<std::mutex> lock(mu_);
  fill_listener_ = listener;
}

bool CacheObject::pauseIfWindowFull() {
  if (!windowed()) return false;
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t limit = window_bytes_;
  // Over the process-wide budget: keep just ahead of the slowest reader.
  if (fillMemoryBytes() > fillMemoryBudget()) limit = 2 * Body::kBlockBytes;
  if (heldBytes() < limit) return false;
  window_paused_ = true;
  pause_limit_ = limit;
  return true;
}

bool CacheObject::windowPaused() {
  std::lock_guard<std::mutex> lock(mu_);
  return window_paused_;
}

bool CacheObject::abandoned() {
  if (!windowed()) return false;
  std::lock_guard<std::mutex> lock(mu_);
  return waiters_.empty() && state() != State::kComplete;
}

size_t CacheObject::cutSlowestReaders() {
  if (!windowed()) return 0;
  std::lock_guard<std::mutex> lock(mu_);
  if (!window_paused_ || waiters_.size() < 2) return 0;
  const uint64_t written = body_->length();
  uint64_t low = ~uint64_t{0};
  bool someone_waits = false;
  for (const Reader& r : waiters_) {
    if (r.cut) continue;
    low = std::min(low, r.pos);
    someone_waits = someone_waits || r.pos >= written;
  }
  if (!someone_waits || low >= written) return 0;
  size_t cut = 0;
  for (Reader& r : waiters_) {
    if (r.cut || r.pos != low) continue;
    r.cut = true;
    r.waiter->onObjectChanged();
    ++cut;
  }
  return cut;
}

void CacheObject::notifyLocked() {
  for (const Reader& r : waiters_) r.waiter->onObjectChanged();
}

void CacheObject::publishHead(std::shared_ptr<const ResponseHead> head, const Freshness& f,
                              bool shareable, Ref<Body> body) {
  head_ = std::move(head);
  freshness_ = f;
  head_lifetime_ = f.lifetime;
  shareable_ = shareable;
  body_ = std::move(body);
  head_published_.store(true, std::memory_order_release);
  std::lock_guard<std::mutex> lock(mu_);
  state_.store(State::kStreaming, std::memory_order_release);
  notifyLocked();
}

void CacheObject::append(const uint8_t* data, size_t len) {
  body_->append(data, len);
  std::lock_guard<std::mutex> lock(mu_);
  notifyLocked();
}

void CacheObject::extendAdopted(uint64_t readable) {
  body_->extendAdopted(readable);
  std::lock_guard<std::mutex> lock(mu_);
  notifyLocked();
}

void CacheObject::markComplete() {
  body_->freeze();
  std::lock_guard<std::mutex> lock(mu_);
  state_.store(State::kComplete, std::memory_order_release);
  notifyLocked();
  // A windowed object's readers still count (their positions hold the window) until they
  // unsubscribe; nothing else will notify them.
  if (!windowed()) waiters_.clear();
}

void CacheObject::markAbortedBusy() {
  busy_.store(true, std::memory_order_release);
  markAborted(false);
}

void CacheObject::markAborted(bool timed_out) {
  timed_out_.store(timed_out, std::memory_order_release);
  std::lock_guard<std::mutex> lock(mu_);
  state_.store(State::kAborted, std::memory_order_release);
  notifyLocked();
  waiters_.clear();
}

}  // namespace streamedge::cache
