// The test support itself: the origin simulator in-process on a real loopback socket, the test
// client against it, the herd, and the process harness with /bin/sh.
#include "tests/support/origin_sim.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <variant>

#include "streaming/dash_mpd.h"
#include "streaming/hls_playlist.h"
#include "tests/support/herd.h"
#include "tests/support/http_client.h"
#include "tests/support/process.h"

namespace streamedge::testsupport {
namespace {

using std::chrono::milliseconds;

class OriginSimTest : public ::testing::Test {
 protected:
  void SetUp() override {
    OriginSimOptions options;
    options.name = "dc-test";
    options.segment_size = 5000;
    sim_ = std::make_unique<OriginSim>(options);
    std::string error;
    ASSERT_TRUE(sim_->startThread(&error)) << error;
    port_ = sim_->port();
    ASSERT_NE(port_, 0);
  }
  void TearDown() override { sim_.reset(); }

  std::unique_ptr<OriginSim> sim_;
  uint16_t port_ = 0;
};

int countOf(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++n;
  return n;
}

TEST(SimBody, SlicesMatchTheWholeBodyAtEveryOffset) {
  const std::string whole = simBody("/obj/slice.bin", 5000);
  for (size_t offset : {0, 1, 7, 8, 20, 21, 22, 29, 100, 4093, 4999}) {
    for (size_t n : {1, 3, 8, 9, 64, 5000}) {
      EXPECT_EQ(simBodySlice("/obj/slice.bin", 5000, offset, n), whole.substr(offset, n))
          << offset << "+" << n;
    }
  }
  EXPECT_EQ(simBodySlice("/obj/slice.bin", 5000, 5000, 10), "");
  EXPECT_EQ(simBodySlice("/obj/slice.bin", 10, 0, 100), simBody("/obj/slice.bin", 10));
}

TEST(SimBody, IsDeterministicPrefixStableAndMarked) {
  const std::string a = simBody("/obj/x", 1000);
  EXPECT_EQ(a.size(), 1000u);
  EXPECT_EQ(a.rfind("SIMDATA:/obj/x:", 0), 0u);
  EXPECT_EQ(a, simBody("/obj/x", 1000));
  EXPECT_EQ(simBody("/obj/x", 100), a.substr(0, 100));
  EXPECT_NE(simBody("/obj/y", 1000), a);
  EXPECT_EQ(simBody("/obj/x", 3), "SIM");
  EXPECT_NE(simEtag("/obj/x", 1000), simEtag("/obj/x", 1001));
}

TEST_F(OriginSimTest, LivePlaylistListsTheWindowAndSegmentsCarrySimBodies) {
  HttpResponse pl = httpGet(port_, "/live/720p/index.m3u8");
  ASSERT_TRUE(pl.ok()) << pl.error;
  EXPECT_EQ(pl.status, 200);
  EXPECT_EQ(pl.header("X-Origin"), "dc-test");
  EXPECT_EQ(pl.header("Content-Type"), "application/vnd.apple.mpegurl");
  EXPECT_FALSE(pl.hasHeader("Cache-Control"));  // no --playlist-cache-control
  EXPECT_EQ(pl.body.rfind("#EXTM3U\n", 0), 0u);
  EXPECT_NE(pl.body.find("#EXT-X-TARGETDURATION:2\n"), std::string::npos);
  EXPECT_EQ(countOf(pl.body, "#EXTINF:"), 6);
  // The last listed segment is floor(now / target).
  const size_t last = pl.body.rfind("seg_");
  ASSERT_NE(last, std::string::npos);
  const long newest = std::stol(pl.body.substr(last + 4));
  const long now_seq = static_cast<long>(std::time(nullptr) / 2);
  EXPECT_LE(std::abs(newest - now_seq), 1);

  const std::string seg = "/live/720p/seg_" + std::to_string(newest) + ".ts";
  HttpResponse s = httpGet(port_, seg);
  ASSERT_TRUE(s.ok()) << s.error;
  EXPECT_EQ(s.body, simBody(seg, 5000));
  EXPECT_EQ(s.header("ETag"), simEtag(seg, 5000));
  EXPECT_EQ(s.header("Cache-Control"), "max-age=3600");
  EXPECT_EQ(s.header("Content-Length"), "5000");
  EXPECT_EQ(sim_->counts(seg).total, 1u);
  EXPECT_EQ(simCount(port_, seg), 1);
  EXPECT_EQ(simCount(port_, "/live/720p/index.m3u8"), 1);
}

TEST_F(OriginSimTest, DashAndVodContent) {
  HttpResponse mpd = httpGet(port_, "/dash/manifest.mpd");
  ASSERT_TRUE(mpd.ok()) << mpd.error;
  EXPECT_NE(mpd.body.find("type=\"dynamic\""), std::string::npos);
  EXPECT_NE(mpd.body.find("availabilityStartTime=\"2024-01-01T00:00:00Z\""), std::string::npos);
  EXPECT_NE(mpd.body.find("media=\"$RepresentationID$/seg_$Number$.m4s\""), std::string::npos);
  HttpResponse init = httpGet(port_, "/dash/720p/init.mp4");
  EXPECT_EQ(init.body, simBody("/dash/720p/init.mp4", 1000));
  HttpResponse vod = httpGet(port_, "/vod/movie/index.m3u8");
  EXPECT_NE(vod.body.find("#EXT-X-PLAYLIST-TYPE:VOD"), std::string::npos);
  EXPECT_NE(vod.body.find("#EXT-X-ENDLIST"), std::string::npos);
  EXPECT_EQ(countOf(vod.body, "#EXTINF:"), 10);
  EXPECT_EQ(httpGet(port_, "/vod/movie/seg_9.ts").status, 200);
  EXPECT_EQ(httpGet(port_, "/vod/movie/seg_10.ts").status, 404);
  EXPECT_EQ(httpGet(port_, "/elsewhere").status, 404);
}

TEST_F(OriginSimTest, KnobsShapeTheResponse) {
  HttpResponse r = httpGet(port_, "/obj/k?size=123&cc=public%2C%20max-age%3D5&set_cookie=1&vary=Accept&etag=0&lm=0");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.body, simBody("/obj/k", 123));
  EXPECT_EQ(r.header("Cache-Control"), "public, max-age=5");
  EXPECT_TRUE(r.hasHeader("Set-Cookie"));
  EXPECT_EQ(r.header("Vary"), "Accept");
  EXPECT_FALSE(r.hasHeader("ETag"));
  EXPECT_FALSE(r.hasHeader("Last-Modified"));

