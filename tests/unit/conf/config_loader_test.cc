#include "conf/config_loader.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "tests/unit/conf/config_test_base.h"

namespace streamedge::conf {
namespace {

// The minimal config from the issue; it must load exactly as written.
constexpr std::string_view kContract = R"([server]
workers = 2

[admin]
address = "127.0.0.1:9901"

[[listener]]
address = "127.0.0.1:8080"

[cache.ram]
size = "256MiB"

[[origin_group]]
name = "main"
  [[origin_group.origin]]
  url = "http://127.0.0.1:8081"
  dc = "dc-a"
  priority = 1

[[vhost]]
hostnames = ["*"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"
)";

// The smallest valid config, for tests that append one section to it: listener, group and vhost
// with its route are all here.
constexpr std::string_view kBase = R"([[listener]]
address = "127.0.0.1:8080"

[[origin_group]]
name = "main"
  [[origin_group.origin]]
  url = "http://127.0.0.1:8081"

[[vhost]]
hostnames = ["*"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"
)";

LoadResult load(std::string_view text) { return loadConfigText(text, "test.toml"); }

std::string concat(std::string_view a, std::string_view b) {
  std::string out(a);
  out += b;
  return out;
}

// 1-based number of the first line of `text` that contains `needle`; 0 if none does.
int lineContaining(std::string_view text, std::string_view needle) {
  const size_t at = text.find(needle);
  if (at == std::string_view::npos) return 0;
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + at, '\n'));
}

// 1-based number of the last line of `text` that contains `needle`; 0 if none does.
int lastLineContaining(std::string_view text, std::string_view needle) {
  const size_t at = text.rfind(needle);
  if (at == std::string_view::npos) return 0;
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + at, '\n'));
}

std::string describe(const LoadResult& r) {
  std::string out;
  for (const ConfigError& e : r.errors) out += "  " + e.toString() + "\n";
  for (const std::string& w : r.warnings) out += "  warning: " + w + "\n";
  return out.empty() ? "  (no errors)\n" : out;
}

const ConfigError* findError(const LoadResult& r, std::string_view key) {
  for (const ConfigError& e : r.errors) {
    if (e.key == key) return &e;
  }
  return nullptr;
}

// Asserts that loading failed with an error on `key` at `line` whose message mentions
// `message_part`.
void expectError(const LoadResult& r, std::string_view key, int line,
                 std::string_view message_part = "") {
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.config, nullptr);
  const ConfigError* e = findError(r, key);
  ASSERT_NE(e, nullptr) << "no error for key " << key << "; got:\n" << describe(r);
  EXPECT_EQ(e->file, "test.toml");
  EXPECT_EQ(e->line, line) << e->toString();
  EXPECT_NE(e->message.find(message_part), std::string::npos) << e->toString();
}

// Loads kBase plus `extra` and expects exactly one error, on `key`, on the line containing
// `needle`.
// `needle` is searched from the end, so it may also occur in kBase.
void expectOnlyError(std::string_view extra, std::string_view key, std::string_view needle,
                     std::string_view message_part = "") {
  const std::string text = concat(kBase, extra);
  const LoadResult r = load(text);
  SCOPED_TRACE(text);
  EXPECT_EQ(r.errors.size(), 1u) << describe(r);
  expectError(r, key, lastLineContaining(text, needle), message_part);
}

// ---- the contract, the default and the example load ----------------------------------------

TEST(ConfigLoader, ContractFileLoadsExactlyAsWritten) {
  const LoadResult r = load(kContract);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_TRUE(r.errors.empty());
  EXPECT_TRUE(r.warnings.empty()) << describe(r);
  const Config& c = *r.config;
  EXPECT_EQ(c.source, "test.toml");

  EXPECT_EQ(c.server.workers, 2);
  const ServerConfig server_defaults;
  EXPECT_EQ(c.server.max_header_bytes, server_defaults.max_header_bytes);
  EXPECT_EQ(c.server.max_uri_bytes, server_defaults.max_uri_bytes);
  EXPECT_EQ(c.server.header_timeout, server_defaults.header_timeout);

  EXPECT_EQ(c.admin.address, "127.0.0.1:9901");
  EXPECT_EQ(c.admin.bearer_token, "");

  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_EQ(c.listeners[0].address, "127.0.0.1:8080");
  EXPECT_EQ(c.listeners[0].host, "127.0.0.1");
  EXPECT_EQ(c.listeners[0].port, 8080);
  EXPECT_EQ(c.listeners[0].backlog, 1024);
  EXPECT_TRUE(c.listeners[0].certificates.empty());

  EXPECT_EQ(c.cache.ram.size_bytes, 256ull << 20);
  EXPECT_EQ(c.cache.ram.max_object_bytes, 64ull << 20);

  ASSERT_EQ(c.origin_groups.size(), 1u);
  const OriginGroupConfig& g = c.origin_groups[0];
  EXPECT_EQ(g.name, "main");
  EXPECT_EQ(g.retries, 2);
  ASSERT_EQ(g.origins.size(), 1u);
  const OriginConfig& o = g.origins[0];
  EXPECT_EQ(o.url, "http://127.0.0.1:8081");
  EXPECT_EQ(o.scheme, "http");
  EXPECT_EQ(o.host, "127.0.0.1");
  EXPECT_EQ(o.port, 8081);
  EXPECT_EQ(o.base_path, "");
  EXPECT_EQ(o.name, "127.0.0.1:8081");
  EXPECT_EQ(o.dc, "dc-a");
  EXPECT_EQ(o.priority, 1);
  EXPECT_EQ(o.weight, 1);

  ASSERT_EQ(c.vhosts.size(), 1u);
  EXPECT_EQ(c.vhosts[0].name, "*");
  EXPECT_EQ(c.vhosts[0].hostnames, std::vector<std::string>{"*"});
  ASSERT_EQ(c.vhosts[0].routes.size(), 1u);
  const RouteConfig& route = c.vhosts[0].routes[0];
  EXPECT_EQ(route.prefix, "/");
  EXPECT_EQ(route.origin_group, "main");
  EXPECT_EQ(route.origin_group_index, 0u);
  EXPECT_EQ(route.storage, StoragePolicy::kRamAndSsd);
  EXPECT_EQ(route.cache.mode, CacheMode::kCache);
  EXPECT_EQ(route.key.drop_params, KeyPolicy{}.drop_params);

  EXPECT_EQ(c.log.access_log, "stderr");
  EXPECT_EQ(c.log.client_address, AddressAnonymization::kTruncate);
  EXPECT_EQ(c.log.level, "info");
}

TEST(ConfigLoader, DefaultConfigLoadsWithoutErrorsOrWarnings) {
  const LoadResult r = loadConfigText(defaultConfigText(), "<embedded default>");
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_TRUE(r.warnings.empty()) << describe(r);
  const Config& c = *r.config;
  EXPECT_EQ(c.source, "<embedded default>");
  EXPECT_EQ(c.server.workers, 0);
  EXPECT_EQ(c.admin.address, "127.0.0.1:9901");
  ASSERT_EQ(c.listeners.size(), 2u);
  EXPECT_EQ(c.listeners[0].host, "127.0.0.1");
  EXPECT_EQ(c.listeners[0].port, 8080);
  EXPECT_TRUE(c.listeners[0].certificates.empty());
  EXPECT_EQ(c.listeners[1].port, 8443);
  ASSERT_EQ(c.listeners[1].certificates.size(), 1u);
  EXPECT_EQ(c.listeners[1].certificates[0].cert, "certs/streamedge-selfsigned.pem");
  EXPECT_EQ(c.cache.ram.size_bytes, 256ull << 20);
  ASSERT_EQ(c.origin_groups.size(), 1u);
  EXPECT_EQ(c.origin_groups[0].name, "demo");
  ASSERT_EQ(c.origin_groups[0].origins.size(), 1u);
  EXPECT_EQ(c.origin_groups[0].origins[0].host, "127.0.0.1");
  EXPECT_EQ(c.origin_groups[0].origins[0].port, 8081);
  EXPECT_EQ(c.origin_groups[0].origins[0].dc, "demo-dc");
  ASSERT_EQ(c.vhosts.size(), 1u);
  EXPECT_EQ(c.vhosts[0].hostnames, std::vector<std::string>{"*"});
  ASSERT_EQ(c.vhosts[0].routes.size(), 1u);
  EXPECT_EQ(c.vhosts[0].routes[0].prefix, "/");
  EXPECT_EQ(c.vhosts[0].routes[0].origin_group, "demo");
}

