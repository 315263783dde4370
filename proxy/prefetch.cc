#include "proxy/prefetch.h"

#include <algorithm>

#include "cache/cache.h"
#include "cache/freshness.h"
#include "cache/vary.h"
#include "proxy/fill_job.h"
#include "proxy/router.h"
#include "proxy/worker.h"

namespace streamedge::proxy {

const char* prefetchResultName(PrefetchResult r) {
  switch (r) {
    case PrefetchResult::kIssued: return "issued";
    case PrefetchResult::kUsed: return "used";
    case PrefetchResult::kWasted: return "wasted";
    case PrefetchResult::kSkipped: return "skipped";
    case PrefetchResult::kFailed: return "failed";
  }
  return "unknown";
}

PrefetchTicket::~PrefetchTicket() { tracker_.release(route_id_, key_, stored_, cancelled_); }

std::shared_ptr<PrefetchTicket> PrefetchTracker::reserve(const std::string& route_id, int limit,
                                                         const cache::CacheKey& key) {
  {
    std::lock_guard lock(mu_);
    int& n = in_flight_[route_id];
    if (n >= limit) return nullptr;
    ++n;
  }
  return std::make_shared<PrefetchTicket>(*this, route_id, key);
}

void PrefetchTracker::issued(const cache::CacheKey& key, SteadyTime now) {
  count(PrefetchResult::kIssued);
  std::lock_guard lock(mu_);
  if (unasked_.size() >= kMaxUnused) sweepLocked(now);
  if (unasked_.size() >= kMaxUnused) {
    // Still full of recent prefetches: one of them (any) is given up as wasted, so the table
    // stays bounded whatever the playlists ask for.
    unasked_.erase(unasked_.begin());
    count(PrefetchResult::kWasted);
  }
  unasked_[key] = now;
  unasked_size_.store(unasked_.size(), std::memory_order_relaxed);
}

void PrefetchTracker::viewerAsked(const cache::CacheKey& key) {
  if (unasked_size_.load(std::memory_order_relaxed) == 0) return;
  std::lock_guard lock(mu_);
  if (unasked_.erase(key) == 0) return;
  unasked_size_.store(unasked_.size(), std::memory_order_relaxed);
  count(PrefetchResult::kUsed);
}

void PrefetchTracker::release(const std::string& route_id, const cache::CacheKey& key,
                              bool stored, bool cancelled) {
  std::lock_guard lock(mu_);
  auto it = in_flight_.find(route_id);
  if (it != in_flight_.end() && --it->second <= 0) in_flight_.erase(it);
  if (cancelled || stored) return;
  // Nothing stored: not an object a viewer could have used.
  unasked_.erase(key);
  unasked_size_.store(unasked_.size(), std::memory_order_relaxed);
  count(PrefetchResult::kFailed);
}

void PrefetchTracker::sweepLocked(SteadyTime now) {
  for (auto it = unasked_.begin(); it != unasked_.end();) {
    if (now - it->second >= kUnusedAfter) {
      it = unasked_.erase(it);
      count(PrefetchResult::kWasted);
    } else {
      ++it;
    }
  }
  unasked_size_.store(unasked_.size(), std::memory_order_relaxed);
}

std::array<uint64_t, kPrefetchResults> PrefetchTracker::snapshot(SteadyTime now) {
  {
    std::lock_guard lock(mu_);
    sweepLocked(now);
  }
  std::array<uint64_t, kPrefetchResults> out{};
  for (size_t i = 0; i < out.size(); ++i) out[i] = counts_[i].load(std::memory_order_relaxed);
  return out;
}

int PrefetchTracker::inFlight(const std::string& route_id) {
  std::lock_guard lock(mu_);
  auto it = in_flight_.find(route_id);
  return it == in_flight_.end() ? 0 : it->second;
}

namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// A Host field's host, without port ("[v6]" kept whole).
std::string_view hostWithoutPort(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(0, close + 1);
  }
  return host.substr(0, host.find(':'));
}

bool sameHost(std::string_view lowered, std::string_view host) {
  host = hostWithoutPort(host);
  if (host.size() != lowered.size()) return false;
  for (size_t i = 0; i < host.size(); ++i) {
    if (lower(host[i]) != lowered[i]) return false;
  }
  return true;
}

std::string_view directoryOf(std::string_view prefix) {
  return prefix.substr(0, prefix.rfind('/') + 1);  // a prefix is absolute: it has one
}

}  // namespace

void WatchedRenditions::linkLocked(Mpd& mpd) {
  for (size_t i = 0; i < mpd.renditions.size(); ++i) {
    const auto& pattern = mpd.renditions[i].pattern;
    if (!pattern) continue;
    const std::string_view dir = directoryOf(pattern->prefix);
    auto it = by_directory_.find(dir);
    if (it == by_directory_.end()) {
      it = by_directory_.emplace(std::string(dir), std::vector<Ref>{}).first;
    }
    it->second.push_back(Ref{&mpd, i});
  }
}

