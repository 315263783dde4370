// Vary parsing, request-field normalisation and variant keys (RFC 9111 §4.1, RFC 9110 §12.5).
#include "cache/vary.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace streamedge::cache {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

std::string normalized(std::string_view name, const Fields& fields, bool* present = nullptr) {
  const FieldLineList list(fields);
  std::string out;
  const bool found = normalizeField(name, list.fieldLines(), out);
  if (present) *present = found;
  return out;
}

std::string ae(const std::string& value) { return normalized("Accept-Encoding", {{"Accept-Encoding", value}}); }
std::string al(const std::string& value) { return normalized("Accept-Language", {{"Accept-Language", value}}); }
std::string origin(const std::string& value) { return normalized("Origin", {{"Origin", value}}); }

CacheKey variant(const VaryNames& names, const Fields& fields) {
  return variantKey(makeKey("v", "/a.m3u8", ""), names, FieldLineList(fields));
}

TEST(ParseVary, NamesAreLowerCasedSortedAndUnique) {
  const VarySpec v = parseVary("Origin, accept-encoding ,ORIGIN,, Accept-Language");
  ASSERT_EQ(v.kind, VarySpec::Kind::kFields);
  EXPECT_EQ(v.names, (VaryNames{"accept-encoding", "accept-language", "origin"}));
}

TEST(ParseVary, StarOrAnythingThatIsNotAFieldNameMatchesNothing) {
  EXPECT_EQ(parseVary("*").kind, VarySpec::Kind::kAny);
  EXPECT_EQ(parseVary("Origin, *").kind, VarySpec::Kind::kAny);
  EXPECT_EQ(parseVary("Origin, \"x\"").kind, VarySpec::Kind::kAny);
  EXPECT_EQ(parseVary("Accept Encoding").kind, VarySpec::Kind::kAny);
  EXPECT_TRUE(parseVary("*").names.empty());
}

TEST(ParseVary, EmptyListIsNoVary) {
  EXPECT_EQ(parseVary("").kind, VarySpec::Kind::kNone);
  EXPECT_EQ(parseVary(" , ,").kind, VarySpec::Kind::kNone);
}

TEST(ParseVary, TooManyNamesAreTreatedAsStar) {
  std::string many;
  for (size_t i = 0; i <= kMaxVaryFields; ++i) many += "X-F" + std::to_string(i) + ",";
  EXPECT_EQ(parseVary(many).kind, VarySpec::Kind::kAny);
}

TEST(ParseVary, AllVaryLinesOfAResponseCount) {
  ResponseHead head;
  head.headers = {{"Vary", "Origin"}, {"Content-Type", "x"}, {"vary", "Accept-Encoding"}};
  const VarySpec v = varyOf(head);
  EXPECT_EQ(v.names, (VaryNames{"accept-encoding", "origin"}));
  head.headers = {{"Content-Type", "x"}};
  EXPECT_EQ(varyOf(head).kind, VarySpec::Kind::kNone);
}

TEST(NormalizeAcceptEncoding, ReducedToTheCodingsTheEdgeTellsApart) {
  EXPECT_EQ(ae("gzip"), "gzip");
  EXPECT_EQ(ae("br, gzip"), "br, gzip");
  EXPECT_EQ(ae("gzip, br;q=1.0"), "br, gzip");
  EXPECT_EQ(ae("gzip, deflate, br, zstd"), "br, gzip");
  EXPECT_EQ(ae("GZIP"), "gzip");
  EXPECT_EQ(ae("x-gzip"), "gzip");
  EXPECT_EQ(ae("br;q=0.5"), "br");
  EXPECT_EQ(ae("deflate"), "identity");
  EXPECT_EQ(ae(""), "identity");
  EXPECT_EQ(normalized("Accept-Encoding", {}), "identity");  // absent
}

TEST(NormalizeAcceptEncoding, QZeroRefusesAndStarAcceptsTheRest) {
  EXPECT_EQ(ae("gzip;q=0, br"), "br");
  EXPECT_EQ(ae("br; q=0.000, gzip"), "gzip");
  EXPECT_EQ(ae("*"), "br, gzip");
  EXPECT_EQ(ae("*;q=0.1, br;q=0"), "gzip");
  EXPECT_EQ(ae("*;q=0"), "identity");
  EXPECT_EQ(ae("gzip, gzip;q=0"), "gzip");  // the first mention counts
}

TEST(NormalizeAcceptEncoding, MalformedMembersAreIgnored) {
  EXPECT_EQ(ae("gzip;q=2, br"), "br");
  EXPECT_EQ(ae("gzip;q=0.5000"), "identity");
  EXPECT_EQ(ae("gzip;q=x"), "identity");
  EXPECT_EQ(ae("\"gzip\""), "identity");
  EXPECT_EQ(ae(",, gzip ,"), "gzip");
}

TEST(NormalizeAcceptLanguage, TagsLowerCasedSortedByWeight) {
  EXPECT_EQ(al("en-US"), "en-us");
  EXPECT_EQ(al("de;q=0.500, EN-us,  fr;q=0.9"), "en-us, fr;q=0.9, de;q=0.5");
  EXPECT_EQ(al("en, de"), "en, de");  // equal weights keep their order
  EXPECT_EQ(al("en;q=1.000"), "en");
  EXPECT_EQ(al("en;q=0.005"), "en;q=0.005");
}