TEST(ConfigLoader, ExampleConfigLoadsWithDocumentedValues) {
  const std::string path = std::string(STREAMEDGE_SOURCE_DIR) + "/conf/streamedge.example.toml";
  const LoadResult r = loadConfigFile(path);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_TRUE(r.warnings.empty()) << describe(r);
  const Config& c = *r.config;
  EXPECT_EQ(c.source, path);
  EXPECT_EQ(c.server.drain_timeout, Millis(15'000));
  EXPECT_EQ(c.server.http2_max_concurrent_streams, 100u);
  EXPECT_EQ(c.server.http2_stream_window_bytes, 1ull << 20);
  EXPECT_EQ(c.server.http2_connection_window_bytes, 16ull << 20);
  EXPECT_EQ(c.server.http2_abuse_interval, Millis(10'000));
  EXPECT_EQ(c.server.http2_max_resets, 200u);
  EXPECT_EQ(c.server.http2_max_continuations, 8u);
  EXPECT_EQ(c.server.http2_max_header_block_bytes, 64u * 1024);
  EXPECT_EQ(c.server.http2_zero_window_timeout, Millis(30'000));
  EXPECT_EQ(c.admin.bearer_token, "");
  ASSERT_EQ(c.admin.tokens.size(), 2u);
  EXPECT_EQ(c.admin.tokens[0].name, "prometheus");
  EXPECT_EQ(c.admin.tokens[0].scopes, kAdminScopeMetrics | kAdminScopeStatus);
  EXPECT_EQ(c.admin.tokens[1].scopes, uint32_t{kAdminScopePurge});
  EXPECT_EQ(c.log.audit_log, "/var/log/streamedge/audit.log");
  EXPECT_EQ(c.log.client_address, AddressAnonymization::kTruncate);
  EXPECT_EQ(c.privacy.log_retention, std::chrono::hours(24 * 14));
  EXPECT_EQ(c.vhosts[0].retention, std::chrono::hours(24 * 30));

  ASSERT_EQ(c.listeners.size(), 2u);
  EXPECT_EQ(c.listeners[0].port, 443);
  EXPECT_EQ(c.listeners[0].backlog, 4096);
  ASSERT_EQ(c.listeners[0].certificates.size(), 2u);
  EXPECT_EQ(c.listeners[0].certificates[1].key, "/etc/streamedge/tls/cdn.example.net.key.pem");
  EXPECT_EQ(c.listeners[0].tls_min_version, "1.2");
  EXPECT_EQ(c.listeners[0].tls_ciphers, kDefaultTlsCiphers);
  EXPECT_EQ(c.listeners[0].tls_ciphersuites, kDefaultTlsCiphersuites);
  EXPECT_EQ(c.listeners[0].tls_ticket_rotation, Seconds(3600));
  EXPECT_EQ(c.listeners[1].host, "::");
  EXPECT_EQ(c.listeners[1].port, 80);
  EXPECT_TRUE(c.listeners[1].redirect_https);
  EXPECT_EQ(c.listeners[1].https_port, 443);
  EXPECT_EQ(c.cache.ram.size_bytes, 8ull << 30);

  // Two data centers in one group, primary first.
  ASSERT_EQ(c.origin_groups.size(), 2u);
  const OriginGroupConfig& vod = c.origin_groups[0];
  EXPECT_EQ(vod.name, "vod");
  ASSERT_EQ(vod.origins.size(), 2u);
  EXPECT_EQ(vod.origins[0].dc, "dc-fra");
  EXPECT_EQ(vod.origins[0].scheme, "https");
  EXPECT_EQ(vod.origins[0].host, "origin-fra.example.com");
  EXPECT_EQ(vod.origins[0].port, 443);
  EXPECT_EQ(vod.origins[0].base_path, "/vod");
  EXPECT_TRUE(vod.origins[0].tls_verify);
  EXPECT_EQ(vod.origins[1].dc, "dc-ams");
  EXPECT_EQ(vod.origins[1].priority, 2);

  ASSERT_EQ(c.vhosts.size(), 1u);
  const VhostConfig& v = c.vhosts[0];
  EXPECT_EQ(v.name, "video");
  EXPECT_EQ(v.hsts, "max-age=31536000");
  ASSERT_EQ(v.routes.size(), 4u);
  // Longest prefix first.
  EXPECT_EQ(v.routes[0].prefix, "/captions/");
  EXPECT_EQ(v.routes.back().prefix, "/");
  const RouteConfig& captions = v.routes[0];
  EXPECT_EQ(captions.storage, StoragePolicy::kRam);
  EXPECT_EQ(captions.origin_group_index, 1u);
  EXPECT_EQ(captions.cache.segment_ttl, Seconds(3600));
  EXPECT_TRUE(captions.key.ignore_query);
  const RouteConfig& root = v.routes.back();
  EXPECT_EQ(root.storage, StoragePolicy::kRamAndSsd);
  EXPECT_EQ(root.cache.playlist_ttl, Seconds(2));
  EXPECT_EQ(root.cache.segment_ttl, Seconds(86400));
  EXPECT_NE(std::find(root.key.drop_params.begin(), root.key.drop_params.end(), "viewer_id"),
            root.key.drop_params.end());
  const auto live = std::find_if(v.routes.begin(), v.routes.end(),
                                 [](const RouteConfig& rc) { return rc.prefix == "/live/"; });
  ASSERT_NE(live, v.routes.end());
  EXPECT_EQ(live->cache.playlist_ttl, Seconds(1));
  EXPECT_EQ(live->cache.segment_ttl, Seconds(600));
  const auto api = std::find_if(v.routes.begin(), v.routes.end(),
                                [](const RouteConfig& rc) { return rc.prefix == "/api/"; });
  ASSERT_NE(api, v.routes.end());
  EXPECT_EQ(api->cache.mode, CacheMode::kPass);
  EXPECT_EQ(api->fields.forward_client_address, ClientAddressForwarding::kForwarded);
  EXPECT_EQ(api->fields.forwarded_address, AddressAnonymization::kTruncate);
  EXPECT_EQ(root.fields.strip_headers, std::vector<std::string>{"X-Debug-Session"});
  EXPECT_TRUE(root.fields.forward_headers.empty());
  EXPECT_FALSE(root.fields.forward_cookie);
  EXPECT_EQ(root.fields.forward_client_address, ClientAddressForwarding::kNone);
  EXPECT_EQ(c.log.access_log, "/var/log/streamedge/access.log");
  EXPECT_EQ(c.log.security_log, "/var/log/streamedge/security.log");
}

TEST(ConfigLoader, EverySettableValueIsParsed) {
  const std::string text = concat(kBase, R"(
[server]
max_header_bytes = "32KiB"
max_uri_bytes = 4096
max_connections = 5000
header_timeout = "2500ms"
idle_timeout = 90
send_timeout = "1m"
drain_timeout = "0s"

[admin]
address = "[::1]:9901"
bearer_token = "secret"

[cache.ram]
size = "1.5GiB"
max_object_size = "10MB"

[[origin_group]]
name = "other"
retries = 0
  [[origin_group.origin]]
  url = "HTTPS://Origin.Example.COM:8443/base/path/"
  name = "o1"
  dc = "x"
  priority = 0
  weight = 7
  connect_timeout = "1s"
  first_byte_timeout = "3s"
  read_timeout = "4s"
  idle_timeout = "0s"
  max_idle_per_worker = 0

[[vhost]]
name = "site"
hostnames = ["Example.COM", "*.example.org"]
  [[vhost.route]]
  prefix = "/x/"
  origin_group = "other"
  storage = "ram"
  cache = "pass"
  playlist_ttl = "3s"
  ended_playlist_ttl = "6h"
  segment_ttl = "2h"
  default_ttl = 30
  stale_while_revalidate = "5s"
  stale_if_error = "0s"
  playlist_stale_if_error = "4s"
  cache_authorized = true
  cache_set_cookie = true
  forward_other_methods = true
  keep_params = ["bitrate", "sid"]
  drop_params = ["tracking"]

[log]
access_log = "off"
client_address = "none"
level = "debug"
)");
  const LoadResult r = load(text);
  ASSERT_TRUE(r.ok()) << describe(r);
  const Config& c = *r.config;
  EXPECT_EQ(c.server.max_header_bytes, 32u * 1024);
  EXPECT_EQ(c.server.max_uri_bytes, 4096u);
  EXPECT_EQ(c.server.max_connections, 5000);
  EXPECT_EQ(c.server.header_timeout, Millis(2500));
  EXPECT_EQ(c.server.idle_timeout, Millis(90'000));
  EXPECT_EQ(c.server.send_timeout, Millis(60'000));
  EXPECT_EQ(c.server.drain_timeout, Millis(0));
  EXPECT_EQ(c.admin.address, "[::1]:9901");
  EXPECT_EQ(c.admin.bearer_token, "secret");
  EXPECT_EQ(c.cache.ram.size_bytes, 1536ull << 20);
  EXPECT_EQ(c.cache.ram.max_object_bytes, 10'000'000u);

  ASSERT_EQ(c.origin_groups.size(), 2u);
  const OriginGroupConfig& g = c.origin_groups[1];
  EXPECT_EQ(g.retries, 0);
  ASSERT_EQ(g.origins.size(), 1u);
  const OriginConfig& o = g.origins[0];
  EXPECT_EQ(o.scheme, "https");
  EXPECT_EQ(o.host, "origin.example.com");
  EXPECT_EQ(o.port, 8443);
  EXPECT_EQ(o.base_path, "/base/path");
  EXPECT_EQ(o.name, "o1");
  EXPECT_EQ(o.dc, "x");
  EXPECT_EQ(o.priority, 0);
  EXPECT_EQ(o.weight, 7);
  EXPECT_EQ(o.connect_timeout, Millis(1000));
  EXPECT_EQ(o.first_byte_timeout, Millis(3000));
  EXPECT_EQ(o.read_timeout, Millis(4000));
  EXPECT_EQ(o.idle_timeout, Millis(0));
  EXPECT_EQ(o.max_idle_per_worker, 0);

  ASSERT_EQ(c.vhosts.size(), 2u);
  const VhostConfig& v = c.vhosts[1];
  EXPECT_EQ(v.name, "site");
  EXPECT_EQ(v.hostnames, (std::vector<std::string>{"example.com", "*.example.org"}));
  ASSERT_EQ(v.routes.size(), 1u);
  const RouteConfig& rt = v.routes[0];
  EXPECT_EQ(rt.origin_group_index, 1u);
  EXPECT_EQ(rt.storage, StoragePolicy::kRam);
  EXPECT_EQ(rt.cache.mode, CacheMode::kPass);
  EXPECT_EQ(rt.cache.playlist_ttl, Seconds(3));
  EXPECT_EQ(rt.cache.ended_playlist_ttl, Seconds(6 * 3600));
  EXPECT_EQ(rt.cache.segment_ttl, Seconds(7200));
  EXPECT_EQ(rt.cache.default_ttl, Seconds(30));
  EXPECT_EQ(rt.cache.stale_while_revalidate, Seconds(5));
  EXPECT_EQ(rt.cache.stale_if_error, Seconds(0));
  EXPECT_EQ(rt.cache.playlist_stale_if_error, Seconds(4));
  EXPECT_TRUE(rt.cache.cache_authorized);
  EXPECT_TRUE(rt.cache.cache_set_cookie);
  EXPECT_TRUE(rt.cache.forward_other_methods);
  EXPECT_FALSE(rt.key.ignore_query);
  EXPECT_EQ(rt.key.keep_params, (std::vector<std::string>{"bitrate", "sid"}));
  EXPECT_EQ(c.log.access_log, "off");
  EXPECT_EQ(c.log.client_address, AddressAnonymization::kNone);
  EXPECT_EQ(c.log.level, "debug");
}

// ---- ConfigError ----------------------------------------------------------------------------

TEST(ConfigError, ToStringIsFileLineKeyMessage) {
  const ConfigError e{"edge.toml", 12, "origin_group[0].origin[1].url", "missing host"};
  EXPECT_EQ(e.toString(), "edge.toml:12: origin_group[0].origin[1].url: missing host");
}

TEST(ConfigError, ToStringLeavesOutAnUnknownLineAndAnEmptyKey) {
  EXPECT_EQ((ConfigError{"edge.toml", 0, "listener", "none"}).toString(),
            "edge.toml: listener: none");
  EXPECT_EQ((ConfigError{"edge.toml", 3, "", "syntax"}).toString(), "edge.toml:3: syntax");
}

// ---- unknown keys and wrong types -----------------------------------------------------------

TEST(ConfigLoader, UnknownKeyIsReportedWithLineAndPath) {
  expectOnlyError("\n[server]\nwrokers = 4\n", "server.wrokers", "wrokers", "unknown key");
}

TEST(ConfigLoader, UnknownKeySuggestsTheClosestKnownKey) {
  const std::string text = concat(kBase, "\n[server]\nwrokers = 4\n");
  const LoadResult r = load(text);
  const ConfigError* e = findError(r, "server.wrokers");
  ASSERT_NE(e, nullptr) << describe(r);
  EXPECT_NE(e->message.find("did you mean 'workers'?"), std::string::npos) << e->toString();
}

TEST(ConfigLoader, UnknownKeysAtEveryLevelAreAllReported) {
  const std::string text = R"(colour = "blue"
[[listener]]
address = "127.0.0.1:8080"
tls = true
  [[listener.certificate]]
  cert = "c.pem"
  key = "k.pem"
  password = "x"

[cache.ram]
size = "1GiB"
[cache.disk]
path = "/x"

[[origin_group]]
name = "main"
  [[origin_group.origin]]
  url = "http://127.0.0.1:8081"
  timeout = "1s"

[[vhost]]
hostnames = ["*"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"
  ttl = "1s"

[log]
format = "json"
)";
  const LoadResult r = load(text);
  EXPECT_EQ(r.errors.size(), 7u) << describe(r);
  expectError(r, "colour", 1, "unknown key");
  expectError(r, "listener[0].tls", lineContaining(text, "tls ="), "unknown key");
  expectError(r, "listener[0].certificate[0].password", lineContaining(text, "password"),
              "unknown key");
  expectError(r, "cache.disk", lineContaining(text, "[cache.disk]"), "unknown key");
  expectError(r, "origin_group[0].origin[0].timeout", lineContaining(text, "timeout"),
              "unknown key");
  expectError(r, "vhost[0].route[0].ttl", lineContaining(text, "ttl ="), "unknown key");
  expectError(r, "log.format", lineContaining(text, "format"), "unknown key");
}

TEST(ConfigLoader, QuotedUnknownKeyIsQuotedInThePath) {
  expectOnlyError("\n[log]\n\"a.b\" = 1\n", "log.\"a.b\"", "\"a.b\"", "unknown key");
}

TEST(ConfigLoader, WrongTypeIsReportedWithLineAndPath) {
  expectOnlyError("\n[server]\nworkers = \"2\"\n", "server.workers", "workers",
                  "expected an integer, got a string");
  expectOnlyError("\n[log]\nlevel = 3\n", "log.level", "level", "expected a string");
  expectOnlyError("\n[cache.ram]\nsize = 1.5\n", "cache.ram.size", "size", "got a float");
  expectOnlyError("\n[server]\nidle_timeout = true\n", "server.idle_timeout", "idle_timeout",
                  "got a boolean");
}

TEST(ConfigLoader, WrongTypeInsideArraysIsReportedPerElement) {
  const std::string text = R"([[listener]]
address = "127.0.0.1:8080"
[[origin_group]]
name = "main"
  [[origin_group.origin]]
  url = "http://127.0.0.1:8081"
[[vhost]]
hostnames = ["a.example", 7]
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"
  cache_authorized = "yes"
)";
  const LoadResult r = load(text);
  EXPECT_EQ(r.errors.size(), 2u) << describe(r);
  expectError(r, "vhost[0].hostnames[1]", 8, "expected a string, got an integer");
  expectError(r, "vhost[0].route[0].cache_authorized", 12, "expected true or false");
}

TEST(ConfigLoader, TableInsteadOfArrayOfTablesIsReported) {
  const std::string text = R"([listener]
address = "127.0.0.1:8080"
)";
  const LoadResult r = load(text);
  expectError(r, "listener", 1, "write [[listener]]");
}

TEST(ConfigLoader, ArrayOfTablesInsteadOfTableIsReported) {
  expectOnlyError("\n[[server]]\nworkers = 1\n", "server", "[[server]]", "write [server]");
}

TEST(ConfigLoader, ScalarInsteadOfSectionIsReported) {
  const std::string text = concat("cache = \"256MiB\"\n", kBase);
  const LoadResult r = load(text);
  EXPECT_EQ(r.errors.size(), 1u) << describe(r);
  expectError(r, "cache", 1, "expected a table, got a string");
}

// ---- units ----------------------------------------------------------------------------------

TEST(ConfigLoader, BadByteSizeUnitIsReported) {
  expectOnlyError("\n[cache.ram]\nsize = \"12XB\"\n", "cache.ram.size", "12XB",
                  "invalid byte size \"12XB\"");
}

TEST(ConfigLoader, NegativeByteSizeIsReported) {
  expectOnlyError("\n[cache.ram]\nsize = -5\n", "cache.ram.size", "-5", "must not be negative");
  expectOnlyError("\n[cache.ram]\nsize = \"-5MiB\"\n", "cache.ram.size", "-5MiB",
                  "invalid byte size");
}

TEST(ConfigLoader, ByteSizeBelowMinimumIsReported) {
  expectOnlyError("\n[cache.ram]\nsize = 0\n", "cache.ram.size", "size", "at least 1B");
  expectOnlyError("\n[server]\nmax_header_bytes = \"512B\"\n", "server.max_header_bytes",
                  "max_header_bytes", "at least 1KiB");
}

TEST(ConfigLoader, BadDurationIsReported) {
  expectOnlyError("\n[server]\nheader_timeout = \"10 s\"\n", "server.header_timeout",
                  "header_timeout", "invalid duration \"10 s\"");
  expectOnlyError("\n[server]\nheader_timeout = \"10M\"\n", "server.header_timeout",
                  "header_timeout", "invalid duration");
  expectOnlyError("\n[server]\nheader_timeout = -3\n", "server.header_timeout", "header_timeout",
                  "non-negative");
}

TEST(ConfigLoader, ZeroTimeoutIsRejectedWhereItWouldNeverFire) {
  expectOnlyError("\n[server]\nheader_timeout = \"0s\"\n", "server.header_timeout",
                  "header_timeout", "greater than zero");
}

TEST(ConfigLoader, TtlMustBeWholeSeconds) {
  const std::string text = R"([[listener]]
address = "127.0.0.1:8080"
[[origin_group]]
name = "main"
  [[origin_group.origin]]
  url = "http://127.0.0.1:8081"
[[vhost]]
hostnames = ["*"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"
  playlist_ttl = "1500ms"
)";
  const LoadResult r = load(text);
  EXPECT_EQ(r.errors.size(), 1u) << describe(r);
  expectError(r, "vhost[0].route[0].playlist_ttl", 12, "whole number of seconds");
}

TEST(ConfigLoader, EndedPlaylistTtlDefaultsToADayAndReportsBadValuesWithTheirLine) {
  const std::string base = R"([[listener]]
address = "127.0.0.1:8080"
[[origin_group]]
name = "main"
  [[origin_group.origin]]
  url = "http://127.0.0.1:8081"
[[vhost]]
hostnames = ["*"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"
)";
  const LoadResult ok = load(base);
  ASSERT_TRUE(ok.ok()) << describe(ok);
  EXPECT_EQ(ok.config->vhosts[0].routes[0].cache.ended_playlist_ttl, Seconds(86400));
  const LoadResult r = load(base + "  ended_playlist_ttl = \"soon\"\n");
  EXPECT_EQ(r.errors.size(), 1u) << describe(r);
  expectError(r, "vhost[0].route[0].ended_playlist_ttl", 12, "");
}

// ---- server ---------------------------------------------------------------------------------

TEST(ConfigLoader, WorkersOutOfRangeIsReported) {
  expectOnlyError("\n[server]\nworkers = -1\n", "server.workers", "workers",
                  "between 0 and 256, got -1");
  expectOnlyError("\n[server]\nworkers = 257\n", "server.workers", "workers", "got 257");
  EXPECT_TRUE(load(concat(kBase, "\n[server]\nworkers = 256\n")).ok());
  EXPECT_TRUE(load(concat(kBase, "\n[server]\nworkers = 0\n")).ok());
}

TEST(ConfigLoader, UriLimitAboveHeaderLimitIsReported) {
  expectOnlyError("\n[server]\nmax_header_bytes = \"4KiB\"\nmax_uri_bytes = \"8KiB\"\n",
                  "server.max_uri_bytes", "max_uri_bytes", "must not exceed");
}

TEST(ConfigLoader, LoweredHeaderLimitLowersTheDefaultUriLimit) {
  const LoadResult r = load(concat(kBase, "\n[server]\nmax_header_bytes = \"4KiB\"\n"));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->server.max_uri_bytes, 4096u);
}

TEST(ConfigLoader, MaxObjectSizeAboveCacheSizeIsReported) {
  expectOnlyError("\n[cache.ram]\nsize = \"1MiB\"\nmax_object_size = \"2MiB\"\n",
                  "cache.ram.max_object_size", "max_object_size", "must not exceed");
}

TEST(ConfigLoader, FillWindowKeysAreReadAndChecked) {
  const LoadResult r = load(concat(kBase, "\n[cache.ram]\nfill_window = \"8MiB\"\n"
                                          "fill_memory = \"1GiB\"\nfill_stall_timeout = \"30s\"\n"));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->cache.ram.fill_window_bytes, 8ull << 20);
  EXPECT_EQ(r.config->cache.ram.fill_memory_bytes, 1ull << 30);
  EXPECT_EQ(r.config->cache.ram.fill_stall_timeout, Millis(30'000));
  const LoadResult defaults = load(kBase);
  ASSERT_TRUE(defaults.ok()) << describe(defaults);
  EXPECT_EQ(defaults.config->cache.ram.fill_window_bytes, 4ull << 20);
  EXPECT_EQ(defaults.config->cache.ram.fill_memory_bytes, 256ull << 20);
  EXPECT_EQ(defaults.config->cache.ram.fill_stall_timeout, Millis(10'000));
  expectOnlyError("\n[cache.ram]\nfill_window = \"64KiB\"\n", "cache.ram.fill_window",
                  "fill_window", "must be at least");
  expectOnlyError("\n[cache.ram]\nfill_stall_timeout = \"soon\"\n",
                  "cache.ram.fill_stall_timeout", "fill_stall_timeout", "");
}

TEST(ConfigLoader, RamSendfileIsOnByDefaultAndMustBeABoolean) {
  EXPECT_TRUE(load(kBase).config->cache.ram.sendfile);
  const LoadResult r = load(concat(kBase, "\n[cache.ram]\nsendfile = false\n"));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_FALSE(r.config->cache.ram.sendfile);
  expectOnlyError("\n[cache.ram]\nsendfile = \"on\"\n", "cache.ram.sendfile", "sendfile", "");
}

TEST(ConfigLoader, MaxVariantsIsReadAndBounded) {
  const LoadResult r = load(concat(kBase, "\n[cache.ram]\nmax_variants = 4\n"));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->cache.ram.max_variants, 4u);
  EXPECT_EQ(load(kBase).config->cache.ram.max_variants, 16u);
  expectOnlyError("\n[cache.ram]\nmax_variants = 0\n", "cache.ram.max_variants", "max_variants",
                  "must be between 1 and 1024");
  expectOnlyError("\n[cache.ram]\nmax_variants = \"8\"\n", "cache.ram.max_variants",
                  "max_variants", "integer");
}

TEST(ConfigLoader, MaxVaryUrlsIsReadAndBounded) {
  const LoadResult r = load(concat(kBase, "\n[cache.ram]\nmax_vary_urls = 100000\n"));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->cache.ram.max_vary_urls, 100000u);
  EXPECT_EQ(load(kBase).config->cache.ram.max_vary_urls, 262144u);
  expectOnlyError("\n[cache.ram]\nmax_vary_urls = 10\n", "cache.ram.max_vary_urls",
                  "max_vary_urls", "must be between 64 and 67108864");
  expectOnlyError("\n[cache.ram]\nmax_vary_urls = \"many\"\n", "cache.ram.max_vary_urls",
                  "max_vary_urls", "integer");
}

TEST(ConfigLoader, SmallCacheLowersTheDefaultMaxObjectSize) {
  const LoadResult r = load(concat(kBase, "\n[cache.ram]\nsize = \"16MiB\"\n"));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->cache.ram.max_object_bytes, 16ull << 20);
}

// ---- addresses ------------------------------------------------------------------------------

TEST(ConfigLoader, ListenerAddressesAreParsed) {
  struct Case {
    const char* address;
    const char* host;
    uint16_t port;
  };
  for (const Case& c : {Case{"127.0.0.1:8080", "127.0.0.1", 8080},
                        Case{"0.0.0.0:80", "0.0.0.0", 80},
                        Case{"[::1]:8080", "::1", 8080},
                        Case{"[::]:443", "::", 443},
                        Case{"[2001:db8::1]:65535", "2001:db8::1", 65535},
                        Case{"127.0.0.1:0", "127.0.0.1", 0}}) {
    std::string text = "[[listener]]\naddress = \"";
    text += c.address;
    text += "\"\n";
    text += kBase.substr(kBase.find("[[origin_group]]"));
    const LoadResult r = load(text);
    ASSERT_TRUE(r.ok()) << c.address << "\n" << describe(r);
    EXPECT_EQ(r.config->listeners[0].host, c.host);
    EXPECT_EQ(r.config->listeners[0].port, c.port);
  }
}

TEST(ConfigLoader, BadListenerAddressesAreReported) {
  for (const char* address :
       {"127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:80a", ":8080",
        "::1:8080", "[::1]", "[::1]8080", "[::1:8080", "[zz::1]:80", "localhost:8080",
        "256.0.0.1:80", "1.2.3:80", "", "127.0.0.1:123456"}) {
    std::string text = "[[listener]]\naddress = \"";
    text += address;
    text += "\"\n";
    text += kBase.substr(kBase.find("[[origin_group]]"));
    const LoadResult r = load(text);
    SCOPED_TRACE(address);
    EXPECT_EQ(r.errors.size(), 1u) << describe(r);
    expectError(r, "listener[0].address", 2);
  }
}

TEST(ConfigLoader, BadAdminAddressIsReported) {
  expectOnlyError("\n[admin]\naddress = \"127.0.0.1:99999\"\n", "admin.address", "99999",
                  "invalid port");
}

TEST(ConfigLoader, EmptyAdminAddressDisablesAdmin) {
  const LoadResult r = load(concat(kBase, "\n[admin]\naddress = \"\"\n"));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->admin.address, "");
}

TEST(ConfigLoader, PublicAdminWithoutTokenIsAWarningNotAnError) {
  const std::string text = concat(kBase, "\n[admin]\naddress = \"0.0.0.0:9901\"\n");
  const LoadResult r = load(text);
  ASSERT_TRUE(r.ok()) << describe(r);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0].find("test.toml:" + std::to_string(lineContaining(text, "0.0.0.0")) +
                               ": admin.address: "),
            0u)
      << r.warnings[0];
  const LoadResult with_token = load(concat(
      kBase, "\n[admin]\naddress = \"0.0.0.0:9901\"\n[[admin.token]]\nname = \"ops\"\nsha256 = \"" +
                 std::string(64, 'a') + "\"\nscopes = [\"all\"]\n"));
  ASSERT_TRUE(with_token.ok()) << describe(with_token);
  // With a token but without [admin] certificates, the token crosses the network in clear.
  ASSERT_EQ(with_token.warnings.size(), 1u);
  EXPECT_NE(with_token.warnings[0].find("admin.address: admin listener on a non-loopback address "
                                        "without [[admin.certificate]]"),
            std::string::npos) << with_token.warnings[0];
  // The deprecated clear token still works, with a warning that says so.
  const LoadResult clear =
      load(concat(kBase, "\n[admin]\naddress = \"127.0.0.1:9901\"\nbearer_token = \"t\"\n"));
  ASSERT_TRUE(clear.ok());
  ASSERT_EQ(clear.warnings.size(), 1u);
  EXPECT_NE(clear.warnings[0].find("admin.bearer_token: deprecated"), std::string::npos)
      << clear.warnings[0];
}

TEST(ConfigLoader, TwoListenersOnOneAddressAreReported) {
  expectOnlyError("\n[[listener]]\naddress = \"127.0.0.1:8080\"\n", "listener[1].address",
                  "address = \"127.0.0.1:8080\"", "already used by listener[0].address");
  // Port 0 picks a fresh port each time, so it may repeat.
  const std::string text =
      "[[listener]]\naddress = \"127.0.0.1:0\"\n[[listener]]\naddress = \"127.0.0.1:0\"\n" +
      std::string(kBase.substr(kBase.find("[[origin_group]]")));
  EXPECT_TRUE(load(text).ok()) << describe(load(text));
}

TEST(ConfigLoader, ListenerOnTheAdminAddressIsReported) {
  const std::string text = concat(kBase, "\n[admin]\naddress = \"127.0.0.1:8080\"\n");
  const LoadResult r = load(text);
  EXPECT_EQ(r.errors.size(), 1u) << describe(r);
  expectError(r, "listener[0].address", lineContaining(text, "address = \"127.0.0.1:8080\""),
              "already used by admin.address");
}

TEST(ConfigLoader, CertificatesAreStoredWithoutOpeningTheFiles) {
  const std::string text = R"([[listener]]
address = "0.0.0.0:443"
  [[listener.certificate]]
  cert = "/nonexistent/a.pem"
  key = "/nonexistent/a.key"
  [[listener.certificate]]
  cert = "/nonexistent/b.pem"
)" + std::string(kBase.substr(kBase.find("[[origin_group]]")));
  const LoadResult r = load(text);
  EXPECT_EQ(r.errors.size(), 1u) << describe(r);
  expectError(r, "listener[0].certificate[1].key", 6, "missing required key");

  const LoadResult ok = load(text.substr(0, text.find("  [[listener.certificate]]\n  cert = \"/nonexistent/b")) +
                             std::string(kBase.substr(kBase.find("[[origin_group]]"))));
  ASSERT_TRUE(ok.ok()) << describe(ok);
  ASSERT_EQ(ok.config->listeners[0].certificates.size(), 1u);
  EXPECT_EQ(ok.config->listeners[0].certificates[0].cert, "/nonexistent/a.pem");
  EXPECT_EQ(ok.config->listeners[0].certificates[0].key, "/nonexistent/a.key");
}

// ---- origins --------------------------------------------------------------------------------

TEST(ConfigLoader, OriginUrlsAreParsed) {
  struct Case {
    const char* url;
    const char* scheme;
    const char* host;
    uint16_t port;
    const char* base_path;
  };
  for (const Case& c : {
           Case{"http://127.0.0.1:8081", "http", "127.0.0.1", 8081, ""},
           Case{"http://origin.example.com", "http", "origin.example.com", 80, ""},
           Case{"https://origin.example.com", "https", "origin.example.com", 443, ""},
           Case{"https://origin.example.com/", "https", "origin.example.com", 443, ""},
           Case{"https://origin.example.com/vod/", "https", "origin.example.com", 443, "/vod"},
           Case{"http://ORIGIN.Example.com:8080/a/b//", "http", "origin.example.com", 8080, "/a/b"},
           Case{"http://[::1]:8081/x", "http", "::1", 8081, "/x"},
           Case{"https://[2001:db8::5]", "https", "2001:db8::5", 443, ""},
           Case{"http://origin_1.internal:80", "http", "origin_1.internal", 80, ""},
       }) {
    std::string text(kBase);
    text.replace(text.find("http://127.0.0.1:8081"), 21, c.url);
    const LoadResult r = load(text);
    ASSERT_TRUE(r.ok()) << c.url << "\n" << describe(r);
    const OriginConfig& o = r.config->origin_groups[0].origins[0];
    EXPECT_EQ(o.url, c.url);
    EXPECT_EQ(o.scheme, c.scheme) << c.url;
    EXPECT_EQ(o.host, c.host) << c.url;
    EXPECT_EQ(o.port, c.port) << c.url;
    EXPECT_EQ(o.base_path, c.base_path) << c.url;
  }
}

TEST(ConfigLoader, DefaultOriginNameIsHostAndPort) {
  std::string text(kBase);
  text.replace(text.find("http://127.0.0.1:8081"), 21, "https://[::1]/p");
  const LoadResult r = load(text);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->origin_groups[0].origins[0].name, "[::1]:443");
}

TEST(ConfigLoader, BadOriginUrlsAreReported) {
  for (const char* url : {
           "ftp://origin.example.com",          // scheme
           "origin.example.com:8081",           // no scheme
           "http://",                           // no host
           "http:///path",                      // no host
           "http://:8081",                      // no host
           "http://user:pw@origin.example.com", // userinfo
           "http://origin.example.com/a?b=1",   // query
           "http://origin.example.com/a#frag",  // fragment
           "http://origin.example.com?x",       // query right after the host
           "http://origin.example.com:0",       // port 0
           "http://origin.example.com:70000",   // port range
           "http://origin.example.com:",        // empty port
           "http://origin.example.com:8o",      // bad port
           "http://::1:8081",                   // unbracketed IPv6
           "http://[::1",                       // unclosed bracket
           "http://[::g]:80",                   // bad IPv6
           "http://999.0.0.1",                  // bad IPv4
           "http://bad..name",                  // empty label
           "http://bad name",                   // space
           "http://-/x y",                      // space in path
       }) {
    std::string text(kBase);
    text.replace(text.find("http://127.0.0.1:8081"), 21, url);
    const LoadResult r = load(text);
    SCOPED_TRACE(url);
    EXPECT_EQ(r.errors.size(), 1u) << describe(r);
    expectError(r, "origin_group[0].origin[0].url", lineContaining(text, "url ="));
  }
}

TEST(ConfigLoader, OriginsAreSortedByPriorityKeepingFileOrderForTies) {
  const std::string text = R"([[listener]]
address = "127.0.0.1:8080"
[[origin_group]]
name = "main"
  [[origin_group.origin]]
  url = "http://10.0.0.1"
  priority = 3
  [[origin_group.origin]]
  url = "http://10.0.0.2"
  priority = 1
  [[origin_group.origin]]
  url = "http://10.0.0.3"
  priority = 2
  [[origin_group.origin]]
  url = "http://10.0.0.4"
  priority = 1
  [[origin_group.origin]]
  url = "http://10.0.0.5"
  priority = 1
[[vhost]]
hostnames = ["*"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"
)";
  const LoadResult r = load(text);
  ASSERT_TRUE(r.ok()) << describe(r);
  std::vector<std::string> hosts;
  for (const OriginConfig& o : r.config->origin_groups[0].origins) hosts.push_back(o.host);
  EXPECT_EQ(hosts, (std::vector<std::string>{"10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.3",
                                             "10.0.0.1"}));
}

TEST(ConfigLoader, OriginFieldRangesAreChecked) {
  expectOnlyError("\n[[origin_group]]\nname = \"x\"\n  [[origin_group.origin]]\n  url = "
                  "\"http://a\"\n  weight = 0\n",
                  "origin_group[1].origin[0].weight", "weight", "between 1 and 10000");
  expectOnlyError("\n[[origin_group]]\nname = \"x\"\nretries = 17\n  [[origin_group.origin]]\n"
                  "  url = \"http://a\"\n",
                  "origin_group[1].retries", "retries", "between 0 and 16");
  expectOnlyError("\n[[origin_group]]\nname = \"x\"\n  [[origin_group.origin]]\n  url = "
                  "\"http://a\"\n  priority = -1\n",
                  "origin_group[1].origin[0].priority", "priority", "between 0 and");
}

TEST(ConfigLoader, DuplicateOriginNamesInAGroupAreReported) {
  expectOnlyError("\n[[origin_group]]\nname = \"x\"\n  [[origin_group.origin]]\n  url = "
                  "\"http://a\"\n  [[origin_group.origin]]\n  url = \"http://a:80/other\"\n",
                  "origin_group[1].origin[1].url", "http://a:80/other", "duplicate origin name");
}

TEST(ConfigLoader, DuplicateOriginGroupNamesAreReported) {
  expectOnlyError("\n[[origin_group]]\nname = \"main\"\n  [[origin_group.origin]]\n  url = "
                  "\"http://10.0.0.9\"\n",
                  "origin_group[1].name", "name = \"main\"",
                  "duplicate origin group name \"main\"");
}

TEST(ConfigLoader, EmptyOriginGroupIsReported) {
  expectOnlyError("\n[[origin_group]]\nname = \"empty\"\n", "origin_group[1].origin",
                  "[[origin_group]]", "no origins");
}

TEST(ConfigLoader, MissingRequiredKeysAreReportedAtTheirTable) {
  const std::string text = R"([[listener]]
backlog = 10
[[origin_group]]
retries = 1
  [[origin_group.origin]]
  dc = "a"
[[vhost]]
  [[vhost.route]]
  storage = "ram"
)";
  const LoadResult r = load(text);
  EXPECT_EQ(r.errors.size(), 6u) << describe(r);
  expectError(r, "listener[0].address", 1, "missing required key");
  expectError(r, "origin_group[0].name", 3, "missing required key");
  expectError(r, "origin_group[0].origin[0].url", 5, "missing required key");
  expectError(r, "vhost[0].hostnames", 7, "missing required key");
  expectError(r, "vhost[0].route[0].prefix", 8, "missing required key");
  expectError(r, "vhost[0].route[0].origin_group", 8, "missing required key");
}

// ---- vhosts and routes ----------------------------------------------------------------------

TEST(ConfigLoader, RouteToUnknownOriginGroupIsReported) {
  expectOnlyError(
      "\n[[vhost]]\nhostnames = [\"a.example\"]\n  [[vhost.route]]\n  prefix = \"/\"\n"
      "  origin_group = \"mian\"\n",
      "vhost[1].route[0].origin_group", "\"mian\"", "unknown origin group \"mian\"");
}

TEST(ConfigLoader, RoutePrefixNotStartingWithSlashIsReported) {
  expectOnlyError(
      "\n[[vhost]]\nhostnames = [\"a.example\"]\n  [[vhost.route]]\n  prefix = \"video/\"\n"
      "  origin_group = \"main\"\n",
      "vhost[1].route[0].prefix", "video/", "must start with \"/\"");
}

TEST(ConfigLoader, DuplicateRoutePrefixInAVhostIsReported) {
  expectOnlyError("\n  [[vhost.route]]\n  prefix = \"/\"\n  origin_group = \"main\"\n",
                  "vhost[0].route[1].prefix", "prefix = \"/\"",
                  "duplicate route prefix");
}

TEST(ConfigLoader, VhostWithoutRoutesIsReported) {
  expectOnlyError("\n[[vhost]]\nhostnames = [\"a.example\"]\n", "vhost[1].route",
                  "[[vhost]]", "no routes");
}

TEST(ConfigLoader, DuplicateHostnamesAcrossVhostsAreReported) {
  const std::string extra =
      "\n[[vhost]]\nhostnames = [\"a.example\", \"*\"]\n  [[vhost.route]]\n  prefix = \"/\"\n"
      "  origin_group = \"main\"\n";
  expectOnlyError(extra, "vhost[1].hostnames[1]", "[\"a.example\", \"*\"]",
                  "already belongs to vhost[0]");
}

TEST(ConfigLoader, HostnamesAreLowercasedBeforeDuplicateCheck) {
  const std::string text = R"([[listener]]
address = "127.0.0.1:8080"
[[origin_group]]
name = "main"
  [[origin_group.origin]]
  url = "http://127.0.0.1:8081"
[[vhost]]
hostnames = ["Video.Example.COM"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"
[[vhost]]
hostnames = ["video.example.com"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"
)";
  const LoadResult r = load(text);
  EXPECT_EQ(r.errors.size(), 1u) << describe(r);
  expectError(r, "vhost[1].hostnames[0]", 13, "already belongs to vhost[0] (line 8)");

  const LoadResult one = load(text.substr(0, text.rfind("[[vhost]]")));
  ASSERT_TRUE(one.ok()) << describe(one);
  EXPECT_EQ(one.config->vhosts[0].hostnames, std::vector<std::string>{"video.example.com"});
  EXPECT_EQ(one.config->vhosts[0].name, "video.example.com");
}

TEST(ConfigLoader, BadHostnamesAreReported) {
  for (const char* host : {"", "a.*.example", "*example.com", "example.com:8080", "bad host",
                           "a..b", "[::1", "**"}) {
    std::string text(kBase);
    text.replace(text.find("[\"*\"]"), 5, std::string("[\"") + host + "\"]");
    const LoadResult r = load(text);
    SCOPED_TRACE(host);
    EXPECT_EQ(r.errors.size(), 1u) << describe(r);
    expectError(r, "vhost[0].hostnames[0]", lineContaining(text, "hostnames"));
  }
}

TEST(ConfigLoader, EmptyHostnameListIsReported) {
  std::string text(kBase);
  text.replace(text.find("[\"*\"]"), 5, "[]");
  const LoadResult r = load(text);
  EXPECT_EQ(r.errors.size(), 1u) << describe(r);
  expectError(r, "vhost[0].hostnames", lineContaining(text, "hostnames"), "at least one");
}

TEST(ConfigLoader, RoutesAreSortedLongestPrefixFirst) {
  const std::string text = R"([[listener]]
address = "127.0.0.1:8080"
[[origin_group]]
name = "a"
  [[origin_group.origin]]
  url = "http://10.0.0.1"
[[origin_group]]
name = "b"
  [[origin_group.origin]]
  url = "http://10.0.0.2"
[[vhost]]
hostnames = ["*"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "a"
  [[vhost.route]]
  prefix = "/live/sports/"
  origin_group = "b"
  [[vhost.route]]
  prefix = "/live/"
  origin_group = "a"
  [[vhost.route]]
  prefix = "/vod/"
  origin_group = "b"
)";
  const LoadResult r = load(text);
  ASSERT_TRUE(r.ok()) << describe(r);
  std::vector<std::string> prefixes;
  std::vector<size_t> groups;
  for (const RouteConfig& rt : r.config->vhosts[0].routes) {
    prefixes.push_back(rt.prefix);
    groups.push_back(rt.origin_group_index);
  }
  EXPECT_EQ(prefixes, (std::vector<std::string>{"/live/sports/", "/live/", "/vod/", "/"}));
  EXPECT_EQ(groups, (std::vector<size_t>{1, 0, 1, 0}));
}

TEST(ConfigLoader, BadEnumValuesAreReported) {
  const std::string text = R"([[listener]]
address = "127.0.0.1:8080"
[[origin_group]]
name = "main"
  [[origin_group.origin]]
  url = "http://127.0.0.1:8081"
[[vhost]]
hostnames = ["*"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"
  storage = "ssd"
  cache = "off"
[log]
client_address = "hash"
level = "trace"
)";
  const LoadResult r = load(text);
  EXPECT_EQ(r.errors.size(), 4u) << describe(r);
  expectError(r, "vhost[0].route[0].storage", 12, "\"ram\" or \"ram+ssd\"");
  expectError(r, "vhost[0].route[0].cache", 13, "\"on\" or \"pass\"");
  expectError(r, "log.client_address", 15, "\"truncate\", \"full\" or \"none\"");
  expectError(r, "log.level", 16, "\"debug\"");
}

// ---- key policy -----------------------------------------------------------------------------

const RouteConfig& onlyRoute(const LoadResult& r) { return r.config->vhosts[0].routes[0]; }

std::string withRouteKeys(std::string_view keys) { return concat(kBase, keys); }

TEST(ConfigLoader, DropParamsAddToTheBuiltInList) {
  const LoadResult r = load(withRouteKeys("  drop_params = [\"utm_source\", \"token\"]\n"));
  ASSERT_TRUE(r.ok()) << describe(r);
  std::vector<std::string> expected = KeyPolicy{}.drop_params;
  expected.push_back("utm_source");  // "token" is already built in: not repeated
  EXPECT_EQ(onlyRoute(r).key.drop_params, expected);
}

TEST(ConfigLoader, KeepParamsTakeANameOffTheBuiltInDropList) {
  const LoadResult r = load(withRouteKeys("  keep_params = [\"sid\", \"bitrate\"]\n"));
  ASSERT_TRUE(r.ok()) << describe(r);
  const KeyPolicy& key = onlyRoute(r).key;
  EXPECT_EQ(key.keep_params, (std::vector<std::string>{"sid", "bitrate"}));
  EXPECT_EQ(std::find(key.drop_params.begin(), key.drop_params.end(), "sid"),
            key.drop_params.end());
  EXPECT_EQ(key.drop_params.size(), KeyPolicy{}.drop_params.size() - 1);
}

TEST(ConfigLoader, ParamInBothKeepAndDropIsReported) {
  const std::string extra = "  keep_params = [\"a\"]\n  drop_params = [\"b\", \"a\"]\n";
  expectOnlyError(extra, "vhost[0].route[0].drop_params[1]", "drop_params",
                  "in both keep_params and drop_params");
}

TEST(ConfigLoader, KeepParamsWithIgnoreQueryIsReported) {
  const std::string extra = "  ignore_query = true\n  keep_params = [\"a\"]\n";
  expectOnlyError(extra, "vhost[0].route[0].keep_params", "keep_params", "ignore_query");
}

TEST(ConfigLoader, BadParamNamesAreReported) {
  expectOnlyError("  drop_params = [\"ok\", \"a=b\"]\n", "vhost[0].route[0].drop_params[1]",
                  "drop_params", "invalid query parameter name");
}

// ---- request field policy -------------------------------------------------------------------

TEST(ConfigLoader, RequestFieldPolicyDefaultsSendNoAddressAndNoSharedCookie) {
  const LoadResult r = load(kBase);
  ASSERT_TRUE(r.ok()) << describe(r);
  const RequestFieldPolicy& f = onlyRoute(r).fields;
  EXPECT_TRUE(f.forward_headers.empty());
  EXPECT_TRUE(f.strip_headers.empty());
  EXPECT_FALSE(f.forward_cookie);
  EXPECT_FALSE(f.forward_cmcd);
  EXPECT_EQ(f.forward_client_address, ClientAddressForwarding::kNone);
  EXPECT_EQ(f.forwarded_address, AddressAnonymization::kTruncate);
}

TEST(ConfigLoader, RequestFieldPolicyKeysAreParsed) {
  const LoadResult r = load(withRouteKeys(
      "  forward_headers = [\"Accept-Language\", \"Origin\", \"x-app\"]\n"
      "  strip_headers = [\"X-Debug\"]\n"
      "  forward_cookie = true\n"
      "  forward_cmcd = true\n"
      "  forward_client_address = \"forwarded\"\n"
      "  forwarded_address = \"full\"\n"));
  ASSERT_TRUE(r.ok()) << describe(r);
  const RequestFieldPolicy& f = onlyRoute(r).fields;
  EXPECT_EQ(f.forward_headers, (std::vector<std::string>{"Accept-Language", "Origin", "x-app"}));
  EXPECT_EQ(f.strip_headers, std::vector<std::string>{"X-Debug"});
  EXPECT_TRUE(f.forward_cookie);
  EXPECT_TRUE(f.forward_cmcd);
  EXPECT_EQ(f.forward_client_address, ClientAddressForwarding::kForwarded);
  EXPECT_EQ(f.forwarded_address, AddressAnonymization::kFull);
  const LoadResult xff = load(withRouteKeys("  forward_client_address = \"x-forwarded-for\"\n"));
  ASSERT_TRUE(xff.ok()) << describe(xff);
  EXPECT_EQ(onlyRoute(xff).fields.forward_client_address, ClientAddressForwarding::kXForwardedFor);
}

TEST(ConfigLoader, BadRequestFieldValuesAreReportedWithTheirLines) {
  expectOnlyError("  forward_client_address = \"x-real-ip\"\n",
                  "vhost[0].route[0].forward_client_address", "forward_client_address",
                  "\"none\", \"x-forwarded-for\" or \"forwarded\"");
  expectOnlyError("  forwarded_address = \"none\"\n", "vhost[0].route[0].forwarded_address",
                  "forwarded_address", "\"truncate\" or \"full\"");
  expectOnlyError("  forward_cookie = \"yes\"\n", "vhost[0].route[0].forward_cookie",
                  "forward_cookie", "expected true or false");
  expectOnlyError("  forward_cmcd = 1\n", "vhost[0].route[0].forward_cmcd", "forward_cmcd",
                  "expected true or false");
  expectOnlyError("  strip_headers = \"X-Debug\"\n", "vhost[0].route[0].strip_headers",
                  "strip_headers", "an array of strings");
}

TEST(ConfigLoader, FieldNamesThatAreNoTokensAreReported) {
  expectOnlyError("  forward_headers = [\"Accept\", \"Bad Name\"]\n",
                  "vhost[0].route[0].forward_headers[1]", "forward_headers", "invalid field name");
  expectOnlyError("  strip_headers = [\"X:Y\"]\n", "vhost[0].route[0].strip_headers[0]",
                  "strip_headers", "invalid field name");
  expectOnlyError("  strip_headers = [\"\"]\n", "vhost[0].route[0].strip_headers[0]",
                  "strip_headers", "invalid field name");
}

TEST(ConfigLoader, ForwardHeadersCannotNameFieldsThatAreNeverForwarded) {
  const std::string text = concat(kBase,
                                  "  forward_headers = [\n"
                                  "    \"Accept\",\n"
                                  "    \"Connection\",\n"
                                  "    \"proxy-authorization\",\n"
                                  "    \"Host\",\n"
                                  "    \"X-Forwarded-For\",\n"
                                  "    \"Forwarded\",\n"
                                  "  ]\n");
  const LoadResult r = load(text);
  EXPECT_EQ(r.errors.size(), 5u) << describe(r);
  expectError(r, "vhost[0].route[0].forward_headers[1]", lineContaining(text, "\"Connection\""),
              "hop-by-hop");
  expectError(r, "vhost[0].route[0].forward_headers[2]",
              lineContaining(text, "proxy-authorization"), "hop-by-hop");
  expectError(r, "vhost[0].route[0].forward_headers[3]", lineContaining(text, "\"Host\""),
              "written by the proxy");
  expectError(r, "vhost[0].route[0].forward_headers[4]", lineContaining(text, "X-Forwarded-For"),
              "forward_client_address");
  expectError(r, "vhost[0].route[0].forward_headers[5]", lineContaining(text, "\"Forwarded\""),
              "forward_client_address");
}

TEST(ConfigLoader, AFieldInBothListsOrTwiceInOneIsReported) {
  expectOnlyError("  forward_headers = [\"Accept\", \"Origin\"]\n  strip_headers = [\"origin\"]\n",
                  "vhost[0].route[0].strip_headers[0]", "strip_headers",
                  "in both forward_headers and strip_headers");
  expectOnlyError("  strip_headers = [\"X-A\", \"x-a\"]\n", "vhost[0].route[0].strip_headers[1]",
                  "strip_headers", "listed twice");
}

TEST(ConfigLoader, StripHeadersMayNameAnything) {
  // Removing what is never forwarded anyway is harmless; credentials are the usual entries.
  const LoadResult r = load(withRouteKeys(
      "  strip_headers = [\"Cookie\", \"Authorization\", \"Connection\", \"X-Forwarded-For\"]\n"));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(onlyRoute(r).fields.strip_headers.size(), 4u);
}

// ---- compression ----------------------------------------------------------------------------

TEST(ConfigLoader, CompressionDefaultsToBrotliThenGzip) {
  const LoadResult r = load(withRouteKeys(""));
  ASSERT_TRUE(r.ok()) << describe(r);
  const CompressionPolicy& c = onlyRoute(r).compress;
  EXPECT_EQ(c.codings, (std::vector<ContentCoding>{ContentCoding::kBrotli, ContentCoding::kGzip}));
  EXPECT_EQ(c.min_size, 1024u);
  EXPECT_EQ(c.max_size, 4u << 20);
}

TEST(ConfigLoader, CompressionListSizesAndOff) {
  LoadResult r = load(withRouteKeys(
      "  compress = [\"gzip\"]\n  compress_min_size = \"2KiB\"\n  compress_max_size = \"1MiB\"\n"));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(onlyRoute(r).compress.codings, (std::vector<ContentCoding>{ContentCoding::kGzip}));
  EXPECT_EQ(onlyRoute(r).compress.min_size, 2048u);
  EXPECT_EQ(onlyRoute(r).compress.max_size, 1u << 20);
  r = load(withRouteKeys("  compress = []\n"));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_TRUE(onlyRoute(r).compress.codings.empty());
}

TEST(ConfigLoader, UnknownOrRepeatedCodingIsReported) {
  expectOnlyError("  compress = [\"gzip\", \"deflate\"]\n", "vhost[0].route[0].compress[1]",
                  "compress", "unknown content coding \"deflate\"");
  expectOnlyError("  compress = [\"br\", \"br\"]\n", "vhost[0].route[0].compress[1]", "compress",
                  "listed twice");
}

TEST(ConfigLoader, CompressionSizesAreChecked) {
  expectOnlyError("  compress_min_size = \"8MiB\"\n", "vhost[0].route[0].compress_min_size",
                  "compress_min_size", "larger than compress_max_size");
  expectOnlyError("  compress_max_size = \"1GiB\"\n", "vhost[0].route[0].compress_max_size",
                  "compress_max_size", "at most 64MiB");
}

// ---- structure ------------------------------------------------------------------------------

TEST(ConfigLoader, MissingListenerVhostAndOriginGroupAreReported) {
  const LoadResult r = load("[server]\nworkers = 1\n");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.errors.size(), 3u) << describe(r);
  expectError(r, "listener", 0, "at least one listener");
  expectError(r, "vhost", 0, "at least one virtual host");
  expectError(r, "origin_group", 0, "at least one origin group");
  EXPECT_EQ(findError(r, "listener")->toString(),
            "test.toml: listener: no [[listener]]: at least one listener is required");
}

TEST(ConfigLoader, EmptyFileIsReportedAsMissingSections) {
  const LoadResult r = load("");
  EXPECT_EQ(r.errors.size(), 3u) << describe(r);
}

TEST(ConfigLoader, TomlSyntaxErrorIsReportedWithLine) {
  const std::string text = "[server]\nworkers = 2\nidle_timeout = \n";
  const LoadResult r = load(text);
  EXPECT_FALSE(r.ok());
  ASSERT_EQ(r.errors.size(), 1u) << describe(r);
  EXPECT_EQ(r.errors[0].file, "test.toml");
  EXPECT_EQ(r.errors[0].line, 3);
  EXPECT_EQ(r.errors[0].key, "");
  EXPECT_FALSE(r.errors[0].message.empty());
}

TEST(ConfigLoader, DuplicateTomlKeyIsASyntaxError) {
  const LoadResult r = load(concat(kBase, "[server]\nworkers = 1\nworkers = 2\n"));
  ASSERT_EQ(r.errors.size(), 1u) << describe(r);
  EXPECT_EQ(r.errors[0].line, lineContaining(concat(kBase, "[server]\nworkers = 1\nworkers = 2\n"),
                                             "workers = 2"));
}

TEST(ConfigLoader, AllErrorsAreReportedInFileOrder) {
  const std::string text = R"([server]
workers = 300
header_timeout = "10 seconds"

[[listener]]
address = "localhost:8080"

[cache.ram]
size = "12XB"

[[origin_group]]
name = "main"
  [[origin_group.origin]]
  url = "ftp://origin"
  [[origin_group.origin]]
  url = "http://origin-b"
  colour = "red"

[[vhost]]
hostnames = ["*"]
  [[vhost.route]]
  prefix = "live/"
  origin_group = "nope"
)";
  const LoadResult r = load(text);
  EXPECT_FALSE(r.ok());
  std::vector<std::pair<int, std::string>> got;
  for (const ConfigError& e : r.errors) got.emplace_back(e.line, e.key);
  const std::vector<std::pair<int, std::string>> want = {
      {2, "server.workers"},
      {3, "server.header_timeout"},
      {6, "listener[0].address"},
      {9, "cache.ram.size"},
      {14, "origin_group[0].origin[0].url"},
      {17, "origin_group[0].origin[1].colour"},
      {22, "vhost[0].route[0].prefix"},
      {23, "vhost[0].route[0].origin_group"},
  };
  EXPECT_EQ(got, want) << describe(r);
}

