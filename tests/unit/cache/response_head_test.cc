#include "cache/response_head.h"

#include <gtest/gtest.h>

namespace streamedge::cache {
namespace {

TEST(ResponseHead, FindIsCaseInsensitiveAndReturnsTheFirstValue) {
  ResponseHead head;
  head.headers = {{"Content-Type", "video/mp2t"}, {"x-multi", "1"}, {"X-Multi", "2"}};
  ASSERT_NE(head.find("content-type"), nullptr);
  EXPECT_EQ(*head.find("CONTENT-TYPE"), "video/mp2t");
  EXPECT_EQ(*head.find("X-MULTI"), "1");
  EXPECT_EQ(head.find("Content-Typ"), nullptr);
  EXPECT_EQ(head.find(""), nullptr);
}

TEST(ResponseHead, WireKeepsNamesValuesAndOrder) {
  ResponseHead head;
  head.headers = {{"Content-Type", "application/vnd.apple.mpegurl"},
                  {"cache-control", "max-age=2"},
                  {"X-Empty", ""}};
  head.buildWire();
  EXPECT_EQ(head.wire,
            "Content-Type: application/vnd.apple.mpegurl\r\n"
            "cache-control: max-age=2\r\n"
            "X-Empty: \r\n");
  const std::string first = head.wire;
  head.buildWire();  // rebuilt, not appended twice
  EXPECT_EQ(head.wire, first);
}

TEST(ResponseHead, EdgeOnlyFieldsAreKeptButNeverOnTheWire) {
  ResponseHead head;
  head.headers = {{"Cache-Control", "no-store"}, {":own-cache-control", "max-age=60"},
                  {"ETag", "\"e\""}};
  head.buildWire();
  EXPECT_EQ(head.wire, "Cache-Control: no-store\r\nETag: \"e\"\r\n");
  ASSERT_NE(head.find(":own-cache-control"), nullptr);
  EXPECT_TRUE(isEdgeOnlyField(":own-cache-control"));
  EXPECT_FALSE(isEdgeOnlyField("Cache-Control"));
  EXPECT_FALSE(isEdgeOnlyField(""));
}

TEST(ResponseHead, EmptyHeadHasEmptyWire) {
  ResponseHead head;
  head.wire = "stale";
  head.buildWire();
  EXPECT_EQ(head.wire, "");
}

TEST(EqualsIgnoreCase, ComparesAsciiOnlyAndWholeStrings) {
  EXPECT_TRUE(equalsIgnoreCase("Set-Cookie", "set-cookie"));
  EXPECT_TRUE(equalsIgnoreCase("", ""));
  EXPECT_FALSE(equalsIgnoreCase("Set-Cookie", "Set-Cookie2"));
  EXPECT_FALSE(equalsIgnoreCase("a-b", "a_b"));
  EXPECT_FALSE(equalsIgnoreCase("\xC3\xA9", "\xC3\x89"));  // no Unicode folding
  EXPECT_FALSE(equalsIgnoreCase("[", "{"));  // '[' + 32 == '{': only letters fold
}

TEST(IsHopByHopOrDeliveryField, HopByHopFramingAndDeliveryFieldsAreNeverStored) {
  for (const char* name : {"Connection", "keep-alive", "Proxy-Connection", "Proxy-Authenticate",
                           "proxy-authorization", "TE", "Trailer", "transfer-encoding",
                           "Upgrade", "Content-Length", "age", "Via", "x-cache"}) {
    EXPECT_TRUE(isHopByHopOrDeliveryField(name)) << name;
  }
  for (const char* name : {"Content-Type", "Cache-Control", "ETag", "Last-Modified", "Date",
                           "Expires", "Vary", "Trailers", "Content-Range", "X-Cache-Key"}) {
    EXPECT_FALSE(isHopByHopOrDeliveryField(name)) << name;
  }
}

using Fields = std::vector<std::pair<std::string, std::string>>;

ResponseHead storedHead(Fields fields) {
  ResponseHead head;
  head.status = 200;
  head.reason = "OK";
  head.content_length = 1234;
  head.headers = std::move(fields);
  head.buildWire();
  return head;
}

TEST(NotModified, AStrongETagMustBeTheStoredOne) {
  const ResponseHead stored = storedHead({{"ETag", "\"v1\""}});
  EXPECT_TRUE(notModifiedMatches(stored, {{"etag", "\"v1\""}}));
  EXPECT_FALSE(notModifiedMatches(stored, {{"ETag", "\"v2\""}}));
  EXPECT_TRUE(notModifiedMatches(stored, {{"ETag", "W/\"v1\""}}));  // weak comparison
  EXPECT_FALSE(notModifiedMatches(storedHead({{"ETag", "W/\"v1\""}}), {{"ETag", "\"v1\""}}));
  EXPECT_FALSE(notModifiedMatches(storedHead({}), {{"ETag", "\"v1\""}}));
}

TEST(NotModified, WithoutAnETagTheLastModifiedMustMatch) {
  const ResponseHead stored = storedHead({{"Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT"}});
  EXPECT_TRUE(notModifiedMatches(stored, {{"Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT"}}));
  EXPECT_FALSE(notModifiedMatches(stored, {{"Last-Modified", "Sun, 31 Dec 2023 00:00:00 GMT"}}));
  EXPECT_TRUE(notModifiedMatches(stored, {{"Cache-Control", "max-age=60"}}));  // no validator
}

TEST(NotModified, MergeReplacesFieldsByNameAndKeepsTheRest) {
  const ResponseHead stored = storedHead({{"Content-Type", "video/mp2t"},
                                          {"Cache-Control", "max-age=1"},
                                          {"X-Tag", "a"},
                                          {"X-Tag", "b"},
                                          {"ETag", "\"v1\""}});
  auto merged = mergeNotModified(stored, {{"cache-control", "max-age=60"},
                                          {"X-Tag", "c"},
                                          {"X-New", "n"},
                                          {"Date", "Tue, 02 Jan 2024 00:00:00 GMT"}});
  EXPECT_EQ(merged->status, 200);
  EXPECT_EQ(merged->content_length, 1234u);
  EXPECT_EQ(merged->headers, (Fields{{"Content-Type", "video/mp2t"},
                                     {"ETag", "\"v1\""},
                                     {"cache-control", "max-age=60"},
                                     {"X-Tag", "c"},
                                     {"X-New", "n"},
                                     {"Date", "Tue, 02 Jan 2024 00:00:00 GMT"}}));
  EXPECT_NE(merged->wire.find("X-New: n\r\n"), std::string::npos);
}

TEST(NotModified, MergeNeverTakesFramingEncodingCookiesOrProxyFields) {
  const ResponseHead stored = storedHead({{"Content-Encoding", "gzip"}, {"Content-Type", "a/b"}});
  auto merged = mergeNotModified(stored, {{"Content-Encoding", "br"},
                                          {"Content-Length", "0"},
                                          {"Content-Range", "bytes 0-1/2"},
                                          {"Set-Cookie", "id=1"},
                                          {"Proxy-Authenticate", "Basic"},
                                          {"Proxy-Authentication-Info", "x"},
                                          {"Connection", "close"},
                                          {"Age", "5"},
                                          {"Via", "1.1 other"}});
  // The stored Content-Encoding stays (the bytes are gzip), and nothing else was taken.
  EXPECT_EQ(merged->headers, (Fields{{"Content-Encoding", "gzip"}, {"Content-Type", "a/b"}}));
  EXPECT_EQ(merged->content_length, 1234u);
}

}  // namespace
}  // namespace streamedge::cache