  HttpResponse st = httpGet(port_, "/obj/k?size=10&status=404");
  EXPECT_EQ(st.status, 404);
  EXPECT_EQ(st.body, simBody("/obj/k", 10));

  HttpResponse ch = httpGet(port_, "/obj/k?size=70000&chunked=1");
  ASSERT_TRUE(ch.ok()) << ch.error;
  EXPECT_EQ(ch.header("Transfer-Encoding"), "chunked");
  EXPECT_FALSE(ch.hasHeader("Content-Length"));
  EXPECT_EQ(ch.body, simBody("/obj/k", 70000));

  HttpResponse rg = httpGet(port_, "/obj/k?size=100", {{"Range", "bytes=10-19"}});
  EXPECT_EQ(rg.status, 206);
  EXPECT_EQ(rg.header("Content-Range"), "bytes 10-19/100");
  EXPECT_EQ(rg.body, simBody("/obj/k", 100).substr(10, 10));

  HttpResponse head = httpRequest(port_, "HEAD", "/obj/k?size=100");
  ASSERT_TRUE(head.ok()) << head.error;
  EXPECT_EQ(head.header("Content-Length"), "100");
  EXPECT_TRUE(head.body.empty());
}

TEST_F(OriginSimTest, HdrKnobAddsAnyResponseFieldAlsoOnA304) {
  HttpResponse r = httpGet(port_,
                           "/obj/h?size=10&cc=no-store&hdr=CDN-Cache-Control%3A%20max-age%3D60"
                           "&hdr=X-A%3Ab&hdr=X-A%3Ac&hdr=bad%20name%3Ax&hdr=X-Bad%3Aa%0Db&hdr=novalue");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.header("Cache-Control"), "no-store");
  EXPECT_EQ(r.header("CDN-Cache-Control"), "max-age=60");
  EXPECT_EQ(r.headerValues("X-A"), (std::vector<std::string>{"b", "c"}));
  EXPECT_FALSE(r.hasHeader("bad name"));
  EXPECT_FALSE(r.hasHeader("X-Bad"));
  HttpResponse nm = httpGet(port_, "/obj/h?size=10&hdr=CDN-Cache-Control%3Amax-age%3D60",
                            {{"If-None-Match", simEtag("/obj/h", 10)}});
  EXPECT_EQ(nm.status, 304);
  EXPECT_EQ(nm.header("CDN-Cache-Control"), "max-age=60");
}