TEST(ConfigLoader, MissingFileIsReportedWithItsPath) {
  const LoadResult r = loadConfigFile("/nonexistent/streamedge.toml");
  EXPECT_FALSE(r.ok());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].file, "/nonexistent/streamedge.toml");
  EXPECT_EQ(r.errors[0].line, 0);
  EXPECT_NE(r.errors[0].toString().find("/nonexistent/streamedge.toml: cannot open"),
            std::string::npos)
      << r.errors[0].toString();
}

TEST(ConfigLoader, DirectoryIsReportedAsUnreadable) {
  const LoadResult r = loadConfigFile("/");
  EXPECT_FALSE(r.ok());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].file, "/");
}

TEST(ConfigLoader, SyntaxErrorInAFileNamesTheFile) {
  const std::string path = ::testing::TempDir() + "streamedge_conf_syntax_test.toml";
  std::FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fputs("[server]\n\n[server\n", f);
  std::fclose(f);
  const LoadResult r = loadConfigFile(path);
  std::remove(path.c_str());
  ASSERT_EQ(r.errors.size(), 1u) << describe(r);
  EXPECT_EQ(r.errors[0].file, path);
  EXPECT_EQ(r.errors[0].line, 3);
  EXPECT_EQ(r.errors[0].toString().rfind(path + ":3: ", 0), 0u) << r.errors[0].toString();
}

