// Compression of text answers: Accept-Encoding negotiation (RFC 9110 §12.5.3), which answers may
// be encoded, the encoded head (ETag per representation, Vary, Content-Encoding), and gzip/br
// round trips decoded with zlib and libbrotli's decoder, byte-exact. The last test prints the
// ratio and CPU cost per level on a large MPD and a long HLS playlist (information for the
// README; no timing is asserted).
#include "proxy/compression.h"

#include <brotli/decode.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "tests/support/origin_sim.h"

namespace streamedge::proxy {
namespace {

using conf::ContentCoding;
constexpr ContentCoding kGzip = ContentCoding::kGzip;
constexpr ContentCoding kBr = ContentCoding::kBrotli;
const std::vector<ContentCoding> kBrThenGzip = {kBr, kGzip};
const std::vector<ContentCoding> kGzipOnly = {kGzip};

AcceptEncoding parse(std::initializer_list<std::string_view> fields) {
  AcceptEncoding a;
  for (std::string_view f : fields) parseAcceptEncoding(f, a);
  return a;
}

std::optional<ContentCoding> pick(std::initializer_list<std::string_view> fields,
                                  const std::vector<ContentCoding>& offered = kBrThenGzip) {
  return negotiateCoding(parse(fields), offered);
}

// ---- negotiation ----------------------------------------------------------------------------

TEST(AcceptEncoding, NoFieldOrAnEmptyFieldMeansIdentity) {
  EXPECT_EQ(negotiateCoding(AcceptEncoding{}, kBrThenGzip), std::nullopt);
  EXPECT_EQ(pick({""}), std::nullopt);
  EXPECT_EQ(pick({" , ,"}), std::nullopt);
}

TEST(AcceptEncoding, PlainListsPreferTheRoutesOrderAmongEqualWeights) {
  EXPECT_EQ(pick({"gzip"}), kGzip);
  EXPECT_EQ(pick({"br"}), kBr);
  EXPECT_EQ(pick({"gzip, deflate, br"}), kBr);  // a browser: the route prefers br
  EXPECT_EQ(pick({"gzip, deflate, br"}, kGzipOnly), kGzip);
  EXPECT_EQ(pick({"deflate, compress"}), std::nullopt);
  EXPECT_EQ(pick({"GZIP"}), kGzip) << "codings are case-insensitive";
  EXPECT_EQ(pick({"x-gzip"}), kGzip) << "RFC 9110 §8.4.1.3";
}

TEST(AcceptEncoding, QValuesChooseAndZeroRefuses) {
  EXPECT_EQ(pick({"br;q=0.5, gzip;q=0.9"}), kGzip);
  EXPECT_EQ(pick({"br;q=1.0, gzip;q=0.999"}), kBr);
  EXPECT_EQ(pick({"br;q=0, gzip"}), kGzip);
  EXPECT_EQ(pick({"br;q=0, gzip;q=0"}), std::nullopt);
  EXPECT_EQ(pick({"gzip ; Q=0.3 "}), kGzip) << "OWS around ';' and a capital Q";
  EXPECT_EQ(pick({"gzip;q=0.000"}), std::nullopt);
}

TEST(AcceptEncoding, InvalidWeightsIgnoreTheirMember) {
  EXPECT_EQ(pick({"gzip;q=1.5"}), std::nullopt);
  EXPECT_EQ(pick({"gzip;q=0.1234"}), std::nullopt);
  EXPECT_EQ(pick({"gzip;q=abc, br;q=0.2"}), kBr);
  EXPECT_EQ(pick({"gzip;q="}), std::nullopt);
  EXPECT_EQ(pick({"gzip;q=1.001"}), std::nullopt);
}

TEST(AcceptEncoding, StarCoversCodingsNotListed) {
  EXPECT_EQ(pick({"*"}), kBr);
  EXPECT_EQ(pick({"*"}, kGzipOnly), kGzip);
  EXPECT_EQ(pick({"br;q=0, *"}), kGzip);
  EXPECT_EQ(pick({"*;q=0"}), std::nullopt);
  EXPECT_EQ(pick({"gzip, *;q=0"}), kGzip);
  EXPECT_EQ(pick({"*;q=0.5, gzip;q=0.8"}), kGzip);
}

TEST(AcceptEncoding, IdentityPreferredOverTheCodingsWins) {
  EXPECT_EQ(pick({"gzip;q=0.5, identity"}), std::nullopt);
  EXPECT_EQ(pick({"gzip, identity"}), kGzip) << "a tie goes to the coding";
  EXPECT_EQ(pick({"gzip;q=0.5"}), kGzip) << "identity not listed: acceptable, but last";
  EXPECT_EQ(pick({"identity;q=0, gzip"}), kGzip);
  // Identity refused and nothing offered acceptable: identity is sent anyway (§12.5.3), which
  // negotiation reports as "no coding".
  EXPECT_EQ(pick({"identity;q=0, deflate"}), std::nullopt);
  EXPECT_EQ(pick({"*;q=0.3, gzip;q=0.2"}, kGzipOnly), std::nullopt) << "* gives identity 0.3";
  EXPECT_EQ(pick({"*;q=0.3, gzip;q=0.2"}), kBr) << "...and br 0.3: a tie goes to the coding";
}

TEST(AcceptEncoding, RepeatedFieldLinesAreOneList) {
  EXPECT_EQ(pick({"deflate", "gzip"}), kGzip);
  EXPECT_EQ(pick({"br;q=0.1", "gzip;q=0.2"}), kGzip);
  AcceptEncoding a = parse({"gzip;q=0.2", "gzip;q=0.7"});
  EXPECT_EQ(a.gzip, 700) << "a coding listed twice keeps its highest weight";
}

// ---- what may be encoded --------------------------------------------------------------------

TEST(Compressible, PlaylistsManifestsAndTextYesMediaNo) {
  for (std::string_view t :
       {"application/vnd.apple.mpegurl", "application/x-mpegURL", "audio/mpegurl",
        "application/dash+xml", "text/plain; charset=utf-8", "text/vtt", "application/json",
        "application/xml", "application/ttml+xml", "image/svg+xml", "application/ld+json",
        "application/vnd.ms-sstr+xml", "TEXT/HTML", "application/javascript"}) {
    EXPECT_TRUE(isCompressibleType(t)) << t;
  }
  for (std::string_view t :
       {"video/mp2t", "video/mp4", "audio/mp4", "audio/aac", "image/jpeg", "image/png",
        "application/octet-stream", "application/mp4", "video/iso.segment", "text/event-stream",
        "", "text", "/xml", "application/"}) {
    EXPECT_FALSE(isCompressibleType(t)) << t;
  }
}

cache::ResponseHead headWith(std::vector<std::pair<std::string, std::string>> headers,
                             int status = 200) {
  cache::ResponseHead h;
  h.status = status;
  h.reason = "OK";
  h.headers = std::move(headers);
  h.buildWire();
  return h;
}

TEST(Compressible, OriginEncodingNoTransformAndOtherStatusesAreLeftAlone) {
  EXPECT_TRUE(headAllowsCompression(headWith({{"Content-Type", "application/dash+xml"}})));
  EXPECT_FALSE(headAllowsCompression(
      headWith({{"Content-Type", "application/dash+xml"}, {"Content-Encoding", "gzip"}})));
  EXPECT_FALSE(headAllowsCompression(headWith(
      {{"Content-Type", "text/plain"}, {"Cache-Control", "max-age=2, No-Transform"}})));
  EXPECT_FALSE(headAllowsCompression(headWith(
      {{"Content-Type", "text/plain"}, {"Cache-Control", "max-age=2"}, {"cache-control", "no-transform"}})));
  EXPECT_TRUE(headAllowsCompression(
      headWith({{"Content-Type", "text/plain"}, {"Cache-Control", "no-transformation=1"}})));
  EXPECT_FALSE(headAllowsCompression(headWith({{"Content-Type", "text/plain"}}, 404)));
  EXPECT_FALSE(headAllowsCompression(headWith({{"Content-Type", "video/mp2t"}})));
  EXPECT_FALSE(headAllowsCompression(headWith({})));
}

TEST(Compressible, ChoiceFollowsTheRoutesSizesAndTheRequest) {
  conf::CompressionPolicy policy;
  policy.min_size = 1000;
  policy.max_size = 100000;
  const cache::ResponseHead mpd = headWith({{"Content-Type", "application/dash+xml"}});
  const AcceptEncoding gzip = parse({"gzip"});
  EXPECT_EQ(chooseEncoding(policy, mpd, 5000, true, false, gzip).coding, kGzip);
  EXPECT_TRUE(chooseEncoding(policy, mpd, 5000, true, false, gzip).vary);
  EXPECT_EQ(chooseEncoding(policy, mpd, std::nullopt, true, false, gzip).coding, kGzip)
      << "unknown length: decided when complete";
  EXPECT_FALSE(chooseEncoding(policy, mpd, 999, true, false, gzip).coding);
  EXPECT_FALSE(chooseEncoding(policy, mpd, 999, true, false, gzip).vary) << "never varies";
  EXPECT_FALSE(chooseEncoding(policy, mpd, 100001, true, false, gzip).coding);
  // A Range, or another method: identity, but the answer still varies on Accept-Encoding.
  EncodingChoice ranged = chooseEncoding(policy, mpd, 5000, true, true, gzip);
  EXPECT_FALSE(ranged.coding);
  EXPECT_TRUE(ranged.vary);
  EXPECT_FALSE(chooseEncoding(policy, mpd, 5000, false, false, gzip).coding);
  // A viewer who does not accept any: identity, with Vary.
  EncodingChoice plain = chooseEncoding(policy, mpd, 5000, true, false, AcceptEncoding{});
  EXPECT_FALSE(plain.coding);
  EXPECT_TRUE(plain.vary);
  // The origin's Vary already names Accept-Encoding: nothing to add.
  const cache::ResponseHead varied = headWith(
      {{"Content-Type", "application/dash+xml"}, {"Vary", "Origin, accept-encoding"}});
  EXPECT_FALSE(chooseEncoding(policy, varied, 5000, true, false, gzip).vary);
  // Off for the route.
  policy.codings.clear();
  EncodingChoice off = chooseEncoding(policy, mpd, 5000, true, false, gzip);
  EXPECT_FALSE(off.coding);
  EXPECT_FALSE(off.vary);
}

// ---- the encoded head -----------------------------------------------------------------------

TEST(EncodedHead, EtagIsDistinctPerCodingAndKeepsWeakness) {
  EXPECT_EQ(encodedEtag("\"abc\"", kGzip), "\"abc-gzip\"");
  EXPECT_EQ(encodedEtag("W/\"abc\"", kBr), "W/\"abc-br\"");
  EXPECT_EQ(encodedEtag(" \"\" ", kGzip), "\"-gzip\"");
  EXPECT_EQ(encodedEtag("abc", kGzip), std::nullopt);
  EXPECT_EQ(encodedEtag("\"a\"b\"", kGzip), std::nullopt);
  EXPECT_EQ(encodedEtag("w/\"abc\"", kGzip), std::nullopt) << "W/ is case-sensitive";
}

TEST(EncodedHead, CarriesContentEncodingVaryAndItsOwnLength) {
  const cache::ResponseHead identity = headWith({{"Content-Type", "application/dash+xml"},
                                                 {"ETag", "\"v7\""},
                                                 {"Cache-Control", "max-age=2"},
                                                 {"Vary", "Origin"},
                                                 {"Content-Digest", "sha-256=:abc=:"},
                                                 {"Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT"}});
  auto head = encodedHead(identity, kGzip, 1234);
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->content_length, 1234u);
  ASSERT_NE(head->find("Content-Encoding"), nullptr);
  EXPECT_EQ(*head->find("Content-Encoding"), "gzip");
  EXPECT_EQ(*head->find("ETag"), "\"v7-gzip\"");
  EXPECT_EQ(*head->find("Vary"), "Origin, Accept-Encoding");
  EXPECT_EQ(head->find("Content-Digest"), nullptr) << "a digest of the identity bytes";
  EXPECT_EQ(*head->find("Cache-Control"), "max-age=2");
  EXPECT_EQ(*head->find("Last-Modified"), "Mon, 01 Jan 2024 00:00:00 GMT");
  EXPECT_NE(head->wire.find("Content-Encoding: gzip\r\n"), std::string::npos);
  EXPECT_EQ(head->wire.find("Content-Length"), std::string::npos) << "delivery frames it";

