#include "cache/s3fifo.h"

#include <algorithm>

namespace streamedge::cache {
namespace {

constexpr uint8_t kNotLinked = 0;
constexpr uint8_t kSmall = 1;
constexpr uint8_t kMain = 2;
constexpr uint8_t kMaxFreq = 3;
constexpr size_t kMinGhostEntries = 4096;

}  // namespace

S3Fifo::S3Fifo(uint64_t capacity_bytes) : capacity_(capacity_bytes) {}

void S3Fifo::pushHead(List& list, EvictionNode& node, uint8_t queue) {
  node.queue = queue;
  node.prev = nullptr;
  node.next = list.head;
  if (list.head != nullptr) list.head->prev = &node;
  list.head = &node;
  if (list.tail == nullptr) list.tail = &node;
  (queue == kSmall ? small_bytes_ : main_bytes_) += node.size_bytes;
}

void S3Fifo::unlink(List& list, EvictionNode& node) {
  if (node.prev != nullptr) node.prev->next = node.next;
  else list.head = node.next;
  if (node.next != nullptr) node.next->prev = node.prev;
  else list.tail = node.prev;
  (node.queue == kSmall ? small_bytes_ : main_bytes_) -= node.size_bytes;
  node.prev = nullptr;
  node.next = nullptr;
  node.queue = kNotLinked;
}

void S3Fifo::insert(EvictionNode& node) {
  if (node.queue != kNotLinked) remove(node);  // re-insertion: start over, no double link
  ++objects_;
  // The frequency is kept: hits on an object before its admission (readers coalesced on its
  // fill) are real demand.
  const auto ghost = ghost_set_.find(node.key.lo);
  if (ghost != ghost_set_.end()) {
    // Evicted from small not long ago and wanted again: it was not a one-hit wonder.
    // Its entry stays in ghost_fifo_ and is skipped when it reaches the front.
    ghost_set_.erase(ghost);
    pushHead(main_, node, kMain);
  } else {
    pushHead(small_, node, kSmall);
  }
}

void S3Fifo::resize(EvictionNode& node, uint64_t size_bytes) {
  if (node.queue != kNotLinked) {
    uint64_t& bytes = node.queue == kSmall ? small_bytes_ : main_bytes_;
    bytes = bytes - node.size_bytes + size_bytes;
  }
  node.size_bytes = size_bytes;
}

void S3Fifo::remove(EvictionNode& node) {
  switch (node.queue) {
    case kSmall: unlink(small_, node); break;
    case kMain: unlink(main_, node); break;
    default: return;
  }
  --objects_;
}

void S3Fifo::touch(EvictionNode& node) {
  // Saturating increment without a lock. No write at all once saturated, so the hottest
  // objects do not bounce their cache line between cores on every hit.
  uint8_t f = node.freq.load(std::memory_order_relaxed);
  while (f < kMaxFreq &&
         !node.freq.compare_exchange_weak(f, static_cast<uint8_t>(f + 1),
                                          std::memory_order_relaxed)) {
  }
}

void S3Fifo::addGhost(const CacheKey& key) {
  // The ghost FIFO remembers about as many keys as main holds objects (the paper's sizing),
  // and never fewer than kMinGhostEntries so that a small cache still recognises returns.
  // Only key.lo is kept: a 64-bit collision merely sends one object to main early.
  ghost_limit_ = std::max(kMinGhostEntries, objects_);
  ghost_fifo_.push_back(key.lo);
  ghost_set_.insert(key.lo);
  while (ghost_fifo_.size() > ghost_limit_) {
    const auto it = ghost_set_.find(ghost_fifo_.front());
    if (it != ghost_set_.end()) ghost_set_.erase(it);  // absent if consumed by a re-insert
    ghost_fifo_.pop_front();
  }
}

EvictionNode* S3Fifo::evictFromSmall() {
  EvictionNode* node = small_.tail;
  if (node == nullptr) return nullptr;
  unlink(small_, *node);
  if (node->freq.load(std::memory_order_relaxed) > 1) {
    // Hit more than once while in small: promote, and make it earn its stay in main again.
    node->freq.store(0, std::memory_order_relaxed);
    pushHead(main_, *node, kMain);
    return nullptr;
  }
  --objects_;
  addGhost(node->key);
  return node;
}

EvictionNode* S3Fifo::evictFromMain() {
  // Lazy promotion: a hit object goes round once more with one frequency point less. Each
  // node can be reinserted at most kMaxFreq times before its counter reaches 0, so this ends
  // (a concurrent touch() can only add a bounded number of extra rounds).
  while (EvictionNode* node = main_.tail) {
    unlink(main_, *node);
    const uint8_t f = node->freq.load(std::memory_order_relaxed);
    if (f > 0) {
      // A touch() racing with this store may be lost; that only ages the object a bit early.
      node->freq.store(static_cast<uint8_t>(f - 1), std::memory_order_relaxed);
      pushHead(main_, *node, kMain);
      continue;
    }
    --objects_;
    return node;
  }
  return nullptr;
}

void S3Fifo::evictUntilFits(const std::function<void(EvictionNode&)>& on_evict) {
  while (usedBytes() > capacity_) {
    EvictionNode* victim = nullptr;
    // Small gets 10% of the budget; while it holds more, new objects that were not hit again
    // leave first, which is what keeps a scan of one-hit segments from flushing main.
    if (small_.tail != nullptr && (small_bytes_ > capacity_ / 10 || main_.tail == nullptr)) {
      victim = evictFromSmall();
    } else if (main_.tail != nullptr) {
      victim = evictFromMain();
    } else {
      break;  // nothing linked (cannot happen while usedBytes() > 0)
    }
    if (victim != nullptr) on_evict(*victim);
  }
}

}  // namespace streamedge::cache
