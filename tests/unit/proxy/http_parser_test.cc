// Strict HTTP/1.1 head parser: every refusal rule has a hand-made message that must be refused
// (with the status the caller will send), and realistic player requests and origin responses
// must parse with the right views and framing.
#include "proxy/http_parser.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace streamedge::proxy {
namespace {

// The parsed views point into `text`, which the result owns (on the heap, so moving the result
// does not move the bytes).
struct Req {
  std::unique_ptr<std::string> text;
  std::unique_ptr<RequestHead> head = std::make_unique<RequestHead>();
  ParseError err;
  bool ok = false;
};

Req parseReq(std::string_view text, RequestLimits limits = {}) {
  Req r;
  r.text = std::make_unique<std::string>(text);
  r.ok = parseRequestHead(*r.text, limits, *r.head, r.err);
  return r;
}

struct Resp {
  std::unique_ptr<std::string> text;
  std::unique_ptr<ResponseHeadView> head = std::make_unique<ResponseHeadView>();
  ParseError err;
  bool ok = false;
};

Resp parseResp(std::string_view text) {
  Resp r;
  r.text = std::make_unique<std::string>(text);
  r.ok = parseResponseHead(*r.text, *r.head, r.err);
  return r;
}

// Asserts `text` is refused with `status` and that a detail string for the log is given.
void expectRequestRefused(std::string_view text, int status, std::string_view detail_part = "") {
  SCOPED_TRACE(::testing::Message() << "request: " << ::testing::PrintToString(std::string(text)));
  Req r = parseReq(text);
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.err.status, status) << r.err.detail;
  ASSERT_NE(r.err.detail, nullptr);
  EXPECT_STRNE(r.err.detail, "");
  if (!detail_part.empty()) {
    EXPECT_NE(std::string(r.err.detail).find(detail_part), std::string::npos) << r.err.detail;
  }
}

void expectResponseRefused(std::string_view text, std::string_view detail_part = "") {
  SCOPED_TRACE(::testing::Message() << "response: " << ::testing::PrintToString(std::string(text)));
  Resp r = parseResp(text);
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.err.status, 502);
  EXPECT_STRNE(r.err.detail, "");
  if (!detail_part.empty()) {
    EXPECT_NE(std::string(r.err.detail).find(detail_part), std::string::npos) << r.err.detail;
  }
}

std::string withHost(std::string_view fields) {
  return "GET /a HTTP/1.1\r\nHost: cdn.example.com\r\n" + std::string(fields) + "\r\n";
}

// ---- findHeadEnd ----------------------------------------------------------------------------

TEST(FindHeadEnd, ReturnsZeroUntilTheBlankLineArrives) {
  EXPECT_EQ(findHeadEnd(""), 0u);
  EXPECT_EQ(findHeadEnd("GET / HTTP/1.1\r\nHost: a\r\n"), 0u);
  EXPECT_EQ(findHeadEnd("GET / HTTP/1.1\r\nHost: a\r\n\r"), 0u);
  EXPECT_EQ(findHeadEnd("\r\n\r"), 0u);
  EXPECT_EQ(findHeadEnd("a\n\n"), 0u);  // bare LFs never end a head
}

TEST(FindHeadEnd, ReturnsOffsetJustPastFirstCrlfCrlf) {
  const std::string head = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  EXPECT_EQ(findHeadEnd(head), head.size());
  EXPECT_EQ(findHeadEnd(head + "GET /next HTTP/1.1\r\n\r\n"), head.size());
  EXPECT_EQ(findHeadEnd("\r\n\r\n"), 4u);
  EXPECT_EQ(findHeadEnd("x\r\r\n\r\n"), 6u);
  EXPECT_EQ(findHeadEnd("\r\r\r\n\r\n"), 6u);
}

// ---- isToken --------------------------------------------------------------------------------

TEST(IsToken, AcceptsTcharsOnly) {
  EXPECT_TRUE(isToken("GET"));
  EXPECT_TRUE(isToken("X-Custom_Field.1!#$%&'*+^`|~"));
  EXPECT_FALSE(isToken(""));
  EXPECT_FALSE(isToken("a b"));
  EXPECT_FALSE(isToken("a:b"));
  EXPECT_FALSE(isToken("a\"b"));
  EXPECT_FALSE(isToken("(a)"));
  EXPECT_FALSE(isToken(std::string_view("a\0b", 3)));
  EXPECT_FALSE(isToken("\x80"));
  EXPECT_FALSE(isToken("a\x7f"));
}

