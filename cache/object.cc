#include "cache/object.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace streamedge::cache {

namespace {
std::atomic<uint64_t> g_freed_body_bytes{0};
std::atomic<uint64_t> g_free_notify_threshold{0};
std::atomic<void (*)(void*)> g_free_notify{nullptr};
std::atomic<void*> g_free_notify_arg{nullptr};
}  // namespace

void setBodyFreeNotify(uint64_t threshold, void (*notify)(void*), void* arg) {
  g_free_notify_arg.store(arg, std::memory_order_relaxed);
  g_free_notify.store(notify, std::memory_order_relaxed);
  g_free_notify_threshold.store(threshold, std::memory_order_release);
}

uint64_t takeFreedBodyBytes() { return g_freed_body_bytes.exchange(0, std::memory_order_relaxed); }

Body::~Body() {
  if (owner_) return;  // adopted memory (an SSD read buffer) is not malloc's
  const uint64_t n = allocated_.load(std::memory_order_relaxed);
  if (n == 0) return;
  const uint64_t before = g_freed_body_bytes.fetch_add(n, std::memory_order_relaxed);
  const uint64_t threshold = g_free_notify_threshold.load(std::memory_order_acquire);
  if (threshold != 0 && before < threshold && before + n >= threshold) {
    if (void (*notify)(void*) = g_free_notify.load(std::memory_order_relaxed)) {
      notify(g_free_notify_arg.load(std::memory_order_relaxed));
    }
  }
}

Body::Body(std::optional<uint64_t> expected) : expected_(expected) {
  if (expected_) blocks_.reserve((*expected_ + kBlockBytes - 1) / kBlockBytes);
}

size_t Body::peek(uint64_t pos, const uint8_t** data) const {
  const uint64_t len = length();  // acquire: bytes below len are written and visible
  if (pos >= len) return 0;
  const size_t index = pos / kBlockBytes;
  const size_t offset = pos % kBlockBytes;
  const uint8_t* block;
  if (frozen_.load(std::memory_order_acquire)) {
    block = blocks_[index].data;
  } else {
    // The vector may be reallocated by append(); the block memory itself never moves.
    std::lock_guard<std::mutex> lock(mu_);
    block = blocks_[index].data;
  }
  *data = block + offset;
  const uint64_t block_end = std::min<uint64_t>(len, (index + 1) * uint64_t{kBlockBytes});
  return static_cast<size_t>(block_end - pos);
}

Ref<Body> Body::adopt(std::shared_ptr<const void> owner, const uint8_t* data, uint64_t len,
                      uint64_t owner_bytes) {
  Ref<Body> body = Ref<Body>::make(std::optional<uint64_t>(len));
  body->owner_ = std::move(owner);
  // Views of kBlockBytes each, so that peek()'s block arithmetic holds unchanged.
  for (uint64_t pos = 0; pos < len; pos += kBlockBytes) {
    Block block;
    block.data = const_cast<uint8_t*>(data + pos);  // never written: the body is frozen
    block.capacity = static_cast<size_t>(std::min<uint64_t>(kBlockBytes, len - pos));
    body->blocks_.push_back(std::move(block));
  }
  body->allocated_.store(owner_bytes, std::memory_order_relaxed);
  body->length_.store(len, std::memory_order_release);
  body->freeze();
  return body;
}

void Body::append(const uint8_t* data, size_t len) {
  uint64_t pos = length_.load(std::memory_order_relaxed);
  while (len > 0) {
    const size_t index = pos / kBlockBytes;
    const size_t offset = pos % kBlockBytes;
    if (index == blocks_.size()) {
      // Size the block exactly when the total is known, so a 2 KB playlist costs 2 KB. The
      // filler never appends past the expected length (FillWriter cuts and aborts first).
      size_t capacity = kBlockBytes;
      if (expected_ && *expected_ > pos) {
        capacity = static_cast<size_t>(std::min<uint64_t>(kBlockBytes, *expected_ - pos));
      }
      Block block{std::make_unique<uint8_t[]>(capacity), nullptr, capacity};
      block.data = block.own.get();
      std::lock_guard<std::mutex> lock(mu_);
      blocks_.push_back(std::move(block));
      allocated_.fetch_add(capacity, std::memory_order_relaxed);
    }
    Block& block = blocks_[index];  // only the writer changes blocks_: no lock to read it
    if (offset >= block.capacity) std::abort();  // past the expected length: a filler bug
    const size_t n = std::min(len, block.capacity - offset);
    std::memcpy(block.data + offset, data, n);
    pos += n;
    data += n;
    len -= n;
    length_.store(pos, std::memory_order_release);
  }
}

void CacheObject::subscribe(ObjectWaiter* w) {
  std::lock_guard<std::mutex> lock(mu_);
  if (std::find(waiters_.begin(), waiters_.end(), w) == waiters_.end()) waiters_.push_back(w);
}

void CacheObject::unsubscribe(ObjectWaiter* w) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = std::find(waiters_.begin(), waiters_.end(), w);
  if (it != waiters_.end()) {
    *it = waiters_.back();
    waiters_.pop_back();
  }
}

void CacheObject::notifyLocked() {
  for (ObjectWaiter* w : waiters_) w->onObjectChanged();
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

void CacheObject::markComplete() {
  body_->freeze();
  std::lock_guard<std::mutex> lock(mu_);
  state_.store(State::kComplete, std::memory_order_release);
  notifyLocked();
  waiters_.clear();
}

void CacheObject::markAborted(bool timed_out) {
  timed_out_.store(timed_out, std::memory_order_release);
  std::lock_guard<std::mutex> lock(mu_);
  state_.store(State::kAborted, std::memory_order_release);
  notifyLocked();
  waiters_.clear();
}

}  // namespace streamedge::cache
