#include "proxy/origin_stats.h"

namespace streamedge::proxy {

OriginStats::Series& OriginStats::series(const conf::OriginGroupConfig& group,
                                         const conf::OriginConfig& origin) {
  // Called with mu_ held. Building the key allocates; this runs once per origin attempt, next to
  // a network round trip, never on a cache hit.
  return series_[Key(group.name, origin.name, origin.dc)];
}

void OriginStats::attempt(const conf::OriginGroupConfig& group, const conf::OriginConfig& origin) {
  std::lock_guard<std::mutex> lock(mu_);
  ++series(group, origin).requests;
}

void OriginStats::error(const conf::OriginGroupConfig& group, const conf::OriginConfig& origin,
                        metrics::OriginErrorReason reason) {
  std::lock_guard<std::mutex> lock(mu_);
  ++series(group, origin).errors[static_cast<size_t>(reason)];
}

void OriginStats::retry(const conf::OriginGroupConfig& group, const conf::OriginConfig& origin) {
  std::lock_guard<std::mutex> lock(mu_);
  ++series(group, origin).retries;
}

void OriginStats::failover(const conf::OriginGroupConfig& group, const conf::OriginConfig& origin) {
  std::lock_guard<std::mutex> lock(mu_);
  ++series(group, origin).failovers;
}

void OriginStats::latency(const conf::OriginGroupConfig& group, const conf::OriginConfig& origin,
                          std::chrono::nanoseconds head_after) {
  const int64_t ns = head_after.count() < 0 ? 0 : head_after.count();
  std::lock_guard<std::mutex> lock(mu_);
  Series& s = series(group, origin);
  ++s.latency.counts[metrics::latencyBucketIndex(ns)];
  s.latency.sum_seconds += static_cast<double>(ns) / 1e9;
}

void OriginStats::resume(const conf::OriginGroupConfig& group, const conf::OriginConfig& from,
                         const conf::OriginConfig* to, ResumeOutcome outcome) {
  auto dcOf = [](const conf::OriginConfig& o) { return o.dc.empty() ? o.name : o.dc; };
  ResumeKey key(group.name, dcOf(from), to ? dcOf(*to) : std::string(),
                resumeOutcomeName(outcome));
  std::lock_guard<std::mutex> lock(mu_);
  ++resumes_[key];
}

void OriginStats::addResumesTo(std::map<ResumeKey, uint64_t>& out) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [key, n] : resumes_) out[key] += n;
}

void OriginStats::addTo(std::map<Key, Series>& out) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [key, s] : series_) {
    Series& o = out[key];
    o.requests += s.requests;
    for (size_t r = 0; r < s.errors.size(); ++r) o.errors[r] += s.errors[r];
    o.retries += s.retries;
    o.failovers += s.failovers;
    o.latency.add(s.latency);
  }
}

}  // namespace streamedge::proxy
