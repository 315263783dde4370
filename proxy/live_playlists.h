// LivePlaylists: for each live HLS media playlist URL (its key without the LL-HLS delivery
// directives), the newest stored full playlist the edge has seen for it — the plain playlist or
// the answer to a blocking reload, whichever shows the stream further on — by cache key, with
// the summary a blocking reload decision needs (streaming::PlaylistSummary). Fills record the
// playlists they store (the body is parsed once, by the fill); a blocking request whose own key
// is not stored asks here whether a stored playlist already has its segment or part (answered
// from it at once), is too far ahead (400), or must wait (the hold bound).
//
// The entry names its object by key and identity, never holds it: the cache decides whether it
// is still there and fresh (Cache::peekFresh), so a purge, an eviction or a newer fill under the
// same key makes the entry unusable rather than wrong.
//
// Thread-safety: all methods are thread-safe (sharded, one mutex per shard, no allocation beyond
// the map node under it). Bounded: at most kMaxEntries URLs; beyond, a shard drops its entries
// whose objects are oldest.
#pragma once

#include <array>
#include <cstddef>
#include <mutex>
#include <optional>
#include <string_view>
#include <unordered_map>

#include "cache/cache.h"
#include "conf/clock.h"
#include "streaming/ll_hls.h"

namespace streamedge::proxy {

// The query of a playlist URL without its LL-HLS delivery directives, from a query filtered by
// cache::filterQuery (which puts the directives last, in canonical order).
std::string_view withoutDeliveryDirectives(std::string_view filtered_query);

class LivePlaylists {
 public:
  static constexpr size_t kShards = 16;
  static constexpr size_t kMaxEntries = 16384;

  struct Entry {
    cache::CacheKey object_key;
    const void* object = nullptr;  // identity of the recorded object (never dereferenced)
    WallTime response_time{};      // when the origin answered it
    streaming::PlaylistSummary summary;
  };

  // A fill stored `object` (complete, a full media playlist, not a delta update) for the URL
  // `url_key`. Kept when it shows the stream at least as far on as the entry there, or when the
  // entry's object is older by more than a target duration (a restarted stream).
  void record(const cache::CacheKey& url_key, const cache::CacheObject& object,
              const streaming::PlaylistSummary& summary);
  std::optional<Entry> find(const cache::CacheKey& url_key) const;
  size_t size() const;

 private:
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<cache::CacheKey, Entry, cache::CacheKeyHash> entries;  // guarded by mu
  };
  Shard& shardFor(const cache::CacheKey& k) { return shards_[k.hi & (kShards - 1)]; }
  const Shard& shardFor(const cache::CacheKey& k) const { return shards_[k.hi & (kShards - 1)]; }

  std::array<Shard, kShards> shards_;
};

}  // namespace streamedge::proxy
