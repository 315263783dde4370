// The config model: plain structs, immutable once loaded. A loaded Config is published as
// std::shared_ptr<const Config> and shared by all threads; a request pins the snapshot it started
// with. Loading and validation live in config_loader.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "conf/units.h"

namespace streamedge::conf {

using Millis = streamedge::Millis;
using Seconds = streamedge::Seconds;

struct ServerConfig {
  int workers = 0;                          // 0: one per core
  uint64_t max_header_bytes = 16 * 1024;    // request line + headers; over → 431
  uint64_t max_uri_bytes = 8 * 1024;        // request target; over → 414
  int max_connections = 100000;             // per process; over → accept paused
  Millis header_timeout{10'000};            // a request head must arrive within this → 408
  Millis idle_timeout{60'000};              // keep-alive idle before close
  Millis send_timeout{30'000};              // a viewer that reads nothing for this long is closed
  Millis drain_timeout{10'000};             // graceful stop: in-flight responses get this long
  // HTTP/2 (TLS listeners with http2): streams a connection may have open at once, and the
  // receive windows granted per stream and for the whole connection (the viewer's are its own).
  // The decoded header list of a request is bounded by max_header_bytes, as for HTTP/1.1.
  uint32_t http2_max_concurrent_streams = 100;
  uint64_t http2_stream_window_bytes = 1ull << 20;
  uint64_t http2_connection_window_bytes = 16ull << 20;
  // HTTP/2 flood limits (proxy/http2_session.h): frames a connection may send per
  // http2_abuse_interval before it gets GOAWAY ENHANCE_YOUR_CALM — RST_STREAM (rapid reset,
  // CVE-2023-44487), SETTINGS, PING, PRIORITY, WINDOW_UPDATE and empty DATA frames; a header
  // block's wire bytes and CONTINUATION frames (CVE-2024-27316); how long a stream or the
  // connection may stay at a zero send window while it has bytes to send.
  Millis http2_abuse_interval{10'000};
  uint32_t http2_max_resets = 200;
  uint32_t http2_max_settings = 100;
  uint32_t http2_max_pings = 100;
  uint32_t http2_max_priority = 1000;
  uint32_t http2_max_window_updates = 20'000;
  uint32_t http2_max_empty_data = 100;
  uint32_t http2_max_continuations = 8;
  uint64_t http2_max_header_block_bytes = 64 * 1024;
  Millis http2_zero_window_timeout{30'000};
  // Started as root: bind the listeners, open the SSD store and read the keys as root, then
  // switch to this user (and its groups) before serving. "" = stay as started.
  std::string user;
  // Hot upgrade (SIGUSR2): the binary to start, an absolute path; "" = the path this process
  // was started from (argv[0] made absolute at start, never /proc/self/exe: after a package
  // upgrade that names the deleted old file). Read when the signal comes (a reload changes it).
  std::string upgrade_binary;
  // Hot upgrade: the new process must be ready (store opened, workers running) within this,
  // else it is stopped and this process goes on serving.
  Millis upgrade_timeout{30'000};
};

// What an admin token may do (a bit set). /healthz and /readyz need none (probes).
enum AdminScope : uint32_t {
  kAdminScopeMetrics = 1u << 0,  // GET /metrics
  kAdminScopeStatus = 1u << 1,   // GET /status
  kAdminScopePurge = 1u << 2,    // POST /purge
  kAdminScopeDebug = 1u << 3,    // /debug/* (with debug_endpoints)
  kAdminScopeAll = (1u << 4) - 1,
};

// One [[admin.token]]: a bearer token known by its SHA-256 only (the token never appears in the
// config), a name for the audit log, and its scopes.
struct AdminTokenConfig {
  std::string name;
  std::string sha256;    // 64 lowercase hex digits
  uint32_t scopes = 0;   // AdminScope bits
};

struct CertificateConfig {
  std::string cert;  // PEM chain, leaf first
  std::string key;
};

struct AdminConfig {
  std::string address = "127.0.0.1:9901";   // "" disables the admin listener
  // Deprecated: a token in clear, with every scope (audit name "bearer_token"). "" = none.
  std::string bearer_token;
  // With no token at all (neither list nor bearer_token), every admin request is allowed (the
  // listener is on loopback by default); with any, every path but /healthz and /readyz needs
  // a token that has the path's scope.
  std::vector<AdminTokenConfig> tokens;
  // Non-empty: the admin listener speaks TLS only (same machinery as a TLS [[listener]]:
  // TLS 1.2-1.3, the default ciphers, SNI between certificates). Whether it speaks TLS is fixed
  // at start; certificates and client_ca are re-read on reload.
  std::vector<CertificateConfig> certificates;
  // With certificates: a PEM file of CA certificates; every admin client (probes included) must
  // then present a certificate that chains to one of them, or the handshake fails. "" = none.
  std::string client_ca;
  // /healthz fails once a worker loop has not ticked for this long (a stuck worker).
  Millis health_stall_bound{5000};
  // POST /debug/block-worker?ms=N&worker=I (blocks a worker loop; for tests of /healthz).
  // Never enable in production.
  bool debug_endpoints = false;
};

// TLS 1.2 cipher list (OpenSSL syntax) and TLS 1.3 suites: forward secrecy and AEAD only.
inline constexpr const char* kDefaultTlsCiphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
inline constexpr const char* kDefaultTlsCiphersuites =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

struct ListenerConfig {
  std::string address;  // "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:80"
  std::string host;     // parsed from address
  uint16_t port = 0;    // parsed from address
  int backlog = 1024;
  std::vector<CertificateConfig> certificates;  // non-empty → TLS listener; [0] is the default
  // TLS listeners only (tls/ builds the contexts).
  std::string tls_min_version = "1.2";  // "1.2" or "1.3"; never lower
  std::string tls_ciphers = kDefaultTlsCiphers;            // TLS 1.2
  std::string tls_ciphersuites = kDefaultTlsCiphersuites;  // TLS 1.3
  bool tls_session_tickets = true;
  // ALPN offers h2 before http/1.1 (TLS listeners only; plain listeners speak HTTP/1.1).
  bool http2 = true;
  std::string tls_ticket_key_file;      // "" = random keys rotated every tls_ticket_rotation
  Seconds tls_ticket_rotation{3600};    // a ticket stays valid for up to two rotations
  int tls_session_cache_size = 20480;   // server-side session cache entries; 0 disables it
  Seconds tls_session_timeout{3600};
  // Clients must present a certificate chaining to a CA of this PEM file ("" = not asked).
  // Set for the admin listener ([admin] client_ca); not a [[listener]] key.
  std::string client_ca;
  // Plain listeners only: answer every request with a 301 to https://<host><target>.
  bool redirect_https = false;
  uint16_t https_port = 0;  // port in the redirect; 0 = the first TLS listener's port
  // Plain listeners only: a connection opening with the HTTP/2 preface is served as HTTP/2.
  bool h2c = false;
};

struct RamCacheConfig {
  uint64_t size_bytes = 256ull << 20;
  uint64_t max_object_bytes = 64ull << 20;  // bigger responses are passed, not cached
  // Answers that are not kept (pass, uncacheable, bigger than max_object_bytes) hold at most this
  // much body per fill ahead of their slowest reader; the origin is paused beyond it.
  uint64_t fill_window_bytes = 4ull << 20;
  // All fills together: over this, windowed fills keep only the minimum window (512 KiB).
  uint64_t fill_memory_bytes = 256ull << 20;
  // A reader of a shared windowed fill that holds the full window this long while another reader
  // waits for more is disconnected (0 = never: everyone goes at the slowest reader's pace).
  Millis fill_stall_timeout{10'000};
  // Variants kept per URL whose answers say Vary (both tiers); beyond, the least recently
  // stored is dropped.
  uint32_t max_variants = 16;
  // URLs whose answers vary, whose vary markers (field names, variant keys) are kept at once;
  // beyond, the least recently used marker is dropped with its variants (both tiers). Markers
  // are also held to half of size_bytes.
  uint32_t max_vary_urls = 262144;
  // Whole body blocks live in shared memory files, and plaintext viewers are sent them with
  // sendfile (the kernel takes page references instead of a copy per viewer); false: heap
  // blocks, sent by copy. Applies to blocks allocated after a change.
  bool sendfile = true;
};

// How objects enter the SSD tier: when the RAM tier evicts them (default), or as soon as a fill
// completes (write-through; more disk writes, survives a restart sooner).
enum class SsdAdmission { kEvict, kFill };
// The asynchronous I/O engine: io_uring when it can be set up, else a pread/pwrite thread pool;
// "threads" forces the pool (tests, seccomp'd containers); "io_uring" makes its absence an error.
enum class IoBackend { kAuto, kIoUring, kThreads };
// What happens to a region's objects when the region is reclaimed for new writes: all leave
// (FIFO), or those read since they were written are copied into the new region first
// (reinsert; at most half a region per reclaim, so new objects always get in).
enum class SsdReclaim { kFifo, kReinsert };

// [cache.ssd]: absent (enabled = false) means RAM only.
struct SsdCacheConfig {
  bool enabled = false;                   // the section is present
  std::string path;                       // a file (created, preallocated) or a block device
  uint64_t size_bytes = 0;                // required; rounded down to whole regions
  uint64_t region_bytes = 16ull << 20;    // unit of writing and of reclaim
  bool encrypt = true;                    // AES-256-GCM at rest
  std::string key_file;                   // "" = ephemeral key: contents do not survive a restart
  SsdAdmission admission = SsdAdmission::kEvict;
  IoBackend io_backend = IoBackend::kAuto;
  bool direct_io = true;                  // O_DIRECT where the file system allows it
  SsdReclaim reclaim = SsdReclaim::kReinsert;
  uint64_t write_queue_bytes = 64ull << 20;  // admissions waiting for the writer; beyond: dropped
  Millis sync_interval{1000};             // idle this long: the open region's objects are written
  // The start-up index rebuild: in the background while serving (true), or before serving.
  bool background_rebuild = true;
  // The index checkpoint: read (and removed) at start so that only the regions written after
  // it are scanned; written at a graceful stop and every checkpoint_interval while objects are
  // written ("0s": only at a stop). Default: "<path>.checkpoint" for a store in a file, none
  // for a block device (/dev/...); "" = none.
  std::string checkpoint;
  Millis checkpoint_interval{300'000};
  // The keyring of per-vhost data keys (crypto-shredding: a purge of a whole vhost destroys its
  // key), wrapped under the store key. Default: "<path>.keys" for a store in a file, none for a
  // block device (/dev/...); "" = none (every entry sealed with the store key). Used only with
  // encrypt and key_file (an ephemeral key keeps data keys in memory).
  std::string keyring;
};

struct CacheConfig {
  RamCacheConfig ram;
  SsdCacheConfig ssd;
  // Targeted cache control (RFC 9213): this edge's own target field, which takes precedence
  // over CDN-Cache-Control and Cache-Control for its storage and freshness and is never sent to
  // viewers; "" = none (CDN-Cache-Control still applies).
  std::string cache_control_target = "Streamedge-Cache-Control";
  // Honour Surrogate-Control (below the own target and CDN-Cache-Control, above
  // Cache-Control) and strip it from viewer answers. Off: it is passed on untouched.
  bool surrogate_control = false;
};

struct OriginConfig {
  std::string url;        // "http://127.0.0.1:8081" (path part, if any, is prefixed to requests)
  std::string scheme;     // parsed: "http" or "https"
  std::string host;       // parsed; IP literal or name (resolved at connect time by proxy/)
  uint16_t port = 0;      // parsed
  std::string base_path;  // parsed; "" or "/prefix" without trailing slash
  std::string name;       // label for logs/metrics; default host:port
  std::string dc;         // data-center name
  int priority = 1;       // lower is preferred
  int weight = 1;
  Millis connect_timeout{2'000};
  Millis first_byte_timeout{10'000};  // request sent → response head received
  Millis read_timeout{10'000};        // between two body reads
  Millis idle_timeout{30'000};        // pooled keep-alive connection kept this long
  int max_idle_per_worker = 64;
  // Origin protection (shared by every worker, so the origin never sees more than this from the
  // whole process; defaults inherited from the origin group). 0 = unlimited.
  int max_concurrent_requests = 1024;  // requests in flight to this origin
  int max_connections = 1024;          // open connections (in use + idle in the pools)
  // A fetch that finds the origin at its cap (and no other origin of the same priority free)
  // waits in a queue of at most queue_size fetches (0 = no queue: answered 503 at once) for at
  // most queue_timeout; beyond either the viewer gets 503 "origin busy".
  int queue_size = 1024;
  Millis queue_timeout{2'000};
  // The longest a resolved origin name is reused: the answer's DNS TTL is honoured below it
  // (a hosts-file answer has none: it is reused this long). "0s" = resolve for every new
  // connection. Every address of the answer is tried before the next origin.
  Millis dns_cache_time{30'000};
  // https origins (defaults inherited from the origin group): peer verification is on unless
  // tls_verify = false; ca_file "" = the system CA store.
  bool tls_verify = true;
  std::string ca_file;
  std::string client_cert;      // mTLS: PEM chain, leaf first (with client_key)
  std::string client_key;
  std::string tls_server_name;  // SNI and the name checked; "" = host (not sent for IP literals)
};

// [origin_group.health_check]: active checks, a GET of `path` on every origin of the group from
// the main thread. Absent (enabled = false): origins are judged by real traffic alone.
struct HealthCheckConfig {
  bool enabled = false;           // the table is present
  std::string path;               // required with the table: origin-form ("/health")
  Millis interval{5'000};         // between the starts of two checks of one origin
  Millis timeout{2'000};          // connect + TLS + response head; at most `interval`
  int expected_status_min = 200;  // expected_status: "200", "2xx" or "200-399"
  int expected_status_max = 299;
  int fall = 3;                   // consecutive failed checks → down
  int rise = 2;                   // consecutive passed checks → up again
  std::string host;               // Host field to send; "" = the origin's host[:port]
};

// [origin_group.outlier_detection]: passive ejection on real traffic (connect errors, timeouts,
// 5xx, broken bodies). Ejection k (k = 1, 2, ...) lasts base_ejection_time * 2^(k-1), at most
// max_ejection_time; k starts again at 1 once an origin went backoff_reset without an ejection.
struct OutlierDetectionConfig {
  int consecutive_failures = 3;          // 0 = no passive ejection
  Millis base_ejection_time{10'000};
  Millis max_ejection_time{300'000};
  // Passive signals eject at most this share of a group's origins (always at least one), and
  // never the last origin that active checks and ejections left eligible.
  int max_ejected_percent = 50;
  Millis backoff_reset{300'000};
};

struct OriginGroupConfig {
  std::string name;
  std::vector<OriginConfig> origins;  // sorted by priority at load time
  int retries = 2;  // further origins tried after a failure before the first byte to the viewer
  // All attempts of one fetch before its first byte (queue waits included) end this long after
  // it started: no attempt starts later, and the running one's timers are cut to it (0 = none).
  Millis retry_deadline{0};
  // Retry budget over a sliding window of 10 s, shared by every worker: retries (and hedges)
  // may be at most retry_budget times the group's requests, or retry_budget_min per second when
  // that is more (a quiet group may still retry). Beyond, the failure goes to the viewer.
  // retry_budget = 0 turns the budget off (only `retries` bounds retries).
  double retry_budget = 0.2;
  int retry_budget_min = 10;
  // Resume after the first byte: a GET body that breaks off (reset, close, read timeout, rate
  // below min_rate) goes on from another origin of the group with Range + If-Match; at most
  // resume_attempts such requests per fetch (0 = never resume), all started within
  // resume_deadline of the first break.
  int resume_attempts = 2;
  Millis resume_deadline{30'000};
  // A body that arrives slower than min_rate bytes per second over min_rate_window counts as a
  // stalled origin (0 = off). Time the fetch is paused for its readers does not count.
  uint64_t min_rate = 0;
  Millis min_rate_window{5'000};
  HealthCheckConfig health_check;
  OutlierDetectionConfig outlier;
  // A recovered origin's share of new requests ramps linearly from 10 % to 100 % over this
  // time; 0 = off (it gets its full share at once).
  Millis slow_start{0};
  // Per-client budget of requests that go to this group's origins (misses that fill, passes):
  // client_miss_rate per second with bursts of client_miss_burst (0 = the rate); a client over
  // it gets 429. A client is an IPv4 address or an IPv6 /64. 0 = off.
  double client_miss_rate = 0;
  double client_miss_burst = 0;
};

enum class StoragePolicy { kRamAndSsd, kRam };
// How a client address is written where it is written at all (access log, forwarded fields).
enum class AddressAnonymization { kTruncate, kFull, kNone };
enum class CacheMode { kCache, kPass };

struct CachePolicy {
  CacheMode mode = CacheMode::kCache;
  // Used when the origin gives no explicit freshness (no max-age/s-maxage/Expires).
  Seconds playlist_ttl{2};     // .m3u8/.mpd; capped at half the HLS target duration when present
  // Playlists that will not change: an HLS media playlist with EXT-X-ENDLIST (or
  // PLAYLIST-TYPE:VOD) and a static MPD, when the origin says nothing (streaming/freshness.h).
  Seconds ended_playlist_ttl{86400};
  Seconds segment_ttl{86400};  // .ts .m4s .mp4 .aac .vtt .webvtt .cmfv .cmfa .m4a .m4v .jpg ...
  Seconds default_ttl{60};     // anything else with a cacheable status
  Seconds stale_while_revalidate{0};  // used when the origin does not say
  Seconds stale_if_error{60};         // used when the origin does not say
  // The same for playlists and MPDs: a live manifest that stops moving only hides an outage
  // from players for so long (they run out of segments), so it gets a shorter bound.
  Seconds playlist_stale_if_error{10};
  bool cache_authorized = false;      // cache responses to requests with Authorization
  bool cache_set_cookie = false;      // cache responses with Set-Cookie (cookie is stripped)
  bool forward_other_methods = false; // POST/PUT/... forwarded uncached instead of 405
};

struct KeyPolicy {
  bool ignore_query = false;                // no query parameter enters the key
  std::vector<std::string> keep_params;     // non-empty: only these enter the key
  std::vector<std::string> drop_params = {  // never enter the key, never logged
      "CMCD", "token", "_", "hdnts", "hdnea", "Policy", "Signature", "Key-Pair-Id",
      "Expires", "session", "sessionid", "sid"};
};

// Which client address the origin hears of (never unless asked): none, an X-Forwarded-For field
// or a Forwarded field (RFC 7239 `for=`), each with only this connection's address.
enum class ClientAddressForwarding { kNone, kXForwardedFor, kForwarded };

// Which of a viewer's request fields go to the origin on fills and passes (proxy/request_fields.h
// applies it). The lists only ever remove fields: hop-by-hop fields, Host, Expect, and for GET/HEAD
// Range and the conditionals never go whatever they say, nor Cookie/Authorization on shared fills
// unless allowed below.
struct RequestFieldPolicy {
  std::vector<std::string> forward_headers;  // non-empty: only these names (case-insensitive)
  std::vector<std::string> strip_headers;    // never these
  // Send the viewer's Cookie on shared cache fills too (passes always carry it). Off: one
  // viewer's cookie never shapes an object other viewers get.
  bool forward_cookie = false;
  // Send the viewer's CMCD (CTA-5004: the CMCD-* fields, and on passes the CMCD query parameter)
  // to the origin. Off: the edge reads CMCD for its metrics and the origin never sees it.
  bool forward_cmcd = false;
  ClientAddressForwarding forward_client_address = ClientAddressForwarding::kNone;
  // The forwarded address: /24 and /48 (kTruncate, the default) or whole (kFull). kNone unused.
  AddressAnonymization forwarded_address = AddressAnonymization::kTruncate;
};

// Content codings the edge applies to text answers for viewers who accept them (RFC 9110 §8.4).
enum class ContentCoding : uint8_t { kGzip, kBrotli };

struct CompressionPolicy {
  // Codings offered, in the edge's order of preference among equal q-values; empty = off.
  std::vector<ContentCoding> codings = {ContentCoding::kBrotli, ContentCoding::kGzip};
  uint64_t min_size = 1024;        // smaller answers gain nothing (one packet either way)
  uint64_t max_size = 4ull << 20;  // larger ones are sent as they are (encoding is on the worker)
};

// Signed URLs (proxy/url_token.h has the format): where a route looks for the viewer's token.
enum class TokenSource : uint8_t {
  kQuery,   // a query parameter (query_param)
  kCookie,  // a cookie (cookie)
  kPath,    // a leading path segment pair /<path_segment>/<token>/rest, stripped before routing
};

// One HMAC key of a route's token_auth. The secret is read from key_file at load time (and at
// every reload), so that a rotated file takes effect with SIGHUP.
struct TokenKeyConfig {
  std::string id;        // "" = no id: used for tokens that name no key
  std::string key_file;  // 32 raw bytes or 64 hex digits, not readable by every user
  std::string secret;    // the key bytes (loaded); never logged
};

// [vhost.route.token_auth]: every request of the route must carry a valid token (absent:
// enabled = false, the route is open).
struct TokenAuthConfig {
  bool enabled = false;
  std::vector<TokenSource> accept = {TokenSource::kQuery};  // looked for in this order
  std::string query_param = "token";  // also dropped from the key, the log and fills
  std::string cookie = "token";
  std::string path_segment = "t";     // /t/<token>/live/index.m3u8 is /live/index.m3u8
  // Tokens without a client address binding are refused (wrong_client).
  bool require_client = false;
  std::vector<TokenKeyConfig> keys;  // at least one; several during a rotation
};

struct RouteConfig {
  std::string prefix = "/";
  std::string origin_group;
  size_t origin_group_index = 0;  // resolved at load time
  CachePolicy cache;
  KeyPolicy key;
  StoragePolicy storage = StoragePolicy::kRamAndSsd;
  RequestFieldPolicy fields;
  CompressionPolicy compress;
  // Hedged requests for playlists and MPDs (GET only): if the origin has not answered the head
  // within hedge_after, the next origin of the group is asked too and the first head wins; the
  // other request is cancelled (its connection closed). 0 = off.
  Millis hedge_after{0};
  TokenAuthConfig token_auth;
  // Live prefetch (proxy/prefetch.h): when a new version of a live HLS media playlist of this
  // route is filled, the newest prefetch_segments segments and the part preload hint that are
  // not cached or being filled are filled in the background, at most prefetch_concurrency at
  // once for the route (the rest are skipped); for a live DASH MPD, the newest available
  // segments of the representations viewers watch (streaming/dash_prefetch.h); also the object
  // a viewer's CMCD nor names.
  bool prefetch = false;
  int prefetch_segments = 2;
  int prefetch_concurrency = 4;
};

struct VhostConfig {
  std::string name;                    // label for logs/metrics; default first hostname
  std::vector<std::string> hostnames;  // "example.com", "*.example.com", "*"
  std::vector<RouteConfig> routes;     // sorted longest prefix first at load time
  std::string hsts;                    // Strict-Transport-Security value on HTTPS responses; "" = none
  // The distinct path_segment names of routes that accept path tokens (derived at load time):
  // a request path /<name>/<token>/... is looked at for a token before routing.
  std::vector<std::string> token_path_segments;
  // The longest an object of this vhost is kept or served after it was fetched from the origin
  // (or confirmed by a 304), on both tiers; past it the object is removed and the next request
  // is a miss (cache/retention.h). 0 = no limit.
  Millis retention{0};
  // CMSD (CTA-5006) on responses from the cache path: CMSD-Dynamic with this edge's estimate
  // of the viewer connection's throughput (etp, kbit/s) and round-trip time (rtt, ms) from
  // TCP_INFO, and CMSD-Static ot= where the path tells the object type (proxy/cmsd.h).
  bool cmsd = false;
};

struct LogConfig {
  std::string access_log = "stderr";  // "stderr", "stdout", "off" or a file path
  // How the client address is written in the access and security logs. Set by
  // [privacy] client_address (or the deprecated [log] client_address); kept here because every
  // log writer reads it from here.
  AddressAnonymization client_address = AddressAnonymization::kTruncate;
  std::string level = "info";         // error log: "error", "warn", "info", "debug"
  // Audit log: admin actions that change something (purges) and refused admin requests, one
  // JSON line each, appended ("" = off). Reopened with the access log (SIGUSR1).
  std::string audit_log;
  // Security events (refused signed-URL tokens), one JSON line each: "stderr", "stdout", "off"
  // or a file path (reopened on SIGUSR1, like the access log).
  std::string security_log = "stderr";
};

// [privacy]: what the edge keeps of its viewers. client_address lives in LogConfig (above).
struct PrivacyConfig {
  // Rotated access- and security-log files (the log's file name followed by '.' or '-', in its
  // directory) older than this are removed by the edge: at start, on SIGUSR1 and hourly
  // (proxy/log_retention.h). Never the live file; the audit log is not covered. 0 = off.
  Millis log_retention{0};
};

// Resolution of origin names (every worker and the health checks resolve on their own loop).
// Read at start; a reload keeps the running resolvers.
struct DnsConfig {
  // "ip", "ip:port" or "[ipv6]:port"; empty = the nameservers of /etc/resolv.conf.
  std::vector<std::string> nameservers;
  std::string hosts_file = "/etc/hosts";  // asked first; "" = none
};

// [cluster]: the peer tier of an edge site (proxy/peer_tier.h). Each object has an owner among
// the peers (weighted rendezvous hashing with bounded loads, proxy/peer_ring.h); a miss on a
// non-owner is fetched from the owner over HTTP, which alone fetches from the origin. Without
// the section (enabled = false) the edge behaves as a lone server.
enum class ClusterMode {
  kStaySmall,     // a non-owner passes the owner's answer on without keeping it (coalesced)
  kReplicateHot,  // a non-owner keeps the owner's answer like any fill
};

// Origin-form path every peer answers 200 on its viewer listeners while a [cluster] is
// configured (the peers' health checks).
inline constexpr const char* kPeerHealthPath = "/.well-known/streamedge/peer-health";
// Names of the synthetic origin groups made for the peers: "peer:" + address.
inline constexpr const char* kPeerGroupPrefix = "peer:";

struct ClusterConfig {
  bool enabled = false;
  // Canonical "host:port" of every peer's viewer listener, this server's own included, in the
  // config's order (the ring does not depend on it).
  std::vector<std::string> peers;
  std::string self;          // the peer that is this server (from `self` or a listener match)
  size_t self_index = 0;     // into peers
  std::string secret_file;   // shared HMAC key of the site (32 raw bytes or 64 hex digits)
  std::string secret;        // its bytes
  ClusterMode mode = ClusterMode::kStaySmall;
  Millis connect_timeout{1'000};   // to a peer
  Millis timeout{5'000};           // a peer's response head, and between two body reads
  Millis health_interval{2'000};   // active checks of each peer (kPeerHealthPath)
  Millis max_clock_skew{30'000};   // a peer request's timestamp may be this far off
  double load_factor = 1.25;       // bounded loads: a peer gets at most ~this x the mean
  // POST /purge?...&scope=site (proxy/site_purge.h): every peer's answer within this, and the
  // port of the peers' admin listeners (on their peer hosts); 0 = this server's own admin port
  // (peers share the layout).
  Millis purge_timeout{5'000};
  uint16_t admin_port = 0;
  // Peer fills and health checks over HTTPS to the peers' listeners (the `peers` addresses are
  // TLS listeners), each peer's certificate verified against `ca_file` ("" = the system CA
  // store) for `tls_server_name` ("" = the peer's host: an IP literal is checked against the
  // certificate's IP addresses). Default: on when this server's own peer listener is TLS.
  bool tls = false;
  std::string ca_file;
  std::string tls_server_name;
  // Per peer: the index of its synthetic origin group in Config::origin_groups (appended after
  // the configured groups; never referenced by a route); SIZE_MAX for self.
  std::vector<size_t> peer_group;
  // Membership from DNS (proxy/peer_discovery.h), e.g. a Kubernetes headless Service: `dns` a
  // name whose SRV records (a name starting with '_', like "_http._tcp.edge.ns.svc.cluster.local")
  // give targets and ports, or whose A/AAAA records give the peers' addresses on `dns_port`.
  // Empty: the static `peers` only. With DNS, `peers` is the membership until the first answer
  // (may be absent: this server alone) and this server is always a member.
  std::string dns;           // lower case, no trailing dot
  bool dns_srv = false;      // dns starts with '_'
  uint16_t dns_port = 0;     // the peers' viewer port for A/AAAA (required then)
  Millis dns_interval{10'000};
  std::string dns_server;    // "ip", "ip:port" or "[v6]:port"; empty = [dns] nameservers
};

struct Config {
  std::string source;  // file path, or "<embedded default>"
  ServerConfig server;
  AdminConfig admin;
  DnsConfig dns;
  std::vector<ListenerConfig> listeners;
  CacheConfig cache;
  std::vector<OriginGroupConfig> origin_groups;
  std::vector<VhostConfig> vhosts;
  LogConfig log;
  PrivacyConfig privacy;
  ClusterConfig cluster;
};

using ConfigPtr = std::shared_ptr<const Config>;

}  // namespace streamedge::conf
