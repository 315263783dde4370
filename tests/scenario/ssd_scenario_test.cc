// The SSD tier with the real binary: a RAM budget small enough that objects spill to a store
// file, SSD hits byte-exact, restarts (graceful and kill -9) keeping SSD objects, a corrupted
// store never served, storage = "ram" routes leaving no trace in the file, and the thread-pool
// fallback.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/scenario/scenario_env.h"

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;
using testsupport::simBody;

constexpr size_t kObjectBytes = 100000;
constexpr int kObjects = 30;  // 3 MB against a 1 MiB RAM tier: most of them spill
constexpr uint64_t kRegionBytes = 1 << 20;

struct SsdOptions {
  bool encrypt = true;
  bool key_file = true;         // a persistent key (else ephemeral)
  std::string io_backend = "auto";
  std::string admission = "evict";
};

class SsdScenarioTest : public ScenarioTest {
 protected:
  void SetUp() override {
    std::string error;
    sim_ = testsupport::startOriginSim({"--name", "dc-a"}, &error);
    ASSERT_TRUE(sim_) << error;
    dir_.emplace("streamedge-ssd");
    access_log_ = dir_->file("access.log");
    store_ = dir_->file("store");
    key_ = dir_->file("store.key");
    // 32 bytes as 64 hex digits, as `openssl rand -hex 32` writes them.
    ASSERT_TRUE(testsupport::writeFile(key_, "00112233445566778899aabbccddeeff"
                                             "0123456789abcdef0123456789abcdef\n"));
  }

  std::string config(const SsdOptions& o) const {
    std::string c = scenarioConfig(simPort(), access_log_,
                                   "\n  [[vhost.route]]\n  prefix = \"/obj/ram/\"\n"
                                   "  origin_group = \"main\"\n  storage = \"ram\"\n" +
                                       extra_routes_,
                                   "1MiB");
    c += "\n[cache.ssd]\npath = \"" + store_ + "\"\nsize = \"16MiB\"\nregion_size = \"1MiB\"\n"
         "encrypt = " + std::string(o.encrypt ? "true" : "false") + "\n"
         "io_backend = \"" + o.io_backend + "\"\nadmission = \"" + o.admission + "\"\n";
    if (o.encrypt && o.key_file) c += "key_file = \"" + key_ + "\"\n";
    return c;
  }

  // Starts the proxy and waits (≤ 10 s) until the store's index is rebuilt: the rebuild runs in
  // the background while the proxy serves, and these tests count SSD hits.
  void startProxy(const SsdOptions& o) {
    proxy_.reset();
    std::string error;
    proxy_ = testsupport::startStreamedge(config(o), &error);
    ASSERT_TRUE(proxy_) << error;
    std::string status;
    for (int attempt = 0; attempt < 200; ++attempt) {
      status = testsupport::httpGet(proxy_->admin_port, "/status").body;
      if (status.find("\"rebuilding\":false") != std::string::npos) return;
      std::this_thread::sleep_for(50ms);
    }
    FAIL() << "the SSD index was not rebuilt within 10 s: " << status;
  }

  std::string metrics() const {
    return testsupport::httpGet(proxy_->admin_port, "/metrics").body;
  }

  // `query`: more origin simulator knobs ("&cc=...").
  static std::string target(const std::string& prefix, int i, const std::string& query = "") {
    return prefix + std::to_string(i) + ".ts?size=" + std::to_string(kObjectBytes) + query;
  }
  static std::string path(const std::string& prefix, int i) {
    return prefix + std::to_string(i) + ".ts";
  }

