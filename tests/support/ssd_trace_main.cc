// ssd_trace: replays a synthetic video request mix through the real RAM tier and the real SSD
// store (a real file, the real I/O engine, encryption on) to compare the SSD reclaim policies.
// The origin is the one thing not real: a fill is completed in place with a body of the
// segment size, because only which requests hit which tier is measured here, not HTTP.
//
//   ssd_trace --store PATH [--reclaim fifo|reinsert] [--requests N] [--seed N]
//             [--object-kib N] [--ram-mib N] [--ssd-mib N] [--region-kib N]
//             [--titles N] [--segments N] [--zipf A] [--sessions N] [--watch N]
//             [--live-share F] [--channels N] [--live-every N]
//
// The mix: `sessions` VOD viewers at a time, each on a title picked by Zipf(`zipf`) over
// `titles`, watching segments in order from the start (20 % start at a random point) and
// leaving after a geometric number of segments (mean `watch`); a `live-share` of requests go
// to the newest segment of one of `channels` live channels, which advances every
// `live-every` requests. The same seed replays the same requests under either policy.
//
// Prints one line of key=value results for the measured part (the first fifth warms up).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cache/cache.h"
#include "cache/ssd_store.h"

namespace {

using namespace streamedge;
using namespace streamedge::cache;
using namespace std::chrono_literals;

struct Options {
  std::string store;
  conf::SsdReclaim reclaim = conf::SsdReclaim::kReinsert;
  long requests = 300000;
  long seed = 1;
  long object_kib = 64;
  long ram_mib = 8;
  long ssd_mib = 64;
  long region_kib = 1024;
  long titles = 2000;
  long segments = 300;
  double zipf = 0.8;
  long sessions = 200;
  long watch = 30;
  double live_share = 0.3;
  long channels = 8;
  long live_every = 400;
};

void usage() {
  std::fputs(
      "usage: ssd_trace --store PATH [--reclaim fifo|reinsert] [--requests N] [--seed N]\n"
      "                 [--object-kib N] [--ram-mib N] [--ssd-mib N] [--region-kib N]\n"
      "                 [--titles N] [--segments N] [--zipf A] [--sessions N] [--watch N]\n"
      "                 [--live-share F] [--channels N] [--live-every N]\n",
      stderr);
}

bool parseLong(const std::string& s, long min, long max, long* out) {
  char* end = nullptr;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || v < min || v > max) return false;
  *out = v;
  return true;
}

bool parseDouble(const std::string& s, double min, double max, double* out) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !(v >= min && v <= max)) return false;
  *out = v;
  return true;
}

bool parse(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h" || i + 1 >= argc) return false;
    const std::string v = argv[++i];
    bool ok = true;
    if (arg == "--store") {
      o->store = v;
    } else if (arg == "--reclaim") {
      ok = v == "fifo" || v == "reinsert";
      o->reclaim = v == "fifo" ? conf::SsdReclaim::kFifo : conf::SsdReclaim::kReinsert;
    } else if (arg == "--requests") {
      ok = parseLong(v, 1000, 100000000, &o->requests);
    } else if (arg == "--seed") {
      ok = parseLong(v, 0, 1L << 40, &o->seed);
    } else if (arg == "--object-kib") {
      ok = parseLong(v, 1, 16384, &o->object_kib);
    } else if (arg == "--ram-mib") {
      ok = parseLong(v, 1, 65536, &o->ram_mib);
    } else if (arg == "--ssd-mib") {
      ok = parseLong(v, 1, 1 << 20, &o->ssd_mib);
    } else if (arg == "--region-kib") {
      ok = parseLong(v, 16, 1 << 20, &o->region_kib);
    } else if (arg == "--titles") {
      ok = parseLong(v, 1, 10000000, &o->titles);
    } else if (arg == "--segments") {
      ok = parseLong(v, 1, 100000, &o->segments);
    } else if (arg == "--zipf") {
      ok = parseDouble(v, 0.0, 3.0, &o->zipf);
    } else if (arg == "--sessions") {
      ok = parseLong(v, 1, 1000000, &o->sessions);
    } else if (arg == "--watch") {
      ok = parseLong(v, 1, 100000, &o->watch);
    } else if (arg == "--live-share") {
      ok = parseDouble(v, 0.0, 1.0, &o->live_share);
    } else if (arg == "--channels") {
      ok = parseLong(v, 1, 100000, &o->channels);
    } else if (arg == "--live-every") {
      ok = parseLong(v, 1, 100000000, &o->live_every);
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "ssd_trace: bad %s %s\n", arg.c_str(), v.c_str());
      return false;
    }
  }
  return !o->store.empty();
}

