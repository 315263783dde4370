// Prometheus exposition for streamedge. proxy/ gathers a Snapshot at scrape time (per-worker
// counters summed, cache and origin state read) and this module turns it into metric families
// and the text format through prometheus-cpp's serializer. Label values come only from config
// (vhost, group, origin, dc, tier) or fixed vocabularies (result, status class): never URLs,
// paths, client addresses or tokens. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace streamedge::metrics {

struct OriginState {
  std::string group;
  std::string origin;
  std::string dc;
  bool up = false;
};

struct Snapshot {
  double start_time_unix_seconds = 0;
  std::vector<std::pair<std::string, uint64_t>> requests_by_result;  // "hit", "miss", ...
  std::vector<std::pair<std::string, uint64_t>> responses_by_class;  // "2xx", ...
  uint64_t response_bytes = 0;
  uint64_t origin_fetches = 0;
  uint64_t origin_failures = 0;
  uint64_t connections_accepted = 0;
  int64_t connections_active = 0;
  uint64_t bad_requests = 0;
  uint64_t cache_objects = 0;
  uint64_t cache_bytes = 0;
  uint64_t cache_capacity_bytes = 0;
  uint64_t cache_evictions = 0;
  uint64_t cache_admissions = 0;
  uint64_t reloads_ok = 0;
  uint64_t reloads_failed = 0;
  std::vector<OriginState> origins;
};

// The Prometheus text format (version 0.0.4) for `snapshot`, plus build_info.
std::string renderPrometheus(const Snapshot& snapshot);

}  // namespace streamedge::metrics