  auto no_vary = encodedHead(headWith({{"Content-Type", "text/plain"}}), kBr, 10);
  EXPECT_EQ(*no_vary->find("Vary"), "Accept-Encoding");
  EXPECT_EQ(*no_vary->find("Content-Encoding"), "br");
  EXPECT_EQ(no_vary->find("ETag"), nullptr);
}

// ---- encoders -------------------------------------------------------------------------------

cache::ObjectRef completeObject(const std::string& text, const std::string& type) {
  auto head = std::make_shared<cache::ResponseHead>(
      headWith({{"Content-Type", type}, {"ETag", "\"e1\""}}));
  head->content_length = text.size();
  cache::ObjectRef o = cache::ObjectRef::make(cache::makeKey("v", "/t", ""));
  o->publishHead(head, cache::Freshness{}, true,
                 cache::Ref<cache::Body>::make(std::optional<uint64_t>(text.size())));
  // Appended in uneven pieces, as a fill does.
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = std::min<size_t>(text.size() - pos, 7001);
    o->append(reinterpret_cast<const uint8_t*>(text.data()) + pos, n);
    pos += n;
  }
  o->markComplete();
  return o;
}

std::string bodyText(const cache::Body& body) {
  std::string out;
  const uint8_t* data = nullptr;
  for (uint64_t pos = 0; pos < body.length();) {
    const size_t n = body.peek(pos, &data);
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(data), n);
    pos += n;
  }
  return out;
}

