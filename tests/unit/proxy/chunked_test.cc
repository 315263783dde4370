// Chunked decoder: the body comes out the same however the input is split (one byte at a time,
// at every two-way split, at random splits), trailing bytes of the next message are never
// consumed, and every framing error is refused with a reason.
#include "proxy/chunked.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

namespace streamedge::proxy {
namespace {

using Status = ChunkedDecoder::Status;

struct Decoded {
  Status status = Status::kNeedMore;
  std::string body;
  size_t consumed = 0;  // total over all pieces
  std::string error;
};

const uint8_t* bytes(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

// Feeds `input` split at the given offsets (ascending, inside the input). Stops at the first
// status other than kNeedMore, as a caller would.
Decoded decodeSplit(const std::string& input, const std::vector<size_t>& cuts) {
  ChunkedDecoder dec;
  Decoded out;
  size_t pos = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(input.size());
  for (size_t end : ends) {
    if (end < pos) continue;
    size_t consumed = 0;
    const uint8_t* base = bytes(input) + pos;
    const size_t len = end - pos;
    out.status = dec.feed(base, len, consumed, [&](const uint8_t* p, size_t n) {
      EXPECT_GE(p, base);
      EXPECT_LE(p + n, base + len);
      out.body.append(reinterpret_cast<const char*>(p), n);
    });
    EXPECT_LE(consumed, len);
    if (out.status == Status::kNeedMore) {
      EXPECT_EQ(consumed, len);
    }
    out.consumed += consumed;
    pos += consumed;
    if (out.status != Status::kNeedMore) break;
    pos = end;
  }
  out.error = dec.error();
  EXPECT_EQ(dec.bodyBytes(), out.body.size());
  return out;
}

Decoded decode(const std::string& input) { return decodeSplit(input, {}); }

Decoded decodeByteByByte(const std::string& input) {
  std::vector<size_t> cuts;
  for (size_t i = 1; i < input.size(); ++i) cuts.push_back(i);
  return decodeSplit(input, cuts);
}

void expectDecodes(const std::string& input, const std::string& body, size_t framed_size) {
  SCOPED_TRACE(::testing::PrintToString(input));
  Decoded whole = decode(input);
  EXPECT_EQ(whole.status, Status::kDone) << whole.error;
  EXPECT_EQ(whole.body, body);
  EXPECT_EQ(whole.consumed, framed_size);
  Decoded bytewise = decodeByteByByte(input);
  EXPECT_EQ(bytewise.status, Status::kDone) << bytewise.error;
  EXPECT_EQ(bytewise.body, body);
  EXPECT_EQ(bytewise.consumed, framed_size);
}

void expectError(const std::string& input, std::string_view reason_part = "") {
  SCOPED_TRACE(::testing::PrintToString(input));
  for (const Decoded& d : {decode(input), decodeByteByByte(input)}) {
    EXPECT_EQ(d.status, Status::kError);
    EXPECT_FALSE(d.error.empty());
    if (!reason_part.empty()) {
      EXPECT_NE(d.error.find(reason_part), std::string::npos) << d.error;
    }
  }
}

const std::string kPlaylistBody =
    "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:1200\n"
    "#EXTINF:4.000,\nseg_1200.m4s\n#EXTINF:4.000,\nseg_1201.m4s\n";

std::string chunkedOf(const std::string& body, size_t chunk, const std::string& tail = "\r\n") {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t pos = 0; pos < body.size(); pos += chunk) {
    const size_t n = std::min(chunk, body.size() - pos);
    std::string size;
    for (size_t v = n; v; v >>= 4) size.insert(size.begin(), kHex[v & 15]);
    out += size + "\r\n" + body.substr(pos, n) + "\r\n";
  }
  return out + "0\r\n" + tail;
}

TEST(ChunkedDecoder, DecodesSimpleBody) {
  expectDecodes("5\r\nhello\r\n0\r\n\r\n", "hello", 15);
  expectDecodes("0\r\n\r\n", "", 5);
  expectDecodes("A\r\n0123456789\r\n1\r\n!\r\n0\r\n\r\n", "0123456789!", 26);
  expectDecodes("a\r\n0123456789\r\n0\r\n\r\n", "0123456789", 20);
}

TEST(ChunkedDecoder, BytesOfTheNextMessageAreNotConsumed) {
  const std::string framed = "5\r\nhello\r\n0\r\n\r\n";
  expectDecodes(framed + "HTTP/1.1 200 OK\r\n", "hello", framed.size());
}

TEST(ChunkedDecoder, ExtensionsAndTrailersAreSkipped) {
  expectDecodes("5;name=value\r\nhello\r\n0;last\r\n\r\n", "hello", 31);
  expectDecodes("5 ; a=\"q s\"\t;b\r\nhello\r\n0\r\n\r\n", "hello", 28);
  const std::string trailer = "5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Empty:\r\n\r\n";
  expectDecodes(trailer, "hello", trailer.size());
}

TEST(ChunkedDecoder, FifteenHexDigitsAndLeadingZerosAreAccepted) {
  expectDecodes("000000000000005\r\nhello\r\n000000000000000\r\n\r\n", "hello", 43);
  ChunkedDecoder dec;
  const std::string big = "fffffffffffffff\r\nabc";
  size_t consumed = 0;
  std::string body;
  auto sink = [&](const uint8_t* p, size_t n) {
    body.append(reinterpret_cast<const char*>(p), n);
  };
  EXPECT_EQ(dec.feed(bytes(big), big.size(), consumed, sink), Status::kNeedMore);
  EXPECT_EQ(consumed, big.size());
  EXPECT_EQ(body, "abc");
}

TEST(ChunkedDecoder, SameBodyAtEveryTwoWaySplit) {
  const std::string input = chunkedOf(kPlaylistBody, 17, "Trailer-A: 1\r\n\r\n");
  for (size_t cut = 0; cut <= input.size(); ++cut) {
    SCOPED_TRACE(cut);
    Decoded d = decodeSplit(input, {cut});
    ASSERT_EQ(d.status, Status::kDone) << d.error;
    EXPECT_EQ(d.body, kPlaylistBody);
    EXPECT_EQ(d.consumed, input.size());
  }
}

TEST(ChunkedDecoder, SameBodyAtRandomSplits) {
  std::mt19937 rng(12345);
  for (size_t chunk : {1, 3, 7, 64, 1000}) {
    const std::string input = chunkedOf(kPlaylistBody, chunk);
    for (int round = 0; round < 200; ++round) {
      std::uniform_int_distribution<size_t> pick(0, input.size());
      std::vector<size_t> cuts(static_cast<size_t>(round % 12));
      for (size_t& c : cuts) c = pick(rng);
      std::sort(cuts.begin(), cuts.end());
      Decoded d = decodeSplit(input, cuts);
      ASSERT_EQ(d.status, Status::kDone) << d.error << " chunk=" << chunk << " round=" << round;
      ASSERT_EQ(d.body, kPlaylistBody);
      ASSERT_EQ(d.consumed, input.size());
    }
  }
}

TEST(ChunkedDecoder, BinaryBodyWithCrLfInsideDataIsOpaque) {
  std::string body;
  for (int i = 0; i < 300; ++i) body.push_back(static_cast<char>(i * 7));
  body += "\r\n0\r\n\r\n";  // looks like framing, but it is data
  expectDecodes(chunkedOf(body, 100), body, chunkedOf(body, 100).size());
}

TEST(ChunkedDecoder, EmptyInputNeedsMore) {
  ChunkedDecoder dec;
  size_t consumed = 7;
  EXPECT_EQ(dec.feed(nullptr, 0, consumed, [](const uint8_t*, size_t) {}), Status::kNeedMore);
  EXPECT_EQ(consumed, 0u);
}

TEST(ChunkedDecoder, DoneStaysDoneAndConsumesNothingMore) {
  ChunkedDecoder dec;
  const std::string input = "0\r\n\r\n";
  size_t consumed = 0;
  auto sink = [](const uint8_t*, size_t) { ADD_FAILURE() << "no body expected"; };
  ASSERT_EQ(dec.feed(bytes(input), input.size(), consumed, sink), Status::kDone);
  EXPECT_EQ(dec.feed(bytes(input), input.size(), consumed, sink), Status::kDone);
  EXPECT_EQ(consumed, 0u);
}

TEST(ChunkedDecoder, ErrorIsSticky) {
  ChunkedDecoder dec;
  const std::string bad = "x\r\n";
  const std::string good = "0\r\n\r\n";
  size_t consumed = 0;
  auto sink = [](const uint8_t*, size_t) {};
  ASSERT_EQ(dec.feed(bytes(bad), bad.size(), consumed, sink), Status::kError);
  EXPECT_EQ(dec.feed(bytes(good), good.size(), consumed, sink), Status::kError);
  EXPECT_STRNE(dec.error(), "");
}

TEST(ChunkedDecoderErrors, BareLfAndBareCr) {
  expectError("5\nhello\r\n0\r\n\r\n", "bare LF");
  expectError("5;ext\nhello\r\n0\r\n\r\n", "bare LF");
  expectError("5\rhello\r\n0\r\n\r\n", "bare CR");
  expectError("5\r\nhello\r\n0\n\r\n", "bare LF");
  expectError("5\r\nhello\r\n0\r\n\n", "bare LF");
  expectError("5\r\nhello\r\n0\r\n\rx", "bare CR");
  expectError("5\r\nhello\n0\r\n\r\n", "missing CRLF");
  expectError("5\r\nhello\rx0\r\n\r\n", "bare CR");
  expectError("\n", "bare LF");
  expectError("5\r\nhello\r\n0\r\nX: a\nb\r\n\r\n", "bare LF");
  expectError("5\r\nhello\r\n0\r\nX: a\rb\r\n\r\n", "bare CR");
}

TEST(ChunkedDecoderErrors, MissingCrlfAfterData) {
  expectError("5\r\nhelloX\r\n0\r\n\r\n", "missing CRLF");
  expectError("3\r\nhello\r\n0\r\n\r\n", "missing CRLF");  // body longer than its size
  expectError("5\r\nhello0\r\n\r\n", "missing CRLF");
}

TEST(ChunkedDecoderErrors, InvalidChunkSize) {
  expectError("g\r\nhello\r\n", "not hex");
  expectError("\r\nhello\r\n", "not hex");
  expectError(" 5\r\nhello\r\n", "not hex");
  expectError("+5\r\nhello\r\n", "not hex");
  expectError("-1\r\n", "not hex");
  expectError("0x5\r\nhello\r\n", "after chunk size");
  expectError("5g\r\nhello\r\n", "after chunk size");
  expectError("5 \r\nhello\r\n", "whitespace");
  expectError("5 x\r\nhello\r\n", "whitespace");
  expectError("0000000000000005\r\nhello\r\n0\r\n\r\n", "15");
  expectError("10000000000000000\r\n", "15");
}

TEST(ChunkedDecoderErrors, ControlCharactersInExtensionOrTrailer) {
  expectError(std::string("5;a\0b\r\nhello\r\n0\r\n\r\n", 19), "control");
  expectError("5;a\x7f\r\nhello\r\n0\r\n\r\n", "control");
  expectError("5\r\nhello\r\n0\r\nX: a\x01\r\n\r\n", "control");
}

TEST(ChunkedDecoderErrors, MalformedTrailer) {
  expectError("0\r\n folded\r\n\r\n", "obs-fold");
  expectError("0\r\nX : a\r\n\r\n", "colon");
  expectError("0\r\n(x: a\r\n\r\n", "trailer field name");
  expectError("0\r\nNoColon\r\n\r\n", "trailer field name");
}

TEST(ChunkedDecoderErrors, SizeLineAndTrailerLimits) {
  // Size line (digits + extension) of exactly 4096 bytes before CRLF is fine; one more is not.
  std::string ext = "5;" + std::string(4094, 'e');
  expectDecodes(ext + "\r\nhello\r\n0\r\n\r\n", "hello", ext.size() + 14);
  expectError("5;" + std::string(4095, 'e') + "\r\nhello\r\n0\r\n\r\n", "too long");
  expectError("5" + std::string(5000, ' ') + ";\r\n", "too long");

  // Trailer section (everything after last-chunk) of 16 KiB is fine; one byte more is not.
  const size_t limit = 16 * 1024;
  std::string field = "X: " + std::string(limit - 2 - 3 - 2, 't') + "\r\n";  // + final CRLF = limit
  ASSERT_EQ(field.size() + 2, limit);
  expectDecodes("0\r\n" + field + "\r\n", "", 3 + limit);
  std::string too_big = "X: " + std::string(limit - 2 - 3 - 2 + 1, 't') + "\r\n";
  expectError("0\r\n" + too_big + "\r\n", "trailer section too large");
}

}  // namespace
}  // namespace streamedge::proxy
