// site_load: the request mix of scripts/bench/site.sh. Clients send a fixed number of requests
// for objects drawn from a Zipf distribution (GET /obj/site/<rank>.bin?size=BYTES, served by
// the origin simulator) to the edges of a site, each request to the next edge in turn, as a
// load balancer spreading viewers over the servers of a site would. The draws come from a
// seeded generator per client, so two runs (with 1, 2 or 4 edges) ask for the same objects in
// the same order per client and their origin request counts compare. Every answer is checked
// (status 200, whole, every byte equal to the simulator's body).
//
// With --repeat PATH it instead asks each edge for one object, --requests times in a row on
// one keep-alive connection per edge, and prints the latency per edge (the cost of a peer hop
// on a hit: ask the owner and a non-owner of a cached object).
//
// Output (stdout, one line per run):
//   requests=N failed=F p50_ms=X p99_ms=Y
//   or with --repeat, per edge: edge=HOST:PORT requests=N failed=F p50_ms=X p99_ms=Y
//
//   site_load --edges H:P[,H:P...] [--objects N] [--zipf S] [--size BYTES] [--requests N]
//             [--clients C] [--seed X] [--host NAME] [--repeat PATH]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/http_client.h"
#include "tests/support/origin_sim.h"

namespace {

using namespace streamedge::testsupport;
using Clock = std::chrono::steady_clock;

struct Edge {
  std::string host;
  uint16_t port = 0;
};

struct Options {
  std::vector<Edge> edges;
  int objects = 2000;
  double zipf = 0.9;
  size_t size = 100'000;
  long requests = 20'000;
  int clients = 8;
  uint64_t seed = 1;
  std::string host = "cdn.example";
  std::string repeat;
};

bool parseEdges(const std::string& list, std::vector<Edge>& edges) {
  size_t start = 0;
  while (start < list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    const std::string item = list.substr(start, end - start);
    const size_t colon = item.rfind(':');
    if (colon == std::string::npos || colon == 0) return false;
    const int port = std::atoi(item.c_str() + colon + 1);
    if (port <= 0 || port > 65535) return false;
    edges.push_back(Edge{item.substr(0, colon), static_cast<uint16_t>(port)});
    start = end + 1;
  }
  return !edges.empty();
}

bool parse(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return false;
    const char* v = argv[++i];
    if (a == "--edges") {
      if (!parseEdges(v, o.edges)) return false;
    } else if (a == "--objects") o.objects = std::atoi(v);
    else if (a == "--zipf") o.zipf = std::atof(v);
    else if (a == "--size") o.size = static_cast<size_t>(std::atoll(v));
    else if (a == "--requests") o.requests = std::atol(v);
    else if (a == "--clients") o.clients = std::atoi(v);
    else if (a == "--seed") o.seed = std::strtoull(v, nullptr, 10);
    else if (a == "--host") o.host = v;
    else if (a == "--repeat") o.repeat = v;
    else return false;
  }
  return !o.edges.empty() && o.objects > 0 && o.zipf >= 0 && o.size > 0 && o.requests > 0 &&
         o.clients > 0;
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i =
      std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

// One GET on `conn` (reconnecting once if a keep-alive connection was closed between two
// requests); true when the answer is 200 and exactly the simulator's body.
bool fetch(HttpConnection& conn, const Edge& edge, const std::string& path, size_t size,
           const std::string& host) {
  const std::string target = path + "?size=" + std::to_string(size);
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!conn.isOpen() && !conn.connect(edge.port, std::chrono::seconds(2), edge.host)) {
      return false;
    }
    const HttpResponse r = conn.request("GET", target, {{"Host", host}}, std::chrono::seconds(20));
    if (r.ok() && r.status == 200) return r.body == simBody(path, size);
    const bool closed_between = attempt == 0 && r.status == 0 && r.body_bytes == 0 &&
                                !r.truncated && r.closed;
    conn.close();
    if (!closed_between) return false;
  }
  return false;
}

int repeatRun(const Options& o) {
  for (const Edge& edge : o.edges) {
    HttpConnection conn;
    std::vector<double> latencies;
    long failed = 0;
    for (long n = 0; n < o.requests; ++n) {
      const auto t0 = Clock::now();
      if (!fetch(conn, edge, o.repeat, o.size, o.host)) {
        ++failed;
        continue;
      }
      latencies.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    const double p50 = percentile(latencies, 0.50);
    const double p99 = percentile(latencies, 0.99);
    std::printf("edge=%s:%u requests=%ld failed=%ld p50_ms=%.3f p99_ms=%.3f\n", edge.host.c_str(),
                edge.port, o.requests, failed, p50, p99);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, o)) {
    std::fprintf(stderr,
                 "usage: site_load --edges H:P[,H:P...] [--objects N] [--zipf S] [--size BYTES] "
                 "[--requests N] [--clients C] [--seed X] [--host NAME] [--repeat PATH]\n");
    return 2;
  }
  if (!o.repeat.empty()) return repeatRun(o);

  // Zipf over ranks 1..objects: P(rank k) proportional to 1 / k^s.
  std::vector<double> cdf(static_cast<size_t>(o.objects));
  double sum = 0;
  for (int k = 0; k < o.objects; ++k) {
    sum += 1.0 / std::pow(static_cast<double>(k + 1), o.zipf);
    cdf[static_cast<size_t>(k)] = sum;
  }
  for (double& c : cdf) c /= sum;

  std::mutex mu;
  std::vector<double> latencies;
  std::atomic<long> failed{0};
  auto client = [&](int index) {
    std::mt19937_64 rng(o.seed * 1'000'003 + static_cast<uint64_t>(index));
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    std::vector<HttpConnection> conns(o.edges.size());
    std::vector<double> mine;
    const long share = o.requests / o.clients + (index < o.requests % o.clients ? 1 : 0);
    size_t edge = static_cast<size_t>(index) % o.edges.size();
    for (long n = 0; n < share; ++n) {
      const size_t rank = static_cast<size_t>(
          std::lower_bound(cdf.begin(), cdf.end(), uniform(rng)) - cdf.begin());
      const std::string path = "/obj/site/" + std::to_string(std::min(rank, cdf.size() - 1)) + ".bin";
      const auto t0 = Clock::now();
      if (fetch(conns[edge], o.edges[edge], path, o.size, o.host)) {
        mine.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      } else {
        ++failed;
      }
      edge = (edge + 1) % o.edges.size();
    }
    std::lock_guard<std::mutex> lock(mu);
    latencies.insert(latencies.end(), mine.begin(), mine.end());
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < o.clients; ++i) threads.emplace_back(client, i);
  for (std::thread& t : threads) t.join();
  const double p50 = percentile(latencies, 0.50);
  const double p99 = percentile(latencies, 0.99);
  std::printf("requests=%ld failed=%ld p50_ms=%.3f p99_ms=%.3f\n", o.requests, failed.load(), p50,
              p99);
  return failed.load() == 0 ? 0 : 1;
}