std::string gunzip(const std::string& in) {
  z_stream zs{};
  EXPECT_EQ(inflateInit2(&zs, 15 + 16), Z_OK);  // gzip wrapper only
  std::string out(in.size() * 40 + 1024, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&zs, Z_FINISH);
  EXPECT_EQ(rc, Z_STREAM_END);
  out.resize(zs.total_out);
  inflateEnd(&zs);
  return out;
}

std::string unbrotli(const std::string& in) {
  std::string out(in.size() * 60 + 1024, '\0');
  size_t out_size = out.size();
  const BrotliDecoderResult rc = BrotliDecoderDecompress(
      in.size(), reinterpret_cast<const uint8_t*>(in.data()), &out_size,
      reinterpret_cast<uint8_t*>(out.data()));
  EXPECT_EQ(rc, BROTLI_DECODER_RESULT_SUCCESS);
  out.resize(out_size);
  return out;
}

std::string largeMpd() { return testsupport::simMultiPeriodMpd(1760000000, 2, 25); }

std::string longPlaylist(int segments) {
  std::string t = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:" +
                  std::to_string(880000000 - segments + 1) + "\n";
  for (int64_t s = 880000000 - segments + 1; s <= 880000000; ++s) {
    t += "#EXTINF:2.000,\nseg_" + std::to_string(s) + ".ts\n";
  }
  return t;
}