TEST_F(OriginSimTest, ConditionalRequestsGet304AndAreCountedApart) {
  const std::string etag = simEtag("/obj/c", 100);
  HttpResponse inm = httpGet(port_, "/obj/c?size=100", {{"If-None-Match", etag}});
  EXPECT_EQ(inm.status, 304);
  EXPECT_EQ(inm.header("ETag"), etag);
  EXPECT_EQ(inm.header("Cache-Control"), "max-age=3600");
  EXPECT_TRUE(inm.body.empty());
  HttpResponse ims = httpGet(port_, "/obj/c?size=100", {{"If-Modified-Since", std::string(kSimLastModified)}});
  EXPECT_EQ(ims.status, 304);
  HttpResponse other = httpGet(port_, "/obj/c?size=100", {{"If-None-Match", "\"nope\""}});
  EXPECT_EQ(other.status, 200);
  EXPECT_EQ(simCount(port_, "/obj/c"), 3);
  EXPECT_EQ(simCount(port_, "/obj/c", /*not_modified=*/true), 2);
  auto counts = simCounts(port_);
  EXPECT_EQ(counts["/obj/c"], 3);
  EXPECT_TRUE(simReset(port_));
  EXPECT_EQ(simCount(port_, "/obj/c"), 0);
}

TEST_F(OriginSimTest, FaultsAreVisibleToTheClient) {
  HttpResponse reset = httpGet(port_, "/obj/f?size=100000&fault=reset");
  EXPECT_EQ(reset.status, 200);
  EXPECT_TRUE(reset.truncated);
  EXPECT_TRUE(reset.closed);
  EXPECT_EQ(reset.body, simBody("/obj/f", 50000));

  HttpResponse shrt = httpGet(port_, "/obj/f?size=1000&fault=short");
  EXPECT_TRUE(shrt.truncated);
  EXPECT_EQ(shrt.body.size(), 500u);

  HttpConnection raw;
  ASSERT_TRUE(raw.connect(port_));
  ASSERT_TRUE(raw.sendRaw("GET /obj/f?size=10&fault=long HTTP/1.1\r\nHost: x\r\n\r\n"));
  HttpResponse lng = raw.readResponse();
  EXPECT_EQ(lng.body, simBody("/obj/f", 10));  // the client stops at the framing

  HttpResponse hang = httpGet(port_, "/obj/f?fault=hang", {}, milliseconds(200));
  EXPECT_TRUE(hang.timed_out);
  EXPECT_EQ(hang.status, 0);

  ASSERT_TRUE(simFault(port_, "/obj/armed", "503", 2));
  EXPECT_EQ(httpGet(port_, "/obj/armed").status, 503);
  EXPECT_EQ(httpGet(port_, "/obj/armed").status, 503);
  EXPECT_EQ(httpGet(port_, "/obj/armed").status, 200);

  ASSERT_TRUE(simFaultAll(port_, "500"));
  EXPECT_EQ(httpGet(port_, "/obj/any").status, 500);
  EXPECT_EQ(httpGet(port_, "/live/master.m3u8").status, 500);
  EXPECT_EQ(simCount(port_, "/obj/any"), 1);  // control requests still work
  ASSERT_TRUE(simFaultAll(port_, "off"));
  EXPECT_EQ(httpGet(port_, "/obj/any").status, 200);
}

TEST_F(OriginSimTest, ThrottledBodyLeavesTheLoopFreeForControlRequests) {
  HttpResponse slow;
  std::thread t([&] { slow = httpGet(port_, "/obj/slow?size=300000&rate=1000000"); });
  std::this_thread::sleep_for(milliseconds(50));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(simCount(port_, "/obj/slow"), 1);
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(200));
  t.join();
  ASSERT_TRUE(slow.ok()) << slow.error;
  EXPECT_EQ(slow.body, simBody("/obj/slow", 300000));
  EXPECT_GE(slow.last_byte_ms, 200.0);
  EXPECT_LT(slow.first_byte_ms, 150.0);
}

