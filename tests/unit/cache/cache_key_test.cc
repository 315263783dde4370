#include "cache/cache_key.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace streamedge::cache {
namespace {

std::string norm(std::string_view in) {
  std::string out;
  if (!normalizePath(in, out)) return "<rejected>";
  return out;
}

CacheKey keyFor(std::string_view vhost, std::string_view path, std::string_view query,
                const conf::KeyPolicy& policy = conf::KeyPolicy{}) {
  std::string p;
  EXPECT_TRUE(normalizePath(path, p)) << path;
  return makeKey(vhost, p, filterQuery(query, policy));
}

TEST(NormalizePath, AlreadyNormalPathIsUnchanged) {
  EXPECT_EQ(norm("/"), "/");
  EXPECT_EQ(norm("/live/stream1/index.m3u8"), "/live/stream1/index.m3u8");
  EXPECT_EQ(norm("/a/b/"), "/a/b/");
  EXPECT_EQ(norm("/a:b@c!$&'()*+,;=/x"), "/a:b@c!$&'()*+,;=/x");
}

TEST(NormalizePath, DotSegmentsAreRemoved) {
  EXPECT_EQ(norm("/a/./b"), "/a/b");
  EXPECT_EQ(norm("/a/b/../c"), "/a/c");
  EXPECT_EQ(norm("/a/b/.."), "/a/");
  EXPECT_EQ(norm("/a/b/."), "/a/b/");
  EXPECT_EQ(norm("/a/.."), "/");
  EXPECT_EQ(norm("/./"), "/");
  EXPECT_EQ(norm("/a/b/c/../../d"), "/a/d");
  EXPECT_EQ(norm("/a/.../b"), "/a/.../b");  // not a dot segment
  EXPECT_EQ(norm("/a/..b/c."), "/a/..b/c.");
}

TEST(NormalizePath, EncodedDotSegmentsAreRemovedToo) {
  // Decoding before dot removal (RFC 3986 §6.2.2): an origin that decodes first must not see
  // a traversal that the key did not.
  EXPECT_EQ(norm("/a/%2e%2E/b"), "/b");
  EXPECT_EQ(norm("/a/%2e/b"), "/a/b");
  EXPECT_EQ(norm("/a/.%2e/b"), "/b");
}

TEST(NormalizePath, SlashRunsCollapse) {
  EXPECT_EQ(norm("//a///b"), "/a/b");
  EXPECT_EQ(norm("/a/b//"), "/a/b/");
  EXPECT_EQ(norm("/a//../b"), "/b");
  EXPECT_EQ(norm("//"), "/");
}

TEST(NormalizePath, UnreservedEscapesDecodeOthersUppercase) {
  EXPECT_EQ(norm("/%41%62c%2D%5f%7e"), "/Abc-_~");
  EXPECT_EQ(norm("/a%3ab"), "/a%3Ab");
  EXPECT_EQ(norm("/a%20b"), "/a%20b");
  EXPECT_EQ(norm("/100%25"), "/100%25");
  EXPECT_EQ(norm("/a%3fb"), "/a%3Fb");
}

TEST(NormalizePath, RawAndEncodedSpellingsShareOneName) {
  EXPECT_EQ(norm("/caf\xC3\xA9.ts"), norm("/caf%c3%a9.ts"));
  EXPECT_EQ(norm("/caf\xC3\xA9.ts"), "/caf%C3%A9.ts");
  EXPECT_EQ(norm("/a\"b"), "/a%22b");
}

TEST(NormalizePath, InvalidPathsAreRejected) {
  EXPECT_EQ(norm(""), "<rejected>");
  EXPECT_EQ(norm("a/b"), "<rejected>");
  EXPECT_EQ(norm("http://x/a"), "<rejected>");
  EXPECT_EQ(norm("/a%2Fb"), "<rejected>");  // one object per name
  EXPECT_EQ(norm("/a%2fb"), "<rejected>");
  EXPECT_EQ(norm("/a%00b"), "<rejected>");
  EXPECT_EQ(norm("/a%zzb"), "<rejected>");
  EXPECT_EQ(norm("/a%4"), "<rejected>");
  EXPECT_EQ(norm("/a%"), "<rejected>");
  EXPECT_EQ(norm("/a b"), "<rejected>");
  EXPECT_EQ(norm("/a\tb"), "<rejected>");
  EXPECT_EQ(norm(std::string_view("/a\0b", 4)), "<rejected>");
  EXPECT_EQ(norm("/a?b"), "<rejected>");
  EXPECT_EQ(norm("/a#b"), "<rejected>");
}

TEST(NormalizePath, EscapingTheRootIsRejected) {
  EXPECT_EQ(norm("/.."), "<rejected>");
  EXPECT_EQ(norm("/../etc/passwd"), "<rejected>");
  EXPECT_EQ(norm("/a/../.."), "<rejected>");
  EXPECT_EQ(norm("/a/../../b"), "<rejected>");
  EXPECT_EQ(norm("/%2e%2e/b"), "<rejected>");
}

TEST(FilterQuery, DroppedParametersNeverEnterTheKeyOrLog) {
  const conf::KeyPolicy policy;
  EXPECT_EQ(filterQuery("CMCD=bl%3D21300%2Cbr%3D3200&token=abc", policy), "");
  EXPECT_EQ(filterQuery("v=2&CMCD=x&token=y&sid=1", policy), "v=2");
  EXPECT_EQ(filterQuery("cmcd=x&TOKEN=y&v=2", policy), "v=2");  // case-insensitive drop
  EXPECT_EQ(filterQuery("%43MCD=x&v=2", policy), "v=2");       // encoded name still dropped
  EXPECT_EQ(filterQuery("token&v", policy), "v");               // a name without a value
}

TEST(FilterQuery, OrderIsKeptAndEmptyPartsGo) {
  const conf::KeyPolicy policy;
  EXPECT_EQ(filterQuery("b=2&a=1", policy), "b=2&a=1");
  EXPECT_EQ(filterQuery("&&a=1&&b=2&", policy), "a=1&b=2");
  EXPECT_EQ(filterQuery("", policy), "");
  EXPECT_EQ(filterQuery("a=1&a=2", policy), "a=1&a=2");
  EXPECT_EQ(filterQuery("?a=1", policy), "a=1");
}

TEST(FilterQuery, KeepListKeepsOnlyNamedParametersCaseSensitively) {
  conf::KeyPolicy policy;
  policy.keep_params = {"v", "lang"};
  EXPECT_EQ(filterQuery("x=1&lang=de&v=3&V=4&y", policy), "lang=de&v=3");
  // A dropped parameter stays dropped even if also listed as kept.
  policy.keep_params = {"token", "v"};
  EXPECT_EQ(filterQuery("token=1&v=2", policy), "v=2");
}

TEST(FilterQuery, IgnoreQueryKeepsNothing) {
  conf::KeyPolicy policy;
  policy.ignore_query = true;
  EXPECT_EQ(filterQuery("v=1&lang=de", policy), "");
}

TEST(FilterQuery, LowLatencyHlsDirectivesGoLastInCanonicalOrder) {
  const conf::KeyPolicy policy;
  EXPECT_EQ(filterQuery("_HLS_skip=YES&_HLS_part=2&v=1&_HLS_msn=100", policy),
            "v=1&_HLS_msn=100&_HLS_part=2&_HLS_skip=YES");
  EXPECT_EQ(filterQuery("_HLS_part=02&_HLS_msn=0100&CMCD=x", policy), "_HLS_msn=100&_HLS_part=2");
  EXPECT_EQ(filterQuery("_HLS_msn=0", policy), "_HLS_msn=0");
  EXPECT_EQ(filterQuery("_HLS_msn=000", policy), "_HLS_msn=0");
  // Kept whatever the route's query rules say of other parameters...
  conf::KeyPolicy ignore;
  ignore.ignore_query = true;
  EXPECT_EQ(filterQuery("v=1&_HLS_part=1&_HLS_msn=7", ignore), "_HLS_msn=7&_HLS_part=1");
  conf::KeyPolicy keep;
  keep.keep_params = {"v"};
  EXPECT_EQ(filterQuery("w=1&_HLS_msn=7&v=2", keep), "v=2&_HLS_msn=7");
  // ...unless the operator drops them by name.
  conf::KeyPolicy drop;
  drop.drop_params.push_back("_HLS_skip");
  EXPECT_EQ(filterQuery("_HLS_skip=YES&_HLS_msn=7", drop), "_HLS_msn=7");
}

TEST(CacheKey, EqualBlockingRequestsShareOneKey) {
  EXPECT_EQ(keyFor("tv", "/ll/a/index.m3u8", "_HLS_part=1&_HLS_msn=20&CMCD=sid%3D%22x%22"),
            keyFor("tv", "/ll/a/index.m3u8", "_HLS_msn=20&_HLS_part=1"));
  EXPECT_NE(keyFor("tv", "/ll/a/index.m3u8", "_HLS_msn=20&_HLS_part=1"),
            keyFor("tv", "/ll/a/index.m3u8", "_HLS_msn=20&_HLS_part=2"));
  EXPECT_NE(keyFor("tv", "/ll/a/index.m3u8", "_HLS_msn=20"), keyFor("tv", "/ll/a/index.m3u8", ""));
}

TEST(CacheKey, PlayerParametersDoNotSplitTheObject) {
  EXPECT_EQ(keyFor("tv", "/live/seg1.ts", "CMCD=br%3D3200&token=abc"),
            keyFor("tv", "/live/seg1.ts", ""));
  EXPECT_EQ(keyFor("tv", "/live/seg1.ts", "token=abc&v=1&CMCD=x"),
            keyFor("tv", "/live/seg1.ts", "v=1"));
}

TEST(CacheKey, KeptParameterOrderMatters) {
  EXPECT_NE(keyFor("tv", "/a.ts", "a=1&b=2"), keyFor("tv", "/a.ts", "b=2&a=1"));
  EXPECT_NE(keyFor("tv", "/a.ts", "a=1"), keyFor("tv", "/a.ts", "a=2"));
}

TEST(CacheKey, EquivalentSpellingsShareOneKey) {
  // Aliases of one vhost pass the same vhost name; different spellings of one path collapse.
  EXPECT_EQ(keyFor("tv", "/live/./a/../seg%31.ts", ""), keyFor("tv", "/live/seg1.ts", ""));
  EXPECT_EQ(keyFor("tv", "//live//seg1.ts", ""), keyFor("tv", "/live/seg1.ts", ""));
}

TEST(CacheKey, VhostsAreSeparated) {
  EXPECT_NE(keyFor("tv", "/a.ts", ""), keyFor("radio", "/a.ts", ""));
  // Field boundaries cannot be shifted: ("tv", "/x/a") vs ("tv/x", "/a") and path vs query.
  EXPECT_NE(makeKey("tv", "/x/a", ""), makeKey("tv/x", "/a", ""));
  EXPECT_NE(makeKey("tv", "/a", "b"), makeKey("tv", "/ab", ""));
  EXPECT_NE(makeKey("", "/a", ""), makeKey("/a", "", ""));
}

TEST(CacheKey, KeysAreStableAndSpread) {
  EXPECT_EQ(makeKey("tv", "/a.ts", "v=1"), makeKey("tv", "/a.ts", "v=1"));
  std::set<uint64_t> lows;
  for (int i = 0; i < 1000; ++i) lows.insert(makeKey("tv", "/seg" + std::to_string(i), "").lo);
  EXPECT_EQ(lows.size(), 1000u);
}

TEST(CacheKey, HexIsThirtyTwoLowercaseDigitsHighFirst) {
  const CacheKey k{0x0123456789abcdefull, 0xfedcba9876543210ull};
  EXPECT_EQ(k.toHex(), "0123456789abcdeffedcba9876543210");
  EXPECT_EQ(CacheKey{}.toHex(), std::string(32, '0'));
  EXPECT_EQ(makeKey("tv", "/a", "").toHex().size(), 32u);
}

}  // namespace
}  // namespace streamedge::cache
