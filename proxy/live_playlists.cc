#include "proxy/live_playlists.h"

#include <algorithm>
#include <chrono>

namespace streamedge::proxy {

std::string_view withoutDeliveryDirectives(std::string_view q) {
  // filterQuery puts the directives last: cut at the first one that starts a parameter.
  size_t pos = 0;
  while (pos <= q.size()) {
    for (std::string_view name : cache::kLlHlsDirectives) {
      const std::string_view rest = q.substr(pos);
      if (rest.substr(0, name.size()) == name &&
          (rest.size() == name.size() || rest[name.size()] == '=' || rest[name.size()] == '&')) {
        return q.substr(0, pos == 0 ? 0 : pos - 1);
      }
    }
    const size_t amp = q.find('&', pos);
    if (amp == std::string_view::npos) break;
    pos = amp + 1;
  }
  return q;
}

namespace {

// Further on: a later segment being made, or more of its parts.
bool atLeastAsFar(const streaming::PlaylistSummary& a, const streaming::PlaylistSummary& b) {
  if (a.next_msn != b.next_msn) return a.next_msn > b.next_msn;
  return a.trailing_parts >= b.trailing_parts;
}

}  // namespace

void LivePlaylists::record(const cache::CacheKey& url_key, const cache::CacheObject& object,
                           const streaming::PlaylistSummary& summary) {
  const WallTime response_time = object.freshness().response_time;
  Shard& shard = shardFor(url_key);
  std::lock_guard<std::mutex> lock(shard.mu);
  auto it = shard.entries.find(url_key);
  if (it != shard.entries.end()) {
    Entry& e = it->second;
    const auto target = std::chrono::seconds(std::max<uint64_t>(1, std::min<uint64_t>(e.summary.target_duration_s, 3600)));
    if (!atLeastAsFar(summary, e.summary) && response_time <= e.response_time + target) return;
    e = Entry{object.key(), &object, response_time, summary};
    return;
  }
  if (shard.entries.size() >= kMaxEntries / kShards) {
    // Full: drop the quarter of this shard whose playlists are oldest (a URL no one asks for any
    // more is re-learnt from its next fill if it comes back).
    std::vector<WallTime> times;
    times.reserve(shard.entries.size());
    for (const auto& [k, e] : shard.entries) times.push_back(e.response_time);
    const size_t drop = std::max<size_t>(1, times.size() / 4);
    std::nth_element(times.begin(), times.begin() + static_cast<std::ptrdiff_t>(drop - 1), times.end());
    const WallTime cut = times[drop - 1];
    size_t dropped = 0;
    for (auto it = shard.entries.begin(); it != shard.entries.end() && dropped < drop;) {
      if (it->second.response_time <= cut) {
        it = shard.entries.erase(it);
        ++dropped;
      } else {
        ++it;
      }
    }
  }
  shard.entries.emplace(url_key, Entry{object.key(), &object, response_time, summary});
}

std::optional<LivePlaylists::Entry> LivePlaylists::find(const cache::CacheKey& url_key) const {
  const Shard& shard = shardFor(url_key);
  std::lock_guard<std::mutex> lock(shard.mu);
  auto it = shard.entries.find(url_key);
  if (it == shard.entries.end()) return std::nullopt;
  return it->second;
}

size_t LivePlaylists::size() const {
  size_t n = 0;
  for (const Shard& s : shards_) {
    std::lock_guard<std::mutex> lock(s.mu);
    n += s.entries.size();
  }
  return n;
}

}  // namespace streamedge::proxy
