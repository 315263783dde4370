#include "metrics/exposition.h"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <sstream>

namespace streamedge::metrics {

const char* originErrorReasonName(OriginErrorReason reason) {
  switch (reason) {
    case OriginErrorReason::kConnect: return "connect";
    case OriginErrorReason::kTls: return "tls";
    case OriginErrorReason::kTimeout: return "timeout";
    case OriginErrorReason::kClosed: return "closed";
    case OriginErrorReason::kInvalidResponse: return "invalid_response";
    case OriginErrorReason::k5xx: return "5xx";
    case OriginErrorReason::kBody: return "body";
    case OriginErrorReason::kOther: return "other";
  }
  return "other";
}

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

MetricFamily family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

void addCounter(MetricFamily& f, double value, Labels labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  m.counter.value = value;
  f.metric.push_back(std::move(m));
}

void addGauge(MetricFamily& f, double value, Labels labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = value;
  f.metric.push_back(std::move(m));
}

void addHistogram(MetricFamily& f, const HistogramSnapshot& h, Labels labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  m.histogram.sample_count = h.count();
  m.histogram.sample_sum = h.sum_seconds;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < kLatencyBucketBounds.size(); ++i) {
    cumulative += h.counts[i];
    m.histogram.bucket.push_back({cumulative, kLatencyBucketBounds[i]});
  }
  // The serializer adds le="+Inf" with sample_count.
  f.metric.push_back(std::move(m));
}

double d(uint64_t v) { return static_cast<double>(v); }

}  // namespace