TEST(ConfigLoader, TlsKeysAreReadAndOriginGroupTlsDefaultsAreInherited) {
  const LoadResult r = load(R"([[listener]]
address = "127.0.0.1:8080"
redirect_https = true
[[listener]]
address = "127.0.0.1:8443"
tls_min_version = "1.3"
tls_ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256"
tls_ciphersuites = "TLS_AES_128_GCM_SHA256"
tls_session_tickets = false
tls_ticket_key_file = "/etc/streamedge/tickets.key"
tls_ticket_rotation = "30m"
tls_session_cache_size = 0
tls_session_timeout = "5m"
http2 = false
  [[listener.certificate]]
  cert = "a.pem"
  key = "a.key"
[[origin_group]]
name = "main"
ca_file = "/etc/ca.pem"
tls_verify = false
  [[origin_group.origin]]
  url = "https://origin.example.com"
  [[origin_group.origin]]
  url = "https://origin2.example.com"
  ca_file = "/etc/other-ca.pem"
  tls_verify = true
  client_cert = "c.pem"
  client_key = "c.key"
  tls_server_name = "origin.internal"
[[vhost]]
hostnames = ["*"]
hsts = "max-age=31536000; includeSubDomains"
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"
)");
  ASSERT_TRUE(r.ok()) << describe(r);
  const Config& c = *r.config;
  EXPECT_TRUE(c.listeners[0].redirect_https);
  EXPECT_EQ(c.listeners[0].https_port, 8443);  // the first TLS listener's port
  const ListenerConfig& l = c.listeners[1];
  EXPECT_EQ(l.tls_min_version, "1.3");
  EXPECT_EQ(l.tls_ciphers, "ECDHE-ECDSA-AES128-GCM-SHA256");
  EXPECT_EQ(l.tls_ciphersuites, "TLS_AES_128_GCM_SHA256");
  EXPECT_FALSE(l.tls_session_tickets);
  EXPECT_EQ(l.tls_ticket_key_file, "/etc/streamedge/tickets.key");
  EXPECT_EQ(l.tls_ticket_rotation, Seconds(1800));
  EXPECT_EQ(l.tls_session_cache_size, 0);
  EXPECT_EQ(l.tls_session_timeout, Seconds(300));
  EXPECT_FALSE(l.http2);
  EXPECT_TRUE(c.listeners[0].http2);  // the default (plain listeners never offer it)
  const OriginConfig& a = c.origin_groups[0].origins[0];
  EXPECT_EQ(a.ca_file, "/etc/ca.pem");
  EXPECT_FALSE(a.tls_verify);
  const OriginConfig& b = c.origin_groups[0].origins[1];
  EXPECT_EQ(b.ca_file, "/etc/other-ca.pem");
  EXPECT_TRUE(b.tls_verify);
  EXPECT_EQ(b.client_cert, "c.pem");
  EXPECT_EQ(b.client_key, "c.key");
  EXPECT_EQ(b.tls_server_name, "origin.internal");
  EXPECT_EQ(c.vhosts[0].hsts, "max-age=31536000; includeSubDomains");
}

