#include "proxy/client_budget.h"

#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <functional>

namespace streamedge::proxy {

namespace {

// '4' + 4 address bytes, or '6' + the 8 bytes of the /64, then the group name (the family
// byte fixes where the name starts); empty for another family.
std::string clientKey(const std::string& group, const sockaddr* client) {
  std::string key;
  if (client->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(client);
    key += '4';
    key.append(reinterpret_cast<const char*>(&in->sin_addr), 4);
  } else if (client->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(client);
    const uint8_t* a = in6->sin6_addr.s6_addr;
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(a, kMapped, 12) == 0) {
      key += '4';  // an IPv4 client on an IPv6 socket
      key.append(reinterpret_cast<const char*>(a + 12), 4);
    } else {
      key += '6';
      key.append(reinterpret_cast<const char*>(a), 8);
    }
  } else {
    return {};
  }
  key += group;
  return key;
}

}  // namespace

bool ClientMissBudget::take(const std::string& group, const sockaddr* client, double rate, double burst,
                            Clock::time_point now) {
  if (rate <= 0 || !client) return true;
  if (burst < 1) burst = std::max(1.0, rate);
  const std::string key = clientKey(group, client);
  if (key.empty()) return true;
  Shard& shard = shards_[std::hash<std::string>{}(key) % kShards];
  std::lock_guard lock(shard.mu);
  auto it = shard.buckets.find(key);
  if (it == shard.buckets.end()) {
    if (shard.buckets.size() >= kMaxClientsPerShard) {
      if (now < shard.next_sweep) return true;  // full, and nothing has refilled yet: fail open
      // Buckets that have refilled completely carry nothing: drop them to make room. When
      // none has, every bucket will have within burst / rate: no sweep before that (a flood of
      // new clients costs one sweep per interval, not one per request).
      std::erase_if(shard.buckets, [&](const auto& kv) {
        const double elapsed = std::chrono::duration<double>(now - kv.second.last).count();
        return kv.second.tokens + elapsed * rate >= burst;
      });
      if (shard.buckets.size() >= kMaxClientsPerShard) {
        shard.next_sweep = now + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(burst / rate));
        return true;
      }
    }
    it = shard.buckets.emplace(key, Bucket{burst, now}).first;
  }
  Bucket& b = it->second;
  const double elapsed = std::max(0.0, std::chrono::duration<double>(now - b.last).count());
  b.tokens = std::min(burst, b.tokens + elapsed * rate);
  b.last = now;
  if (b.tokens < 1.0) {
    ++shard.rejected[group];
    return false;
  }
  b.tokens -= 1.0;
  return true;
}

std::map<std::string, uint64_t> ClientMissBudget::rejected() const {
  std::map<std::string, uint64_t> out;
  for (const Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    for (const auto& [group, n] : s.rejected) out[group] += n;
  }
  return out;
}

size_t ClientMissBudget::tracked() const {
  size_t n = 0;
  for (const Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    n += s.buckets.size();
  }
  return n;
}

}  // namespace streamedge::proxy