  // Fetches every object once (all misses) and waits until the SSD index holds at least
  // `min_on_ssd` objects and the writer has put them on the device (an idle sync or a full
  // region). Returns the SSD object count.
  double fillAndSpill(const std::string& prefix, double min_on_ssd, const std::string& query = "") {
    for (int i = 0; i < kObjects; ++i) {
      const HttpResponse r = get(target(prefix, i, query));
      EXPECT_EQ(r.status, 200) << r.error << proxyLog();
      EXPECT_EQ(r.body, simBody(path(prefix, i), kObjectBytes));
    }
    double on_ssd = -1;
    for (int attempt = 0; attempt < 100; ++attempt) {  // ≤ 10 s
      const std::string m = metrics();
      on_ssd = metricValue(m, "streamedge_cache_objects", "tier=\"ssd\"");
      // Writes are counted when they end: one more idle sync after the count settles.
      if (on_ssd >= min_on_ssd && metricValue(m, "streamedge_ssd_write_seconds_count") >= 1) break;
      std::this_thread::sleep_for(100ms);
    }
    std::this_thread::sleep_for(1500ms);  // past the writer's 1 s idle sync
    return on_ssd;
  }

  // Requests every object again; returns how many were served without a new origin fetch.
  // Every body must be exact, wherever it came from.
  int refetchAndCountCacheServed(const std::string& prefix, long fetches_before) {
    int from_cache = 0;
    for (int i = 0; i < kObjects; ++i) {
      const HttpResponse r = get(target(prefix, i));
      EXPECT_EQ(r.status, 200) << r.error << proxyLog();
      EXPECT_EQ(r.body.size(), kObjectBytes);
      EXPECT_TRUE(r.body == simBody(path(prefix, i), kObjectBytes)) << "object " << i;
      const bool cached = originCount(path(prefix, i)) == fetches_before;
      // X-Cache tells the truth also when an SSD copy had to be replaced by an origin fetch.
      EXPECT_EQ(r.header("X-Cache"), cached ? "HIT" : "MISS") << "object " << i;
      if (cached) ++from_cache;
    }
    return from_cache;
  }

  std::string store_;
  std::string key_;
  std::string extra_routes_;  // more [[vhost.route]] tables for config()
};

TEST_F(SsdScenarioTest, ObjectsSpillToSsdAndAreServedByteExactWithoutOriginFetches) {
  startProxy({});
  const double on_ssd = fillAndSpill("/obj/spill/s", 15);
  ASSERT_GE(on_ssd, 15) << proxyLog();

  // RAM holds fewer than 10 of the 30: every object comes back from a cache tier.
  const double ssd_hits_before = metricValue(metrics(), "streamedge_ssd_hits_total");
  EXPECT_EQ(refetchAndCountCacheServed("/obj/spill/s", 1), kObjects);
  const std::string m = metrics();
  EXPECT_GE(metricValue(m, "streamedge_ssd_hits_total") - ssd_hits_before, 15) << m;
  EXPECT_GT(metricValue(m, "streamedge_ssd_read_seconds_count"), 0);
  EXPECT_EQ(metricValue(m, "streamedge_ssd_errors_total", "kind=\"corrupt\""), 0);
  EXPECT_EQ(metricValue(m, "streamedge_cache_capacity_bytes", "tier=\"ssd\""), 16.0 * kRegionBytes);
  const std::string status = testsupport::httpGet(proxy_->admin_port, "/status").body;
  EXPECT_NE(status.find("\"ssd\":{\"path\":\"" + store_ + "\""), std::string::npos) << status;
  EXPECT_NE(status.find("\"encrypted\":true,\"ephemeral_key\":false"), std::string::npos) << status;
  EXPECT_NE(status.find("\"capacity_bytes\":" + std::to_string(16 * kRegionBytes)), std::string::npos);

  // An SSD hit answers as a hit (and a range of it as 206).
  const HttpResponse hit = get(target("/obj/spill/s", 0));
  EXPECT_EQ(hit.header("X-Cache"), "HIT");
  const HttpResponse part = get(target("/obj/spill/s", 1), {{"Range", "bytes=1000-1999"}});
  EXPECT_EQ(part.status, 206);
  EXPECT_EQ(part.body, simBody(path("/obj/spill/s", 1), kObjectBytes).substr(1000, 1000));
}

TEST_F(SsdScenarioTest, ThreadPoolFallbackServesTheSameAndSaysSo) {
  startProxy({.io_backend = "threads"});
  ASSERT_GE(fillAndSpill("/obj/thr/s", 15), 15) << proxyLog();
  EXPECT_EQ(refetchAndCountCacheServed("/obj/thr/s", 1), kObjects);
  EXPECT_EQ(metricValue(metrics(), "streamedge_ssd_io_backend", "backend=\"threads\""), 1);
}

