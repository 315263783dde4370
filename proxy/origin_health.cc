#include "proxy/origin_health.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <map>
#include <random>

namespace streamedge::proxy {

namespace {

constexpr int64_t kNone = std::numeric_limits<int64_t>::min();
// The first share of requests a recovered origin gets when slow_start is on.
constexpr double kMinRamp = 0.1;
// Back-off exponents beyond this change nothing (the cap is reached long before).
constexpr int kMaxStreakExponent = 30;

int64_t toNanos(OriginHealth::TimePoint t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

int64_t nanos(Millis ms) { return ms.count() * 1'000'000; }

std::string identity(const conf::OriginGroupConfig& g, const conf::OriginConfig& o) {
  return g.name + '\n' + o.name + '\n' + o.url;
}

}  // namespace

struct OriginHealth::State {
  // Passive (any worker).
  std::atomic<int> consecutive_failures{0};
  std::atomic<int64_t> ejected_until_ns{kNone};  // kNone: not ejected (nor half-open)
  std::atomic<int64_t> probe_until_ns{kNone};    // a half-open probe is in flight until then
  std::atomic<int> streak{0};                    // ejections in a row
  std::atomic<int64_t> last_ejection_end_ns{kNone};
  std::atomic<int64_t> backoff_ns{0};            // the current (or last) ejection's length
  std::atomic<uint64_t> ejections{0};
  std::atomic<uint64_t> ejections_refused{0};
  // Active (written by the main thread).
  std::atomic<bool> active_down{false};
  std::atomic<int> check_failures{0};
  std::atomic<int> check_successes{0};
  std::atomic<uint64_t> checks_passed{0};  // since start
  // Both.
  std::atomic<int64_t> ramp_start_ns{kNone};
  std::atomic<uint64_t> transitions_up{0};
  std::atomic<uint64_t> transitions_down{0};
};

struct OriginHealth::Group {
  std::string name;
  std::vector<std::string> origin_names;
  std::vector<std::string> dcs;
  std::vector<std::shared_ptr<State>> states;
  conf::OutlierDetectionConfig outlier;
  bool active_checks = false;
  int fall = 3;
  int rise = 2;
  int64_t slow_start_ns = 0;
};

struct OriginHealth::Table {
  std::vector<Group> groups;
};

OriginHealth::OriginHealth(const conf::Config& config) { reconfigure(config); }

OriginHealth::~OriginHealth() = default;

void OriginHealth::reconfigure(const conf::Config& config) {
  auto next = std::make_unique<Table>();
  next->groups.reserve(config.origin_groups.size());
  for (const conf::OriginGroupConfig& gc : config.origin_groups) {
    Group g;
    g.name = gc.name;
    g.outlier = gc.outlier;
    g.active_checks = gc.health_check.enabled;
    g.fall = gc.health_check.fall;
    g.rise = gc.health_check.rise;
    g.slow_start_ns = nanos(gc.slow_start);
    for (const conf::OriginConfig& oc : gc.origins) {
      g.origin_names.push_back(oc.name);
      g.dcs.push_back(oc.dc);
      std::shared_ptr<State> s;
      const auto it = identities_.find(identity(gc, oc));
      if (it != identities_.end()) s = it->second;
      if (!s) s = std::make_shared<State>();
      if (!g.active_checks) {
        // Without checks nothing would ever bring an origin back up from an active verdict.
        s->active_down.store(false, std::memory_order_relaxed);
        s->check_failures.store(0, std::memory_order_relaxed);
        s->check_successes.store(0, std::memory_order_relaxed);
      }
      g.states.push_back(std::move(s));
    }
    next->groups.push_back(std::move(g));
  }
  identities_.clear();
  for (size_t gi = 0; gi < config.origin_groups.size(); ++gi) {
    const conf::OriginGroupConfig& gc = config.origin_groups[gi];
    for (size_t oi = 0; oi < gc.origins.size(); ++oi) {
      identities_[identity(gc, gc.origins[oi])] = next->groups[gi].states[oi];
    }
  }
  table_.store(next.get(), std::memory_order_release);
  tables_.push_back(std::move(next));
}

const OriginHealth::Group* OriginHealth::groupAt(size_t group) const {
  const Table* t = table();
  if (!t || group >= t->groups.size()) return nullptr;
  return &t->groups[group];
}

OriginHealth::State* OriginHealth::state(size_t group, size_t origin) const {
  // Indices from another config snapshot may be out of range: such an origin counts as up.
  const Group* g = groupAt(group);
  if (!g || origin >= g->states.size()) return nullptr;
  return g->states[origin].get();
}

bool OriginHealth::isUpState(const State& s, int64_t now_ns) const {
  if (s.active_down.load(std::memory_order_relaxed)) return false;
  const int64_t until = s.ejected_until_ns.load(std::memory_order_relaxed);
  if (until == kNone) return true;
  if (now_ns < until) return false;
  // Half-open: up unless a probe is in flight.
  return now_ns >= s.probe_until_ns.load(std::memory_order_relaxed);
}

bool OriginHealth::isUp(size_t group, size_t origin, TimePoint now) const {
  const State* s = state(group, origin);
  return !s || isUpState(*s, toNanos(now));
}

double OriginHealth::ramp(size_t group, size_t origin, TimePoint now) const {
  const Group* g = groupAt(group);
  if (!g || origin >= g->states.size() || g->slow_start_ns <= 0) return 1.0;
  const int64_t start = g->states[origin]->ramp_start_ns.load(std::memory_order_relaxed);
  if (start == kNone) return 1.0;
  const int64_t elapsed = toNanos(now) - start;
  if (elapsed >= g->slow_start_ns) return 1.0;
  const double share = static_cast<double>(std::max<int64_t>(0, elapsed)) /
                       static_cast<double>(g->slow_start_ns);
  return std::max(kMinRamp, share);
}

bool OriginHealth::admit(size_t group, size_t origin, TimePoint now) {
  thread_local std::minstd_rand rng(std::random_device{}());
  const double draw = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  return admit(group, origin, now, draw);
}

bool OriginHealth::admit(size_t group, size_t origin, TimePoint now, double draw) {
  const Group* g = groupAt(group);
  if (!g || origin >= g->states.size()) return true;
  State& s = *g->states[origin];
  const int64_t now_ns = toNanos(now);
  if (s.active_down.load(std::memory_order_relaxed)) return false;
  const int64_t until = s.ejected_until_ns.load(std::memory_order_relaxed);
  if (until != kNone) {
    if (now_ns < until) return false;
    // Half-open: the one caller that moves the probe deadline on is the probe; the others wait
    // for its outcome (success restores, failure ejects again). A probe that never reports back
    // (cancelled) lets the next one through after another base_ejection_time.
    int64_t probe = s.probe_until_ns.load(std::memory_order_relaxed);
    if (now_ns < probe) return false;
    return s.probe_until_ns.compare_exchange_strong(
        probe, now_ns + nanos(g->outlier.base_ejection_time), std::memory_order_relaxed);
  }
  const double share = ramp(group, origin, now);
  if (share >= 1.0 || draw < share) return true;
  // Declined by the ramp only when someone can take the request instead.
  for (size_t j = origin + 1; j < g->states.size(); ++j) {
    if (isUpState(*g->states[j], now_ns)) return false;
  }
  return true;
}

void OriginHealth::recordSuccess(size_t group, size_t origin) {
  recordSuccess(group, origin, std::chrono::steady_clock::now());
}

void OriginHealth::recordSuccess(size_t group, size_t origin, TimePoint now) {
  const Group* g = groupAt(group);
  if (!g || origin >= g->states.size()) return;
  State& s = *g->states[origin];
  const int64_t now_ns = toNanos(now);
  if (s.consecutive_failures.load(std::memory_order_relaxed) != 0) {
    s.consecutive_failures.store(0, std::memory_order_relaxed);
  }
  const int64_t until = s.ejected_until_ns.load(std::memory_order_relaxed);
  // A request admitted before the ejection that succeeds during it changes nothing; once the
  // back-off is over, any success (the probe's, normally) restores the origin.
  if (until != kNone && now_ns >= until) restore(*g, origin, s, now_ns, "a request succeeded");
}

void OriginHealth::recordFailure(size_t group, size_t origin, TimePoint now) {
  const Group* g = groupAt(group);
  if (!g || origin >= g->states.size()) return;
  State& s = *g->states[origin];
  if (g->outlier.consecutive_failures <= 0) return;
  const int64_t now_ns = toNanos(now);
  const int64_t until = s.ejected_until_ns.load(std::memory_order_relaxed);
  if (until != kNone) {
    // During the ejection: a request admitted before it; nothing new. After it (half-open): the
    // probe failed, eject again with the next back-off.
    if (now_ns >= until) eject(*g, origin, s, now_ns, "its probe failed after an ejection");
    return;
  }
  const int failures = s.consecutive_failures.fetch_add(1, std::memory_order_relaxed) + 1;
  if (failures >= g->outlier.consecutive_failures) {
    eject(*g, origin, s, now_ns, "consecutive failures");
  }
}

void OriginHealth::eject(const Group& g, size_t origin, State& s, int64_t now_ns,
                         const char* cause) {
  std::lock_guard<std::mutex> lock(eject_mu_);
  const int64_t until = s.ejected_until_ns.load(std::memory_order_relaxed);
  if (until != kNone && now_ns < until) return;  // another thread ejected it meanwhile
  const bool was_ejected = until != kNone;       // half-open: its probe failed
  const int failures = s.consecutive_failures.load(std::memory_order_relaxed);
  char what[96];
  if (was_ejected) {
    std::snprintf(what, sizeof what, "%s", cause);
  } else {
    std::snprintf(what, sizeof what, "%d %s", failures, cause);
  }
  // The group cap: ejected origins besides this one, and the origins left eligible without it.
  size_t ejected = 0;
  size_t eligible = 0;
  for (size_t j = 0; j < g.states.size(); ++j) {
    if (j == origin) continue;
    const State& o = *g.states[j];
    const int64_t u = o.ejected_until_ns.load(std::memory_order_relaxed);
    const bool out = u != kNone && now_ns < u;
    if (out) ++ejected;
    if (!out && !o.active_down.load(std::memory_order_relaxed)) ++eligible;
  }
  const size_t n = g.states.size();
  const size_t allowed =
      g.outlier.max_ejected_percent <= 0
          ? 0
          : std::max<size_t>(1, n * static_cast<size_t>(g.outlier.max_ejected_percent) / 100);
  if (eligible == 0 || ejected + 1 > allowed) {
    s.ejections_refused.fetch_add(1, std::memory_order_relaxed);
    s.consecutive_failures.store(0, std::memory_order_relaxed);
    if (was_ejected) {
      // A failed probe that may not be ejected again: the origin simply stays in rotation.
      s.ejected_until_ns.store(kNone, std::memory_order_relaxed);
      s.probe_until_ns.store(kNone, std::memory_order_relaxed);
      s.last_ejection_end_ns.store(now_ns, std::memory_order_relaxed);
      if (!s.active_down.load(std::memory_order_relaxed)) {
        s.transitions_up.fetch_add(1, std::memory_order_relaxed);  // back in rotation
      }
    }
    std::fprintf(stderr,
                 "streamedge: origin %s (dc %s, group %s) not ejected after %s: %s "
                 "(passive signals never eject every origin of a group)\n",
                 g.origin_names[origin].c_str(), g.dcs[origin].empty() ? "-" : g.dcs[origin].c_str(),
                 g.name.c_str(), what,
                 eligible == 0 ? "it is the last eligible origin"
                               : "max_ejected_percent of the group is already ejected");
    return;
  }
  // The back-off grows with ejections in a row; a long enough quiet spell starts it again.
  int streak = s.streak.load(std::memory_order_relaxed);
  const int64_t last_end = s.last_ejection_end_ns.load(std::memory_order_relaxed);
  if (!was_ejected && last_end != kNone && now_ns - last_end >= nanos(g.outlier.backoff_reset)) {
    streak = 0;
  }
  const int64_t base = nanos(g.outlier.base_ejection_time);
  const int64_t cap = nanos(g.outlier.max_ejection_time);
  int64_t backoff = base;
  for (int i = 0; i < std::min(streak, kMaxStreakExponent) && backoff < cap; ++i) backoff *= 2;
  backoff = std::min(backoff, cap);
  s.streak.store(streak + 1, std::memory_order_relaxed);
  s.backoff_ns.store(backoff, std::memory_order_relaxed);
  s.ejected_until_ns.store(now_ns + backoff, std::memory_order_relaxed);
  s.probe_until_ns.store(kNone, std::memory_order_relaxed);
  s.consecutive_failures.store(0, std::memory_order_relaxed);
  s.ramp_start_ns.store(kNone, std::memory_order_relaxed);
  s.ejections.fetch_add(1, std::memory_order_relaxed);
  const bool was_up = !s.active_down.load(std::memory_order_relaxed);
  if (!was_ejected && was_up) s.transitions_down.fetch_add(1, std::memory_order_relaxed);
  std::fprintf(stderr,
               "streamedge: origin %s (dc %s, group %s) is down (passive): ejected for %lld ms "
               "after %s (ejection %d in a row)\n",
               g.origin_names[origin].c_str(), g.dcs[origin].empty() ? "-" : g.dcs[origin].c_str(),
               g.name.c_str(), static_cast<long long>(backoff / 1'000'000), what, streak + 1);
}

void OriginHealth::restore(const Group& g, size_t origin, State& s, int64_t now_ns,
                           const char* how) {
  std::lock_guard<std::mutex> lock(eject_mu_);
  const int64_t until = s.ejected_until_ns.load(std::memory_order_relaxed);
  if (until == kNone || now_ns < until) return;  // restored (or ejected again) meanwhile
  s.ejected_until_ns.store(kNone, std::memory_order_relaxed);
  s.probe_until_ns.store(kNone, std::memory_order_relaxed);
  s.last_ejection_end_ns.store(now_ns, std::memory_order_relaxed);
  s.consecutive_failures.store(0, std::memory_order_relaxed);
  if (s.active_down.load(std::memory_order_relaxed)) return;  // still down, for the checks
  if (g.slow_start_ns > 0) s.ramp_start_ns.store(now_ns, std::memory_order_relaxed);
  s.transitions_up.fetch_add(1, std::memory_order_relaxed);
  std::fprintf(stderr, "streamedge: origin %s (dc %s, group %s) is up (passive): %s after its "
               "ejection%s\n",
               g.origin_names[origin].c_str(), g.dcs[origin].empty() ? "-" : g.dcs[origin].c_str(),
               g.name.c_str(), how, g.slow_start_ns > 0 ? "; ramping up (slow_start)" : "");
}

void OriginHealth::recordCheck(size_t group, size_t origin, bool passed, TimePoint now,
                               const std::string& why) {
  const Group* g = groupAt(group);
  if (!g || origin >= g->states.size() || !g->active_checks) return;
  State& s = *g->states[origin];
  const int64_t now_ns = toNanos(now);
  const char* dc = g->dcs[origin].empty() ? "-" : g->dcs[origin].c_str();
  if (passed) {
    s.checks_passed.fetch_add(1, std::memory_order_relaxed);
    s.check_failures.store(0, std::memory_order_relaxed);
    const int successes = s.check_successes.load(std::memory_order_relaxed) + 1;
    s.check_successes.store(successes, std::memory_order_relaxed);
    if (!s.active_down.load(std::memory_order_relaxed) || successes < g->rise) return;
    {
      // Fresh evidence ends a passive ejection too (its streak stays: a relapse is longer).
      std::lock_guard<std::mutex> lock(eject_mu_);
      if (s.ejected_until_ns.load(std::memory_order_relaxed) != kNone) {
        s.ejected_until_ns.store(kNone, std::memory_order_relaxed);
        s.probe_until_ns.store(kNone, std::memory_order_relaxed);
        s.last_ejection_end_ns.store(now_ns, std::memory_order_relaxed);
      }
      s.consecutive_failures.store(0, std::memory_order_relaxed);
      if (g->slow_start_ns > 0) s.ramp_start_ns.store(now_ns, std::memory_order_relaxed);
      s.active_down.store(false, std::memory_order_relaxed);
    }
    s.transitions_up.fetch_add(1, std::memory_order_relaxed);
    std::fprintf(stderr,
                 "streamedge: origin %s (dc %s, group %s) is up (active): %d health checks in a "
                 "row passed%s\n",
                 g->origin_names[origin].c_str(), dc, g->name.c_str(), successes,
                 g->slow_start_ns > 0 ? "; ramping up (slow_start)" : "");
    return;
  }
  s.check_successes.store(0, std::memory_order_relaxed);
  const int failures = s.check_failures.load(std::memory_order_relaxed) + 1;
  s.check_failures.store(failures, std::memory_order_relaxed);
  if (s.active_down.load(std::memory_order_relaxed) || failures < g->fall) return;
  const int64_t until = s.ejected_until_ns.load(std::memory_order_relaxed);
  const bool was_up = until == kNone || now_ns >= until;
  s.ramp_start_ns.store(kNone, std::memory_order_relaxed);
  s.active_down.store(true, std::memory_order_relaxed);
  if (was_up) s.transitions_down.fetch_add(1, std::memory_order_relaxed);
  std::fprintf(stderr,
               "streamedge: origin %s (dc %s, group %s) is down (active): %d health checks in a "
               "row failed, the last: %s\n",
               g->origin_names[origin].c_str(), dc, g->name.c_str(), failures,
               why.empty() ? "-" : why.c_str());
}

OriginHealthView OriginHealth::view(size_t group, size_t origin, TimePoint now) const {
  OriginHealthView v;
  const Group* g = groupAt(group);
  if (!g || origin >= g->states.size()) return v;
  const State& s = *g->states[origin];
  const int64_t now_ns = toNanos(now);
  v.up = isUpState(s, now_ns);
  v.active_checks = g->active_checks;
  v.active_up = !s.active_down.load(std::memory_order_relaxed);
  const int64_t until = s.ejected_until_ns.load(std::memory_order_relaxed);
  v.ejected = until != kNone && now_ns < until;
  v.half_open = until != kNone && now_ns >= until;
  v.down_reason = !v.active_up ? "active" : (v.up ? "" : "passive");
  v.consecutive_failures = s.consecutive_failures.load(std::memory_order_relaxed);
  v.check_failures = s.check_failures.load(std::memory_order_relaxed);
  v.check_successes = s.check_successes.load(std::memory_order_relaxed);
  v.checks_passed = s.checks_passed.load(std::memory_order_relaxed);
  v.ejections = s.ejections.load(std::memory_order_relaxed);
  v.ejections_refused = s.ejections_refused.load(std::memory_order_relaxed);
  v.ejection_streak = s.streak.load(std::memory_order_relaxed);
  v.backoff_ms = s.backoff_ns.load(std::memory_order_relaxed) / 1'000'000;
  v.ejected_remaining_ms = v.ejected ? (until - now_ns) / 1'000'000 : 0;
  v.ramp = ramp(group, origin, now);
  v.transitions_up = s.transitions_up.load(std::memory_order_relaxed);
  v.transitions_down = s.transitions_down.load(std::memory_order_relaxed);
  return v;
}

}  // namespace streamedge::proxy
