// Prometheus exposition for streamedge. proxy/ gathers a Snapshot at scrape time (per-worker
// counters and histograms summed, cache, origin and TLS state read) and this module turns it into
// prometheus-cpp metric families and the text format through prometheus-cpp's TextSerializer (no
// hand-written exposition). Label values come only from config (vhost, group, origin, dc, tier,
// listener, certificate) or fixed vocabularies (result, status class, TLS version): never URLs,
// paths, client addresses or tokens. Pure functions; thread-safe.
//
// The metric names are listed, with their meaning, in metrics/README.md; dashboards and alert
// rules (metrics/grafana-dashboard.json, metrics/alerts.yml) depend on them: keep them stable.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "metrics/latency_histogram.h"

namespace streamedge::metrics {

struct RequestSeries {
  std::string vhost;         // config name; "unrouted" before a vhost matched; "other" past the cap
  std::string result;        // hit miss stale coalesced pass none
  std::string status_class;  // 1xx … 5xx
  std::string protocol;      // http/1.1 (HTTP/1.0 and 1.1) or h2
  uint64_t count = 0;
};

// CMCD (CTA-5004) reported by players, per vhost: aggregates only, nothing per viewer.
inline constexpr std::array<uint64_t, 9> kCmcdBitrateBoundsKbps = {200,  400,  800,   1500, 3000,
                                                                   6000, 12000, 25000, 50000};
struct CmcdSeries {
  std::string vhost;
  uint64_t requests = 0;            // requests with valid CMCD
  uint64_t buffer_starvation = 0;   // ... reporting bs (buffer starvation)
  std::array<uint64_t, kCmcdBitrateBoundsKbps.size() + 1> bitrate_counts{};  // per bucket; last +Inf
  uint64_t bitrate_sum_kbps = 0;
};

struct LatencySeries {
  std::string result;  // cache result, as in RequestSeries
  HistogramSnapshot histogram;
};

// Why an origin attempt failed: the `reason` label of streamedge_origin_errors_total.
enum class OriginErrorReason : uint8_t {
  kConnect,          // refused, unreachable, DNS
  kTls,              // handshake or certificate verification
  kTimeout,          // connect, first byte or idle read
  kClosed,           // closed or reset before a complete head
  kInvalidResponse,  // a head that breaks RFC 9112, or too large
  k5xx,              // answered 5xx
  kBody,             // the body broke off or did not match its framing
  kOther,
};
inline constexpr size_t kOriginErrorReasons = 8;
// "connect", "tls", "timeout", "closed", "invalid_response", "5xx", "body", "other".
const char* originErrorReasonName(OriginErrorReason reason);
using OriginErrorCounts = std::array<uint64_t, kOriginErrorReasons>;  // by OriginErrorReason
inline uint64_t total(const OriginErrorCounts& c) {
  uint64_t n = 0;
  for (uint64_t v : c) n += v;
  return n;
}

struct OriginState {
  std::string group;
  std::string origin;
  std::string dc;
  bool up = false;
  bool in_config = true;   // false: removed by a reload; counters only, no origin_up
  uint64_t requests = 0;   // attempts sent (or tried) to this origin
  OriginErrorCounts errors{};  // attempts that failed, by reason
  uint64_t retries = 0;    // transparent re-sends to this origin (a pooled connection had died)
  uint64_t failovers = 0;  // fetches moved on from this origin to the next of its group
  HistogramSnapshot latency;  // attempt start → response head
  // Health (in_config origins only): transitions to up / down (active or passive) and passive
  // ejections.
  uint64_t transitions_up = 0;
  uint64_t transitions_down = 0;
  uint64_t ejections = 0;
};

// streamedge_origin_resumes_total: mid-body resumes of origin bodies. `outcome` is one of ok,
// validator_mismatch, precondition_failed, no_range, failed, not_resumable.
struct ResumeSeries {
  std::string group;
  std::string from_dc;
  std::string to_dc;  // "" for not_resumable
  std::string outcome;
  uint64_t count = 0;
};

// Origin protection of one origin (shared by every worker): streamedge_origin_in_flight,
// streamedge_origin_connections_open, streamedge_origin_queue_length (gauges),
// streamedge_origin_queued_total and streamedge_origin_rejected_total{reason} (counters).
struct OriginProtectionState {
  std::string group;
  std::string origin;
  std::string dc;
  int64_t in_flight = 0;      // requests assigned to the origin now
  int64_t connections = 0;    // open connections (connecting, in use, idle)
  int64_t queued = 0;         // fetches waiting for a slot now
  uint64_t queued_total = 0;  // fetches that had to wait
  uint64_t rejected_queue_full = 0;
  uint64_t rejected_queue_timeout = 0;
};

// Per group: streamedge_origin_group_retries_total{outcome="retried|budget_exhausted"},
// streamedge_origin_hedges_started_total, streamedge_origin_hedges_total{outcome="won|lost"}.
struct OriginGroupRetryState {
  std::string group;
  uint64_t retried = 0;
  uint64_t budget_exhausted = 0;
  uint64_t hedges_started = 0;
  uint64_t hedges_won = 0;
  uint64_t hedges_lost = 0;
};

// Cluster peers (every peer of [cluster] but this edge): streamedge_peer_up{peer} and
// streamedge_peer_requests_total{peer,result}, result one of kPeerResultNames.
inline constexpr size_t kPeerResults = 5;
// "ok" (answered below 500), "5xx", "timeout", "connect" (refused, unreachable), "error" (closed,
// invalid answer, broken body, other).
inline constexpr std::array<const char*, kPeerResults> kPeerResultNames = {"ok", "5xx", "timeout",
                                                                           "connect", "error"};
struct PeerState {
  std::string peer;  // its configured or resolved address
  bool up = false;   // its health check passes and no real request failed since
  std::array<uint64_t, kPeerResults> requests{};  // by kPeerResultNames
};

struct TierState {
  std::string tier;  // "ram", "ssd"
  uint64_t objects = 0;
  uint64_t bytes = 0;
  uint64_t capacity_bytes = 0;
  uint64_t evictions = 0;
  uint64_t admissions = 0;
};

struct ListenerState {
  std::string listener;  // the configured address
  int64_t connections_active = 0;
};

struct HandshakeSeries {
  std::string version;  // "1.2", "1.3", "other", "unknown"
  std::string result;   // "ok", "failed"
  uint64_t count = 0;
};

struct CertificateState {
  std::string listener;     // the listener's label, as in ListenerState
  std::string certificate;  // configured cert path
  double not_after_unix_seconds = 0;  // the leaf's notAfter
};

struct Snapshot {
  double start_time_unix_seconds = 0;
  double now_unix_seconds = 0;  // for the uptime gauge
  int workers = 0;
  std::vector<RequestSeries> requests;  // non-zero series only
  std::vector<CmcdSeries> cmcd;         // vhosts with CMCD seen only
  std::vector<std::pair<std::string, uint64_t>> responses_by_class;  // "2xx" → n (all classes)
  std::vector<std::pair<std::string, uint64_t>> response_bytes_by_vhost;
  std::vector<LatencySeries> request_duration;
  std::vector<LatencySeries> time_to_first_byte;
  uint64_t bad_requests = 0;
  uint64_t origin_fetches = 0;
  uint64_t origin_failures = 0;
  uint64_t connections_accepted = 0;
  std::vector<ListenerState> listeners;
  std::vector<TierState> tiers;
  // SSD tier I/O (exported only when ssd_io_backend is set): "io_uring" or "threads" (fallback).
  std::string ssd_io_backend;
  HistogramSnapshot ssd_read_latency;
  HistogramSnapshot ssd_write_latency;
  uint64_t ssd_errors = 0;   // device read/write errors
  uint64_t ssd_corrupt = 0;  // entries that failed verification on read or at rebuild
  uint64_t ssd_hits = 0;     // RAM misses completed from the SSD tier
  uint64_t ssd_fallbacks = 0;  // SSD copies that could not be used (gone, damaged): origin
  uint64_t ssd_admissions_dropped = 0;  // the writer's queue was full (or the store closing)
  uint64_t ssd_revalidations = 0;  // stale SSD copies sent to the origin as conditional requests
  uint64_t ssd_reinserted_bytes = 0;  // carried into a new region at reclaim
  uint64_t ssd_tombstones = 0;     // removals written to the store
  std::vector<OriginState> origins;
  std::vector<ResumeSeries> origin_resumes;
  std::vector<OriginProtectionState> origin_protection;
  std::vector<OriginGroupRetryState> origin_group_retries;
  std::vector<PeerState> peers;
  // With a [cluster]: streamedge_cluster_peers (members, this edge included) and
  // streamedge_cluster_membership_changes_total (new memberships from DNS published).
  bool cluster = false;
  uint64_t cluster_peers = 0;
  uint64_t cluster_membership_changes = 0;
  // streamedge_client_miss_budget_rejected_total{group}: requests refused with 429 by the
  // per-client miss budget; streamedge_client_miss_budget_clients: buckets held.
  std::map<std::string, uint64_t> client_miss_rejected;
  uint64_t client_miss_clients = 0;
  // streamedge_token_rejections_total{vhost,reason}: requests refused with 403 on routes with
  // token_auth (non-zero series only).
  struct TokenRejectionSeries {
    std::string vhost;
    std::string reason;  // missing malformed bad_signature expired wrong_prefix wrong_client unknown_key
    uint64_t count = 0;
  };
  std::vector<TokenRejectionSeries> token_rejections;
  std::vector<HandshakeSeries> tls_handshakes;
  // streamedge_http2_abuse_total{kind}: HTTP/2 flood limits that fired, every kind (zeros too).
  std::vector<std::pair<std::string, uint64_t>> http2_abuse;
  std::vector<CertificateState> certificates;
  uint64_t reloads_ok = 0;
  uint64_t reloads_failed = 0;
  double last_reload_success_unix_seconds = 0;  // the start counts as the first good load
  bool last_reload_ok = true;                    // the latest reload attempt succeeded
  // Hot upgrades (SIGUSR2): ones this process started that failed (it kept serving), one in
  // progress, and whether this process took over from an older one.
  uint64_t upgrades_failed = 0;
  bool upgrade_in_progress = false;
  bool took_over = false;
  std::vector<double> worker_heartbeat_age_seconds;  // by worker index
  uint64_t access_log_dropped_lines = 0;  // writer too far behind, or a failed write
  // Fills in flight: body bytes they hold, the budget windowed fills are held to, how often a
  // windowed fill paused its origin for a full window, slow readers cut, fills stopped because
  // every reader left.
  uint64_t fill_memory_bytes = 0;
  uint64_t fill_memory_budget_bytes = 0;
  uint64_t body_shared_memory_bytes = 0;  // body blocks in shared memory files (sendfile)
  // Vary (RFC 9111 §4.1): URLs with a vary marker now, the markers' estimated memory (charged to
  // the RAM tier), and variants removed for a bound (per URL, the marker cap) or a changed Vary.
  uint64_t vary_urls = 0;
  uint64_t vary_marker_bytes = 0;
  uint64_t variants_dropped = 0;
  uint64_t fill_window_pauses = 0;
  uint64_t fill_slow_readers_cut = 0;
  uint64_t fills_abandoned = 0;
  // LL-HLS blocking reloads decided at the edge (proxy/live_playlists.h).
  uint64_t ll_hls_answered_from_cache = 0;  // answered at once by the URL's newest playlist
  uint64_t ll_hls_too_far_ahead = 0;        // 400: too far ahead of the stream
  uint64_t ll_hls_holds_expired = 0;        // 503: not answered within the hold bound
  uint64_t invalidations = 0;  // stored URLs removed after a POST/PUT/DELETE/... (RFC 9111 §4.4)
  // Admin API: purges by kind (url, prefix, tag, host) and result (ok, error); objects they
  // removed (mode hard) or marked stale (mode soft); admin requests refused (no or unknown
  // token: unauthenticated; token without the scope: forbidden); audit lines not written.
  struct KindCount {
    std::string kind;
    std::string label;  // result, or mode
    uint64_t count = 0;
  };
  std::vector<KindCount> purges;
  std::vector<KindCount> purged_objects;
  uint64_t admin_refused_unauthenticated = 0;
  uint64_t admin_refused_forbidden = 0;
  uint64_t audit_log_failed_lines = 0;
  // Compression of text answers, one series per coding ("br", "gzip"): encoder runs (once per
  // object version and coding, plus the rare race lost to another worker), the CPU time they
  // took, answers sent encoded, and the body bytes those answers saved.
  struct CompressionSeries {
    std::string encoding;
    uint64_t encodings = 0;
    double encode_seconds = 0;
    uint64_t responses = 0;
    uint64_t saved_bytes = 0;
  };
  std::vector<CompressionSeries> compression;
  // Privacy: objects removed because they were older than their vhost's retention, by vhost
  // and tier (ram, ssd); rotated log files the edge deleted ([privacy] log_retention), by log
  // (access, security), and deletions that failed.
  struct RetentionSeries {
    std::string vhost;
    std::string tier;
    uint64_t count = 0;
  };
  std::vector<RetentionSeries> retention_expired;
  std::map<std::string, uint64_t> log_files_removed;
  uint64_t log_file_removal_errors = 0;
  // Route prefetch (proxy/prefetch.h), by result: issued, used, wasted, skipped, failed.
  std::map<std::string, uint64_t> prefetch;
};

// The Prometheus text format (version 0.0.4) for `snapshot`, plus build_info.
std::string renderPrometheus(const Snapshot& snapshot);

}  // namespace streamedge::metrics