TEST(ConfigLoader, CleartextHttp2IsForPlainListenersOnly) {
  // testing::kBase has one plain listener (h2c off by default); each case adds a second one.
  const LoadResult plain =
      testing::load("[[listener]]\naddress = \"127.0.0.1:8082\"\nh2c = true\n");
  ASSERT_TRUE(plain.ok()) << describe(plain);
  EXPECT_FALSE(plain.config->listeners[0].h2c);
  EXPECT_TRUE(plain.config->listeners[1].h2c);
  testing::expectOnlyError(
      "[[listener]]\naddress = \"127.0.0.1:8443\"\nh2c = true\n"
      "  [[listener.certificate]]\n  cert = \"a.pem\"\n  key = \"a.key\"\n",
      "listener[1].h2c", 3, "cleartext HTTP/2 is for plain listeners");
}

TEST(ConfigLoader, TlsMistakesAreErrors) {
  const LoadResult r = load(R"([[listener]]
address = "127.0.0.1:8080"
redirect_https = true
[[listener]]
address = "127.0.0.1:8443"
tls_min_version = "1.0"
tls_ticket_rotation = "10s"
[[origin_group]]
name = "main"
  [[origin_group.origin]]
  url = "https://origin.example.com"
  client_cert = "c.pem"
[[vhost]]
hostnames = ["*"]
hsts = "1 year"
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"
)");
  ASSERT_FALSE(r.ok());
  const std::string all = describe(r);
  EXPECT_NE(all.find("listener[1].tls_min_version: expected \"1.2\" or \"1.3\""), std::string::npos) << all;
  EXPECT_NE(all.find("listener[1].tls_ticket_rotation: must be at least 60s"), std::string::npos) << all;
  EXPECT_NE(all.find("listener[0].redirect_https: no TLS listener to redirect to"), std::string::npos) << all;
  EXPECT_NE(all.find("client_cert: client_cert and client_key go together"), std::string::npos) << all;
  EXPECT_NE(all.find("vhost[0].hsts: expected a Strict-Transport-Security value"), std::string::npos) << all;
}