// ---- requests: accepted ---------------------------------------------------------------------

TEST(ParseRequest, RealPlayerSegmentRequestWithLongQuery) {
  const std::string text =
      "GET /live/channel7/1080p/seg_000123456.m4s?CMCD=bl%3D21300%2Cbr%3D3200%2Cd%3D4004%2Cot"
      "%3Dv%2Csid%3D%226e2fb550-c457-11e9-bb97-0800200c9a66%22%2Ctb%3D6000&hdnts=exp%3D17000000"
      "00~acl%3D%2Flive%2F*~hmac%3D0123456789abcdef HTTP/1.1\r\n"
      "Host: edge.cdn.example.com\r\n"
      "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
      "Gecko) Chrome/120.0.0.0 Safari/537.36\r\n"
      "Accept: */*\r\n"
      "Accept-Encoding: gzip, deflate, br\r\n"
      "Origin: https://player.example.com\r\n"
      "Referer: https://player.example.com/\r\n"
      "\r\n";
  Req r = parseReq(text);
  ASSERT_TRUE(r.ok) << r.err.detail;
  const RequestHead& h = *r.head;
  EXPECT_EQ(h.method, "GET");
  EXPECT_EQ(h.path, "/live/channel7/1080p/seg_000123456.m4s");
  EXPECT_TRUE(h.has_query);
  EXPECT_EQ(h.query.substr(0, 12), "CMCD=bl%3D21");
  EXPECT_EQ(h.target.size(), h.path.size() + 1 + h.query.size());
  EXPECT_EQ(h.version_minor, 1);
  EXPECT_EQ(h.host, "edge.cdn.example.com");
  EXPECT_EQ(h.header_count, 6u);
  EXPECT_EQ(h.head_bytes, text.size());
  EXPECT_TRUE(h.keep_alive);
  EXPECT_FALSE(h.content_length.has_value());
  EXPECT_FALSE(h.chunked);
  EXPECT_FALSE(h.expect_continue);
  bool found = false;
  EXPECT_EQ(h.find("accept-encoding", &found), "gzip, deflate, br");
  EXPECT_TRUE(found);
  EXPECT_EQ(h.find("ORIGIN"), "https://player.example.com");
  EXPECT_EQ(h.find("Cookie", &found), "");
  EXPECT_FALSE(found);
}

TEST(ParseRequest, RangeAndConditionalFieldsAreKeptAsViews) {
  Req r = parseReq(
      "GET /vod/movie/video_4.mp4 HTTP/1.1\r\n"
      "Host: cdn.example.com:8443\r\n"
      "Range: bytes=1048576-2097151\r\n"
      "If-None-Match: \"abc\", W/\"def\"\r\n"
      "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
      "\r\n");
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(r.head->host, "cdn.example.com:8443");
  EXPECT_FALSE(r.head->has_query);
  EXPECT_EQ(r.head->query, "");
  EXPECT_EQ(r.head->path, "/vod/movie/video_4.mp4");
  EXPECT_EQ(r.head->find("range"), "bytes=1048576-2097151");
  EXPECT_EQ(r.head->find("if-none-match"), "\"abc\", W/\"def\"");
}

TEST(ParseRequest, ValueIsTrimmedOfOwsAndMayHoldHtabAndObsText) {
  Req r = parseReq(withHost("X-A: \t v1 \t\r\nX-B:v2\r\nX-C:\r\nX-D: a\tb \xC3\xA9\r\n"));
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(r.head->find("x-a"), "v1");
  EXPECT_EQ(r.head->find("x-b"), "v2");
  bool found = false;
  EXPECT_EQ(r.head->find("x-c", &found), "");
  EXPECT_TRUE(found);
  EXPECT_EQ(r.head->find("x-d"), "a\tb \xC3\xA9");
}

