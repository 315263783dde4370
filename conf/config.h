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
};

struct AdminConfig {
  std::string address = "127.0.0.1:9901";   // "" disables the admin listener
  std::string bearer_token;                 // "" = no token required
};

struct CertificateConfig {
  std::string cert;  // PEM chain, leaf first
  std::string key;
};

struct ListenerConfig {
  std::string address;  // "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:80"
  std::string host;     // parsed from address
  uint16_t port = 0;    // parsed from address
  int backlog = 1024;
  std::vector<CertificateConfig> certificates;  // non-empty → TLS listener (TLS issue)
};

struct RamCacheConfig {
  uint64_t size_bytes = 256ull << 20;
  uint64_t max_object_bytes = 64ull << 20;  // bigger responses are passed, not cached
};

struct CacheConfig {
  RamCacheConfig ram;
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
};

struct OriginGroupConfig {
  std::string name;
  std::vector<OriginConfig> origins;  // sorted by priority at load time
  int retries = 2;  // further origins tried after a failure before the first byte to the viewer
};

enum class StoragePolicy { kRamAndSsd, kRam };
enum class CacheMode { kCache, kPass };

struct CachePolicy {
  CacheMode mode = CacheMode::kCache;
  // Used when the origin gives no explicit freshness (no max-age/s-maxage/Expires).
  Seconds playlist_ttl{2};     // .m3u8/.mpd; capped at half the HLS target duration when present
  Seconds segment_ttl{86400};  // .ts .m4s .mp4 .aac .vtt .webvtt .cmfv .cmfa .m4a .m4v .jpg ...
  Seconds default_ttl{60};     // anything else with a cacheable status
  Seconds stale_while_revalidate{0};  // used when the origin does not say
  Seconds stale_if_error{60};         // used when the origin does not say
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

struct RouteConfig {
  std::string prefix = "/";
  std::string origin_group;
  size_t origin_group_index = 0;  // resolved at load time
  CachePolicy cache;
  KeyPolicy key;
  StoragePolicy storage = StoragePolicy::kRamAndSsd;
};

struct VhostConfig {
  std::string name;                    // label for logs/metrics; default first hostname
  std::vector<std::string> hostnames;  // "example.com", "*.example.com", "*"
  std::vector<RouteConfig> routes;     // sorted longest prefix first at load time
};

enum class AddressAnonymization { kTruncate, kFull, kNone };

struct LogConfig {
  std::string access_log = "stderr";  // "stderr", "stdout", "off" or a file path
  AddressAnonymization client_address = AddressAnonymization::kTruncate;
  std::string level = "info";         // error log: "error", "warn", "info", "debug"
};

struct Config {
  std::string source;  // file path, or "<embedded default>"
  ServerConfig server;
  AdminConfig admin;
  std::vector<ListenerConfig> listeners;
  CacheConfig cache;
  std::vector<OriginGroupConfig> origin_groups;
  std::vector<VhostConfig> vhosts;
  LogConfig log;
};

using ConfigPtr = std::shared_ptr<const Config>;

}  // namespace streamedge::conf
