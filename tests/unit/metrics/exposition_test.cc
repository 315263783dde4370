#include "metrics/exposition.h"

#include <gtest/gtest.h>


namespace streamedge::metrics {
namespace {

bool has(const std::string& text, const std::string& line) {
  return text.find(line) != std::string::npos;
}

OriginState origin(std::string group, std::string name, std::string dc, bool up) {
  OriginState o;
  o.group = std::move(group);
  o.origin = std::move(name);
  o.dc = std::move(dc);
  o.up = up;
  return o;
}

TEST(Exposition, CountersCarryOnlyConfigAndVocabularyLabels) {
  Snapshot s;
  s.start_time_unix_seconds = 1700000000;
  s.now_unix_seconds = 1700000060;
  s.requests = {{"live", "hit", "2xx", "http/1.1", 7},
                {"live", "miss", "2xx", "http/1.1", 2},
                {"live", "hit", "2xx", "h2", 5}};
  s.responses_by_class = {{"2xx", 9}};
  s.origins = {origin("main", "127.0.0.1:8081", "dc-a", true), origin("main", "b", "dc-b", false)};
  s.tiers = {{"ram", 3, 100, 1000, 1, 4}};
  const std::string text = renderPrometheus(s);
  EXPECT_TRUE(has(text, "streamedge_requests_total{vhost=\"live\",result=\"hit\","
                        "status_class=\"2xx\",protocol=\"http/1.1\"} 7"))
      << text;
  EXPECT_TRUE(has(text, "streamedge_requests_total{vhost=\"live\",result=\"miss\","
                        "status_class=\"2xx\",protocol=\"http/1.1\"} 2"));
  EXPECT_TRUE(has(text, "streamedge_requests_total{vhost=\"live\",result=\"hit\","
                        "status_class=\"2xx\",protocol=\"h2\"} 5"));
  EXPECT_TRUE(has(text, "streamedge_origin_up{group=\"main\",origin=\"127.0.0.1:8081\",dc=\"dc-a\"} 1"))
      << text;
  EXPECT_TRUE(has(text, "streamedge_origin_up{group=\"main\",origin=\"b\",dc=\"dc-b\"} 0"));
  EXPECT_TRUE(has(text, "# TYPE streamedge_requests_total counter"));
  EXPECT_TRUE(has(text, "streamedge_cache_objects{tier=\"ram\"} 3"));
  EXPECT_TRUE(has(text, "streamedge_cache_admissions_total{tier=\"ram\"} 4"));
  EXPECT_TRUE(has(text, "process_start_time_seconds 1700000000"));
  EXPECT_TRUE(has(text, "streamedge_uptime_seconds 60"));
  EXPECT_TRUE(has(text, "streamedge_build_info{"));
}

TEST(Exposition, ResumesAreCountedByGroupDataCentersAndOutcome) {
  Snapshot s;
  s.origin_resumes = {{"main", "dc-a", "dc-b", "ok", 3}, {"main", "dc-a", "", "not_resumable", 1}};
  const std::string text = renderPrometheus(s);
  EXPECT_TRUE(has(text, "# TYPE streamedge_origin_resumes_total counter")) << text;
  EXPECT_TRUE(has(text, "streamedge_origin_resumes_total{group=\"main\",from_dc=\"dc-a\","
                        "to_dc=\"dc-b\",outcome=\"ok\"} 3\n"))
      << text;
  EXPECT_TRUE(has(text, "streamedge_origin_resumes_total{group=\"main\",from_dc=\"dc-a\","
                        "to_dc=\"\",outcome=\"not_resumable\"} 1\n"));
}

TEST(Exposition, OriginProtectionRetriesAndHedgesAreExposed) {
  Snapshot s;
  OriginProtectionState p;
  p.group = "main";
  p.origin = "a";
  p.dc = "dc-a";
  p.in_flight = 32;
  p.connections = 40;
  p.queued = 7;
  p.queued_total = 120;
  p.rejected_queue_full = 9;
  p.rejected_queue_timeout = 2;
  s.origin_protection.push_back(p);
  s.origin_group_retries.push_back({"main", 5, 3, 4, 1, 3});
  const std::string text = renderPrometheus(s);
  const std::string labels = "{group=\"main\",origin=\"a\",dc=\"dc-a\"";
  EXPECT_TRUE(has(text, "# TYPE streamedge_origin_in_flight gauge")) << text;
  EXPECT_TRUE(has(text, "streamedge_origin_in_flight" + labels + "} 32\n")) << text;
  EXPECT_TRUE(has(text, "streamedge_origin_connections_open" + labels + "} 40\n"));
  EXPECT_TRUE(has(text, "streamedge_origin_queue_length" + labels + "} 7\n"));
  EXPECT_TRUE(has(text, "streamedge_origin_queued_total" + labels + "} 120\n"));
  EXPECT_TRUE(has(text, "streamedge_origin_rejected_total" + labels + ",reason=\"queue_full\"} 9\n"));
  EXPECT_TRUE(has(text, "streamedge_origin_rejected_total" + labels + ",reason=\"queue_timeout\"} 2\n"));
  EXPECT_TRUE(has(text, "streamedge_origin_group_retries_total{group=\"main\",outcome=\"retried\"} 5\n"));
  EXPECT_TRUE(has(text, "streamedge_origin_group_retries_total{group=\"main\",outcome=\"budget_exhausted\"} 3\n"));
  EXPECT_TRUE(has(text, "streamedge_origin_hedges_started_total{group=\"main\"} 4\n"));
  EXPECT_TRUE(has(text, "streamedge_origin_hedges_total{group=\"main\",outcome=\"won\"} 1\n"));
  EXPECT_TRUE(has(text, "streamedge_origin_hedges_total{group=\"main\",outcome=\"lost\"} 3\n"));
}

TEST(Exposition, CompressionSeriesAreLabelledByEncoding) {
  Snapshot s;
  s.compression = {{"br", 3, 0.012, 40, 5000000}, {"gzip", 2, 0.004, 7, 900000}};
  const std::string text = renderPrometheus(s);
  EXPECT_TRUE(has(text, "# TYPE streamedge_compression_encodings_total counter")) << text;
  EXPECT_TRUE(has(text, "streamedge_compression_encodings_total{encoding=\"br\"} 3\n"));
  EXPECT_TRUE(has(text, "streamedge_compression_encode_seconds_total{encoding=\"gzip\"} 0.004\n"));
  EXPECT_TRUE(has(text, "streamedge_compressed_responses_total{encoding=\"br\"} 40\n"));
  EXPECT_TRUE(has(text, "streamedge_compression_saved_bytes_total{encoding=\"gzip\"} 900000\n"));
  // No series without the snapshot's compression part (a process that never set it).
  EXPECT_FALSE(has(renderPrometheus(Snapshot{}), "streamedge_compression_"));
}

TEST(Exposition, CertificateExpiryIsOneGaugePerServedCertificateInUnixSeconds) {
  Snapshot s;
  s.certificates = {{"0.0.0.0:443", "/etc/streamedge/tls/edge.pem", 1767225600},
                    {"0.0.0.0:443", "/etc/streamedge/tls/edge-rsa.pem", 1769904000}};
  s.access_log_dropped_lines = 42;
  const std::string text = renderPrometheus(s);
  EXPECT_TRUE(has(text, "# TYPE streamedge_tls_certificate_expiry_timestamp_seconds gauge")) << text;
  // Full precision: a Unix time must not be rounded to 6 significant digits.
  EXPECT_TRUE(has(text, "streamedge_tls_certificate_expiry_timestamp_seconds{listener=\"0.0.0.0:443\","
                        "certificate=\"/etc/streamedge/tls/edge.pem\"} 1767225600\n"))
      << text;
  EXPECT_TRUE(has(text, "streamedge_tls_certificate_expiry_timestamp_seconds{listener=\"0.0.0.0:443\","
                        "certificate=\"/etc/streamedge/tls/edge-rsa.pem\"} 1769904000\n"));
  EXPECT_TRUE(has(text, "# TYPE streamedge_access_log_dropped_lines_total counter"));
  EXPECT_TRUE(has(text, "streamedge_access_log_dropped_lines_total 42\n"));
}

TEST(Exposition, HistogramsAreCumulativeWithInfBucketAndSum) {
  Snapshot s;
  LatencySeries hit{"hit", {}};
  hit.histogram.counts[latencyBucketIndex(500'000)] += 2;          // 0.5 ms → le 0.0005
  hit.histogram.counts[latencyBucketIndex(80'000)] += 1;           // 80 µs → le 0.0001
  hit.histogram.counts[latencyBucketIndex(30'000'000)] += 1;       // 30 ms → le 0.05
  hit.histogram.counts[latencyBucketIndex(20'000'000'000)] += 1;   // 20 s → +Inf only
  hit.histogram.sum_seconds = 20.03108;
  s.request_duration.push_back(hit);
  const std::string text = renderPrometheus(s);
  EXPECT_TRUE(has(text, "# TYPE streamedge_request_duration_seconds histogram")) << text;
  EXPECT_TRUE(has(text, "streamedge_request_duration_seconds_bucket{result=\"hit\",le=\"0.0001\"} 1"))
      << text;
  EXPECT_TRUE(has(text, "streamedge_request_duration_seconds_bucket{result=\"hit\",le=\"0.00025\"} 1"));
  EXPECT_TRUE(has(text, "streamedge_request_duration_seconds_bucket{result=\"hit\",le=\"0.0005\"} 3"));
  EXPECT_TRUE(has(text, "streamedge_request_duration_seconds_bucket{result=\"hit\",le=\"0.001\"} 3"));
  EXPECT_TRUE(has(text, "streamedge_request_duration_seconds_bucket{result=\"hit\",le=\"0.025\"} 3"));
  EXPECT_TRUE(has(text, "streamedge_request_duration_seconds_bucket{result=\"hit\",le=\"0.05\"} 4"));
  EXPECT_TRUE(has(text, "streamedge_request_duration_seconds_bucket{result=\"hit\",le=\"10\"} 4"));
  EXPECT_TRUE(has(text, "streamedge_request_duration_seconds_bucket{result=\"hit\",le=\"+Inf\"} 5"));
  EXPECT_TRUE(has(text, "streamedge_request_duration_seconds_count{result=\"hit\"} 5"));
  EXPECT_TRUE(has(text, "streamedge_request_duration_seconds_sum{result=\"hit\"} 20.03108"));
}

TEST(Exposition, RemovedOriginKeepsCountersButHasNoUpGauge) {
  Snapshot s;
  OriginState gone;
  gone.group = "main";
  gone.origin = "old";
  gone.dc = "dc-z";
  gone.in_config = false;
  gone.requests = 5;
  s.origins.push_back(gone);
  const std::string text = renderPrometheus(s);
  EXPECT_TRUE(has(text, "streamedge_origin_requests_total{group=\"main\",origin=\"old\",dc=\"dc-z\"} 5"))
      << text;
  EXPECT_FALSE(has(text, "streamedge_origin_up{group=\"main\",origin=\"old\""));
}

TEST(Exposition, VaryMarkerFamiliesAreExported) {
  Snapshot s;
  s.vary_urls = 3;
  s.vary_marker_bytes = 1200;
  s.variants_dropped = 9;
  const std::string text = renderPrometheus(s);
  EXPECT_TRUE(has(text, "streamedge_cache_vary_urls 3")) << text;
  EXPECT_TRUE(has(text, "streamedge_cache_vary_marker_bytes 1200"));
  EXPECT_TRUE(has(text, "streamedge_cache_variants_dropped_total 9"));
}

TEST(Exposition, SsdFamiliesAppearOnlyWithAnSsdTier) {
  Snapshot s;
  EXPECT_FALSE(has(renderPrometheus(s), "streamedge_ssd_"));
  s.ssd_io_backend = "threads";
  s.ssd_read_latency.counts[0] = 4;
  s.ssd_revalidations = 5;
  s.ssd_reinserted_bytes = 6;
  s.ssd_tombstones = 7;
  const std::string text = renderPrometheus(s);
  EXPECT_TRUE(has(text, "streamedge_ssd_revalidations_total 5"));
  EXPECT_TRUE(has(text, "streamedge_ssd_reinserted_bytes_total 6"));
  EXPECT_TRUE(has(text, "streamedge_ssd_tombstones_total 7"));
  EXPECT_TRUE(has(text, "streamedge_ssd_io_backend{backend=\"threads\"} 1")) << text;
  EXPECT_TRUE(has(text, "streamedge_ssd_read_seconds_count 4"));
  EXPECT_TRUE(has(text, "streamedge_ssd_write_seconds_count 0"));
}

TEST(LatencyHistogram, BucketBoundsAreInclusive) {
  EXPECT_EQ(latencyBucketIndex(0), 0u);
  EXPECT_EQ(latencyBucketIndex(100'000), 0u);    // exactly 100 µs → le="0.0001"
  EXPECT_EQ(latencyBucketIndex(100'001), 1u);
  EXPECT_EQ(latencyBucketIndex(1'000'000), 3u);  // exactly 1 ms → le="0.001"
  EXPECT_EQ(latencyBucketIndex(1'000'001), 4u);
  EXPECT_EQ(latencyBucketIndex(10'000'000'000), kLatencyBucketBounds.size() - 1);  // 10 s
  EXPECT_EQ(latencyBucketIndex(10'000'000'001), kLatencyBucketBounds.size());      // +Inf
}

TEST(LatencyHistogram, ObservationsSumAcrossCopies) {
  LatencyHistogram a;
  LatencyHistogram b;
  a.observe(std::chrono::milliseconds(2));
  b.observe(std::chrono::milliseconds(3));
  b.observe(std::chrono::seconds(30));
  HistogramSnapshot sum;
  a.addTo(sum);
  b.addTo(sum);
  EXPECT_EQ(sum.count(), 3u);
  EXPECT_EQ(sum.counts[4], 1u);  // 2 ms → le 0.0025
  EXPECT_EQ(sum.counts[5], 1u);  // 3 ms → le 0.005
  EXPECT_EQ(sum.counts[kLatencyBuckets - 1], 1u);
  EXPECT_NEAR(sum.sum_seconds, 30.005, 1e-9);
}

TEST(Exposition, ClusterMembershipOnlyWithACluster) {
  Snapshot s;
  EXPECT_FALSE(has(renderPrometheus(s), "streamedge_cluster_peers"));
  s.cluster = true;
  s.cluster_peers = 3;
  s.cluster_membership_changes = 2;
  const std::string text = renderPrometheus(s);
  EXPECT_TRUE(has(text, "# TYPE streamedge_cluster_peers gauge")) << text;
  EXPECT_TRUE(has(text, "streamedge_cluster_peers 3")) << text;
  EXPECT_TRUE(has(text, "# TYPE streamedge_cluster_membership_changes_total counter")) << text;
  EXPECT_TRUE(has(text, "streamedge_cluster_membership_changes_total 2")) << text;
}

TEST(Exposition, PeersHaveUpAndEveryResult) {
  Snapshot s;
  PeerState a;
  a.peer = "10.0.0.2:8080";
  a.up = true;
  a.requests = {5, 1, 2, 0, 3};
  PeerState b;
  b.peer = "10.0.0.3:8080";
  s.peers = {a, b};
  const std::string text = renderPrometheus(s);
  EXPECT_TRUE(has(text, "# TYPE streamedge_peer_requests_total counter")) << text;
  EXPECT_TRUE(has(text, "# TYPE streamedge_peer_up gauge"));
  EXPECT_TRUE(has(text, "streamedge_peer_up{peer=\"10.0.0.2:8080\"} 1"));
  EXPECT_TRUE(has(text, "streamedge_peer_up{peer=\"10.0.0.3:8080\"} 0"));
  EXPECT_TRUE(has(text, "streamedge_peer_requests_total{peer=\"10.0.0.2:8080\",result=\"ok\"} 5"));
  EXPECT_TRUE(has(text, "streamedge_peer_requests_total{peer=\"10.0.0.2:8080\",result=\"5xx\"} 1"));
  EXPECT_TRUE(has(text, "streamedge_peer_requests_total{peer=\"10.0.0.2:8080\",result=\"timeout\"} 2"));
  EXPECT_TRUE(has(text, "streamedge_peer_requests_total{peer=\"10.0.0.2:8080\",result=\"connect\"} 0"));
  EXPECT_TRUE(has(text, "streamedge_peer_requests_total{peer=\"10.0.0.2:8080\",result=\"error\"} 3"));
  // Every result is exported from the start (zeros too), so rate() sees the first failure.
  EXPECT_TRUE(has(text, "streamedge_peer_requests_total{peer=\"10.0.0.3:8080\",result=\"timeout\"} 0"));
}

}  // namespace
}  // namespace streamedge::metrics