// The request generator (deterministic for a seed).
class VideoMix {
 public:
  explicit VideoMix(const Options& o) : o_(o), rng_(static_cast<uint64_t>(o.seed)) {
    cdf_.resize(static_cast<size_t>(o.titles));
    double sum = 0;
    for (long t = 0; t < o.titles; ++t) {
      sum += 1.0 / std::pow(static_cast<double>(t + 1), o.zipf);
      cdf_[static_cast<size_t>(t)] = sum;
    }
    for (double& c : cdf_) c /= sum;
    sessions_.resize(static_cast<size_t>(o.sessions));
    for (Session& s : sessions_) start(s);
  }

  // The path of the next request.
  std::string next() {
    ++n_;
    if (uniform_(rng_) < o_.live_share) {
      const long channel = static_cast<long>(uniform_(rng_) * static_cast<double>(o_.channels));
      return "/live/" + std::to_string(channel) + "/" + std::to_string(n_ / o_.live_every) + ".ts";
    }
    Session& s = sessions_[static_cast<size_t>(uniform_(rng_) * static_cast<double>(sessions_.size()))];
    std::string path = "/vod/" + std::to_string(s.title) + "/" + std::to_string(s.segment) + ".ts";
    ++s.segment;
    if (s.segment >= o_.segments || uniform_(rng_) < 1.0 / static_cast<double>(o_.watch)) start(s);
    return path;
  }

 private:
  struct Session {
    long title = 0;
    long segment = 0;
  };
  void start(Session& s) {
    const double u = uniform_(rng_);
    s.title = static_cast<long>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
    s.segment = uniform_(rng_) < 0.2
                    ? static_cast<long>(uniform_(rng_) * static_cast<double>(o_.segments))
                    : 0;
  }

  const Options& o_;
  std::mt19937_64 rng_;
  std::uniform_real_distribution<double> uniform_{0.0, 1.0};
  std::vector<double> cdf_;
  std::vector<Session> sessions_;
  long n_ = 0;
};

