#include "proxy/peer_tier.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <charconv>
#include <cstdio>

namespace streamedge::proxy {

namespace {

constexpr std::string_view kMacLabel = "streamedge-peer-v1\n";
constexpr size_t kMacBytes = 32;
constexpr const char kAlphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
// A peer that failed on real traffic is used again after this many passed checks that started
// after the failure could have been seen (one check may have been in flight when it failed).
constexpr uint64_t kPassesToReturn = 2;

void base64url(const uint8_t* in, size_t n, std::string& out) {
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    const uint32_t v = uint32_t{in[i]} << 16 | uint32_t{in[i + 1]} << 8 | in[i + 2];
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += kAlphabet[v >> 6 & 63];
    out += kAlphabet[v & 63];
  }
  if (n - i == 1) {
    const uint32_t v = uint32_t{in[i]} << 16;
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
  } else if (n - i == 2) {
    const uint32_t v = uint32_t{in[i]} << 16 | uint32_t{in[i + 1]} << 8;
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += kAlphabet[v >> 6 & 63];
  }
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

const char* peerVerdictName(PeerVerdict verdict) {
  switch (verdict) {
    case PeerVerdict::kOk: return "ok";
    case PeerVerdict::kMalformed: return "malformed";
    case PeerVerdict::kBadMac: return "bad_mac";
    case PeerVerdict::kStale: return "stale";
  }
  return "?";
}

const char* peerResultName(PeerResult result) {
  switch (result) {
    case PeerResult::kOk: return "ok";
    case PeerResult::kServerError: return "5xx";
    case PeerResult::kTimeout: return "timeout";
    case PeerResult::kConnect: return "connect";
    case PeerResult::kError: return "error";
    case PeerResult::kCount: break;
  }
  return "?";
}

std::shared_ptr<PeerTier> PeerTier::make(const conf::ClusterConfig& cluster,
                                         const PeerTier* previous) {
  if (!cluster.enabled || cluster.peers.empty()) return nullptr;
  std::vector<PeerSpec> specs;
  for (const std::string& p : cluster.peers) specs.push_back(PeerSpec{p, 1});
  Result<PeerRing> ring = PeerRing::make(std::move(specs));
  if (!ring.isOk()) {
    std::fprintf(stderr, "streamedge: cluster: %s\n", ring.status().detail());
    return nullptr;
  }
  return std::shared_ptr<PeerTier>(new PeerTier(std::move(*ring), cluster, previous));
}

PeerTier::PeerTier(PeerRing ring, const conf::ClusterConfig& cluster, const PeerTier* previous)
    : ring_(std::move(ring)),
      config_order_(cluster.peers),
      self_(cluster.self_index),
      secret_(cluster.secret),
      max_skew_s_(std::max<int64_t>(1, cluster.max_clock_skew.count() / 1000)),
      load_factor_(cluster.load_factor),
      peers_state_(new Peer[ring_.size()]) {
  for (size_t i = 0; i < ring_.size(); ++i) {
    if (previous) {
      for (size_t j = 0; j < previous->size(); ++j) {
        if (previous->address(j) == address(i)) {
          peers_state_[i].counters = previous->peers_state_[j].counters;
        }
      }
      // A peer that joins a running tier (membership from DNS, or a reload) gets fills only
      // once its own health checks have passed: its answer in DNS says it exists, not that it
      // serves yet. Its health state is new (no checks passed), so it counts as failed at 0.
      if (!peers_state_[i].counters && i != self_) {
        peers_state_[i].failed.store(true, std::memory_order_relaxed);
        peers_state_[i].passes_at_fail.store(0, std::memory_order_relaxed);
      }
    }
    if (!peers_state_[i].counters) peers_state_[i].counters = std::make_shared<PeerCounters>();
  }
}

bool PeerTier::sameMembership(const conf::ClusterConfig& cluster) const {
  return cluster.peers == config_order_ && cluster.self_index == self_ &&
         cluster.secret == secret_ &&
         std::max<int64_t>(1, cluster.max_clock_skew.count() / 1000) == max_skew_s_ &&
         cluster.load_factor == load_factor_;
}

size_t PeerTier::groupOf(const conf::Config& config, size_t peer) const {
  const std::vector<size_t>& groups = config.cluster.peer_group;
  return peer < groups.size() ? groups[peer] : SIZE_MAX;
}

bool PeerTier::usable(size_t peer, const conf::Config& config, const OriginHealth& health,
                      OriginHealth::TimePoint now) const {
  if (peer == self_) return true;
  const size_t group = groupOf(config, peer);
  if (group == SIZE_MAX) return false;
  const OriginHealthView v = health.view(group, 0, now);
  if (!v.active_up) return false;
  const Peer& p = peers_state_[peer];
  if (!p.failed.load(std::memory_order_acquire)) return true;
  return v.checks_passed >= p.passes_at_fail.load(std::memory_order_relaxed) + kPassesToReturn;
}

int PeerTier::choose(const cache::CacheKey& key, const conf::Config& config,
                     const OriginHealth& health, OriginHealth::TimePoint now) const {
  const size_t n = ring_.size();
  bool usable_flags[PeerRing::kMaxPeers];
  uint32_t loads[PeerRing::kMaxPeers];
  for (size_t i = 0; i < n; ++i) {
    usable_flags[i] = usable(i, config, health, now);
    loads[i] = peers_state_[i].load.load(std::memory_order_relaxed);
  }
  // Below 8 fills in flight per peer the owner always gets its keys (a spill would only cost
  // a second origin fetch).
  const int chosen = ring_.choose(key, std::span<const bool>(usable_flags, n),
                                  std::span<const uint32_t>(loads, n), load_factor_, 8);
  if (chosen < 0 || static_cast<size_t>(chosen) == self_) return -1;
  return chosen;
}

void PeerTier::acquire(size_t peer) { peers_state_[peer].load.fetch_add(1, std::memory_order_relaxed); }
void PeerTier::release(size_t peer) { peers_state_[peer].load.fetch_sub(1, std::memory_order_relaxed); }

void PeerTier::markDown(size_t peer, const conf::Config& config, const OriginHealth& health,
                        std::string_view why) {
  Peer& p = peers_state_[peer];
  const size_t group = groupOf(config, peer);
  const uint64_t passes =
      group == SIZE_MAX ? 0 : health.view(group, 0, std::chrono::steady_clock::now()).checks_passed;
  p.passes_at_fail.store(passes, std::memory_order_relaxed);
  if (!p.failed.exchange(true, std::memory_order_acq_rel)) {
    std::fprintf(stderr, "streamedge: cluster: peer %s marked down (%.*s); back after its health "
                 "check passes\n", address(peer).c_str(), static_cast<int>(why.size()), why.data());
  }
}

void PeerTier::count(size_t peer, PeerResult result) {
  peers_state_[peer].counters->results[static_cast<size_t>(result)].fetch_add(
      1, std::memory_order_relaxed);
}

uint64_t PeerTier::requests(size_t peer, PeerResult result) const {
  return peers_state_[peer].counters->results[static_cast<size_t>(result)].load(
      std::memory_order_relaxed);
}

std::string PeerTier::mac(std::string_view method, std::string_view host, std::string_view target,
                          std::string_view ts, std::string_view from) const {
  std::string msg(kMacLabel);
  msg.append(method).append("\n").append(host).append("\n").append(target).append("\n");
  msg.append(ts).append("\n").append(from);
  std::array<uint8_t, kMacBytes> out{};
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
            reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), out.data(), &len) ||
      len != kMacBytes) {
    return {};
  }
  std::string b64;
  base64url(out.data(), out.size(), b64);
  return b64;
}