std::string renderPrometheus(const Snapshot& s) {
  std::vector<MetricFamily> families;
  auto push = [&](MetricFamily f) { families.push_back(std::move(f)); };
  // A family of one unlabelled counter.
  auto pushCounter = [&](std::string name, std::string help, uint64_t value) {
    MetricFamily f = family(std::move(name), std::move(help), MetricType::Counter);
    addCounter(f, d(value));
    push(std::move(f));
  };

  // --- viewer traffic
  auto requests = family("streamedge_requests_total",
                         "Viewer requests by virtual host, cache result, status class and protocol.",
                         MetricType::Counter);
  for (const RequestSeries& r : s.requests) {
    addCounter(requests, d(r.count),
               {{"vhost", r.vhost},
                {"result", r.result},
                {"status_class", r.status_class},
                {"protocol", r.protocol.empty() ? "http/1.1" : r.protocol}});
  }
  push(std::move(requests));

  auto responses = family("streamedge_responses_total", "Viewer responses by status class.",
                          MetricType::Counter);
  for (const auto& [cls, n] : s.responses_by_class) {
    addCounter(responses, d(n), {{"status_class", cls}});
  }
  push(std::move(responses));

  auto bytes = family("streamedge_response_body_bytes_total",
                      "Body bytes sent to viewers, by virtual host.", MetricType::Counter);
  for (const auto& [vhost, n] : s.response_bytes_by_vhost) addCounter(bytes, d(n), {{"vhost", vhost}});
  push(std::move(bytes));

  auto duration = family("streamedge_request_duration_seconds",
                         "Request head received to response fully written, by cache result.",
                         MetricType::Histogram);
  for (const LatencySeries& l : s.request_duration) {
    addHistogram(duration, l.histogram, {{"result", l.result}});
  }
  push(std::move(duration));

  auto ttfb = family("streamedge_time_to_first_byte_seconds",
                     "Request head received to first response byte written, by cache result.",
                     MetricType::Histogram);
  for (const LatencySeries& l : s.time_to_first_byte) {
    addHistogram(ttfb, l.histogram, {{"result", l.result}});
  }
  push(std::move(ttfb));

  pushCounter("streamedge_bad_requests_total",
              "Requests refused as malformed.",
              s.bad_requests);

  pushCounter("streamedge_connections_accepted_total",
              "Viewer connections accepted.",
              s.connections_accepted);

  auto active = family("streamedge_connections_active", "Viewer connections open now, by listener.",
                       MetricType::Gauge);
  for (const ListenerState& l : s.listeners) {
    addGauge(active, static_cast<double>(l.connections_active), {{"listener", l.listener}});
  }
  push(std::move(active));

  // --- origins
  pushCounter("streamedge_origin_fetches_total",
              "Fetches started towards origins.",
              s.origin_fetches);

  pushCounter("streamedge_origin_fetch_failures_total",
              "Origin fetches that failed after all attempts.",
              s.origin_failures);

  auto o_requests = family("streamedge_origin_requests_total",
                           "Requests sent (attempts) to an origin.", MetricType::Counter);
  auto o_errors = family("streamedge_origin_errors_total",
                         "Origin attempts that failed, by reason: connect, tls, timeout, closed, "
                         "invalid_response, 5xx, body, other.",
                         MetricType::Counter);
  auto o_retries = family("streamedge_origin_retries_total",
                          "Requests re-sent to the same origin after a pooled connection died.",
                          MetricType::Counter);
  auto o_failovers = family("streamedge_origin_failovers_total",
                            "Fetches moved on from this origin to the next one of its group.",
                            MetricType::Counter);
  auto o_latency = family("streamedge_origin_response_seconds",
                          "Attempt start to origin response head.", MetricType::Histogram);
  auto up = family("streamedge_origin_up",
                   "1 when the origin may get traffic: not down by active health checks and not "
                   "ejected by passive outlier detection.",
                   MetricType::Gauge);
  auto transitions = family("streamedge_origin_health_transitions_total",
                            "Origin health changes, by the state entered (active checks or "
                            "passive ejection and restoration).",
                            MetricType::Counter);
  auto ejections = family("streamedge_origin_ejections_total",
                          "Passive ejections of an origin (failures on real traffic).",
                          MetricType::Counter);
  for (const OriginState& o : s.origins) {
    const Labels labels{{"group", o.group}, {"origin", o.origin}, {"dc", o.dc}};
    addCounter(o_requests, d(o.requests), labels);
    for (size_t r = 0; r < kOriginErrorReasons; ++r) {
      Labels with_reason = labels;
      with_reason.push_back({"reason", originErrorReasonName(static_cast<OriginErrorReason>(r))});
      addCounter(o_errors, d(o.errors[r]), with_reason);
    }
    addCounter(o_retries, d(o.retries), labels);
    addCounter(o_failovers, d(o.failovers), labels);
    addHistogram(o_latency, o.latency, labels);
    if (o.in_config) {
      addGauge(up, o.up ? 1 : 0, labels);
      Labels to_up = labels;
      to_up.push_back({"to", "up"});
      addCounter(transitions, d(o.transitions_up), to_up);
      Labels to_down = labels;
      to_down.push_back({"to", "down"});
      addCounter(transitions, d(o.transitions_down), to_down);
      addCounter(ejections, d(o.ejections), labels);
    }
  }
  push(std::move(o_requests));
  push(std::move(o_errors));
  push(std::move(o_retries));
  push(std::move(o_failovers));
  push(std::move(o_latency));
  push(std::move(up));
  push(std::move(transitions));
  push(std::move(ejections));

  // --- cluster peers
  auto peer_requests = family("streamedge_peer_requests_total",
                              "Fills this edge sent to a cluster peer, by result: ok, 5xx, "
                              "timeout, connect (refused, unreachable), error (closed, invalid, "
                              "broken body).",
                              MetricType::Counter);
  auto peer_up = family("streamedge_peer_up",
                        "1 when a cluster peer gets fills: its health check passes and no real "
                        "request failed on it since.",
                        MetricType::Gauge);
  for (const PeerState& p : s.peers) {
    for (size_t r = 0; r < kPeerResults; ++r) {
      addCounter(peer_requests, d(p.requests[r]), {{"peer", p.peer}, {"result", kPeerResultNames[r]}});
    }
    addGauge(peer_up, p.up ? 1 : 0, {{"peer", p.peer}});
  }
  push(std::move(peer_requests));
  push(std::move(peer_up));
  if (s.cluster) {
    auto members = family("streamedge_cluster_peers",
                          "Members of the cluster's ring, this edge included.", MetricType::Gauge);
    addGauge(members, static_cast<double>(s.cluster_peers), {});
    push(std::move(members));
    auto changes = family("streamedge_cluster_membership_changes_total",
                          "New cluster memberships from DNS ([cluster] dns) put in place.",
                          MetricType::Counter);
    addCounter(changes, d(s.cluster_membership_changes), {});
    push(std::move(changes));
  }

  auto resumes = family("streamedge_origin_resumes_total",
                        "Origin bodies that broke off after the first byte and were resumed (or "
                        "not) with a Range request to another origin, by outcome: ok, "
                        "validator_mismatch, precondition_failed, no_range, failed, not_resumable.",
                        MetricType::Counter);
  for (const ResumeSeries& r : s.origin_resumes) {
    addCounter(resumes, d(r.count),
               {{"group", r.group}, {"from_dc", r.from_dc}, {"to_dc", r.to_dc},
                {"outcome", r.outcome}});
  }
  push(std::move(resumes));

  // --- origin protection, retry budget, hedging
  auto in_flight = family("streamedge_origin_in_flight",
                          "Requests in flight to an origin (all workers; capped by "
                          "max_concurrent_requests).",
                          MetricType::Gauge);
  auto conns_open = family("streamedge_origin_connections_open",
                           "Open connections to an origin, in use or idle (all workers; capped "
                           "by max_connections).",
                           MetricType::Gauge);
  auto queue_len = family("streamedge_origin_queue_length",
                          "Fetches waiting for a request or connection slot of an origin.",
                          MetricType::Gauge);
  auto queued_total = family("streamedge_origin_queued_total",
                             "Fetches that had to wait for a slot of an origin at its cap.",
                             MetricType::Counter);
  auto rejected = family("streamedge_origin_rejected_total",
                         "Fetches answered 503 because an origin was at its cap, by reason: "
                         "queue_full, queue_timeout.",
                         MetricType::Counter);
  for (const OriginProtectionState& p : s.origin_protection) {
    const Labels labels{{"group", p.group}, {"origin", p.origin}, {"dc", p.dc}};
    addGauge(in_flight, static_cast<double>(p.in_flight), labels);
    addGauge(conns_open, static_cast<double>(p.connections), labels);
    addGauge(queue_len, static_cast<double>(p.queued), labels);
    addCounter(queued_total, d(p.queued_total), labels);
    Labels full = labels;
    full.push_back({"reason", "queue_full"});
    addCounter(rejected, d(p.rejected_queue_full), full);
    Labels timeout = labels;
    timeout.push_back({"reason", "queue_timeout"});
    addCounter(rejected, d(p.rejected_queue_timeout), timeout);
  }
  push(std::move(in_flight));
  push(std::move(conns_open));
  push(std::move(queue_len));
  push(std::move(queued_total));
  push(std::move(rejected));

  auto group_retries = family("streamedge_origin_group_retries_total",
                              "Retries to another origin before the first byte, by outcome: "
                              "retried, or budget_exhausted (the failure went to the viewer).",
                              MetricType::Counter);
  auto hedges_started = family("streamedge_origin_hedges_started_total",
                               "Hedged requests started (the first origin had not answered "
                               "within hedge_after).",
                               MetricType::Counter);
  auto hedges = family("streamedge_origin_hedges_total",
                       "Hedged requests by outcome: won (the hedge answered first), lost (the "
                       "first origin answered first, or the hedge failed).",
                       MetricType::Counter);
  for (const OriginGroupRetryState& g : s.origin_group_retries) {
    addCounter(group_retries, d(g.retried), {{"group", g.group}, {"outcome", "retried"}});
    addCounter(group_retries, d(g.budget_exhausted),
               {{"group", g.group}, {"outcome", "budget_exhausted"}});
    addCounter(hedges_started, d(g.hedges_started), {{"group", g.group}});
    addCounter(hedges, d(g.hedges_won), {{"group", g.group}, {"outcome", "won"}});
    addCounter(hedges, d(g.hedges_lost), {{"group", g.group}, {"outcome", "lost"}});
  }
  push(std::move(group_retries));
  push(std::move(hedges_started));
  push(std::move(hedges));

  auto miss_rejected = family("streamedge_client_miss_budget_rejected_total",
                              "Requests answered 429 because their client had spent its budget "
                              "of misses per second for the origin group (client_miss_rate).",
                              MetricType::Counter);
  for (const auto& [group, n] : s.client_miss_rejected) {
    addCounter(miss_rejected, d(n), {{"group", group}});
  }
  push(std::move(miss_rejected));
  auto miss_clients = family("streamedge_client_miss_budget_clients",
                             "Clients with a miss budget bucket held now (a few seconds after "
                             "their last miss at most).",
                             MetricType::Gauge);
  addGauge(miss_clients, d(s.client_miss_clients), {});
  push(std::move(miss_clients));

  auto token_rejections = family("streamedge_token_rejections_total",
                                 "Requests refused with 403 on routes with signed-URL tokens "
                                 "(token_auth), by virtual host and reason.",
                                 MetricType::Counter);
  for (const Snapshot::TokenRejectionSeries& t : s.token_rejections) {
    addCounter(token_rejections, d(t.count), {{"vhost", t.vhost}, {"reason", t.reason}});
  }
  push(std::move(token_rejections));

  // --- cache tiers
  auto objects = family("streamedge_cache_objects", "Objects in a cache tier.", MetricType::Gauge);
  auto cbytes = family("streamedge_cache_bytes", "Bytes used in a cache tier.", MetricType::Gauge);
  auto capacity = family("streamedge_cache_capacity_bytes", "Byte budget of a cache tier.",
                         MetricType::Gauge);
  auto evictions = family("streamedge_cache_evictions_total", "Objects evicted from a tier.",
                          MetricType::Counter);
  auto admissions = family("streamedge_cache_admissions_total", "Objects admitted to a tier.",
                           MetricType::Counter);
  for (const TierState& t : s.tiers) {
    const Labels labels{{"tier", t.tier}};
    addGauge(objects, d(t.objects), labels);
    addGauge(cbytes, d(t.bytes), labels);
    addGauge(capacity, d(t.capacity_bytes), labels);
    addCounter(evictions, d(t.evictions), labels);
    addCounter(admissions, d(t.admissions), labels);
  }
  push(std::move(objects));
  push(std::move(cbytes));
  push(std::move(capacity));
  push(std::move(evictions));
  push(std::move(admissions));

  auto vary_urls = family("streamedge_cache_vary_urls",
                          "URLs whose answers vary (RFC 9111 4.1) with a vary marker in the index "
                          "([cache.ram] max_vary_urls).",
                          MetricType::Gauge);
  addGauge(vary_urls, d(s.vary_urls));
  push(std::move(vary_urls));
  auto vary_bytes = family("streamedge_cache_vary_marker_bytes",
                           "Estimated memory of the vary markers, charged to the RAM tier's "
                           "budget.",
                           MetricType::Gauge);
  addGauge(vary_bytes, d(s.vary_marker_bytes));
  push(std::move(vary_bytes));
  pushCounter("streamedge_cache_variants_dropped_total",
              "Stored variants removed (both tiers) for the per-URL bound (max_variants), the "
              "marker bound (max_vary_urls, half the RAM budget) or a changed Vary.",
              s.variants_dropped);

  auto fill_memory = family("streamedge_fill_memory_bytes",
                            "Body bytes held by fills in flight (objects being stored, and the "
                            "windows of answers that are not kept).",
                            MetricType::Gauge);
  addGauge(fill_memory, d(s.fill_memory_bytes));
  push(std::move(fill_memory));
  auto fill_budget = family("streamedge_fill_memory_budget_bytes",
                            "Over this, answers that are not kept stream through the minimum "
                            "window ([cache.ram] fill_memory).",
                            MetricType::Gauge);
  addGauge(fill_budget, d(s.fill_memory_budget_bytes));
  push(std::move(fill_budget));
  auto shared_bodies = family("streamedge_body_shared_memory_bytes",
                              "Body bytes in shared memory files, sent to plain HTTP/1.1 viewers "
                              "with sendfile ([cache.ram] sendfile); part of the RAM tier and of "
                              "fills, counted as shared memory by the kernel.",
                              MetricType::Gauge);
  addGauge(shared_bodies, d(s.body_shared_memory_bytes));
  push(std::move(shared_bodies));
  pushCounter("streamedge_fill_window_pauses_total",
              "Times a fill that is not kept paused its origin because its readers had not taken "
              "the window yet.",
              s.fill_window_pauses);
  pushCounter("streamedge_fill_slow_readers_cut_total",
              "Viewers disconnected for holding a shared fill's full window past "
              "fill_stall_timeout while other viewers waited.",
              s.fill_slow_readers_cut);
  pushCounter("streamedge_fills_abandoned_total",
              "Fills of answers that are not kept, stopped because every viewer left.",
              s.fills_abandoned);
  auto cmcd_requests = family("streamedge_cmcd_requests_total",
                              "Requests that carried valid CMCD (CTA-5004), by vhost.", MetricType::Counter);
  auto cmcd_starvation = family("streamedge_cmcd_buffer_starvation_total",
                                "Requests whose CMCD reported buffer starvation (bs), by vhost.",
                                MetricType::Counter);
  auto cmcd_bitrate = family("streamedge_cmcd_requested_bitrate_kbps",
                             "Encoded bitrate (CMCD br, kbit/s) of the objects players requested, by "
                             "vhost.",
                             MetricType::Histogram);
  for (const metrics::CmcdSeries& c : s.cmcd) {
    addCounter(cmcd_requests, d(c.requests), {{"vhost", c.vhost}});
    addCounter(cmcd_starvation, d(c.buffer_starvation), {{"vhost", c.vhost}});
    ClientMetric m;
    m.label = {{"vhost", c.vhost}};
    uint64_t cumulative = 0;
    for (size_t i = 0; i < kCmcdBitrateBoundsKbps.size(); ++i) {
      cumulative += c.bitrate_counts[i];
      m.histogram.bucket.push_back({cumulative, d(kCmcdBitrateBoundsKbps[i])});
    }
    m.histogram.sample_count = cumulative + c.bitrate_counts.back();
    m.histogram.sample_sum = d(c.bitrate_sum_kbps);
    cmcd_bitrate.metric.push_back(std::move(m));
  }
  push(std::move(cmcd_requests));
  push(std::move(cmcd_starvation));
  push(std::move(cmcd_bitrate));
  auto blocking = family("streamedge_ll_hls_blocking_reloads_total",
                         "LL-HLS blocking playlist reloads decided at the edge without waiting for "
                         "the origin, by outcome: answered from the URL's newest stored playlist "
                         "(hit), too far ahead of the stream (400), or not answerable within three "
                         "target durations (503).",
                         MetricType::Counter);
  addCounter(blocking, d(s.ll_hls_answered_from_cache), {{"outcome", "answered_from_cache"}});
  addCounter(blocking, d(s.ll_hls_too_far_ahead), {{"outcome", "too_far_ahead"}});
  addCounter(blocking, d(s.ll_hls_holds_expired), {{"outcome", "hold_expired"}});
  push(std::move(blocking));
  pushCounter("streamedge_invalidations_total",
              "Stored URLs removed (both tiers, every variant) because an unsafe request through "
              "this edge (POST, PUT, DELETE, ...) got a non-error answer for them (RFC 9111 4.4).",
              s.invalidations);

  // --- privacy
  auto retention = family("streamedge_retention_expired_objects_total",
                          "Objects removed because they were older than their vhost's retention "
                          "(at lookup, on an SSD read, or by the sweep), by vhost and tier.",
                          MetricType::Counter);
  for (const auto& r : s.retention_expired) {
    addCounter(retention, d(r.count), {{"vhost", r.vhost}, {"tier", r.tier}});
  }
  push(std::move(retention));
  auto log_removed = family("streamedge_log_files_removed_total",
                            "Rotated log files deleted for [privacy] log_retention, by log.",
                            MetricType::Counter);
  for (const char* log : {"access", "security"}) {
    auto it = s.log_files_removed.find(log);
    addCounter(log_removed, d(it == s.log_files_removed.end() ? 0 : it->second), {{"log", log}});
  }
  push(std::move(log_removed));
  auto prefetch = family("streamedge_prefetch_total",
                         "Route prefetch of live segments and CMCD next objects, by result: "
                         "issued (fill started), used (first viewer request of a prefetched "
                         "object), wasted (not asked for within 60 s), skipped (cached, in "
                         "flight, over the route's concurrency or not allowed), failed (nothing "
                         "stored).",
                         MetricType::Counter);
  for (const char* result : {"issued", "used", "wasted", "skipped", "failed"}) {
    auto it = s.prefetch.find(result);
    addCounter(prefetch, d(it == s.prefetch.end() ? 0 : it->second), {{"result", result}});
  }
  push(std::move(prefetch));
  pushCounter("streamedge_log_file_removal_errors_total",
              "Rotated log files older than [privacy] log_retention that could not be deleted "
              "(or their directory read); each is logged.",
              s.log_file_removal_errors);

  // --- admin API
  auto purges = family("streamedge_purges_total",
                       "Purge API calls by kind (url, prefix, tag, host) and result (ok, error).",
                       MetricType::Counter);
  for (const auto& p : s.purges) addCounter(purges, d(p.count), {{"kind", p.kind}, {"result", p.label}});
  push(std::move(purges));
  auto purged = family("streamedge_purged_objects_total",
                       "Objects removed (mode hard) or marked stale (mode soft) by the purge API, "
                       "by kind.",
                       MetricType::Counter);
  for (const auto& p : s.purged_objects) addCounter(purged, d(p.count), {{"kind", p.kind}, {"mode", p.label}});
  push(std::move(purged));
  auto refused = family("streamedge_admin_requests_refused_total",
                        "Admin requests refused: no or unknown token (unauthenticated, 401), a "
                        "token without the path's scope (forbidden, 403).",
                        MetricType::Counter);
  addCounter(refused, d(s.admin_refused_unauthenticated), {{"reason", "unauthenticated"}});
  addCounter(refused, d(s.admin_refused_forbidden), {{"reason", "forbidden"}});
  push(std::move(refused));
  pushCounter("streamedge_audit_log_failed_lines_total",
              "Audit log lines that could not be written.", s.audit_log_failed_lines);

  if (!s.compression.empty()) {
    auto encodings = family("streamedge_compression_encodings_total",
                            "Encoded copies made of stored text answers (once per object version "
                            "and coding).",
                            MetricType::Counter);
    auto seconds = family("streamedge_compression_encode_seconds_total",
                          "Worker CPU time spent making encoded copies.", MetricType::Counter);
    auto responses = family("streamedge_compressed_responses_total",
                            "Answers sent with a content coding the edge applied.",
                            MetricType::Counter);
    auto saved = family("streamedge_compression_saved_bytes_total",
                        "Body bytes not sent thanks to the edge's encoding (identity length minus "
                        "encoded length, per encoded answer).",
                        MetricType::Counter);
    for (const Snapshot::CompressionSeries& c : s.compression) {
      addCounter(encodings, d(c.encodings), {{"encoding", c.encoding}});
      addCounter(seconds, c.encode_seconds, {{"encoding", c.encoding}});
      addCounter(responses, d(c.responses), {{"encoding", c.encoding}});
      addCounter(saved, d(c.saved_bytes), {{"encoding", c.encoding}});
    }
    push(std::move(encodings));
    push(std::move(seconds));
    push(std::move(responses));
    push(std::move(saved));
  }

  if (!s.ssd_io_backend.empty()) {
    auto backend = family("streamedge_ssd_io_backend",
                          "1 for the I/O engine the SSD tier uses (io_uring, or the threads fallback).",
                          MetricType::Gauge);
    addGauge(backend, 1, {{"backend", s.ssd_io_backend}});
    push(std::move(backend));
    auto read = family("streamedge_ssd_read_seconds", "SSD tier read latency.",
                       MetricType::Histogram);
    addHistogram(read, s.ssd_read_latency);
    push(std::move(read));
    auto write = family("streamedge_ssd_write_seconds", "SSD tier write latency (one region).",
                        MetricType::Histogram);
    addHistogram(write, s.ssd_write_latency);
    push(std::move(write));
    auto errors = family("streamedge_ssd_errors_total",
                         "SSD tier failures: device I/O errors, and entries that failed their "
                         "checksum or authentication on read (dropped, never served).",
                         MetricType::Counter);
    addCounter(errors, d(s.ssd_errors), {{"kind", "io"}});
    addCounter(errors, d(s.ssd_corrupt), {{"kind", "corrupt"}});
    push(std::move(errors));
    pushCounter("streamedge_ssd_hits_total",
                "Requests that missed RAM and were served from the SSD tier.",
                s.ssd_hits);
    pushCounter("streamedge_ssd_fallbacks_total",
                "SSD copies found in the index but unusable on read (reclaimed, "
                "damaged, stale): fetched from the origin instead.",
                s.ssd_fallbacks);
    pushCounter("streamedge_ssd_admissions_dropped_total",
                "Objects not written to the SSD tier because its write queue was full "
                "(they stay RAM-only; a steady rate means the disk cannot keep up).",
                s.ssd_admissions_dropped);
    pushCounter("streamedge_ssd_revalidations_total",
                "Stale SSD copies with validators sent to the origin as conditional "
                "requests (a 304 keeps the SSD bytes).",
                s.ssd_revalidations);
    pushCounter("streamedge_ssd_reinserted_bytes_total",
                "Bytes copied into a new region at reclaim because they were read while "
                "resident (reclaim = reinsert).",
                s.ssd_reinserted_bytes);
    pushCounter("streamedge_ssd_tombstones_total",
                "Removals (purge, answers that became uncacheable) written to the store so "
                "that they hold after a restart.",
                s.ssd_tombstones);
  }

  // --- TLS
  auto handshakes = family("streamedge_tls_handshakes_total",
                           "TLS handshakes with viewers by protocol version and result.",
                           MetricType::Counter);
  for (const HandshakeSeries& h : s.tls_handshakes) {
    addCounter(handshakes, d(h.count), {{"version", h.version}, {"result", h.result}});
  }
  push(std::move(handshakes));

  auto h2_abuse = family("streamedge_http2_abuse_total",
                         "HTTP/2 flood limits that fired, by kind (the connection got GOAWAY "
                         "or the stream a reset or 431).",
                         MetricType::Counter);
  for (const auto& [kind, count] : s.http2_abuse) addCounter(h2_abuse, d(count), {{"kind", kind}});
  push(std::move(h2_abuse));

  auto expiry = family("streamedge_tls_certificate_expiry_timestamp_seconds",
                       "notAfter of a served certificate, Unix seconds.", MetricType::Gauge);
  for (const CertificateState& c : s.certificates) {
    addGauge(expiry, c.not_after_unix_seconds,
             {{"listener", c.listener}, {"certificate", c.certificate}});
  }
  push(std::move(expiry));

  // --- process
  auto reloads = family("streamedge_config_reloads_total", "Config reloads by result.",
                        MetricType::Counter);
  addCounter(reloads, d(s.reloads_ok), {{"result", "ok"}});
  addCounter(reloads, d(s.reloads_failed), {{"result", "failed"}});
  push(std::move(reloads));

  auto last_reload = family("streamedge_config_last_reload_success_timestamp_seconds",
                            "When the running config was loaded (start or last good reload), "
                            "Unix seconds.",
                            MetricType::Gauge);
  addGauge(last_reload, s.last_reload_success_unix_seconds);
  push(std::move(last_reload));

  auto upgrades_failed = family("streamedge_upgrades_failed_total",
                                "Hot upgrades (SIGUSR2) this process started that failed; it kept "
                                "serving (the reason is in /status and the log).",
                                MetricType::Counter);
  addCounter(upgrades_failed, d(s.upgrades_failed));
  push(std::move(upgrades_failed));

  auto upgrading = family("streamedge_upgrade_in_progress",
                          "1 while a new binary started by a hot upgrade is taking over.",
                          MetricType::Gauge);
  addGauge(upgrading, s.upgrade_in_progress ? 1 : 0);
  push(std::move(upgrading));

  auto took_over = family("streamedge_upgrade_took_over",
                          "1 when this process took over from an older one by a hot upgrade.",
                          MetricType::Gauge);
  addGauge(took_over, s.took_over ? 1 : 0);
  push(std::move(took_over));

  auto last_ok = family("streamedge_config_last_reload_successful",
                        "1 when the latest reload attempt succeeded (or none was made).",
                        MetricType::Gauge);
  addGauge(last_ok, s.last_reload_ok ? 1 : 0);
  push(std::move(last_ok));

  auto workers = family("streamedge_workers", "Worker threads (event loops).", MetricType::Gauge);
  addGauge(workers, s.workers);
  push(std::move(workers));

  auto heartbeat = family("streamedge_worker_heartbeat_age_seconds",
                          "Time since a worker's event loop last ticked (it ticks every 100 ms); "
                          "/healthz fails past [admin] health_stall_bound.",
                          MetricType::Gauge);
  for (size_t i = 0; i < s.worker_heartbeat_age_seconds.size(); ++i) {
    addGauge(heartbeat, s.worker_heartbeat_age_seconds[i], {{"worker", std::to_string(i)}});
  }
  push(std::move(heartbeat));

  pushCounter("streamedge_access_log_dropped_lines_total",
              "Access log lines lost: the log writer was too far behind the workers, or "
              "a write failed (disk full).",
              s.access_log_dropped_lines);

  auto build = family("streamedge_build_info", "Version and commit of this binary.",
                      MetricType::Gauge);
  addGauge(build, 1, {{"version", STREAMEDGE_VERSION}, {"commit", STREAMEDGE_GIT_COMMIT}});
  push(std::move(build));

  auto start = family("process_start_time_seconds", "Start time of the process, Unix seconds.",
                      MetricType::Gauge);
  addGauge(start, s.start_time_unix_seconds);
  push(std::move(start));

  auto uptime = family("streamedge_uptime_seconds", "Seconds since the process started.",
                       MetricType::Gauge);
  addGauge(uptime, s.now_unix_seconds > s.start_time_unix_seconds
                       ? s.now_unix_seconds - s.start_time_unix_seconds
                       : 0);
  push(std::move(uptime));

  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace streamedge::metrics
