#include "proxy/origin_stats.h"

#include <gtest/gtest.h>

namespace streamedge::proxy {
namespace {

TEST(OriginStats, SeriesAreKeyedByConfigNamesAndSumAcrossWorkers) {
  conf::OriginGroupConfig group;
  group.name = "main";
  conf::OriginConfig a;
  a.name = "a";
  a.dc = "dc-a";
  conf::OriginConfig b;
  b.name = "b";
  b.dc = "dc-b";
  OriginStats w0;
  OriginStats w1;
  w0.attempt(group, a);
  w0.error(group, a, metrics::OriginErrorReason::kTimeout);
  w1.error(group, a, metrics::OriginErrorReason::kTimeout);
  w1.error(group, a, metrics::OriginErrorReason::kTls);
  w0.failover(group, a);
  w0.attempt(group, b);
  w0.latency(group, b, std::chrono::milliseconds(30));
  w1.attempt(group, a);
  w1.retry(group, a);
  w1.latency(group, a, std::chrono::milliseconds(3));
  std::map<OriginStats::Key, OriginStats::Series> sum;
  w0.addTo(sum);
  w1.addTo(sum);
  ASSERT_EQ(sum.size(), 2u);
  const OriginStats::Series& sa = sum.at({"main", "a", "dc-a"});
  EXPECT_EQ(sa.requests, 2u);
  EXPECT_EQ(sa.errors[static_cast<size_t>(metrics::OriginErrorReason::kTimeout)], 2u);
  EXPECT_EQ(sa.errors[static_cast<size_t>(metrics::OriginErrorReason::kTls)], 1u);
  EXPECT_EQ(metrics::total(sa.errors), 3u);
  EXPECT_EQ(sa.failovers, 1u);
  EXPECT_EQ(sa.retries, 1u);
  EXPECT_EQ(sa.latency.count(), 1u);
  const OriginStats::Series& sb = sum.at({"main", "b", "dc-b"});
  EXPECT_EQ(sb.requests, 1u);
  EXPECT_EQ(sb.latency.counts[metrics::latencyBucketIndex(30'000'000)], 1u);
  EXPECT_NEAR(sb.latency.sum_seconds, 0.030, 1e-9);
}

TEST(OriginStats, ResumesAreKeyedByDataCentersAndOutcomeAndSumAcrossWorkers) {
  conf::OriginGroupConfig group;
  group.name = "main";
  conf::OriginConfig a;
  a.name = "a";
  a.dc = "dc-a";
  conf::OriginConfig b;
  b.name = "b";
  b.dc = "dc-b";
  conf::OriginConfig nodc;
  nodc.name = "10.0.0.9:80";
  OriginStats w0;
  OriginStats w1;
  w0.resume(group, a, &b, ResumeOutcome::kOk);
  w1.resume(group, a, &b, ResumeOutcome::kOk);
  w1.resume(group, a, &nodc, ResumeOutcome::kNoRange);
  w0.resume(group, b, nullptr, ResumeOutcome::kNotResumable);
  std::map<OriginStats::ResumeKey, uint64_t> sum;
  w0.addResumesTo(sum);
  w1.addResumesTo(sum);
  ASSERT_EQ(sum.size(), 3u);
  EXPECT_EQ(sum.at({"main", "dc-a", "dc-b", "ok"}), 2u);
  EXPECT_EQ(sum.at({"main", "dc-a", "10.0.0.9:80", "no_range"}), 1u) << "no dc: the origin name";
  EXPECT_EQ(sum.at({"main", "dc-b", "", "not_resumable"}), 1u);
}

}  // namespace
}  // namespace streamedge::proxy