TEST(Encoders, GzipRoundTripIsByteExactAcrossBlocks) {
  const std::string mpd = testsupport::simMultiPeriodMpd(1760000000, 2, 75);  // > 2 blocks
  ASSERT_GT(mpd.size(), 2 * cache::Body::kBlockBytes);
  cache::ObjectRef o = completeObject(mpd, "application/dash+xml");
  auto rep = encodeRepresentation(*o, kGzip);
  ASSERT_NE(rep->head, nullptr);
  const std::string encoded = bodyText(*rep->body);
  EXPECT_EQ(rep->body->length(), encoded.size());
  EXPECT_EQ(rep->head->content_length, encoded.size());
  EXPECT_LT(encoded.size(), mpd.size() / 5) << "an MPD compresses well";
  EXPECT_EQ(gunzip(encoded), mpd);
  // Deterministic: another worker racing this one makes the same bytes.
  EXPECT_EQ(bodyText(*encodeRepresentation(*o, kGzip)->body), encoded);
}

TEST(Encoders, BrotliRoundTripIsByteExact) {
  const std::string playlist = longPlaylist(7200);
  cache::ObjectRef o = completeObject(playlist, "application/vnd.apple.mpegurl");
  auto rep = encodeRepresentation(*o, kBr);
  ASSERT_NE(rep->head, nullptr);
  EXPECT_EQ(*rep->head->find("Content-Encoding"), "br");
  EXPECT_EQ(*rep->head->find("ETag"), "\"e1-br\"");
  const std::string encoded = bodyText(*rep->body);
  EXPECT_EQ(unbrotli(encoded), playlist);
}