TEST_F(OriginSimTest, DelayPostponesTheHeadAndKeepAliveReusesTheConnection) {
  HttpConnection c;
  ASSERT_TRUE(c.connect(port_));
  const int fd = c.fd();
  HttpResponse a = c.request("GET", "/obj/d?size=10&delay_ms=100");
  ASSERT_TRUE(a.ok()) << a.error;
  EXPECT_GE(a.first_byte_ms, 90.0);
  EXPECT_FALSE(a.closed);
  HttpResponse b = c.request("GET", "/obj/d?size=10");
  ASSERT_TRUE(b.ok()) << b.error;
  EXPECT_EQ(c.fd(), fd);
  HttpResponse last = c.request("GET", "/obj/d?size=10", {{"Connection", "close"}});
  EXPECT_TRUE(last.ok());
  EXPECT_EQ(last.header("Connection"), "close");
  EXPECT_FALSE(c.isOpen());
}

TEST_F(OriginSimTest, HerdGetsEveryByte) {
  HerdOptions options;
  options.port = port_;
  options.target = "/obj/herd?size=20000";
  options.clients = 30;
  options.expect_body_path = "/obj/herd";
  options.expect_body_size = 20000;
  HerdResult r = runHerd(options);
  EXPECT_EQ(r.ok, 30) << r.firstError();
  EXPECT_EQ(r.bad, 0);
  EXPECT_EQ(simCount(port_, "/obj/herd"), 30);
  EXPECT_EQ(r.summary().rfind("clients=30 ok=30 bad=0 ttfb_p50_ms=", 0), 0u) << r.summary();

  options.expect_body_path = "/obj/other";
  HerdResult wrong = runHerd(options);
  EXPECT_EQ(wrong.bad, 30);
}

TEST(ChildProcess, WaitsForLinesAndStops) {
  std::string dir_path;
  {
    TempDir dir;
    dir_path = dir.path();
    ASSERT_FALSE(dir_path.empty());
    ASSERT_TRUE(writeFile(dir.file("x"), "y"));
    ChildProcess p;
    std::string error;
    ASSERT_TRUE(p.start("/bin/sh", {"-c", "echo starting; echo 'listening on 127.0.0.1:4242'; exec sleep 30"},
                        ChildOptions{dir.file("log"), {}}, &error))
        << error;
    auto line = p.waitForLine("listening on", std::chrono::seconds(5));
    ASSERT_TRUE(line.has_value()) << p.log();
    EXPECT_EQ(*line, "listening on 127.0.0.1:4242");
    const size_t offset = p.logSize();
    EXPECT_FALSE(p.waitForLine("starting", milliseconds(50), offset).has_value());  // only new lines
    EXPECT_FALSE(p.waitForLine("never printed", milliseconds(50)).has_value());
    EXPECT_TRUE(p.running());
    EXPECT_EQ(p.stop(), -SIGTERM);
    EXPECT_FALSE(p.running());
  }
  EXPECT_FALSE(std::filesystem::exists(dir_path));
}

TEST(ChildProcess, ReportsAnEarlyExit) {
  ChildProcess p;
  ASSERT_TRUE(p.start("/bin/sh", {"-c", "echo bye; exit 3"}));
  EXPECT_FALSE(p.waitForLine("never", std::chrono::seconds(5)).has_value());
  EXPECT_EQ(p.exitStatus(), 3);
  EXPECT_EQ(p.logTail(), "bye\n");
}

// The origin_sim executable is built next to this test binary (tests/CMakeLists.txt); when it
// has not been built, the process-level test is skipped.
std::string originSimNextToMe() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  auto sim = self.parent_path() / "origin_sim";
  return std::filesystem::exists(sim, ec) ? sim.string() : "";
}

TEST(OriginSimProcess, PrintsItsPortServesAndExitsCleanlyOnSigterm) {
  const std::string binary = originSimNextToMe();
  if (binary.empty()) GTEST_SKIP() << "origin_sim not built";
  std::string error;
  auto sim = startOriginSimFrom(binary, {"--name", "dc-proc", "--segment-size", "777", "--playlist-cache-control",
                                     "max-age=1"},
                            &error);
  ASSERT_TRUE(sim.has_value()) << error;
  HttpResponse seg = httpGet(sim->port, "/live/360p/seg_1.ts");
  EXPECT_EQ(seg.header("X-Origin"), "dc-proc");
  EXPECT_EQ(seg.body, simBody("/live/360p/seg_1.ts", 777));
  EXPECT_EQ(httpGet(sim->port, "/live/master.m3u8").header("Cache-Control"), "max-age=1");
  EXPECT_EQ(simCount(sim->port, "/live/360p/seg_1.ts"), 1);
  EXPECT_EQ(sim->process.stop(), 0) << sim->process.log();
}

