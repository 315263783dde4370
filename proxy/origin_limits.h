// OriginLimits: what every worker's OriginClient shares to protect origins — per origin, the
// requests in flight, the open connections and the fetches queued for either, each capped for
// the whole process (conf::OriginConfig max_concurrent_requests, max_connections, queue_size);
// per group, the retry budget (a sliding window of requests and retries) and the counters of
// retries and hedges.
//
// Why shared atomics rather than a cap split per worker: a split cap (cap / workers) lets the
// origin see the full cap only when every worker is equally loaded, and turns a flood that lands
// on one worker into 503s while the origin is mostly idle. A shared counter incremented with a
// compare-and-swap below the cap keeps the guarantee exactly — the origin never has more than
// the cap from this process — at the price of one contended atomic per origin request, which is
// on the miss path only (a hit never touches it).
//
// Waiting: a fetch that cannot get a slot waits on its own worker (a queue in its OriginClient).
// Every release of a slot that has waiters wakes every registered client (Waker) through
// event_active on its loop (libevent is built thread-safe, evthread_use_pthreads), and each
// client retries its own waiters in order. Lost wake-ups are impossible: a waiter announces
// itself (waiters++) before its last try, a releaser frees the slot before it looks at waiters.
//
// Slots are keyed by (group name, origin name), never freed (bounded by the names ever
// configured), so their addresses are stable across reloads and a fetch of an old config
// releases what it took. Thread-safety: everything is thread-safe; slot() and budget() take a
// mutex (callers cache the pointers per config snapshot), the rest is atomics, and the retry
// budget takes its group's own small mutex once per fetch and per retry.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace streamedge::proxy {

class OriginLimits;

// One origin's shared counters.
struct OriginSlot {
  OriginLimits* owner = nullptr;
  std::string group;
  std::string origin;
  std::string dc;

  std::atomic<int> in_flight{0};     // requests assigned to the origin now
  std::atomic<int> connections{0};   // open connections (connecting, in use or idle)
  std::atomic<int> queued{0};        // fetches waiting for either (bounded by queue_size)
  std::atomic<int> waiters{0};       // fetches waiting, announced before their last try
  std::atomic<int> conn_waiters{0};  // of which waiting for a connection: idle ones are closed
  std::atomic<uint64_t> queued_total{0};       // fetches that had to wait
  std::atomic<uint64_t> rejected_overflow{0};  // 503: the queue was full (or there is none)
  std::atomic<uint64_t> rejected_timeout{0};   // 503: waited queue_timeout (or retry_deadline)
  std::atomic<int> max_in_flight_seen{0};      // high-water mark of in_flight

  // Takes one unit of `counter` when below `cap` (0 = unlimited). Never exceeds the cap.
  static bool tryTake(std::atomic<int>& counter, int cap);
  // Gives one back and wakes the waiters of this slot, if any.
  void give(std::atomic<int>& counter);
};

// A held unit of a slot's in_flight or connections; gives it back when destroyed or reset().
class SlotHold {
 public:
  enum class Kind : uint8_t { kRequest, kConnection };
  SlotHold() = default;
  SlotHold(OriginSlot* slot, Kind kind) : slot_(slot), kind_(kind) {}
  SlotHold(SlotHold&& o) noexcept : slot_(std::exchange(o.slot_, nullptr)), kind_(o.kind_) {}
  SlotHold& operator=(SlotHold&& o) noexcept {
    if (this != &o) {
      reset();
      slot_ = std::exchange(o.slot_, nullptr);
      kind_ = o.kind_;
    }
    return *this;
  }
  SlotHold(const SlotHold&) = delete;
  SlotHold& operator=(const SlotHold&) = delete;
  ~SlotHold() { reset(); }

  void reset();
  bool held() const { return slot_ != nullptr; }
  OriginSlot* slot() const { return slot_; }

 private:
  OriginSlot* slot_ = nullptr;
  Kind kind_ = Kind::kRequest;
};

// One group's retry budget and retry/hedge counters.
class GroupBudget {
 public:
  static constexpr int kWindowSeconds = 10;

  // One fetch of the group started (the denominator of the budget).
  void noteRequest(std::chrono::steady_clock::time_point now);
  // Whether one more retry (or hedge) may go out now; counts it when it may. `ratio` 0 = no
  // budget (always true).
  bool tryRetry(std::chrono::steady_clock::time_point now, double ratio, int min_per_second);

  std::atomic<uint64_t> retried{0};           // retries that went out
  std::atomic<uint64_t> budget_exhausted{0};  // retries refused by the budget
  std::atomic<uint64_t> hedges_started{0};
  std::atomic<uint64_t> hedges_won{0};        // the hedge's head came first
  std::atomic<uint64_t> hedges_lost{0};       // the first origin's came first, or the hedge failed

 private:
  struct Bucket {
    int64_t second = -1;
    uint64_t requests = 0;
    uint64_t retries = 0;
  };
  Bucket& bucket(int64_t second);  // mu_ held

  std::mutex mu_;
  Bucket buckets_[kWindowSeconds];  // guarded by mu_
};

// Implemented by each OriginClient: wake() may be called from any thread and must only schedule
// the retry of its waiters on its own loop.
class LimitsWaker {
 public:
  virtual void wake() = 0;

 protected:
  ~LimitsWaker() = default;
};

class OriginLimits {
 public:
  OriginLimits() = default;
  OriginLimits(const OriginLimits&) = delete;
  OriginLimits& operator=(const OriginLimits&) = delete;

  // The slot of an origin (created on first use; the address stays valid for the life of this).
  OriginSlot* slot(const std::string& group, const std::string& origin, const std::string& dc);
  GroupBudget* budget(const std::string& group);

  void addWaker(LimitsWaker* waker);
  void removeWaker(LimitsWaker* waker);  // after it returns, wake() is never called on it
  void wakeAll();

  // For /status and /metrics: every slot and budget known, in name order.
  struct SlotView {
    std::string group, origin, dc;
    int in_flight = 0, connections = 0, queued = 0, max_in_flight_seen = 0;
    uint64_t queued_total = 0, rejected_overflow = 0, rejected_timeout = 0;
  };
  struct BudgetView {
    std::string group;
    uint64_t retried = 0, budget_exhausted = 0;
    uint64_t hedges_started = 0, hedges_won = 0, hedges_lost = 0;
  };
  std::vector<SlotView> slots() const;
  std::vector<BudgetView> budgets() const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<OriginSlot>> slots_;  // guarded
  std::map<std::string, std::unique_ptr<GroupBudget>> budgets_;                        // guarded
  std::mutex wakers_mu_;
  std::vector<LimitsWaker*> wakers_;  // guarded by wakers_mu_
};

}  // namespace streamedge::proxy