std::string PeerTier::sign(std::string_view method, std::string_view host, std::string_view target,
                           int64_t unix_seconds) const {
  const std::string ts = std::to_string(unix_seconds);
  const std::string& from = address(self_);
  std::string v = "v1; from=" + from + "; ts=" + ts + "; mac=";
  v += mac(method, host, target, ts, from);
  return v;
}

PeerVerdict PeerTier::verify(std::string_view value, std::string_view method, std::string_view host,
                             std::string_view target, int64_t now_unix, std::string& from) const {
  from.clear();
  std::string_view version, ts, mac_b64;
  bool have_from = false;
  size_t n = 0;
  while (!value.empty()) {
    const size_t semi = value.find(';');
    const std::string_view part = trim(value.substr(0, semi));
    value = semi == std::string_view::npos ? std::string_view() : value.substr(semi + 1);
    if (++n > 8) return PeerVerdict::kMalformed;
    if (n == 1) {
      version = part;
      continue;
    }
    const size_t eq = part.find('=');
    if (eq == std::string_view::npos) return PeerVerdict::kMalformed;
    const std::string_view name = part.substr(0, eq), v = part.substr(eq + 1);
    if (name == "from" && !have_from) {
      from.assign(v.substr(0, 64));
      have_from = v.size() <= 64;
    } else if (name == "ts" && ts.empty()) {
      ts = v;
    } else if (name == "mac" && mac_b64.empty()) {
      mac_b64 = v;
    } else {
      return PeerVerdict::kMalformed;
    }
  }
  if (version != "v1" || !have_from || from.empty() || ts.empty() || mac_b64.empty()) {
    return PeerVerdict::kMalformed;
  }
  int64_t t = 0;
  const auto [end, ec] = std::from_chars(ts.data(), ts.data() + ts.size(), t);
  if (ec != std::errc() || end != ts.data() + ts.size()) return PeerVerdict::kMalformed;
  const std::string expected = mac(method, host, target, ts, from);
  if (expected.empty() || expected.size() != mac_b64.size() ||
      CRYPTO_memcmp(expected.data(), mac_b64.data(), expected.size()) != 0) {
    return PeerVerdict::kBadMac;
  }
  // Checked after the MAC: an attacker learns nothing about the clock from the answer.
  if (t < now_unix - max_skew_s_ || t > now_unix + max_skew_s_) return PeerVerdict::kStale;
  return PeerVerdict::kOk;
}

}  // namespace streamedge::proxy
