#include "proxy/peer_ring.h"

#include <xxhash.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <unordered_set>

namespace streamedge::proxy {

Result<PeerRing> PeerRing::make(std::vector<PeerSpec> peers) {
  if (peers.empty()) return Status(Code::kInvalid, Source::kInternal, "a cluster needs at least one peer");
  if (peers.size() > kMaxPeers) return Status(Code::kInvalid, Source::kInternal, "more than 256 peers");
  std::unordered_set<std::string_view> seen;
  for (const PeerSpec& p : peers) {
    if (p.address.empty()) return Status(Code::kInvalid, Source::kInternal, "a peer address is empty");
    if (p.weight == 0 || p.weight > 1000) {
      return Status(Code::kInvalid, Source::kInternal, "a peer weight must be 1..1000");
    }
    if (!seen.insert(p.address).second) {
      return Status(Code::kInvalid, Source::kInternal, "a peer address is listed twice");
    }
  }
  return PeerRing(std::move(peers));
}

PeerRing::PeerRing(std::vector<PeerSpec> peers) : peers_(std::move(peers)) {
  seeds_.reserve(peers_.size());
  for (const PeerSpec& p : peers_) seeds_.push_back(XXH3_64bits(p.address.data(), p.address.size()));
}

int PeerRing::find(std::string_view address) const {
  for (size_t i = 0; i < peers_.size(); ++i) {
    if (peers_[i].address == address) return static_cast<int>(i);
  }
  return -1;
}

double PeerRing::score(const cache::CacheKey& key, size_t index) const {
  const std::array<uint64_t, 2> words{key.hi, key.lo};
  const uint64_t h = XXH3_64bits_withSeed(words.data(), sizeof words, seeds_[index]);
  // The top 53 bits as a double strictly inside (0,1): ln(u) < 0, so the score is positive
  // and grows with the weight.
  const double u = (static_cast<double>(h >> 11) + 0.5) * 0x1.0p-53;
  return -static_cast<double>(peers_[index].weight) / std::log(u);
}

size_t PeerRing::owner(const cache::CacheKey& key) const {
  size_t best = 0;
  double best_score = score(key, 0);
  for (size_t i = 1; i < peers_.size(); ++i) {
    const double s = score(key, i);
    if (s > best_score) {
      best = i;
      best_score = s;
    }
  }
  return best;
}

size_t PeerRing::ranking(const cache::CacheKey& key, std::span<uint16_t> out) const {
  std::array<std::pair<double, uint16_t>, kMaxPeers> scored;
  for (size_t i = 0; i < peers_.size(); ++i) scored[i] = {score(key, i), static_cast<uint16_t>(i)};
  const size_t n = std::min(out.size(), peers_.size());
  // Ties (two equal doubles) are broken by index, so every edge ranks alike.
  std::partial_sort(scored.begin(), scored.begin() + n, scored.begin() + peers_.size(),
                    [](const auto& a, const auto& b) {
                      return a.first > b.first || (a.first == b.first && a.second < b.second);
                    });
  for (size_t i = 0; i < n; ++i) out[i] = scored[i].second;
  return n;
}

int PeerRing::choose(const cache::CacheKey& key, std::span<const bool> usable,
                     std::span<const uint32_t> load, double c, uint32_t floor) const {
  uint64_t total = 0;
  size_t count = 0;
  for (size_t i = 0; i < peers_.size(); ++i) {
    if (!usable[i]) continue;
    total += load[i];
    ++count;
  }
  if (count == 0) return -1;
  const double cap = std::max(static_cast<double>(floor),
                              std::ceil(c * static_cast<double>(total + 1) / static_cast<double>(count)));
  std::array<uint16_t, kMaxPeers> order;
  const size_t n = ranking(key, std::span<uint16_t>(order.data(), peers_.size()));
  int first_usable = -1;
  for (size_t r = 0; r < n; ++r) {
    const uint16_t i = order[r];
    if (!usable[i]) continue;
    if (first_usable < 0) first_usable = i;
    if (static_cast<double>(load[i]) < cap) return i;
  }
  // Unreachable while c > 1 (some usable peer is below the mean), kept for c <= 1.
  return first_usable;
}

}  // namespace streamedge::proxy
