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

}  // namespace
}  // namespace streamedge::cache
