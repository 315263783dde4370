#include "metrics/latency_histogram.h"

namespace streamedge::metrics {

namespace {

// The bounds in integer nanoseconds: the per-request path compares integers, never doubles.
constexpr std::array<int64_t, kLatencyBucketBounds.size()> kBoundsNs = [] {
  std::array<int64_t, kLatencyBucketBounds.size()> out{};
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<int64_t>(kLatencyBucketBounds[i] * 1e9 + 0.5);
  }
  return out;
}();

}  // namespace

size_t latencyBucketIndex(int64_t ns) {
  size_t i = 0;
  while (i < kBoundsNs.size() && ns > kBoundsNs[i]) ++i;
  return i;
}

uint64_t HistogramSnapshot::count() const {
  uint64_t n = 0;
  for (uint64_t c : counts) n += c;
  return n;
}

void HistogramSnapshot::add(const HistogramSnapshot& other) {
  for (size_t i = 0; i < counts.size(); ++i) counts[i] += other.counts[i];
  sum_seconds += other.sum_seconds;
}

void LatencyHistogram::addTo(HistogramSnapshot& out) const {
  for (size_t i = 0; i < counts_.size(); ++i) {
    out.counts[i] += counts_[i].load(std::memory_order_relaxed);
  }
  out.sum_seconds += static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
}

}  // namespace streamedge::metrics
