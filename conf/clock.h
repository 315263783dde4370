// Clock: wall time (HTTP dates, freshness) and monotonic time (timeouts), injectable so that
// TTL logic is tested without sleeping. SystemClock is stateless and thread-safe; ManualClock is
// for tests and is thread-safe too (atomics).
#pragma once

#include <atomic>
#include <chrono>

namespace streamedge {

using WallTime = std::chrono::system_clock::time_point;
using MonoTime = std::chrono::steady_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual WallTime wallNow() const = 0;
  virtual MonoTime monoNow() const = 0;
};

class SystemClock final : public Clock {
 public:
  WallTime wallNow() const override { return std::chrono::system_clock::now(); }
  MonoTime monoNow() const override { return std::chrono::steady_clock::now(); }
  static const SystemClock& instance() {
    static const SystemClock clock;
    return clock;
  }
};

class ManualClock final : public Clock {
 public:
  explicit ManualClock(WallTime start = WallTime(std::chrono::seconds(1'700'000'000)))
      : wall_(start.time_since_epoch().count()) {}
  WallTime wallNow() const override {
    return WallTime(WallTime::duration(wall_.load()));
  }
  MonoTime monoNow() const override { return MonoTime(MonoTime::duration(mono_.load())); }
  void advance(std::chrono::nanoseconds d) {
    wall_ += std::chrono::duration_cast<WallTime::duration>(d).count();
    mono_ += std::chrono::duration_cast<MonoTime::duration>(d).count();
  }

 private:
  std::atomic<WallTime::rep> wall_;
  std::atomic<MonoTime::rep> mono_{0};
};

}  // namespace streamedge
