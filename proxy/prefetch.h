// Live prefetch (route `prefetch = true`): objects a viewer is about to ask for are filled
// before the first viewer asks, so that request is a hit. Three sources name them: a new version
// of a live HLS media playlist filled from the origin (its newest segments and part preload
// hint, streaming/prefetch_targets.h), a new version of a dynamic DASH MPD filled from the
// origin (the newest available segments of the representations viewers watch,
// streaming/dash_prefetch.h and WatchedRenditions below) and a viewer's CMCD nor (next object
// request, CTA-5004).
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
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cache/cache_key.h"
#include "conf/config.h"
#include "streaming/dash_prefetch.h"
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

// Which representations of live DASH MPDs viewers are watching. An MPD lists every rendition;
// prefetching all of them would fetch from the origin what nobody plays, so an MPD's new version
// prefetches only the representations that had a viewer segment request within its watch
// window (max(30 s, 3 × minimumUpdatePeriod), streaming::DashPrefetchPlan):
//   - each stored version of a dynamic MPD on a prefetch route registers, per (route, host,
//     MPD path), its representations and the segment path pattern of each (the media
//     template's fixed text around $Number$/$Time$, streaming::dashSegmentPattern);
//   - a viewer's request on a prefetch route (never a peer's, never a playlist or MPD) whose
//     normalised path matches a registered pattern of the same vhost and host (without port,
//     any case) marks that representation watched until now + the window. The segment's route
//     must have prefetch on too: only such routes pay for the look-up.
// Bounded: at most kMaxMpds MPDs (a new one evicts the one updated longest ago; one not
// updated for two windows is dropped), at most streaming::kMaxDashPrefetchRepresentations
// representations each. Thread-safe (one mutex of its own). A request pays one relaxed load
// while no MPD is registered, else one lock and a hash look-up per directory of its path.
class WatchedRenditions {
 public:
  using SteadyTime = std::chrono::steady_clock::time_point;
  static constexpr size_t kMaxMpds = 1024;
  // Directories of a viewer path looked at (from the deepest up).
  static constexpr size_t kMaxDirectoryDepth = 32;

  // A new version of the MPD at `mpd_path` (route `route_id` of vhost `vhost`, served for
  // `host`) was stored with `plan`'s renditions, which replace the earlier ones; a
  // representation keeps its watch when its id and pattern stay. Returns, for each rendition of
  // the plan in order, whether viewers are watching it now.
  std::vector<bool> update(const std::string& vhost, const std::string& route_id,
                           std::string_view host, const std::string& mpd_path,
                           const streaming::DashPrefetchPlan& plan, SteadyTime now);
  // A viewer asked for the normalised `path` of `vhost` with Host `host`: every registered
  // representation it is a segment of is watched until now + its MPD's window.
  void viewerRequest(std::string_view vhost, std::string_view host, std::string_view path,
                     SteadyTime now);
  // MPDs registered (tests).
  size_t size() const { return size_.load(std::memory_order_relaxed); }

 private:
  struct Rendition {
    std::string id;
    std::optional<streaming::DashSegmentPattern> pattern;
    SteadyTime watched_until{};
  };
  struct Mpd {
    std::string vhost;
    std::string host;  // lower case, without port
    std::chrono::steady_clock::duration window{};
    SteadyTime updated{};
    std::vector<Rendition> renditions;
  };
  struct Ref {
    Mpd* mpd;
    size_t rendition;
  };
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  void linkLocked(Mpd& mpd);
  void unlinkLocked(Mpd& mpd);
  void dropStaleLocked(SteadyTime now);

  mutable std::mutex mu_;
  // guarded by mu_
  std::unordered_map<std::string, Mpd> mpds_;  // key: route id, host, MPD path
  // The directory of each pattern's prefix (up to its last '/') → its renditions.
  std::unordered_map<std::string, std::vector<Ref>, StringHash, std::equal_to<>> by_directory_;
  std::atomic<size_t> size_{0};  // mpds_.size(), read without the lock
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
  // The representations of live MPDs that viewers watch (thread-safe on its own).
  WatchedRenditions& renditions() { return renditions_; }

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
  WatchedRenditions renditions_;
};

// The targets of a DASH MPD version: those of the watched renditions (`watched`, as
// WatchedRenditions::update returned it), interleaved newest first (the newest segment of every
// watched rendition, then the second newest, ...), so that a route's concurrency bound spends
// its places on the segments viewers ask for soonest. `refused` counts the watched renditions'
// refused URLs.
streaming::PrefetchSelection selectWatchedDashTargets(const streaming::DashPrefetchPlan& plan,
                                                      const std::vector<bool>& watched);

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
