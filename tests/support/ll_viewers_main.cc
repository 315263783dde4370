// ll_viewers: N simulated LL-HLS viewers of the origin simulator's low-latency stream
// (/ll/<rendition>/index.m3u8), straight to the simulator or through an edge, for the
// comparison the live-streaming issue asks for (scripts/bench/ll_hls.sh).
//
//   ll_viewers --port PORT --path /ll/bench/index.m3u8 --viewers 200 --seconds 20
//              --target-s 2 --part-ms 500
//
// Each viewer behaves as an LL-HLS player at the live edge: it loads the playlist once, then
// loops: a blocking reload for the hinted part (_HLS_msn=M&_HLS_part=P), then a GET of that
// part. The simulator's clock is the wall clock (part P of segment M is complete at
// M*target + (P+1)*part ms since the Unix epoch), so the tool knows when each part existed at
// the origin and reports how late the viewer had it:
//   playlist latency: the blocking reload's answer arrived − the part was complete;
//   part latency:     the part's last byte arrived − the part was complete.
// Prints one summary line: viewers, requests, failures, and p50/p99/max of both latencies in ms.
// Exit 0 when every request succeeded, 1 otherwise, 2 on usage errors. Bounded: each request
// times out after 3 target durations; the run ends after --seconds.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/http_client.h"