// ---- low latency: LL-HLS (parts, hints, blocking reload, delta updates) and chunked LL-DASH

class LowLatencySimTest : public ::testing::Test {
 protected:
  void SetUp() override {
    OriginSimOptions options;
    options.segment_size = 40000;
    options.target_duration_s = 1;
    options.part_ms = 250;  // four parts a segment
    sim_ = std::make_unique<OriginSim>(options);
    std::string error;
    ASSERT_TRUE(sim_->startThread(&error)) << error;
    port_ = sim_->port();
  }
  streaming::HlsMediaPlaylist playlist(const std::string& target, HttpResponse* out = nullptr) {
    HttpResponse r = httpGet(port_, target);
    if (out) *out = r;
    EXPECT_EQ(r.status, 200) << target << " " << r.body;
    auto parsed = streaming::parseHlsPlaylist(r.body);
    EXPECT_TRUE(parsed.isOk()) << parsed.status().detail() << "\n" << r.body;
    if (!parsed.isOk()) return {};
    return std::get<streaming::HlsMediaPlaylist>(std::move(parsed).value());
  }
  std::unique_ptr<OriginSim> sim_;
  uint16_t port_ = 0;
};

TEST_F(LowLatencySimTest, LlHlsPlaylistHasPartsHintsAndServerControl) {
  const streaming::HlsMediaPlaylist p = playlist("/ll/720p/index.m3u8");
  EXPECT_EQ(p.target_duration_s, 1u);
  ASSERT_TRUE(p.part_target_s.has_value());
  EXPECT_DOUBLE_EQ(*p.part_target_s, 0.25);
  EXPECT_TRUE(p.server_control.can_block_reload);
  EXPECT_DOUBLE_EQ(p.server_control.can_skip_until_s.value_or(0), 6.0);
  EXPECT_EQ(p.segments.size(), 12u);  // 2 × the default window
  // The newest three segments keep their four parts; the hint names the part being made.
  EXPECT_EQ(p.segments.back().parts.size(), 4u);
  EXPECT_TRUE(p.segments.back().parts[0].independent);
  EXPECT_TRUE(p.segments.front().parts.empty());
  ASSERT_EQ(p.preload_hints.size(), 1u);
  EXPECT_EQ(p.preload_hints[0].uri, "part_" + std::to_string(p.nextMsn()) + "_" +
                                        std::to_string(p.trailing_parts.size()) + ".m4s");
}

TEST_F(LowLatencySimTest, DeltaUpdateSkipsOldSegments) {
  const streaming::HlsMediaPlaylist full = playlist("/ll/720p/index.m3u8?window=20");
  const streaming::HlsMediaPlaylist delta = playlist("/ll/720p/index.m3u8?window=20&_HLS_skip=YES");
  EXPECT_EQ(full.skipped_segments, 0u);
  EXPECT_GE(delta.skipped_segments, 12u);
  EXPECT_EQ(delta.media_sequence, full.media_sequence);
  EXPECT_LE(delta.segments.size(), 8u);
  // The same live edge (the two requests may straddle a segment boundary).
  EXPECT_LE(delta.nextMsn() - full.nextMsn(), 1u);
}

TEST_F(LowLatencySimTest, BlockingReloadHoldsUntilThePartExists) {
  const streaming::HlsMediaPlaylist now = playlist("/ll/720p/index.m3u8");
  const uint64_t msn = now.nextMsn();
  const uint64_t part = now.trailing_parts.size();  // the hinted part
  const auto start = std::chrono::steady_clock::now();
  const streaming::HlsMediaPlaylist later = playlist(
      "/ll/720p/index.m3u8?_HLS_msn=" + std::to_string(msn) + "&_HLS_part=" + std::to_string(part));
  const auto waited = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
  EXPECT_TRUE(later.contains(msn, part)) << msn << "." << part;
  EXPECT_LE(waited, milliseconds(600));  // one part (250 ms) plus slack
  // A whole later segment: held about until it ends.
  const streaming::HlsMediaPlaylist seg =
      playlist("/ll/720p/index.m3u8?_HLS_msn=" + std::to_string(later.nextMsn()));
  EXPECT_TRUE(seg.contains(later.nextMsn(), std::nullopt));
  EXPECT_EQ(sim_->counts("/ll/720p/index.m3u8").total, 3u);
}