TEST_F(SsdScenarioTest, GracefulRestartKeepsSsdObjectsAsHits) {
  startProxy({});
  const double on_ssd = fillAndSpill("/obj/rs/s", 15);
  ASSERT_GE(on_ssd, 15);
  ASSERT_EQ(proxy_->process.stop(15s), 0) << proxyLog();
  checkLog(proxy_->process.log());

  startProxy({});  // the same store file and key: the index comes back from the checkpoint
  EXPECT_GE(metricValue(metrics(), "streamedge_cache_objects", "tier=\"ssd\""), on_ssd);
  const std::string status = testsupport::httpGet(proxy_->admin_port, "/status").body;
  EXPECT_NE(status.find("\"checkpoint_loaded\":true"), std::string::npos) << status;
  EXPECT_NE(status.find("\"rebuild_regions_scanned\":1,"), std::string::npos) << status;
  EXPECT_NE(proxy_->process.log().find("from the checkpoint"), std::string::npos) << proxyLog();
  EXPECT_GE(refetchAndCountCacheServed("/obj/rs/s", 1), static_cast<int>(on_ssd)) << proxyLog();
}

TEST_F(SsdScenarioTest, KillNineKeepsWhatWasOnTheDevice) {
  startProxy({});
  const double on_ssd = fillAndSpill("/obj/k9/s", 15);
  ASSERT_GE(on_ssd, 15);
  ASSERT_TRUE(proxy_->process.signal(SIGKILL));
  ASSERT_TRUE(proxy_->process.wait(10s).has_value());

  startProxy({});  // no checkpoint (none was due yet): the whole store is scanned
  EXPECT_GE(metricValue(metrics(), "streamedge_cache_objects", "tier=\"ssd\""), on_ssd);
  const std::string status = testsupport::httpGet(proxy_->admin_port, "/status").body;
  EXPECT_NE(status.find("\"checkpoint_loaded\":false"), std::string::npos) << status;
  EXPECT_GE(refetchAndCountCacheServed("/obj/k9/s", 1), static_cast<int>(on_ssd)) << proxyLog();
}

TEST_F(SsdScenarioTest, EphemeralKeyStoreIsEmptyAfterRestart) {
  startProxy({.key_file = false});
  ASSERT_GE(fillAndSpill("/obj/eph/s", 15), 15);
  ASSERT_EQ(proxy_->process.stop(15s), 0);
  startProxy({.key_file = false});
  EXPECT_EQ(metricValue(metrics(), "streamedge_cache_objects", "tier=\"ssd\""), 0);
  EXPECT_EQ(refetchAndCountCacheServed("/obj/eph/s", 1), 0);  // all from the origin again
}

TEST_F(SsdScenarioTest, StaleSsdCopiesAreRevalidatedAndA304ServesTheSsdBytes) {
  startProxy({});
  const std::string prefix = "/obj/reval/s";
  const std::string query = "&cc=max-age%3D4";  // the simulator sends an ETag by default
  const auto filled = std::chrono::steady_clock::now();
  ASSERT_GE(fillAndSpill(prefix, 15, query), 15) << proxyLog();
  std::this_thread::sleep_until(filled + 5s);  // every copy, in RAM or on SSD, is stale now

  // Each stale copy is asked about conditionally and the origin answers 304: the body comes
  // from the cache tier that held it, byte-exact, and is counted as a miss (the origin was
  // asked).
  const double revalidations_before = metricValue(metrics(), "streamedge_ssd_revalidations_total");
  for (int i = 0; i < kObjects; ++i) {
    const HttpResponse r = get(target(prefix, i, query));
    EXPECT_EQ(r.status, 200) << r.error << proxyLog();
    EXPECT_TRUE(r.body == simBody(path(prefix, i), kObjectBytes)) << "object " << i;
    EXPECT_EQ(r.header("X-Cache"), "MISS") << "object " << i;
    EXPECT_EQ(originCount(path(prefix, i)), 2) << "object " << i;
    EXPECT_EQ(originCount(path(prefix, i), /*not_modified=*/true), 1) << "object " << i;
  }
  const std::string m = metrics();
  EXPECT_GE(metricValue(m, "streamedge_ssd_revalidations_total") - revalidations_before, 15) << m;

  // Refreshed: hits again, from RAM or from the SSD (written again with the new freshness).
  for (int i = 0; i < kObjects; ++i) {
    const HttpResponse r = get(target(prefix, i, query));
    EXPECT_TRUE(r.body == simBody(path(prefix, i), kObjectBytes)) << "object " << i;
    EXPECT_EQ(r.header("X-Cache"), "HIT") << "object " << i;
    EXPECT_EQ(originCount(path(prefix, i)), 2) << "object " << i;
  }
}

