// Live prefetch (route `prefetch = true`): objects a viewer is about to ask for are filled
// before the first viewer asks, so that request is a hit. Two sources name them: a new version
// of a live HLS media playlist filled from the origin (its newest segments and part preload
// hint, streaming/prefetch_targets.h) and a viewer's CMCD nor (next object request, CTA-5004).
// A prefetch is an ordinary background fill (FillJob) under the target's own route: same
// vhost, origin group and key rules, so viewers who ask meanwhile coalesce on it.
//
// PrefetchTracker (one per process, in SharedState) bounds the fills per route and counts them
// (streamedge_prefetch_total{result}):
//   issued   a prefetch fill was started (the object was neither cached nor being filled)
//   used     a viewer asked for a prefetched object (a hit, or coalesced on its fill) and was
//            the first viewer to do so
//   wasted   a prefetched object no viewer asked for within kUnusedAfter of its prefetch
//            (counted then; also when the table of unused prefetches is over kMaxUnused)
//   skipped  a target not prefetched: already cached or being filled, over the route's
//            prefetch_concurrency, another host, or not routable to a caching route
//   failed   a prefetch fill that ended without a stored object (origin error, uncacheable)
// Thread-safe (one mutex; taken per prefetch and per request of a prefetch route only).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cache/cache_key.h"
#include "conf/config.h"
#include "streaming/prefetch_targets.h"

namespace streamedge::proxy {

class Worker;
class PrefetchTracker;

enum class PrefetchResult { kIssued, kUsed, kWasted, kSkipped, kFailed };
inline constexpr size_t kPrefetchResults = 5;
const char* prefetchResultName(PrefetchResult r);

// One prefetch fill's place in its route's concurrency. Held by the fill (FillRequest); its
// destruction frees the place and, unless markStored() was called, counts the prefetch failed.
class PrefetchTicket {
 public:
  PrefetchTicket(PrefetchTracker& tracker, std::string route_id, cache::CacheKey key)
      : tracker_(tracker), route_id_(std::move(route_id)), key_(key) {}
  ~PrefetchTicket();
  PrefetchTicket(const PrefetchTicket&) = delete;
  PrefetchTicket& operator=(const PrefetchTicket&) = delete;

  // The fill stored its object.
  void markStored() { stored_ = true; }
  // No fill was started after all: only the place is freed, nothing counted.
  void cancel() { cancelled_ = true; }

 private:
  PrefetchTracker& tracker_;
  const std::string route_id_;
  const cache::CacheKey key_;
  bool stored_ = false;
  bool cancelled_ = false;
};

class PrefetchTracker {
 public:
  using SteadyTime = std::chrono::steady_clock::time_point;
  static constexpr std::chrono::seconds kUnusedAfter{60};
  static constexpr size_t kMaxUnused = 4096;

  // A place among the route's `limit` concurrent prefetches, for `key`; null when all are taken.
  std::shared_ptr<PrefetchTicket> reserve(const std::string& route_id, int limit,
                                          const cache::CacheKey& key);
  // A fill was started for the ticket's key: counted issued, remembered as not yet asked for.
  void issued(const cache::CacheKey& key, SteadyTime now);
  // A viewer asked for `key` (hit or coalesced): counts used when it is a prefetched object
  // nobody asked for before. Cheap when nothing is pending.
  void viewerAsked(const cache::CacheKey& key);
  void count(PrefetchResult r, uint64_t n = 1) {
    counts_[static_cast<size_t>(r)].fetch_add(n, std::memory_order_relaxed);
  }
  // Counts as wasted what stayed unasked past kUnusedAfter, then returns every count.
  std::array<uint64_t, kPrefetchResults> snapshot(SteadyTime now);
  // Prefetch fills in flight for `route_id` (tests, /status).
  int inFlight(const std::string& route_id);

 private:
  friend class PrefetchTicket;
  void release(const std::string& route_id, const cache::CacheKey& key, bool stored, bool cancelled);
  void sweepLocked(SteadyTime now);

  std::mutex mu_;
  // guarded by mu_
  std::unordered_map<std::string, int> in_flight_;
  std::unordered_map<cache::CacheKey, SteadyTime, cache::CacheKeyHash> unasked_;
  std::atomic<size_t> unasked_size_{0};  // unasked_.size(), read without the lock
  std::array<std::atomic<uint64_t>, kPrefetchResults> counts_{};
};

// The route's identity for its concurrency bound (stable across reloads that keep it).
std::string prefetchRouteId(const conf::VhostConfig& vhost, const conf::RouteConfig& route);

// Worker thread: prefetches `targets` for a request of `host` that `vhost`/`route` (prefetch
// on) served. Each target goes through its own route of the same vhost (another vhost, a pass
// route or an invalid path: skipped), is looked up under that route's key rules and, when
// neither cached nor being filled, filled with `forward_headers` (a shared fill's fields).
// `refused`: targets the caller already refused (other hosts), counted skipped.
void startPrefetch(Worker& worker, const conf::ConfigPtr& config, const conf::VhostConfig& vhost,
                   const conf::RouteConfig& route, const std::string& host,
                   const std::vector<streaming::PrefetchTarget>& targets, size_t refused,
                   const std::vector<std::pair<std::string, std::string>>& forward_headers);

}  // namespace streamedge::proxy
