// Compression of text answers end to end: the real binary in front of the origin simulator. A
// large MPD (≈200 KB) goes gzip-encoded to a viewer who accepts gzip, br-encoded to one who
// prefers br, identity to one who accepts neither — all from one origin fetch, the encoded copy
// made once and served as a hit; segments, origin-encoded and no-transform answers are never
// encoded. Bodies are decoded here with zlib and libbrotli and compared byte for byte.
#include <brotli/decode.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <thread>

#include "tests/scenario/scenario_env.h"

namespace streamedge::scenario {
namespace {

using namespace std::chrono_literals;
using testsupport::simBody;

// 25 periods ≈ 200 KB; kept for a minute so that every request reads the same version.
constexpr const char* kMpd = "/dash/manifest.mpd?periods=25&cc=max-age%3D60";

std::string gunzip(const std::string& in) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) return "<inflateInit2 failed>";
  std::string out(in.size() * 50 + 1024, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  inflateEnd(&zs);
  return rc == Z_STREAM_END ? out : "<not a complete gzip stream>";
}

std::string unbrotli(const std::string& in) {
  std::string out(in.size() * 60 + 1024, '\0');
  size_t size = out.size();
  const BrotliDecoderResult rc =
      BrotliDecoderDecompress(in.size(), reinterpret_cast<const uint8_t*>(in.data()), &size,
                              reinterpret_cast<uint8_t*>(out.data()));
  out.resize(size);
  return rc == BROTLI_DECODER_RESULT_SUCCESS ? out : "<not a complete br stream>";
}

bool varyNamesAcceptEncoding(const HttpResponse& r) {
  for (const std::string& v : r.headerValues("Vary")) {
    if (v.find("Accept-Encoding") != std::string::npos) return true;
  }
  return false;
}

class CompressionScenarioTest : public ScenarioTest {};

TEST_F(CompressionScenarioTest, LargeMpdIsEncodedOncePerCodingAndServedAsAHit) {
  HttpResponse gz = get(kMpd, {{"Accept-Encoding", "gzip"}});
  ASSERT_TRUE(gz.ok()) << gz.error << proxyLog();
  EXPECT_EQ(gz.status, 200);
  EXPECT_EQ(gz.header("X-Cache"), "MISS");
  EXPECT_EQ(gz.header("Content-Encoding"), "gzip");
  EXPECT_TRUE(varyNamesAcceptEncoding(gz));
  EXPECT_EQ(gz.header("Content-Type"), "application/dash+xml");
  EXPECT_EQ(gz.header("Content-Length"), std::to_string(gz.body.size()));
  EXPECT_FALSE(gz.hasHeader("Accept-Ranges")) << "ranges address the identity bytes";

  HttpResponse plain = get(kMpd);
  ASSERT_TRUE(plain.ok()) << plain.error;
  EXPECT_EQ(plain.header("X-Cache"), "HIT");
  EXPECT_FALSE(plain.hasHeader("Content-Encoding"));
  EXPECT_TRUE(varyNamesAcceptEncoding(plain)) << "identity answers of compressible objects vary too";
  EXPECT_GT(plain.body.size(), 190000u);
  EXPECT_LT(plain.body.size(), 230000u);
  EXPECT_LT(gz.body.size(), plain.body.size() / 5);
  EXPECT_EQ(gunzip(gz.body), plain.body) << "byte-exact after decoding";
  EXPECT_NE(plain.body.find("<MPD"), std::string::npos);

  // The ETag of each representation is its own (RFC 9110 §8.8.3), the weakness kept.
  const std::string etag = plain.header("ETag");
  ASSERT_FALSE(etag.empty());
  EXPECT_EQ(gz.header("ETag"), etag.substr(0, etag.size() - 1) + "-gzip\"");

  HttpResponse gz2 = get(kMpd, {{"Accept-Encoding", "gzip, deflate"}});
  EXPECT_EQ(gz2.header("X-Cache"), "HIT");
  EXPECT_EQ(gz2.header("Content-Encoding"), "gzip");
  EXPECT_EQ(gz2.body, gz.body) << "the stored copy, not a new encoding";

  HttpResponse br = get(kMpd, {{"Accept-Encoding", "gzip, deflate, br"}});
  ASSERT_TRUE(br.ok()) << br.error;
  EXPECT_EQ(br.header("X-Cache"), "HIT");
  EXPECT_EQ(br.header("Content-Encoding"), "br");
  EXPECT_EQ(br.header("ETag"), etag.substr(0, etag.size() - 1) + "-br\"");
  EXPECT_EQ(unbrotli(br.body), plain.body);
  EXPECT_LT(br.body.size(), gz.body.size());

  HttpResponse no_gzip = get(kMpd, {{"Accept-Encoding", "gzip;q=0, br;q=0"}});
  EXPECT_FALSE(no_gzip.hasHeader("Content-Encoding"));
  EXPECT_EQ(no_gzip.body, plain.body);

  EXPECT_EQ(originCount("/dash/manifest.mpd"), 1);

  // Encoded once per coding, however many viewers asked.
  const std::string m = testsupport::httpGet(proxy_->admin_port, "/metrics").body;
  EXPECT_EQ(metricValue(m, "streamedge_compression_encodings_total{encoding=\"gzip\"}"), 1);
  EXPECT_EQ(metricValue(m, "streamedge_compression_encodings_total{encoding=\"br\"}"), 1);
  EXPECT_EQ(metricValue(m, "streamedge_compressed_responses_total{encoding=\"gzip\"}"), 2);
  EXPECT_EQ(metricValue(m, "streamedge_compressed_responses_total{encoding=\"br\"}"), 1);
  EXPECT_EQ(metricValue(m, "streamedge_compression_saved_bytes_total{encoding=\"gzip\"}"),
            2.0 * static_cast<double>(plain.body.size() - gz.body.size()));
}

TEST_F(CompressionScenarioTest, HeadConditionalsAndRangesOfTheEncodedRepresentation) {
  HttpResponse gz = get(kMpd, {{"Accept-Encoding", "gzip"}});
  ASSERT_TRUE(gz.ok()) << gz.error << proxyLog();
  ASSERT_EQ(gz.header("Content-Encoding"), "gzip");
  const std::string gz_etag = gz.header("ETag");

  // HEAD: the head a GET would get.
  HttpResponse head = testsupport::httpRequest(port(), "HEAD", kMpd, {{"Accept-Encoding", "gzip"}});
  ASSERT_TRUE(head.ok()) << head.error;
  EXPECT_EQ(head.header("Content-Encoding"), "gzip");
  EXPECT_EQ(head.header("Content-Length"), gz.header("Content-Length"));
  EXPECT_EQ(head.header("ETag"), gz_etag);
  EXPECT_TRUE(head.body.empty());

  // If-None-Match with the encoded tag: 304 for the encoded representation...
  HttpResponse not_modified =
      get(kMpd, {{"Accept-Encoding", "gzip"}, {"If-None-Match", gz_etag}});
  EXPECT_EQ(not_modified.status, 304);
  EXPECT_EQ(not_modified.header("ETag"), gz_etag);
  EXPECT_TRUE(varyNamesAcceptEncoding(not_modified));
  // ...but not for a viewer who gets identity: its representation has another tag.
  HttpResponse identity = get(kMpd, {{"If-None-Match", gz_etag}});
  EXPECT_EQ(identity.status, 200);
  EXPECT_FALSE(identity.hasHeader("Content-Encoding"));
  HttpResponse identity_304 = get(kMpd, {{"If-None-Match", identity.header("ETag")}});
  EXPECT_EQ(identity_304.status, 304);

  // A Range is answered from the identity bytes, whatever the viewer accepts.
  HttpResponse part = get(kMpd, {{"Accept-Encoding", "gzip"}, {"Range", "bytes=0-99"}});
  EXPECT_EQ(part.status, 206);
  EXPECT_FALSE(part.hasHeader("Content-Encoding"));
  EXPECT_EQ(part.body, identity.body.substr(0, 100));
  EXPECT_EQ(originCount("/dash/manifest.mpd"), 1);
}

TEST_F(CompressionScenarioTest, ViewersOnAFillingMpdGetTheirOwnRepresentation) {
  // ≈200 KB at 200 KB/s: a gzip viewer (the miss) waits for the whole MPD, then gets it
  // encoded; an identity viewer coalesces on the same fill and streams it as it comes.
  const std::string slow = std::string(kMpd) + "&rate=200000";
  HttpResponse gz, plain;
  std::thread first([&] { gz = get(slow, {{"Accept-Encoding", "gzip"}}); });
  std::this_thread::sleep_for(200ms);
  std::thread second([&] { plain = get(slow); });
  first.join();
  second.join();
  ASSERT_TRUE(gz.ok()) << gz.error << proxyLog();
  ASSERT_TRUE(plain.ok()) << plain.error;
  EXPECT_EQ(gz.header("X-Cache"), "MISS");
  EXPECT_EQ(plain.header("X-Cache"), "COALESCED");
  EXPECT_EQ(gz.header("Content-Encoding"), "gzip");
  EXPECT_FALSE(plain.hasHeader("Content-Encoding"));
  EXPECT_EQ(gunzip(gz.body), plain.body);
  EXPECT_EQ(originCount("/dash/manifest.mpd"), 1);
}

TEST_F(CompressionScenarioTest, LongPlaylistIsEncodedAndSmallOnesAreNot) {
  const std::string dvr = "/live/dvr/index.m3u8?window=5000&cc=max-age%3D60";
  HttpResponse br = get(dvr, {{"Accept-Encoding", "br;q=1, gzip;q=0.5"}});
  ASSERT_TRUE(br.ok()) << br.error << proxyLog();
  EXPECT_EQ(br.header("Content-Encoding"), "br");
  EXPECT_EQ(br.header("Content-Type"), "application/vnd.apple.mpegurl");
  HttpResponse plain = get(dvr);
  EXPECT_EQ(unbrotli(br.body), plain.body);
  EXPECT_NE(plain.body.find("#EXT-X-MEDIA-SEQUENCE"), std::string::npos);

  // Under compress_min_size (1 KiB): as it is, and no Vary (it never varies).
  HttpResponse master = get("/live/master.m3u8", {{"Accept-Encoding", "gzip"}});
  ASSERT_TRUE(master.ok()) << master.error;
  EXPECT_LT(master.body.size(), 1024u);
  EXPECT_FALSE(master.hasHeader("Content-Encoding"));
  EXPECT_FALSE(varyNamesAcceptEncoding(master));
}

TEST_F(CompressionScenarioTest, SegmentsAndOriginEncodedOrNoTransformAnswersAreNeverEncoded) {
  for (const std::string target : {"/live/x/seg_1.ts?size=100000", "/obj/cmp/a.bin?size=100000"}) {
    HttpResponse seg = get(target, {{"Accept-Encoding", "gzip, br"}});
    ASSERT_TRUE(seg.ok()) << seg.error << proxyLog();
    EXPECT_FALSE(seg.hasHeader("Content-Encoding")) << target;
    EXPECT_FALSE(varyNamesAcceptEncoding(seg)) << target;
    const std::string path = target.substr(0, target.find('?'));
    EXPECT_EQ(seg.body, simBody(path, 100000)) << target;
    EXPECT_EQ(seg.header("Content-Length"), "100000");
  }
  EXPECT_EQ(get("/live/x/seg_1.ts?size=100000", {{"Accept-Encoding", "gzip"}}).header("X-Cache"),
            "HIT");

  // The origin encoded it already (its label and bytes pass through untouched).
  HttpResponse encoded =
      get("/live/ce/index.m3u8?window=500&ce=gzip", {{"Accept-Encoding", "gzip, br"}});
  ASSERT_TRUE(encoded.ok()) << encoded.error;
  EXPECT_EQ(encoded.headerValues("Content-Encoding"), std::vector<std::string>{"gzip"});
  EXPECT_NE(encoded.body.find("#EXTM3U"), std::string::npos) << "not encoded again";

  // Cache-Control: no-transform (RFC 9110 §7.7).
  HttpResponse kept = get("/live/nt/index.m3u8?window=500&cc=max-age%3D60%2C%20no-transform",
                          {{"Accept-Encoding", "gzip"}});
  ASSERT_TRUE(kept.ok()) << kept.error;
  EXPECT_FALSE(kept.hasHeader("Content-Encoding"));
  EXPECT_NE(kept.body.find("#EXTM3U"), std::string::npos);
}

TEST_F(CompressionScenarioTest, AnswersThatAreNotKeptAreEncodedOnlyWhenSmall) {
  // no-store: streamed through a window, not kept. ≈200 KB is under the smallest window: the
  // viewer waits for it whole and gets it encoded; each request is its own fetch.
  // The live MPD changes every segment duration: a pair of fetches that straddled a change is
  // asked again (bounded), so that both are of the same version.
  const std::string small = "/dash/manifest.mpd?periods=25&cc=no-store";
  const auto publishTime = [](const std::string& mpd) {
    const size_t at = mpd.find("publishTime=\"");
    return at == std::string::npos ? std::string() : mpd.substr(at, 40);
  };
  HttpResponse gz;
  HttpResponse plain;
  int fetches = 0;
  for (int attempt = 0; attempt < 5; ++attempt) {
    gz = get(small, {{"Accept-Encoding", "gzip"}});
    ASSERT_TRUE(gz.ok()) << gz.error << proxyLog();
    EXPECT_EQ(gz.header("Content-Encoding"), "gzip");
    EXPECT_EQ(gz.header("Cache-Control"), "no-store");
    plain = get(small);
    ASSERT_TRUE(plain.ok()) << plain.error;
    EXPECT_FALSE(plain.hasHeader("Content-Encoding"));
    fetches += 2;
    if (publishTime(gunzip(gz.body)) == publishTime(plain.body)) break;
  }
  EXPECT_FALSE(publishTime(plain.body).empty());
  EXPECT_EQ(gunzip(gz.body), plain.body);
  EXPECT_EQ(originCount("/dash/manifest.mpd"), fetches);  // each request its own fetch

  // ≈620 KB is over it: sent as it is, bytes exact.
  const std::string large = "/dash/manifest.mpd?periods=75&cc=no-store";
  HttpResponse big = get(large, {{"Accept-Encoding", "gzip"}});
  ASSERT_TRUE(big.ok()) << big.error << proxyLog();
  EXPECT_FALSE(big.hasHeader("Content-Encoding"));
  EXPECT_GT(big.body.size(), 512u * 1024);
  EXPECT_EQ(big.header("Content-Length"), std::to_string(big.body.size()));
  EXPECT_NE(big.body.find("</MPD>"), std::string::npos);

  // The same without a length (chunked from the origin): the viewer waits while it might still
  // be encoded, then, past the window, is sent it as it is.
  HttpResponse chunked = get(large + "&chunked=1", {{"Accept-Encoding", "gzip"}});
  ASSERT_TRUE(chunked.ok()) << chunked.error << proxyLog();
  EXPECT_FALSE(chunked.hasHeader("Content-Encoding"));
  EXPECT_EQ(chunked.body, big.body);
}

TEST_F(CompressionScenarioTest, AnswerOfUnknownLengthIsEncodedOnceComplete) {
  const std::string target = "/dash/manifest.mpd?periods=25&cc=max-age%3D60&chunked=1";
  HttpResponse gz = get(target, {{"Accept-Encoding", "gzip"}});
  ASSERT_TRUE(gz.ok()) << gz.error << proxyLog();
  EXPECT_EQ(gz.header("Content-Encoding"), "gzip");
  EXPECT_EQ(gz.header("Content-Length"), std::to_string(gz.body.size()));
  HttpResponse plain = get(target);
  EXPECT_EQ(plain.header("X-Cache"), "HIT");
  EXPECT_EQ(gunzip(gz.body), plain.body);
}

TEST_F(CompressionScenarioTest, RouteWithCompressionOffSendsIdentityWithoutVary) {
  start("  compress = []\n");
  HttpResponse r = get(kMpd, {{"Accept-Encoding", "gzip, br"}});
  ASSERT_TRUE(r.ok()) << r.error << proxyLog();
  EXPECT_FALSE(r.hasHeader("Content-Encoding"));
  EXPECT_FALSE(varyNamesAcceptEncoding(r));
  EXPECT_NE(r.body.find("<MPD"), std::string::npos);
}

}  // namespace
}  // namespace streamedge::scenario
