// The caching proxy end to end: the real streamedge binary in front of the real origin simulator
// on loopback, real HTTP. Each test owns a path prefix, asserts on headers, exact bytes (the
// simulator's bodies are deterministic) and the simulator's request counters.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "tests/scenario/scenario_env.h"

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;
using testsupport::simBody;

TEST_F(ScenarioTest, MissThenHitWithOneOriginFetchAndExactBytes) {
  HttpResponse first = get("/obj/mh/a.ts?size=50000");
  ASSERT_TRUE(first.ok()) << first.error << proxyLog();
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(first.header("X-Cache"), "MISS");
  EXPECT_EQ(first.body, simBody("/obj/mh/a.ts", 50000));
  EXPECT_EQ(first.header("Via"), "1.1 streamedge");

  HttpResponse second = get("/obj/mh/a.ts?size=50000");
  ASSERT_TRUE(second.ok()) << second.error;
  EXPECT_EQ(second.header("X-Cache"), "HIT");
  EXPECT_EQ(second.body, first.body);
  EXPECT_EQ(second.header("Content-Length"), "50000");
  EXPECT_TRUE(second.hasHeader("Age"));
  EXPECT_EQ(originCount("/obj/mh/a.ts"), 1);
}

TEST_F(ScenarioTest, DroppedQueryParametersShareOneObject) {
  ASSERT_EQ(get("/obj/q/a.ts?size=1000&token=alice&CMCD=br%3D300").header("X-Cache"), "MISS");
  HttpResponse other = get("/obj/q/a.ts?size=1000&token=bob&CMCD=br%3D900");
  EXPECT_EQ(other.header("X-Cache"), "HIT");
  EXPECT_EQ(other.body, simBody("/obj/q/a.ts", 1000));
  EXPECT_EQ(originCount("/obj/q/a.ts"), 1);
}

TEST_F(ScenarioTest, StaleObjectIsRevalidatedWithAConditionalRequest) {
  // max-age=2, not 1: the origin's Date has whole seconds, so the refreshed copy's apparent age
  // is anything up to 1 s at once, and with max-age=1 it could be stale again before the third
  // request on a loaded machine.
  const std::string target = "/obj/reval/p.ts?size=3000&cc=max-age%3D2";
  HttpResponse first = get(target);
  ASSERT_EQ(first.header("X-Cache"), "MISS") << proxyLog();
  std::this_thread::sleep_for(3100ms);
  HttpResponse second = get(target);
  ASSERT_TRUE(second.ok()) << second.error;
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(second.body, simBody("/obj/reval/p.ts", 3000));
  EXPECT_EQ(originCount("/obj/reval/p.ts"), 2);
  EXPECT_EQ(originCount("/obj/reval/p.ts", /*not_modified=*/true), 1)
      << "the second fetch must be a conditional request answered 304";
  HttpResponse third = get(target);
  EXPECT_EQ(third.header("X-Cache"), "HIT") << "a 304 refreshes the stored object";
  EXPECT_EQ(third.body, first.body);
}

TEST_F(ScenarioTest, StaleIfErrorServesTheStoredObjectWhenTheOriginFails) {
  const std::string target = "/obj/sie/s.ts?size=4000&cc=max-age%3D1%2C%20stale-if-error%3D60";
  ASSERT_EQ(get(target).header("X-Cache"), "MISS") << proxyLog();
  std::this_thread::sleep_for(2100ms);
  ASSERT_TRUE(testsupport::simFault(simPort(), "/obj/sie/s.ts", "500", 10));
  HttpResponse stale = get(target);
  ASSERT_TRUE(stale.ok()) << stale.error << proxyLog();
  EXPECT_EQ(stale.status, 200);
  EXPECT_EQ(stale.header("X-Cache"), "STALE");
  EXPECT_EQ(stale.body, simBody("/obj/sie/s.ts", 4000));
}