// ---- [privacy] and retention ----------------------------------------------------------------

TEST(ConfigLoaderPrivacy, DefaultsTruncateAndKeepEverythingUnlimited) {
  const LoadResult r = load(kBase);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->log.client_address, AddressAnonymization::kTruncate);
  EXPECT_EQ(r.config->privacy.log_retention, Millis(0));
  EXPECT_EQ(r.config->vhosts[0].retention, Millis(0));
}

TEST(ConfigLoaderPrivacy, PrivacySectionSetsAddressModeAndLogRetention) {
  const LoadResult r = load(concat(kBase, R"(
[privacy]
client_address = "none"
log_retention = "30d"
)"));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_TRUE(r.warnings.empty()) << describe(r);
  EXPECT_EQ(r.config->log.client_address, AddressAnonymization::kNone);
  EXPECT_EQ(r.config->privacy.log_retention, std::chrono::hours(24 * 30));
}

TEST(ConfigLoaderPrivacy, LogClientAddressStillWorksWithADeprecationWarning) {
  const std::string text = concat(kBase, R"(
[log]
client_address = "full"
)");
  const LoadResult r = load(text);
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->log.client_address, AddressAnonymization::kFull);
  ASSERT_EQ(r.warnings.size(), 1u) << describe(r);
  EXPECT_NE(r.warnings[0].find("test.toml:" + std::to_string(lastLineContaining(text, "client_address")) +
                               ": log.client_address: deprecated: use [privacy] client_address"),
            std::string::npos)
      << r.warnings[0];
}