struct Tally {
  uint64_t requests = 0, ram = 0, ssd = 0, origin = 0;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, &o)) {
    usage();
    return 2;
  }
  std::remove(o.store.c_str());
  conf::SsdCacheConfig sc;
  sc.enabled = true;
  sc.path = o.store;
  sc.size_bytes = static_cast<uint64_t>(o.ssd_mib) << 20;
  sc.region_bytes = static_cast<uint64_t>(o.region_kib) << 10;
  sc.encrypt = true;  // ephemeral key: the store starts empty
  sc.reclaim = o.reclaim;
  sc.sync_interval = conf::Millis(0);
  sc.write_queue_bytes = 1ull << 30;
  std::string error;
  auto store = openSsdStore(sc, SystemClock::instance(), nullptr, &error);
  if (!store.isOk()) {
    std::fprintf(stderr, "ssd_trace: cannot open the store: %s\n", error.c_str());
    return 1;
  }
  conf::RamCacheConfig rc;
  rc.size_bytes = static_cast<uint64_t>(o.ram_mib) << 20;
  rc.max_object_bytes = 64ull << 20;
  auto cache = std::make_unique<Cache>(rc, SystemClock::instance());
  cache->attachSsd(store->get(), conf::SsdAdmission::kEvict);
  IoEngineOptions eo;
  eo.log = nullptr;
  auto engine = makeIoEngine((*store)->device(), eo);
  if (!engine.isOk()) {
    std::fprintf(stderr, "ssd_trace: no I/O engine: %s\n", engine.status().toString().c_str());
    return 1;
  }

  const uint64_t object_bytes = static_cast<uint64_t>(o.object_kib) << 10;
  const std::vector<uint8_t> payload(object_bytes, 0x5a);
  auto head = std::make_shared<ResponseHead>();
  head->status = 200;
  head->reason = "OK";
  head->headers = {{"Content-Type", "video/mp2t"}, {"ETag", "\"s\""}};
  head->content_length = object_bytes;
  head->buildWire();
  const auto fillFromOrigin = [&](FillWriter& fill) {
    Freshness f;
    f.response_time = SystemClock::instance().wallNow();
    f.lifetime = conf::Seconds(86400);
    f.explicit_lifetime = true;
    fill.publishHead(head, f, true, true);
    fill.append(payload.data(), payload.size());
    fill.finish();
  };

  VideoMix mix(o);
  const long warmup = o.requests / 5;
  Tally measured;
  uint64_t written_before = 0, reinserted_before = 0;
  const auto started = std::chrono::steady_clock::now();
  for (long n = 0; n < o.requests; ++n) {
    if (n == warmup) {
      const SsdStats s = (*store)->stats();
      written_before = s.regions_written * s.region_bytes;
      reinserted_before = s.bytes_reinserted;
      measured = Tally{};
    }
    // Keep the writer's queue short so that no admission is dropped for speed: the policies
    // are compared on what they keep, not on how fast this disk writes.
    for (int w = 0; w < 5000 && (*store)->stats().queued_bytes > (16ull << 20); ++w) {
      std::this_thread::sleep_for(1ms);
    }
    const CacheKey key = makeKey("trace", mix.next(), "");
    LookupResult r = cache->lookup(key, /*ssd_allowed=*/true);
    ++measured.requests;
    switch (r.kind) {
      case LookupResult::Kind::kHit:
        ++measured.ram;
        break;
      case LookupResult::Kind::kSsd: {
        bool fell_back = false;
        ObjectRef object = r.object;
        cache->readFromSsd(std::move(r.fill), **engine, [&](FillWriter fill) {
          fell_back = true;
          fillFromOrigin(fill);
        });
        for (int w = 0; w < 10000 && !object->isComplete() &&
                        object->state() != CacheObject::State::kAborted; ++w) {
          (*engine)->wait(10ms);
        }
        ++(fell_back ? measured.origin : measured.ssd);
        break;
      }
      default:  // kMiss (single-threaded: no kBusy; lifetimes outlast the run: no kStale)
        if (r.fill) fillFromOrigin(r.fill);
        ++measured.origin;
        break;
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  (*store)->flush();
  const SsdStats s = (*store)->stats();
  const double req = static_cast<double>(measured.requests);
  std::printf(
      "reclaim=%s requests=%llu ram_hit=%.4f ssd_hit=%.4f origin=%.4f "
      "ssd_written_mib=%.1f reinserted_mib=%.1f dropped=%llu corrupt=%llu seconds=%.1f\n",
      o.reclaim == conf::SsdReclaim::kFifo ? "fifo" : "reinsert",
      static_cast<unsigned long long>(measured.requests), measured.ram / req, measured.ssd / req,
      measured.origin / req,
      static_cast<double>(s.regions_written * s.region_bytes - written_before) / (1 << 20),
      static_cast<double>(s.bytes_reinserted - reinserted_before) / (1 << 20),
      static_cast<unsigned long long>(s.inserts_dropped),
      static_cast<unsigned long long>(s.corrupt), seconds);
  engine->reset();
  cache.reset();
  store->reset();
  std::remove(o.store.c_str());
  return 0;
}