TEST_F(ScenarioTest, APlaylistIsServedStaleOnErrorOnlyForItsOwnShorterBound) {
  start("  playlist_stale_if_error = \"2s\"\n");
  const std::string playlist = "/obj/sie2/live.m3u8?size=300&cc=max-age%3D1";
  const std::string segment = "/obj/sie2/seg.ts?size=300&cc=max-age%3D1";
  ASSERT_EQ(get(playlist).header("X-Cache"), "MISS") << proxyLog();
  ASSERT_EQ(get(segment).header("X-Cache"), "MISS");
  std::this_thread::sleep_for(1200ms);  // both stale now
  ASSERT_TRUE(testsupport::simFault(simPort(), "/obj/sie2/live.m3u8", "500", 10));
  ASSERT_TRUE(testsupport::simFault(simPort(), "/obj/sie2/seg.ts", "500", 10));
  EXPECT_EQ(get(playlist).header("X-Cache"), "STALE");
  EXPECT_EQ(get(segment).header("X-Cache"), "STALE");
  std::this_thread::sleep_for(2200ms);  // past the playlist's 1 s + 2 s, within the segment's 1 min
  EXPECT_EQ(get(playlist).status, 500) << "a live playlist served stale past its bound";
  HttpResponse seg = get(segment);
  EXPECT_EQ(seg.header("X-Cache"), "STALE");
  EXPECT_EQ(seg.body, simBody("/obj/sie2/seg.ts", 300));
}

TEST_F(ScenarioTest, OriginErrorWithoutStaleCopyIsA5xxAndNotCached) {
  ASSERT_TRUE(testsupport::simFault(simPort(), "/obj/err/e.ts", "503", 100));
  HttpResponse r = get("/obj/err/e.ts?size=100");
  EXPECT_EQ(r.status, 503);
  ASSERT_TRUE(testsupport::simFault(simPort(), "/obj/err/e.ts", "off"));
  HttpResponse ok = get("/obj/err/e.ts?size=100");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.header("X-Cache"), "MISS");
  EXPECT_EQ(ok.body, simBody("/obj/err/e.ts", 100));
}

TEST_F(ScenarioTest, RangeFromACompleteObject) {
  const std::string target = "/obj/range/r.ts?size=10000";
  const std::string body = simBody("/obj/range/r.ts", 10000);
  ASSERT_EQ(get(target).status, 200);
  HttpResponse part = get(target, {{"Range", "bytes=100-199"}});
  EXPECT_EQ(part.status, 206);
  EXPECT_EQ(part.header("Content-Range"), "bytes 100-199/10000");
  EXPECT_EQ(part.body, body.substr(100, 100));
  EXPECT_EQ(part.header("X-Cache"), "HIT");

  HttpResponse suffix = get(target, {{"Range", "bytes=-10"}});
  EXPECT_EQ(suffix.status, 206);
  EXPECT_EQ(suffix.body, body.substr(9990));

  HttpResponse unsatisfiable = get(target, {{"Range", "bytes=20000-"}});
  EXPECT_EQ(unsatisfiable.status, 416);
  EXPECT_EQ(unsatisfiable.header("Content-Range"), "bytes */10000");

  HttpResponse multi = get(target, {{"Range", "bytes=0-1,5-6"}});
  EXPECT_EQ(multi.status, 200);
  EXPECT_EQ(multi.body, body);
  EXPECT_EQ(originCount("/obj/range/r.ts"), 1);
}

TEST_F(ScenarioTest, RangeFromAnObjectStillFilling) {
  // 400 KB at 200 KB/s: the fill takes ~2 s. A range near the start is served while filling.
  const std::string target = "/obj/rangefill/f.ts?size=400000&rate=200000";
  const std::string body = simBody("/obj/rangefill/f.ts", 400000);
  std::thread filler([&] {
    HttpResponse full = get(target);
    EXPECT_EQ(full.body, body);
  });
  std::this_thread::sleep_for(300ms);
  HttpResponse part = get(target, {{"Range", "bytes=10-1009"}});
  filler.join();
  EXPECT_EQ(part.status, 206);
  EXPECT_EQ(part.header("X-Cache"), "COALESCED");
  EXPECT_EQ(part.header("Content-Range"), "bytes 10-1009/400000");
  EXPECT_EQ(part.body, body.substr(10, 1000));
  EXPECT_EQ(originCount("/obj/rangefill/f.ts"), 1);
}