TEST(NormalizeAcceptLanguage, RefusedDuplicateAndMalformedRangesDropped) {
  EXPECT_EQ(al("en, de;q=0, en;q=0.3, x_y, toolongtag1, *;q=0.1"), "en, *;q=0.1");
  EXPECT_EQ(al("de;q=0"), "");
  bool present = false;
  EXPECT_EQ(normalized("Accept-Language", {}, &present), "");
  EXPECT_FALSE(present);  // absent is a value of its own
}

TEST(NormalizeOrigin, SchemeAndHostCaseAndDefaultPort) {
  EXPECT_EQ(origin("https://Player.Example.COM"), "https://player.example.com");
  EXPECT_EQ(origin("https://player.example.com:443"), "https://player.example.com");
  EXPECT_EQ(origin("http://player.example.com:80"), "http://player.example.com");
  EXPECT_EQ(origin("http://player.example.com:443"), "http://player.example.com:443");
  EXPECT_EQ(origin("https://[::1]:8443"), "https://[::1]:8443");
  EXPECT_EQ(origin("https://[::1]:443"), "https://[::1]");
  EXPECT_EQ(origin(" null "), "null");
  EXPECT_EQ(origin("https://a.example/path"), "https://a.example/path");  // not an origin
}

TEST(NormalizeField, OtherFieldsJoinLinesAndCollapseWhitespace) {
  const Fields f = {{"X-Device", "  tv   box "}, {"x-device", "b ,c"}};
  EXPECT_EQ(normalized("X-Device", f), "tv box,b,c");
  EXPECT_EQ(normalized("X-Q", {{"X-Q", "a \"  x , y \" b"}}), "a \"  x , y \" b");
  EXPECT_EQ(normalized("X-Case", {{"X-Case", "MiXed"}}), "MiXed");  // not case-folded
}

TEST(NormalizeField, NormalizingTheOutputGivesTheOutput) {
  for (const auto& [name, value] : Fields{{"Accept-Encoding", "gzip;q=0.4, br"},
                                          {"Accept-Language", "de;q=0.5, en"},
                                          {"Origin", "HTTPS://A.example:443"},
                                          {"X-Any", "  a  ,\tb \"c  d\""}}) {
    const std::string once = normalized(name, {{name, value}});
    EXPECT_EQ(normalized(name, {{name, once}}), once) << name;
  }
}

TEST(VariantKey, SameNormalisedValuesShareAVariant) {
  const VaryNames names = {"accept-encoding", "origin"};
  const CacheKey a = variant(names, {{"Origin", "https://a.example"}, {"Accept-Encoding", "gzip, br"}});
  const CacheKey b = variant(names, {{"accept-encoding", "br;q=0.9, gzip"}, {"ORIGIN", "https://A.example:443"}});
  EXPECT_EQ(a, b);
  EXPECT_NE(a, variant(names, {{"Origin", "https://b.example"}, {"Accept-Encoding", "gzip, br"}}));
  EXPECT_NE(a, variant(names, {{"Origin", "https://a.example"}, {"Accept-Encoding", "gzip"}}));
}

TEST(VariantKey, AbsentDiffersFromEmptyAndFromThePrimaryKey) {
  const VaryNames names = {"x-flag"};
  const CacheKey absent = variant(names, {});
  EXPECT_NE(absent, variant(names, {{"X-Flag", ""}}));
  EXPECT_NE(absent, makeKey("v", "/a.m3u8", ""));
  EXPECT_EQ(absent, variant(names, {{"Other", "1"}}));  // fields not named do not matter
  // The list of names is part of the key.
  EXPECT_NE(variant({"x-a"}, {{"X-A", "1"}}), variant({"x-b"}, {{"X-B", "1"}}));
}

TEST(SetVaryFields, NormalisedValuesReplaceTheViewersOnes) {
  Fields forward = {{"User-Agent", "p/1"}, {"accept-encoding", "gzip, deflate, br"},
                    {"Accept-Language", "DE"}};
  const Fields viewer = {{"User-Agent", "p/1"}, {"accept-encoding", "gzip, deflate, br"},
                         {"Accept-Language", "DE"}, {"X-Tenant", " blue "}};
  const VaryNames vary = {"x-tenant"};
  setVaryFields(forward, FieldLineList(viewer).fieldLines(), &vary);
  EXPECT_EQ(forward, (Fields{{"User-Agent", "p/1"}, {"accept-encoding", "br, gzip"},
                             {"Accept-Language", "de"}, {"X-Tenant", "blue"}}));
}

TEST(SetVaryFields, AcceptEncodingIsAlwaysSentAndAbsentFieldsStayAbsent) {
  Fields forward;
  const VaryNames vary = {"origin", "x-tenant"};
  setVaryFields(forward, {}, &vary);
  EXPECT_EQ(forward, (Fields{{"Accept-Encoding", "identity"}}));
}

}  // namespace
}  // namespace streamedge::cache
