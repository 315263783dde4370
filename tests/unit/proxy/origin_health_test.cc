// OriginHealth: passive ejection with a growing back-off and a group cap, active fall/rise, the
// recovery ramp, and reconfiguration. Time is passed in (a manual clock), nothing sleeps.
#include "proxy/origin_health.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

namespace streamedge::proxy {
namespace {

using namespace std::chrono_literals;
using TimePoint = OriginHealth::TimePoint;

conf::OriginConfig origin(const std::string& name) {
  conf::OriginConfig o;
  o.name = name;
  o.dc = "dc-" + name;
  o.url = "http://" + name + ".example:80";
  return o;
}

conf::Config configOf(std::vector<std::string> names, conf::OriginGroupConfig group = {}) {
  conf::Config c;
  group.name = "media";
  for (const std::string& n : names) group.origins.push_back(origin(n));
  c.origin_groups.push_back(std::move(group));
  return c;
}

conf::OriginGroupConfig withChecks(int fall, int rise, Millis slow_start = 0ms) {
  conf::OriginGroupConfig g;
  g.health_check.enabled = true;
  g.health_check.path = "/health";
  g.health_check.fall = fall;
  g.health_check.rise = rise;
  g.slow_start = slow_start;
  return g;
}

class OriginHealthTest : public ::testing::Test {
 protected:
  const TimePoint t0_ = TimePoint(std::chrono::hours(1000));
  void fail(OriginHealth& h, size_t o, TimePoint at, int n = 3) {
    for (int i = 0; i < n; ++i) h.recordFailure(0, o, at);
  }
};

TEST_F(OriginHealthTest, ConsecutiveFailuresEjectForTheBaseTime) {
  OriginHealth h(configOf({"a", "b"}));
  fail(h, 0, t0_, 2);
  EXPECT_TRUE(h.isUp(0, 0, t0_));
  h.recordFailure(0, 0, t0_);
  EXPECT_FALSE(h.isUp(0, 0, t0_));
  EXPECT_FALSE(h.isUp(0, 0, t0_ + 9s));
  EXPECT_FALSE(h.admit(0, 0, t0_ + 9s, 0.0));
  EXPECT_TRUE(h.isUp(0, 0, t0_ + 10s));  // half-open
  EXPECT_TRUE(h.isUp(0, 1, t0_));        // the other origin is untouched
  const OriginHealthView v = h.view(0, 0, t0_ + 1s);
  EXPECT_STREQ(v.down_reason, "passive");
  EXPECT_TRUE(v.ejected);
  EXPECT_EQ(v.ejections, 1u);
  EXPECT_EQ(v.backoff_ms, 10'000);
  EXPECT_EQ(v.ejected_remaining_ms, 9'000);
  EXPECT_EQ(v.transitions_down, 1u);
}

TEST_F(OriginHealthTest, SuccessBetweenFailuresRestartsTheCount) {
  OriginHealth h(configOf({"a", "b"}));
  fail(h, 0, t0_, 2);
  h.recordSuccess(0, 0, t0_);
  fail(h, 0, t0_, 2);
  EXPECT_TRUE(h.isUp(0, 0, t0_));
  EXPECT_EQ(h.view(0, 0, t0_).consecutive_failures, 2);
}

TEST_F(OriginHealthTest, HalfOpenAdmitsOneProbeAndItsSuccessRestores) {
  OriginHealth h(configOf({"a", "b"}));
  fail(h, 0, t0_);
  const TimePoint later = t0_ + 11s;
  EXPECT_TRUE(h.admit(0, 0, later, 0.0));
  EXPECT_FALSE(h.admit(0, 0, later, 0.0));  // one probe at a time
  EXPECT_FALSE(h.isUp(0, 0, later));
  h.recordSuccess(0, 0, later + 1s);
  EXPECT_TRUE(h.isUp(0, 0, later + 1s));
  EXPECT_TRUE(h.admit(0, 0, later + 1s, 0.0));
  EXPECT_TRUE(h.admit(0, 0, later + 1s, 0.0));
  const OriginHealthView v = h.view(0, 0, later + 1s);
  EXPECT_FALSE(v.ejected);
  EXPECT_FALSE(v.half_open);
  EXPECT_EQ(v.transitions_up, 1u);
  EXPECT_EQ(v.transitions_down, 1u);
}

TEST_F(OriginHealthTest, ASuccessDuringTheEjectionDoesNotEndIt) {
  OriginHealth h(configOf({"a", "b"}));
  fail(h, 0, t0_);
  h.recordSuccess(0, 0, t0_ + 1s);  // a request admitted before the ejection
  EXPECT_FALSE(h.isUp(0, 0, t0_ + 2s));
  h.recordFailure(0, 0, t0_ + 2s);  // nor does a failure extend it
  EXPECT_TRUE(h.isUp(0, 0, t0_ + 10s));
}

TEST_F(OriginHealthTest, BackOffDoublesWithEachEjectionInARowUpToTheCap) {
  conf::OriginGroupConfig g;
  g.outlier.base_ejection_time = 1000ms;
  g.outlier.max_ejection_time = 5000ms;
  OriginHealth h(configOf({"a", "b"}, g));
  fail(h, 0, t0_);
  TimePoint at = t0_;
  std::vector<int64_t> backoffs;
  for (int i = 0; i < 5; ++i) {
    const OriginHealthView v = h.view(0, 0, at);
    backoffs.push_back(v.backoff_ms);
    at += std::chrono::milliseconds(v.backoff_ms);
    ASSERT_TRUE(h.admit(0, 0, at, 0.0)) << i;  // the probe...
    h.recordFailure(0, 0, at);                // ...fails: ejected again at once
  }
  EXPECT_EQ(backoffs, (std::vector<int64_t>{1000, 2000, 4000, 5000, 5000}));
  EXPECT_EQ(h.view(0, 0, at).ejections, 6u);
  EXPECT_EQ(h.view(0, 0, at).ejection_streak, 6);
}

TEST_F(OriginHealthTest, BackOffStartsAgainAfterASustainedHealthyPeriod) {
  conf::OriginGroupConfig g;
  g.outlier.base_ejection_time = 1000ms;
  g.outlier.max_ejection_time = 60'000ms;
  g.outlier.backoff_reset = 30'000ms;
  OriginHealth h(configOf({"a", "b"}, g));
  fail(h, 0, t0_);
  ASSERT_TRUE(h.admit(0, 0, t0_ + 1s, 0.0));
  h.recordFailure(0, 0, t0_ + 1s);  // second ejection: 2 s
  EXPECT_EQ(h.view(0, 0, t0_ + 1s).backoff_ms, 2000);
  ASSERT_TRUE(h.admit(0, 0, t0_ + 3s, 0.0));
  h.recordSuccess(0, 0, t0_ + 3s);  // restored at t0 + 3 s
  // A relapse soon after: the back-off keeps growing.
  fail(h, 0, t0_ + 10s);
  EXPECT_EQ(h.view(0, 0, t0_ + 10s).backoff_ms, 4000);
  ASSERT_TRUE(h.admit(0, 0, t0_ + 14s, 0.0));
  h.recordSuccess(0, 0, t0_ + 14s);
  // Healthy for backoff_reset: the next ejection is short again.
  fail(h, 0, t0_ + 44s);
  EXPECT_EQ(h.view(0, 0, t0_ + 44s).backoff_ms, 1000);
}

TEST_F(OriginHealthTest, PassiveSignalsNeverEjectTheLastEligibleOrigin) {
  OriginHealth h(configOf({"a", "b"}));
  fail(h, 0, t0_);
  EXPECT_FALSE(h.isUp(0, 0, t0_));
  fail(h, 1, t0_, 10);
  EXPECT_TRUE(h.isUp(0, 1, t0_));
  EXPECT_GE(h.view(0, 1, t0_).ejections_refused, 3u);
  EXPECT_EQ(h.view(0, 1, t0_).ejections, 0u);

  OriginHealth single(configOf({"only"}));
  for (int i = 0; i < 10; ++i) single.recordFailure(0, 0, t0_);
  EXPECT_TRUE(single.isUp(0, 0, t0_));
  EXPECT_TRUE(single.admit(0, 0, t0_, 0.0));
}

TEST_F(OriginHealthTest, ActivelyDownOriginsCountAgainstTheLastEligibleRule) {
  OriginHealth h(configOf({"a", "b", "c", "d"}, withChecks(1, 1)));
  h.recordCheck(0, 0, false, t0_);
  h.recordCheck(0, 1, false, t0_);
  h.recordCheck(0, 2, false, t0_);
  fail(h, 3, t0_);
  EXPECT_TRUE(h.isUp(0, 3, t0_));  // d is all that is left
  EXPECT_EQ(h.view(0, 3, t0_).ejections_refused, 1u);
}

TEST_F(OriginHealthTest, MaxEjectedPercentCapsPassiveEjections) {
  conf::OriginGroupConfig g;
  g.outlier.max_ejected_percent = 50;
  OriginHealth h(configOf({"a", "b", "c", "d"}, g));
  fail(h, 0, t0_);
  fail(h, 1, t0_);
  fail(h, 2, t0_);  // a third of four is over 50 %
  EXPECT_FALSE(h.isUp(0, 0, t0_));
  EXPECT_FALSE(h.isUp(0, 1, t0_));
  EXPECT_TRUE(h.isUp(0, 2, t0_));
  // Once an ejection ends, there is room again.
  fail(h, 2, t0_ + 10s);
  EXPECT_FALSE(h.isUp(0, 2, t0_ + 10s));

  conf::OriginGroupConfig none;
  none.outlier.max_ejected_percent = 0;
  OriginHealth off(configOf({"a", "b"}, none));
  fail(off, 0, t0_);
  EXPECT_TRUE(off.isUp(0, 0, t0_));

  conf::OriginGroupConfig disabled;
  disabled.outlier.consecutive_failures = 0;
  OriginHealth no_passive(configOf({"a", "b"}, disabled));
  fail(no_passive, 0, t0_, 20);
  EXPECT_TRUE(no_passive.isUp(0, 0, t0_));
}

TEST_F(OriginHealthTest, AFailedProbeThatTheCapRefusesRejoinsTheRotation) {
  OriginHealth h(configOf({"a", "b", "c", "d"}));  // 50 %: two may be out
  fail(h, 0, t0_);
  fail(h, 1, t0_ + 5s);
  ASSERT_TRUE(h.admit(0, 0, t0_ + 10s, 0.0));  // a's probe...
  fail(h, 2, t0_ + 10s);                       // ...while c takes the second slot
  h.recordFailure(0, 0, t0_ + 10s);            // the probe fails: no room to eject a again
  const OriginHealthView v = h.view(0, 0, t0_ + 10s);
  EXPECT_TRUE(v.up);
  EXPECT_FALSE(v.half_open);
  EXPECT_EQ(v.ejections, 1u);
  EXPECT_EQ(v.ejections_refused, 1u);
  EXPECT_EQ(v.transitions_up, 1u);
  EXPECT_TRUE(h.admit(0, 0, t0_ + 10s, 0.0));
}

TEST_F(OriginHealthTest, ActiveChecksFallAndRise) {
  OriginHealth h(configOf({"a", "b"}, withChecks(3, 2)));
  h.recordCheck(0, 0, false, t0_);
  h.recordCheck(0, 0, false, t0_ + 1s);
  h.recordCheck(0, 0, true, t0_ + 2s);  // a pass restarts the count
  h.recordCheck(0, 0, false, t0_ + 3s);
  h.recordCheck(0, 0, false, t0_ + 4s);
  EXPECT_TRUE(h.isUp(0, 0, t0_ + 4s));
  h.recordCheck(0, 0, false, t0_ + 5s, "status 503");
  EXPECT_FALSE(h.isUp(0, 0, t0_ + 5s));
  EXPECT_FALSE(h.admit(0, 0, t0_ + 5s, 0.0));
  OriginHealthView v = h.view(0, 0, t0_ + 5s);
  EXPECT_STREQ(v.down_reason, "active");
  EXPECT_FALSE(v.active_up);
  EXPECT_EQ(v.check_failures, 3);
  EXPECT_EQ(v.transitions_down, 1u);
  // Down stays down however long it takes (no timer brings it back), until `rise` passes.
  h.recordCheck(0, 0, true, t0_ + 100s);
  EXPECT_FALSE(h.isUp(0, 0, t0_ + 100s));
  h.recordCheck(0, 0, true, t0_ + 101s);
  EXPECT_TRUE(h.isUp(0, 0, t0_ + 101s));
  v = h.view(0, 0, t0_ + 101s);
  EXPECT_STREQ(v.down_reason, "");
  EXPECT_EQ(v.transitions_up, 1u);
  EXPECT_EQ(v.check_successes, 2);
}

TEST_F(OriginHealthTest, ChecksWithoutAHealthCheckTableAreIgnored) {
  OriginHealth h(configOf({"a", "b"}));
  for (int i = 0; i < 5; ++i) h.recordCheck(0, 0, false, t0_);
  EXPECT_TRUE(h.isUp(0, 0, t0_));
  EXPECT_FALSE(h.view(0, 0, t0_).active_checks);
}

TEST_F(OriginHealthTest, ActiveRecoveryEndsAPassiveEjection) {
  OriginHealth h(configOf({"a", "b"}, withChecks(1, 1)));
  fail(h, 0, t0_);
  h.recordCheck(0, 0, false, t0_ + 1s);
  EXPECT_STREQ(h.view(0, 0, t0_ + 1s).down_reason, "active");
  EXPECT_EQ(h.view(0, 0, t0_ + 1s).transitions_down, 1u);  // one transition, two verdicts
  h.recordCheck(0, 0, true, t0_ + 2s);
  EXPECT_TRUE(h.isUp(0, 0, t0_ + 2s));  // long before the 10 s back-off
  EXPECT_TRUE(h.admit(0, 0, t0_ + 2s, 0.99));
  // An actively healthy origin that fails on traffic is ejected for its (longer) back-off.
  fail(h, 0, t0_ + 3s);
  EXPECT_FALSE(h.isUp(0, 0, t0_ + 3s));
  EXPECT_TRUE(h.view(0, 0, t0_ + 3s).active_up);
  EXPECT_EQ(h.view(0, 0, t0_ + 3s).backoff_ms, 20'000);
  EXPECT_FALSE(h.isUp(0, 0, t0_ + 22s));
  EXPECT_TRUE(h.isUp(0, 0, t0_ + 23s));
}

TEST_F(OriginHealthTest, RecoveredOriginRampsLinearlyOverSlowStart) {
  OriginHealth h(configOf({"primary", "backup"}, withChecks(1, 1, 10'000ms)));
  EXPECT_EQ(h.ramp(0, 0, t0_), 1.0);  // no ramp at start
  h.recordCheck(0, 0, false, t0_);
  h.recordCheck(0, 0, true, t0_ + 1s);  // up again at t0 + 1 s
  const TimePoint up = t0_ + 1s;
  EXPECT_DOUBLE_EQ(h.ramp(0, 0, up), 0.1);  // starts small
  EXPECT_DOUBLE_EQ(h.ramp(0, 0, up + 500ms), 0.1);
  EXPECT_DOUBLE_EQ(h.ramp(0, 0, up + 2500ms), 0.25);
  EXPECT_DOUBLE_EQ(h.ramp(0, 0, up + 5s), 0.5);
  EXPECT_DOUBLE_EQ(h.ramp(0, 0, up + 9s), 0.9);
  EXPECT_DOUBLE_EQ(h.ramp(0, 0, up + 10s), 1.0);
  EXPECT_EQ(h.view(0, 0, up + 5s).ramp, 0.5);
  // Admission follows the draw while the backup can take the rest.
  EXPECT_TRUE(h.admit(0, 0, up + 5s, 0.49));
  EXPECT_FALSE(h.admit(0, 0, up + 5s, 0.51));
  EXPECT_TRUE(h.admit(0, 0, up + 10s, 0.99));
  // Of 1000 evenly spread draws at 25 %, 250 are admitted.
  int admitted = 0;
  for (int i = 0; i < 1000; ++i) admitted += h.admit(0, 0, up + 2500ms, (i + 0.5) / 1000) ? 1 : 0;
  EXPECT_EQ(admitted, 250);
  // With nobody after it, the ramping origin takes every request.
  h.recordCheck(0, 1, false, up + 5s);
  EXPECT_TRUE(h.admit(0, 0, up + 5s, 0.99));
  // The backup's own ramp, later in the list than everything up, admits all it is offered.
  h.recordCheck(0, 1, true, up + 6s);
  EXPECT_TRUE(h.admit(0, 1, up + 6s, 0.99));
}

TEST_F(OriginHealthTest, PassiveRestorationRampsToo) {
  conf::OriginGroupConfig g;
  g.slow_start = 4000ms;
  OriginHealth h(configOf({"a", "b"}, g));
  fail(h, 0, t0_);
  ASSERT_TRUE(h.admit(0, 0, t0_ + 10s, 0.0));
  h.recordSuccess(0, 0, t0_ + 10s);
  EXPECT_DOUBLE_EQ(h.ramp(0, 0, t0_ + 12s), 0.5);
  EXPECT_DOUBLE_EQ(h.ramp(0, 0, t0_ + 14s), 1.0);
}

TEST_F(OriginHealthTest, ReconfigureKeepsTheStateOfUnchangedOrigins) {
  OriginHealth h(configOf({"a", "b"}));
  fail(h, 0, t0_);
  ASSERT_FALSE(h.isUp(0, 0, t0_));
  // A new origin in front: "a" moves to index 1 and keeps its ejection; the new one is fresh.
  h.reconfigure(configOf({"new", "a", "b"}));
  EXPECT_TRUE(h.isUp(0, 0, t0_));
  EXPECT_FALSE(h.isUp(0, 1, t0_));
  EXPECT_EQ(h.view(0, 1, t0_).ejections, 1u);
  EXPECT_TRUE(h.isUp(0, 2, t0_));
  // Active checks switched off on reload: an active verdict cannot linger.
  OriginHealth checked(configOf({"a", "b"}, withChecks(1, 1)));
  checked.recordCheck(0, 0, false, t0_);
  ASSERT_FALSE(checked.isUp(0, 0, t0_));
  checked.reconfigure(configOf({"a", "b"}));
  EXPECT_TRUE(checked.isUp(0, 0, t0_));
}

TEST_F(OriginHealthTest, IndicesOutsideTheConfigCountAsUp) {
  OriginHealth h(configOf({"a", "b"}));
  h.recordFailure(5, 0, t0_);
  h.recordFailure(0, 9, t0_);
  h.recordCheck(0, 9, false, t0_);
  EXPECT_TRUE(h.isUp(5, 0, t0_));
  EXPECT_TRUE(h.admit(0, 9, t0_));
  EXPECT_TRUE(h.view(7, 7, t0_).up);
}

}  // namespace
}  // namespace streamedge::proxy