TEST_F(ScenarioTest, HeadIsAnsweredWithoutBodyAndFillsTheCache) {
  testsupport::HttpResponse head =
      testsupport::httpRequest(port(), "HEAD", "/obj/head/h.ts?size=7000");
  ASSERT_TRUE(head.ok()) << head.error;
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.header("Content-Length"), "7000");
  EXPECT_TRUE(head.body.empty());
  HttpResponse get_after = get("/obj/head/h.ts?size=7000");
  // The HEAD's fill fetched the whole object; the GET may still find it filling.
  EXPECT_TRUE(get_after.header("X-Cache") == "HIT" || get_after.header("X-Cache") == "COALESCED")
      << get_after.header("X-Cache");
  EXPECT_EQ(get_after.body, simBody("/obj/head/h.ts", 7000));
  EXPECT_EQ(originCount("/obj/head/h.ts"), 1);
}

TEST_F(ScenarioTest, ConditionalRequestsGet304FromTheCache) {
  const std::string target = "/obj/cond/c.ts?size=2000";
  HttpResponse first = get(target);
  const std::string etag = first.header("ETag");
  ASSERT_FALSE(etag.empty());
  HttpResponse inm = get(target, {{"If-None-Match", etag}});
  EXPECT_EQ(inm.status, 304);
  EXPECT_TRUE(inm.body.empty());
  EXPECT_EQ(inm.header("ETag"), etag);
  HttpResponse other = get(target, {{"If-None-Match", "\"nope\""}});
  EXPECT_EQ(other.status, 200);
  HttpResponse ims = get(target, {{"If-Modified-Since", "Tue, 02 Jan 2024 00:00:00 GMT"}});
  EXPECT_EQ(ims.status, 304);
  HttpResponse older = get(target, {{"If-Modified-Since", "Sun, 31 Dec 2023 00:00:00 GMT"}});
  EXPECT_EQ(older.status, 200);
  EXPECT_EQ(originCount("/obj/cond/c.ts"), 1);
}

TEST_F(ScenarioTest, NoStorePrivateAndSetCookieResponsesAreNotCached) {
  for (const std::string variant : {"nostore", "private", "cookie"}) {
    const std::string path = "/obj/nc/" + variant + ".ts";
    std::string query = "?size=500";
    if (variant == "nostore") query += "&cc=no-store";
    if (variant == "private") query += "&cc=private%2C%20max-age%3D600";
    if (variant == "cookie") query += "&set_cookie=1";
    HttpResponse a = get(path + query);
    HttpResponse b = get(path + query);
    EXPECT_EQ(a.status, 200) << variant;
    EXPECT_EQ(b.status, 200) << variant;
    EXPECT_NE(b.header("X-Cache"), "HIT") << variant;
    EXPECT_EQ(b.body, simBody(path, 500)) << variant;
    EXPECT_EQ(originCount(path), 2) << variant;
  }
}

TEST_F(ScenarioTest, TruncatedOriginBodyIsNeverServedAsComplete) {
  ASSERT_TRUE(testsupport::simFault(simPort(), "/obj/trunc/t.ts", "short", 1));
  HttpResponse cut = get("/obj/trunc/t.ts?size=100000");
  EXPECT_FALSE(cut.ok() && cut.body.size() == 100000) << "a short body was presented as whole";
  HttpResponse again = get("/obj/trunc/t.ts?size=100000");
  ASSERT_TRUE(again.ok()) << again.error;
  EXPECT_EQ(again.header("X-Cache"), "MISS") << "the cut object must not have been kept";
  EXPECT_EQ(again.body, simBody("/obj/trunc/t.ts", 100000));
  EXPECT_EQ(get("/obj/trunc/t.ts?size=100000").header("X-Cache"), "HIT");
}