void WatchedRenditions::unlinkLocked(Mpd& mpd) {
  for (const Rendition& r : mpd.renditions) {
    if (!r.pattern) continue;
    auto it = by_directory_.find(directoryOf(r.pattern->prefix));
    if (it == by_directory_.end()) continue;
    std::erase_if(it->second, [&](const Ref& ref) { return ref.mpd == &mpd; });
    if (it->second.empty()) by_directory_.erase(it);
  }
}

void WatchedRenditions::dropStaleLocked(SteadyTime now) {
  for (auto it = mpds_.begin(); it != mpds_.end();) {
    if (now - it->second.updated > 2 * it->second.window) {
      unlinkLocked(it->second);
      it = mpds_.erase(it);
    } else {
      ++it;
    }
  }
}

std::vector<bool> WatchedRenditions::update(const std::string& vhost, const std::string& route_id,
                                            std::string_view host, const std::string& mpd_path,
                                            const streaming::DashPrefetchPlan& plan,
                                            SteadyTime now) {
  std::string lowered(hostWithoutPort(host));
  for (char& c : lowered) c = lower(c);
  std::string key = route_id;
  key += '\n';
  key += lowered;
  key += '\n';
  key += mpd_path;
  std::vector<Rendition> renditions;
  renditions.reserve(std::min(plan.renditions.size(), streaming::kMaxDashPrefetchRepresentations));
  for (const streaming::DashRenditionTargets& r : plan.renditions) {
    if (renditions.size() >= streaming::kMaxDashPrefetchRepresentations) break;
    renditions.push_back(Rendition{r.representation_id, r.pattern, SteadyTime{}});
  }
  const auto window = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(plan.watch_window_s));

  std::vector<bool> watched(plan.renditions.size(), false);
  std::lock_guard lock(mu_);
  auto it = mpds_.find(key);
  if (it == mpds_.end()) {
    if (mpds_.size() >= kMaxMpds) dropStaleLocked(now);
    if (mpds_.size() >= kMaxMpds) {
      auto oldest = mpds_.begin();
      for (auto m = mpds_.begin(); m != mpds_.end(); ++m) {
        if (m->second.updated < oldest->second.updated) oldest = m;
      }
      unlinkLocked(oldest->second);
      mpds_.erase(oldest);
    }
    it = mpds_.emplace(std::move(key), Mpd{}).first;
    it->second.vhost = vhost;
    it->second.host = std::move(lowered);
  } else {
    unlinkLocked(it->second);
    // A representation that stays (same id, same pattern) keeps its watch.
    for (Rendition& r : renditions) {
      for (const Rendition& old : it->second.renditions) {
        if (old.id == r.id && old.pattern == r.pattern) r.watched_until = old.watched_until;
      }
    }
  }
  Mpd& mpd = it->second;
  mpd.window = window;
  mpd.updated = now;
  mpd.renditions = std::move(renditions);
  linkLocked(mpd);
  size_.store(mpds_.size(), std::memory_order_relaxed);
  for (size_t i = 0; i < mpd.renditions.size(); ++i) {
    watched[i] = mpd.renditions[i].watched_until > now;
  }
  return watched;
}

void WatchedRenditions::viewerRequest(std::string_view vhost, std::string_view host,
                                      std::string_view path, SteadyTime now) {
  if (size_.load(std::memory_order_relaxed) == 0) return;
  std::lock_guard lock(mu_);
  // Each directory of the path, from the deepest up: the number may be a directory of its own.
  size_t end = path.size();
  for (size_t depth = 0; depth < kMaxDirectoryDepth; ++depth) {
    const size_t slash = path.rfind('/', end == 0 ? 0 : end - 1);
    if (slash == std::string_view::npos) break;
    auto it = by_directory_.find(path.substr(0, slash + 1));
    if (it != by_directory_.end()) {
      for (const Ref& ref : it->second) {
        Mpd& mpd = *ref.mpd;
        Rendition& r = mpd.renditions[ref.rendition];
        if (mpd.vhost == vhost && sameHost(mpd.host, host) &&
            streaming::matchesDashSegment(*r.pattern, path)) {
          r.watched_until = std::max(r.watched_until, now + mpd.window);
        }
      }
    }
    if (slash == 0) break;
    end = slash;
  }
}

