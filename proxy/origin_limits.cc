#include "proxy/origin_limits.h"

#include <algorithm>
#include <cmath>

namespace streamedge::proxy {

bool OriginSlot::tryTake(std::atomic<int>& counter, int cap) {
  if (cap <= 0) {
    counter.fetch_add(1);
    return true;
  }
  int v = counter.load();
  while (v < cap) {
    if (counter.compare_exchange_weak(v, v + 1)) return true;
  }
  return false;
}

void OriginSlot::give(std::atomic<int>& counter) {
  counter.fetch_sub(1);
  // Sequentially consistent with the waiter's waiters++ then retry: one of us sees the other.
  if (waiters.load() > 0 && owner) owner->wakeAll();
}

void SlotHold::reset() {
  OriginSlot* s = std::exchange(slot_, nullptr);
  if (!s) return;
  s->give(kind_ == Kind::kRequest ? s->in_flight : s->connections);
}

// ---- GroupBudget --------------------------------------------------------------------------

GroupBudget::Bucket& GroupBudget::bucket(int64_t second) {
  Bucket& b = buckets_[static_cast<size_t>(second % kWindowSeconds)];
  if (b.second != second) b = Bucket{second, 0, 0};
  return b;
}

namespace {
int64_t secondsOf(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}
}  // namespace

void GroupBudget::noteRequest(std::chrono::steady_clock::time_point now) {
  const int64_t s = secondsOf(now);
  std::lock_guard<std::mutex> lock(mu_);
  ++bucket(s).requests;
}

bool GroupBudget::tryRetry(std::chrono::steady_clock::time_point now, double ratio,
                           int min_per_second) {
  if (ratio <= 0) {
    retried.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  const int64_t s = secondsOf(now);
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t requests = 0;
  uint64_t retries = 0;
  for (const Bucket& b : buckets_) {
    if (b.second > s - kWindowSeconds && b.second <= s) {
      requests += b.requests;
      retries += b.retries;
    }
  }
  const double allowed =
      std::max(ratio * static_cast<double>(requests),
               static_cast<double>(min_per_second) * static_cast<double>(kWindowSeconds));
  if (static_cast<double>(retries) + 1.0 > allowed) {
    budget_exhausted.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  ++bucket(s).retries;
  retried.fetch_add(1, std::memory_order_relaxed);
  return true;
}

// ---- OriginLimits -------------------------------------------------------------------------

OriginSlot* OriginLimits::slot(const std::string& group, const std::string& origin,
                               const std::string& dc) {
  std::lock_guard<std::mutex> lock(mu_);
  std::unique_ptr<OriginSlot>& s = slots_[{group, origin}];
  if (!s) {
    s = std::make_unique<OriginSlot>();
    s->owner = this;
    s->group = group;
    s->origin = origin;
  }
  s->dc = dc;  // the latest config's label (read for views under mu_)
  return s.get();
}

GroupBudget* OriginLimits::budget(const std::string& group) {
  std::lock_guard<std::mutex> lock(mu_);
  std::unique_ptr<GroupBudget>& b = budgets_[group];
  if (!b) b = std::make_unique<GroupBudget>();
  return b.get();
}

void OriginLimits::addWaker(LimitsWaker* waker) {
  std::lock_guard<std::mutex> lock(wakers_mu_);
  wakers_.push_back(waker);
}

void OriginLimits::removeWaker(LimitsWaker* waker) {
  std::lock_guard<std::mutex> lock(wakers_mu_);
  wakers_.erase(std::remove(wakers_.begin(), wakers_.end(), waker), wakers_.end());
}

void OriginLimits::wakeAll() {
  std::lock_guard<std::mutex> lock(wakers_mu_);
  for (LimitsWaker* w : wakers_) w->wake();
}

std::vector<OriginLimits::SlotView> OriginLimits::slots() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<SlotView> out;
  out.reserve(slots_.size());
  for (const auto& [key, s] : slots_) {
    SlotView v;
    v.group = s->group;
    v.origin = s->origin;
    v.dc = s->dc;
    v.in_flight = s->in_flight.load(std::memory_order_relaxed);
    v.connections = s->connections.load(std::memory_order_relaxed);
    v.queued = s->queued.load(std::memory_order_relaxed);
    v.max_in_flight_seen = s->max_in_flight_seen.load(std::memory_order_relaxed);
    v.queued_total = s->queued_total.load(std::memory_order_relaxed);
    v.rejected_overflow = s->rejected_overflow.load(std::memory_order_relaxed);
    v.rejected_timeout = s->rejected_timeout.load(std::memory_order_relaxed);
    out.push_back(std::move(v));
  }
  return out;
}

std::vector<OriginLimits::BudgetView> OriginLimits::budgets() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<BudgetView> out;
  for (const auto& [name, b] : budgets_) {
    BudgetView v;
    v.group = name;
    v.retried = b->retried.load(std::memory_order_relaxed);
    v.budget_exhausted = b->budget_exhausted.load(std::memory_order_relaxed);
    v.hedges_started = b->hedges_started.load(std::memory_order_relaxed);
    v.hedges_won = b->hedges_won.load(std::memory_order_relaxed);
    v.hedges_lost = b->hedges_lost.load(std::memory_order_relaxed);
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace streamedge::proxy