TEST_F(ScenarioTest, OriginResetMidBodyClosesTheViewerAndKeepsNothing) {
  ASSERT_TRUE(testsupport::simFault(simPort(), "/obj/reset/r.ts", "reset", 1));
  HttpResponse cut = get("/obj/reset/r.ts?size=300000");
  EXPECT_TRUE(cut.truncated || cut.status >= 500) << "status " << cut.status;
  HttpResponse again = get("/obj/reset/r.ts?size=300000");
  EXPECT_EQ(again.header("X-Cache"), "MISS");
  EXPECT_EQ(again.body, simBody("/obj/reset/r.ts", 300000));
}

TEST_F(ScenarioTest, LivePlaylistAndSegmentsAreCached) {
  HttpResponse master = get("/live/master.m3u8");
  ASSERT_EQ(master.status, 200) << proxyLog();
  EXPECT_NE(master.body.find("#EXTM3U"), std::string::npos);
  HttpResponse media = get("/live/720p/index.m3u8");
  ASSERT_EQ(media.status, 200);
  EXPECT_NE(media.body.find("#EXT-X-TARGETDURATION:2"), std::string::npos);
  HttpResponse again = get("/live/720p/index.m3u8");
  // Playlists without Cache-Control live half the target duration (1 s here): the second request
  // right after is a hit unless a second boundary passed in between; either way X-Cache must
  // agree with what the origin saw.
  EXPECT_EQ(originCount("/live/720p/index.m3u8"), again.header("X-Cache") == "HIT" ? 1 : 2);
  EXPECT_EQ(again.body.find("#EXTM3U"), 0u);
  const size_t seg = media.body.find("seg_");
  ASSERT_NE(seg, std::string::npos);
  const std::string name = media.body.substr(seg, media.body.find('\n', seg) - seg);
  HttpResponse s1 = get("/live/720p/" + name);
  HttpResponse s2 = get("/live/720p/" + name);
  EXPECT_EQ(s1.status, 200);
  EXPECT_EQ(s2.header("X-Cache"), "HIT");
  EXPECT_EQ(s1.body, s2.body);
  EXPECT_EQ(originCount("/live/720p/" + name), 1);
}

TEST_F(ScenarioTest, PlaylistWithoutCacheControlExpiresWithinHalfTheTargetDuration) {
  ASSERT_EQ(get("/live/360p/index.m3u8").status, 200);
  std::this_thread::sleep_for(1100ms);
  HttpResponse later = get("/live/360p/index.m3u8");
  EXPECT_EQ(later.header("X-Cache"), "MISS") << "a 2 s target duration allows at most 1 s";
  EXPECT_EQ(originCount("/live/360p/index.m3u8"), 2);
}

TEST_F(ScenarioTest, ChunkedOriginBodyIsCachedAndServed) {
  const std::string target = "/obj/chunk/c.m4s?size=70000&chunked=1";
  HttpResponse first = get(target);
  ASSERT_TRUE(first.ok()) << first.error;
  EXPECT_EQ(first.body, simBody("/obj/chunk/c.m4s", 70000));
  HttpResponse second = get(target);
  EXPECT_EQ(second.header("X-Cache"), "HIT");
  EXPECT_EQ(second.header("Content-Length"), "70000");
  EXPECT_EQ(second.body, first.body);
}