streaming::PrefetchSelection selectWatchedDashTargets(const streaming::DashPrefetchPlan& plan,
                                                      const std::vector<bool>& watched) {
  streaming::PrefetchSelection selection;
  size_t most = 0;
  for (size_t i = 0; i < plan.renditions.size() && i < watched.size(); ++i) {
    if (!watched[i]) continue;
    selection.refused += plan.renditions[i].refused;
    most = std::max(most, plan.renditions[i].newest.size());
  }
  for (size_t rank = 0; rank < most; ++rank) {
    for (size_t i = 0; i < plan.renditions.size() && i < watched.size(); ++i) {
      if (!watched[i] || rank >= plan.renditions[i].newest.size()) continue;
      const streaming::PrefetchTarget& target = plan.renditions[i].newest[rank];
      if (std::find(selection.targets.begin(), selection.targets.end(), target) ==
          selection.targets.end()) {
        selection.targets.push_back(target);
      }
    }
  }
  return selection;
}

std::string prefetchRouteId(const conf::VhostConfig& vhost, const conf::RouteConfig& route) {
  std::string id = vhost.name;
  id += '\n';
  id += route.prefix;
  return id;
}

void startPrefetch(Worker& worker, const conf::ConfigPtr& config, const conf::VhostConfig& vhost,
                   const conf::RouteConfig& route, const std::string& host,
                   const std::vector<streaming::PrefetchTarget>& targets, size_t refused,
                   const std::vector<std::pair<std::string, std::string>>& forward_headers) {
  PrefetchTracker& tracker = worker.shared().prefetch;
  if (refused > 0) tracker.count(PrefetchResult::kSkipped, refused);
  const std::string route_id = prefetchRouteId(vhost, route);
  std::string path;
  for (const streaming::PrefetchTarget& target : targets) {
    if (!cache::normalizePath(target.path, path)) {
      tracker.count(PrefetchResult::kSkipped);
      continue;
    }
    // The target's own route decides its origin group and key, as for a viewer's request; it
    // must be of the same vhost (never a fill for another site) and cache.
    const RouteMatch match = matchRoute(*config, host, path);
    if (match.vhost != &vhost || !match.route || match.route->cache.mode != conf::CacheMode::kCache ||
        cache::classifyPath(path) == cache::ContentKind::kPlaylist) {
      tracker.count(PrefetchResult::kSkipped);
      continue;
    }
    const conf::RouteConfig& target_route = *match.route;
    const std::string query = cache::filterQuery(target.query, target_route.key);
    const cache::CacheKey key = cache::makeKey(vhost.name, path, query);
    std::shared_ptr<PrefetchTicket> ticket = tracker.reserve(route_id, route.prefetch_concurrency, key);
    if (!ticket) {
      tracker.count(PrefetchResult::kSkipped);
      continue;
    }
    const cache::FieldLineList fields(forward_headers);
    const bool ssd_allowed = target_route.storage == conf::StoragePolicy::kRamAndSsd;
    cache::LookupResult r = worker.shared().cache.lookup(key, ssd_allowed, &fields,
                                                         {vhost.retention, vhost.name});
    const bool fill = (r.kind == cache::LookupResult::Kind::kMiss ||
                       r.kind == cache::LookupResult::Kind::kSsd ||
                       r.kind == cache::LookupResult::Kind::kStale) &&
                      static_cast<bool>(r.fill);
    if (!fill) {
      // Cached, being filled (viewers or another prefetch), or known uncacheable.
      ticket->cancel();
      tracker.count(PrefetchResult::kSkipped);
      continue;
    }
    FillRequest request;
    request.target = path;
    if (!query.empty()) {
      request.target += '?';
      request.target += query;
    }
    request.host = host;
    request.vhost = vhost.name;
    request.path = path;
    request.forward_headers = forward_headers;
    cache::setVaryFields(request.forward_headers, fields.fieldLines(), r.vary.get());
    if (r.kind == cache::LookupResult::Kind::kSsd) {
      // Cached on the SSD tier: not a prefetch, but the fill it was handed is completed from
      // there (dropping it would fail whoever coalesced on it meanwhile).
      ticket->cancel();
      tracker.count(PrefetchResult::kSkipped);
      if (cache::IoEngine* engine = worker.ssdEngine()) {
        Worker* w = &worker;
        conf::ConfigPtr pinned = config;
        const conf::RouteConfig* rt = &target_route;
        auto shared_request = std::make_shared<FillRequest>(std::move(request));
        worker.shared().cache.readFromSsd(
            std::move(r.fill), *engine, [w, pinned, rt, shared_request](cache::FillWriter f) {
              FillJob::start(*w, pinned, *rt, std::move(f), std::move(*shared_request));
            });
        continue;
      }
    } else {
      request.prefetch_ticket = std::move(ticket);
      tracker.issued(key, std::chrono::steady_clock::now());
    }
    FillJob::start(worker, config, target_route, std::move(r.fill), std::move(request));
  }
}

}  // namespace streamedge::proxy
