// S3-FIFO eviction (Yang et al., SOSP'23): a small FIFO (10% of the budget) that filters one-hit
// objects, a main FIFO with lazy promotion (a frequency counter, 0..3, bumped on hit without a
// lock), and a ghost FIFO of recently evicted keys so that a returning object enters main
// directly. Scan-resistant, which suits live video (many one-hit segments and a hot head).
//
// The policy only orders EvictionNodes that the caller owns (embedded in cache objects). Not
// thread-safe except touch(): the caller serialises insert/remove/evict with one mutex.
#pragma once

#include <cstdint>
#include <deque>
#include <unordered_set>
#include <atomic>
#include <functional>

#include "cache/cache_key.h"

namespace streamedge::cache {

struct EvictionNode {
  CacheKey key;
  uint64_t size_bytes = 0;
  std::atomic<uint8_t> freq{0};
  // Owned by the policy while linked.
  uint8_t queue = 0;  // 0 = not linked, 1 = small, 2 = main
  EvictionNode* prev = nullptr;
  EvictionNode* next = nullptr;
};

class S3Fifo {
 public:
  explicit S3Fifo(uint64_t capacity_bytes);

  // Links `node` (size_bytes set) into small, or into main when its key is in the ghost FIFO.
  // Does not evict: call evictUntilFits() afterwards.
  void insert(EvictionNode& node);
  // Unlinks a node (purge, replacement). No-op when not linked.
  void remove(EvictionNode& node);
  // Changes a node's size (linked or not), keeping the queues' byte counts true. Does not
  // evict: call evictUntilFits() afterwards.
  void resize(EvictionNode& node, uint64_t size_bytes);
  // Lock-free hit: frequency +1, saturating at 3. Safe from any thread at any time.
  static void touch(EvictionNode& node);
  // Evicts until used ≤ capacity; `on_evict` is called for each victim after it is unlinked.
  void evictUntilFits(const std::function<void(EvictionNode&)>& on_evict);

  uint64_t usedBytes() const { return small_bytes_ + main_bytes_; }
  uint64_t capacityBytes() const { return capacity_; }
  void setCapacity(uint64_t bytes) { capacity_ = bytes; }
  uint64_t smallBytes() const { return small_bytes_; }
  uint64_t mainBytes() const { return main_bytes_; }
  size_t ghostCount() const { return ghost_set_.size(); }

 private:
  // Intrusive FIFO; head = newest.
  struct List { EvictionNode* head = nullptr; EvictionNode* tail = nullptr; };
  void pushHead(List& list, EvictionNode& node, uint8_t queue);
  void unlink(List& list, EvictionNode& node);
  void addGhost(const CacheKey& key);
  EvictionNode* evictFromSmall();  // returns a victim or nullptr (moved to main instead)
  EvictionNode* evictFromMain();

  uint64_t capacity_;
  uint64_t small_bytes_ = 0;
  uint64_t main_bytes_ = 0;
  List small_, main_;
  std::deque<uint64_t> ghost_fifo_;           // key.lo of evicted small entries, oldest first
  std::unordered_multiset<uint64_t> ghost_set_;
  size_t ghost_limit_ = 4096;                 // entries; grows with the number of objects seen
  size_t objects_ = 0;
};

}  // namespace streamedge::cache