TEST_F(ScenarioTest, HerdOfConcurrentViewersMakesOneOriginFetchAndStreams) {
  // 200 viewers ask for one uncached 2 MB segment that the origin sends in about 1 s.
  constexpr int kClients = 200;
  constexpr size_t kSize = 2 * 1024 * 1024;
  const std::string path = "/obj/herd/big.ts";
  const std::string target = path + "?size=" + std::to_string(kSize) + "&rate=" + std::to_string(kSize);
  const std::string expected = simBody(path, kSize);

  std::vector<testsupport::HttpConnection> conns(kClients);
  for (auto& c : conns) ASSERT_TRUE(c.connect(port())) << c.error();
  std::vector<HttpResponse> results(kClients);
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  threads.reserve(kClients);
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      ready.fetch_add(1);
      for (int spin = 0; spin < 20000 && !go.load(); ++spin) std::this_thread::sleep_for(1ms);
      results[i] = conns[i].request("GET", target, {}, std::chrono::seconds(30));
    });
  }
  for (int spin = 0; spin < 20000 && ready.load() < kClients; ++spin) std::this_thread::sleep_for(1ms);
  go.store(true);
  for (auto& t : threads) t.join();

  int exact = 0;
  std::vector<double> first_byte, last_byte;
  for (const HttpResponse& r : results) {
    if (r.ok() && r.status == 200 && r.body == expected) ++exact;
    first_byte.push_back(r.first_byte_ms);
    last_byte.push_back(r.last_byte_ms);
  }
  EXPECT_EQ(exact, kClients) << proxyLog();
  EXPECT_EQ(originCount(path), 1);
  std::sort(first_byte.begin(), first_byte.end());
  std::sort(last_byte.begin(), last_byte.end());
  const double ttfb_p99 = first_byte[kClients * 99 / 100];
  const double ttlb_p50 = last_byte[kClients / 2];
  // Streaming, not wait-then-send: viewers get their first bytes long before the origin has
  // finished (the transfer takes ~1 s), so first bytes come in well under half of it.
  EXPECT_LT(ttfb_p99 * 2, ttlb_p50) << "ttfb p99 " << ttfb_p99 << " ms, ttlb p50 " << ttlb_p50;
}

}  // namespace
}  // namespace streamedge::scenario

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;