TEST_F(SsdScenarioTest, RemovedCopiesDoNotComeBackAfterAKillNine) {
  startProxy({});
  const std::string prefix = "/obj/gone/s";
  const std::string query = "&cc=max-age%3D4";
  const auto filled = std::chrono::steady_clock::now();
  ASSERT_GE(fillAndSpill(prefix, 15, query), 15) << proxyLog();
  std::this_thread::sleep_until(filled + 5s);  // stale: the next request asks the origin

  // Objects 0..9 (the first filled: evicted to the SSD long since) may no longer be stored:
  // the origin answers no-store, and the cache must forget every copy of them.
  constexpr int kWithdrawn = 10;
  for (int i = 0; i < kWithdrawn; ++i) {
    const HttpResponse armed = testsupport::httpGet(
        simPort(), "/_sim/fault?path=" + path(prefix, i) + "&mode=nostore");
    ASSERT_EQ(armed.status, 200) << armed.body;
    const HttpResponse r = get(target(prefix, i, query));
    EXPECT_EQ(r.status, 200) << r.error;
    EXPECT_TRUE(r.body == simBody(path(prefix, i), kObjectBytes)) << "object " << i;
    EXPECT_EQ(r.header("Cache-Control"), "no-store");
  }
  EXPECT_GE(metricValue(metrics(), "streamedge_ssd_tombstones_total"), kWithdrawn);
  std::this_thread::sleep_for(1500ms);  // the writer's idle sync puts the tombstones on disk
  ASSERT_TRUE(proxy_->process.signal(SIGKILL));
  ASSERT_TRUE(proxy_->process.wait(10s).has_value());

  // After the restart a stale copy still on the SSD is revalidated (a 304). The withdrawn
  // objects have none: full fetches, no 304. Without tombstones their old copies would be
  // back in the rebuilt index and be revalidated like the others.
  startProxy({});
  int revalidated = 0;
  for (int i = 0; i < kObjects; ++i) {
    const long not_modified_before = originCount(path(prefix, i), true);
    const HttpResponse r = get(target(prefix, i, query));
    EXPECT_EQ(r.status, 200) << r.error << proxyLog();
    EXPECT_TRUE(r.body == simBody(path(prefix, i), kObjectBytes)) << "object " << i;
    const bool was_304 = originCount(path(prefix, i), true) > not_modified_before;
    if (i < kWithdrawn) {
      EXPECT_FALSE(was_304) << "withdrawn object " << i << " came back from the SSD";
    } else if (was_304) {
      ++revalidated;
    }
  }
  EXPECT_GE(revalidated, 5) << "the control: copies that were not removed are still there";
}

