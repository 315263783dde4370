// Latency histograms without contended atomics: each worker owns a LatencyHistogram it alone
// writes (relaxed load + store, no read-modify-write), and the admin thread sums every worker's
// copy into a HistogramSnapshot at scrape time. The bucket bounds suit video delivery: a RAM hit
// or an SSD read takes 0.1-1 ms, a segment fill from a distant origin seconds, so 100 µs … 10 s.
//
// Thread-safety: observe() from the one owning thread; snapshot reads from any thread (each
// bucket is read atomically; a scrape may see a sample in the count a moment before the sum).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace streamedge::metrics {

// Upper bounds in seconds, ascending; +Inf is implied after the last.
inline constexpr std::array<double, 16> kLatencyBucketBounds = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
inline constexpr size_t kLatencyBuckets = kLatencyBucketBounds.size() + 1;  // + the +Inf bucket

// Index of the bucket (non-cumulative) that holds a sample of `ns` nanoseconds: the first whose
// upper bound is >= the sample (Prometheus buckets are "less than or equal").
size_t latencyBucketIndex(int64_t ns);

struct HistogramSnapshot {
  std::array<uint64_t, kLatencyBuckets> counts{};  // per bucket, not cumulative
  double sum_seconds = 0;

  uint64_t count() const;
  void add(const HistogramSnapshot& other);
};

class LatencyHistogram {
 public:
  // Owning thread only.
  void observe(std::chrono::nanoseconds latency) {
    const int64_t ns = latency.count() < 0 ? 0 : latency.count();
    bump(counts_[latencyBucketIndex(ns)], 1);
    bump(sum_ns_, static_cast<uint64_t>(ns));
  }
  // Any thread: adds this histogram's current values to `out`.
  void addTo(HistogramSnapshot& out) const;

 private:
  static void bump(std::atomic<uint64_t>& c, uint64_t n) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::array<std::atomic<uint64_t>, kLatencyBuckets> counts_{};
  std::atomic<uint64_t> sum_ns_{0};
};

}  // namespace streamedge::metrics