TEST(Encoders, EmptyAndTinyBodiesRoundTrip) {
  cache::ObjectRef empty = completeObject("", "text/plain");
  std::string out;
  ASSERT_TRUE(gzipEncode(empty->body(), 0, kGzipLevel, out));
  EXPECT_EQ(gunzip(out), "");
  ASSERT_TRUE(brotliEncode(empty->body(), 0, kBrotliQuality, out));
  EXPECT_EQ(unbrotli(out), "");
  cache::ObjectRef tiny = completeObject("#EXTM3U\n", "text/plain");
  ASSERT_TRUE(gzipEncode(tiny->body(), 8, kGzipLevel, out));
  EXPECT_EQ(gunzip(out), "#EXTM3U\n");
}

TEST(Encoders, IncompressibleBytesAreNotWorthACopy) {
  // Random bytes labelled as text: encoding would not save an eighth; the representation says
  // so (no head) and delivery keeps the identity bytes.
  cache::ObjectRef o = completeObject(testsupport::simBody("/r", 50000), "text/plain");
  auto rep = encodeRepresentation(*o, kGzip);
  EXPECT_EQ(rep->head, nullptr);
  EXPECT_EQ(rep->body, cache::Ref<cache::Body>());
  EXPECT_EQ(encodeRepresentation(*o, kBr)->head, nullptr);
}

TEST(Encoders, LevelsOnALargeMpdAndALongPlaylist) {
  // Information only (README "Compression"): ratio and CPU per level. Never asserted on time.
  struct Sample { const char* name; std::string text; };
  const Sample samples[] = {{"MPD 25 periods", largeMpd()},
                            {"HLS 7200 segments", longPlaylist(7200)}};
  for (const Sample& sample : samples) {
    cache::ObjectRef o = completeObject(sample.text, "text/plain");
    auto time = [&](auto&& encode, int rounds = 5) {
      std::string out;
      const auto start = std::chrono::steady_clock::now();
      const int kRounds = rounds;
      for (int i = 0; i < kRounds; ++i) EXPECT_TRUE(encode(out));
      const double ms = std::chrono::duration<double, std::milli>(
                            std::chrono::steady_clock::now() - start).count() / kRounds;
      return std::make_pair(out.size(), ms);
    };
    std::printf("%s: %zu bytes\n", sample.name, sample.text.size());
    for (int level : {1, 6, 9}) {
      auto [size, ms] = time([&](std::string& out) {
        return gzipEncode(o->body(), sample.text.size(), level, out);
      });
      std::printf("  gzip -%d: %8zu bytes (%5.1fx) %7.2f ms\n", level, size,
                  double(sample.text.size()) / double(size), ms);
    }
    for (int quality : {1, 4, 5, 6, 9, 11}) {
      auto [size, ms] = time(
          [&](std::string& out) {
            return brotliEncode(o->body(), sample.text.size(), quality, out);
          },
          quality >= 9 ? 1 : 5);
      std::printf("  br  q%-2d: %8zu bytes (%5.1fx) %7.2f ms\n", quality, size,
                  double(sample.text.size()) / double(size), ms);
    }
  }
}

}  // namespace
}  // namespace streamedge::proxy
