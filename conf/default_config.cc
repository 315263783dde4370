// The embedded default config, used when streamedge starts without -c. Operators read it (it is
// the first config most people see), so it stays short and commented;
// conf/streamedge.example.toml documents every key. A unit test loads it.
#include "conf/config_loader.h"

namespace streamedge::conf {
namespace {

constexpr std::string_view kDefaultConfig = R"toml(# streamedge embedded default configuration.
#
# Serves http://127.0.0.1:8080/ and https://127.0.0.1:8443/ from a RAM cache in front of one
# origin at 127.0.0.1:8081 (scripts/run.sh starts the origin simulator there). The HTTPS
# certificate is self-signed, generated at first start in ./certs/ (localhost, 127.0.0.1, ::1).
# Run with -c FILE to use your own config; conf/streamedge.example.toml documents every key.

[server]
workers = 0                  # 0 = one worker thread per CPU core

[admin]
address = "127.0.0.1:9901"   # /metrics, /healthz, /readyz, /status, /purge (loopback only)

[[listener]]
address = "127.0.0.1:8080"   # plain HTTP

[[listener]]
address = "127.0.0.1:8443"   # HTTPS (TLS 1.2 and 1.3)
  [[listener.certificate]]
  cert = "certs/streamedge-selfsigned.pem"   # generated at first start when missing
  key = "certs/streamedge-selfsigned.key"

[cache.ram]
size = "256MiB"

[[origin_group]]
name = "demo"

  [[origin_group.origin]]
  url = "http://127.0.0.1:8081"
  dc = "demo-dc"
  priority = 1

[[vhost]]
hostnames = ["*"]            # any Host header

  [[vhost.route]]
  prefix = "/"
  origin_group = "demo"
)toml";

}  // namespace

std::string_view defaultConfigText() { return kDefaultConfig; }

}  // namespace streamedge::conf
