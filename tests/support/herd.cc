#include "tests/support/herd.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <latch>
#include <memory>
#include <thread>

#include "tests/support/origin_sim.h"

namespace streamedge::testsupport {

namespace {

// Nearest-rank percentile of a sorted sample.
double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

}  // namespace

bool parseHttpUrl(std::string_view url, std::string* host, uint16_t* port, std::string* target) {
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) return false;
  url.remove_prefix(kScheme.size());
  size_t slash = url.find_first_of("/?");
  std::string_view authority = url.substr(0, slash);
  std::string_view rest = slash == std::string_view::npos ? std::string_view("/") : url.substr(slash);
  *target = rest.front() == '?' ? "/" + std::string(rest) : std::string(rest);
  std::string_view h = authority;
  std::string_view p;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return false;
    h = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return false;
      p = authority.substr(close + 2);
    }
  } else if (size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    h = authority.substr(0, colon);
    p = authority.substr(colon + 1);
  }
  if (h.empty()) return false;
  *host = std::string(h);
  if (p.empty()) {
    *port = 80;
    return true;
  }
  unsigned v = 0;
  if (p.size() > 5) return false;
  for (char c : p) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v == 0 || v > 65535) return false;
  *port = static_cast<uint16_t>(v);
  return true;
}

std::string HerdResult::summary() const {
  char buf[256];
  std::snprintf(buf, sizeof buf, "clients=%d ok=%d bad=%d ttfb_p50_ms=%.2f ttfb_p99_ms=%.2f ttlb_p50_ms=%.2f ttlb_p99_ms=%.2f",
                clients, ok, bad, ttfb_p50_ms, ttfb_p99_ms, ttlb_p50_ms, ttlb_p99_ms);
  return buf;
}

std::string HerdResult::firstError() const {
  for (size_t i = 0; i < results.size(); ++i) {
    if (!results[i].ok) return "client " + std::to_string(i) + ": " + results[i].error;
  }
  return "";
}

HerdResult runHerd(const HerdOptions& options) {
  const int n = std::max(0, options.clients);
  HerdResult result;
  result.clients = n;
  result.results.resize(static_cast<size_t>(n));

  std::shared_ptr<const std::string> expected;
  if (options.expect_body_path) {
    expected = std::make_shared<const std::string>(simBody(*options.expect_body_path, options.expect_body_size));
  }
  const std::string host = options.host_header.empty()
                               ? (options.address.find(':') != std::string::npos ? "[" + options.address + "]"
                                                                                  : options.address) +
                                     ":" + std::to_string(options.port)
                               : options.host_header;
  Headers headers = options.headers;
  headers.emplace_back("Host", host);

  std::latch connected(n);
  std::latch release(1);
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      HerdClientResult& out = result.results[static_cast<size_t>(i)];
      HttpConnection conn;
      const bool up = conn.connect(options.port, std::min(options.timeout, std::chrono::milliseconds(10000)),
                                   options.address);
      connected.count_down();
      release.wait();
      if (!up) {
        out.error = "connect: " + conn.error();
        return;
      }
      // Compare every byte as it arrives instead of keeping N bodies in memory.
      size_t offset = 0;
      bool mismatch = false;
      size_t mismatch_at = 0;
      if (expected) {
        conn.setBodySink([&](std::string_view data) {
          if (!mismatch) {
            if (offset + data.size() > expected->size() ||
                std::memcmp(expected->data() + offset, data.data(), data.size()) != 0) {
              mismatch = true;
              size_t k = 0;
              while (k < data.size() && offset + k < expected->size() && (*expected)[offset + k] == data[k]) ++k;
              mismatch_at = offset + k;
            }
          }
          offset += data.size();
        });
      } else {
        conn.setBodySink([](std::string_view) {});
      }
      HttpResponse r = conn.request("GET", options.target, headers, options.timeout);
      // The request was sent right after the release, so request-relative times are release-relative.
      out.status = r.status;
      out.ttfb_ms = r.first_byte_ms;
      out.ttlb_ms = r.last_byte_ms;
      out.body_bytes = r.body_bytes;
      out.x_cache = r.header("X-Cache");
      out.cache_status = r.header("Cache-Status");
      if (!r.ok()) {
        out.error = r.error.empty() ? (r.truncated ? "truncated body" : "no response") : r.error;
        if (r.truncated && out.error.find("truncated") == std::string::npos) out.error += " (truncated)";
      } else if (r.status != options.expect_status) {
        out.error = "status " + std::to_string(r.status);
      } else if (expected && mismatch) {
        out.error = "body differs from simBody at byte " + std::to_string(mismatch_at);
      } else if (expected && r.body_bytes != expected->size()) {
        out.error = "body has " + std::to_string(r.body_bytes) + " bytes, expected " + std::to_string(expected->size());
      } else {
        out.ok = true;
      }
    });
  }
  connected.wait();
  release.count_down();
  for (std::thread& t : threads) t.join();

  std::vector<double> ttfb, ttlb;
  for (const HerdClientResult& c : result.results) {
    ++result.x_cache[c.x_cache];
    if (c.ok) {
      ++result.ok;
      ttfb.push_back(c.ttfb_ms);
      ttlb.push_back(c.ttlb_ms);
    } else {
      ++result.bad;
    }
  }
  std::sort(ttfb.begin(), ttfb.end());
  std::sort(ttlb.begin(), ttlb.end());
  result.ttfb_p50_ms = percentile(ttfb, 50);
  result.ttfb_p99_ms = percentile(ttfb, 99);
  result.ttlb_p50_ms = percentile(ttlb, 50);
  result.ttlb_p99_ms = percentile(ttlb, 99);
  return result;
}

}  // namespace streamedge::testsupport
