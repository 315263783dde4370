// SharedState: what all workers of one process share — the cache, origin health, the access
// log and per-worker counters. Owned by the Server, outlives the workers. Thread-safe members.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "cache/cache.h"
#include "conf/config.h"
#include "proxy/access_log.h"
#include "proxy/origin_client.h"

namespace streamedge::proxy {

enum class CacheResult : uint8_t { kHit, kMiss, kStale, kCoalesced, kPass, kNone, kCount };
const char* cacheResultName(CacheResult r);  // "HIT", "MISS", ..., "-" for kNone

// Written by one worker (relaxed), read by the admin thread and summed at scrape time.
struct WorkerCounters {
  std::array<std::atomic<uint64_t>, static_cast<size_t>(CacheResult::kCount)> requests_by_result{};
  std::array<std::atomic<uint64_t>, 6> responses_by_class{};  // [1..5]xx, [0] unused
  std::atomic<uint64_t> response_bytes{0};
  std::atomic<uint64_t> origin_fetches{0};
  std::atomic<uint64_t> origin_failures{0};
  std::atomic<uint64_t> connections_accepted{0};
  std::atomic<int64_t> connections_active{0};
  std::atomic<uint64_t> bad_requests{0};
  std::atomic<int64_t> heartbeat_unix_ms{0};  // the loop's last tick

  void add(std::atomic<uint64_t>& c, uint64_t n = 1) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

struct SharedState {
  SharedState(const conf::Config& config)
      : cache(config.cache.ram, SystemClock::instance()),
        health(std::make_shared<OriginHealth>(config)),
        access_log(config.log.access_log) {}

  cache::Cache cache;
  std::shared_ptr<OriginHealth> health;
  AccessLog access_log;
  std::vector<std::unique_ptr<WorkerCounters>> counters;  // one per worker, fixed at start
  std::atomic<int64_t> connections_total_active{0};
  std::atomic<bool> draining{false};
};

}  // namespace streamedge::proxy
