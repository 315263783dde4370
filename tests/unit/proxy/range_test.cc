// Range and conditional-request helpers: a single satisfiable range gives [first, last] inside
// the representation, anything unusual degrades to a full 200, and validators compare the way
// RFC 9110 §8.8.3.2 / §13.1 say (weak for If-None-Match, strong for If-Range).
#include "proxy/range.h"

#include <gtest/gtest.h>

namespace streamedge::proxy {
namespace {

using Kind = RangeSpec::Kind;

void expectSingle(std::string_view header, uint64_t size, uint64_t first, uint64_t last) {
  SCOPED_TRACE(header);
  const RangeSpec r = parseRange(header, size);
  ASSERT_EQ(r.kind, Kind::kSingle);
  EXPECT_EQ(r.first, first);
  EXPECT_EQ(r.last, last);
}

void expectKind(std::string_view header, uint64_t size, Kind kind) {
  SCOPED_TRACE(header);
  EXPECT_EQ(parseRange(header, size).kind, kind);
}

TEST(ParseRange, FirstAndLast) {
  expectSingle("bytes=0-99", 1000, 0, 99);
  expectSingle("bytes=0-0", 1000, 0, 0);
  expectSingle("bytes=999-999", 1000, 999, 999);
  expectSingle("bytes=100-199", 1000, 100, 199);
}

TEST(ParseRange, OpenEnded) {
  expectSingle("bytes=100-", 1000, 100, 999);
  expectSingle("bytes=0-", 1000, 0, 999);
  expectSingle("bytes=999-", 1000, 999, 999);
}

TEST(ParseRange, Suffix) {
  expectSingle("bytes=-500", 1000, 500, 999);
  expectSingle("bytes=-1", 1000, 999, 999);
  expectSingle("bytes=-1000", 1000, 0, 999);
  expectSingle("bytes=-5000", 1000, 0, 999);  // longer than the representation: all of it
}

TEST(ParseRange, LastPastTheEndIsClamped) {
  expectSingle("bytes=0-99999", 1000, 0, 999);
  expectSingle("bytes=500-18446744073709551615", 1000, 500, 999);
}

TEST(ParseRange, FirstAtOrPastTheEndIsUnsatisfiable) {
  expectKind("bytes=1000-", 1000, Kind::kUnsatisfiable);
  expectKind("bytes=1000-2000", 1000, Kind::kUnsatisfiable);
  expectKind("bytes=5000-6000", 1000, Kind::kUnsatisfiable);
  expectKind("bytes=0-", 0, Kind::kUnsatisfiable);
}

TEST(ParseRange, ZeroSuffixIsUnsatisfiable) {
  expectKind("bytes=-0", 1000, Kind::kUnsatisfiable);
  expectKind("bytes=-000", 1000, Kind::kUnsatisfiable);
  expectKind("bytes=-0", 0, Kind::kUnsatisfiable);
}

TEST(ParseRange, SuffixOfAnEmptyRepresentationIsAFull200) {
  expectKind("bytes=-5", 0, Kind::kNone);
}

TEST(ParseRange, SeveralRangesGiveAFull200) {
  expectKind("bytes=0-99,200-299", 1000, Kind::kNone);
  expectKind("bytes=0-99, 200-299", 1000, Kind::kNone);
  expectKind("bytes=0-1,-1", 1000, Kind::kNone);
  expectKind("bytes=0-99,", 1000, Kind::kNone);
}

TEST(ParseRange, GarbageGivesAFull200) {
  for (std::string_view h :
       {"", "bytes", "bytes=", "bytes=-", "bytes=abc", "bytes=1-a", "bytes=a-1", "bytes=10-5",
        "bytes=+1-2", "bytes=1--2", "bytes=1-2-3", "bytes= 0-99", "bytes=0 -99", "bytes=0- 99",
        "bytes =0-99", "items=0-99", "bytes:0-99", "byte=0-99", "bytes=0x10-20",
        "bytes=18446744073709551616-", "bytes=-18446744073709551616", "=0-99"}) {
    expectKind(h, 1000, Kind::kNone);
  }
}

TEST(ParseRange, UnitIsCaseInsensitiveAndOwsIsTrimmed) {
  expectSingle("Bytes=0-9", 100, 0, 9);
  expectSingle("BYTES=0-9", 100, 0, 9);
  expectSingle("  bytes=0-9\t", 100, 0, 9);
  expectSingle("bytes=0009-0010", 100, 9, 10);
}

TEST(IfNoneMatch, WeakComparisonOverAList) {
  EXPECT_TRUE(ifNoneMatchMatches("\"abc\"", "\"abc\""));
  EXPECT_TRUE(ifNoneMatchMatches("W/\"abc\"", "\"abc\""));
  EXPECT_TRUE(ifNoneMatchMatches("\"abc\"", "W/\"abc\""));
  EXPECT_TRUE(ifNoneMatchMatches("W/\"abc\"", "W/\"abc\""));
  EXPECT_TRUE(ifNoneMatchMatches("\"x\", \"abc\"", "\"abc\""));
  EXPECT_TRUE(ifNoneMatchMatches("\"x\",W/\"abc\" , \"y\"", "\"abc\""));
  EXPECT_TRUE(ifNoneMatchMatches(" , \"abc\",, ", "\"abc\""));
  EXPECT_TRUE(ifNoneMatchMatches("\"\"", "\"\""));
  EXPECT_FALSE(ifNoneMatchMatches("\"abd\"", "\"abc\""));
  EXPECT_FALSE(ifNoneMatchMatches("\"ABC\"", "\"abc\""));  // opaque tags are case-sensitive
  EXPECT_FALSE(ifNoneMatchMatches("\"x\", \"y\"", "\"abc\""));
}

TEST(IfNoneMatch, StarMatchesAnyRepresentation) {
  EXPECT_TRUE(ifNoneMatchMatches("*", "\"abc\""));
  EXPECT_TRUE(ifNoneMatchMatches(" * ", "W/\"abc\""));
  EXPECT_TRUE(ifNoneMatchMatches("*", ""));
}

TEST(IfNoneMatch, MalformedNeverMatches) {
  EXPECT_FALSE(ifNoneMatchMatches("abc", "\"abc\""));           // unquoted
  EXPECT_FALSE(ifNoneMatchMatches("\"abc", "\"abc\""));         // unterminated
  EXPECT_FALSE(ifNoneMatchMatches("w/\"abc\"", "\"abc\""));     // W/ is case-sensitive
  EXPECT_FALSE(ifNoneMatchMatches("\"abc\" \"abc\"", "\"abc\""));  // missing comma
  EXPECT_FALSE(ifNoneMatchMatches("\"abc\", junk", "\"abc\""));
  EXPECT_FALSE(ifNoneMatchMatches("\"a c\"", "\"a c\""));       // SP is not etagc
  EXPECT_FALSE(ifNoneMatchMatches("\"abc\"", ""));              // nothing stored
  EXPECT_FALSE(ifNoneMatchMatches("\"abc\"", "abc"));           // stored tag malformed
  EXPECT_FALSE(ifNoneMatchMatches("", "\"abc\""));
  EXPECT_FALSE(ifNoneMatchMatches("*, \"abc\"", "\"x\""));
}

constexpr const char* kDate = "Sun, 06 Nov 1994 08:49:37 GMT";

TEST(NotModifiedSince, ComparesDates) {
  EXPECT_TRUE(notModifiedSince(kDate, kDate));
  EXPECT_TRUE(notModifiedSince("Sun, 06 Nov 1994 08:49:38 GMT", kDate));
  EXPECT_TRUE(notModifiedSince("Mon, 07 Nov 1994 00:00:00 GMT", kDate));
  EXPECT_FALSE(notModifiedSince("Sun, 06 Nov 1994 08:49:36 GMT", kDate));
  // Obsolete formats on input are understood (RFC 9110 §5.6.7).
  EXPECT_TRUE(notModifiedSince("Sunday, 06-Nov-94 08:49:37 GMT", kDate));
  EXPECT_TRUE(notModifiedSince("Sun Nov  6 08:49:37 1994", kDate));
}

TEST(NotModifiedSince, InvalidDatesNeverGiveA304) {
  EXPECT_FALSE(notModifiedSince("yesterday", kDate));
  EXPECT_FALSE(notModifiedSince("", kDate));
  EXPECT_FALSE(notModifiedSince(kDate, ""));
  EXPECT_FALSE(notModifiedSince(kDate, "garbage"));
}

TEST(IfRange, StrongEtagMustMatchExactly) {
  EXPECT_TRUE(ifRangeAllows("\"v1\"", "\"v1\"", kDate));
  EXPECT_TRUE(ifRangeAllows(" \"v1\" ", "\"v1\"", ""));
  EXPECT_FALSE(ifRangeAllows("\"v2\"", "\"v1\"", kDate));
  EXPECT_FALSE(ifRangeAllows("\"v1\"", "", kDate));
  EXPECT_FALSE(ifRangeAllows("\"v1\", \"v2\"", "\"v1\"", kDate));  // one validator only
}

TEST(IfRange, WeakEtagNeverAllows) {
  EXPECT_FALSE(ifRangeAllows("W/\"v1\"", "W/\"v1\"", kDate));
  EXPECT_FALSE(ifRangeAllows("W/\"v1\"", "\"v1\"", kDate));
  EXPECT_FALSE(ifRangeAllows("\"v1\"", "W/\"v1\"", kDate));
}

TEST(IfRange, DateMustEqualLastModified) {
  EXPECT_TRUE(ifRangeAllows(kDate, "\"v1\"", kDate));
  EXPECT_TRUE(ifRangeAllows(kDate, "", kDate));
  EXPECT_FALSE(ifRangeAllows("Sun, 06 Nov 1994 08:49:38 GMT", "\"v1\"", kDate));
  EXPECT_FALSE(ifRangeAllows("Sun, 06 Nov 1994 08:49:36 GMT", "\"v1\"", kDate));
  EXPECT_FALSE(ifRangeAllows(kDate, "\"v1\"", ""));
  EXPECT_FALSE(ifRangeAllows("not a date", "\"v1\"", kDate));
  EXPECT_FALSE(ifRangeAllows("", "\"v1\"", kDate));
}

}  // namespace
}  // namespace streamedge::proxy
