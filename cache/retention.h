// Retention: per-vhost limits on how long an object is kept after it was fetched from the origin
// ([[vhost]] retention), so that a customer's "nothing kept longer than N days" is enforced by the
// edge itself. An object's age for retention runs from its response time (Freshness::
// response_time: when its head arrived from the origin, or when a 304 last confirmed it), on the
// RAM tier and on the SSD tier, whose entries keep that time in their head blob and its index
// and checkpoint a copy (SsdEntryInfo::stored_at).
//
// The Cache enforces it at lookup (the caller passes its vhost's limit: the key includes the
// vhost, so every object under a key has that vhost's limit), on SSD reads, before writing to
// the SSD, and in a periodic sweep (Cache::sweepRetention) that finds objects nobody asks for
// by their :vhost purge label (purge_labels.h). An object past its limit is never served, not
// even stale: it is removed from RAM, tombstoned on the SSD, and the next request is a miss.
//
// RetentionTable is an immutable value once built; thread-safe to share as a const snapshot.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "conf/clock.h"
#include "conf/config.h"

namespace streamedge::cache {

// True when an object that arrived at `stored_at` is past a limit of `max_age` (0: no limit).
inline bool pastRetention(WallTime stored_at, conf::Millis max_age, WallTime now) {
  return max_age.count() > 0 && now - stored_at >= max_age;
}

// Retention limits by vhost name (the name the cache keys and purge labels were made with).
class RetentionTable {
 public:
  RetentionTable() = default;
  // The limits of `config`'s vhosts (those without one are left out).
  explicit RetentionTable(const conf::Config& config);

  void set(std::string vhost, conf::Millis max_age);
  // The limit of `vhost`; 0 when it has none. No allocation.
  conf::Millis maxAgeOf(std::string_view vhost) const;
  bool empty() const { return by_vhost_.empty(); }

 private:
  std::map<std::string, conf::Millis, std::less<>> by_vhost_;
};

// Objects removed for retention, per vhost label and tier (streamedge_retention_expired_objects_total).
struct RetentionExpiredCount {
  std::string vhost;  // "" for an object stored without a :vhost label
  uint64_t ram = 0;
  uint64_t ssd = 0;
};

}  // namespace streamedge::cache
