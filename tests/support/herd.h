// The thundering herd: N clients connect first, are released at once by a latch, and each sends
// one GET; per-client time to the first and the last body byte, optional verification of every
// body byte against simBody(). Used by the `herd` tool (scripts/bench) and in-process by scenario
// tests.
//
// Thread-safety: runHerd() is a blocking call that starts one thread per client and joins them
// all before it returns; calls are independent.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/http_client.h"

namespace streamedge::testsupport {

struct HerdOptions {
  std::string address = "127.0.0.1";  // where to connect ("127.0.0.1", "::1", "localhost")
  uint16_t port = 0;
  std::string target = "/";           // request-target (path and query)
  std::string host_header;            // empty: address:port
  int clients = 200;
  std::chrono::milliseconds timeout{30000};  // per client, from release to the last byte
  Headers headers;                    // extra request headers
  int expect_status = 200;
  // When set, every body must equal simBody(expect_body_path, expect_body_size).
  std::optional<std::string> expect_body_path;
  size_t expect_body_size = 0;
};

struct HerdClientResult {
  bool ok = false;
  int status = 0;
  std::string error;        // why it is not ok
  double ttfb_ms = -1;      // release → first body byte
  double ttlb_ms = -1;      // release → last body byte
  size_t body_bytes = 0;
  std::string x_cache;      // the X-Cache header, if any
  std::string cache_status; // the (first) Cache-Status header, if any
};

struct HerdResult {
  int clients = 0;
  int ok = 0;
  int bad = 0;
  double ttfb_p50_ms = 0, ttfb_p99_ms = 0, ttlb_p50_ms = 0, ttlb_p99_ms = 0;  // over ok clients
  std::vector<HerdClientResult> results;  // one per client, in client order
  std::map<std::string, int> x_cache;     // X-Cache value → clients ("" = no header)

  // "clients=N ok=N bad=N ttfb_p50_ms=.. ttfb_p99_ms=.. ttlb_p50_ms=.. ttlb_p99_ms=.."
  std::string summary() const;
  // The first failing client's error, "" when all are ok.
  std::string firstError() const;
};

// Splits "http://HOST:PORT/path?q" (HOST may be [v6]; PORT defaults to 80). False on other shapes.
bool parseHttpUrl(std::string_view url, std::string* host, uint16_t* port, std::string* target);

HerdResult runHerd(const HerdOptions& options);

}  // namespace streamedge::testsupport