TEST_F(ScenarioTest, StaleWhileRevalidateAnswersAtOnceAndRefreshesInTheBackground) {
  const std::string target =
      "/obj/swr/w.ts?size=1500&cc=max-age%3D1%2C%20stale-while-revalidate%3D30";
  ASSERT_EQ(get(target).header("X-Cache"), "MISS");
  std::this_thread::sleep_for(2100ms);
  HttpResponse stale = get(target);
  EXPECT_EQ(stale.header("X-Cache"), "STALE");
  EXPECT_EQ(stale.body, testsupport::simBody("/obj/swr/w.ts", 1500));
  // The background revalidation reaches the origin (304) and refreshes the object.
  for (int i = 0; i < 50 && originCount("/obj/swr/w.ts") < 2; ++i) std::this_thread::sleep_for(20ms);
  EXPECT_EQ(originCount("/obj/swr/w.ts"), 2);
  HttpResponse fresh;
  for (int i = 0; i < 50; ++i) {
    fresh = get(target);
    if (fresh.header("X-Cache") == "HIT") break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(fresh.header("X-Cache"), "HIT");
  EXPECT_EQ(originCount("/obj/swr/w.ts"), 2);
}

TEST_F(ScenarioTest, RouteCanForwardOtherMethodsUncached) {
  start("  forward_other_methods = true\n");
  // The simulator itself refuses POST with 405: what matters is that the proxy forwarded it
  // (the origin's own answer comes back, uncached) instead of refusing it.
  HttpResponse post = testsupport::httpRequest(port(), "POST", "/obj/post/p?size=64", {}, 10s,
                                               "payload");
  EXPECT_EQ(post.status, 405) << proxyLog();
  EXPECT_EQ(post.header("X-Cache"), "PASS");
  EXPECT_EQ(post.header("X-Origin"), "dc-a");
  EXPECT_EQ(post.body, "method not allowed\n");
  HttpResponse again = testsupport::httpRequest(port(), "POST", "/obj/post/p?size=64", {}, 10s,
                                                "payload");
  EXPECT_EQ(again.header("X-Cache"), "PASS");
  EXPECT_EQ(originCount("/obj/post/p"), 2);
}

TEST_F(ScenarioTest, TraceIsRefusedAndOptionsWithNoHopsLeftIsAnsweredHere) {
  start("  forward_other_methods = true\n");
  HttpResponse trace = testsupport::httpRequest(port(), "TRACE", "/obj/trace/t", {}, 10s);
  EXPECT_EQ(trace.status, 405) << trace.error << proxyLog();
  HttpResponse options = testsupport::httpRequest(port(), "OPTIONS", "/obj/options/o",
                                                  {{"Max-Forwards", "0"}}, 10s);
  EXPECT_EQ(options.status, 200) << options.error;
  EXPECT_NE(options.header("Allow").find("OPTIONS"), std::string::npos) << options.header("Allow");
  EXPECT_EQ(originCount("/obj/trace/t"), 0);
  EXPECT_EQ(originCount("/obj/options/o"), 0);
  // With hops left it is the origin's to answer (the simulator refuses OPTIONS itself).
  HttpResponse forwarded = testsupport::httpRequest(port(), "OPTIONS", "/obj/options/o",
                                                    {{"Max-Forwards", "2"}}, 10s);
  EXPECT_EQ(forwarded.header("X-Cache"), "PASS");
  EXPECT_EQ(originCount("/obj/options/o"), 1);
}

TEST_F(ScenarioTest, PassRequestsCarryTheViewersOwnFieldsButNotRangeOrConditionals) {
  start("\n  [[vhost.route]]\n  prefix = \"/obj/api/\"\n  origin_group = \"main\"\n"
        "  cache = \"pass\"\n");
  // A pass answer is for this viewer alone: the origin needs its credentials and preferences.
  const Headers mine = {{"Authorization", "Bearer viewer-7"},
                        {"Cookie", "session=abc"},
                        {"Accept-Language", "fr"},
                        {"If-None-Match", "\"nope\""},
                        {"Proxy-Authorization", "Basic eA=="}};
  HttpResponse r = get("/obj/api/me?echo=1&cc=private", mine);
  ASSERT_EQ(r.status, 200) << r.error << proxyLog();
  EXPECT_EQ(r.header("X-Cache"), "PASS");
  EXPECT_NE(r.body.find("authorization: Bearer viewer-7\n"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("cookie: session=abc\n"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("accept-language: fr\n"), std::string::npos) << r.body;
  // Hop-by-hop and proxy-only fields stop here; conditionals and Range are answered locally.
  EXPECT_EQ(r.body.find("proxy-authorization"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("if-none-match"), std::string::npos) << r.body;

  // A Range on a pass GET: the origin sends the whole answer and the proxy cuts the range.
  HttpResponse part = get("/obj/api/me?echo=1&cc=private", {{"Range", "bytes=0-5"},
                                                            {"Cookie", "session=abc"}});
  EXPECT_EQ(part.status, 206) << part.error;
  EXPECT_EQ(part.body.size(), 6u);
  EXPECT_EQ(originCount("/obj/api/me"), 2);

  // Cache fills carry the end-to-end fields but never one viewer's credentials by default: the
  // object is shared.
  HttpResponse shared = get("/obj/shared/echo.txt?echo=1&cc=max-age%3D60", mine);
  ASSERT_EQ(shared.status, 200);
  EXPECT_NE(shared.body.find("accept-language: fr\n"), std::string::npos) << shared.body;
  EXPECT_EQ(shared.body.find("authorization"), std::string::npos) << shared.body;
  EXPECT_EQ(shared.body.find("cookie"), std::string::npos) << shared.body;
}

TEST_F(ScenarioTest, SlowRequestHeadGets408) {
  start("", "64MiB", "header_timeout = \"1s\"\n");
  testsupport::HttpConnection c;
  ASSERT_TRUE(c.connect(port()));
  ASSERT_TRUE(c.sendRaw("GET /obj/slow HTTP/1.1\r\nHost: a\r\n"));  // never finished
  HttpResponse r = c.readResponse(5s);
  EXPECT_EQ(r.status, 408);
  EXPECT_TRUE(r.closed || c.waitForClose(2s));
}

}  // namespace
}  // namespace streamedge::scenario