TEST(ParseRequest, LongFieldValueCrossesSimdBlocks) {
  std::string value(1000, 'v');
  value[500] = '\t';
  value[777] = '\xff';
  Req r = parseReq(withHost("X-Long: " + value + "\r\n"));
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(r.head->find("x-long"), value);
}

TEST(ParseRequest, HeadRequestAndOtherTokenMethods) {
  Req r = parseReq("HEAD /a.m3u8 HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(r.head->method, "HEAD");
  // Methods are case-sensitive tokens; whether one is allowed is the admit step's decision.
  r = parseReq("PURGE /a HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(r.head->method, "PURGE");
}

TEST(ParseRequest, Http10NeedsNoHostAndClosesByDefault) {
  Req r = parseReq("GET / HTTP/1.0\r\n\r\n");
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(r.head->version_minor, 0);
  EXPECT_EQ(r.head->host, "");
  EXPECT_FALSE(r.head->keep_alive);

  r = parseReq("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: a\r\n\r\n");
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_TRUE(r.head->keep_alive);
  EXPECT_EQ(r.head->host, "a");
}

TEST(ParseRequest, ConnectionIsACommaListOfTokens) {
  Req r = parseReq(withHost("Connection: Upgrade, close\r\n"));
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_FALSE(r.head->keep_alive);

  r = parseReq(withHost("Connection: , keep-alive ,,\r\n"));
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_TRUE(r.head->keep_alive);

  // Two Connection lines combine: close wins.
  r = parseReq(withHost("Connection: keep-alive\r\nConnection: CLOSE\r\n"));
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_FALSE(r.head->keep_alive);
}

TEST(ParseRequest, ExpectContinueOnlyForHttp11) {
  Req r = parseReq(
      "PUT /a HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nExpect: 100-Continue\r\n\r\n");
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_TRUE(r.head->expect_continue);
  ASSERT_TRUE(r.head->content_length.has_value());
  EXPECT_EQ(*r.head->content_length, 10u);

  r = parseReq("PUT /a HTTP/1.0\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n");
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_FALSE(r.head->expect_continue);
}

TEST(ParseRequest, ChunkedRequestBody) {
  Req r = parseReq(withHost("Transfer-Encoding: Chunked\r\n"));
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_TRUE(r.head->chunked);
  EXPECT_FALSE(r.head->content_length.has_value());
}

TEST(ParseRequest, ContentLengthLimits) {
  Req r = parseReq(withHost("Content-Length: 0\r\n"));
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(*r.head->content_length, 0u);
  r = parseReq(withHost("Content-Length: 18446744073709551615\r\n"));
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(*r.head->content_length, UINT64_MAX);
  r = parseReq(withHost("Content-Length: 007\r\n"));
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(*r.head->content_length, 7u);
}

TEST(ParseRequest, OneLeadingEmptyLineIsIgnored) {
  const std::string text = "\r\nGET /a HTTP/1.1\r\nHost: a\r\n\r\n";
  Req r = parseReq(text);
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(r.head->head_bytes, text.size());  // the empty line is consumed too
  EXPECT_EQ(findHeadEnd(text), text.size());
}

TEST(ParseRequest, PipelinedBytesAfterTheHeadAreNotConsumed) {
  const std::string first = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n";
  const std::string text = first + "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
  Req r = parseReq(text);
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(r.head->head_bytes, first.size());
  EXPECT_EQ(r.head->path, "/1");
  r = parseReq(std::string_view(text).substr(first.size()));
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(r.head->path, "/2");
}

TEST(ParseRequest, ViewsPointIntoTheInput) {
  const std::string text = withHost("X-A: b\r\n");
  Req r = parseReq(text);
  ASSERT_TRUE(r.ok) << r.err.detail;
  const char* b = r.text->data();
  const char* e = b + r.text->size();
  auto inside = [&](std::string_view v) { return v.data() >= b && v.data() + v.size() <= e; };
  EXPECT_TRUE(inside(r.head->method));
  EXPECT_TRUE(inside(r.head->target));
  EXPECT_TRUE(inside(r.head->host));
  for (size_t i = 0; i < r.head->header_count; ++i) {
    EXPECT_TRUE(inside(r.head->headers[i].name));
    EXPECT_TRUE(inside(r.head->headers[i].value));
  }
}

TEST(ParseRequest, ValidHostForms) {
  for (std::string_view host :
       {"a", "cdn.example.com", "cdn.example.com:443", "127.0.0.1", "127.0.0.1:8080",
        "[::1]", "[::1]:8080", "[::]", "[2001:db8::1]", "[2001:db8:0:0:0:0:0:1]",
        "[1:2:3:4:5:6:7:8]", "[1::]", "[::ffff:192.0.2.1]", "[1:2:3:4:5:6:1.2.3.4]",
        "xn--bcher-kva.example", "my_host.local", "a%2Db.example", "host:0", "host:65535",
        "a!$&'()*+,;=~.b"}) {
    SCOPED_TRACE(host);
    Req r = parseReq("GET / HTTP/1.1\r\nHost: " + std::string(host) + "\r\n\r\n");
    ASSERT_TRUE(r.ok) << r.err.detail;
    EXPECT_EQ(r.head->host, host);
  }
}

TEST(ParseRequest, ExactlyMaxHeaderFieldsIsAccepted) {
  std::string fields;
  for (size_t i = 1; i < kMaxHeaderFields; ++i) fields += "X-F" + std::to_string(i) + ": v\r\n";
  Req r = parseReq(withHost(fields));
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(r.head->header_count, kMaxHeaderFields);
}

TEST(ParseRequest, TargetOfExactlyMaxUriBytesIsAccepted) {
  RequestLimits limits;
  limits.max_uri_bytes = 64;
  const std::string target = "/" + std::string(63, 'a');
  Req r = parseReq("GET " + target + " HTTP/1.1\r\nHost: a\r\n\r\n", limits);
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(r.head->target, target);
}

TEST(ParseRequest, HeadOfExactlyMaxHeadBytesIsAccepted) {
  RequestLimits limits;
  std::string text = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: \r\n\r\n";
  limits.max_head_bytes = 200;
  text.insert(text.size() - 4, 200 - text.size(), 'p');
  ASSERT_EQ(text.size(), 200u);
  Req r = parseReq(text + "extra body bytes", limits);
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(r.head->head_bytes, 200u);
}

// ---- requests: the smuggling cases from DESIGN.md -------------------------------------------

TEST(RequestSmuggling, TwoDifferentContentLengthsAreRefused) {
  expectRequestRefused(withHost("Content-Length: 5\r\nContent-Length: 6\r\n"), 400,
                       "Content-Length");
}

TEST(RequestSmuggling, TwoIdenticalContentLengthsAreRefused) {
  expectRequestRefused(withHost("Content-Length: 5\r\nContent-Length: 5\r\n"), 400,
                       "Content-Length");
  expectRequestRefused(withHost("Content-Length: 5, 5\r\n"), 400, "Content-Length");
}

TEST(RequestSmuggling, SpaceBetweenFieldNameAndColonIsRefused) {
  expectRequestRefused(withHost("Foo : bar\r\n"), 400, "colon");
  expectRequestRefused(withHost("Foo\t: bar\r\n"), 400, "colon");
  expectRequestRefused("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "colon");
  expectRequestRefused(withHost("Content-Length : 5\r\n"), 400, "colon");
}

TEST(RequestSmuggling, TwoHostsAreRefused) {
  expectRequestRefused("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "Host");
  expectRequestRefused("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400, "Host");
  expectRequestRefused("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400, "Host");
}

TEST(RequestSmuggling, Http11WithoutHostIsRefused) {
  expectRequestRefused("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400, "Host");
}

TEST(RequestSmuggling, SignedOrMalformedContentLengthIsRefused) {
  for (std::string_view cl : {"+3", "-1", "", "3 3", "0x10", "1.0", "3a", " +3",
                              "18446744073709551616", "99999999999999999999999"}) {
    SCOPED_TRACE(cl);
    expectRequestRefused(withHost("Content-Length: " + std::string(cl) + "\r\n"), 400,
                         "Content-Length");
  }
}

TEST(RequestSmuggling, NulInFieldValueIsRefused) {
  expectRequestRefused(withHost(std::string("X-A: ab\0cd\r\n", 12)), 400, "NUL");
  // NUL past the first 16 bytes (the vectorised scan) too.
  std::string v(40, 'x');
  v[33] = '\0';
  expectRequestRefused(withHost("X-A: " + v + "\r\n"), 400, "NUL");
}

TEST(RequestSmuggling, ContentLengthWithTransferEncodingIsRefused) {
  expectRequestRefused(withHost("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), 400,
                       "Content-Length and Transfer-Encoding");
  expectRequestRefused(withHost("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), 400,
                       "Content-Length and Transfer-Encoding");
}

TEST(RequestSmuggling, TransferEncodingOtherThanChunkedIsRefused) {
  for (std::string_view te : {"gzip, chunked", "gzip", "identity", "chunked, gzip",
                              "chunked, chunked", "chunked;q=1", "chunked ,", "\"chunked\"",
                              "xchunked", ""}) {
    SCOPED_TRACE(te);
    expectRequestRefused(withHost("Transfer-Encoding: " + std::string(te) + "\r\n"), 501,
                         "Transfer-Encoding");
  }
  expectRequestRefused(withHost("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"),
                       400, "Transfer-Encoding");
  expectRequestRefused(withHost("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"),
                       501, "Transfer-Encoding");
  expectRequestRefused("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "HTTP/1.0");
}

TEST(RequestSmuggling, BareLfIsRefusedEverywhere) {
  expectRequestRefused("GET / HTTP/1.1\nHost: a\r\n\r\n", 400, "bare LF");
  expectRequestRefused("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400, "bare LF");
  expectRequestRefused("GET / HTTP/1.1\r\nHost: a\r\n\n\r\n\r\n", 400, "bare LF");
  expectRequestRefused("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bare LF");
  expectRequestRefused(withHost("X-A: a\nb\r\n"), 400, "bare LF");
  expectRequestRefused("GET /\n HTTP/1.1\r\nHost: a\r\n\r\n", 400);
}

TEST(RequestSmuggling, BareCrIsRefusedEverywhere) {
  expectRequestRefused("GET / HTTP/1.1\rHost: a\r\n\r\n", 400, "bare CR");
  expectRequestRefused(withHost("X-A: a\rb\r\n"), 400, "bare CR");
  expectRequestRefused("GET / HTTP/1.1\r\nHost: a\r\n\rX\r\n\r\n", 400, "bare CR");
  expectRequestRefused("\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bare CR");
}

TEST(RequestSmuggling, ObsFoldIsRefused) {
  expectRequestRefused(withHost("X-A: a\r\n b\r\n"), 400, "obs-fold");
  expectRequestRefused(withHost("X-A: a\r\n\tb\r\n"), 400, "obs-fold");
  // Whitespace before the first field line (RFC 9112 §2.2).
  expectRequestRefused("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400, "obs-fold");
}

// ---- requests: every other refusal rule -----------------------------------------------------

TEST(RequestRefused, ControlCharactersAndDelInValue) {
  expectRequestRefused(withHost("X-A: a\x01" "b\r\n"), 400, "control");
  expectRequestRefused(withHost("X-A: a\x1f" "b\r\n"), 400, "control");
  expectRequestRefused(withHost("X-A: a\x7f" "b\r\n"), 400, "control");
  expectRequestRefused(withHost("X-A: a\x0b" "b\r\n"), 400, "control");
  std::string v(50, 'y');
  v[20] = '\x7f';
  expectRequestRefused(withHost("X-A: " + v + "\r\n"), 400, "control");
}

TEST(RequestRefused, InvalidFieldNames) {
  expectRequestRefused(withHost(": value\r\n"), 400, "field name");
  expectRequestRefused(withHost("Fo(o: bar\r\n"), 400, "field name");
  expectRequestRefused(withHost("Foo\"x: bar\r\n"), 400, "field name");
  expectRequestRefused(withHost("F\x80o: bar\r\n"), 400, "field name");
  expectRequestRefused(withHost(std::string("F\0o: bar\r\n", 10)), 400, "field name");
  expectRequestRefused(withHost("NoColonHere\r\n"), 400, "colon");
  expectRequestRefused(withHost("(: x\r\n"), 400, "field name");
}

TEST(RequestRefused, InvalidMethod) {
  expectRequestRefused("GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "method");
  expectRequestRefused(" / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "method");
  expectRequestRefused("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "method");
  expectRequestRefused(std::string("G\0T / HTTP/1.1\r\nHost: a\r\n\r\n", 27), 400, "method");
}

TEST(RequestRefused, TargetNotOriginForm) {
  expectRequestRefused("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 400, "asterisk-form");
  expectRequestRefused("GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "absolute-form");
  expectRequestRefused("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 400, "absolute-form");
  expectRequestRefused("GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400, "origin-form");
}

TEST(RequestRefused, MalformedRequestLine) {
  expectRequestRefused("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "target");
  expectRequestRefused("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, "junk");
  expectRequestRefused("GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400, "version");
  expectRequestRefused("GET /\r\nHost: a\r\n\r\n", 400, "version");
  expectRequestRefused("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400, "fragment");
  expectRequestRefused("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "target");
  expectRequestRefused("GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", 400, "target");
  expectRequestRefused("GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400, "target");
  expectRequestRefused("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", 400, "target");
  std::string long_bad = "/" + std::string(40, 'a') + "\x02";
  expectRequestRefused("GET " + long_bad + " HTTP/1.1\r\nHost: a\r\n\r\n", 400, "target");
}

TEST(RequestRefused, UnsupportedOrMalformedVersion) {
  expectRequestRefused("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
  expectRequestRefused("GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505);
  expectRequestRefused("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505);
  expectRequestRefused("GET / http/1.1\r\nHost: a\r\n\r\n", 400, "version");
  expectRequestRefused("GET / HTTP/1.10\r\nHost: a\r\n\r\n", 400, "junk");
  expectRequestRefused("GET / HTTP/1\r\nHost: a\r\n\r\n", 400, "version");
  expectRequestRefused("GET / HTTP/1.x\r\nHost: a\r\n\r\n", 400, "version");
}

TEST(RequestRefused, TargetOverMaxUriIs414) {
  RequestLimits limits;
  limits.max_uri_bytes = 64;
  Req r = parseReq("GET /" + std::string(64, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n", limits);
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.err.status, 414);
  // Even when the target alone runs past the head limit, the answer is 414, not 431.
  limits.max_head_bytes = 128;
  r = parseReq("GET /" + std::string(500, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n", limits);
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.err.status, 414);
}

TEST(RequestRefused, HeadOverMaxHeadBytesIs431) {
  RequestLimits limits;
  limits.max_head_bytes = 200;
  std::string text = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: \r\n\r\n";
  text.insert(text.size() - 4, 201 - text.size(), 'p');
  Req r = parseReq(text, limits);
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.err.status, 431);
}

TEST(RequestRefused, TooManyFieldsIs431) {
  std::string fields;
  for (size_t i = 0; i < kMaxHeaderFields; ++i) fields += "X-F" + std::to_string(i) + ": v\r\n";
  expectRequestRefused(withHost(fields), 431, "too many");
}

TEST(RequestRefused, IncompleteHead) {
  for (std::string_view text : {"", "G", "GET", "GET /", "GET / HTTP/1.1", "GET / HTTP/1.1\r",
                                "GET / HTTP/1.1\r\nHost: a", "GET / HTTP/1.1\r\nHost: a\r\n",
                                "GET / HTTP/1.1\r\nHost: a\r\n\r", "\r\n", "\r"}) {
    expectRequestRefused(text, 400, "incomplete");
  }
  // Two leading empty lines: findHeadEnd stops after them, leaving no request line.
  const std::string text = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
  expectRequestRefused(std::string_view(text).substr(0, findHeadEnd(text)), 400, "incomplete");
}

TEST(RequestRefused, InvalidHost) {
  for (std::string_view host :
       {"", "a b", "a@b", "a/b", "a\"b", "%zz.example", "a%2", "host:", "host:http", "host:123456",
        "host:65536", "host:-1", ":80", "[::1", "[::1]x", "[::1]:", "[1:2:3:4:5:6:7:8:9]",
        "[:::]", "[1::2::3]", "[12345::]", "[::g]", "[1:2:3:4:5:6:7]", "[:1::]", "[1:]",
        "[::1.2.3.256]", "[::01.2.3.4]", "[::1.2.3]", "[v1.x]", "[fe80::1%25eth0]",
        "[::1]:8080:1", "a:1:2", "\xc3\xa9.example"}) {
    SCOPED_TRACE(host);
    expectRequestRefused("GET / HTTP/1.1\r\nHost: " + std::string(host) + "\r\n\r\n", 400, "Host");
  }
}

TEST(RequestRefused, InvalidConnectionToken) {
  expectRequestRefused(withHost("Connection: close;x\r\n"), 400, "Connection");
  expectRequestRefused(withHost("Connection: keep alive\r\n"), 400, "Connection");
}

// ---- responses ------------------------------------------------------------------------------

TEST(ParseResponse, ContentLengthResponse) {
  const std::string head =
      "HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 1048576\r\n"
      "Cache-Control: max-age=31536000\r\nETag: \"5f3a\"\r\n\r\n";
  Resp r = parseResp(head + "body...");
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(r.head->status, 200);
  EXPECT_EQ(r.head->reason, "OK");
  EXPECT_EQ(r.head->version_minor, 1);
  EXPECT_EQ(r.head->header_count, 4u);
  EXPECT_EQ(r.head->head_bytes, head.size());
  ASSERT_TRUE(r.head->content_length.has_value());
  EXPECT_EQ(*r.head->content_length, 1048576u);
  EXPECT_FALSE(r.head->chunked);
  EXPECT_TRUE(r.head->keep_alive);
  EXPECT_EQ(r.head->find("etag"), "\"5f3a\"");
  EXPECT_EQ(responseFraming("GET", *r.head), BodyFraming::kContentLength);
  EXPECT_EQ(responseFraming("HEAD", *r.head), BodyFraming::kNone);
}

TEST(ParseResponse, ChunkedResponse) {
  Resp r = parseResp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                     "Content-Type: application/vnd.apple.mpegurl\r\n\r\n");
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_TRUE(r.head->chunked);
  EXPECT_FALSE(r.head->content_length.has_value());
  EXPECT_EQ(responseFraming("GET", *r.head), BodyFraming::kChunked);
  EXPECT_EQ(responseFraming("HEAD", *r.head), BodyFraming::kNone);
}

TEST(ParseResponse, NotModifiedHasNoBodyWhateverItSays) {
  Resp r = parseResp("HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 500\r\n\r\n");
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(r.head->status, 304);
  EXPECT_EQ(responseFraming("GET", *r.head), BodyFraming::kNone);
  r = parseResp("HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n");
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(responseFraming("GET", *r.head), BodyFraming::kNone);
}

TEST(ParseResponse, BodilessStatusesAndReadUntilClose) {
  Resp r = parseResp("HTTP/1.1 204 No Content\r\n\r\n");
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(responseFraming("GET", *r.head), BodyFraming::kNone);
  r = parseResp("HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(responseFraming("GET", *r.head), BodyFraming::kNone);
  r = parseResp("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n");
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(responseFraming("GET", *r.head), BodyFraming::kNone);
  r = parseResp("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n");
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(responseFraming("GET", *r.head), BodyFraming::kUntilClose);
  EXPECT_EQ(responseFraming("HEAD", *r.head), BodyFraming::kNone);
  r = parseResp("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(responseFraming("GET", *r.head), BodyFraming::kContentLength);
}

TEST(ParseResponse, EmptyOrMissingReasonAndObsTextReason) {
  Resp r = parseResp("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(r.head->reason, "");
  r = parseResp("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(r.head->reason, "");
  r = parseResp("HTTP/1.1 200 Tr\xc3\xa8s bien\tok\r\n\r\n");
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(r.head->reason, "Tr\xc3\xa8s bien\tok");
}

TEST(ParseResponse, Http10ClosesUnlessKeepAlive) {
  Resp r = parseResp("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n");
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_EQ(r.head->version_minor, 0);
  EXPECT_FALSE(r.head->keep_alive);
  r = parseResp("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n");
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_TRUE(r.head->keep_alive);
  r = parseResp("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\n");
  ASSERT_TRUE(r.ok) << r.err.detail;
  EXPECT_FALSE(r.head->keep_alive);
}

TEST(ParseResponse, HostIsNotRequiredNorCheckedInResponses) {
  Resp r = parseResp("HTTP/1.1 200 OK\r\nHost: a\r\nHost: b\r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(r.ok) << r.err.detail;
}

TEST(ResponseRefused, SmugglingCasesFromOrigins) {
  expectResponseRefused("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                        "Content-Length");
  expectResponseRefused("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                        "Content-Length");
  expectResponseRefused("HTTP/1.1 200 OK\r\nContent-Length: 5,5\r\n\r\n", "Content-Length");
  expectResponseRefused("HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\n", "Content-Length");
  expectResponseRefused("HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n", "Content-Length");
  expectResponseRefused("HTTP/1.1 200 OK\r\nContent-Length : 3\r\n\r\n", "colon");
  expectResponseRefused(
      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                        "Content-Length and Transfer-Encoding");
  expectResponseRefused("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                        "Transfer-Encoding");
  expectResponseRefused("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "Transfer-Encoding");
  expectResponseRefused(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                        "Transfer-Encoding");
  expectResponseRefused("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.0");
  expectResponseRefused(std::string("HTTP/1.1 200 OK\r\nX-A: a\0b\r\n\r\n", 29), "NUL");
  expectResponseRefused("HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n\r\n", "obs-fold");
  expectResponseRefused("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", "bare LF");
  expectResponseRefused("HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n", "bare LF");
  expectResponseRefused("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n", "bare LF");
  expectResponseRefused("HTTP/1.1 200 OK\rContent-Length: 0\r\n\r\n", "bare CR");
  expectResponseRefused("HTTP/1.1 200 OK\r\nX-A: \x7f\r\n\r\n", "control");
}

TEST(ResponseRefused, BadStatusLine) {
  expectResponseRefused("HTTP/1.1 099 Low\r\n\r\n", "status");
  expectResponseRefused("HTTP/1.1 600 High\r\n\r\n", "status");
  expectResponseRefused("HTTP/1.1 20x OK\r\n\r\n", "status");
  expectResponseRefused("HTTP/1.1 2000 OK\r\n\r\n", "status");
  expectResponseRefused("HTTP/1.1 20 OK\r\n\r\n", "status");
  expectResponseRefused("HTTP/1.1 200OK\r\n\r\n", "SP");
  expectResponseRefused("HTTP/1.1  200 OK\r\n\r\n", "status");
  expectResponseRefused("HTTP/2 200 OK\r\n\r\n", "version");
  expectResponseRefused("HTTP/2.0 200 OK\r\n\r\n", "version");
  expectResponseRefused("HTTP/1.2 200 OK\r\n\r\n", "version");
  expectResponseRefused("http/1.1 200 OK\r\n\r\n", "version");
  expectResponseRefused("HTTP/1.1\t200 OK\r\n\r\n", "SP");
  expectResponseRefused("HTTP/1.1 200 O\x01K\r\n\r\n", "reason");
  expectResponseRefused("ICY 200 OK\r\n\r\n");
}

TEST(ResponseRefused, IncompleteOrTooLarge) {
  for (std::string_view text : {"", "HTTP/1.1", "HTTP/1.1 200 OK", "HTTP/1.1 200 OK\r\n",
                                "HTTP/1.1 200 OK\r\nA: b\r\n", "HTTP/1.1 200 OK\r\n\r"}) {
    expectResponseRefused(text, "incomplete");
  }
  const std::string big =
      "HTTP/1.1 200 OK\r\nX-Big: " + std::string(kMaxResponseHeadBytes, 'b') + "\r\n\r\n";
  expectResponseRefused(big, "too large");
}

TEST(ResponseRefused, TooManyFields) {
  std::string text = "HTTP/1.1 200 OK\r\n";
  for (size_t i = 0; i <= kMaxHeaderFields; ++i) text += "X-F" + std::to_string(i) + ": v\r\n";
  expectResponseRefused(text + "\r\n", "too many");
}

}  // namespace
}  // namespace streamedge::proxy
