// OriginHealth: whether each origin of each group may get traffic now, from two sources.
//   - Active checks (proxy/health_checker.h, main thread): `fall` consecutive failed checks mark
//     an origin down, `rise` consecutive passed ones mark it up again. An actively-down origin
//     gets no traffic.
//   - Passive outlier detection (every worker, on real traffic): `consecutive_failures` failed
//     attempts in a row eject the origin for a back-off that doubles with each ejection in a row
//     (base_ejection_time, 2x, 4x, ... capped at max_ejection_time; back to the base once the
//     origin went backoff_reset without an ejection). When the back-off ends the origin is
//     half-open: one request (the probe) is admitted; its success restores the origin, its
//     failure ejects it again at once with the next back-off. Passive signals never eject more
//     than max_ejected_percent of a group (at least one origin may be ejected) nor the last origin
//     of a group that active checks and ejections left eligible: an ejection that would is
//     refused, logged and counted, and the failure count starts again.
//   An active down → up transition also ends a passive ejection (the passed checks are fresh
//   evidence; the ejection streak is kept, so a relapse is ejected for longer).
//   - Recovery ramp (group slow_start > 0): after a transition to up, the origin admits a share
//     of the requests that reach it that grows linearly from 10 % to 100 % over slow_start; the
//     others go to the next candidate of the group (the next priority, or the next origin of the
//     same priority). The share is a fraction of requests because origins are tried in order.
//
// Indices are [group][origin] of the config most recently given to the constructor or to
// reconfigure(); indices outside it count as up. reconfigure() (main thread, on reload) keeps the
// state of every origin whose group name, origin name and URL are unchanged. A fetch started on
// an older snapshot whose group changed may attribute one outcome to the origin now at its index.
//
// Every transition (passive ejection or restoration, active up/down) writes one stderr line and
// is counted per origin (transitions up/down, ejections). Times are passed in (`now`), so the
// state machine is tested with a manual clock.
//
// Thread-safety: isUp/admit/record*/view may be called from any thread (atomics; an ejection
// decision takes a mutex, once per threshold crossing). reconfigure() and recordCheck() from the
// main thread only.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "conf/config.h"

namespace streamedge::proxy {

// What /status and /metrics show of one origin.
struct OriginHealthView {
  bool up = true;                 // isUp(): may get traffic (active and passive agree)
  bool active_checks = false;     // the group has [health_check]
  bool active_up = true;          // last active verdict (true without checks)
  bool ejected = false;           // passively ejected now
  bool half_open = false;         // ejection over, waiting for a probe's outcome
  const char* down_reason = "";   // "active", "passive" or "" when up
  int consecutive_failures = 0;   // passive: failed attempts in a row
  int check_failures = 0;         // active: failed checks in a row
  int check_successes = 0;        // active: passed checks in a row
  uint64_t checks_passed = 0;     // active: passed checks since start
  uint64_t ejections = 0;         // passive ejections since start
  uint64_t ejections_refused = 0; // ejections refused by the group cap
  int ejection_streak = 0;        // ejections in a row (the back-off exponent + 1)
  int64_t backoff_ms = 0;         // the current (or last) ejection's length
  int64_t ejected_remaining_ms = 0;
  double ramp = 1.0;              // share of requests admitted by the recovery ramp
  uint64_t transitions_up = 0;
  uint64_t transitions_down = 0;
};

class OriginHealth {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  explicit OriginHealth(const conf::Config& config);
  ~OriginHealth();
  OriginHealth(const OriginHealth&) = delete;
  OriginHealth& operator=(const OriginHealth&) = delete;

  // Main thread: adopt a reloaded config's groups and thresholds (see the file comment).
  void reconfigure(const conf::Config& config);

  // Up: not actively down and not passively ejected (a half-open origin without a probe in
  // flight counts as up). A pure query.
  bool isUp(size_t group, size_t origin, TimePoint now) const;

  // Whether a request may go to this origin now: false when actively down or ejected; for a
  // half-open origin true for one caller only (the probe) until its outcome is recorded or
  // another base_ejection_time passes; for a ramping origin true with probability ramp(now) when
  // an origin after it in the group is up (else true). `draw` in [0, 1) decides the ramp; the
  // overload without it draws from a per-thread generator.
  bool admit(size_t group, size_t origin, TimePoint now);
  bool admit(size_t group, size_t origin, TimePoint now, double draw);

  // Outcomes of real requests (attempts) to an origin.
  void recordSuccess(size_t group, size_t origin);  // now = steady_clock::now()
  void recordSuccess(size_t group, size_t origin, TimePoint now);
  void recordFailure(size_t group, size_t origin, TimePoint now);

  // Main thread: the outcome of one active check (`why` is logged on a transition to down).
  void recordCheck(size_t group, size_t origin, bool passed, TimePoint now,
                   const std::string& why = "");

  // Share of requests the recovery ramp admits now (1 when not ramping).
  double ramp(size_t group, size_t origin, TimePoint now) const;

  OriginHealthView view(size_t group, size_t origin, TimePoint now) const;

 private:
  struct State;
  struct Group;
  struct Table;

  const Table* table() const { return table_.load(std::memory_order_acquire); }
  const Group* groupAt(size_t group) const;
  State* state(size_t group, size_t origin) const;  // null when out of range
  bool isUpState(const State& s, int64_t now_ns) const;
  // Passive ejection of `origin` (failures reached the threshold, or a probe failed).
  void eject(const Group& g, size_t origin, State& s, int64_t now_ns, const char* cause);
  void restore(const Group& g, size_t origin, State& s, int64_t now_ns, const char* how);

  std::atomic<const Table*> table_{nullptr};
  // Every table ever published (a worker may still read an older one); main thread only.
  std::vector<std::unique_ptr<Table>> tables_;
  // The state of each origin by group name, origin name and URL; main thread only.
  std::map<std::string, std::shared_ptr<State>> identities_;
  std::mutex eject_mu_;  // serialises ejection decisions (the group cap is a group-wide count)
};

}  // namespace streamedge::proxy