TEST_F(SsdScenarioTest, ASuccessfulPostRemovesTheSsdCopyToo) {
  extra_routes_ =
      "\n  [[vhost.route]]\n  prefix = \"/obj/inv-ssd/\"\n  origin_group = \"main\"\n"
      "  forward_other_methods = true\n  drop_params = [\"status\"]\n";
  startProxy({});
  const std::string prefix = "/obj/inv-ssd/s";
  ASSERT_GE(fillAndSpill(prefix, 15), 15) << proxyLog();
  const double tombstones = metricValue(metrics(), "streamedge_ssd_tombstones_total");
  // Objects 0..9 were filled first: long evicted from the 1 MiB RAM tier, on the SSD only.
  constexpr int kPosted = 5;
  for (int i = 0; i < kPosted; ++i) {
    const HttpResponse p = testsupport::httpRequest(port(), "POST", target(prefix, i, "&status=204"),
                                                    {}, 10s, "x");
    ASSERT_EQ(p.status, 204) << p.error << proxyLog();
  }
  // The writer thread appends the tombstones (and counts them) after the POSTs are answered.
  double written = 0;
  for (int attempt = 0; attempt < 100; ++attempt) {  // ≤ 5 s
    written = metricValue(metrics(), "streamedge_ssd_tombstones_total");
    if (written >= tombstones + kPosted) break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_GE(written, tombstones + kPosted);
  for (int i = 0; i < 10; ++i) {
    const long before = originCount(path(prefix, i));
    const HttpResponse r = get(target(prefix, i));
    EXPECT_EQ(r.status, 200) << r.error;
    EXPECT_TRUE(r.body == simBody(path(prefix, i), kObjectBytes)) << "object " << i;
    // The control: the SSD copies of objects that were not posted to still answer.
    EXPECT_EQ(r.header("X-Cache"), i < kPosted ? "MISS" : "HIT") << "object " << i;
    EXPECT_EQ(originCount(path(prefix, i)), before + (i < kPosted ? 1 : 0)) << "object " << i;
  }
}

// Vary across a restart: variants stored before it are hits at once (the rebuilt index knows
// which field the URL varies on), and a POST that invalidates the URL after the restart removes
// every variant from the SSD, for good: the next restart does not bring one back.
TEST_F(SsdScenarioTest, VariantsSurviveARestartAndAPostAfterItRemovesThemForGood) {
  extra_routes_ =
      "\n  [[vhost.route]]\n  prefix = \"/obj/vary-ssd/\"\n  origin_group = \"main\"\n"
      "  forward_other_methods = true\n  drop_params = [\"status\"]\n";
  const SsdOptions fill{.admission = "fill"};  // written to the SSD as soon as stored
  startProxy(fill);
  const std::string path = "/obj/vary-ssd/seg.ts";
  const std::string target = path + "?vary=Origin&vary_body=1";
  auto getFrom = [&](const std::string& origin) {
    return get(target, {{"Origin", "https://" + origin}});
  };
  for (const char* o : {"a.example", "b.example"}) {
    const HttpResponse r = getFrom(o);
    ASSERT_EQ(r.status, 200) << r.error << proxyLog();
    EXPECT_EQ(r.header("X-Cache"), "MISS");
    EXPECT_EQ(r.body, std::string("origin: https://") + o + "\n");
  }
  EXPECT_EQ(metricValue(metrics(), "streamedge_cache_vary_urls"), 1) << metrics();
  ASSERT_EQ(proxy_->process.stop(15s), 0) << proxyLog();  // a graceful stop writes the region

  startProxy(fill);
  std::string m = metrics();
  EXPECT_EQ(metricValue(m, "streamedge_cache_vary_urls"), 1) << m;  // rebuilt from the SSD
  for (const char* o : {"a.example", "b.example"}) {
    const HttpResponse r = getFrom(o);
    EXPECT_EQ(r.header("X-Cache"), "HIT") << o << proxyLog();
    EXPECT_EQ(r.body, std::string("origin: https://") + o + "\n");  // variants never cross
  }
  EXPECT_EQ(originCount(path), 2);
  EXPECT_NE(testsupport::httpGet(proxy_->admin_port, "/status").body.find("\"vary_urls\":1"),
            std::string::npos);

  const double tombstones = metricValue(metrics(), "streamedge_ssd_tombstones_total");
  const HttpResponse p =
      testsupport::httpRequest(port(), "POST", target + "&status=204", {}, 10s, "x");
  ASSERT_EQ(p.status, 204) << p.error << proxyLog();
  // One tombstone per variant, appended by the SSD writer thread (≤ 5 s).
  for (int attempt = 0; attempt < 100; ++attempt) {
    m = metrics();
    if (metricValue(m, "streamedge_ssd_tombstones_total") >= tombstones + 2) break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_GE(metricValue(m, "streamedge_ssd_tombstones_total"), tombstones + 2) << m;
  EXPECT_EQ(metricValue(m, "streamedge_cache_vary_urls"), 0) << m;
  const long after_post = originCount(path);  // the POST itself reached the origin
  const HttpResponse b = getFrom("b.example");  // learns the marker again, stores b afresh
  EXPECT_EQ(b.header("X-Cache"), "MISS");
  EXPECT_EQ(b.body, "origin: https://b.example\n");
  EXPECT_EQ(originCount(path), after_post + 1);
  ASSERT_EQ(proxy_->process.stop(15s), 0) << proxyLog();

  startProxy(fill);
  const HttpResponse a = getFrom("a.example");
  EXPECT_EQ(a.header("X-Cache"), "MISS") << "a purged variant came back after a restart";
  EXPECT_EQ(a.body, "origin: https://a.example\n");
  EXPECT_EQ(getFrom("b.example").header("X-Cache"), "HIT");  // the control: stored after it
  EXPECT_EQ(originCount(path), after_post + 2);
}

// Flips one byte at `offset` inside every region of the store file.
void flipByteInEveryRegion(const std::string& store, uint64_t offset) {
  std::fstream f(store, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.good());
  for (uint64_t region = 0; region < 16; ++region) {
    const auto at = static_cast<std::streamoff>(region * kRegionBytes + offset);
    char c = 0;
    f.seekg(at);
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x20);
    f.seekp(at);
    f.write(&c, 1);
  }
  ASSERT_TRUE(f.good());
}

TEST_F(SsdScenarioTest, CorruptedStoreBytesAreNeverServed) {
  for (const bool encrypt : {true, false}) {
    SCOPED_TRACE(encrypt ? "encrypted" : "plaintext");
    const std::string prefix = encrypt ? "/obj/cor-e/s" : "/obj/cor-p/s";
    std::remove(store_.c_str());
    startProxy({.encrypt = encrypt});
    ASSERT_GE(fillAndSpill(prefix, 15), 15);

    // While running: a byte of the first entry's body in every region (region header 64 +
    // entry header 32 + meta 40 + head < 1000 bytes: offset 50000 is body) changes under the
    // proxy. Full regions are read from the device: the damage is found on read, the copy
    // dropped and fetched again; every body stays exact.
    flipByteInEveryRegion(store_, 50000);
    EXPECT_LT(refetchAndCountCacheServed(prefix, 1), kObjects);
    std::string m = metrics();
    const double corrupt_on_read = metricValue(m, "streamedge_ssd_errors_total", "kind=\"corrupt\"");
    EXPECT_GE(corrupt_on_read, 1) << m;
    EXPECT_GE(metricValue(m, "streamedge_ssd_fallbacks_total"), 1);
    EXPECT_NE(proxy_->process.log().find("ssd"), std::string::npos);
    std::this_thread::sleep_for(1500ms);
    ASSERT_EQ(proxy_->process.stop(15s), 0);
    checkLog(proxy_->process.log());

    // At rest: the second entry of every region (its body spans offset 150000) is damaged while
    // the proxy is down. The index comes back from the checkpoint (no scan), so the damage is
    // found when the copy is read: still every body exact, nothing damaged served.
    flipByteInEveryRegion(store_, 150000);
    startProxy({.encrypt = encrypt});
    for (int i = 0; i < kObjects; ++i) {
      const HttpResponse r = get(target(prefix, i));
      EXPECT_EQ(r.status, 200) << r.error;
      EXPECT_TRUE(r.body == simBody(path(prefix, i), kObjectBytes)) << "object " << i;
    }
    m = metrics();
    EXPECT_GE(metricValue(m, "streamedge_ssd_errors_total", "kind=\"corrupt\""), 1) << m;
    ASSERT_EQ(proxy_->process.stop(15s), 0);
    checkLog(proxy_->process.log());
    proxy_.reset();
  }
}

// Where the body of the chunked SSD entry of `body_bytes` starts in the store file (format
// version 3, cache/ssd_format.h: region header 64 | entry header 32 | EntryMeta + head
// (sealed_bytes, in the clear header) | meta tag 16 when encrypted | chunk table (16 or 8 per
// 64 KiB chunk) | body), found by its size among the entries of every region; -1 when absent.
// `*newest`: whether its region is the newest written (maybe still open: read from memory).
// `*seen`: the entry sizes looked at (for the failure message).
int64_t chunkedBodyOffset(const std::string& store, uint64_t body_bytes, bool encrypt,
                          bool* newest, std::string* seen) {
  std::ifstream f(store, std::ios::binary);
  std::vector<char> region(kRegionBytes);
  const uint64_t chunks = (body_bytes + 65535) / 65536;
  int64_t found = -1;
  uint64_t found_seq = 0, max_seq = 0;
  for (uint64_t r = 0; r < 16 && f.read(region.data(), static_cast<std::streamsize>(region.size()));
       ++r) {
    const auto u32 = [&](size_t at) {
      uint32_t v = 0;
      std::memcpy(&v, region.data() + at, 4);
      return v;
    };
    uint64_t magic = 0, seq = 0;
    std::memcpy(&magic, region.data(), 8);
    std::memcpy(&seq, region.data() + 16, 8);
    if (magic != 0x3147455245455453ull) continue;  // "STEEREG1": never written
    max_seq = std::max(max_seq, seq);
    const uint32_t used = std::min<uint32_t>(u32(36), kRegionBytes);
    *seen += " | region " + std::to_string(r) + " (used " + std::to_string(used) + ", first " +
             std::to_string(u32(64)) + "):";
    for (size_t off = 64; off + 32 <= used;) {
      if (u32(off) != 0x45454553u) break;  // entry magic "SEEE"
      const uint32_t entry_bytes = u32(off + 8);
      const uint32_t sealed = u32(off + 12);
      const uint16_t flags = static_cast<uint16_t>(u32(off + 4) & 0xffff);
      *seen += " " + std::to_string(entry_bytes);
      const uint64_t body_at =
          32 + uint64_t{sealed} + (encrypt ? 16 : 0) + chunks * (encrypt ? 16 : 8);
      if ((flags & 4) && entry_bytes == (body_at + body_bytes + 7) / 8 * 8) {
        found = static_cast<int64_t>(r * kRegionBytes + off + body_at);
        found_seq = seq;
      }
      if (entry_bytes == 0) break;
      off += entry_bytes;
    }
  }
  *newest = found >= 0 && found_seq == max_seq;
  return found;
}

// Chunked SSD entries: one byte damaged in a middle chunk of a copy the proxy is about to read.
// The viewer gets nothing but verified bytes: the response starts with the chunks before the
// damaged one and is cut there (or, when the damage is found before its response began, a 502);
// the copy is dropped, and the next request gets the whole body from the origin (MISS).
TEST_F(SsdScenarioTest, ADamagedMiddleChunkCutsTheViewerAfterTheVerifiedBytesAndIsDropped) {
  constexpr uint64_t kBig = 5 * 65536 + 1000;  // 6 chunks
  for (const bool encrypt : {true, false}) {
    SCOPED_TRACE(encrypt ? "encrypted" : "plaintext");
    const std::string big_path = encrypt ? "/obj/chunk-e/big.ts" : "/obj/chunk-p/big.ts";
    const std::string big = big_path + "?size=" + std::to_string(kBig);
    const std::string expected = simBody(big_path, kBig);
    std::remove(store_.c_str());
    startProxy({.encrypt = encrypt});
    // The big object first: among the first evicted, so in a region that the spill below fills
    // and writes (read from the device afterwards, not from the region buffer).
    HttpResponse r = get(big);
    ASSERT_EQ(r.status, 200) << r.error;
    ASSERT_TRUE(r.body == expected);
    ASSERT_GE(fillAndSpill(encrypt ? "/obj/chunk-e/s" : "/obj/chunk-p/s", 15), 15);
    bool newest = false;
    std::string seen;
    int64_t body_at = chunkedBodyOffset(store_, kBig, encrypt, &newest, &seen);
    if (body_at >= 0 && newest) {
      // Its region may still be the open one (read from memory, not the file): more objects
      // move the writer on.
      ASSERT_GE(fillAndSpill(encrypt ? "/obj/chunk-e/t" : "/obj/chunk-p/t", 15), 15);
      seen.clear();
      body_at = chunkedBodyOffset(store_, kBig, encrypt, &newest, &seen);
    }
    ASSERT_GE(body_at, 0) << "the big object is not in the store file; entries:" << seen;
    ASSERT_FALSE(newest) << seen;
    if (!encrypt) {
      std::ifstream f(store_, std::ios::binary);
      std::string head(64, '\0');
      f.seekg(body_at);
      f.read(head.data(), 64);
      ASSERT_EQ(head, expected.substr(0, 64));  // the layout arithmetic found its body
    }
    {
      std::fstream f(store_, std::ios::in | std::ios::out | std::ios::binary);
      const auto at = static_cast<std::streamoff>(body_at + 3 * 65536 + 777);  // chunk 3 of 6
      char c = 0;
      f.seekg(at);
      f.read(&c, 1);
      c = static_cast<char>(c ^ 0x10);
      f.seekp(at);
      f.write(&c, 1);
      ASSERT_TRUE(f.good());
    }
    const long fetches = originCount(big_path);
    r = get(big);
    if (r.status == 200) {
      EXPECT_EQ(r.header("X-Cache"), "HIT");
      EXPECT_FALSE(r.ok()) << "a damaged copy was served whole";
      // Everything readable is queued before the abort closes the connection: exactly the
      // three chunks before the damaged one.
      EXPECT_EQ(r.body.size(), 3 * 65536u);
      EXPECT_TRUE(r.body == expected.substr(0, r.body.size())) << "a wrong byte was served";
    } else {
      EXPECT_EQ(r.status, 502) << r.error;
    }
    EXPECT_EQ(originCount(big_path), fetches);  // nothing fetched behind the viewer's back
    std::string m = metrics();
    EXPECT_GE(metricValue(m, "streamedge_ssd_errors_total", "kind=\"corrupt\""), 1) << m;
    // Dropped: the next viewer gets the whole body from the origin.
    r = get(big);
    EXPECT_EQ(r.status, 200) << r.error;
    EXPECT_TRUE(r.ok());
    EXPECT_TRUE(r.body == expected);
    EXPECT_EQ(r.header("X-Cache"), "MISS");
    EXPECT_EQ(originCount(big_path), fetches + 1);
    ASSERT_EQ(proxy_->process.stop(15s), 0);
    checkLog(proxy_->process.log());
    proxy_.reset();
  }
}

TEST_F(SsdScenarioTest, RamOnlyRoutesLeaveNoTraceInTheStoreFile) {
  for (const bool encrypt : {false, true}) {
    SCOPED_TRACE(encrypt ? "encrypted" : "plaintext");
    std::remove(store_.c_str());
    const std::string tag = encrypt ? "e" : "p";
    startProxy({.encrypt = encrypt});
    // Interleaved, so both kinds are evicted from RAM alike.
    for (int i = 0; i < kObjects; ++i) {
      for (const std::string& prefix : {"/obj/ram/secret-" + tag + "/s", "/obj/pub-" + tag + "/s"}) {
        const HttpResponse r = get(target(prefix, i));
        ASSERT_EQ(r.status, 200) << r.error;
      }
    }
    std::this_thread::sleep_for(1500ms);
    ASSERT_EQ(proxy_->process.stop(15s), 0);  // writes the open region
    const std::string file = testsupport::readFile(store_);
    ASSERT_GE(file.size(), 16 * kRegionBytes);
    EXPECT_EQ(file.find("SIMDATA:/obj/ram/"), std::string::npos);
    if (encrypt) {
      EXPECT_EQ(file.find("SIMDATA:"), std::string::npos);  // nothing readable at all
    } else {
      // The control: the grep does find spilled objects of the other route in plaintext.
      EXPECT_NE(file.find("SIMDATA:/obj/pub-" + tag + "/s"), std::string::npos);
    }
    proxy_.reset();
  }
}

}  // namespace
}  // namespace streamedge::scenario
