// failover_load: steady viewer load for the failover benchmark (scripts/bench/failover.sh).
// Each client loops, on its own keep-alive connection, over a live HLS reload (the playlist,
// then its newest segment) and a VOD segment under a path never asked before (always a miss,
// so every one reaches an origin), until the run ends. Every answer is checked: status 200, a
// complete body (framing satisfied, no close mid-body), and for segments every byte equal to
// the simulator's body for that path. One line per request goes to --out:
//   <start unix ms> <latency ms> <kind: playlist|live|vod> <outcome: ok|status|truncated|wrong|error>
// and a summary line to stdout. Exit 0 when the run finished (failures are data, not errors).
//
//   failover_load --port N [--seconds S] [--clients C] [--vod-size BYTES] [--out FILE]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/http_client.h"
#include "tests/support/origin_sim.h"

namespace {

using namespace streamedge::testsupport;
using Clock = std::chrono::steady_clock;

struct Options {
  uint16_t port = 0;
  int seconds = 30;
  int clients = 8;
  size_t vod_size = 1 << 20;
  std::string out = "failover_load.txt";
};

struct Sample {
  long long start_ms;
  double latency_ms;
  const char* kind;
  const char* outcome;
};

long long unixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The last segment URI of a media playlist ("" when none).
std::string lastSegment(const std::string& playlist) {
  std::string last;
  size_t pos = 0;
  while (pos < playlist.size()) {
    size_t eol = playlist.find('\n', pos);
    if (eol == std::string::npos) eol = playlist.size();
    std::string line = playlist.substr(pos, eol - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty() && line[0] != '#') last = line;
    pos = eol + 1;
  }
  return last;
}

const char* judge(const HttpResponse& r, const std::string& path, std::optional<size_t> size) {
  if (!r.error.empty() && r.status == 0) return "error";
  if (r.truncated || !r.error.empty()) return "truncated";
  if (r.status != 200) return "status";
  if (!path.empty()) {
    const size_t n = size ? *size : r.body.size();
    if (r.body.size() != n || r.body != simBody(path, n)) return "wrong";
  }
  return "ok";
}

void client(const Options& o, int id, Clock::time_point until, std::vector<Sample>& out) {
  HttpConnection conn;
  long seq = 0;
  auto one = [&](const char* kind, const std::string& target, const std::string& check_path,
                 std::optional<size_t> size) -> HttpResponse {
    const long long start = unixMs();
    const auto t0 = Clock::now();
    HttpResponse r;
    if (!conn.isOpen() && !conn.connect(o.port)) {
      r.error = conn.error();
    } else {
      r = conn.request("GET", target, {}, std::chrono::seconds(20));
    }
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    out.push_back({start, ms, kind, judge(r, check_path, size)});
    if (!r.ok()) {
      conn.close();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // no busy loop on a dead edge
    }
    return r;
  };
  while (Clock::now() < until) {
    HttpResponse playlist = one("playlist", "/live/720p/index.m3u8", "", std::nullopt);
    if (playlist.ok() && playlist.status == 200) {
      const std::string seg = lastSegment(playlist.body);
      if (!seg.empty()) {
        const std::string path = "/live/720p/" + seg.substr(0, seg.find('?'));
        one("live", path, path, std::nullopt);
      }
    }
    if (Clock::now() >= until) break;
    const std::string path = "/obj/failover/c" + std::to_string(id) + "-" + std::to_string(seq++) + ".ts";
    one("vod", path + "?size=" + std::to_string(o.vod_size), path, o.vod_size);
  }
}

bool number(const char* s, long min, long max, long* v) {
  char* end = nullptr;
  *v = std::strtol(s, &end, 10);
  return *s && !*end && *v >= min && *v <= max;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i];
    long v = 0;
    if (arg == "--port" && number(argv[i + 1], 1, 65535, &v)) {
      o.port = static_cast<uint16_t>(v);
    } else if (arg == "--seconds" && number(argv[i + 1], 1, 3600, &v)) {
      o.seconds = static_cast<int>(v);
    } else if (arg == "--clients" && number(argv[i + 1], 1, 1000, &v)) {
      o.clients = static_cast<int>(v);
    } else if (arg == "--vod-size" && number(argv[i + 1], 1, 1L << 30, &v)) {
      o.vod_size = static_cast<size_t>(v);
    } else if (arg == "--out") {
      o.out = argv[i + 1];
    } else {
      std::fprintf(stderr, "usage: failover_load --port N [--seconds S] [--clients C] "
                           "[--vod-size BYTES] [--out FILE]\n");
      return 2;
    }
  }
  if (o.port == 0) {
    std::fprintf(stderr, "failover_load: --port is required\n");
    return 2;
  }
  const auto until = Clock::now() + std::chrono::seconds(o.seconds);
  std::vector<std::vector<Sample>> samples(static_cast<size_t>(o.clients));
  std::vector<std::thread> threads;
  for (int i = 0; i < o.clients; ++i) {
    threads.emplace_back(client, std::cref(o), i, until, std::ref(samples[static_cast<size_t>(i)]));
  }
  for (auto& t : threads) t.join();
  std::FILE* f = std::fopen(o.out.c_str(), "w");
  if (!f) {
    std::perror(o.out.c_str());
    return 1;
  }
  long total = 0, bad = 0;
  for (const auto& list : samples) {
    for (const Sample& s : list) {
      std::fprintf(f, "%lld %.3f %s %s\n", s.start_ms, s.latency_ms, s.kind, s.outcome);
      ++total;
      if (std::string(s.outcome) != "ok") ++bad;
    }
  }
  std::fclose(f);
  std::printf("requests=%ld failed=%ld\n", total, bad);
  return 0;
}