TEST(ConfigLoaderPrivacy, PrivacyWinsOverTheDeprecatedKey) {
  const LoadResult r = load(concat(kBase, R"(
[log]
client_address = "full"
[privacy]
client_address = "truncate"
)"));
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->log.client_address, AddressAnonymization::kTruncate);
  const std::string all = describe(r);
  EXPECT_NE(all.find("ignored: [privacy] client_address is set too"), std::string::npos) << all;
}

TEST(ConfigLoaderPrivacy, BadValuesAreReportedWithTheirLines) {
  const std::string text = concat(kBase, R"(
[privacy]
client_address = "hash"
log_retention = "soon"
colour = "blue"
)");
  const LoadResult r = load(text);
  EXPECT_EQ(r.errors.size(), 3u) << describe(r);
  expectError(r, "privacy.client_address", lastLineContaining(text, "\"hash\""),
              "\"truncate\", \"full\" or \"none\"");
  expectError(r, "privacy.log_retention", lastLineContaining(text, "soon"), "invalid duration");
  expectError(r, "privacy.colour", lastLineContaining(text, "colour"), "unknown key");
}

TEST(ConfigLoaderPrivacy, VhostRetentionIsADuration) {
  const LoadResult r = load(R"([[listener]]
address = "127.0.0.1:8080"
[[origin_group]]
name = "main"
  [[origin_group.origin]]
  url = "http://127.0.0.1:8081"
[[vhost]]
hostnames = ["a.example"]
retention = "30d"
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"
[[vhost]]
hostnames = ["b.example"]
retention = "2s"
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"
[[vhost]]
hostnames = ["c.example"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"
)");
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->vhosts[0].retention, std::chrono::hours(24 * 30));
  EXPECT_EQ(r.config->vhosts[1].retention, Seconds(2));
  EXPECT_EQ(r.config->vhosts[2].retention, Millis(0));
}