namespace {

using streamedge::testsupport::HttpConnection;
using streamedge::testsupport::HttpResponse;

int64_t wallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The part a playlist's EXT-X-PRELOAD-HINT names ("part_<msn>_<i>.m4s"): false if none.
bool hintedPart(const std::string& playlist, long* msn, long* part) {
  const std::string tag = "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part_";
  const size_t at = playlist.find(tag);
  if (at == std::string::npos) return false;
  char* end = nullptr;
  const char* s = playlist.c_str() + at + tag.size();
  *msn = std::strtol(s, &end, 10);
  if (end == s || *end != '_') return false;
  const char* p = end + 1;
  *part = std::strtol(p, &end, 10);
  return end != p;
}

double percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

struct Options {
  uint16_t port = 0;
  std::string path = "/ll/bench/index.m3u8";
  int viewers = 200;
  int seconds = 20;
  int64_t target_ms = 2000;
  int64_t part_ms = 500;
};

struct Totals {
  std::mutex mu;
  std::vector<double> playlist_ms, part_ms;
  std::atomic<long> requests{0}, failures{0};
  std::string first_error;
  void fail(const std::string& why) {
    ++failures;
    std::lock_guard<std::mutex> lock(mu);
    if (first_error.empty()) first_error = why;
  }
};

// One GET on the viewer's keep-alive connection, reconnecting when the server closed it.
HttpResponse get(HttpConnection& conn, uint16_t port, const std::string& target,
                 std::chrono::milliseconds timeout) {
  if (!conn.isOpen() && !conn.connect(port)) {
    HttpResponse r;
    r.error = conn.error();
    return r;
  }
  return conn.request("GET", target, {}, timeout);
}

void viewer(const Options& o, int64_t until_ms, Totals& t) {
  const auto timeout = std::chrono::milliseconds(3 * o.target_ms);
  const int64_t pps = (o.target_ms + o.part_ms - 1) / o.part_ms;
  HttpConnection conn;
  ++t.requests;
  HttpResponse first = get(conn, o.port, o.path, timeout);
  long msn = 0, part = 0;
  if (!first.ok() || first.status != 200 || !hintedPart(first.body, &msn, &part)) {
    return t.fail("first playlist: " + std::to_string(first.status) + " " + first.error);
  }
  const std::string dir = o.path.substr(0, o.path.rfind('/') + 1);
  std::vector<double> playlist_ms, part_ms;
  // Bounded by the deadline; each request by its timeout.
  while (wallMs() < until_ms) {
    const int64_t ready = msn * o.target_ms + std::min<int64_t>(part + 1, pps) * o.part_ms;
    ++t.requests;
    HttpResponse reload = get(
        conn, o.port,
        o.path + "?_HLS_msn=" + std::to_string(msn) + "&_HLS_part=" + std::to_string(part), timeout);
    if (!reload.ok() || reload.status != 200) {
      t.fail("blocking reload: " + std::to_string(reload.status) + " " + reload.error);
      break;
    }
    playlist_ms.push_back(static_cast<double>(wallMs() - ready));
    ++t.requests;
    HttpResponse media = get(
        conn, o.port, dir + "part_" + std::to_string(msn) + "_" + std::to_string(part) + ".m4s", timeout);
    if (!media.ok() || media.status != 200) {
      t.fail("part: " + std::to_string(media.status) + " " + media.error);
      break;
    }
    part_ms.push_back(static_cast<double>(wallMs() - ready));
    long next_msn = 0, next_part = 0;
    if (hintedPart(reload.body, &next_msn, &next_part) &&
        (next_msn > msn || (next_msn == msn && next_part > part))) {
      msn = next_msn;
      part = next_part;
    } else if (++part >= pps) {  // the answer hints no later part: the next one in order
      part = 0;
      ++msn;
    }
  }
  std::lock_guard<std::mutex> lock(t.mu);
  t.playlist_ms.insert(t.playlist_ms.end(), playlist_ms.begin(), playlist_ms.end());
  t.part_ms.insert(t.part_ms.end(), part_ms.begin(), part_ms.end());
}

bool parseNumber(const char* s, long min, long max, long* out) {
  char* end = nullptr;
  const long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v < min || v > max) return false;
  *out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc) {
      std::fprintf(stderr, "ll_viewers: %s needs a value\n", argv[i]);
      return 2;
    }
    const std::string name = argv[i];
    const char* value = argv[i + 1];
    long v = 0;
    if (name == "--path") {
      o.path = value;
    } else if (name == "--port" && parseNumber(value, 1, 65535, &v)) {
      o.port = static_cast<uint16_t>(v);
    } else if (name == "--viewers" && parseNumber(value, 1, 2000, &v)) {
      o.viewers = static_cast<int>(v);
    } else if (name == "--seconds" && parseNumber(value, 1, 600, &v)) {
      o.seconds = static_cast<int>(v);
    } else if (name == "--target-s" && parseNumber(value, 1, 60, &v)) {
      o.target_ms = v * 1000;
    } else if (name == "--part-ms" && parseNumber(value, 10, 60000, &v)) {
      o.part_ms = v;
    } else {
      std::fprintf(stderr,
                   "usage: ll_viewers --port PORT [--path /ll/R/index.m3u8] [--viewers N] "
                   "[--seconds S] [--target-s S] [--part-ms MS]\n");
      return 2;
    }
  }
  if (o.port == 0 || o.part_ms > o.target_ms) {
    std::fprintf(stderr, "ll_viewers: --port is required and --part-ms must not exceed the target\n");
    return 2;
  }
  Totals t;
  const int64_t until = wallMs() + int64_t{o.seconds} * 1000;
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(o.viewers));
  for (int v = 0; v < o.viewers; ++v) threads.emplace_back([&] { viewer(o, until, t); });
  for (auto& th : threads) th.join();
  std::printf("viewers=%d requests=%ld failures=%ld playlist_p50_ms=%.0f playlist_p99_ms=%.0f "
              "playlist_max_ms=%.0f part_p50_ms=%.0f part_p99_ms=%.0f part_max_ms=%.0f reloads=%zu\n",
              o.viewers, t.requests.load(), t.failures.load(), percentile(t.playlist_ms, 0.5),
              percentile(t.playlist_ms, 0.99), percentile(t.playlist_ms, 1.0),
              percentile(t.part_ms, 0.5), percentile(t.part_ms, 0.99), percentile(t.part_ms, 1.0),
              t.playlist_ms.size());
  if (t.failures > 0) std::fprintf(stderr, "ll_viewers: first failure: %s\n", t.first_error.c_str());
  return t.failures > 0 ? 1 : 0;
}
