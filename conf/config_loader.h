// Loading a Config from TOML (toml++) with full validation. All errors are collected and
// reported at once; each names file:line and the key path. Thread-safe (no shared state).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "conf/config.h"

namespace streamedge::conf {

struct ConfigError {
  std::string file;
  int line = 0;         // 1-based; 0 when unknown
  std::string key;      // "origin_group[0].origin[1].url"
  std::string message;  // "expected a string"
  std::string toString() const;  // "file:line: key: message"
};

struct LoadResult {
  ConfigPtr config;                 // null when errors is non-empty
  std::vector<ConfigError> errors;
  std::vector<std::string> warnings;
  bool ok() const { return config != nullptr; }
};

// Loads and validates a file.
LoadResult loadConfigFile(const std::string& path);
// Loads and validates TOML text; `name` is used as the file name in errors.
LoadResult loadConfigText(std::string_view text, const std::string& name);
// The embedded default config: listens on 127.0.0.1:8080, admin on 127.0.0.1:9901, one origin
// group "demo" at http://127.0.0.1:8081 (scripts/run.sh starts the origin simulator there).
std::string_view defaultConfigText();

// Replaces the cluster's membership of a loaded config with `peers` (canonical "host:port", as
// ClusterConfig::peers; this server's own address is added when missing) and rebuilds the
// peers' synthetic origin groups, exactly as loading a config with that `peers` list would.
// For membership from DNS (proxy/peer_discovery.h). `config.cluster.enabled` must be true.
void setClusterPeers(Config& config, std::vector<std::string> peers);

// The TLS side of an https request to a peer (its viewer listener with [cluster] tls, its admin
// listener for a site purge when the admin listener is TLS): scheme https, certificate verified
// against cluster.ca_file for cluster.tls_server_name (host and port are the caller's). The
// peers' client context (tls::TlsState::originContext) is found by it.
OriginConfig clusterPeerTlsOrigin(const ClusterConfig& cluster);
// Whether the peers are asked over HTTPS anywhere: fills ([cluster] tls) or site purges (a TLS
// admin listener: the peers' are TLS too).
bool clusterUsesTls(const Config& config);

}  // namespace streamedge::conf
