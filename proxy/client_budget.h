// ClientMissBudget: the optional per-client budget of misses per second of an origin group
// ([origin_group] client_miss_rate / client_miss_burst), so that one client busting the cache
// (distinct URLs, each a miss) cannot spend the origin's capacity that the other viewers need.
//
// A token bucket per (group, client): `burst` misses at once, refilled at `rate` per second. A
// client is its IPv4 address, or the /64 of its IPv6 address (one subscriber's prefix). Only
// requests that start an origin fetch take a token (a miss that fills, a pass); hits and
// viewers joining a fill never do. Beyond the budget the viewer gets 429 with Retry-After.
//
// Memory is bounded: at most kMaxClientsPerShard buckets per shard (16 shards). A bucket that
// has refilled completely is the same as none and is dropped when room is needed; when every
// bucket is still draining, a new client is let through uncounted (fail open: the origin's own
// caps of origin_limits.h still hold). Addresses live here only as long as their bucket: a few
// seconds after a client's last miss (privacy: never written anywhere).
//
// Thread-safety: any thread (one mutex per shard).
#pragma once

#include <sys/socket.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

namespace streamedge::proxy {

class ClientMissBudget {
 public:
  static constexpr size_t kShards = 16;
  static constexpr size_t kMaxClientsPerShard = 4096;

  using Clock = std::chrono::steady_clock;

  // Takes one miss for `client` in origin group `group`; false when its budget is spent.
  // rate <= 0: no budget (always true). burst < 1: max(1, rate).
  bool take(const std::string& group, const sockaddr* client, double rate, double burst,
            Clock::time_point now = Clock::now());

  std::map<std::string, uint64_t> rejected() const;  // misses refused, per group
  size_t tracked() const;                            // buckets held now

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point last{};
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, Bucket> buckets;  // key: address bytes + group
    std::map<std::string, uint64_t> rejected;         // per group
    Clock::time_point next_sweep{};                   // full: no sweep before this
  };
  std::array<Shard, kShards> shards_;
};

}  // namespace streamedge::proxy