TEST(ConfigLoaderPrivacy, BadVhostRetentionNamesItsLine) {
  const std::string text = R"([[listener]]
address = "127.0.0.1:8080"
[[origin_group]]
name = "main"
  [[origin_group.origin]]
  url = "http://127.0.0.1:8081"
[[vhost]]
hostnames = ["*"]
retention = -5
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"
)";
  const LoadResult r = load(text);
  expectError(r, "vhost[0].retention", 9, "non-negative");
}

TEST(ConfigLoader, Http2SettingsAreReadAndCheckedWithTheirLines) {
  LoadResult r = load(R"([server]
http2_max_concurrent_streams = 250
http2_stream_window = "256KiB"
http2_connection_window = "64MiB"
[[listener]]
address = "127.0.0.1:8443"
  [[listener.certificate]]
  cert = "a.pem"
  key = "a.key"
[[origin_group]]
name = "main"
  [[origin_group.origin]]
  url = "http://origin.example.com"
[[vhost]]
hostnames = ["*"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"
)");
  ASSERT_TRUE(r.ok()) << describe(r);
  EXPECT_EQ(r.config->server.http2_max_concurrent_streams, 250u);
  EXPECT_EQ(r.config->server.http2_stream_window_bytes, 256u * 1024);
  EXPECT_EQ(r.config->server.http2_connection_window_bytes, 64ull << 20);
  EXPECT_TRUE(r.config->listeners[0].http2);

  r = load(R"([server]
http2_max_concurrent_streams = 0
http2_stream_window = "3GiB"
http2_connection_window = 100
[[listener]]
address = "127.0.0.1:8080"
http2 = true
)");
  ASSERT_FALSE(r.ok());
  const std::string all = describe(r);
  EXPECT_NE(all.find(":2: server.http2_max_concurrent_streams"), std::string::npos) << all;
  EXPECT_NE(all.find(":3: server.http2_stream_window"), std::string::npos) << all;
  EXPECT_NE(all.find(":4: server.http2_connection_window"), std::string::npos) << all;
  EXPECT_NE(all.find(":7: listener[0].http2"), std::string::npos) << all;
}

TEST(ConfigLoader, Http2FloodLimitsAreReadAndCheckedWithTheirLines) {
  LoadResult r = load(R"([server]
http2_abuse_interval = "5s"
http2_max_resets = 50
http2_max_settings = 10
http2_max_pings = 20
http2_max_priority = 30
http2_max_window_updates = 40
http2_max_empty_data = 60
http2_max_continuations = 0
http2_max_header_block = "32KiB"
http2_zero_window_timeout = "2s"
[[listener]]
address = "127.0.0.1:8443"
  [[listener.certificate]]
  cert = "a.pem"
  key = "a.key"
[[origin_group]]
name = "main"
  [[origin_group.origin]]
  url = "http://origin.example.com"
[[vhost]]
hostnames = ["*"]
  [[vhost.route]]
  prefix = "/"
  origin_group = "main"
)");
  ASSERT_TRUE(r.ok()) << describe(r);
  const ServerConfig& s = r.config->server;
  EXPECT_EQ(s.http2_abuse_interval, Millis(5000));
  EXPECT_EQ(s.http2_max_resets, 50u);
  EXPECT_EQ(s.http2_max_settings, 10u);
  EXPECT_EQ(s.http2_max_pings, 20u);
  EXPECT_EQ(s.http2_max_priority, 30u);
  EXPECT_EQ(s.http2_max_window_updates, 40u);
  EXPECT_EQ(s.http2_max_empty_data, 60u);
  EXPECT_EQ(s.http2_max_continuations, 0u);
  EXPECT_EQ(s.http2_max_header_block_bytes, 32u * 1024);
  EXPECT_EQ(s.http2_zero_window_timeout, Millis(2000));

  r = load(R"([server]
http2_abuse_interval = "10ms"
http2_max_resets = 0
http2_max_settings = "many"
http2_max_pings = -1
http2_max_priority = 2000000
http2_max_window_updates = 0
http2_max_empty_data = 0
http2_max_continuations = 1001
http2_max_header_block = "100B"
http2_zero_window_timeout = "0s"
)");
  ASSERT_FALSE(r.ok());
  const std::string all = describe(r);
  const char* keys[] = {"http2_abuse_interval", "http2_max_resets", "http2_max_settings",
                        "http2_max_pings", "http2_max_priority", "http2_max_window_updates",
                        "http2_max_empty_data", "http2_max_continuations",
                        "http2_max_header_block", "http2_zero_window_timeout"};
  int line = 2;
  for (const char* key : keys) {
    const std::string want = ":" + std::to_string(line++) + ": server." + key;
    EXPECT_NE(all.find(want), std::string::npos) << want << "\n" << all;
  }
}

}  // namespace
}  // namespace streamedge::conf
