// SharedState: what all workers of one process share — the cache, origin health, the access
// log, the vhost label registry and per-worker counters. Owned by the Server, outlives the
// workers. Thread-safe members.
//
// Counters follow DESIGN.md "Threads": each WorkerCounters is written by its one worker only
// (relaxed load + store, no read-modify-write, so no contended cache line per request) and
// summed by the admin thread at scrape time.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "cache/cache.h"
#include "conf/config.h"
#include "metrics/exposition.h"
#include "metrics/latency_histogram.h"
#include "proxy/live_playlists.h"
#include "proxy/prefetch.h"
#include "proxy/access_log.h"
#include "proxy/origin_client.h"
#include "proxy/client_budget.h"
#include "proxy/origin_limits.h"
#include "proxy/origin_stats.h"
#include "proxy/peer_tier.h"
#include "proxy/url_token.h"

namespace streamedge::proxy {

enum class CacheResult : uint8_t { kHit, kMiss, kStale, kCoalesced, kPass, kNone, kCount };
const char* cacheResultName(CacheResult r);  // "HIT", "MISS", ..., "-" for kNone
inline constexpr size_t kCacheResults = static_cast<size_t>(CacheResult::kCount);

// Per-vhost counters are fixed arrays indexed by a slot: 0 for requests no vhost matched, one
// slot per vhost name (config order at start, new names appended at reload), the last slot for
// names past the cap. Label values therefore come only from config and stay bounded.
inline constexpr size_t kVhostSlots = 64;
inline constexpr size_t kListenerSlots = 32;  // listeners past this share the last slot
inline constexpr size_t kStatusClasses = 6;
// The viewer's protocol: [0] HTTP/1.x, [1] HTTP/2 (label values in kProtocolNames).
inline constexpr size_t kProtocols = 2;
inline constexpr std::array<const char*, kProtocols> kProtocolNames = {"http/1.1", "h2"};   // [1..5]xx; [0] for anything else

// Viewer TLS handshakes (the tls/ glue calls WorkerCounters::recordHandshake).
enum class TlsVersionSlot : uint8_t { kTls12, kTls13, kOther, kUnknown, kCount };
enum class HandshakeResult : uint8_t { kOk, kFailed, kCount };
const char* tlsVersionLabel(TlsVersionSlot v);     // "1.2" "1.3" "other" "unknown"
const char* handshakeResultLabel(HandshakeResult r);  // "ok" "failed"
// Maps SSL_get_version() text ("TLSv1.3") to a slot; null or empty → kUnknown.
TlsVersionSlot tlsVersionSlot(const char* ssl_version);

// HTTP/2 flood limits that fired (proxy/http2_session.h), by kind.
enum class Http2Abuse : uint8_t {
  kRapidReset, kContinuation, kHeaderList, kSettingsFlood, kPingFlood, kPriorityFlood,
  kWindowUpdateFlood, kEmptyData, kZeroWindow, kHeaderTimeout, kCount
};
inline constexpr size_t kHttp2AbuseKinds = static_cast<size_t>(Http2Abuse::kCount);
const char* http2AbuseName(Http2Abuse k);  // "rapid_reset", "continuation", ...

// Stable slots for vhost names. slotFor() takes a mutex: call it when a config is published,
// not per request (WorkerCounters::vhostSlot caches the mapping per config snapshot).
class VhostSlots {
 public:
  static constexpr uint8_t kUnrouted = 0;
  static constexpr uint8_t kOther = kVhostSlots - 1;
  VhostSlots() { names_.push_back("unrouted"); }
  uint8_t slotFor(std::string_view name);
  // Label per slot in use (index = slot); kOther's label "other" is last when it is in use.
  std::vector<std::string> names() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::string> names_;  // guarded by mu_
  bool other_used_ = false;         // guarded by mu_
};

struct WorkerCounters {
  using Cell = std::atomic<uint64_t>;