TEST_F(LowLatencySimTest, BadOrTooFarBlockingRequestsGet400AtOnce) {
  const streaming::HlsMediaPlaylist now = playlist("/ll/720p/index.m3u8");
  for (const std::string& q : {"_HLS_msn=" + std::to_string(now.nextMsn() + 5),
                              "_HLS_msn=" + std::to_string(now.nextMsn()) + "&_HLS_part=9",
                              std::string("_HLS_part=1"), std::string("_HLS_msn=x"),
                              std::string("_HLS_skip=maybe")}) {
    const HttpResponse r = httpGet(port_, "/ll/720p/index.m3u8?" + q, {}, std::chrono::seconds(2));
    EXPECT_EQ(r.status, 400) << q;
    EXPECT_LT(r.last_byte_ms, 200) << q;
  }
}

TEST_F(LowLatencySimTest, HintedPartIsStreamedChunkedAsItIsEncoded) {
  const streaming::HlsMediaPlaylist now = playlist("/ll/720p/index.m3u8");
  ASSERT_EQ(now.preload_hints.size(), 1u);
  const std::string path = "/ll/720p/" + now.preload_hints[0].uri;
  const HttpResponse r = httpGet(port_, path);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  const bool completed_meanwhile = !r.hasHeader("Transfer-Encoding");
  if (!completed_meanwhile) {
    EXPECT_EQ(r.header("Transfer-Encoding"), "chunked");
    EXPECT_FALSE(r.hasHeader("Content-Length"));
    EXPECT_LE(r.last_byte_ms, 400);  // done when the part is (≤ 250 ms)
  }
  EXPECT_EQ(r.body, simBody(path, 10000));  // segment_size / 4
  // A part that does not exist yet is a 404.
  EXPECT_EQ(httpGet(port_, "/ll/720p/part_" + std::to_string(now.nextMsn() + 3) + "_0.m4s").status, 404);
}

TEST_F(LowLatencySimTest, ChunkedDashSegmentArrivesChunkByChunkWhileEncoded) {
  const HttpResponse mpd = httpGet(port_, "/lldash/manifest.mpd");
  ASSERT_EQ(mpd.status, 200);
  const auto parsed = streaming::parseDashMpd(mpd.body);
  ASSERT_TRUE(parsed.isOk()) << parsed.status().detail();
  EXPECT_TRUE(parsed->dynamic);
  const auto& tmpl = *parsed->periods[0].adaptation_sets[0].representations[0].segment_template;
  EXPECT_DOUBLE_EQ(tmpl.availability_time_offset_s.value_or(0), 0.75);
  EXPECT_EQ(tmpl.start_number, 0u);

  // Wait for the start of a segment, so that most of it is still to be encoded.
  const auto wall_ms = [] {
    return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  };
  for (int i = 0; i < 100 && wall_ms() % 1000 > 100; ++i) std::this_thread::sleep_for(milliseconds(10));
  const int64_t current = wall_ms() / 1000;
  const std::string path = "/lldash/720p/seg_" + std::to_string(current) + ".m4s";
  const HttpResponse r = httpGet(port_, path);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.header("Transfer-Encoding"), "chunked");
  EXPECT_EQ(r.body, simBody(path, 40000));
  // The first bytes come at once, the last ones when the segment is complete.
  EXPECT_LT(r.first_byte_ms, 150);
  EXPECT_GT(r.last_byte_ms - r.first_byte_ms, 500);
  // A finished segment has a length; a future one does not exist.
  const HttpResponse done = httpGet(port_, "/lldash/720p/seg_" + std::to_string(current - 1) + ".m4s");
  EXPECT_EQ(done.status, 200);
  EXPECT_EQ(done.header("Content-Length"), "40000");
  EXPECT_EQ(httpGet(port_, "/lldash/720p/seg_" + std::to_string(current + 5) + ".m4s").status, 404);
}

}  // namespace
}  // namespace streamedge::testsupport
