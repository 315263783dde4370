// steady_load: a steady client load for scripts/bench/reload_p99.sh. Keep-alive clients and
// clients that open a new connection for every request loop over a small set of cacheable
// objects (GET /obj/steady/<client>-<n>?size=BYTES, served by the origin simulator) until the
// run ends, each pausing --gap-ms between requests. Every answer is checked (status 200, whole,
// every byte equal to the simulator's body). A keep-alive connection the server closed
// between two requests (no byte of an answer) is retried once on a new connection, as HTTP
// clients do (RFC 9112 §9.3.1), and counted as a retry, not a failure.
//
// Output (stdout, one line): requests=N failed=F refused=R retried=T p50_ms=X p99_ms=Y max_ms=Z
// and, with --out FILE, one line per request: <start unix ms> <latency ms> <ok|failed|refused>.
//
//   steady_load --port N [--seconds S] [--keep-alive C] [--fresh C] [--size BYTES]
//               [--gap-ms MS] [--out FILE]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
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
  int keep_alive = 6;
  int fresh = 2;
  size_t size = 20000;
  int gap_ms = 5;
  std::string out;
};

struct Sample {
  long long start_ms;
  double latency_ms;
  const char* outcome;
};

long long unixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool parse(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return false;
    const char* v = argv[++i];
    if (a == "--port") o.port = static_cast<uint16_t>(std::atoi(v));
    else if (a == "--seconds") o.seconds = std::atoi(v);
    else if (a == "--keep-alive") o.keep_alive = std::atoi(v);
    else if (a == "--fresh") o.fresh = std::atoi(v);
    else if (a == "--size") o.size = static_cast<size_t>(std::atoll(v));
    else if (a == "--gap-ms") o.gap_ms = std::atoi(v);
    else if (a == "--out") o.out = v;
    else return false;
  }
  return o.port != 0 && o.seconds > 0 && o.keep_alive + o.fresh > 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, o)) {
    std::fprintf(stderr, "usage: steady_load --port N [--seconds S] [--keep-alive C] [--fresh C] "
                         "[--size BYTES] [--gap-ms MS] [--out FILE]\n");
    return 2;
  }
  const auto end = Clock::now() + std::chrono::seconds(o.seconds);
  std::mutex mu;
  std::vector<Sample> samples;
  std::atomic<long> retried{0};
  auto client = [&](int index, bool keep_alive) {
    HttpConnection conn;
    std::vector<Sample> mine;
    for (long n = 0; Clock::now() < end; ++n) {
      std::this_thread::sleep_for(std::chrono::milliseconds(o.gap_ms));
      if (!keep_alive) conn.close();
      const std::string path = "/obj/steady/" + std::to_string(index) + "-" + std::to_string(n % 16);
      const std::string target = path + "?size=" + std::to_string(o.size);
      const long long start_ms = unixMs();
      const auto t0 = Clock::now();
      const char* outcome = "failed";
      for (int attempt = 0; attempt < 2; ++attempt) {
        if (!conn.isOpen() && !conn.connect(o.port, std::chrono::seconds(2))) {
          outcome = "refused";
          break;
        }
        const HttpResponse r = conn.request("GET", target, {}, std::chrono::seconds(10));
        if (r.ok() && r.status == 200 && r.body == simBody(path, o.size)) {
          outcome = "ok";
          break;
        }
        if (keep_alive && attempt == 0 && r.status == 0 && r.body_bytes == 0 && !r.truncated &&
            r.closed) {
          ++retried;
          conn.close();
          continue;
        }
        conn.close();
        break;
      }
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      mine.push_back(Sample{start_ms, ms, outcome});
    }
    std::lock_guard<std::mutex> lock(mu);
    samples.insert(samples.end(), mine.begin(), mine.end());
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < o.keep_alive; ++i) threads.emplace_back(client, i, true);
  for (int i = 0; i < o.fresh; ++i) threads.emplace_back(client, 1000 + i, false);
  for (std::thread& t : threads) t.join();

  std::vector<double> ok_latencies;
  long failed = 0, refused = 0;
  for (const Sample& s : samples) {
    if (std::strcmp(s.outcome, "ok") == 0) ok_latencies.push_back(s.latency_ms);
    else if (std::strcmp(s.outcome, "refused") == 0) ++refused;
    else ++failed;
  }
  std::sort(ok_latencies.begin(), ok_latencies.end());
  auto pct = [&](double p) {
    if (ok_latencies.empty()) return 0.0;
    const size_t i = std::min(ok_latencies.size() - 1,
                              static_cast<size_t>(p * static_cast<double>(ok_latencies.size())));
    return ok_latencies[i];
  };
  if (!o.out.empty()) {
    if (FILE* f = std::fopen(o.out.c_str(), "w")) {
      for (const Sample& s : samples) std::fprintf(f, "%lld %.3f %s\n", s.start_ms, s.latency_ms, s.outcome);
      std::fclose(f);
    }
  }
  std::printf("requests=%zu failed=%ld refused=%ld retried=%ld p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
              samples.size(), failed, refused, retried.load(), pct(0.50), pct(0.99),
              ok_latencies.empty() ? 0.0 : ok_latencies.back());
  return 0;
}