  // requests[protocol][vhost slot][cache result][status class]
  std::array<std::array<std::array<std::array<Cell, kStatusClasses>, kCacheResults>, kVhostSlots>,
             kProtocols>
      requests{};
  std::array<Cell, kVhostSlots> response_bytes{};  // body bytes by vhost slot
  std::array<metrics::LatencyHistogram, kCacheResults> duration;  // by cache result
  std::array<metrics::LatencyHistogram, kCacheResults> ttfb;      // by cache result
  Cell origin_fetches{0};
  Cell origin_failures{0};
  Cell fill_window_pauses{0};
  Cell fill_slow_readers_cut{0};
  Cell fills_abandoned{0};
  Cell invalidations{0};
  // CMCD (streaming/cmcd.h), by vhost slot: requests with valid CMCD, those reporting buffer
  // starvation, and the requested bitrate histogram (metrics::kCmcdBitrateBoundsKbps, +Inf last).
  std::array<Cell, kVhostSlots> cmcd_requests{};
  std::array<Cell, kVhostSlots> cmcd_starvation{};
  std::array<std::array<Cell, metrics::kCmcdBitrateBoundsKbps.size() + 1>, kVhostSlots> cmcd_bitrate{};
  std::array<Cell, kVhostSlots> cmcd_bitrate_sum_kbps{};
  // LL-HLS blocking reloads: answered at once from the URL's newest stored playlist, refused
  // as too far ahead here, and given 503 at the hold bound.
  Cell ll_hls_answered_from_cache{0};
  Cell ll_hls_too_far_ahead{0};
  Cell ll_hls_holds_expired{0};  // stored URLs removed after an unsafe request (RFC 9111 §4.4)
  // Signed-URL refusals: token_rejections[vhost slot][TokenVerdict] (kOk unused).
  std::array<std::array<Cell, kTokenVerdicts>, kVhostSlots> token_rejections{};
  // Compression, by conf::ContentCoding: encoder runs and their CPU time, answers sent encoded
  // and the body bytes that saved.
  static constexpr size_t kCodings = 2;
  std::array<Cell, kCodings> compression_encodings{};
  std::array<Cell, kCodings> compression_encode_ns{};
  std::array<Cell, kCodings> compressed_responses{};
  std::array<Cell, kCodings> compression_saved_bytes{};
  Cell connections_accepted{0};
  std::atomic<int64_t> connections_active{0};
  std::array<std::atomic<int64_t>, kListenerSlots> connections_active_by_listener{};
  Cell bad_requests{0};
  std::array<Cell, kHttp2AbuseKinds> http2_abuse{};  // by Http2Abuse
  std::array<std::array<Cell, static_cast<size_t>(HandshakeResult::kCount)>,
             static_cast<size_t>(TlsVersionSlot::kCount)>
      tls_handshakes{};
  std::atomic<int64_t> heartbeat_unix_ms{0};  // the loop's last tick
  metrics::LatencyHistogram ssd_read_latency;  // SSD tier reads completed on this worker
  OriginStats origin_stats;  // written by this worker's OriginClient

  static void add(Cell& c, uint64_t n = 1) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  static void addSigned(std::atomic<int64_t>& c, int64_t n) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  // Hook for the TLS glue (worker thread): one call per viewer handshake that finished or failed.
  // `ssl_version` is SSL_get_version() of the connection (null when unknown).
  void recordHandshake(const char* ssl_version, HandshakeResult result) {
    add(tls_handshakes[static_cast<size_t>(tlsVersionSlot(ssl_version))]
                      [static_cast<size_t>(result)]);
  }

  // Worker thread only: the slot of `vhost` (a member of config->vhosts; null → unrouted). The
  // slot table is rebuilt (through `registry`) only when the config snapshot changes.
  uint8_t vhostSlot(VhostSlots& registry, const conf::ConfigPtr& config,
                    const conf::VhostConfig* vhost);

 private:
  // Worker thread only; never read at scrape.
  conf::ConfigPtr slots_config_;
  std::vector<uint8_t> slots_;  // by position in slots_config_->vhosts
};

// The calling worker thread's counters (set by Worker::run); null on other threads. For hooks
// that run on a worker but are not handed its counters (the SSD store's read observer).
WorkerCounters* currentWorkerCounters();
void setCurrentWorkerCounters(WorkerCounters* counters);

struct SharedState {
  SharedState(const conf::Config& config)
      : cache(config.cache.ram, SystemClock::instance()),
        health(std::make_shared<OriginHealth>(config)),
        access_log(config.log.access_log),
        security_log(config.log.security_log) {
    peers.reconfigure(config);
  }

  cache::Cache cache;
  // The SSD tier when [cache.ssd] is configured (attached to `cache`). Declared after it:
  // destroyed first, writing its open region; the workers (and their I/O engines) are gone by
  // then.
  std::unique_ptr<cache::SsdStore> ssd;
  metrics::LatencyHistogram ssd_write_latency;  // written by the store's writer thread only
  std::shared_ptr<OriginHealth> health;
  // Origin protection shared by every worker's OriginClient (caps, queues, retry budgets).
  std::shared_ptr<OriginLimits> limits = std::make_shared<OriginLimits>();
  // [origin_group] client_miss_rate: misses per client, shared by every worker.
  ClientMissBudget client_misses;
  // [cluster]: the peer tier (null without one); reconfigured on reload.
  PeerTierHolder peers;
  AccessLog access_log;
  // Security events ([log] security_log; proxy/security_log.h formats the lines). Read at start
  // like the access log: a reload does not move it.
  AccessLog security_log;
  VhostSlots vhost_slots;
  // The newest stored playlist of each live HLS URL (LL-HLS blocking reloads answered from it).
  LivePlaylists live_playlists;
  // Route prefetch: concurrency per route and the streamedge_prefetch_total counts.
  PrefetchTracker prefetch;
  std::vector<std::unique_ptr<WorkerCounters>> counters;  // one per worker, fixed at start
  std::atomic<int64_t> connections_total_active{0};
  std::atomic<bool> draining{false};
};

}  // namespace streamedge::proxy
